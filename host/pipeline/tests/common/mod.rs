//! Setup shared by the pipeline's integration tests: real compiled plugins
//! bound by event type, and a pipeline over the embedded backends.
#![allow(dead_code)] // each test file uses its own subset

use weir_core::backend::ObjectStore;
use weir_embedded::SqliteState;
use weir_pipeline::{Pipeline, PipelineSettings};
use weir_runtime::router::Router;

/// Each (plugin crate, event type) bound as that type's default.
pub fn router(bindings: &[(&str, &str)]) -> Router {
    weir_testkit::example_router(bindings)
}

/// A pipeline writing objects to `objects` and everything else to `state`.
pub fn pipeline<O: ObjectStore>(
    objects: O,
    state: &SqliteState,
    router: Router,
    settings: PipelineSettings,
) -> Pipeline<O, SqliteState, SqliteState> {
    Pipeline {
        objects,
        dead_letters: state.clone(),
        metadata: state.clone(),
        router: router.into(),
        settings,
    }
}
