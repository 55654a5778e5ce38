//! Core (v1) kinds: Namespace, Pod, Service, ConfigMap, Secret, PersistentVolumeClaim. The
//! pod spec lives in `pod`, the Service spec in `service` (re-exported here).

use super::meta::{ObjectMeta, Quantity};
use super::pod::PodSpec;
pub use super::service::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// v1 Namespace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Namespace {
    /// `v1`.
    #[schemars(extend("const" = "v1"))]
    pub api_version: String,
    /// `Namespace`.
    #[schemars(extend("const" = "Namespace"))]
    pub kind: String,
    /// The name (a DNS-1123 label) and labels.
    pub metadata: ObjectMeta,
}

/// v1 Pod.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Pod {
    /// `v1`.
    #[schemars(extend("const" = "v1"))]
    pub api_version: String,
    /// `Pod`.
    #[schemars(extend("const" = "Pod"))]
    pub kind: String,
    /// Name, namespace, labels.
    pub metadata: ObjectMeta,
    /// What runs.
    pub spec: PodSpec,
}

/// v1 Service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Service {
    /// `v1`.
    #[schemars(extend("const" = "v1"))]
    pub api_version: String,
    /// `Service`.
    #[schemars(extend("const" = "Service"))]
    pub kind: String,
    /// Name (a DNS-1123 label), namespace, labels.
    pub metadata: ObjectMeta,
    /// The service.
    pub spec: ServiceSpec,
}

/// v1 ConfigMap.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigMap {
    /// `v1`.
    #[schemars(extend("const" = "v1"))]
    pub api_version: String,
    /// `ConfigMap`.
    #[schemars(extend("const" = "ConfigMap"))]
    pub kind: String,
    /// Name, namespace, labels.
    pub metadata: ObjectMeta,
    /// Text values by key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
    /// Base64 values by key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub binary_data: BTreeMap<String, String>,
    /// Whether the data may never change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immutable: Option<bool>,
}

/// v1 Secret.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Secret {
    /// `v1`.
    #[schemars(extend("const" = "v1"))]
    pub api_version: String,
    /// `Secret`.
    #[schemars(extend("const" = "Secret"))]
    pub kind: String,
    /// Name, namespace, labels.
    pub metadata: ObjectMeta,
    /// The secret's type (default `Opaque`).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind_of_secret: Option<String>,
    /// Base64 values by key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
    /// Plain values by key, merged over `data`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub string_data: BTreeMap<String, String>,
    /// Whether the data may never change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immutable: Option<bool>,
    /// Present when the file is SOPS-encrypted: the data key per age recipient and the MAC.
    /// `data` and `stringData` then hold `ENC[AES256_GCM,...]` values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sops: Option<crate::sops::SopsMetadata>,
}

/// v1 PersistentVolumeClaim.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PersistentVolumeClaim {
    /// `v1`.
    #[schemars(extend("const" = "v1"))]
    pub api_version: String,
    /// `PersistentVolumeClaim`.
    #[schemars(extend("const" = "PersistentVolumeClaim"))]
    pub kind: String,
    /// Name, namespace, labels.
    pub metadata: ObjectMeta,
    /// The claim.
    pub spec: PersistentVolumeClaimSpec,
}

/// A claim's spec. kommit binds claims to node-local volumes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PersistentVolumeClaimSpec {
    /// ReadWriteOnce, ReadOnlyMany, ReadWriteMany or ReadWriteOncePod.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access_modes: Vec<AccessMode>,
    /// `requests.storage` is the size.
    pub resources: VolumeResources,
    /// The class; kommit has one local class and accepts any name for compatibility.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// Binds to a specific existing volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_name: Option<String>,
    /// Filesystem (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_mode: Option<VolumeMode>,
    /// Labels a pre-provisioned volume must carry to bind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<super::meta::LabelSelector>,
}

/// Volume access modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AccessMode {
    /// One node reads and writes.
    ReadWriteOnce,
    /// Many nodes read.
    ReadOnlyMany,
    /// Many nodes read and write.
    ReadWriteMany,
    /// One pod reads and writes.
    ReadWriteOncePod,
}

/// Volume modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum VolumeMode {
    /// A mounted filesystem.
    Filesystem,
}

/// Requested storage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeResources {
    /// Must hold `storage`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub requests: BTreeMap<String, Quantity>,
    /// Optional upper bound.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, Quantity>,
}
