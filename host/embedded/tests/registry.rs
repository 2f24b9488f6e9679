//! The embedded registry: the registry contract (`weir_testkit::registry_contract`),
//! and where it keeps components.

use weir_core::registry::Registry;
use weir_embedded::{EmbeddedRegistry, LocalObjectStore, SqliteState};
use weir_testkit::registry_contract::{self, version};

async fn registry(dir: &std::path::Path) -> EmbeddedRegistry {
    let state = SqliteState::open(dir.join("weir.db")).unwrap();
    let objects = LocalObjectStore::open(dir.join("objects")).unwrap();
    EmbeddedRegistry::open(state, objects).await.unwrap()
}

#[tokio::test]
async fn versions_are_content_addressed_and_immutable() {
    let dir = tempfile::tempdir().unwrap();
    let r = registry(dir.path()).await;
    registry_contract::versions_are_content_addressed_and_immutable(&r).await;
    // Components are files under the object store's plugins/.
    let v1 = version("tx", "1.0.0", b"component one");
    assert!(
        dir.path()
            .join("objects/plugins")
            .join(format!("{}.wasm", v1.sha256))
            .exists()
    );
    // Reopened, it has what it had.
    drop(r);
    let again = registry(dir.path()).await;
    assert_eq!(again.versions(Some("tx")).await.unwrap().len(), 2);
}

#[tokio::test]
async fn activations_are_atomic_revisioned_audited_and_roll_back() {
    let dir = tempfile::tempdir().unwrap();
    let r = registry(dir.path()).await;
    registry_contract::activations_are_atomic_revisioned_audited_and_roll_back(&r).await;
}

#[tokio::test]
async fn shadows_start_tally_and_stop() {
    let dir = tempfile::tempdir().unwrap();
    let r = registry(dir.path()).await;
    registry_contract::shadows_start_tally_and_stop(&r).await;
}
