//! Core (v1) kinds other than Pod: Namespace, Service, ConfigMap, Secret,
//! PersistentVolumeClaim. Pod itself is here too, its spec lives in `pod`.

use super::meta::{IntOrString, Label, ObjectMeta, Port, Quantity};
use super::pod::{PodSpec, Protocol};
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

/// A Service's spec.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceSpec {
    /// ClusterIP (default) or NodePort.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<ServiceType>,
    /// Pods whose labels match are endpoints. Without a selector the service has none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selector: BTreeMap<String, String>,
    /// The ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ServicePort>,
    /// "None" for a headless service; otherwise allocated by kommit when absent.
    #[serde(default, rename = "clusterIP", skip_serializing_if = "Option::is_none")]
    pub cluster_ip: Option<String>,
    /// None (default) or ClientIP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_affinity: Option<SessionAffinity>,
    /// Publish endpoints of pods that are not ready (StatefulSet peer discovery).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_not_ready_addresses: Option<bool>,
}

/// Service types kommit implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ServiceType {
    /// A virtual IP inside the cluster.
    #[serde(rename = "ClusterIP")]
    ClusterIp,
    /// A virtual IP plus a port on every node.
    NodePort,
}

/// Session affinity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SessionAffinity {
    /// Balance every connection.
    None,
    /// Keep a client on one endpoint.
    #[serde(rename = "ClientIP")]
    ClientIp,
}

/// One service port.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServicePort {
    /// Required when there are several ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Label>,
    /// TCP (default) or UDP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    /// The service port.
    pub port: Port,
    /// The pods' port, by number or container port name (default: `port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<IntOrString>,
    /// The node port for NodePort services (allocated when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_port: Option<Port>,
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
