//! The typed model of every supported kind, and the desired state built from them.

pub mod config;
pub mod core;
pub mod meta;
pub mod placement;
pub mod pod;
pub mod policy;
pub mod probe;
pub mod scalars;
pub mod service;
pub mod storage;
mod strict;
pub mod volume;
pub mod workloads;

use self::config::{ClusterConfig, ClusterSettings};
use self::core::{ConfigMap, Namespace, PersistentVolumeClaim, Pod, Secret, Service};
use self::policy::PodDisruptionBudget;
use self::storage::{PersistentVolume, StorageClass};
use self::workloads::{CronJob, DaemonSet, Deployment, Job, ReplicaSet, StatefulSet};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Every kind kommit accepts, with its apiVersion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    /// v1 Namespace.
    Namespace,
    /// v1 Pod.
    Pod,
    /// v1 Service.
    Service,
    /// v1 ConfigMap.
    ConfigMap,
    /// v1 Secret.
    Secret,
    /// v1 PersistentVolumeClaim.
    PersistentVolumeClaim,
    /// storage.k8s.io/v1 StorageClass.
    StorageClass,
    /// v1 PersistentVolume.
    PersistentVolume,
    /// policy/v1 PodDisruptionBudget.
    PodDisruptionBudget,
    /// apps/v1 Deployment.
    Deployment,
    /// apps/v1 DaemonSet.
    DaemonSet,
    /// apps/v1 ReplicaSet (standalone).
    ReplicaSet,
    /// apps/v1 StatefulSet.
    StatefulSet,
    /// batch/v1 Job.
    Job,
    /// batch/v1 CronJob.
    CronJob,
    /// kommit.dev/v1 ClusterConfig (`kommit.yaml`).
    ClusterConfig,
}

impl Kind {
    /// Every kind, in a fixed order.
    pub const ALL: [Kind; 16] = [
        Kind::Namespace,
        Kind::Pod,
        Kind::Service,
        Kind::ConfigMap,
        Kind::Secret,
        Kind::PersistentVolumeClaim,
        Kind::StorageClass,
        Kind::PersistentVolume,
        Kind::PodDisruptionBudget,
        Kind::Deployment,
        Kind::DaemonSet,
        Kind::ReplicaSet,
        Kind::StatefulSet,
        Kind::Job,
        Kind::CronJob,
        Kind::ClusterConfig,
    ];

    /// The kind's name as written in manifests.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Namespace => "Namespace",
            Kind::Pod => "Pod",
            Kind::Service => "Service",
            Kind::ConfigMap => "ConfigMap",
            Kind::Secret => "Secret",
            Kind::PersistentVolumeClaim => "PersistentVolumeClaim",
            Kind::StorageClass => "StorageClass",
            Kind::PersistentVolume => "PersistentVolume",
            Kind::PodDisruptionBudget => "PodDisruptionBudget",
            Kind::Deployment => "Deployment",
            Kind::DaemonSet => "DaemonSet",
            Kind::ReplicaSet => "ReplicaSet",
            Kind::StatefulSet => "StatefulSet",
            Kind::Job => "Job",
            Kind::CronJob => "CronJob",
            Kind::ClusterConfig => "ClusterConfig",
        }
    }

    /// The apiVersion manifests of this kind must carry.
    pub fn api_version(self) -> &'static str {
        match self {
            Kind::Namespace
            | Kind::Pod
            | Kind::Service
            | Kind::ConfigMap
            | Kind::Secret
            | Kind::PersistentVolumeClaim
            | Kind::PersistentVolume => "v1",
            Kind::Deployment | Kind::DaemonSet | Kind::ReplicaSet | Kind::StatefulSet => "apps/v1",
            Kind::Job | Kind::CronJob => "batch/v1",
            Kind::StorageClass => "storage.k8s.io/v1",
            Kind::PodDisruptionBudget => "policy/v1",
            Kind::ClusterConfig => "kommit.dev/v1",
        }
    }

    /// The kind with this name, if kommit supports it.
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Whether objects of this kind live in a namespace.
    pub fn namespaced(self) -> bool {
        !matches!(
            self,
            Kind::Namespace | Kind::StorageClass | Kind::PersistentVolume | Kind::ClusterConfig
        )
    }

    /// The schema file's name under `schemas/`.
    pub fn schema_file(self) -> &'static str {
        match self {
            Kind::Namespace => "namespace.schema.json",
            Kind::Pod => "pod.schema.json",
            Kind::Service => "service.schema.json",
            Kind::ConfigMap => "configmap.schema.json",
            Kind::Secret => "secret.schema.json",
            Kind::PersistentVolumeClaim => "persistentvolumeclaim.schema.json",
            Kind::StorageClass => "storageclass.schema.json",
            Kind::PersistentVolume => "persistentvolume.schema.json",
            Kind::PodDisruptionBudget => "poddisruptionbudget.schema.json",
            Kind::Deployment => "deployment.schema.json",
            Kind::DaemonSet => "daemonset.schema.json",
            Kind::ReplicaSet => "replicaset.schema.json",
            Kind::StatefulSet => "statefulset.schema.json",
            Kind::Job => "job.schema.json",
            Kind::CronJob => "cronjob.schema.json",
            Kind::ClusterConfig => "kommit.schema.json",
        }
    }
}

/// One typed object of any kind.
#[derive(Clone, Debug, PartialEq)]
pub enum Object {
    /// A Namespace.
    Namespace(Namespace),
    /// A Pod.
    Pod(Pod),
    /// A Service.
    Service(Service),
    /// A ConfigMap.
    ConfigMap(ConfigMap),
    /// A Secret.
    Secret(Secret),
    /// A PersistentVolumeClaim.
    PersistentVolumeClaim(PersistentVolumeClaim),
    /// A StorageClass.
    StorageClass(StorageClass),
    /// A PersistentVolume.
    PersistentVolume(PersistentVolume),
    /// A PodDisruptionBudget.
    PodDisruptionBudget(PodDisruptionBudget),
    /// A Deployment.
    Deployment(Deployment),
    /// A DaemonSet.
    DaemonSet(DaemonSet),
    /// A standalone ReplicaSet.
    ReplicaSet(ReplicaSet),
    /// A StatefulSet.
    StatefulSet(StatefulSet),
    /// A Job.
    Job(Job),
    /// A CronJob.
    CronJob(CronJob),
    /// The cluster config.
    ClusterConfig(ClusterConfig),
}

impl Object {
    /// Deserializes a document of a known kind.
    pub fn from_value(kind: Kind, v: &serde_json::Value) -> Result<Object, serde_json::Error> {
        use strict::from_value as f;
        Ok(match kind {
            Kind::Namespace => Object::Namespace(f(v)?),
            Kind::Pod => Object::Pod(f(v)?),
            Kind::Service => Object::Service(f(v)?),
            Kind::ConfigMap => Object::ConfigMap(f(v)?),
            Kind::Secret => Object::Secret(f(v)?),
            Kind::PersistentVolumeClaim => Object::PersistentVolumeClaim(f(v)?),
            Kind::StorageClass => Object::StorageClass(f(v)?),
            Kind::PersistentVolume => Object::PersistentVolume(f(v)?),
            Kind::PodDisruptionBudget => Object::PodDisruptionBudget(f(v)?),
            Kind::Deployment => Object::Deployment(f(v)?),
            Kind::DaemonSet => Object::DaemonSet(f(v)?),
            Kind::ReplicaSet => Object::ReplicaSet(f(v)?),
            Kind::StatefulSet => Object::StatefulSet(f(v)?),
            Kind::Job => Object::Job(f(v)?),
            Kind::CronJob => Object::CronJob(f(v)?),
            Kind::ClusterConfig => Object::ClusterConfig(f(v)?),
        })
    }
}

/// The key of a namespaced object in [`DesiredState`]: `namespace/name`.
pub fn key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// Everything a commit asks for, typed and validated, with defaults that identify objects
/// (namespace) filled in. Maps are keyed `namespace/name` (namespaces by name), so the
/// serialized form is canonical: the same objects always give the same bytes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DesiredState {
    /// Cluster settings from `kommit.yaml`, defaults resolved.
    pub config: ClusterSettings,
    /// Namespaces declared in the repository (`default` always exists implicitly).
    pub namespaces: BTreeMap<String, Namespace>,
    /// Bare pods.
    pub pods: BTreeMap<String, Pod>,
    /// Services.
    pub services: BTreeMap<String, Service>,
    /// ConfigMaps.
    pub config_maps: BTreeMap<String, ConfigMap>,
    /// Secrets.
    pub secrets: BTreeMap<String, Secret>,
    /// Claims.
    pub persistent_volume_claims: BTreeMap<String, PersistentVolumeClaim>,
    /// StorageClasses by name. Absent from the bytes while empty, so trees without one
    /// keep their digests.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub storage_classes: BTreeMap<String, StorageClass>,
    /// Pre-provisioned PersistentVolumes by name. Absent from the bytes while empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub persistent_volumes: BTreeMap<String, PersistentVolume>,
    /// PodDisruptionBudgets. Absent from the bytes while empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_disruption_budgets: BTreeMap<String, PodDisruptionBudget>,
    /// Deployments.
    pub deployments: BTreeMap<String, Deployment>,
    /// DaemonSets.
    pub daemon_sets: BTreeMap<String, DaemonSet>,
    /// Standalone ReplicaSets. Absent from the bytes while empty, so trees without one keep
    /// their digests.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub replica_sets: BTreeMap<String, ReplicaSet>,
    /// StatefulSets.
    pub stateful_sets: BTreeMap<String, StatefulSet>,
    /// Jobs.
    pub jobs: BTreeMap<String, Job>,
    /// CronJobs.
    pub cron_jobs: BTreeMap<String, CronJob>,
    /// The whole document of each SOPS-encrypted Secret (in `secrets` too), keyed like it:
    /// what the node that runs a pod referencing it decrypts, MAC included. Absent from the
    /// bytes while empty, so states without one keep their digests.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sealed_secrets: BTreeMap<String, crate::sops::SealedDocument>,
}

impl DesiredState {
    /// The canonical serialization (compact JSON, maps sorted).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("desired state holds only JSON-representable data")
    }

    /// SHA-256 of the canonical bytes, hex.
    pub fn digest(&self) -> String {
        hex::encode(Sha256::digest(self.canonical_bytes()))
    }

    /// Every object as (kind, namespace or "", name), sorted.
    pub fn object_ids(&self) -> Vec<(Kind, String, String)> {
        fn split(k: &str) -> (String, String) {
            match k.split_once('/') {
                Some((ns, n)) => (ns.to_owned(), n.to_owned()),
                None => (String::new(), k.to_owned()),
            }
        }
        let mut out = Vec::new();
        let mut push = |kind: Kind, keys: Vec<&String>| {
            for k in keys {
                let (ns, n) = split(k);
                out.push((kind, ns, n));
            }
        };
        push(Kind::Namespace, self.namespaces.keys().collect());
        push(Kind::Pod, self.pods.keys().collect());
        push(Kind::Service, self.services.keys().collect());
        push(Kind::ConfigMap, self.config_maps.keys().collect());
        push(Kind::Secret, self.secrets.keys().collect());
        push(
            Kind::PersistentVolumeClaim,
            self.persistent_volume_claims.keys().collect(),
        );
        push(Kind::StorageClass, self.storage_classes.keys().collect());
        push(
            Kind::PersistentVolume,
            self.persistent_volumes.keys().collect(),
        );
        push(
            Kind::PodDisruptionBudget,
            self.pod_disruption_budgets.keys().collect(),
        );
        push(Kind::Deployment, self.deployments.keys().collect());
        push(Kind::DaemonSet, self.daemon_sets.keys().collect());
        push(Kind::ReplicaSet, self.replica_sets.keys().collect());
        push(Kind::StatefulSet, self.stateful_sets.keys().collect());
        push(Kind::Job, self.jobs.keys().collect());
        push(Kind::CronJob, self.cron_jobs.keys().collect());
        out.sort();
        out
    }
}
