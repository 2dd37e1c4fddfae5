//! # Vigil engine
//!
//! Continuous SQL over event streams: anomaly rules written as SQL run as a graph of Arrow
//! operators with event-time windows and watermarks.
//!
//! ```text
//! SQL text ──StreamParser──▶ statements ──Catalog──▶ DataFusion LogicalPlan (analyzed)
//!     ──lower_query──▶ OperatorGraph ──RunningQuery──▶ source tasks → graph task → sink tasks
//! ```
//!
//! DataFusion parses and type-checks SQL, evaluates expressions and supplies the aggregate
//! accumulators; the engine owns streaming: watermarks, windows, changelogs and lateness.
//!
//! # Layout
//! - [`sql`]: Vigil's dialect (`CREATE SOURCE`, `CREATE SINK`, `WATERMARK FOR`, `EXPLAIN`),
//!   the limits a statement must stay within before it is planned (on a large stack), and
//!   where errors without a span belong.
//! - [`catalog`]: sources, views and sinks, and the DataFusion session planning against them.
//! - [`plan`]: window table functions and the lowering to an [`plan::OperatorGraph`].
//! - [`operators`]: the streaming operators; a row an expression fails on is set aside for
//!   the query's dead letters, not the query stopped.
//! - [`functions`]: scalar functions that grow with an argument, bounded per value.
//! - [`batch`]: [`ChangeBatch`], rows with their change kinds.
//! - [`time`]: timestamps, watermarks and window arithmetic.
//! - [`checkpoint`]: durable state: checkpoint epochs of running queries and their restore.
//! - [`runtime`]: tasks, channels and the synchronous [`runtime::GraphExecutor`].
//! - [`connector`]: the [`connector::Source`] / [`connector::Sink`] contracts and registry.
//! - [`engine`]: [`Engine`], the API the CLI, REPL and server use.
#![warn(missing_docs)]

pub mod batch;
pub mod catalog;
pub mod checkpoint;
pub mod connector;
mod deep_stack;
pub mod engine;
pub mod error;
pub mod functions;
pub mod operators;
pub mod plan;
pub mod replay;
pub mod runtime;
pub mod sql;
pub mod time;

pub use batch::{ChangeBatch, ChangeKind};
pub use engine::{
    Engine, EngineConfig, PlannedQuery, QueryIdentity, StatementOutcome, output_schema,
    sink_connector_options,
};
pub use error::{Error, Location, Result, SqlError};
