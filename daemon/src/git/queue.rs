//! The durable outbox: status writes not yet pushed, in redb under the data dir.
//!
//! A write is removed only after the push that carried it succeeded, so a crash or a remote
//! that is down loses nothing; the status branch's `Kommit-Write:` trailer and the
//! commutative note merge make a write that is pushed twice (crash between push and removal)
//! land once. The outbox is bounded: when full, new writes are refused with one clear log
//! line per episode.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

use super::note::StatusNote;
use super::status::StatusChange;

/// Default bound on pending writes.
pub const DEFAULT_MAX_ENTRIES: u64 = 10_000;
/// Largest single serialised write.
pub const MAX_WRITE_BYTES: usize = 1 << 20;

/// redb's page cache for the outbox.
const QUEUE_CACHE_BYTES: usize = 2 << 20;
const WRITES: TableDefinition<u64, &[u8]> = TableDefinition::new("writes");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// One pending write.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Write {
    /// A note on a commit.
    Note(StatusNote),
    /// A status change (one status-branch commit).
    Status(StatusChange),
}

impl Write {
    fn describe(&self) -> String {
        match self {
            Write::Note(n) => format!("note on {}", n.commit),
            Write::Status(s) => format!("status for {}", s.source_commit),
        }
    }
}

/// Errors of the outbox.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The outbox holds `max` writes already.
    #[error("status outbox {path} is full ({max} writes pending); refusing {what}")]
    Full {
        /// The database path.
        path: PathBuf,
        /// The bound.
        max: u64,
        /// The refused write.
        what: String,
    },
    /// A write over [`MAX_WRITE_BYTES`].
    #[error("status write {what} is {size} bytes, over the {MAX_WRITE_BYTES} byte limit")]
    TooLarge {
        /// The write.
        what: String,
        /// Its size.
        size: usize,
    },
    /// The database failed.
    #[error("status outbox {path}: {source}")]
    Db {
        /// The database path.
        path: PathBuf,
        /// Cause.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A stored write could not be decoded.
    #[error("status outbox {path}: entry {seq} is corrupt: {message}")]
    Corrupt {
        /// The database path.
        path: PathBuf,
        /// Entry key.
        seq: u64,
        /// Decoder message.
        message: String,
    },
}

/// The redb-backed outbox.
pub struct Outbox {
    db: redb::Database,
    path: PathBuf,
    max_entries: u64,
    instance: String,
    full_logged: AtomicBool,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").field("path", &self.path).finish()
    }
}

impl Outbox {
    /// Opens (or creates) the outbox at `path`, holding at most `max_entries` writes.
    pub fn open(path: impl AsRef<Path>, max_entries: u64) -> Result<Self, QueueError> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| QueueError::Db {
                path: path.clone(),
                source: Box::new(e),
            })?;
        }
        let db_err = |e: Box<dyn std::error::Error + Send + Sync>| QueueError::Db {
            path: path.clone(),
            source: e,
        };
        // A small outbox: redb's default 1 GiB page cache would only grow the daemon.
        let db = redb::Database::builder()
            .set_cache_size(QUEUE_CACHE_BYTES)
            .create(&path)
            .map_err(|e| db_err(Box::new(e)))?;
        // The instance id distinguishes this outbox's write ids from any earlier one's on
        // the same node (a wiped data dir restarts the sequence).
        let txn = db.begin_write().map_err(|e| db_err(Box::new(e)))?;
        let instance = {
            let mut meta = txn.open_table(META).map_err(|e| db_err(Box::new(e)))?;
            txn.open_table(WRITES).map_err(|e| db_err(Box::new(e)))?;
            let existing = meta
                .get("instance")
                .map_err(|e| db_err(Box::new(e)))?
                .map(|v| String::from_utf8_lossy(v.value()).into_owned());
            match existing {
                Some(i) => i,
                None => {
                    use sha2::Digest;
                    let nanos = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_nanos())
                        .unwrap_or_default();
                    let seed = format!("{}:{}:{nanos}", path.display(), std::process::id());
                    let i = hex::encode(&sha2::Sha256::digest(seed.as_bytes())[..6]);
                    meta.insert("instance", i.as_bytes())
                        .map_err(|e| db_err(Box::new(e)))?;
                    i
                }
            }
        };
        txn.commit().map_err(|e| db_err(Box::new(e)))?;
        Ok(Outbox {
            db,
            path,
            max_entries,
            instance,
            full_logged: AtomicBool::new(false),
        })
    }

    fn db_err<E: std::error::Error + Send + Sync + 'static>(
        &self,
    ) -> impl FnOnce(E) -> QueueError + '_ {
        move |e| QueueError::Db {
            path: self.path.clone(),
            source: Box::new(e),
        }
    }

    /// The stable id of write `seq`, recorded in the status commit's trailer.
    pub fn write_id(&self, seq: u64) -> String {
        format!("{}-{seq}", self.instance)
    }

    /// Appends a write durably (committed before returning) and returns its sequence number.
    pub fn push(&self, write: &Write) -> Result<u64, QueueError> {
        let bytes = serde_json::to_vec(write).map_err(self.db_err())?;
        if bytes.len() > MAX_WRITE_BYTES {
            return Err(QueueError::TooLarge {
                what: write.describe(),
                size: bytes.len(),
            });
        }
        let txn = self.db.begin_write().map_err(self.db_err())?;
        let seq = {
            let mut table = txn.open_table(WRITES).map_err(self.db_err())?;
            let len = table.len().map_err(self.db_err())?;
            if len >= self.max_entries {
                if !self.full_logged.swap(true, Ordering::Relaxed) {
                    tracing::error!(
                        path = %self.path.display(),
                        pending = len,
                        max = self.max_entries,
                        "status outbox full: {len} writes are waiting for the remote; new status writes are refused until pushes succeed"
                    );
                }
                return Err(QueueError::Full {
                    path: self.path.clone(),
                    max: self.max_entries,
                    what: write.describe(),
                });
            }
            let last = table.last().map_err(self.db_err())?.map(|(k, _)| k.value());
            let mut meta = txn.open_table(META).map_err(self.db_err())?;
            let floor = meta
                .get("next")
                .map_err(self.db_err())?
                .and_then(|v| <[u8; 8]>::try_from(v.value()).ok())
                .map(u64::from_be_bytes)
                .unwrap_or(1);
            let seq = last.map_or(floor, |l| (l + 1).max(floor));
            table.insert(seq, bytes.as_slice()).map_err(self.db_err())?;
            meta.insert("next", (seq + 1).to_be_bytes().as_slice())
                .map_err(self.db_err())?;
            seq
        };
        txn.commit().map_err(self.db_err())?;
        Ok(seq)
    }

    /// The oldest `limit` pending writes, in order.
    pub fn pending(&self, limit: usize) -> Result<Vec<(u64, Write)>, QueueError> {
        let txn = self.db.begin_read().map_err(self.db_err())?;
        let table = txn.open_table(WRITES).map_err(self.db_err())?;
        let mut out = Vec::new();
        for item in table.iter().map_err(self.db_err())?.take(limit) {
            let (k, v) = item.map_err(self.db_err())?;
            let seq = k.value();
            let write = serde_json::from_slice(v.value()).map_err(|e| QueueError::Corrupt {
                path: self.path.clone(),
                seq,
                message: e.to_string(),
            })?;
            out.push((seq, write));
        }
        Ok(out)
    }

    /// Removes pushed writes.
    pub fn remove(&self, seqs: &[u64]) -> Result<(), QueueError> {
        let txn = self.db.begin_write().map_err(self.db_err())?;
        {
            let mut table = txn.open_table(WRITES).map_err(self.db_err())?;
            for s in seqs {
                table.remove(s).map_err(self.db_err())?;
            }
        }
        txn.commit().map_err(self.db_err())?;
        self.full_logged.store(false, Ordering::Relaxed);
        Ok(())
    }

    /// Number of pending writes.
    pub fn len(&self) -> Result<u64, QueueError> {
        let txn = self.db.begin_read().map_err(self.db_err())?;
        let table = txn.open_table(WRITES).map_err(self.db_err())?;
        table.len().map_err(self.db_err())
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> Result<bool, QueueError> {
        Ok(self.len()? == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::note::{CommitState, StatusNote};
    use crate::git::time::Timestamp;

    fn note(n: u8) -> Write {
        Write::Note(StatusNote::new(
            gix::ObjectId::from_bytes_or_panic(&[n; 20]),
            CommitState::Adopted,
            Timestamp(i64::from(n)),
        ))
    }

    #[test]
    fn survives_reopen_and_enforces_bound() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("outbox.redb");
        let (a, b, id) = {
            let q = Outbox::open(&path, 2).expect("open");
            let a = q.push(&note(1)).expect("push");
            let b = q.push(&note(2)).expect("push");
            assert!(matches!(q.push(&note(3)), Err(QueueError::Full { .. })));
            (a, b, q.write_id(a))
        };
        let q = Outbox::open(&path, 2).expect("reopen");
        assert_eq!(q.write_id(a), id, "instance id is stable");
        let pending = q.pending(10).expect("pending");
        assert_eq!(pending, vec![(a, note(1)), (b, note(2))]);
        q.remove(&[a]).expect("remove");
        let c = q.push(&note(3)).expect("room again");
        assert!(c > b);
        q.remove(&[b, c]).expect("remove");
        // Sequence numbers are never reused, even once the table is empty.
        assert!(q.push(&note(4)).expect("push") > c);
    }
}
