//! [`StateMachineStore`]: the application state in memory, rebuilt from the latest snapshot
//! in the `meta` table, and openraft's snapshot builder.

use super::{blocking, decode, encode, get_meta, io_err, SErr, StoreError, META};
use crate::consensus::{App, Applied, NodeId, Proposal, TypeConfig};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftSnapshotBuilder,
    SnapshotMeta, StoredMembership,
};
use redb::Database;
use std::io::Cursor;
use std::sync::{Arc, RwLock};
use tokio::sync::{mpsc, watch};

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

    /// The last applied index and the state's digest at that very index (one read lock, so
    /// nodes can be compared at equal indices).
    pub fn applied_digest(&self) -> (u64, String) {
        let guard = self
            .inner
            .state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        (
            guard.last_applied.map_or(0, |l| l.index),
            guard.app.digest(),
        )
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
