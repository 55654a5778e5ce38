//! storage.k8s.io/v1 StorageClass: which provisioner makes a claim's volume. kommit has one,
//! `kommit.dev/local-path` (k3s' `rancher.io/local-path` is read as the same), behind the
//! default class `local-path`; a claim of a class with another provisioner stays Pending,
//! as it would in a cluster without that provisioner.

use super::meta::ObjectMeta;
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
