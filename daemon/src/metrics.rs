//! Prometheus metrics of a node, in the text exposition format on `GET /metrics`.
//!
//! Values are read at scrape time from what the node already holds (Raft metrics, the
//! replicated state, the lease, the status writer's counters), so there is no second source of
//! truth to keep in step and nothing to update on hot paths.

use crate::consensus::node::Shared;
use crate::git::writer::StatusWriter;
use kommit_reconcilers::ClusterState;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabel {
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommitLabel {
    commit: String,
}

/// The node's metrics.
pub struct Metrics {
    registry: Registry,
    term: Gauge,
    leader: Gauge,
    applied: Gauge,
    voters: Gauge,
    members: Gauge,
    fenced: Gauge,
    nodes: Family<StatusLabel, Gauge>,
    pods: Family<PhaseLabel, Gauge>,
    unschedulable: Gauge,
    adopted: Family<CommitLabel, Gauge>,
    pushes: Counter,
    rejections: Counter,
    failures: Counter,
    outbox: Gauge,
    seen: Mutex<[u64; 3]>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("kommit");
        let m = Self {
            term: Gauge::default(),
            leader: Gauge::default(),
            applied: Gauge::default(),
            voters: Gauge::default(),
            members: Gauge::default(),
            fenced: Gauge::default(),
            nodes: Family::default(),
            pods: Family::default(),
            unschedulable: Gauge::default(),
            adopted: Family::default(),
            pushes: Counter::default(),
            rejections: Counter::default(),
            failures: Counter::default(),
            outbox: Gauge::default(),
            seen: Mutex::new([0; 3]),
            registry: Registry::default(),
        };
        registry.register("raft_term", "Current Raft term", m.term.clone());
        registry.register(
            "raft_leader",
            "1 while this node is the Raft leader",
            m.leader.clone(),
        );
        registry.register(
            "raft_applied_index",
            "Last applied log index",
            m.applied.clone(),
        );
        registry.register("raft_voters", "Voters in the membership", m.voters.clone());
        registry.register("raft_members", "Voters and learners", m.members.clone());
        registry.register(
            "lease_fenced",
            "1 while this node's lease has expired and it fenced itself",
            m.fenced.clone(),
        );
        registry.register("nodes", "Cluster nodes by status", m.nodes.clone());
        registry.register("pods", "Pods by phase", m.pods.clone());
        registry.register(
            "pods_unschedulable",
            "Pods the scheduler could not place",
            m.unschedulable.clone(),
        );
        registry.register(
            "adopted_commit_info",
            "The commit in force (value 1)",
            m.adopted.clone(),
        );
        registry.register("git_pushes", "Status pushes that landed", m.pushes.clone());
        registry.register(
            "git_push_rejections",
            "Status pushes rejected by a concurrent writer",
            m.rejections.clone(),
        );
        registry.register(
            "git_push_failures",
            "Status pushes that failed (remote unreachable...)",
            m.failures.clone(),
        );
        registry.register(
            "git_outbox",
            "Status writes not yet pushed",
            m.outbox.clone(),
        );
        Self { registry, ..m }
    }

    /// Records the replicated state.
    pub fn observe_state(&self, s: &ClusterState) {
        let mut nodes: BTreeMap<&str, i64> =
            [("ready", 0), ("not_ready", 0), ("drained", 0)].into();
        for n in s.nodes.values() {
            *nodes
                .entry(if n.ready { "ready" } else { "not_ready" })
                .or_default() += 1;
            if n.drained {
                *nodes.entry("drained").or_default() += 1;
            }
        }
        for (status, v) in nodes {
            self.nodes
                .get_or_create(&StatusLabel {
                    status: status.into(),
                })
                .set(v);
        }
        let mut phases: BTreeMap<String, i64> =
            ["Pending", "Running", "Succeeded", "Failed", "Unknown"]
                .iter()
                .map(|p| (p.to_string(), 0))
                .collect();
        for p in s.pods.values() {
            *phases.entry(format!("{:?}", p.phase)).or_default() += 1;
        }
        for (phase, v) in phases {
            self.pods.get_or_create(&PhaseLabel { phase }).set(v);
        }
        self.unschedulable.set(
            s.pods
                .values()
                .filter(|p| p.node.is_none() && p.reason.is_some())
                .count() as i64,
        );
        self.adopted.clear();
        if let Some(c) = &s.commit {
            self.adopted
                .get_or_create(&CommitLabel { commit: c.clone() })
                .set(1);
        }
    }

    /// Records Raft and lease facts of `shared`'s node.
    pub fn observe_node(&self, shared: &Shared<ClusterState>) {
        {
            let m = shared.raft.metrics();
            let m = m.borrow();
            self.term.set(m.current_term as i64);
            self.leader
                .set(i64::from(m.state == openraft::ServerState::Leader));
            self.applied
                .set(m.last_applied.map(|l| l.index as i64).unwrap_or(0));
            let mem = m.membership_config.membership();
            self.voters.set(mem.voter_ids().count() as i64);
            self.members.set(mem.nodes().count() as i64);
        }
        self.fenced.set(i64::from(shared.lease.fenced()));
        shared.sm.read(|s| self.observe_state(s));
    }

    /// Records the status writer's counters.
    pub fn observe_writer(&self, w: &StatusWriter) {
        let st = w.stats();
        let now = [
            st.pushes.load(Ordering::Relaxed),
            st.rejections.load(Ordering::Relaxed),
            st.failures.load(Ordering::Relaxed),
        ];
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        for (i, c) in [&self.pushes, &self.rejections, &self.failures]
            .into_iter()
            .enumerate()
        {
            c.inc_by(now[i].saturating_sub(seen[i]));
        }
        *seen = now;
        if let Ok(n) = w.outbox().len() {
            self.outbox.set(n as i64);
        }
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!("encoding metrics: {e}");
        }
        out
    }
}

/// Serves `GET /metrics` for `shared`'s node on `listener` until the task is aborted.
pub fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared<ClusterState>>,
    writer: Option<StatusWriter>,
) -> tokio::task::JoinHandle<()> {
    let metrics = Arc::new(Metrics::new());
    let router = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let (metrics, shared, writer) = (metrics.clone(), shared.clone(), writer.clone());
            async move {
                metrics.observe_node(&shared);
                if let Some(w) = &writer {
                    metrics.observe_writer(w);
                }
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    metrics.encode(),
                )
            }
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!("metrics listener stopped: {e}");
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_metrics_count_nodes_and_pods() {
        use crate::testutil::{node, template_state};
        let s = template_state(&[node("n", 4000, 8 << 30)], 'b');
        let m = Metrics::new();
        m.observe_state(&s);
        let text = m.encode();
        for line in [
            "kommit_nodes{status=\"ready\"} 1",
            "kommit_nodes{status=\"not_ready\"} 0",
            "kommit_pods{phase=\"Pending\"} 2",
            "kommit_pods_unschedulable 0",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert!(text.contains(&format!(
            "kommit_adopted_commit_info{{commit=\"{}\"}} 1",
            "b".repeat(40)
        )));
        assert!(text.ends_with("# EOF\n"));
    }
}
