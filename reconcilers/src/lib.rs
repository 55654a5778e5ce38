//! kommit's replicated state machine: [`ClusterState`], the log [`Entry`] type, the workload
//! controllers and the deterministic scheduler.
//!
//! Why this shape: kommit has no central scheduler. Every node applies the same Raft log to
//! its own copy of [`ClusterState`] and must end with the same bytes, so that anyone (the
//! node agents, `kommit plan`, an auditor) can recompute a placement offline. Hence:
//! - `apply(entry, at)` is the only mutator and it is pure: time is the proposer's `at`,
//!   identities are hashes of (owner, template hash, slot/serial), no HashMap order leaks;
//! - everything is serde data in BTreeMaps, so the canonical bytes are the snapshot and their
//!   SHA-256 is a digest nodes can compare;
//! - `apply` returns [`Effects`] as data (pods to start/stop per node, endpoints, IPs);
//!   it never acts; the daemon executes them;
//! - the scheduler is a separate pure function ([`scheduler::schedule`]) so it can be tested
//!   and benchmarked alone.
//!
//! StatefulSets, Jobs and CronJobs run through controllers of their own, with claims bound
//! to node-local volumes ([`records`]); CronJob times come from [`cron`], in a time zone
//! from the IANA database compiled in.

pub mod alloc;
pub mod controllers;
pub mod cron;
pub mod history;
pub mod ids;
pub mod pods;
pub mod records;
pub mod scheduler;
pub mod services;
pub mod state;
mod tracker;
pub mod trust;
pub mod types;

pub use history::{CommitOutcome, CommitRecord, History, HISTORY_LEN};
pub use pods::Pods;
pub use records::{
    ClaimRecord, CronJobRecord, JobOutcome, JobRecord, ReleasedVolume, SpawnedJob,
    StatefulSetRecord,
};
pub use state::{ClusterState, StateError};
pub use trust::{Trust, TrustOp};
pub use types::{
    ContainerState, ContainerStatus, DaemonSetRecord, DeploymentStatus, Effects, Endpoint, Entry,
    EventType, IpChange, Millis, NodeInfo, NodeRecord, Owner, PodEvent, PodPhase, PodRecord,
    PodRef, PodStatusChange, ReplicaSetRecord, RolloutPhase, Taint, MAX_STATIC_PODS,
};
