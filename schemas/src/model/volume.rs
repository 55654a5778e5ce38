//! Pod volumes and their sources.

use super::meta::{FileMode, Label, Name, Quantity, Text};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::pod::schema_via;

/// A pod volume: a name and exactly one source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[serde(try_from = "VolumeRaw")]
pub struct Volume {
    /// Referenced by volume mounts.
    pub name: Label,
    /// Scratch space that lives as long as the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_dir: Option<EmptyDirSource>,
    /// A directory of the node; only under allowlisted paths.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<HostPathSource>,
    /// The keys of a ConfigMap as files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapVolumeSource>,
    /// The keys of a Secret as files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretVolumeSource>,
    /// A claim's bound volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim: Option<PvcSource>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("oneOf" = [
    {"required": ["emptyDir"], "properties": {"emptyDir": {"type": "object"}}}, {"required": ["hostPath"], "properties": {"hostPath": {"type": "object"}}}, {"required": ["configMap"], "properties": {"configMap": {"type": "object"}}},
    {"required": ["secret"], "properties": {"secret": {"type": "object"}}}, {"required": ["persistentVolumeClaim"], "properties": {"persistentVolumeClaim": {"type": "object"}}}
]))]
struct VolumeRaw {
    /// Referenced by volume mounts.
    name: Label,
    /// Scratch space that lives as long as the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    empty_dir: Option<EmptyDirSource>,
    /// A directory of the node; only under allowlisted paths.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    host_path: Option<HostPathSource>,
    /// The keys of a ConfigMap as files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    config_map: Option<ConfigMapVolumeSource>,
    /// The keys of a Secret as files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret: Option<SecretVolumeSource>,
    /// A claim's bound volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    persistent_volume_claim: Option<PvcSource>,
}

schema_via!(Volume, VolumeRaw);

impl TryFrom<VolumeRaw> for Volume {
    type Error = String;
    fn try_from(r: VolumeRaw) -> Result<Self, String> {
        let n = usize::from(r.empty_dir.is_some())
            + usize::from(r.host_path.is_some())
            + usize::from(r.config_map.is_some())
            + usize::from(r.secret.is_some())
            + usize::from(r.persistent_volume_claim.is_some());
        if n != 1 {
            return Err(format!(
                "volume `{}` needs exactly one of `emptyDir`, `hostPath`, `configMap`, `secret` or `persistentVolumeClaim`",
                r.name
            ));
        }
        Ok(Volume {
            name: r.name,
            empty_dir: r.empty_dir,
            host_path: r.host_path,
            config_map: r.config_map,
            secret: r.secret,
            persistent_volume_claim: r.persistent_volume_claim,
        })
    }
}

/// An emptyDir volume.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EmptyDirSource {
    /// "" (node disk, default) or "Memory" (tmpfs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub medium: Option<StorageMedium>,
    /// The most the volume may hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_limit: Option<Quantity>,
}

/// emptyDir media.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum StorageMedium {
    /// The node's disk.
    #[serde(rename = "")]
    Default,
    /// tmpfs.
    Memory,
}

/// A hostPath volume.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostPathSource {
    /// An absolute path on the node.
    pub path: Text<1, 4096>,
    /// What must be at the path.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<HostPathType>,
}

/// hostPath types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum HostPathType {
    /// No check.
    #[serde(rename = "")]
    Unset,
    /// Create an empty directory if nothing is there.
    DirectoryOrCreate,
    /// A directory must exist.
    Directory,
    /// Create an empty file if nothing is there.
    FileOrCreate,
    /// A file must exist.
    File,
    /// A Unix socket must exist.
    Socket,
}

/// ConfigMap keys as files.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigMapVolumeSource {
    /// The ConfigMap.
    pub name: Name,
    /// Only these keys, at these paths.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<KeyToPath>,
    /// File mode bits (default 0644).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_mode: Option<FileMode>,
    /// Whether a missing ConfigMap is allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

/// Secret keys as files.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretVolumeSource {
    /// The Secret.
    pub secret_name: Name,
    /// Only these keys, at these paths.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<KeyToPath>,
    /// File mode bits (default 0644).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_mode: Option<FileMode>,
    /// Whether a missing Secret is allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

/// One key projected to a relative path.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyToPath {
    /// The key.
    pub key: String,
    /// A relative path without `..`.
    pub path: String,
    /// File mode bits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<FileMode>,
}

/// A claim reference.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PvcSource {
    /// The claim in the pod's namespace.
    pub claim_name: Name,
    /// Mount read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
}
