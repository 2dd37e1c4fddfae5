//! Test support for Vigil: a sqllogictest database that runs streaming queries to
//! completion, deterministically, over scripted inputs.
//!
//! Besides Vigil SQL, `.slt` files use a few harness commands:
//!
//! | command | meaning |
//! |---|---|
//! | `INSERT INTO src [(col, ...)] VALUES (...), ...` | appends events to source `src`, in arrival order across sources; columns left out are NULL |
//! | `SET batch_size = N` | re-chunks inputs into batches of N rows (the runner also runs every file at 1, 7 and 1024) |
//! | `LOAD 'queries/rule.sql'` | runs a rule file (paths from the workspace root); its sinks are planned, not started |
//! | `RESULTS name` | runs sink `name`'s query over the inputs; a late-events sink shows the late rows of the last run |
//! | `CLEAR INPUTS` | forgets every input event |
//! | `MATERIALIZE query` | runs an updating query and applies its changelog: the final rows, sorted |
//!
//! A `query` over the inputs runs to the end of input: the watermark then jumps to +inf and
//! every window is emitted. Updating queries print the change kind (`+I -U +U -D`) first.
//! An updating query folds the changes a batch makes to one group into one update, so its
//! raw changelog depends on batch size: files that pin a changelog `SET batch_size = 1`,
//! and `MATERIALIZE` checks the final result at every batch size.

pub mod browser;
pub mod fuzz;
mod harness;
pub mod kafka;
pub mod postgres;

pub use harness::{StreamDb, materialize, workspace_root};

/// Sends Vigil's log to the test's output at the levels `VIGIL_LOG` names (default
/// `warn`), once per test binary.
pub fn test_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VIGIL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(filter)
        .try_init();
}
/// Rows as the strings sqllogictest compares (the same text rule tests use).
pub use vigil_rules::values::format_rows;
