//! Liveness: heartbeats carrying node facts, the leader's NodeDown/NodeUp decisions, and each
//! node's lease with its self-fencing hook.
//!
//! Timeline of one heartbeat: the node sends at `s`; the leader confirms it still leads a
//! quorum (`ensure_linearizable`) and records the node as seen at `r >= s`; the node, on the
//! answer, extends its lease to `s + lease`. The leader may declare the node down only at
//! `r + down_after >= s + down_after`. [`LivenessConfig::validate`] requires
//! `lease + heartbeat < down_after`, so a node that is cut off fences itself (the
//! [`FenceHook`]) strictly before any leader can declare it down and reschedule its
//! at-most-once pods. A new leader starts its down clock only when it wins the election.

use super::{App, NodeFacts, NodeId};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Liveness timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LivenessConfig {
    /// Interval between heartbeats.
    pub heartbeat_ms: u64,
    /// How long one leader acknowledgement keeps the lease valid.
    pub lease_ms: u64,
    /// How long without a heartbeat before the leader proposes NodeDown.
    pub down_after_ms: u64,
}

impl Default for LivenessConfig {
    fn default() -> Self {
        Self {
            heartbeat_ms: 500,
            lease_ms: 2500,
            down_after_ms: 4000,
        }
    }
}

/// Errors of the liveness configuration.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LivenessError {
    /// The lease would outlive the down timeout.
    #[error(
        "lease {lease_ms} ms + heartbeat {heartbeat_ms} ms must be shorter than the down timeout {down_after_ms} ms"
    )]
    LeaseTooLong {
        /// Lease length.
        lease_ms: u64,
        /// Heartbeat interval.
        heartbeat_ms: u64,
        /// Down timeout.
        down_after_ms: u64,
    },
    /// A zero interval.
    #[error("heartbeat and lease must be positive")]
    Zero,
}

impl LivenessConfig {
    /// Checks that a node fences itself before a leader may declare it down.
    pub fn validate(&self) -> Result<(), LivenessError> {
        if self.heartbeat_ms == 0 || self.lease_ms == 0 {
            return Err(LivenessError::Zero);
        }
        if self.lease_ms + self.heartbeat_ms >= self.down_after_ms {
            return Err(LivenessError::LeaseTooLong {
                lease_ms: self.lease_ms,
                heartbeat_ms: self.heartbeat_ms,
                down_after_ms: self.down_after_ms,
            });
        }
        Ok(())
    }
}

/// Called when this node's lease expires (stop StatefulSet and at-most-once pods) and when it
/// is renewed again. Implemented by the node agent; must not block for long.
pub trait FenceHook: Send + Sync + 'static {
    /// The lease expired: stop every pod that must not run twice.
    fn fence(&self);
    /// The lease is valid again.
    fn unfence(&self) {}
}

/// A hook that only logs (no agent yet).
pub struct LogFence;

impl FenceHook for LogFence {
    fn fence(&self) {
        tracing::warn!("lease expired: fencing (stopping at-most-once pods)");
    }
    fn unfence(&self) {
        tracing::info!("lease renewed: unfenced");
    }
}

/// This node's lease.
pub struct Lease {
    expires: Mutex<Instant>,
    fenced: AtomicBool,
    lease: Duration,
    hook: Box<dyn FenceHook>,
}

impl Lease {
    /// A lease of `lease_ms`, valid for one lease period from now (a restarted node keeps its
    /// pods for one lease while it reaches the leader).
    pub fn new(lease_ms: u64, hook: Box<dyn FenceHook>) -> Self {
        let lease = Duration::from_millis(lease_ms);
        Self {
            expires: Mutex::new(Instant::now() + lease),
            fenced: AtomicBool::new(false),
            lease,
            hook,
        }
    }

    /// Extends the lease from the time the acknowledged heartbeat was sent.
    pub fn renew(&self, sent_at: Instant) {
        {
            let mut e = self.expires.lock().unwrap_or_else(|p| p.into_inner());
            let new = sent_at + self.lease;
            if new > *e {
                *e = new;
            }
        }
        if self.fenced.swap(false, Ordering::SeqCst) {
            self.hook.unfence();
        }
    }

    /// Fences if the lease has expired at `now`; returns whether the node is fenced.
    pub fn check(&self, now: Instant) -> bool {
        let expired = now >= *self.expires.lock().unwrap_or_else(|p| p.into_inner());
        if expired && !self.fenced.swap(true, Ordering::SeqCst) {
            self.hook.fence();
        }
        self.fenced.load(Ordering::SeqCst)
    }

    /// Whether the lease is valid now.
    pub fn valid(&self) -> bool {
        Instant::now() < *self.expires.lock().unwrap_or_else(|p| p.into_inner())
            && !self.fenced.load(Ordering::SeqCst)
    }

    /// Whether the fence hook has fired and not been undone.
    pub fn fenced(&self) -> bool {
        self.fenced.load(Ordering::SeqCst)
    }
}

/// Coalesces the leader's "do I still lead a quorum?" rounds for heartbeats.
///
/// Acknowledging a heartbeat needs a confirmation round that *started after the heartbeat
/// arrived* (otherwise a deposed leader could renew a lease on old evidence). With one round
/// per heartbeat, N nodes cost N quorum rounds per interval. Here callers queue: one round runs
/// at a time, and when it ends it answers every caller whose request was registered before it
/// started. A caller whose request came later waits for the next round.
#[derive(Default)]
pub struct Confirmer {
    requested: AtomicU64,
    round: tokio::sync::Mutex<(u64, bool)>,
    rounds: AtomicU64,
}

impl Confirmer {
    /// Waits for a confirmation round that started after this call; `round` runs one
    /// (`ensure_linearizable` in the daemon) and says whether it succeeded.
    pub async fn confirm<F, Fut>(&self, round: F) -> bool
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = bool>,
    {
        let mine = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let mut last = self.round.lock().await;
        if last.0 >= mine {
            return last.1;
        }
        // Every request numbered up to `covers` was made before this round starts.
        let covers = self.requested.load(Ordering::SeqCst);
        self.rounds.fetch_add(1, Ordering::SeqCst);
        let ok = round().await;
        *last = (covers, ok);
        ok
    }

    /// How many rounds ran so far.
    pub fn rounds(&self) -> u64 {
        self.rounds.load(Ordering::SeqCst)
    }
}

#[derive(Default)]
struct TrackerState {
    term: Option<u64>,
    since: Option<Instant>,
    seen: BTreeMap<NodeId, (Instant, NodeFacts)>,
}

/// The leader's record of heartbeats (reset whenever leadership changes).
#[derive(Default)]
pub struct Tracker {
    st: Mutex<TrackerState>,
}

impl Tracker {
    fn lock(&self) -> std::sync::MutexGuard<'_, TrackerState> {
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts (or continues) leadership in `term` at `now`; a new term forgets old sightings.
    pub fn lead(&self, term: u64, now: Instant) {
        let mut st = self.lock();
        if st.term != Some(term) {
            st.term = Some(term);
            st.since = Some(now);
            st.seen.clear();
        }
    }

    /// This node is not the leader.
    pub fn follow(&self) {
        let mut st = self.lock();
        st.term = None;
        st.since = None;
        st.seen.clear();
    }

    /// Records a heartbeat.
    pub fn seen(&self, id: NodeId, facts: NodeFacts, now: Instant) {
        self.lock().seen.insert(id, (now, facts));
    }

    /// Whether `id` counts as alive at `now`: seen within `down_after`, or never seen while the
    /// leadership is younger than `down_after` (grace for a new leader).
    pub fn alive(&self, id: NodeId, now: Instant, down_after: Duration) -> bool {
        let st = self.lock();
        match st.seen.get(&id) {
            Some((t, _)) => now.duration_since(*t) < down_after,
            None => st
                .since
                .map(|s| now.duration_since(s) < down_after)
                .unwrap_or(false),
        }
    }

    /// Facts of nodes seen within `down_after`.
    pub fn fresh(&self, now: Instant, down_after: Duration) -> BTreeMap<String, NodeFacts> {
        self.lock()
            .seen
            .values()
            .filter(|(t, _)| now.duration_since(*t) < down_after)
            .map(|(_, f)| (f.name.clone(), f.clone()))
            .collect()
    }

    /// Whether the down clock for a never-seen node has run out.
    pub fn grace_over(&self, now: Instant, down_after: Duration) -> bool {
        self.lock()
            .since
            .map(|s| now.duration_since(s) >= down_after)
            .unwrap_or(false)
    }
}

/// One leader decision about a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Propose NodeUp with these facts.
    Up(NodeFacts),
    /// Propose NodeDown for this node.
    Down(String),
}

/// The leader's level-triggered liveness decisions, from the replicated state and the
/// heartbeat record (pure given its inputs).
pub fn decide<A: App>(
    app: &A,
    fresh: &BTreeMap<String, NodeFacts>,
    grace_over: bool,
) -> Vec<Decision> {
    let mut out = Vec::new();
    for (name, facts) in fresh {
        match app.node_view(name) {
            Some(v) if v.up && &v.facts == facts => {}
            _ => out.push(Decision::Up(facts.clone())),
        }
    }
    for name in app.node_names() {
        if fresh.contains_key(&name) {
            continue;
        }
        if let Some(v) = app.node_view(&name) {
            if v.up && grace_over {
                out.push(Decision::Down(name));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_confirmations_share_rounds_and_never_reuse_an_older_one() {
        let c = Arc::new(Confirmer::default());
        let started = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (c, started) = (c.clone(), started.clone());
            tasks.push(tokio::spawn(async move {
                c.confirm(|| async {
                    started.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    true
                })
                .await
            }));
        }
        for t in tasks {
            assert!(t.await.unwrap());
        }
        let rounds = c.rounds();
        assert!((1..10).contains(&rounds), "50 callers took {rounds} rounds");
        // A call after every round finished needs a round of its own, and sees its result.
        assert!(!c.confirm(|| async { false }).await);
        assert_eq!(c.rounds(), rounds + 1);
    }
}
