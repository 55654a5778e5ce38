//! The Git end of the pipeline: fetched heads become `Adopt` entries, and the replicated state
//! goes back to Git as notes and the `kommit/status` branch.
//!
//! Every node mirrors the repository (so whichever node leads next can act at once), but only
//! the leader acts on it:
//!
//! 1. After each fetch, the leader compares the branch head with the adopted commit in the
//!    replicated state (`git::heads::evaluate_signed`: signature, fast-forward check, history-rewrite policy,
//!    load and validate). A valid head is proposed as `Entry::Adopt`; the state machine checks
//!    the parent again, so two leaders racing cannot adopt out of order.
//! 2. A head that is not adoptable is proposed as `Entry::Refuse` with the validation errors
//!    or the reason, and the adopted commit stays in force. Both decisions land in the
//!    state's commit history. An `Adopt` the state machine did not take (the adopted commit
//!    moved meanwhile) records nothing: the head is evaluated again on the next fetch.
//! 3. Notes are a function of the replicated state ([`notes::notes`]): after each decision
//!    and every `status_every`, whichever node leads queues the `adopted`, `superseded` and
//!    `refused` notes Git lacks ([`notebook`]), so a change of leader between an entry and
//!    its note neither loses nor doubles the note.
//! 4. Every `status_every`, the leader turns the state into status files
//!    ([`report::report`]) and queues a status commit with the files that changed.
//!
//! Followers never propose Adopt or Refuse and never queue writes. Nothing here reads Git on
//! an async worker: fetches, evaluations and note reads run on `spawn_blocking`.

pub mod notebook;
pub mod notes;
pub mod report;

use crate::consensus::node::{propose, Shared};
use crate::consensus::now_ms;
use crate::git::heads::{evaluate_signed, Verdict};
use crate::git::loader::Limits;
use crate::git::mirror::Mirror;
use crate::git::status::StatusChange;
use crate::git::time::Timestamp;
use crate::git::triggers::FetchState;
use crate::git::writer::{StatusWriter, WriterConfig};
use gix::ObjectId;
use kommit_reconcilers::{ClusterState, Entry};
use openraft::ServerState;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Tuning of the sync loop.
#[derive(Clone, Debug)]
pub struct SyncConfig {
    /// Size and count limits for reading a commit.
    pub limits: Limits,
    /// How often the leader writes status (only files that changed) and checks its notes.
    pub status_every: Duration,
    /// Whether this node writes notes when it leads. Always true in service; tests turn it
    /// off on one node to lose a leader between an entry and its note.
    pub write_notes: bool,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            status_every: Duration::from_secs(5),
            write_notes: true,
        }
    }
}

/// Where the desired state comes from, and the Git side's timing.
#[derive(Clone, Debug)]
pub struct GitConfig {
    /// The repository URL or path.
    pub url: String,
    /// The desired-state branch.
    pub branch: String,
    /// Fetch at least this often (a local repository is also watched).
    pub poll: Duration,
    /// The sync loop's tuning.
    pub sync: SyncConfig,
    /// The status writer's tuning.
    pub writer: WriterConfig,
    /// How to authenticate to the repository.
    pub credentials: crate::git::mirror::Credentials,
    /// Extra trusted CA certificates (PEM) for an https repository.
    pub ca_file: Option<std::path::PathBuf>,
    /// Serve push webhooks (`POST /hooks/git`) on this address; each one triggers a fetch.
    pub webhook: Option<(std::net::SocketAddr, crate::git::triggers::WebhookConfig)>,
}

impl GitConfig {
    /// A configuration for `url` and `branch` with default timing and no credentials.
    pub fn new(url: impl Into<String>, branch: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            branch: branch.into(),
            poll: crate::git::triggers::DEFAULT_POLL,
            sync: SyncConfig::default(),
            writer: WriterConfig::default(),
            credentials: Default::default(),
            ca_file: None,
            webhook: None,
        }
    }
}

/// Errors starting the Git side.
#[derive(Debug, thiserror::Error)]
pub enum GitSideError {
    /// The branch name is not acceptable.
    #[error("branch {0:?} is not a valid branch name")]
    Branch(String),
    /// The mirror could not be opened.
    #[error("opening the mirror of {url}: {source}")]
    Mirror {
        /// The repository.
        url: String,
        /// Cause.
        source: crate::git::mirror::MirrorError,
    },
    /// The outbox could not be opened.
    #[error("opening the status outbox: {0}")]
    Outbox(#[from] crate::git::queue::QueueError),
    /// The webhook address could not be bound.
    #[error("binding the webhook listener {addr}: {source}")]
    Webhook {
        /// The address.
        addr: std::net::SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
}

/// The Git side of a running node: mirror fetcher, sync loop and status writer.
pub struct GitSide {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _watcher: Option<notify::RecommendedWatcher>,
    stop: watch::Sender<bool>,
    /// What the sync loop did last.
    pub state: watch::Receiver<SyncState>,
    /// The status writer (its outbox and counters).
    pub writer: StatusWriter,
    /// The mirror (the web page reads commits' subjects and authors from it).
    pub mirror: Mirror,
}

impl GitSide {
    /// Starts the Git side of `shared`'s node, keeping the mirror and outbox under `data_dir`.
    pub fn start(
        git: &GitConfig,
        data_dir: &std::path::Path,
        shared: Arc<Shared<ClusterState>>,
    ) -> Result<Self, GitSideError> {
        use crate::git::{mirror, queue, status, triggers};
        if !mirror::valid_branch(&git.branch) {
            return Err(GitSideError::Branch(git.branch.clone()));
        }
        let mut remote = mirror::RemoteConfig::new(git.url.clone(), git.branch.clone());
        remote.credentials = git.credentials.clone();
        remote.ca_file = git.ca_file.clone();
        let m = Mirror::open(data_dir.join("mirror.git"), remote).map_err(|source| {
            GitSideError::Mirror {
                url: git.url.clone(),
                source,
            }
        })?;
        let outbox = queue::Outbox::open(data_dir.join("outbox.redb"), 100_000)?;
        let (stop, stopped) = watch::channel(false);
        let trigger = triggers::FetchTrigger::default();
        // A local repository that cannot be watched (yet) is still polled; the fetch error
        // shows in `kommit status` until it appears.
        let watcher = triggers::local_repo_dir(&git.url).and_then(|_| {
            triggers::watch_local_remote(&git.url, trigger.clone())
                .map_err(|e| tracing::warn!("not watching {}: {e}; polling only", git.url))
                .ok()
        });
        let mut tasks = Vec::new();
        if let Some((addr, hook)) = &git.webhook {
            let listener = std::net::TcpListener::bind(addr)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .and_then(tokio::net::TcpListener::from_std)
                .map_err(|source| GitSideError::Webhook {
                    addr: *addr,
                    source,
                })?;
            let router = axum::Router::new().nest(
                "/hooks/git",
                triggers::webhook_router(hook.clone(), trigger.clone()),
            );
            let mut stop_hook = stopped.clone();
            tasks.push(crate::door::serve(
                listener,
                router,
                crate::door::Limits::WEBHOOK,
                async move {
                    let _ = stop_hook.changed().await;
                },
            ));
        }
        let (fetcher, fetched) =
            triggers::spawn_fetcher(m.clone(), git.poll, trigger, stopped.clone());
        let writer = StatusWriter::new(
            m.clone(),
            outbox,
            status::Identity::node(&shared.name),
            git.writer.clone(),
        );
        let writer_task = tokio::spawn(writer.clone().run(stopped.clone()));
        let (sync_task, state) = spawn(
            shared,
            m.clone(),
            fetched,
            writer.clone(),
            git.sync.clone(),
            stopped,
        );
        tasks.extend([fetcher, writer_task, sync_task]);
        Ok(Self {
            tasks,
            _watcher: watcher,
            stop,
            state,
            writer,
            mirror: m,
        })
    }

    /// Local API routes: `GET /sync` answers the [`SyncState`].
    pub fn routes(&self) -> axum::Router {
        let state = self.state.clone();
        let writer = self.writer.clone();
        axum::Router::new().route(
            "/sync",
            axum::routing::get(move || {
                let (state, writer) = (state.clone(), writer.clone());
                async move {
                    let mut s = state.borrow().clone();
                    s.outbox = writer.outbox().len().unwrap_or(s.outbox);
                    axum::Json(s)
                }
            }),
        )
    }

    /// Stops every task (queued writes stay in the outbox for the next start).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }
}

/// What the Git side did last, for the local API (`GET /sync`) and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SyncState {
    /// The repository.
    pub repo: String,
    /// The branch.
    pub branch: String,
    /// Fetch attempts so far.
    pub fetches: u64,
    /// The branch head after the last successful fetch.
    pub head: Option<String>,
    /// Why the last fetch failed, if it did.
    pub fetch_error: Option<String>,
    /// The last head the leader evaluated (on this node, while it led).
    pub evaluated: Option<String>,
    /// The last error evaluating, proposing or queueing.
    pub last_error: Option<String>,
    /// Status writes not yet pushed.
    pub outbox: u64,
}

fn stamp() -> Timestamp {
    Timestamp((now_ms() / 1000) as i64)
}

fn is_leader(shared: &Shared<ClusterState>) -> bool {
    shared.raft.metrics().borrow().state == ServerState::Leader
}

/// The adopted commit and whether its config allows history rewrites.
fn adopted(shared: &Shared<ClusterState>) -> Result<Option<(ObjectId, bool)>, String> {
    shared.sm.read(|s| match &s.commit {
        None => Ok(None),
        Some(c) => ObjectId::from_hex(c.as_bytes())
            .map(|id| Some((id, s.desired.config.allow_history_rewrite)))
            .map_err(|e| format!("adopted commit {c:?} is not a SHA: {e}")),
    })
}

/// Spawns the sync loop. It runs until `shutdown` turns true.
pub fn spawn(
    shared: Arc<Shared<ClusterState>>,
    mirror: Mirror,
    fetched: watch::Receiver<FetchState>,
    writer: StatusWriter,
    config: SyncConfig,
    shutdown: watch::Receiver<bool>,
) -> (tokio::task::JoinHandle<()>, watch::Receiver<SyncState>) {
    let (tx, rx) = watch::channel(SyncState {
        repo: mirror.remote().url.clone(),
        branch: mirror.remote().branch.clone(),
        ..Default::default()
    });
    let task = tokio::spawn(run(shared, mirror, fetched, writer, config, shutdown, tx));
    (task, rx)
}

async fn run(
    shared: Arc<Shared<ClusterState>>,
    mirror: Mirror,
    mut fetched: watch::Receiver<FetchState>,
    writer: StatusWriter,
    config: SyncConfig,
    mut shutdown: watch::Receiver<bool>,
    tx: watch::Sender<SyncState>,
) {
    let mut book = notebook::NoteBook::default();
    // The applied index the notes were last checked at.
    let mut noted_at: Option<u64> = None;
    let mut last_report: Option<report::Report> = None;
    // The applied index the last report was built at: an unchanged state needs no new one.
    let mut reported_at: Option<u64> = None;
    let mut status_tick = tokio::time::interval(config.status_every);
    status_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            r = fetched.changed() => {
                if r.is_err() {
                    return;
                }
                let f = fetched.borrow_and_update().clone();
                let head = f.head;
                tx.send_modify(|s| {
                    s.fetches = f.fetches;
                    s.head = f.head.map(|h| h.to_string());
                    s.fetch_error = f.last_error.clone();
                    s.outbox = writer.outbox().len().unwrap_or(0);
                });
                if let (Some(head), true) = (head, is_leader(&shared)) {
                    let outcome = consider(&shared, &mirror, &config, head).await;
                    tx.send_modify(|s| {
                        s.evaluated = Some(head.to_string());
                        s.last_error = outcome.err();
                    });
                    if config.write_notes {
                        write_notes(&shared, &mirror, &writer, &mut book, &mut noted_at, &tx).await;
                    }
                }
            }
            _ = status_tick.tick() => {
                if !is_leader(&shared) {
                    last_report = None;
                    reported_at = None;
                    book.forget();
                    noted_at = None;
                    continue;
                }
                if config.write_notes {
                    write_notes(&shared, &mirror, &writer, &mut book, &mut noted_at, &tx).await;
                }
                let applied = shared.sm.last_applied_index();
                if reported_at == Some(applied) {
                    continue;
                }
                if let Err(e) = write_status(&shared, &writer, &mut last_report) {
                    tracing::warn!("status not queued: {e}");
                    tx.send_modify(|s| s.last_error = Some(e));
                } else {
                    reported_at = Some(applied);
                }
            }
        }
    }
}

/// Queues the notes Git lacks, unless nothing was applied since the last check.
async fn write_notes(
    shared: &Arc<Shared<ClusterState>>,
    mirror: &Mirror,
    writer: &StatusWriter,
    book: &mut notebook::NoteBook,
    noted_at: &mut Option<u64>,
    tx: &watch::Sender<SyncState>,
) {
    let applied = shared.sm.last_applied_index();
    if *noted_at == Some(applied) {
        return;
    }
    match book.sync(shared, mirror, writer).await {
        Ok(n) => {
            if n > 0 {
                tracing::debug!(notes = n, "notes queued");
            }
            *noted_at = Some(applied);
        }
        Err(e) => {
            tracing::warn!("notes not queued: {e}");
            book.forget();
            tx.send_modify(|s| s.last_error = Some(e));
        }
    }
}

/// Evaluates one fetched head on the leader: propose adopting it, refusing it, or nothing.
async fn consider(
    shared: &Arc<Shared<ClusterState>>,
    mirror: &Mirror,
    config: &SyncConfig,
    head: ObjectId,
) -> Result<(), String> {
    // A fresh view of the adopted commit: a new leader may not have applied everything yet.
    shared
        .raft
        .ensure_linearizable()
        .await
        .map_err(|e| format!("not a confirmed leader: {e}"))?;
    let adopted = adopted(shared)?;
    let refused = shared.sm.read(|s| s.history.is_refused(&head.to_string()));
    if adopted.map(|(c, _)| c) == Some(head) || refused {
        return Ok(());
    }
    // The adopted commit's trusted signers (a head cannot add its own).
    let trusted = shared.sm.read(|s| {
        if s.commit.is_some() {
            s.desired.config.trusted_signing_keys.clone()
        } else {
            Vec::new()
        }
    });
    let (m, limits) = (mirror.clone(), config.limits.clone());
    let at = stamp();
    let started = std::time::Instant::now();
    let verdict = tokio::task::spawn_blocking(move || {
        let repo = m.repo().map_err(|e| e.to_string())?;
        evaluate_signed(&repo, adopted, &trusted, head, &limits, at).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| format!("evaluation task failed: {e}"))??;
    tracing::debug!(commit = %head, ms = started.elapsed().as_millis() as u64, "evaluated");
    match verdict {
        Verdict::Unchanged => Ok(()),
        Verdict::Refuse { note, .. } => {
            let (reason, diagnostics) = (note.reason, note.diagnostics);
            tracing::warn!(
                commit = %head,
                "refusing commit: {}",
                reason.as_deref().or(diagnostics.first().map(String::as_str)).unwrap_or_default()
            );
            refuse(shared, head, reason, diagnostics).await
        }
        Verdict::Adopt { head: new, loaded } => {
            let previous = adopted.map(|(c, _)| c);
            let desired = loaded.desired;
            let entry = Entry::Adopt {
                commit: head.to_string(),
                // The state machine requires the parent to be the adopted commit unless the
                // adopted kommit.yaml allows rewrites; a rewrite names no parent.
                parent: previous.filter(|_| new.fast_forward).map(|c| c.to_string()),
                digest: desired.digest(),
                desired,
                by: Some(shared.name.clone()),
            };
            let started = std::time::Instant::now();
            propose(shared, &entry)
                .await
                .map_err(|e| format!("proposing {head}: {e}"))?;
            tracing::debug!(commit = %head, ms = started.elapsed().as_millis() as u64, "adoption applied");
            let now = shared.sm.read(|s| s.commit.clone());
            if now.as_deref() != Some(head.to_string().as_str()) {
                // The adopted commit moved between evaluation and apply (a race with another
                // leader). Nothing is recorded: the next fetch evaluates the head again against
                // the new adopted commit, and adopts or refuses it for a real reason.
                return Err(format!(
                    "the cluster state did not adopt {head}: the adopted commit moved to {} meanwhile; evaluating it again",
                    now.as_deref().unwrap_or("none")
                ));
            }
            tracing::info!(commit = %head, "adopted");
            Ok(())
        }
    }
}

/// Proposes `Entry::Refuse`: the refusal enters the state, and its note follows from there.
async fn refuse(
    shared: &Arc<Shared<ClusterState>>,
    head: ObjectId,
    reason: Option<String>,
    diagnostics: Vec<String>,
) -> Result<(), String> {
    let entry = Entry::Refuse {
        commit: head.to_string(),
        reason,
        diagnostics,
        by: Some(shared.name.clone()),
    };
    propose(shared, &entry)
        .await
        .map(|_| ())
        .map_err(|e| format!("proposing the refusal of {head}: {e}"))
}

/// Queues a status commit with the files that changed since the last one this leader wrote.
fn write_status(
    shared: &Shared<ClusterState>,
    writer: &StatusWriter,
    last: &mut Option<report::Report>,
) -> Result<(), String> {
    let at = stamp();
    let (commit, now) = shared
        .sm
        .read(|s| (s.commit.clone(), report::report(s, at)));
    let Some(commit) = commit else {
        return Ok(());
    };
    let empty = report::Report::default();
    let (nodes, objects) = report::diff(last.as_ref().unwrap_or(&empty), &now);
    if nodes.is_empty() && objects.is_empty() {
        return Ok(());
    }
    writer
        .status(StatusChange {
            source_commit: commit,
            at,
            nodes,
            objects,
        })
        .map_err(|e| e.to_string())?;
    *last = Some(now);
    Ok(())
}
