//! Test support for Vigil: a sqllogictest database that runs streaming queries to
//! completion, deterministically, over scripted inputs.
//!
//! Besides Vigil SQL, `.slt` files use a few harness commands:
//!
//! | command | meaning |
//! |---|---|
//! | `INSERT INTO src VALUES (...), ...` | appends events to source `src`, in arrival order across sources |
//! | `SET batch_size = N` | re-chunks inputs into batches of N rows (the runner also runs every file at 1, 7 and 1024) |
//! | `LOAD 'queries/rule.sql'` | runs a rule file (paths from the workspace root); its sinks are planned, not started |
//! | `RESULTS name` | runs sink `name`'s query over the inputs; a late-events sink shows the late rows of the last run |
//! | `CLEAR INPUTS` | forgets every input event |
//!
//! A `query` over the inputs runs to the end of input: the watermark then jumps to +inf and
//! every window is emitted. Updating queries print the change kind (`+I -U +U -D`) first.

mod format;
mod harness;

pub use format::format_rows;
pub use harness::{Script, StreamDb, run_to_completion, workspace_root};
