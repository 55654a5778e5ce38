//! Workload kinds (apps/v1 and batch/v1): Deployment, ReplicaSet, DaemonSet, StatefulSet, Job,
//! CronJob.

use super::core::PersistentVolumeClaimSpec;
use super::meta::{IntOrString, LabelSelector, ObjectMeta, TemplateMeta, Text};
use super::pod::PodTemplateSpec;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// apps/v1 Deployment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Deployment {
    /// `apps/v1`.
    #[schemars(extend("const" = "apps/v1"))]
    pub api_version: String,
    /// `Deployment`.
    #[schemars(extend("const" = "Deployment"))]
    pub kind: String,
    /// Name, namespace, labels.
    pub metadata: ObjectMeta,
    /// The desired state.
    pub spec: DeploymentSpec,
}

/// A Deployment's spec.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeploymentSpec {
    /// Desired pods (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    /// Must match the template's labels.
    pub selector: LabelSelector,
    /// The pods.
    pub template: PodTemplateSpec,
    /// RollingUpdate (default) or Recreate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<DeploymentStrategy>,
    /// Seconds a pod must be ready to count as available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_ready_seconds: Option<u32>,
    /// Old ReplicaSets kept for rollback (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_history_limit: Option<u32>,
    /// Seconds without progress before the rollout is marked failed (default 600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline_seconds: Option<u32>,
    /// Holds rollouts while true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
}

/// How a Deployment replaces pods.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeploymentStrategy {
    /// RollingUpdate (default) or Recreate.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<DeploymentStrategyType>,
    /// Surge and unavailability bounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling_update: Option<RollingUpdate>,
}

/// Deployment strategies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DeploymentStrategyType {
    /// Replace pods gradually.
    RollingUpdate,
    /// Stop every old pod, then start the new ones.
    Recreate,
}

/// Rolling update bounds, each a count or a percentage such as "25%".
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RollingUpdate {
    /// Extra pods allowed above `replicas` (default 25%).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_surge: Option<IntOrString>,
    /// Pods allowed to be unavailable (default 25%).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrString>,
}

/// apps/v1 ReplicaSet, standalone (a Deployment's own ReplicaSets are made by kommit).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReplicaSet {
    /// `apps/v1`.
    #[schemars(extend("const" = "apps/v1"))]
    pub api_version: String,
    /// `ReplicaSet`.
    #[schemars(extend("const" = "ReplicaSet"))]
    pub kind: String,
    /// Name, namespace, labels.
    pub metadata: ObjectMeta,
    /// The desired state.
    pub spec: ReplicaSetSpec,
}

/// A ReplicaSet's spec.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReplicaSetSpec {
    /// Desired pods (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    /// Must match the template's labels.
    pub selector: LabelSelector,
    /// The pods. A changed template applies to pods made afterwards only.
    pub template: PodTemplateSpec,
    /// Seconds a pod must be ready to count as available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_ready_seconds: Option<u32>,
}

/// apps/v1 DaemonSet.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DaemonSet {
    /// `apps/v1`.
    #[schemars(extend("const" = "apps/v1"))]
    pub api_version: String,
    /// `DaemonSet`.
    #[schemars(extend("const" = "DaemonSet"))]
    pub kind: String,
    /// Name, namespace, labels.
    pub metadata: ObjectMeta,
    /// The desired state.
    pub spec: DaemonSetSpec,
}

/// A DaemonSet's spec.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DaemonSetSpec {
    /// Must match the template's labels.
    pub selector: LabelSelector,
    /// The pods.
    pub template: PodTemplateSpec,
    /// RollingUpdate (default) or OnDelete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_strategy: Option<DaemonSetUpdateStrategy>,
    /// Seconds a pod must be ready to count as available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_ready_seconds: Option<u32>,
    /// Old revisions kept (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_history_limit: Option<u32>,
}

/// How a DaemonSet replaces pods.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DaemonSetUpdateStrategy {
    /// RollingUpdate (default) or OnDelete.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<DaemonSetStrategyType>,
    /// Bounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling_update: Option<RollingUpdate>,
}

/// DaemonSet update strategies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DaemonSetStrategyType {
    /// Replace pods node by node.
    RollingUpdate,
    /// Replace a pod only when it is deleted.
    OnDelete,
}

/// apps/v1 StatefulSet.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StatefulSet {
    /// `apps/v1`.
    #[schemars(extend("const" = "apps/v1"))]
    pub api_version: String,
    /// `StatefulSet`.
    #[schemars(extend("const" = "StatefulSet"))]
    pub kind: String,
    /// Name, namespace, labels.
    pub metadata: ObjectMeta,
    /// The desired state.
    pub spec: StatefulSetSpec,
}

/// A StatefulSet's spec.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StatefulSetSpec {
    /// Desired pods (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    /// Must match the template's labels.
    pub selector: LabelSelector,
    /// The pods.
    pub template: PodTemplateSpec,
    /// The headless Service that gives pods their DNS names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// OrderedReady (default) or Parallel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_management_policy: Option<PodManagementPolicy>,
    /// RollingUpdate (default) or OnDelete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_strategy: Option<StatefulSetUpdateStrategy>,
    /// One claim per pod per template, named `<template>-<set>-<ordinal>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_claim_templates: Vec<PersistentVolumeClaimTemplate>,
    /// Seconds a pod must be ready to count as available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_ready_seconds: Option<u32>,
    /// Old revisions kept (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_history_limit: Option<u32>,
    /// What happens to the claims made from `volumeClaimTemplates` when the set is deleted
    /// or scaled down (both Retain by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim_retention_policy: Option<PvcRetentionPolicy>,
}

/// A StatefulSet's claim retention policy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PvcRetentionPolicy {
    /// When the StatefulSet is deleted (default Retain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when_deleted: Option<RetentionPolicyType>,
    /// When the StatefulSet is scaled down, for the ordinals removed (default Retain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when_scaled: Option<RetentionPolicyType>,
}

/// Keep or delete a StatefulSet's claims.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RetentionPolicyType {
    /// The claims and their data stay.
    Retain,
    /// The claims go, and with them their volumes.
    Delete,
}

/// StatefulSet pod management.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PodManagementPolicy {
    /// One pod at a time, in ordinal order.
    OrderedReady,
    /// All at once.
    Parallel,
}

/// How a StatefulSet replaces pods.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StatefulSetUpdateStrategy {
    /// RollingUpdate (default) or OnDelete.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<DaemonSetStrategyType>,
    /// Partition and bounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling_update: Option<StatefulSetRollingUpdate>,
}

/// StatefulSet rolling update settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StatefulSetRollingUpdate {
    /// Ordinals below this keep the old revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<u32>,
    /// Pods allowed to be unavailable (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrString>,
}

/// A claim template of a StatefulSet.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PersistentVolumeClaimTemplate {
    /// The template's name, used in volume references.
    pub metadata: TemplateMeta,
    /// The claims' spec.
    pub spec: PersistentVolumeClaimSpec,
}

/// batch/v1 Job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Job {
    /// `batch/v1`.
    #[schemars(extend("const" = "batch/v1"))]
    pub api_version: String,
    /// `Job`.
    #[schemars(extend("const" = "Job"))]
    pub kind: String,
    /// Name, namespace, labels.
    pub metadata: ObjectMeta,
    /// The desired state.
    pub spec: JobSpec,
}

/// A Job's spec.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobSpec {
    /// Pods run at once (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<u32>,
    /// Successful pods needed (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completions: Option<u32>,
    /// Retries before the Job fails (default 6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_limit: Option<u32>,
    /// Seconds before the Job is failed, counted from its start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_deadline_seconds: Option<std::num::NonZeroU64>,
    /// Seconds after it finishes before the Job is cleaned up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds_after_finished: Option<u32>,
    /// NonIndexed (default) or Indexed (each pod gets a completion index).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_mode: Option<CompletionMode>,
    /// No pods run while true (running ones are stopped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    /// The pods; restartPolicy must be OnFailure or Never.
    pub template: PodTemplateSpec,
}

/// How a Job counts completions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum CompletionMode {
    /// Any `completions` successful pods complete the Job.
    NonIndexed,
    /// One successful pod per index `0..completions`; pods see `JOB_COMPLETION_INDEX`.
    Indexed,
}

/// batch/v1 CronJob.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CronJob {
    /// `batch/v1`.
    #[schemars(extend("const" = "batch/v1"))]
    pub api_version: String,
    /// `CronJob`.
    #[schemars(extend("const" = "CronJob"))]
    pub kind: String,
    /// Name, namespace, labels.
    pub metadata: ObjectMeta,
    /// The desired state.
    pub spec: CronJobSpec,
}

/// A CronJob's spec.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CronJobSpec {
    /// Five-field cron syntax, or @hourly/@daily/@weekly/@monthly/@yearly.
    pub schedule: Text<1, 256>,
    /// An IANA time zone; UTC when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// Allow (default), Forbid or Replace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_policy: Option<ConcurrencyPolicy>,
    /// No new runs while true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    /// Seconds after a missed time within which it may still start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting_deadline_seconds: Option<u64>,
    /// Finished Jobs kept (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub successful_jobs_history_limit: Option<u32>,
    /// Failed Jobs kept (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_jobs_history_limit: Option<u32>,
    /// The Job to create.
    pub job_template: JobTemplateSpec,
}

/// CronJob concurrency policies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConcurrencyPolicy {
    /// Runs may overlap.
    Allow,
    /// Skip a run while the previous one is active.
    Forbid,
    /// Replace the running Job.
    Replace,
}

/// A Job template.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobTemplateSpec {
    /// Labels and annotations.
    #[serde(default)]
    pub metadata: TemplateMeta,
    /// The Job's spec.
    pub spec: JobSpec,
}
