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
//!
//! The log store is in `log`, the state-machine store in `sm`; this module holds what they
//! share: the table layout, the blocking-call helper and the record codec.

// openraft's `StorageError` is large and its storage traits return it by value.
#![allow(clippy::result_large_err)]

mod log;
mod sm;

pub use log::LogStore;
pub use sm::StateMachineStore;

use super::NodeId;
use openraft::{ErrorSubject, ErrorVerb, StorageError};
use redb::{Database, ReadableDatabase, TableDefinition};
use std::fmt::Debug;
use std::path::Path;
use std::sync::Arc;

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Maximum size of one stored log entry or snapshot we accept back from disk.
const MAX_RECORD_BYTES: usize = 256 << 20;
/// redb's page cache for the log and vote (its default is 1 GiB, which a long-running daemon
/// fills with log pages it rarely reads again). Reads past it go to the kernel's page cache.
const CACHE_BYTES: usize = 4 << 20;

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
    let db = Database::builder()
        .set_cache_size(CACHE_BYTES)
        .create(path)
        .map_err(|e| StoreError::Open {
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
