//! openraft's storage conformance suite against stead's write-ahead log store and MVCC state
//! machine.

use openraft::StorageError;
use openraft::testing::log::{StoreBuilder, Suite};
use stead_store::raft::{LogStore, StateMachine, TypeConfig};
use stead_store::{Store, StoreConfig};

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = LogStore::open(&dir.path().join("raft")).expect("open the log");
        let store = Store::open_unstarted(StoreConfig::new(dir.path())).expect("open the store");
        let sm = StateMachine::new(store.shared().clone(), dir.path()).expect("state machine");
        Ok((dir, log, sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_store_and_mvcc_state_machine_pass_openrafts_storage_suite()
-> Result<(), StorageError<TypeConfig>> {
    Suite::test_all(Builder).await
}
