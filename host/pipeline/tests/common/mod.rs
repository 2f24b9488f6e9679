//! Setup shared by the pipeline's integration tests: real compiled plugins
//! bound by event type, and a pipeline over the embedded backends.

use weir_core::backend::ObjectStore;
use weir_embedded::SqliteState;
use weir_pipeline::{Pipeline, PipelineSettings};
use weir_runtime::router::{Binding, Router};
use weir_runtime::{Limits, Runtime, RuntimeSettings};
use weir_testkit::build::{repo_plugin, shared_cache_dir};

/// Each (plugin crate, event type) bound as that type's default.
pub fn router(bindings: &[(&str, &str)]) -> Router {
    let runtime = Runtime::new(RuntimeSettings {
        cache_dir: Some(shared_cache_dir()),
        ..Default::default()
    })
    .unwrap();
    let mut router = Router::new();
    for (plugin, event_type) in bindings {
        let plugin = runtime.load_file(repo_plugin(plugin)).unwrap();
        router.bind(
            None,
            event_type,
            Binding {
                plugin,
                config: vec![],
                limits: Limits::default(),
            },
        );
    }
    router
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
        router,
        settings,
    }
}
