//! openraft's storage conformance suite against kommit's redb stores, on disk.

use kommit_daemon::consensus::kv::KvApp;
use kommit_daemon::consensus::store::{open_database, LogStore, StateMachineStore};
use kommit_daemon::consensus::{NodeId, TypeConfig};
use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore<KvApp>, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore<KvApp>), StorageError<NodeId>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = open_database(&dir.path().join("raft.redb")).expect("open redb");
        let sm = StateMachineStore::open(db.clone(), None).expect("open state machine");
        Ok((dir, LogStore::new(db), sm))
    }
}

#[test]
fn openraft_storage_suite_passes_on_redb() {
    Suite::test_all(Builder).expect("openraft storage suite");
}
