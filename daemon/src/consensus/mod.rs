//! Consensus: the glue that turns a pure, deterministic state machine into a replicated one.
//!
//! The shape follows from three decisions:
//!
//! * **openraft owns the protocol; we own durability and transport.** `store` implements
//!   openraft's storage-v2 traits on one redb file per node (log, vote, committed index and the
//!   latest snapshot), `network` carries openraft's RPCs as JSON over HTTPS with mutual TLS,
//!   and `tls` makes the cluster CA and node certificates (`certs`, `renew`: lifetimes,
//!   renewal, revocation; `token`: join tokens kept hashed in the replicated state).
//! * **The replicated application is a trait, [`App`].** The consensus layer never looks inside
//!   an entry: a committed [`Proposal`] is a batch of opaque JSON items stamped with the
//!   leader's clock (`at_ms`); the store decodes each item as `App::Entry` and calls
//!   `App::apply(entry, at_ms)`. The application never reads a clock. A snapshot is exactly
//!   `App::snapshot_bytes()`, the application's canonical encoding.
//! * **Control loops are separate from the Raft handle.** `membership` (voter count, learner
//!   promotion) and `liveness` (heartbeats, NodeDown/NodeUp, leases and self-fencing) are plain
//!   tasks that read metrics and propose entries through the same path as any client, so the
//!   simulation can drive the same code.

pub mod api;
pub mod certs;
pub mod cluster;
mod keys;
pub mod kv;
pub mod liveness;
pub mod local;
mod loops;
pub mod membership;
pub mod network;
pub mod node;
mod propose;
mod renew;
pub mod store;
pub mod tls;
pub mod token;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::Cursor;

/// Raft node identifier: derived from the node name by [`node_id_for`], so a restarted or
/// re-imaged node with the same name keeps its identity.
pub type NodeId = u64;

/// What openraft replicates: a batch of application entries stamped with the leader's clock.
///
/// Items are kept as JSON values so the consensus layer (and its wire format) stays independent
/// of the application's entry type; the state machine decodes them with `App::Entry`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    /// Milliseconds since the Unix epoch on the leader when it proposed the batch.
    pub at_ms: u64,
    /// The batched application entries, in proposal order.
    pub items: Vec<serde_json::Value>,
}

/// What a committed proposal answers: the log index it was applied at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// The Raft log index of the entry that carried the batch.
    pub index: u64,
}

openraft::declare_raft_types!(
    /// openraft type configuration of kommit's consensus layer.
    pub TypeConfig:
        D = Proposal,
        R = Applied,
        NodeId = NodeId,
        Node = openraft::BasicNode,
);

/// The openraft handle with kommit's type configuration.
pub type Raft = openraft::Raft<TypeConfig>;

/// Facts a node reports about itself in each heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeFacts {
    /// Node name, unique in the cluster.
    pub name: String,
    /// Address the node's cluster port is reachable at (`ip:port`).
    pub address: String,
    /// Allocatable CPU in millicores.
    pub cpu_millis: u64,
    /// Allocatable memory in bytes.
    pub memory_bytes: u64,
    /// Maximum number of pods.
    pub pods: u64,
    /// Node labels.
    pub labels: BTreeMap<String, String>,
    /// Taints as `key[=value]:Effect`.
    pub taints: Vec<String>,
}

/// What liveness needs to know about a node from the replicated state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    /// Whether the state currently considers the node up.
    pub up: bool,
    /// The facts last recorded for the node.
    pub facts: NodeFacts,
}

/// The replicated application. Implementations must be deterministic: `apply` may depend only
/// on the state, the entry and `at_ms` (the leader's timestamp), never on a clock, randomness,
/// the environment or I/O.
pub trait App: Default + Send + Sync + 'static {
    /// One log entry of the application.
    type Entry: Serialize + DeserializeOwned + Clone + Debug + Send + Sync + 'static;
    /// What applying an entry changed, handed to an optional effects sink.
    type Effects: Send + 'static;

    /// Applies one committed entry at the leader's time `at_ms`.
    fn apply(&mut self, entry: &Self::Entry, at_ms: u64) -> Self::Effects;
    /// The canonical encoding of the state; also the snapshot format.
    fn snapshot_bytes(&self) -> Vec<u8>;
    /// Rebuilds a state from `snapshot_bytes`.
    fn restore(bytes: &[u8]) -> Result<Self, String>;
    /// A stable digest of the state (equal states give equal digests).
    fn digest(&self) -> String;

    /// The entry recording that a node is up with these facts, or why the facts cannot be
    /// recorded (they come from a peer's heartbeat).
    fn node_up(facts: NodeFacts) -> Result<Self::Entry, String>;
    /// The entry recording that a node stopped heart-beating.
    fn node_down(name: &str) -> Self::Entry;
    /// The operator entry draining a node.
    fn node_drain(name: &str) -> Self::Entry;
    /// The operator entry letting a drained node take pods again.
    fn node_uncordon(name: &str) -> Self::Entry;
    /// The operator entry removing a node.
    fn node_remove(name: &str) -> Self::Entry;
    /// What the state records about a node, if anything.
    fn node_view(&self, name: &str) -> Option<NodeView>;
    /// Names of every node the state knows, sorted.
    fn node_names(&self) -> Vec<String>;
    /// The cluster's trust tables: join tokens (hashed), node certificates, revocations.
    fn trust(&self) -> &kommit_reconcilers::trust::Trust;
    /// The entry carrying a change to the trust tables.
    fn trust_entry(op: kommit_reconcilers::trust::TrustOp) -> Self::Entry;
    /// An entry the leader proposes periodically while the state has time-driven work
    /// pending (deadlines that only advance when an entry carries a newer time).
    fn tick(&self) -> Option<Self::Entry> {
        None
    }
}

/// Derives the Raft node id from a node name (first 8 bytes of its SHA-256, never 0).
pub fn node_id_for(name: &str) -> NodeId {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(name.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(b).max(1)
}

/// Milliseconds since the Unix epoch from the system clock (used only by the leader to stamp
/// proposals and by timers; never inside `App::apply`).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

// `declare_raft_types!` names `Cursor` unqualified for the default snapshot data type.
#[allow(dead_code)]
type SnapshotBuffer = Cursor<Vec<u8>>;
