//! openraft storage-v2 on redb: the log store ([`LogStore`]) and the state-machine store
//! ([`StateMachineStore`]) share one redb database per node.
//!
//! Layout (two tables):
//! * `log`: index (u64) -> JSON of `openraft::Entry`. Append-only without holes: `append`
//!   writes a contiguous run, `truncate` removes a suffix, `purge` removes a prefix.
//! * `meta`: `vote`, `committed`, `last_purged`, `snapshot_meta`, `snapshot_data`.
//!
//! Durability: every write transaction commits with redb's default `Durability::Immediate`
//! (fsync) before the call returns, so the vote is durable before `save_vote` returns and
//! `LogFlushed` is signalled only after the appended entries are on disk. Every redb call runs
//! in `spawn_blocking`, never on an async worker.
//!
//! The application state itself lives in memory. On open it is rebuilt from the latest
//! snapshot; openraft then re-applies the log from the snapshot up to the saved `committed`
//! index (`save_committed` is implemented for exactly this), so nothing applied is lost.

use super::{App, Applied, NodeId, Proposal, TypeConfig};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogReader,
    RaftSnapshotBuilder, SnapshotMeta, StorageError, StoredMembership, Vote,
};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::fmt::Debug;
use std::io::Cursor;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{Arc, RwLock};
use tokio::sync::{mpsc, watch};

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Maximum size of one stored log entry or snapshot we accept back from disk.
const MAX_RECORD_BYTES: usize = 256 << 20;

/// Errors opening the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The redb file could not be opened or created.
    #[error("cannot open raft store {path}: {source}")]
    Open {
        /// The database path.
        path: String,
        /// The redb error.
        source: Box<redb::DatabaseError>,
    },
    /// The tables could not be created.
    #[error("cannot initialise raft store {path}: {message}")]
    Init {
        /// The database path.
        path: String,
        /// What failed.
        message: String,
    },
    /// The stored snapshot could not be decoded.
    #[error("cannot restore snapshot from raft store {path}: {message}")]
    Snapshot {
        /// The database path.
        path: String,
        /// What failed.
        message: String,
    },
}

type SErr = StorageError<NodeId>;

fn io_err(subject: ErrorSubject<NodeId>, verb: ErrorVerb, e: impl std::fmt::Display) -> SErr {
    StorageError::from_io_error(subject, verb, std::io::Error::other(e.to_string()))
}

/// Runs a redb operation on the blocking pool (or inline for the in-memory backend of the
/// deterministic simulation, where there is no disk to wait for).
async fn blocking<T: Send + 'static>(
    inline: bool,
    f: impl FnOnce() -> Result<T, SErr> + Send + 'static,
) -> Result<T, SErr> {
    if inline {
        return f();
    }
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(io_err(ErrorSubject::Store, ErrorVerb::Write, e)),
    }
}

fn get_meta(db: &Database, key: &str) -> Result<Option<Vec<u8>>, SErr> {
    let r = |e: &dyn std::fmt::Display| io_err(ErrorSubject::Store, ErrorVerb::Read, e);
    let txn = db.begin_read().map_err(|e| r(&e))?;
    let table = txn.open_table(META).map_err(|e| r(&e))?;
    let v = table.get(key).map_err(|e| r(&e))?;
    Ok(v.map(|g| g.value().to_vec()))
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, SErr> {
    if bytes.len() > MAX_RECORD_BYTES {
        return Err(io_err(
            ErrorSubject::Store,
            ErrorVerb::Read,
            format!("{what} record of {} bytes exceeds the limit", bytes.len()),
        ));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Read, format!("{what}: {e}")))
}

fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, SErr> {
    serde_json::to_vec(v).map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Write, e))
}

/// Opens (or creates) the node's redb database at `path`.
pub fn open_database(path: &Path) -> Result<Arc<Database>, StoreError> {
    let db = Database::create(path).map_err(|e| StoreError::Open {
        path: path.display().to_string(),
        source: Box::new(e),
    })?;
    init_tables(&db).map_err(|message| StoreError::Init {
        path: path.display().to_string(),
        message,
    })?;
    Ok(Arc::new(db))
}

/// Creates an in-memory redb database (simulation and tests).
pub fn in_memory_database() -> Result<Arc<Database>, StoreError> {
    let db = Database::builder()
        .create_with_backend(redb::backends::InMemoryBackend::new())
        .map_err(|e| StoreError::Open {
            path: "<memory>".into(),
            source: Box::new(e),
        })?;
    init_tables(&db).map_err(|message| StoreError::Init {
        path: "<memory>".into(),
        message,
    })?;
    Ok(Arc::new(db))
}

fn init_tables(db: &Database) -> Result<(), String> {
    let txn = db.begin_write().map_err(|e| e.to_string())?;
    txn.open_table(LOG).map_err(|e| e.to_string())?;
    txn.open_table(META).map_err(|e| e.to_string())?;
    txn.commit().map_err(|e| e.to_string())
}

/// The Raft log, vote and committed index on redb.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
    inline: bool,
}

impl LogStore {
    /// A log store on `db`.
    pub fn new(db: Arc<Database>) -> Self {
        Self { db, inline: false }
    }

    /// A log store that calls redb inline. Only for an in-memory database in the
    /// deterministic simulation (tokio paused time); never for a file on disk.
    pub fn new_inline_in_memory(db: Arc<Database>) -> Self {
        Self { db, inline: true }
    }

    fn put_meta(&self, key: &'static str, value: Vec<u8>) -> impl FnOnce() -> Result<(), SErr> {
        let db = self.db.clone();
        move || {
            let w = |e: &dyn std::fmt::Display| io_err(ErrorSubject::Store, ErrorVerb::Write, e);
            let txn = db.begin_write().map_err(|e| w(&e))?;
            {
                let mut t = txn.open_table(META).map_err(|e| w(&e))?;
                t.insert(key, value.as_slice()).map_err(|e| w(&e))?;
            }
            txn.commit().map_err(|e| w(&e))
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, SErr> {
        let start = match range.start_bound() {
            Bound::Included(x) => *x,
            Bound::Excluded(x) => x.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(x) => Some(x.saturating_add(1)),
            Bound::Excluded(x) => Some(*x),
            Bound::Unbounded => None,
        };
        let db = self.db.clone();
        blocking(self.inline, move || {
            let r = |e: &dyn std::fmt::Display| io_err(ErrorSubject::Logs, ErrorVerb::Read, e);
            let txn = db.begin_read().map_err(|e| r(&e))?;
            let table = txn.open_table(LOG).map_err(|e| r(&e))?;
            let iter = match end {
                Some(end) if end <= start => return Ok(Vec::new()),
                Some(end) => table.range(start..end),
                None => table.range(start..),
            }
            .map_err(|e| r(&e))?;
            let mut out = Vec::new();
            for item in iter {
                let (_, v) = item.map_err(|e| r(&e))?;
                out.push(decode::<Entry<TypeConfig>>(v.value(), "log entry")?);
            }
            Ok(out)
        })
        .await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, SErr> {
        let db = self.db.clone();
        blocking(self.inline, move || {
            let r = |e: &dyn std::fmt::Display| io_err(ErrorSubject::Logs, ErrorVerb::Read, e);
            let last_purged: Option<LogId<NodeId>> = match get_meta(&db, "last_purged")? {
                Some(b) => decode(&b, "last_purged")?,
                None => None,
            };
            let txn = db.begin_read().map_err(|e| r(&e))?;
            let table = txn.open_table(LOG).map_err(|e| r(&e))?;
            let last = table.last().map_err(|e| r(&e))?;
            let last_log_id = match last {
                Some((_, v)) => Some(decode::<Entry<TypeConfig>>(v.value(), "log entry")?.log_id),
                None => last_purged,
            };
            Ok(LogState {
                last_purged_log_id: last_purged,
                last_log_id,
            })
        })
        .await
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), SErr> {
        blocking(self.inline, self.put_meta("vote", encode(vote)?)).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, SErr> {
        let db = self.db.clone();
        blocking(self.inline, move || match get_meta(&db, "vote")? {
            Some(b) => decode(&b, "vote").map(Some),
            None => Ok(None),
        })
        .await
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), SErr> {
        blocking(self.inline, self.put_meta("committed", encode(&committed)?)).await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, SErr> {
        let db = self.db.clone();
        blocking(self.inline, move || match get_meta(&db, "committed")? {
            Some(b) => decode(&b, "committed"),
            None => Ok(None),
        })
        .await
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), SErr>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = Vec::new();
        for e in entries {
            batch.push((e.log_id.index, encode(&e)?));
        }
        let db = self.db.clone();
        let res = blocking(self.inline, move || {
            let w = |e: &dyn std::fmt::Display| io_err(ErrorSubject::Logs, ErrorVerb::Write, e);
            let txn = db.begin_write().map_err(|e| w(&e))?;
            {
                let mut t = txn.open_table(LOG).map_err(|e| w(&e))?;
                // No holes: the first new index must follow the current last one.
                if let (Some((first, _)), Some((last, _))) =
                    (batch.first(), t.last().map_err(|e| w(&e))?)
                {
                    let last = last.value();
                    if *first > last + 1 {
                        return Err(w(&format!(
                            "append at index {first} would leave a hole after {last}"
                        )));
                    }
                }
                for (idx, bytes) in &batch {
                    t.insert(*idx, bytes.as_slice()).map_err(|e| w(&e))?;
                }
            }
            txn.commit().map_err(|e| w(&e))
        })
        .await;
        match res {
            Ok(()) => {
                // Signalled only once the transaction is durably committed.
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(e)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), SErr> {
        let db = self.db.clone();
        blocking(self.inline, move || {
            let w = |e: &dyn std::fmt::Display| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e);
            let txn = db.begin_write().map_err(|e| w(&e))?;
            {
                let mut t = txn.open_table(LOG).map_err(|e| w(&e))?;
                t.retain_in(log_id.index.., |_, _| false)
                    .map_err(|e| w(&e))?;
            }
            txn.commit().map_err(|e| w(&e))
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), SErr> {
        let db = self.db.clone();
        let purged = encode(&Some(log_id))?;
        blocking(self.inline, move || {
            let w = |e: &dyn std::fmt::Display| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e);
            let txn = db.begin_write().map_err(|e| w(&e))?;
            {
                let mut m = txn.open_table(META).map_err(|e| w(&e))?;
                m.insert("last_purged", purged.as_slice())
                    .map_err(|e| w(&e))?;
                let mut t = txn.open_table(LOG).map_err(|e| w(&e))?;
                t.retain_in(..=log_id.index, |_, _| false)
                    .map_err(|e| w(&e))?;
            }
            txn.commit().map_err(|e| w(&e))
        })
        .await
    }
}

struct SmState<A> {
    app: A,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, openraft::BasicNode>,
}

struct SmInner<A: App> {
    db: Arc<Database>,
    inline: bool,
    state: RwLock<SmState<A>>,
    effects: Option<mpsc::UnboundedSender<(u64, A::Effects)>>,
    applied_tx: watch::Sender<u64>,
    snapshot_seq: std::sync::atomic::AtomicU64,
}

/// The application state machine on top of redb snapshots.
pub struct StateMachineStore<A: App> {
    inner: Arc<SmInner<A>>,
}

impl<A: App> Clone for StateMachineStore<A> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StoredSnapshotMeta {
    meta: SnapshotMeta<NodeId, openraft::BasicNode>,
}

impl<A: App> StateMachineStore<A> {
    /// Opens the state machine on `db`, restoring the latest stored snapshot. Effects of every
    /// applied entry are sent to `effects` when given.
    pub fn open(
        db: Arc<Database>,
        effects: Option<mpsc::UnboundedSender<(u64, A::Effects)>>,
    ) -> Result<Self, StoreError> {
        Self::open_with(db, effects, false)
    }

    /// Like [`StateMachineStore::open`], calling redb inline: only for an in-memory database
    /// in the deterministic simulation.
    pub fn open_inline_in_memory(db: Arc<Database>) -> Result<Self, StoreError> {
        Self::open_with(db, None, true)
    }

    fn open_with(
        db: Arc<Database>,
        effects: Option<mpsc::UnboundedSender<(u64, A::Effects)>>,
        inline: bool,
    ) -> Result<Self, StoreError> {
        let snap = |message: String| StoreError::Snapshot {
            path: "raft store".into(),
            message,
        };
        let meta = get_meta(&db, "snapshot_meta").map_err(|e| snap(e.to_string()))?;
        let data = get_meta(&db, "snapshot_data").map_err(|e| snap(e.to_string()))?;
        let state = match (meta, data) {
            (Some(m), Some(d)) => {
                let m: StoredSnapshotMeta =
                    decode(&m, "snapshot meta").map_err(|e| snap(e.to_string()))?;
                SmState {
                    app: A::restore(&d).map_err(snap)?,
                    last_applied: m.meta.last_log_id,
                    membership: m.meta.last_membership,
                }
            }
            _ => SmState {
                app: A::default(),
                last_applied: None,
                membership: StoredMembership::default(),
            },
        };
        let applied = state.last_applied.map(|l| l.index).unwrap_or(0);
        Ok(Self {
            inner: Arc::new(SmInner {
                db,
                inline,
                state: RwLock::new(state),
                effects,
                applied_tx: watch::channel(applied).0,
                snapshot_seq: std::sync::atomic::AtomicU64::new(0),
            }),
        })
    }

    /// Reads the application state.
    pub fn read<R>(&self, f: impl FnOnce(&A) -> R) -> R {
        let guard = self
            .inner
            .state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&guard.app)
    }

    /// The index of the last applied log entry (0 when none).
    pub fn last_applied_index(&self) -> u64 {
        *self.inner.applied_tx.borrow()
    }

    /// A receiver that changes whenever the applied index advances.
    pub fn applied_watch(&self) -> watch::Receiver<u64> {
        self.inner.applied_tx.subscribe()
    }

    /// Digest of the application state.
    pub fn digest(&self) -> String {
        self.read(|a| a.digest())
    }

    fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, SmState<A>> {
        self.inner
            .state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn persist_snapshot(
        &self,
        meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        data: Vec<u8>,
    ) -> Result<(), SErr> {
        let m = encode(&StoredSnapshotMeta { meta: meta.clone() })?;
        let db = self.inner.db.clone();
        let sig = meta.signature();
        blocking(self.inner.inline, move || {
            let w = |e: &dyn std::fmt::Display| {
                io_err(
                    ErrorSubject::Snapshot(Some(sig.clone())),
                    ErrorVerb::Write,
                    e,
                )
            };
            let txn = db.begin_write().map_err(|e| w(&e))?;
            {
                let mut t = txn.open_table(META).map_err(|e| w(&e))?;
                t.insert("snapshot_meta", m.as_slice()).map_err(|e| w(&e))?;
                t.insert("snapshot_data", data.as_slice())
                    .map_err(|e| w(&e))?;
            }
            txn.commit().map_err(|e| w(&e))
        })
        .await
    }
}

impl<A: App> RaftSnapshotBuilder<TypeConfig> for StateMachineStore<A> {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, SErr> {
        let (data, last_log_id, membership) = {
            let st = self
                .inner
                .state
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            (
                st.app.snapshot_bytes(),
                st.last_applied,
                st.membership.clone(),
            )
        };
        let seq = self
            .inner
            .snapshot_seq
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let snapshot_id = match last_log_id {
            Some(l) => format!("{}-{}-{seq}", l.leader_id, l.index),
            None => format!("none-{seq}"),
        };
        let meta = SnapshotMeta {
            last_log_id,
            last_membership: membership,
            snapshot_id,
        };
        self.persist_snapshot(&meta, data.clone()).await?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl<A: App> RaftStateMachine<TypeConfig> for StateMachineStore<A> {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<
        (
            Option<LogId<NodeId>>,
            StoredMembership<NodeId, openraft::BasicNode>,
        ),
        SErr,
    > {
        let st = self
            .inner
            .state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Ok((st.last_applied, st.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, SErr>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut replies = Vec::new();
        let mut effects = Vec::new();
        let last = {
            let mut st = self.write_state();
            for entry in entries {
                st.last_applied = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Blank => {}
                    EntryPayload::Normal(Proposal { at_ms, items }) => {
                        for item in items {
                            // A malformed item is skipped identically on every node, so the
                            // state stays deterministic.
                            match serde_json::from_value::<A::Entry>(item) {
                                Ok(e) => {
                                    effects.push((entry.log_id.index, st.app.apply(&e, at_ms)))
                                }
                                Err(err) => tracing::warn!(
                                    index = entry.log_id.index,
                                    "skipping undecodable entry: {err}"
                                ),
                            }
                        }
                    }
                    EntryPayload::Membership(m) => {
                        st.membership = StoredMembership::new(Some(entry.log_id), m);
                    }
                }
                replies.push(Applied {
                    index: entry.log_id.index,
                });
            }
            st.last_applied.map(|l| l.index).unwrap_or(0)
        };
        if let Some(tx) = &self.inner.effects {
            for e in effects {
                let _ = tx.send(e);
            }
        }
        self.inner.applied_tx.send_replace(last);
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, SErr> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), SErr> {
        let data = snapshot.into_inner();
        let app = A::restore(&data).map_err(|e| {
            io_err(
                ErrorSubject::Snapshot(Some(meta.signature())),
                ErrorVerb::Read,
                e,
            )
        })?;
        // Durable first, then visible.
        self.persist_snapshot(meta, data).await?;
        let last = {
            let mut st = self.write_state();
            st.app = app;
            st.last_applied = meta.last_log_id;
            st.membership = meta.last_membership.clone();
            st.last_applied.map(|l| l.index).unwrap_or(0)
        };
        self.inner.applied_tx.send_replace(last);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, SErr> {
        let db = self.inner.db.clone();
        let (meta, data) = blocking(self.inner.inline, move || {
            Ok((
                get_meta(&db, "snapshot_meta")?,
                get_meta(&db, "snapshot_data")?,
            ))
        })
        .await?;
        match (meta, data) {
            (Some(m), Some(d)) => {
                let m: StoredSnapshotMeta = decode(&m, "snapshot meta")?;
                Ok(Some(Snapshot {
                    meta: m.meta,
                    snapshot: Box::new(Cursor::new(d)),
                }))
            }
            _ => Ok(None),
        }
    }
}
