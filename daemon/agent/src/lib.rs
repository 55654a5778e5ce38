//! kommit's node agent: runs the pods the replicated state binds to this node.
//!
//! The agent sits between the replicated state and the runtime, and owns neither. Why it has
//! this shape:
//!
//! - **Decide, then act.** [`plan::plan`] is a pure function of the pods bound here
//!   ([`translate::PodPlan`]s), what the runtime reports and what the agent remembers, and
//!   the time. It returns [`plan::Action`]s; [`exec::Executor`] carries them out through the
//!   runtime traits. Restart policies, back-off and init-container ordering are therefore
//!   table-tested without a kernel or a clock.
//! - **Level-triggered.** Every pass starts from what is true now (the state, the runtime's
//!   own records), so a missed event, a failed step or a daemon restart is repaired by the
//!   next pass. Nothing the agent keeps in memory is needed to keep containers running: the
//!   restart count is the attempt number in the runtime container's name.
//! - **No Raft, no Git.** The daemon hands the agent a [`agent::Host`] that computes this
//!   node's [`view::View`] of the state and carries the entries it produces (`PodStatus`,
//!   `Ack`).
//!
//! Modules: [`translate`] (pod record -> runtime specs), [`plan`], [`exec`], [`probe`]
//! (startup, readiness and liveness probes), [`report`] (observed state -> `PodStatus`
//! entries, coalesced and rate-bounded), [`view`] (state -> this node's share) and [`agent`]
//! (the loop).

pub mod agent;
pub mod exec;
pub mod fence;
pub mod node;
pub mod plan;
pub mod probe;
pub mod report;
pub mod services;
pub mod translate;
pub mod view;

pub use agent::{Agent, Host, Kick, Stop};
pub use exec::Runtimes;
pub use view::View;
