//! Probes and lifecycle hooks of a container.

use super::meta::{IntOrString, NonEmpty};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::pod::schema_via;

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
