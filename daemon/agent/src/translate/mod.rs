//! A pod bound to this node, as the replicated state holds it, becomes the runtime's specs.
//!
//! Pure: the pod record, the adopted desired state (ConfigMaps, Secrets, cluster settings) and
//! the node's facts go in; a [`PodPlan`] comes out, or the Kubernetes reason why the pod
//! cannot be configured (`CreateContainerConfigError`, with a message naming the object and
//! key). Nothing here reads a file, a clock or the environment.

use ipnet::Ipv4Net;
use kommit_reconcilers::{Owner, PodRecord};
use kommit_runtime::spec::{
    ContainerSpec, PodSpec as SandboxSpec, PortMapping, Resources, Seccomp, Security,
};
use kommit_runtime::traits::{
    HostPathKind, Medium, PodAddress, ProjectedFile, RegistryCredentials,
};
use kommit_schemas::model::pod::{
    Container, FieldPath, Probe, Protocol, PullPolicy, RestartPolicy,
};
use kommit_schemas::DesiredState;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

/// Sandbox label holding the pod's `namespace/name`.
pub const LABEL_POD: &str = "kommit.dev/pod";
/// Sandbox label holding the pod's UID.
pub const LABEL_UID: &str = "kommit.dev/uid";
/// Sandbox label holding the owner's kind (the fence stops `StatefulSet` pods).
pub const LABEL_OWNER_KIND: &str = "kommit.dev/owner-kind";
/// Sandbox label (and pod annotation) marking a pod that must never run twice.
pub const LABEL_AT_MOST_ONCE: &str = "kommit.dev/at-most-once";
/// Sandbox label marking a node's static pod (`true`), from its `--static-pods` directory.
pub const LABEL_STATIC: &str = "kommit.dev/static";
/// Sandbox label holding the pod's termination grace in milliseconds (used when the pod is
/// removed after its spec is gone from the state).
pub const LABEL_GRACE_MS: &str = "kommit.dev/grace-ms";

/// Default grace between SIGTERM and SIGKILL, as Kubernetes.
pub const DEFAULT_GRACE_SECONDS: u32 = 30;
/// Most bytes of one projected volume (ConfigMaps and Secrets are at most 1 MiB in Kubernetes).
pub const MAX_PROJECTED_BYTES: usize = 8 << 20;

/// What the agent knows about its own node.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeContext {
    /// The node's name.
    pub name: String,
    /// The node's IP (`status.hostIP`).
    pub host_ip: String,
    /// The node's pod CIDR from the replicated state.
    pub pod_cidr: Option<Ipv4Net>,
    /// The node's own `/etc/resolv.conf`, as text: what `dnsPolicy: Default` pods get, and
    /// the search domains and options cluster-first pods inherit, as the kubelet merges them.
    pub host_resolv_conf: String,
    /// The age identities this node opens SOPS-encrypted Secrets with.
    pub secrets: SecretKeys,
    /// Claims bound to volumes on this node, by `namespace/name`: what a pod's
    /// `persistentVolumeClaim` volumes mount.
    pub claims: BTreeMap<String, ClaimVolume>,
}

/// A claim bound to a volume on this node, as its pods mount it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimVolume {
    /// [`VolumePlan::Local`] for a local-path volume, [`VolumePlan::HostPath`] for a
    /// pre-provisioned one.
    pub plan: VolumePlan,
    /// `ReadOnlyMany` is its only access mode: every mount of it is read-only.
    pub read_only: bool,
}

impl NodeContext {
    /// The cluster DNS server pods on this node use: the gateway of the node's pod CIDR,
    /// where the daemon serves DNS.
    pub fn cluster_dns(&self) -> Option<std::net::Ipv4Addr> {
        self.pod_cidr
            .as_ref()
            .and_then(kommit_runtime::network::gateway)
    }
}

/// How to run one probe or hook handler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Handler {
    /// A command in the container; success is exit 0.
    Exec(Vec<String>),
    /// A TCP connect to the pod (or `host`).
    Tcp {
        /// Host to dial; the pod IP when None.
        host: Option<String>,
        /// Port number (named ports resolved).
        port: u16,
    },
    /// An HTTP GET; success is a status in 200..400.
    Http {
        /// Host to dial; the pod IP when None.
        host: Option<String>,
        /// Port number (named ports resolved).
        port: u16,
        /// Path, `/` by default.
        path: String,
        /// Whether to use TLS (without verification, as the kubelet).
        https: bool,
        /// Extra headers.
        headers: Vec<(String, String)>,
    },
}

/// A probe with its timing, defaults filled in as Kubernetes does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeSpec {
    /// What to run.
    pub handler: Handler,
    /// Seconds after the container started before the first probe.
    pub initial_delay_s: u32,
    /// Seconds between probes.
    pub period_s: u32,
    /// Seconds before one probe counts as failed.
    pub timeout_s: u32,
    /// Consecutive successes that make it pass.
    pub success_threshold: u32,
    /// Consecutive failures that make it fail.
    pub failure_threshold: u32,
}

/// The three probes of a container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Probes {
    /// Holds the others back until it passes.
    pub startup: Option<ProbeSpec>,
    /// Gates the Ready condition.
    pub readiness: Option<ProbeSpec>,
    /// Restarts the container when it fails.
    pub liveness: Option<ProbeSpec>,
}

/// Where one volume goes in a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountPlan {
    /// The pod volume's name.
    pub volume: String,
    /// Absolute path in the container.
    pub destination: String,
    /// Read-only.
    pub read_only: bool,
    /// A path inside the volume.
    pub sub_path: Option<String>,
}

/// One container, ready for the runtime but for its volume paths and attempt number.
#[derive(Clone, Debug, PartialEq)]
pub struct ContainerPlan {
    /// The runtime spec; `name` is the container's name (the executor adds the attempt).
    pub spec: ContainerSpec,
    /// When to pull its image.
    pub pull: PullPolicy,
    /// Its probes.
    pub probes: Probes,
    /// Its volume mounts.
    pub mounts: Vec<MountPlan>,
    /// Run after it starts.
    pub post_start: Option<Handler>,
    /// Run before it is stopped.
    pub pre_stop: Option<Handler>,
}

/// One pod volume, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VolumePlan {
    /// Scratch space.
    EmptyDir {
        /// Disk or memory.
        medium: Medium,
        /// Size limit in bytes.
        size_limit: Option<u64>,
    },
    /// Files from ConfigMaps, Secrets or the pod's own fields.
    Projected {
        /// Relative path -> content and mode.
        files: BTreeMap<String, ProjectedFile>,
        /// `Memory` for Secrets: a tmpfs, so their plaintext never reaches the disk.
        medium: Medium,
    },
    /// A node directory or file (already checked against the allowlist).
    HostPath {
        /// Absolute path on the node.
        path: String,
        /// What must be there.
        kind: HostPathKind,
    },
    /// A node-local persistent volume (a local-path claim's `pvc-<uid>`), made on first
    /// use under the node's data dir and kept across pods.
    Local {
        /// The volume's name.
        name: String,
    },
}

impl VolumePlan {
    /// A digest of the content, so the executor re-projects only what changed.
    pub fn digest(&self) -> String {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        match self {
            VolumePlan::EmptyDir { medium, size_limit } => {
                h.update(format!("empty:{medium:?}:{size_limit:?}"));
            }
            VolumePlan::HostPath { path, kind } => h.update(format!("host:{path}:{kind:?}")),
            VolumePlan::Local { name } => h.update(format!("local:{name}")),
            VolumePlan::Projected { files, medium } => {
                h.update(format!("{medium:?}:"));
                for (p, f) in files {
                    h.update(format!("{}:{}:{}:", p.len(), p, f.mode));
                    h.update((f.data.len() as u64).to_be_bytes());
                    h.update(&f.data);
                }
            }
        }
        hex::encode(h.finalize())
    }
}

/// Everything the agent needs to run one pod.
#[derive(Clone, Debug, PartialEq)]
pub struct PodPlan {
    /// `namespace/name`.
    pub key: String,
    /// The pod's UID.
    pub uid: String,
    /// The runtime sandbox.
    pub sandbox: SandboxSpec,
    /// Its address from the replicated state.
    pub address: Option<PodAddress>,
    /// hostPort mappings.
    pub ports: Vec<PortMapping>,
    /// Init containers, in order.
    pub init: Vec<ContainerPlan>,
    /// Regular containers.
    pub containers: Vec<ContainerPlan>,
    /// Always, OnFailure or Never.
    pub restart_policy: RestartPolicy,
    /// Milliseconds between SIGTERM and SIGKILL.
    pub grace_ms: u64,
    /// Volumes by name.
    pub volumes: BTreeMap<String, VolumePlan>,
    /// Why it cannot run as specified (`CreateContainerConfigError`), if so.
    pub config_error: Option<String>,
    /// Registry credentials from the pod's `imagePullSecrets`, by registry host.
    pub pull_credentials: BTreeMap<String, RegistryCredentials>,
}

impl PodPlan {
    /// The sandbox id.
    pub fn id(&self) -> &str {
        &self.sandbox.id
    }

    /// Every container plan, init containers first.
    pub fn all_containers(&self) -> impl Iterator<Item = &ContainerPlan> {
        self.init.iter().chain(self.containers.iter())
    }
}

/// The runtime sandbox id of a pod: `namespace_name_uid16`, within the runtime's name rules.
pub fn sandbox_id(namespace: &str, name: &str, uid: &str) -> String {
    let uid: String = uid
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(16)
        .collect::<String>()
        .to_ascii_lowercase();
    let mut head = format!("{namespace}_{name}");
    let room = kommit_runtime::spec::MAX_NAME_LEN - 1 - uid.len();
    if head.len() > room {
        head.truncate(room);
    }
    format!("{head}_{uid}")
}

/// The kind of a pod's owner, as a Kubernetes kind name.
pub fn owner_kind(owner: &Owner) -> &'static str {
    match owner {
        Owner::Pod(_) => "Pod",
        Owner::ReplicaSet(_) => "ReplicaSet",
        Owner::DaemonSet(_) => "DaemonSet",
        Owner::StatefulSet(_) => "StatefulSet",
        Owner::Job(_) => "Job",
        // Kubernetes' mirror pods name their node as owner.
        Owner::Static(_) => "Node",
    }
}

/// Translates a bound pod. `annotations` are the pod template's annotations.
pub fn translate(
    pod: &PodRecord,
    annotations: &BTreeMap<String, String>,
    desired: &DesiredState,
    node: &NodeContext,
) -> PodPlan {
    let spec = &pod.spec;
    let id = sandbox_id(&pod.namespace, &pod.name, &pod.uid);
    let mut labels = BTreeMap::from([
        (
            LABEL_POD.to_string(),
            format!("{}.{}", pod.namespace, pod.name),
        ),
        (LABEL_UID.to_string(), label_value(&pod.uid)),
        (
            LABEL_OWNER_KIND.to_string(),
            owner_kind(&pod.owner).to_string(),
        ),
    ]);
    let grace_ms = u64::from(
        spec.termination_grace_period_seconds
            .unwrap_or(DEFAULT_GRACE_SECONDS),
    ) * 1000;
    labels.insert(LABEL_GRACE_MS.into(), grace_ms.to_string());
    if annotations.get(LABEL_AT_MOST_ONCE).map(String::as_str) == Some("true") {
        labels.insert(LABEL_AT_MOST_ONCE.into(), "true".into());
    }
    if matches!(pod.owner, Owner::Static(_)) {
        labels.insert(LABEL_STATIC.into(), "true".into());
    }
    let hostname = spec
        .hostname
        .as_ref()
        .map(|h| h.as_str().to_string())
        .unwrap_or_else(|| pod.name.chars().take(63).collect());
    let sandbox = SandboxSpec {
        id: id.clone(),
        hostname,
        resolv_conf: resolv_conf(pod, desired, node),
        extra_hosts: Vec::new(),
        labels,
    };
    let address = match (pod.pod_ip, node.pod_cidr) {
        (Some(ip), Some(cidr)) => Some(PodAddress { ip, cidr }),
        _ => None,
    };
    let mut errors = Vec::new();
    let fields = Fields {
        pod,
        node,
        pod_ip: pod.pod_ip,
    };
    let mut ports = Vec::new();
    for c in spec.containers.iter() {
        for p in &c.ports {
            if let Some(hp) = p.host_port {
                ports.push(PortMapping {
                    protocol: match p.protocol.unwrap_or(Protocol::Tcp) {
                        Protocol::Tcp => "tcp".into(),
                        Protocol::Udp => "udp".into(),
                    },
                    host_port: hp.get() as u16,
                    container_port: p.container_port.get() as u16,
                });
            }
        }
    }
    let psc = spec.security_context.clone().unwrap_or_default();
    let mut container =
        |c: &Container| container_plan(c, &psc, &pod.namespace, desired, &fields, &mut errors);
    let mut init: Vec<ContainerPlan> = spec.init_containers.iter().map(&mut container).collect();
    let mut containers: Vec<ContainerPlan> = spec.containers.iter().map(&mut container).collect();
    let mut volumes = BTreeMap::new();
    for v in &spec.volumes {
        match volume_plan(v, &pod.namespace, desired, &fields) {
            Ok(Some(p)) => {
                volumes.insert(v.name.as_str().to_string(), p);
            }
            Ok(None) => {}
            Err(e) => errors.push(e),
        }
    }
    // Claims mounted read-only: `readOnly` in the pod's volume, or a `ReadOnlyMany` claim.
    let read_only: BTreeSet<&str> = spec
        .volumes
        .iter()
        .filter(|v| {
            v.persistent_volume_claim.as_ref().is_some_and(|c| {
                c.read_only == Some(true)
                    || node
                        .claims
                        .get(&format!("{}/{}", pod.namespace, c.claim_name.as_str()))
                        .is_some_and(|cv| cv.read_only)
            })
        })
        .map(|v| v.name.as_str())
        .collect();
    for c in init.iter_mut().chain(containers.iter_mut()) {
        for m in &mut c.mounts {
            m.read_only |= read_only.contains(m.volume.as_str());
        }
    }
    PodPlan {
        key: pod.key(),
        uid: pod.uid.clone(),
        sandbox,
        address,
        ports,
        init,
        containers,
        restart_policy: spec.restart_policy.unwrap_or(RestartPolicy::Always),
        grace_ms,
        volumes,
        config_error: (!errors.is_empty()).then(|| errors.join("; ")),
        pull_credentials: pull_credentials(spec, &pod.namespace, desired, &node.secrets),
    }
}

/// A label value made of at most 63 label-safe characters.
fn label_value(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(63)
        .collect()
}

/// The pod's own fields, for the downward API.
pub(super) struct Fields<'a> {
    pod: &'a PodRecord,
    node: &'a NodeContext,
    pod_ip: Option<Ipv4Addr>,
}

impl Fields<'_> {
    fn get(&self, f: FieldPath) -> String {
        match f {
            FieldPath::Name => self.pod.name.clone(),
            FieldPath::Namespace => self.pod.namespace.clone(),
            FieldPath::Uid => self.pod.uid.clone(),
            FieldPath::NodeName => self.node.name.clone(),
            FieldPath::PodIp => self.pod_ip.map(|i| i.to_string()).unwrap_or_default(),
            FieldPath::HostIp => self.node.host_ip.clone(),
        }
    }
}

mod container;
mod probes;
mod sealed;
mod sources;

use container::container_plan;
pub use container::{default_pull_policy, expand};

pub use sealed::SecretKeys;

use probes::{http_handler, probe_spec};
pub(crate) use sources::host_path_kind;
pub use sources::pull_credentials;
use sources::{config_map_data, config_map_value, secret_data, volume_plan};

#[cfg(test)]
mod tests;

/// The pod's resolv.conf from its `dnsPolicy`, as the kubelet makes it (see
/// [`kommit_dns::pod_resolv_conf`]). Without a pod CIDR the pod cannot start, and its
/// cluster DNS address is unknown: it gets the node's resolvers.
fn resolv_conf(pod: &PodRecord, desired: &DesiredState, node: &NodeContext) -> String {
    let spec = &pod.spec;
    let policy = spec
        .dns_policy
        .map(kommit_dns::DnsPolicy::from)
        .unwrap_or_default();
    let (policy, cluster_dns) = match node.cluster_dns() {
        Some(ip) => (policy, ip),
        None => (
            kommit_dns::DnsPolicy::Default,
            std::net::Ipv4Addr::UNSPECIFIED,
        ),
    };
    let config = spec.dns_config.as_ref().map(kommit_dns::DnsConfig::from);
    kommit_dns::pod_resolv_conf(&kommit_dns::PodDns {
        namespace: &pod.namespace,
        policy,
        host_network: false,
        config: config.as_ref(),
        cluster_dns: cluster_dns.into(),
        cluster_domain: &desired.config.cluster_domain,
        host_resolv_conf: &node.host_resolv_conf,
    })
    .text
}
