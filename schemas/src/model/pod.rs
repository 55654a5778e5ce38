//! The pod spec: containers, probes, volumes and placement constraints.
//!
//! Field names and shapes are Kubernetes' own (core/v1), restricted to what kommit runs.
//! Every struct denies unknown fields, so a Kubernetes field kommit does not implement is an
//! error that names it rather than something silently dropped.

use super::meta::{Label, Name, NonEmpty, Port, Quantity, TemplateMeta, Text};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use super::placement::*;
pub use super::probe::*;
pub use super::volume::*;

/// Gives a type validated through `#[serde(try_from = "Raw")]` the JSON Schema of its raw
/// form, so the schema files describe exactly what deserialization accepts.
macro_rules! schema_via_impl {
    ($ty:ident, $raw:ident) => {
        impl JsonSchema for $ty {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($ty).into()
            }
            fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
                $raw::json_schema(g)
            }
        }
    };
}
pub(crate) use schema_via_impl as schema_via;

/// A pod template, as in Deployments and other workloads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodTemplateSpec {
    /// Labels and annotations of the pods.
    #[serde(default)]
    pub metadata: TemplateMeta,
    /// The pods' spec.
    pub spec: PodSpec,
}

/// What runs in a pod and where it may run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodSpec {
    /// The containers, started after the init containers succeed.
    pub containers: NonEmpty<Container>,
    /// Containers run to completion, in order, before the others start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub init_containers: Vec<Container>,
    /// Always (default), OnFailure or Never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<RestartPolicy>,
    /// Node labels the pod requires.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Taints the pod tolerates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Node affinity and pod anti-affinity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Seconds between SIGTERM and SIGKILL (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_grace_period_seconds: Option<u32>,
    /// Pod volumes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    /// Pod-level security settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<PodSecurityContext>,
    /// ClusterFirst (default), ClusterFirstWithHostNet, Default or None.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_policy: Option<DnsPolicy>,
    /// Nameservers, search domains and options merged into the pod's resolv.conf (with
    /// `dnsPolicy: None`, all of it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_config: Option<PodDnsConfig>,
    /// The pod's hostname (defaults to the pod name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<Label>,
    /// With `hostname`, makes the pod `hostname.subdomain.ns.svc.<domain>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subdomain: Option<Label>,
    /// Secrets of type `kubernetes.io/dockerconfigjson` holding credentials for pulling the
    /// pod's images.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,
}

/// A reference to an object in the same namespace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalObjectReference {
    /// The object's name.
    pub name: Name,
}

/// Pod restart policies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RestartPolicy {
    /// Restart whenever a container exits.
    Always,
    /// Restart only on a non-zero exit.
    OnFailure,
    /// Never restart.
    Never,
}

/// Pod DNS policies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DnsPolicy {
    /// The cluster resolver, then upstream.
    ClusterFirst,
    /// As ClusterFirst (kommit pods never use the host's network).
    ClusterFirstWithHostNet,
    /// The node's resolver.
    Default,
    /// Only `dnsConfig`, which must then name at least one nameserver.
    None,
}

/// Most nameservers in `dnsConfig` (Kubernetes' `MaxDNSNameservers`, glibc's MAXNS).
pub const MAX_DNS_NAMESERVERS: usize = 3;
/// Most search domains in `dnsConfig` (Kubernetes' `MaxDNSSearchPaths`).
pub const MAX_DNS_SEARCHES: usize = 32;
/// Longest search list, domains joined by spaces (Kubernetes' `MaxDNSSearchListChars`).
pub const MAX_DNS_SEARCH_CHARS: usize = 2048;

/// A pod's `dnsConfig`: merged into its resolv.conf as the kubelet does. Bounds and
/// address syntax are checked in `checks` with Kubernetes' limits.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodDnsConfig {
    /// Nameserver IP addresses (at most 3).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    /// Search domains (at most 32, 2048 characters together).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub searches: Vec<String>,
    /// Resolver options such as `ndots: "2"` or `edns0`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<PodDnsConfigOption>,
}

/// One resolver option of `dnsConfig`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodDnsConfigOption {
    /// The option's name (required).
    pub name: String,
    /// Its value, if it takes one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// One container.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Container {
    /// Unique within the pod.
    pub name: Label,
    /// An image reference.
    pub image: Text<1, 1024>,
    /// Always, IfNotPresent or Never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,
    /// Overrides the image's entrypoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Overrides the image's cmd.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// The working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Environment variables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Environment variables taken from every key of a ConfigMap or Secret.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_from: Vec<EnvFromSource>,
    /// Ports the container listens on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ContainerPort>,
    /// Requests and limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Where volumes are mounted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
    /// Restarts the container when it fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<Probe>,
    /// Gates traffic to the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<Probe>,
    /// Holds the other probes back until it succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_probe: Option<Probe>,
    /// Container-level security settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<SecurityContext>,
    /// Hooks run after start and before stop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<Lifecycle>,
}

/// Image pull policies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PullPolicy {
    /// Pull on every start.
    Always,
    /// Pull only when missing.
    IfNotPresent,
    /// Never pull.
    Never,
}

/// One environment variable: a literal value or a reference.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[serde(try_from = "EnvVarRaw")]
pub struct EnvVar {
    /// The variable's name.
    pub name: String,
    /// A literal value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// A value taken from a ConfigMap, Secret or the pod's own fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<EnvVarSource>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("not" = {"required": ["value", "valueFrom"]}))]
struct EnvVarRaw {
    /// The variable's name.
    #[schemars(length(min = 1))]
    name: String,
    /// A literal value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    /// A value taken from a ConfigMap, Secret or the pod's own fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value_from: Option<EnvVarSource>,
}

schema_via!(EnvVar, EnvVarRaw);

impl TryFrom<EnvVarRaw> for EnvVar {
    type Error = String;
    fn try_from(r: EnvVarRaw) -> Result<Self, String> {
        if r.name.is_empty() {
            return Err("env var name must not be empty".into());
        }
        if r.value.is_some() && r.value_from.is_some() {
            return Err(format!(
                "env var `{}` sets both `value` and `valueFrom`",
                r.name
            ));
        }
        Ok(EnvVar {
            name: r.name,
            value: r.value,
            value_from: r.value_from,
        })
    }
}

/// Where an environment variable's value comes from: exactly one source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[serde(try_from = "EnvVarSourceRaw")]
pub struct EnvVarSource {
    /// A key of a ConfigMap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<KeySelector>,
    /// A key of a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<KeySelector>,
    /// A field of the pod (metadata.name, metadata.namespace, status.podIP, spec.nodeName, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_ref: Option<FieldSelector>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("oneOf" = [
    {"required": ["configMapKeyRef"], "properties": {"configMapKeyRef": {"type": "object"}}}, {"required": ["secretKeyRef"], "properties": {"secretKeyRef": {"type": "object"}}}, {"required": ["fieldRef"], "properties": {"fieldRef": {"type": "object"}}}
]))]
struct EnvVarSourceRaw {
    /// A key of a ConfigMap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    config_map_key_ref: Option<KeySelector>,
    /// A key of a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret_key_ref: Option<KeySelector>,
    /// A field of the pod (metadata.name, metadata.namespace, status.podIP, spec.nodeName, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    field_ref: Option<FieldSelector>,
}

schema_via!(EnvVarSource, EnvVarSourceRaw);

impl TryFrom<EnvVarSourceRaw> for EnvVarSource {
    type Error = String;
    fn try_from(r: EnvVarSourceRaw) -> Result<Self, String> {
        let n = usize::from(r.config_map_key_ref.is_some())
            + usize::from(r.secret_key_ref.is_some())
            + usize::from(r.field_ref.is_some());
        if n != 1 {
            return Err(
                "`valueFrom` needs exactly one of `configMapKeyRef`, `secretKeyRef` or `fieldRef`"
                    .into(),
            );
        }
        Ok(EnvVarSource {
            config_map_key_ref: r.config_map_key_ref,
            secret_key_ref: r.secret_key_ref,
            field_ref: r.field_ref,
        })
    }
}

/// A key of a ConfigMap or Secret.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeySelector {
    /// The object's name.
    pub name: Name,
    /// The key.
    pub key: Text<1, 253>,
    /// Whether a missing object or key is allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

/// A field of the pod, by path.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FieldSelector {
    /// The field, one of the supported paths.
    pub field_path: FieldPath,
    /// Ignored; accepted for compatibility ("v1").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
}

/// The pod fields an env var can reference (the downward API).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum FieldPath {
    /// The pod's name.
    #[serde(rename = "metadata.name")]
    Name,
    /// The pod's namespace.
    #[serde(rename = "metadata.namespace")]
    Namespace,
    /// The pod's uid.
    #[serde(rename = "metadata.uid")]
    Uid,
    /// The node the pod runs on.
    #[serde(rename = "spec.nodeName")]
    NodeName,
    /// The pod's IP.
    #[serde(rename = "status.podIP")]
    PodIp,
    /// The node's IP.
    #[serde(rename = "status.hostIP")]
    HostIp,
}

/// Every key of a ConfigMap or Secret as environment variables.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvFromSource {
    /// Prepended to every key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// A ConfigMap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<ObjectRef>,
    /// A Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<ObjectRef>,
}

/// A reference to an object by name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectRef {
    /// The object's name.
    pub name: Name,
    /// Whether a missing object is allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

/// A port a container listens on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerPort {
    /// An IANA service name, referenced by services and probes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Label>,
    /// The port.
    pub container_port: Port,
    /// TCP (default) or UDP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    /// A port on the node forwarded to this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<Port>,
}

/// Transport protocols.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

/// Resource requests and limits, by resource name (`cpu`, `memory`, `ephemeral-storage`,
/// `pods`, or an extended resource such as `nvidia.com/gpu`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceRequirements {
    /// What the scheduler reserves.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub requests: BTreeMap<String, Quantity>,
    /// What the runtime enforces.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, Quantity>,
}

/// Where a volume is mounted in a container.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeMount {
    /// The pod volume's name.
    pub name: Label,
    /// An absolute path in the container.
    pub mount_path: Text<1, 4096>,
    /// Mount read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    /// A path inside the volume to mount instead of its root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_path: Option<String>,
}

/// Container security settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecurityContext {
    /// The uid of the process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_user: Option<u32>,
    /// The gid of the process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_group: Option<u32>,
    /// Refuse to start when the user would be root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_non_root: Option<bool>,
    /// Mount the root filesystem read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only_root_filesystem: Option<bool>,
    /// Full capabilities and devices; denied unless `kommit.yaml` allows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privileged: Option<bool>,
    /// Whether the process may gain privileges (no_new_privs when false; default false in kommit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_privilege_escalation: Option<bool>,
    /// Capabilities added to or dropped from the default set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Capabilities>,
    /// The system-call filter; overrides the pod's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp_profile: Option<SeccompProfile>,
}

/// A seccomp profile (`securityContext.seccompProfile`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeccompProfile {
    /// Which filter applies.
    #[serde(rename = "type")]
    pub kind: SeccompProfileType,
}

/// Seccomp profile types. kommit applies `RuntimeDefault` when none is given (as the kubelet
/// does with `--seccomp-default`); node-local `Localhost` profiles are not supported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SeccompProfileType {
    /// The container runtimes' default filter: an allowlist of system calls, widened by the
    /// container's capabilities.
    RuntimeDefault,
    /// No filter.
    Unconfined,
}

/// Capability changes, by name without the `CAP_` prefix.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Capabilities {
    /// Added to the default set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<String>,
    /// Removed from the default set (`ALL` removes every one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drop: Vec<String>,
}

/// Pod security settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodSecurityContext {
    /// Default uid for every container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_user: Option<u32>,
    /// Default gid for every container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_group: Option<u32>,
    /// Refuse to start containers whose user would be root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_non_root: Option<bool>,
    /// The group that owns volumes, added to every container's groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fs_group: Option<u32>,
    /// Extra groups for every container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supplemental_groups: Vec<u32>,
    /// The default system-call filter of every container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp_profile: Option<SeccompProfile>,
}
