//! Every example plugin passes its golden cases, as compiled components.

use weir_runtime::Limits;
use weir_testkit::build::{EXAMPLE_PLUGINS, repo_plugin, repo_root};
use weir_testkit::{Harness, golden};

#[test]
fn example_plugins_pass_their_golden_cases() {
    for name in EXAMPLE_PLUGINS {
        let harness = Harness::load(repo_plugin(name));
        let cases = golden::load(
            &repo_root()
                .join("plugins/examples")
                .join(name)
                .join("golden.json"),
        )
        .unwrap();
        assert!(!cases.cases.is_empty());
        for result in golden::run(&harness.plugin, &cases, &Limits::default()) {
            assert!(
                result.passed(),
                "{name}: case `{}`: {:#?}",
                result.name,
                result.problems
            );
        }
    }
}
