//! The pod spec: containers, probes, volumes and placement constraints.
//!
//! Field names and shapes are Kubernetes' own (core/v1), restricted to what kommit runs.
//! Every struct denies unknown fields, so a Kubernetes field kommit does not implement is an
//! error that names it rather than something silently dropped.

use super::meta::{
    FileMode, IntOrString, Label, LabelSelector, Name, NonEmpty, Port, Quantity, TemplateMeta,
    Text, Weight,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Gives a type validated through `#[serde(try_from = "Raw")]` the JSON Schema of its raw
/// form, so the schema files describe exactly what deserialization accepts.
macro_rules! schema_via {
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
    /// ClusterFirst (default) or Default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_policy: Option<DnsPolicy>,
    /// The pod's hostname (defaults to the pod name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<Label>,
    /// With `hostname`, makes the pod `hostname.subdomain.ns.svc.<domain>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subdomain: Option<Label>,
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
    /// The node's resolver.
    Default,
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

/// A probe: one handler plus timing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[serde(try_from = "ProbeRaw")]
pub struct Probe {
    /// An HTTP GET that must answer 200-399.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_get: Option<HttpGetAction>,
    /// A TCP connect that must succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_socket: Option<TcpSocketAction>,
    /// A command that must exit 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecAction>,
    /// Seconds after start before the first probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_delay_seconds: Option<u32>,
    /// Seconds between probes (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_seconds: Option<u32>,
    /// Seconds before a probe times out (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u32>,
    /// Consecutive successes to count as passing (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_threshold: Option<u32>,
    /// Consecutive failures to count as failing (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_threshold: Option<u32>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("oneOf" = [
    {"required": ["httpGet"], "properties": {"httpGet": {"type": "object"}}}, {"required": ["tcpSocket"], "properties": {"tcpSocket": {"type": "object"}}}, {"required": ["exec"], "properties": {"exec": {"type": "object"}}}
]))]
struct ProbeRaw {
    /// An HTTP GET that must answer 200-399.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    http_get: Option<HttpGetAction>,
    /// A TCP connect that must succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tcp_socket: Option<TcpSocketAction>,
    /// A command that must exit 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exec: Option<ExecAction>,
    /// Seconds after start before the first probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    initial_delay_seconds: Option<u32>,
    /// Seconds between probes (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    period_seconds: Option<u32>,
    /// Seconds before a probe times out (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    timeout_seconds: Option<u32>,
    /// Consecutive successes to count as passing (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    success_threshold: Option<u32>,
    /// Consecutive failures to count as failing (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    failure_threshold: Option<u32>,
}

schema_via!(Probe, ProbeRaw);

impl TryFrom<ProbeRaw> for Probe {
    type Error = String;
    fn try_from(r: ProbeRaw) -> Result<Self, String> {
        let handlers = usize::from(r.http_get.is_some())
            + usize::from(r.tcp_socket.is_some())
            + usize::from(r.exec.is_some());
        if handlers != 1 {
            return Err("a probe needs exactly one of `httpGet`, `tcpSocket` or `exec`".into());
        }
        for (v, name, min) in [
            (r.period_seconds, "periodSeconds", 1),
            (r.timeout_seconds, "timeoutSeconds", 1),
            (r.success_threshold, "successThreshold", 1),
            (r.failure_threshold, "failureThreshold", 1),
        ] {
            if v.is_some_and(|v| v < min) {
                return Err(format!("probe `{name}` must be at least {min}"));
            }
        }
        Ok(Probe {
            http_get: r.http_get,
            tcp_socket: r.tcp_socket,
            exec: r.exec,
            initial_delay_seconds: r.initial_delay_seconds,
            period_seconds: r.period_seconds,
            timeout_seconds: r.timeout_seconds,
            success_threshold: r.success_threshold,
            failure_threshold: r.failure_threshold,
        })
    }
}

/// An HTTP GET probe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpGetAction {
    /// The path (default `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// A port number or a named container port.
    pub port: IntOrString,
    /// Defaults to the pod IP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// HTTP (default) or HTTPS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<Scheme>,
    /// Extra request headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http_headers: Vec<HttpHeader>,
}

/// URL schemes for HTTP probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS, without certificate verification (as Kubernetes).
    Https,
}

/// One HTTP header.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpHeader {
    /// Header name.
    pub name: String,
    /// Header value.
    pub value: String,
}

/// A TCP connect probe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpSocketAction {
    /// A port number or a named container port.
    pub port: IntOrString,
    /// Defaults to the pod IP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// A command run in the container.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecAction {
    /// The command and its arguments; not run in a shell.
    pub command: NonEmpty<String>,
}

/// Container lifecycle hooks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Lifecycle {
    /// Run right after the container starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_start: Option<LifecycleHandler>,
    /// Run before the container is sent SIGTERM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_stop: Option<LifecycleHandler>,
}

/// A lifecycle hook handler.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LifecycleHandler {
    /// A command run in the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecAction>,
    /// An HTTP GET.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_get: Option<HttpGetAction>,
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
}

/// A toleration of node taints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Toleration {
    /// The taint key; empty with `Exists` tolerates everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Equal (default) or Exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<TolerationOperator>,
    /// The taint value for Equal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The effect tolerated; every effect when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<TaintEffect>,
    /// For NoExecute: how long the pod stays after the taint appears.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toleration_seconds: Option<i64>,
}

/// Toleration operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TolerationOperator {
    /// Key and value must match.
    Equal,
    /// The key must match (any value).
    Exists,
}

/// Taint effects.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub enum TaintEffect {
    /// New pods are not placed.
    NoSchedule,
    /// New pods are avoided if possible.
    PreferNoSchedule,
    /// Running pods are evicted too.
    NoExecute,
}

/// Node affinity and pod anti-affinity.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Affinity {
    /// Constraints on node labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_affinity: Option<NodeAffinity>,
    /// Keeps pods away from pods matching a selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_anti_affinity: Option<PodAntiAffinity>,
}

/// Node affinity.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeAffinity {
    /// Hard constraint: the node must match one of the terms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_during_scheduling_ignored_during_execution: Option<NodeSelector>,
    /// Soft preferences, weighted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preferred_during_scheduling_ignored_during_execution: Vec<PreferredSchedulingTerm>,
}

/// Terms ORed together.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSelector {
    /// The node must match at least one term.
    pub node_selector_terms: NonEmpty<NodeSelectorTerm>,
}

/// Requirements ANDed together.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSelectorTerm {
    /// Requirements on node labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<NodeSelectorRequirement>,
}

/// A requirement on a node label.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSelectorRequirement {
    /// The label key.
    pub key: String,
    /// In, NotIn, Exists, DoesNotExist, Gt or Lt.
    pub operator: NodeSelectorOperator,
    /// The values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// Node selector operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum NodeSelectorOperator {
    /// Value in the set.
    In,
    /// Absent or value not in the set.
    NotIn,
    /// Present.
    Exists,
    /// Absent.
    DoesNotExist,
    /// Integer value greater than the single value given.
    Gt,
    /// Integer value less than the single value given.
    Lt,
}

/// A weighted node preference.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PreferredSchedulingTerm {
    /// 1 to 100.
    pub weight: Weight,
    /// The preferred labels.
    pub preference: NodeSelectorTerm,
}

/// Pod anti-affinity.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodAntiAffinity {
    /// Hard rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_during_scheduling_ignored_during_execution: Vec<PodAffinityTerm>,
    /// Soft rules, weighted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preferred_during_scheduling_ignored_during_execution: Vec<WeightedPodAffinityTerm>,
}

/// Pods matching `label_selector` in the same topology domain.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodAffinityTerm {
    /// Which pods.
    #[serde(default)]
    pub label_selector: LabelSelector,
    /// A node label naming the domain, e.g. `kubernetes.io/hostname`.
    pub topology_key: Text<1, 316>,
    /// Namespaces to look in; the pod's own when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<Label>,
}

/// A weighted anti-affinity preference.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WeightedPodAffinityTerm {
    /// 1 to 100.
    pub weight: Weight,
    /// The term.
    pub pod_affinity_term: PodAffinityTerm,
}

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
