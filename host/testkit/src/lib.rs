//! Test Weir plugins the way the host runs them: as compiled components.
//!
//! - [`golden`]: golden cases (input events, tenant config, expected outcome per
//!   event, optional time and memory budgets) in a JSON file, run against a
//!   plugin with a readable diff on mismatch. `weir plugin test` is a thin shell
//!   over it, so a case passes in `cargo test` exactly when it passes there.
//! - [`build`]: builds a plugin crate for `wasm32-wasip2` once per test run and
//!   hands back the component's path, so tests share compiled plugins.
//! - [`python`] and [`moto`]: Python tools from PyPI in a shared venv, and a
//!   real AWS-compatible server for the AWS backends' tests.
//! - [`Harness`]: load a component and run payloads through it in one line;
//!   [`example_router`]: the repo's plugins bound by event type, for pipelines.

pub mod build;
pub mod golden;
mod harness;
pub mod moto;
pub mod python;
pub mod registry_contract;

pub use harness::{DEFAULT_TIME, Harness, example_router, payload_event};
