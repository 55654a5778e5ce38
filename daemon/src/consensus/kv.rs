//! `KvApp`: a small, deterministic reference application (an ordered key-value map plus a
//! node table) that exercises every part of [`App`]. The daemon replicates the reconcilers'
//! `ClusterState` (see `cluster`); the consensus-layer tests, the crash test and the simulation
//! use this one because a key-value map makes every acknowledged write checkable and any
//! divergence obvious.

use super::{App, NodeFacts, NodeView};
use kommit_reconcilers::trust::{Trust, TrustOp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One entry of [`KvApp`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "op")]
pub enum KvEntry {
    /// Set a key.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// Delete a key.
    Delete {
        /// The key.
        key: String,
    },
    /// A node is up with these facts.
    NodeUp {
        /// The node's facts.
        facts: NodeFacts,
    },
    /// A node stopped heart-beating.
    NodeDown {
        /// The node name.
        name: String,
    },
    /// An operator drained a node.
    NodeDrain {
        /// The node name.
        name: String,
    },
    /// An operator let a drained node take work again.
    NodeUncordon {
        /// The node name.
        name: String,
    },
    /// An operator removed a node.
    NodeRemove {
        /// The node name.
        name: String,
    },
    /// Join tokens and certificates (the same tables and rules as the cluster state's).
    Trust {
        /// The change (not `op`: that is this enum's tag).
        change: TrustOp,
    },
}

/// What [`KvApp`] records per node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvNode {
    /// Up or down.
    pub up: bool,
    /// Drained by an operator.
    pub drained: bool,
    /// Leader time of the last up/down transition.
    pub since_ms: u64,
    /// The facts last reported.
    pub facts: NodeFacts,
}

/// The reference application state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvApp {
    /// The key-value map.
    pub kv: BTreeMap<String, String>,
    /// The node table.
    pub nodes: BTreeMap<String, KvNode>,
    /// How many entries were applied (an order-sensitive digest input).
    pub applied: u64,
    /// Leader time of the last applied entry.
    pub last_at_ms: u64,
    /// Join tokens, certificates and revocations. Absent while empty.
    #[serde(default, skip_serializing_if = "Trust::is_empty")]
    pub trust: Trust,
}

impl App for KvApp {
    type Entry = KvEntry;
    type Effects = ();

    fn apply(&mut self, entry: &KvEntry, at_ms: u64) {
        self.applied += 1;
        self.last_at_ms = at_ms;
        match entry {
            KvEntry::Put { key, value } => {
                self.kv.insert(key.clone(), value.clone());
            }
            KvEntry::Delete { key } => {
                self.kv.remove(key);
            }
            KvEntry::NodeUp { facts } => {
                let n = self.nodes.entry(facts.name.clone()).or_default();
                if !n.up {
                    n.since_ms = at_ms;
                }
                n.up = true;
                n.facts = facts.clone();
            }
            KvEntry::NodeDown { name } => {
                if let Some(n) = self.nodes.get_mut(name) {
                    if n.up {
                        n.since_ms = at_ms;
                    }
                    n.up = false;
                }
            }
            KvEntry::NodeDrain { name } => {
                if let Some(n) = self.nodes.get_mut(name) {
                    n.drained = true;
                }
            }
            KvEntry::NodeUncordon { name } => {
                if let Some(n) = self.nodes.get_mut(name) {
                    n.drained = false;
                }
            }
            KvEntry::NodeRemove { name } => {
                self.nodes.remove(name);
                self.trust.revoke_node(name, at_ms);
            }
            KvEntry::Trust { change } => {
                // A refused change leaves the tables as they were; the caller reads them.
                let _ = self.trust.apply(change, at_ms);
            }
        }
    }

    fn snapshot_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("KvApp serializes: only strings, maps and integers")
    }

    fn restore(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("invalid kv snapshot: {e}"))
    }

    fn digest(&self) -> String {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(self.snapshot_bytes()))
    }

    fn node_up(facts: NodeFacts) -> Result<KvEntry, String> {
        Ok(KvEntry::NodeUp { facts })
    }
    fn node_down(name: &str) -> KvEntry {
        KvEntry::NodeDown { name: name.into() }
    }
    fn node_drain(name: &str) -> KvEntry {
        KvEntry::NodeDrain { name: name.into() }
    }
    fn node_uncordon(name: &str) -> KvEntry {
        KvEntry::NodeUncordon { name: name.into() }
    }
    fn node_remove(name: &str) -> KvEntry {
        KvEntry::NodeRemove { name: name.into() }
    }
    fn node_view(&self, name: &str) -> Option<NodeView> {
        self.nodes.get(name).map(|n| NodeView {
            up: n.up,
            facts: n.facts.clone(),
        })
    }
    fn node_names(&self) -> Vec<String> {
        self.nodes.keys().cloned().collect()
    }
    fn trust(&self) -> &Trust {
        &self.trust
    }
    fn trust_entry(change: TrustOp) -> KvEntry {
        KvEntry::Trust { change }
    }
}
