//! The read-only web page every kommit node serves: the commit in force, the history of
//! decisions as an audit trail, rollouts drawn as pictures, workloads, pods and nodes, live.
//!
//! Why this shape: the page must never disagree with Git. So it holds no facts of its own
//! but one: the rollout samples it records ([`timeline`]), which Git does not keep. Every
//! other fact arrives as [`Facts`]: the replicated state, and what the daemon derives from
//! it with the same functions that write the notes and the `kommit/status` branch (the
//! daemon fills [`CommitFacts`] from the notes it would write, and [`ObjectFacts`] from the
//! status files). The pages ([`pages`]) are pure functions from facts to HTML: no clock (the
//! state's leader time is "now"), no environment, no files; the benchmark and the unit tests
//! call them directly. [`server`] serves them with axum and pushes each page's main
//! fragment again over server-sent events whenever the state changes.
//!
//! Everything read from Git is untrusted: maud escapes every interpolated value, and the
//! pages never render a Secret (its data is not a fact they take) nor a container's
//! environment.
#![deny(missing_docs)]

pub mod auth;
pub mod chart;
pub mod filter;
pub mod layout;
pub mod pages;
pub mod route;
pub mod server;
pub mod synthetic;
pub mod timeline;

use kommit_reconcilers::ClusterState;
use std::collections::BTreeMap;

/// Raft and Git facts about the cluster, as the serving node sees them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterFacts {
    /// The node serving the page.
    pub node: String,
    /// Its Raft role (`Leader`, `Follower`, `Learner`, ...).
    pub role: String,
    /// The leader's name, when known.
    pub leader: Option<String>,
    /// Voters' names.
    pub voters: Vec<String>,
    /// Learners' names.
    pub learners: Vec<String>,
    /// The Raft term.
    pub term: u64,
    /// The last applied index.
    pub applied: u64,
    /// Whether this node's lease expired and it fenced itself.
    pub fenced: bool,
    /// The repository URL (credentials never appear: the daemon keeps them apart).
    pub repo: Option<String>,
    /// The branch.
    pub branch: Option<String>,
    /// The branch head after the last fetch.
    pub head: Option<String>,
    /// Why the last fetch failed.
    pub fetch_error: Option<String>,
}

/// What a commit's note says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// In force.
    Adopted,
    /// Never adopted.
    Refused,
    /// Adopted, then replaced.
    Superseded,
}

impl Decision {
    /// The lowercase word the notes use.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Adopted => "adopted",
            Decision::Refused => "refused",
            Decision::Superseded => "superseded",
        }
    }
}

/// Who wrote a commit and when, from the mirror.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommitMeta {
    /// The first line of its message.
    pub subject: String,
    /// Author name.
    pub author: String,
    /// Committer time, seconds since the epoch (the push is at or after it).
    pub time: i64,
}

/// One commit's note, as the leader writes it to `refs/notes/kommit`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitFacts {
    /// The commit (40 hex).
    pub commit: String,
    /// Adopted, refused or superseded.
    pub decision: Decision,
    /// When, seconds since the epoch (leader time).
    pub at: i64,
    /// The leader that decided.
    pub by: Option<String>,
    /// For superseded: by which commit.
    pub superseded_by: Option<String>,
    /// For refused without diagnostics: why.
    pub reason: Option<String>,
    /// Validation errors, `file:line:col: message`.
    pub diagnostics: Vec<String>,
    /// Node -> when it converged on this commit (seconds).
    pub acks: BTreeMap<String, i64>,
    /// Subject, author, time, when the mirror has the commit.
    pub meta: Option<CommitMeta>,
}

/// One object's health, as the `kommit/status` branch holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectFacts {
    /// `healthy`, `progressing`, `degraded`, `failed` or `unknown`.
    pub health: String,
    /// Why, when not healthy.
    pub message: Option<String>,
    /// Desired replicas.
    pub replicas: Option<u32>,
    /// Ready replicas.
    pub ready: Option<u32>,
}

/// Everything a page is rendered from.
#[derive(Clone, Copy, Debug)]
pub struct Facts<'a> {
    /// The replicated state.
    pub state: &'a ClusterState,
    /// Raft and Git.
    pub cluster: &'a ClusterFacts,
    /// Notes of the recorded commits, newest decision first.
    pub commits: &'a [CommitFacts],
    /// Object health by `namespace/Kind/name`.
    pub objects: &'a BTreeMap<String, ObjectFacts>,
    /// The recorded rollout samples.
    pub timeline: &'a timeline::Timeline,
    /// A commit URL pattern with `{sha}` (from the page's configuration), if any.
    pub forge: Option<&'a str>,
}
