//! `ClusterState`: the replicated state machine. `apply` is the only way it changes; it is a
//! pure function of (state, entry, timestamp), so every node that applies the same log holds
//! the same bytes.

use crate::controllers;
use crate::history::{CommitOutcome, CommitRecord, History};
use crate::pods::Pods;
use crate::records::{
    ClaimRecord, CronJobRecord, JobRecord, ReleasedVolume, SpawnedJob, StatefulSetRecord,
};
use crate::tracker::{Pass, Tracker};
use crate::trust::Trust;
use crate::types::{
    DaemonSetRecord, DeploymentStatus, Effects, Endpoint, Entry, IpChange, Millis, NodeRecord,
    PodRecord, PodRef, ReplicaSetRecord,
};
use kommit_schemas::model::core::Pod;
use kommit_schemas::DesiredState;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// Largest snapshot `from_canonical_bytes` accepts.
pub const MAX_SNAPSHOT_BYTES: usize = 1 << 30;

/// Errors reading a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The snapshot is larger than [`MAX_SNAPSHOT_BYTES`].
    #[error("snapshot of {0} bytes exceeds the limit of {MAX_SNAPSHOT_BYTES} bytes")]
    TooLarge(usize),
    /// The bytes are not a snapshot.
    #[error("invalid snapshot: {0}")]
    Invalid(#[from] serde_json::Error),
}

/// Everything the cluster agreed on: the adopted commit, nodes, pods and their placements,
/// ReplicaSets, rollouts, addresses and endpoints.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterState {
    /// The commit in force.
    pub commit: Option<String>,
    /// When it was adopted.
    pub adopted_at: Option<Millis>,
    /// Its desired state.
    pub desired: DesiredState,
    /// The latest timestamp applied (monotonic).
    pub now: Millis,
    /// Nodes by name.
    pub nodes: BTreeMap<String, NodeRecord>,
    /// Pods by `namespace/name` (serialized as a plain map), indexed.
    pub pods: Pods,
    /// ReplicaSets by `namespace/name`.
    pub replica_sets: BTreeMap<String, ReplicaSetRecord>,
    /// Rollout status by Deployment `namespace/name`.
    pub deployments: BTreeMap<String, DeploymentStatus>,
    /// DaemonSet bookkeeping by `namespace/name`.
    pub daemon_sets: BTreeMap<String, DaemonSetRecord>,
    /// Incarnations of bare pods made so far (UIDs come from this counter).
    pub bare_pod_serial: u64,
    /// ClusterIPs by service `namespace/name` (headless services have none).
    pub service_ips: BTreeMap<String, Ipv4Addr>,
    /// Endpoints by service `namespace/name`, sorted by pod.
    pub endpoints: BTreeMap<String, Vec<Endpoint>>,
    /// The latest decisions on commits (adoptions, acks, refusals), for the notes in Git.
    /// Absent from the bytes while empty, so older snapshots read and write unchanged.
    #[serde(default, skip_serializing_if = "History::is_empty")]
    pub history: History,
    /// Each node's static pods (from its `--static-pods` directory) by `namespace/name` of
    /// the manifest, as its last `StaticPods` entry gave them. Absent from the bytes while
    /// empty, so older snapshots read and write unchanged.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub static_pods: BTreeMap<String, BTreeMap<String, Pod>>,
    /// NodePorts by service `namespace/name`, for NodePort and LoadBalancer services only:
    /// one number per element of `spec.ports`, in spec order, where 0 means "none" (a
    /// LoadBalancer port without a `nodePort` while `allocateLoadBalancerNodePorts` is
    /// false). An explicit `nodePort` is used as written; otherwise a port keeps its number
    /// while the service keeps that port (same protocol and port number), whatever else
    /// changes. Absent from the bytes while empty, so older snapshots read and write
    /// unchanged. See [`crate::services::node_port`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_ports: BTreeMap<String, Vec<u16>>,
    /// StatefulSet revisions and status by `namespace/name`. Absent while empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub stateful_sets: BTreeMap<String, StatefulSetRecord>,
    /// Job progress by `namespace/name`. Absent while empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub jobs: BTreeMap<String, JobRecord>,
    /// Claims and the node-local volumes they are bound to, by `namespace/name`. Absent
    /// while empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub claims: BTreeMap<String, ClaimRecord>,
    /// CronJob schedules and status by `namespace/name`. Absent while empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cron_jobs: BTreeMap<String, CronJobRecord>,
    /// The Jobs CronJobs made, by `namespace/name`; the Job controller runs them beside
    /// Git's. Absent while empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cron_spawned: BTreeMap<String, SpawnedJob>,
    /// Volumes whose claims went and that are kept (see [`ReleasedVolume`]), by volume
    /// name. Absent while empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub released_volumes: BTreeMap<String, ReleasedVolume>,
    /// Join tokens (hashed), node certificates and revocations (see [`crate::trust`]).
    /// Absent while empty.
    #[serde(default, skip_serializing_if = "Trust::is_empty")]
    pub trust: Trust,
    /// What changed lately, so the next entry runs only the controllers it concerns. Not
    /// part of the state: never serialized or compared, started afresh when read.
    #[serde(skip)]
    pub(crate) tracker: Tracker,
}

impl ClusterState {
    /// An empty state (no commit, no nodes).
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one log entry with the proposer's timestamp and returns what changed. Pure:
    /// the same (state, entry, at) always gives the same state and effects. Its cost follows
    /// what the entry changes: an `Adopt` runs every controller over the whole state, any
    /// other entry only the controllers whose pods, nodes or deadlines it concerns.
    pub fn apply(&mut self, entry: &Entry, at: Millis) -> Effects {
        self.apply_pass(entry, at, false)
    }

    /// [`ClusterState::apply`] with every controller run over the whole state and the
    /// effects taken from a comparison of every pod before and after (as an `Adopt` always
    /// runs): the reference the incremental apply must equal, for tests and benchmarks. The
    /// resulting state is the same.
    pub fn apply_full(&mut self, entry: &Entry, at: Millis) -> Effects {
        self.apply_pass(entry, at, true)
    }

    fn apply_pass(&mut self, entry: &Entry, at: Millis, reference: bool) -> Effects {
        let mut fx = Effects::default();
        self.now = self.now.max(at);
        // A full pass takes its effects from a comparison of every pod, as it touches them
        // all anyway; any other entry from the pods it touched.
        let full = reference || !self.tracker.primed || matches!(entry, Entry::Adopt { .. });
        let before = full.then(|| self.bound_pods());
        self.pods.begin(!full);
        let mut pass = Pass {
            full,
            ..Pass::default()
        };
        match entry {
            Entry::Adopt {
                commit,
                parent,
                desired,
                digest,
                by,
            } => {
                if let Err(why) = self.check_adopt(commit, parent.as_deref(), desired, digest) {
                    self.pods.finish();
                    fx.rejected = Some(why);
                    return fx;
                }
                self.history.record(CommitRecord {
                    commit: commit.clone(),
                    at: self.now,
                    by: by.clone(),
                    outcome: CommitOutcome::Adopted {
                        previous: self.commit.clone(),
                        digest: digest.clone(),
                        acks: BTreeMap::new(),
                    },
                });
                self.commit = Some(commit.clone());
                self.adopted_at = Some(self.now);
                controllers::services::carry_node_ports(
                    &self.desired.services,
                    &desired.services,
                    &mut self.node_ports,
                    &mut fx,
                );
                self.desired = desired.clone();
                fx.adopted = Some(commit.clone());
                self.realign_node_cidrs(&mut fx);
            }
            Entry::NodeUp { info } => {
                pass.changed_node(&info.name);
                self.node_up(info, &mut fx);
            }
            Entry::NodeDown { node } => {
                pass.changed_node(node);
                if let Some(n) = self.nodes.get_mut(node) {
                    n.ready = false;
                }
            }
            Entry::NodeDrain { node } => {
                pass.changed_node(node);
                if let Some(n) = self.nodes.get_mut(node) {
                    n.drained = true;
                }
            }
            Entry::NodeUncordon { node } => {
                pass.changed_node(node);
                if let Some(n) = self.nodes.get_mut(node) {
                    n.drained = false;
                }
            }
            Entry::NodeRemove { node } => {
                pass.changed_node(node);
                pass.static_entry = true;
                self.trust.revoke_node(node, self.now);
                self.static_pods.remove(node);
                if let Some(n) = self.nodes.remove(node) {
                    if let Some(cidr) = n.pod_cidr {
                        fx.ips.push(IpChange::NodeCidrFreed {
                            node: node.clone(),
                            cidr,
                        });
                    }
                }
            }
            Entry::PodStatus { node, changes } => {
                for c in changes {
                    controllers::record_status(self, node, c);
                }
            }
            Entry::Ack { node, commit } => {
                if let Some(n) = self.nodes.get_mut(node) {
                    n.acked = Some(commit.clone());
                    self.history.ack(node, commit, self.now);
                }
            }
            Entry::Tick => {}
            Entry::Refuse {
                commit,
                reason,
                diagnostics,
                by,
            } => {
                if self.commit.as_deref() != Some(commit.as_str()) {
                    self.history.record(CommitRecord {
                        commit: commit.clone(),
                        at: self.now,
                        by: by.clone(),
                        outcome: CommitOutcome::Refused {
                            reason: reason.clone(),
                            diagnostics: diagnostics.clone(),
                        },
                    });
                }
            }
            Entry::StaticPods { node, pods } => {
                pass.static_entry = true;
                controllers::static_pods::record(self, node, pods);
            }
            Entry::Trust { op } => {
                // Trust changes no workload: nothing to reconcile.
                self.pods.finish();
                if let Err(why) = self.trust.apply(op, self.now) {
                    fx.rejected = Some(why);
                }
                return fx;
            }
        }
        self.reconcile(&mut pass, &mut fx);
        let log = self.pods.finish();
        match before {
            Some(before) => self.diff_pods(before, &mut fx),
            None => Pods::effects(&log, &self.pods, &mut fx),
        }
        // What this entry changed is what the next one looks at again.
        self.tracker.owners = log.owners;
        self.tracker.sched = log.sched;
        self.tracker.targets = pass.unsettled;
        self.tracker.primed = true;
        fx
    }

    /// Runs the controllers: over everything in a full pass (the deadlines are set again by
    /// the syncs), else over what the previous entry left, what is due and what this entry
    /// changed.
    fn reconcile(&mut self, pass: &mut Pass, fx: &mut Effects) {
        let tracker = &mut self.tracker;
        if pass.full {
            tracker.clear_wakes();
            tracker.owners.clear();
            tracker.targets.clear();
        } else {
            pass.owners = std::mem::take(&mut tracker.owners);
            pass.targets = std::mem::take(&mut tracker.targets);
            pass.targets.extend(tracker.due(self.now));
            pass.sched = tracker.sched;
        }
        controllers::reconcile(self, fx, pass);
    }

    fn check_adopt(
        &self,
        commit: &str,
        parent: Option<&str>,
        desired: &DesiredState,
        digest: &str,
    ) -> Result<(), String> {
        let actual = desired.digest();
        if actual != digest {
            return Err(format!(
                "commit {commit}: desired-state digest {actual} does not match the proposed {digest}"
            ));
        }
        match self.commit.as_deref() {
            None => Ok(()),
            Some(cur) if cur == commit => Err(format!("commit {commit} is already adopted")),
            Some(cur) if parent == Some(cur) || self.desired.config.allow_history_rewrite => Ok(()),
            Some(cur) => Err(format!(
                "commit {commit} does not fast-forward from the adopted commit {cur} and kommit.yaml does not allow history rewrites"
            )),
        }
    }

    /// Nodes usually join before the first commit is adopted, so their pod CIDRs come from
    /// the default `podCIDR`. A node whose CIDR does not fit the adopted `podCIDR` and
    /// `nodeCIDRMaskSize` gets a new one, lowest free first in node-name order, as long as no
    /// pod is bound to it (bound pods' IPs come from the old range; such a node keeps it).
    fn realign_node_cidrs(&mut self, fx: &mut Effects) {
        let (net, mask) = (
            self.desired.config.pod_cidr,
            self.desired.config.node_cidr_mask_size,
        );
        let fits = |c: &ipnet::Ipv4Net| c.prefix_len() == mask && net.contains(c);
        let misfits: Vec<String> = self
            .nodes
            .iter()
            .filter(|(name, n)| {
                n.pod_cidr.is_some_and(|c| !fits(&c)) && self.pods.on_node(name).next().is_none()
            })
            .map(|(name, _)| name.clone())
            .collect();
        if misfits.is_empty() {
            return;
        }
        for name in &misfits {
            if let Some(cidr) = self.nodes.get_mut(name).and_then(|n| n.pod_cidr.take()) {
                fx.ips.push(IpChange::NodeCidrFreed {
                    node: name.clone(),
                    cidr,
                });
            }
        }
        let mut taken: std::collections::BTreeSet<ipnet::Ipv4Net> =
            self.nodes.values().filter_map(|n| n.pod_cidr).collect();
        for name in misfits {
            if let Some(cidr) = crate::alloc::node_cidr(net, mask, &taken) {
                taken.insert(cidr);
                fx.ips.push(IpChange::NodeCidr {
                    node: name.clone(),
                    cidr,
                });
                if let Some(n) = self.nodes.get_mut(&name) {
                    n.pod_cidr = Some(cidr);
                }
            }
        }
    }

    fn node_up(&mut self, info: &crate::types::NodeInfo, fx: &mut Effects) {
        let now = self.now;
        let n = self
            .nodes
            .entry(info.name.clone())
            .or_insert_with(|| NodeRecord {
                info: info.clone(),
                ready: true,
                drained: false,
                pod_cidr: None,
                joined_at: now,
                acked: None,
                drain_waits: BTreeMap::new(),
            });
        n.info = info.clone();
        n.ready = true;
        if n.pod_cidr.is_some() {
            return;
        }
        // First join, or a join while the range was full: allocate the lowest free CIDR.
        let taken = self.nodes.values().filter_map(|n| n.pod_cidr).collect();
        let cfg = &self.desired.config;
        if let Some(cidr) = crate::alloc::node_cidr(cfg.pod_cidr, cfg.node_cidr_mask_size, &taken) {
            fx.ips.push(IpChange::NodeCidr {
                node: info.name.clone(),
                cidr,
            });
            if let Some(n) = self.nodes.get_mut(&info.name) {
                n.pod_cidr = Some(cidr);
            }
        }
    }

    /// Every bound pod as (key, uid, node), in key order.
    fn bound_pods(&self) -> Vec<(String, String, String)> {
        self.pods
            .iter()
            .filter_map(|(k, p)| Some((k.clone(), p.uid.clone(), p.node.clone()?)))
            .collect()
    }

    /// Pods to stop (bound before, and now gone, rebound or another incarnation) and to
    /// start (bound now, and not the same binding before): one merge of two key-ordered
    /// lists.
    fn diff_pods(&self, before: Vec<(String, String, String)>, fx: &mut Effects) {
        let mut now = self
            .pods
            .iter()
            .filter_map(|(k, p)| Some((k, &p.uid, p.node.as_ref()?)))
            .peekable();
        let mut before = before.into_iter().peekable();
        loop {
            let order = match (before.peek(), now.peek()) {
                (None, None) => break,
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some(b), Some(n)) => b.0.as_str().cmp(n.0.as_str()),
            };
            let old = if order.is_le() { before.next() } else { None };
            let new = if order.is_ge() { now.next() } else { None };
            let same = match (&old, &new) {
                (Some((_, uid, node)), Some((_, nuid, nnode))) => uid == *nuid && node == *nnode,
                _ => false,
            };
            if same {
                continue;
            }
            if let Some((pod, uid, node)) = old {
                fx.stop.entry(node).or_default().push(PodRef { pod, uid });
            }
            if let Some((pod, uid, node)) = new {
                fx.start.entry(node.clone()).or_default().push(PodRef {
                    pod: pod.clone(),
                    uid: uid.clone(),
                });
            }
        }
    }

    /// The canonical serialization (compact JSON, maps sorted). Also the snapshot format.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("the state holds only JSON-representable data")
    }

    /// Reads a snapshot written by [`ClusterState::canonical_bytes`].
    pub fn from_canonical_bytes(b: &[u8]) -> Result<Self, StateError> {
        if b.len() > MAX_SNAPSHOT_BYTES {
            return Err(StateError::TooLarge(b.len()));
        }
        Ok(serde_json::from_slice(b)?)
    }

    /// Hex SHA-256 of the canonical bytes.
    pub fn digest(&self) -> String {
        hex::encode(Sha256::digest(self.canonical_bytes()))
    }

    /// The earliest time after `now` at which time alone changes this state (a Job's
    /// replacement back-off, active deadline or TTL, a CronJob's next scheduled time). The leader proposes a `Tick` once its
    /// clock passes it, so these rules follow entries' timestamps only.
    pub fn next_deadline(&self) -> Option<Millis> {
        match (
            controllers::job::next_deadline(self),
            controllers::cronjob::next_deadline(self),
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether work that advances with time but has no fixed deadline is pending: a
    /// Deployment rollout progressing, a StatefulSet pod ready but not yet available
    /// (`minReadySeconds`).
    pub fn time_driven_work(&self) -> bool {
        self.deployments
            .values()
            .any(|d| d.phase == crate::types::RolloutPhase::Progressing)
            || self.stateful_sets.values().any(|s| s.ready > s.available)
    }

    /// Pods bound to `node`, by key (what the node's agent must run).
    pub fn pods_on_node<'a>(&'a self, node: &'a str) -> impl Iterator<Item = &'a PodRecord> + 'a {
        self.pods.on_node(node).map(|k| &self.pods[k])
    }

    /// Every pod's node (None while Pending), by key.
    pub fn placements(&self) -> BTreeMap<String, Option<String>> {
        self.pods
            .iter()
            .map(|(k, p)| (k.clone(), p.node.clone()))
            .collect()
    }
}
