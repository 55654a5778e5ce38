//! Bookkeeping of the stateful and batch controllers, kept in [`crate::ClusterState`]:
//! StatefulSet revisions, Job progress and the claims bound to node-local volumes. Each map
//! is absent from the state's bytes while empty, so states without these kinds keep their
//! bytes and digests.

use crate::types::Millis;
use kommit_schemas::model::core::{AccessMode, PersistentVolumeClaimSpec};
use kommit_schemas::model::pod::PodTemplateSpec;
use kommit_schemas::model::workloads::Job;
use serde::{Deserialize, Serialize};

/// The built-in provisioner: a directory on the node the first consumer is scheduled to.
pub const LOCAL_PATH_PROVISIONER: &str = "kommit.dev/local-path";
/// The default StorageClass, served by [`LOCAL_PATH_PROVISIONER`] (as k3s' `local-path`).
pub const LOCAL_PATH_CLASS: &str = "local-path";

/// A StatefulSet's revisions and status.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatefulSetRecord {
    /// The revision (template hash) pods below the partition keep: the one every pod ran
    /// before the last template change, until every pod runs the update revision.
    pub current_revision: String,
    /// That revision's template, while it differs from the spec's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_template: Option<PodTemplateSpec>,
    /// The spec's template hash.
    pub update_revision: String,
    /// The update revision's template (the current one's, once the template changes).
    pub template: PodTemplateSpec,
    /// `persistentVolumeClaimRetentionPolicy.whenDeleted: Delete`: its claims go with it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delete_claims_with_set: bool,
    /// Pod incarnations made so far (UIDs come from this counter).
    pub next_serial: u64,
    /// Pods that exist.
    pub replicas: u32,
    /// Pods that are ready.
    pub ready: u32,
    /// Pods ready for at least `minReadySeconds`.
    pub available: u32,
    /// Pods of the current revision.
    pub current: u32,
    /// Pods of the update revision.
    pub updated: u32,
}

/// How a Job ended, as its terminal condition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobOutcome {
    /// `Complete`: enough pods succeeded.
    Complete,
    /// `Failed`, with Kubernetes' reason (`BackoffLimitExceeded`, `DeadlineExceeded`).
    Failed {
        /// The condition's reason.
        reason: String,
        /// Detail for people.
        message: String,
    },
}

/// A Job's progress and status.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// Hash of the Job's spec: a Job whose spec changes in Git starts over as a new Job
    /// (Kubernetes' Job template is immutable; replacing it means a new object).
    pub spec_hash: String,
    /// When it (last) started running: not suspended, for `activeDeadlineSeconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Millis>,
    /// When it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Millis>,
    /// The terminal condition, once finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<JobOutcome>,
    /// Pods running or pending.
    pub active: u32,
    /// Pods that are ready.
    pub ready: u32,
    /// Pods that succeeded.
    pub succeeded: u32,
    /// Pods that failed (with OnFailure, container restarts count too).
    pub failed: u32,
    /// Indexed Jobs: the indexes that succeeded, ascending.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub completed_indexes: Vec<u32>,
    /// Until when a replacement for a failed pod waits (set when the failure count rises).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_until: Option<Millis>,
    /// Pods made so far (names and UIDs come from this counter).
    pub next_serial: u64,
    /// `ttlSecondsAfterFinished` ran out: its pods are gone and it does not run again while
    /// its spec stays the same.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expired: bool,
}

/// A PersistentVolumeClaim as the state binds it: to a directory on one node's disk.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClaimRecord {
    /// The namespace.
    pub namespace: String,
    /// The claim's name.
    pub name: String,
    /// The StatefulSet whose `volumeClaimTemplates` made it (`namespace/name`); None for a
    /// claim declared in Git.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stateful_set: Option<String>,
    /// The claim's spec.
    pub spec: PersistentVolumeClaimSpec,
    /// The node whose disk holds its volume, once bound (WaitForFirstConsumer: the node the
    /// first pod using it was scheduled to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The bound volume's name: `pvc-<uid>`, a directory under the node's data dir, or a
    /// pre-provisioned PersistentVolume's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<String>,
    /// When it was made.
    pub created_at: Millis,
    /// `volume` names a PersistentVolume from Git (not a local-path directory).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pre_provisioned: bool,
}

impl ClaimRecord {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The StorageClass it names (the default class when it names none).
    pub fn class(&self) -> &str {
        self.spec
            .storage_class_name
            .as_deref()
            .unwrap_or(LOCAL_PATH_CLASS)
    }

    /// Whether its pods mount it read-only: `ReadOnlyMany` is its only access mode.
    pub fn read_only(&self) -> bool {
        self.spec.access_modes == [AccessMode::ReadOnlyMany]
    }

    /// Whether only one pod may use it at a time (`ReadWriteOncePod`).
    pub fn one_pod(&self) -> bool {
        self.spec
            .access_modes
            .contains(&AccessMode::ReadWriteOncePod)
    }

    /// `Bound` or `Pending`, as Kubernetes' claim phase.
    pub fn phase(&self) -> &'static str {
        if self.volume.is_some() {
            "Bound"
        } else {
            "Pending"
        }
    }
}

/// A CronJob's schedule bookkeeping and status.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CronJobRecord {
    /// When the state first saw it: scheduled times before are not run.
    pub since: Millis,
    /// The last scheduled time handled (a Job made, or found made).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule: Option<Millis>,
    /// The last scheduled time missed beyond `startingDeadlineSeconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_missed: Option<Millis>,
    /// When its last successful Job completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful: Option<Millis>,
    /// Its next scheduled time after the state's time (none while suspended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_at: Option<Millis>,
    /// Its Jobs still running, `namespace/name`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active: Vec<String>,
    /// Why it cannot run (an unknown time zone), if so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A Job a CronJob made, as it was made (later template changes do not touch it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpawnedJob {
    /// The CronJob, `namespace/name`.
    pub cron: String,
    /// The scheduled time it runs for.
    pub scheduled: Millis,
    /// The Job.
    pub job: Job,
}

/// A volume whose claim went, kept by its reclaim policy (`Retain`), or a pre-provisioned
/// one whatever its policy (kommit never deletes the data of a volume it did not make).
/// It is not bound again: a local-path directory stays on its node for the operator, a
/// PersistentVolume is Released until it leaves Git (added back, it is Available).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReleasedVolume {
    /// The claim it was bound to, `namespace/name`.
    pub claim: String,
    /// The node that holds its data, if it was ever used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// A PersistentVolume from Git (else a local-path directory).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pre_provisioned: bool,
    /// `Retain`, or `Delete` for a PersistentVolume kommit does not delete (its phase is
    /// then Failed, as Kubernetes shows a volume its plugin cannot delete).
    pub policy: kommit_schemas::model::storage::ReclaimPolicy,
    /// When its claim went.
    pub at: Millis,
}

/// Most released volumes the state keeps (oldest first out).
pub const MAX_RELEASED_VOLUMES: usize = 1024;
