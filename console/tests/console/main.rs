//! The console, through its router and in a real browser: one test binary
//! (one link of wasmtime) for all of it.

mod api;
mod authorization;
mod browser;
mod common;
mod pages;
mod tail;
mod test_runs;
