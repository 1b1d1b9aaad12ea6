//! openraft's own storage test suite, run against our RocksDB-backed log store and state machine.

use openraft::testing::{StoreBuilder, Suite};
use telex_raft::{LogStore, StateMachine, TypeConfig};
use telex_store::{Store, StoreOptions};

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), openraft::StorageError<u64>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path(), &StoreOptions::default()).expect("open store");
        // A non-zero group, so key prefixes are exercised.
        Ok((dir, LogStore::new(store.clone(), 7), StateMachine::new(store, 7)))
    }
}

#[test]
fn openraft_storage_suite_passes() {
    Suite::test_all(Builder).expect("openraft storage suite");
}
