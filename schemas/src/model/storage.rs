//! storage.k8s.io/v1 StorageClass: which provisioner makes a claim's volume. kommit has one,
//! `kommit.dev/local-path` (k3s' `rancher.io/local-path` is read as the same), behind the
//! default class `local-path`; a claim of a class with another provisioner stays Pending
//! unless a pre-provisioned volume matches it, as it would in a cluster without that
//! provisioner.
//!
//! v1 PersistentVolume: a pre-provisioned node-local volume (`local` or `hostPath`), bound to
//! claims by Kubernetes' rules (class, access modes, capacity, selector, the smallest that
//! fits).

use super::core::{AccessMode, VolumeMode};
use super::meta::{ObjectMeta, Quantity, Text};
use super::placement::NodeSelector;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// storage.k8s.io/v1 StorageClass.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StorageClass {
    /// `storage.k8s.io/v1`.
    #[schemars(extend("const" = "storage.k8s.io/v1"))]
    pub api_version: String,
    /// `StorageClass`.
    #[schemars(extend("const" = "StorageClass"))]
    pub kind: String,
    /// The class's name (cluster-scoped), labels, annotations.
    pub metadata: ObjectMeta,
    /// The provisioner, e.g. `kommit.dev/local-path`.
    #[schemars(length(min = 1, max = 253))]
    pub provisioner: String,
    /// Provisioner parameters (kommit's provisioner takes none).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, String>,
    /// Delete (default) or Retain, for volumes this class makes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reclaim_policy: Option<ReclaimPolicy>,
    /// Immediate (default) or WaitForFirstConsumer; local volumes always wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_binding_mode: Option<VolumeBindingMode>,
    /// Whether claims may grow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_volume_expansion: Option<bool>,
    /// Mount options for the volumes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mount_options: Vec<String>,
}

/// What happens to a volume when its claim goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ReclaimPolicy {
    /// The volume and its data go.
    Delete,
    /// The volume stays.
    Retain,
}

/// When a claim binds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum VolumeBindingMode {
    /// At once.
    Immediate,
    /// When the first pod using it is scheduled.
    WaitForFirstConsumer,
}

/// v1 PersistentVolume, node-local: `local` or `hostPath`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PersistentVolume {
    /// `v1`.
    #[schemars(extend("const" = "v1"))]
    pub api_version: String,
    /// `PersistentVolume`.
    #[schemars(extend("const" = "PersistentVolume"))]
    pub kind: String,
    /// The volume's name (cluster-scoped), labels (claims' selectors match them).
    pub metadata: ObjectMeta,
    /// The volume.
    pub spec: PersistentVolumeSpec,
}

/// A pre-provisioned volume's spec.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PersistentVolumeSpec {
    /// Must hold `storage`, the size.
    pub capacity: BTreeMap<String, Quantity>,
    /// ReadWriteOnce, ReadOnlyMany, ReadWriteMany or ReadWriteOncePod.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access_modes: Vec<AccessMode>,
    /// Retain (default for pre-provisioned volumes) or Delete, when its claim goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_reclaim_policy: Option<ReclaimPolicy>,
    /// The class claims must name to bind it (absent: claims naming `""`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// The nodes that hold it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_affinity: Option<VolumeNodeAffinity>,
    /// A local disk or directory on the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<LocalVolumeSource>,
    /// A directory on the node (allowlisted in `kommit.yaml`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<super::volume::HostPathSource>,
    /// Filesystem (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_mode: Option<VolumeMode>,
    /// Mount options.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mount_options: Vec<String>,
    /// The claim it is reserved for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_ref: Option<ClaimRef>,
}

impl PersistentVolumeSpec {
    /// The node path of its data.
    pub fn path(&self) -> Option<&str> {
        self.local
            .as_ref()
            .map(|l| l.path.as_str())
            .or_else(|| self.host_path.as_ref().map(|h| h.path.as_str()))
    }
}

/// The nodes that hold a volume.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeNodeAffinity {
    /// A pod using the volume runs only on a node matching one of the terms.
    pub required: NodeSelector,
}

/// A local volume's path.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalVolumeSource {
    /// The absolute path on the node.
    pub path: Text<1, 4096>,
    /// The filesystem type (informational: kommit binds a directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fs_type: Option<String>,
}

/// The claim a volume is reserved for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimRef {
    /// `PersistentVolumeClaim` when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// `v1` when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// The claim's namespace (default `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The claim's name.
    pub name: String,
}
