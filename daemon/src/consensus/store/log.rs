//! [`LogStore`]: the Raft log, the vote and the committed index in the `log` and `meta` tables.

use super::{blocking, decode, encode, get_meta, io_err, SErr, LOG, META};
use crate::consensus::{NodeId, TypeConfig};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogReader, Vote};
use redb::{Database, ReadableDatabase, ReadableTable};
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

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
