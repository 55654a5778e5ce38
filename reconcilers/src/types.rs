//! The data of the replicated state: log entries, node and pod records, and the effects an
//! entry has. Everything here is plain serde data so it can cross the Raft log and the
//! snapshot unchanged.

use ipnet::Ipv4Net;
use kommit_schemas::model::pod::{PodSpec, Protocol, TaintEffect};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

/// The proposer's timestamp, milliseconds since the Unix epoch.
pub type Millis = u64;

/// A node taint, as Kubernetes' `v1.Taint`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Taint {
    /// The taint key.
    pub key: String,
    /// The value (empty when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// NoSchedule, PreferNoSchedule or NoExecute.
    pub effect: TaintEffect,
}

/// What a node reports about itself when it joins.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The node's name (also its `kubernetes.io/hostname` label).
    pub name: String,
    /// The address peers and routes use, `host:port` (see [`NodeInfo::ip`]).
    pub address: String,
    /// Allocatable cpu in millicores.
    pub cpu_millis: u64,
    /// Allocatable memory in bytes.
    pub memory_bytes: u64,
    /// Most pods the node runs.
    pub pods: u32,
    /// Node labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Node taints.
    #[serde(default)]
    pub taints: Vec<Taint>,
}

impl NodeInfo {
    /// The IPv4 host part of `address` (`10.0.0.5` of `10.0.0.5:7443`), if it is one: the
    /// node's address for NodePorts, load balancers and routes.
    pub fn ip(&self) -> Option<Ipv4Addr> {
        let a = self.address.as_str();
        a.parse::<std::net::SocketAddrV4>()
            .map(|s| *s.ip())
            .or_else(|_| a.parse::<Ipv4Addr>())
            .ok()
    }
}

/// A pod's phase, as Kubernetes'.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PodPhase {
    /// Not yet running (unscheduled, pulling, starting).
    #[default]
    Pending,
    /// At least one container runs.
    Running,
    /// Every container exited 0 and will not restart.
    Succeeded,
    /// Every container stopped and at least one failed.
    Failed,
    /// The node stopped reporting.
    Unknown,
}

/// One container's observed state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerStatus {
    /// The container's name.
    pub name: String,
    /// Whether its readiness probe passes.
    pub ready: bool,
    /// How often it restarted.
    pub restarts: u32,
    /// Why it last exited (e.g. `Completed`, `Error`, `OOMKilled`), if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_reason: Option<String>,
    /// The image it runs.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image: String,
    /// Whether its startup probe passed (true when it has none and it runs).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub started: bool,
    /// Its current state, as Kubernetes' `state`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<ContainerState>,
    /// The state of its previous run, as Kubernetes' `lastState`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_state: Option<ContainerState>,
}

/// A container's state, in Kubernetes' vocabulary (`waiting`, `running`, `terminated`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ContainerState {
    /// Not running yet, or between restarts.
    Waiting {
        /// `ContainerCreating`, `PodInitializing`, `ErrImagePull`, `ImagePullBackOff`,
        /// `CrashLoopBackOff`, `CreateContainerConfigError`, ...
        reason: String,
        /// Detail for people.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// Its process runs.
    Running {
        /// When it started (ms since the epoch, the node's clock).
        started_at: Millis,
    },
    /// Its process ended.
    Terminated {
        /// The exit code (128+signal when killed).
        exit_code: i32,
        /// `Completed`, `Error`, `OOMKilled`, ...
        reason: String,
        /// When it started.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        started_at: Option<Millis>,
        /// When it ended.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        finished_at: Option<Millis>,
    },
}

/// Whether an event is routine or a problem, as Kubernetes' event `type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EventType {
    /// Routine.
    Normal,
    /// Something went wrong.
    Warning,
}

/// Something that happened to a pod on its node (pulled, started, killed, probe failed...).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodEvent {
    /// When it happened (ms since the epoch, the node's clock).
    pub at: Millis,
    /// Normal or Warning.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// A CamelCase reason (`Pulled`, `Started`, `Killing`, `Unhealthy`, `BackOff`, ...).
    pub reason: String,
    /// Detail for people.
    pub message: String,
    /// How many times it happened in a row (repeats are folded).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub count: u32,
}

fn one() -> u32 {
    1
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

/// Most events a pod keeps (oldest dropped first).
pub const MAX_POD_EVENTS: usize = 24;
/// Most events one report may carry for one pod.
pub const MAX_EVENTS_PER_REPORT: usize = 16;
/// Longest event or status message kept (bytes; longer ones are cut at a char boundary).
pub const MAX_MESSAGE_BYTES: usize = 1024;
/// Most containers (init and regular) one report may describe.
pub const MAX_CONTAINERS_PER_REPORT: usize = 64;

/// An agent's report about one pod on its node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodStatusChange {
    /// The pod, `namespace/name`.
    pub pod: String,
    /// The pod's UID; reports for an older incarnation are ignored.
    pub uid: String,
    /// The phase.
    pub phase: PodPhase,
    /// Whether every container is ready.
    pub ready: bool,
    /// Per-container detail.
    #[serde(default)]
    pub containers: Vec<ContainerStatus>,
    /// The IP the pod got, if the agent reports one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_ip: Option<Ipv4Addr>,
    /// Per-init-container detail.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub init_containers: Vec<ContainerStatus>,
    /// When the node accepted the pod (its sandbox was made), the node's clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Millis>,
    /// A CamelCase reason for the pod's state (`Evicted`, `Fenced`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Detail for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Events since the last report, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<PodEvent>,
}

/// One Raft log entry. Every entry is applied with the proposer's timestamp.
// Adopt carries the whole desired state by value: entries are built once and serialized,
// so the size difference between variants costs nothing worth an indirection in the API.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Entry {
    /// A new desired commit. `parent` is the adopted commit this one fast-forwards from
    /// (None for the first); the state refuses anything else unless `kommit.yaml` allows
    /// history rewrites. `digest` must equal `desired.digest()`.
    Adopt {
        /// The commit SHA.
        commit: String,
        /// The adopted commit it descends from.
        parent: Option<String>,
        /// The validated desired state at that commit.
        desired: kommit_schemas::DesiredState,
        /// `desired.digest()`, checked on apply.
        digest: String,
        /// The node that proposed it (the leader), for the note; not checked.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    /// A node joined or came back; its facts replace the old ones.
    NodeUp {
        /// The node's facts.
        info: NodeInfo,
    },
    /// A node stopped heartbeating; its pods are evicted.
    NodeDown {
        /// The node.
        node: String,
    },
    /// A node is cordoned and drained (DaemonSet pods stay).
    NodeDrain {
        /// The node.
        node: String,
    },
    /// A drained node takes pods again.
    NodeUncordon {
        /// The node.
        node: String,
    },
    /// A node leaves for good; its pod CIDR is freed.
    NodeRemove {
        /// The node.
        node: String,
    },
    /// Observed pod state from a node's agent.
    PodStatus {
        /// The reporting node.
        node: String,
        /// The reports.
        changes: Vec<PodStatusChange>,
    },
    /// A node converged on a commit.
    Ack {
        /// The node.
        node: String,
        /// The commit.
        commit: String,
    },
    /// Time passes (progress deadlines, minReadySeconds).
    Tick,
    /// The leader refused a commit (invalid, or a history rewrite not allowed); the adopted
    /// commit stays in force. Recorded in the history
    /// so any later leader can write its `refused` note. Ignored for the adopted commit.
    Refuse {
        /// The commit SHA.
        commit: String,
        /// Why, when there are no diagnostics.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// Validation errors as `file:line:col: message`.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        diagnostics: Vec<String>,
        /// The node that refused it (the leader).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    /// The complete set of a node's static pods (manifests in its `--static-pods`
    /// directory), replacing the previous set; an empty set removes them. They run on that
    /// node alone and are never scheduled elsewhere. At most [`MAX_STATIC_PODS`] are taken.
    StaticPods {
        /// The node whose directory holds them.
        node: String,
        /// The validated pod manifests.
        pods: Vec<kommit_schemas::model::core::Pod>,
    },
    /// Join tokens and node certificates (see [`crate::trust`]).
    Trust {
        /// The change.
        op: crate::trust::TrustOp,
    },
}

/// Most static pods one node may have; further ones in a `StaticPods` entry are ignored.
pub const MAX_STATIC_PODS: usize = 64;

/// Who created a pod.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Owner {
    /// A bare pod from the repository (`namespace/name`).
    Pod(String),
    /// A ReplicaSet of a Deployment (`namespace/rs-name`).
    ReplicaSet(String),
    /// A DaemonSet (`namespace/name`).
    DaemonSet(String),
    /// A StatefulSet (`namespace/name`).
    StatefulSet(String),
    /// A Job (`namespace/name`).
    Job(String),
    /// A node's static pod (the node's name): a manifest in that node's `--static-pods`
    /// directory, shown like Kubernetes' mirror pods. The last variant: static pods'
    /// owners sort last.
    Static(String),
}

impl Owner {
    /// `Kind/namespace/name`, unique across kinds.
    pub fn id(&self) -> String {
        match self {
            Owner::Pod(k) => format!("Pod/{k}"),
            Owner::ReplicaSet(k) => format!("ReplicaSet/{k}"),
            Owner::DaemonSet(k) => format!("DaemonSet/{k}"),
            Owner::Static(node) => format!("Static/{node}"),
            Owner::StatefulSet(k) => format!("StatefulSet/{k}"),
            Owner::Job(k) => format!("Job/{k}"),
        }
    }
}

/// A pod the cluster wants to run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PodRecord {
    /// The namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
    /// A hash of (owner, template hash, slot, serial): never random.
    pub uid: String,
    /// Who created it.
    pub owner: Owner,
    /// Hash of the template (or bare pod spec) it was made from.
    pub template_hash: String,
    /// Labels (template labels plus `pod-template-hash` for ReplicaSet pods).
    pub labels: BTreeMap<String, String>,
    /// The spec the node runs. Shared with the other pods made from the same template (a
    /// ReplicaSet or DaemonSet makes thousands of identical specs); it serializes as a plain
    /// spec.
    #[serde(with = "shared_spec")]
    pub spec: Arc<PodSpec>,
    /// The node it is bound to; None while Pending.
    pub node: Option<String>,
    /// For DaemonSet and static pods: the only node it may run on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned_node: Option<String>,
    /// The IP allocated from the node's pod CIDR at binding.
    pub pod_ip: Option<Ipv4Addr>,
    /// The last reported phase.
    pub phase: PodPhase,
    /// Whether the pod is ready.
    pub ready: bool,
    /// Since when it has been ready (for minReadySeconds).
    pub ready_since: Option<Millis>,
    /// Restarts summed over containers.
    pub restarts: u32,
    /// Per-container detail, as last reported.
    pub containers: Vec<ContainerStatus>,
    /// Why it is not scheduled, in Kubernetes' words.
    pub reason: Option<String>,
    /// When it was created.
    pub created_at: Millis,
    /// Creation order inside its owner (newest is highest).
    pub serial: u64,
    /// Per-init-container detail, as last reported.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub init_containers: Vec<ContainerStatus>,
    /// When its node accepted it, as reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Millis>,
    /// The node's reason and message for its state, as last reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_message: Option<(String, String)>,
    /// The latest events on its node, oldest first (at most [`MAX_POD_EVENTS`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<PodEvent>,
}

/// Serde for `Arc<PodSpec>` as the spec itself, so the bytes are those of an unshared spec.
mod shared_spec {
    use kommit_schemas::model::pod::PodSpec;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::sync::Arc;

    pub fn serialize<S: Serializer>(spec: &Arc<PodSpec>, s: S) -> Result<S::Ok, S::Error> {
        spec.as_ref().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<PodSpec>, D::Error> {
        PodSpec::deserialize(d).map(Arc::new)
    }
}

impl PodRecord {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// A node as the state knows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Its facts from the last NodeUp.
    pub info: NodeInfo,
    /// Whether it is up.
    pub ready: bool,
    /// Whether it is cordoned (drained).
    pub drained: bool,
    /// Its pod CIDR, allocated at first join and kept until NodeRemove.
    pub pod_cidr: Option<Ipv4Net>,
    /// When it first joined.
    pub joined_at: Millis,
    /// The last commit it acknowledged.
    pub acked: Option<String>,
    /// While drained: the pods whose eviction waits, `namespace/name` -> the budget that
    /// holds it (`PodDisruptionBudget ns/name needs 2 healthy pods and has 2`). Absent from
    /// the bytes while empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub drain_waits: BTreeMap<String, String>,
}

/// A ReplicaSet: made by the Deployment controller, or standalone from Git.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReplicaSetRecord {
    /// The namespace.
    pub namespace: String,
    /// `<deployment>-<pod-template-hash>`.
    pub name: String,
    /// The owning Deployment, `namespace/name`.
    pub deployment: String,
    /// The pod-template hash.
    pub template_hash: String,
    /// The pod template, labels including `pod-template-hash`.
    pub template: kommit_schemas::model::pod::PodTemplateSpec,
    /// Desired pods.
    pub replicas: u32,
    /// The deployment revision this RS holds.
    pub revision: u64,
    /// Pods made so far (names come from this counter).
    pub next_serial: u64,
    /// A standalone ReplicaSet from Git (`deployment` is empty), not a Deployment's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub standalone: bool,
}

/// How a Deployment's rollout stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RolloutPhase {
    /// Pods are being replaced.
    Progressing,
    /// Every pod runs the current template and is available.
    Complete,
    /// No progress for progressDeadlineSeconds (`ProgressDeadlineExceeded`).
    DeadlineExceeded,
    /// `spec.paused` holds it.
    Paused,
}

/// A Deployment's status as the controller keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeploymentStatus {
    /// The current ReplicaSet's name.
    pub current_rs: String,
    /// The phase.
    pub phase: RolloutPhase,
    /// When it last made progress.
    pub last_progress_at: Millis,
    /// What progress looked like then: (new RS replicas, new RS available, old pods).
    pub progress_mark: (u32, u32, u32),
    /// Pods of the current template.
    pub updated: u32,
    /// Available pods over all ReplicaSets.
    pub available: u32,
}

/// A DaemonSet's bookkeeping.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DaemonSetRecord {
    /// Pods made so far.
    pub next_serial: u64,
}

/// One endpoint of a service.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Endpoint {
    /// The pod, `namespace/name`.
    pub pod: String,
    /// The pod's IP.
    pub ip: Ipv4Addr,
    /// The pod's node.
    pub node: String,
    /// Whether the pod is ready.
    pub ready: bool,
}

/// A pod start or stop on one node.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PodRef {
    /// `namespace/name`.
    pub pod: String,
    /// The pod's UID.
    pub uid: String,
}

/// An address handed out or taken back.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum IpChange {
    /// A node got a pod CIDR.
    NodeCidr {
        /// The node.
        node: String,
        /// Its CIDR.
        cidr: Ipv4Net,
    },
    /// A node's pod CIDR was freed.
    NodeCidrFreed {
        /// The node.
        node: String,
        /// The freed CIDR.
        cidr: Ipv4Net,
    },
    /// A pod got an IP.
    Pod {
        /// `namespace/name`.
        pod: String,
        /// The IP.
        ip: Ipv4Addr,
    },
    /// A service got a ClusterIP.
    Service {
        /// `namespace/name`.
        service: String,
        /// The IP.
        ip: Ipv4Addr,
    },
    /// A service's ClusterIP was freed.
    ServiceFreed {
        /// `namespace/name`.
        service: String,
        /// The IP.
        ip: Ipv4Addr,
    },
    /// A service port got a NodePort (allocated, or taken from `nodePort`).
    NodePort {
        /// `namespace/name`.
        service: String,
        /// The service port's protocol.
        protocol: Protocol,
        /// The service port.
        port: u16,
        /// The NodePort.
        node_port: u16,
    },
    /// A service port's NodePort was freed (the service, the port or its need went away, or
    /// another number replaced it).
    NodePortFreed {
        /// `namespace/name`.
        service: String,
        /// The freed NodePort.
        node_port: u16,
    },
}

/// What one applied entry changed, as data for the node agents and the status writer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Effects {
    /// Pods each node must start, by node.
    pub start: BTreeMap<String, Vec<PodRef>>,
    /// Pods each node must stop, by node.
    pub stop: BTreeMap<String, Vec<PodRef>>,
    /// Services whose endpoints changed.
    pub endpoints_changed: Vec<String>,
    /// Addresses allocated or freed.
    pub ips: Vec<IpChange>,
    /// The commit now in force, when this entry adopted one.
    pub adopted: Option<String>,
    /// Why an Adopt or a Trust entry was refused (the state did not change).
    pub rejected: Option<String>,
    /// Deployments whose rollout phase changed, with the new phase.
    pub rollouts: BTreeMap<String, RolloutPhase>,
    /// Pods that became unschedulable, with the reason.
    pub unschedulable: BTreeMap<String, String>,
}

impl Effects {
    /// Whether nothing changed for the agents.
    pub fn is_empty(&self) -> bool {
        self.start.is_empty()
            && self.stop.is_empty()
            && self.endpoints_changed.is_empty()
            && self.ips.is_empty()
    }
}
