//! Operators: synchronous state machines over [`ChangeBatch`]es and watermarks.
//!
//! The runtime owns channels, tasks and watermark merging; an operator only reacts to what it
//! is handed and pushes results into its [`Context`]. That keeps every operator testable by
//! calling its methods.
//!
//! Contract for stateful operators: never emit a row for a window whose end is at or below a
//! watermark already forwarded.

mod aggregate;
mod arrivals;
mod changelog_join;
mod emit_policy;
mod filter;
mod group_accumulators;
mod interval_join;
mod join_side;
mod limit;
mod lookup_join;
mod lookup_table;
mod match_recognize;
mod over_partitions;
mod over_window;
mod pane_windows;
mod project;
mod row_errors;
mod session_aggregate;
mod sliding_accumulators;
mod sliding_frames;
mod union;
mod updating_aggregate;
mod updating_top_n;
mod watermark_assign;
mod window_aggregate;
mod window_assign;
mod window_groups;
mod windowed_over;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::physical_expr::PhysicalExpr;
use std::sync::Arc;

pub use aggregate::{AggregateCall, AggregateSpec, OutputColumn};
pub use changelog_join::{ChangelogInput, ChangelogJoin};
pub use emit_policy::EmitPolicy;
pub use filter::Filter;
pub use interval_join::{IntervalJoin, JoinInput, JoinKind};
pub use limit::Limit;
pub use lookup_join::{LookupJoin, LookupSides};
pub(crate) use lookup_table::LookupTable;
pub use match_recognize::{
    AfterMatch, AggregateAtom, MAX_VARIABLES, MatchRecognize, MatchSpec, Measures, Navigation,
    NavigationAtom, Pattern, PrevColumn, Program,
};
pub use over_window::{OverFunction, OverWindow, Retention};
pub use project::Project;
pub use session_aggregate::SessionAggregate;
pub use sliding_accumulators::SlidingKind;
pub use sliding_frames::{SlidingAggregate, SlidingFrame};
pub use union::Union;
pub use updating_aggregate::UpdatingAggregate;
pub use updating_top_n::UpdatingTopN;
pub use watermark_assign::WatermarkAssign;
pub use window_aggregate::WindowAggregate;
pub use window_assign::WindowAssign;
pub use windowed_over::WindowedOver;

pub(crate) use row_errors::evaluate_or_reject;

use crate::batch::{ChangeBatch, RejectedRows};
use crate::connector::SplitStatus;
use crate::error::Result;
use crate::time::Timestamp;

/// The main output port of an operator.
pub const MAIN_PORT: usize = 0;
/// The port on which window operators put late events.
pub const LATE_PORT: usize = 1;
/// The port on which a two-input operator (a join) puts its second input's late events.
pub const SECOND_LATE_PORT: usize = 2;

/// What flows along the edges of an operator graph.
// Batches are by far the most common message; boxing them would cost an allocation each.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Message {
    /// Rows.
    Batch(ChangeBatch),
    /// Event time has reached this point: no more rows at or before it are expected.
    Watermark(Timestamp),
    /// The stream is over.
    End,
}

/// Counters an operator updates while it runs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct OperatorCounters {
    /// Late rows dropped (and sent to the late port).
    pub late_rows: u64,
    /// Rows received (counted by the executor).
    pub rows_in: u64,
    /// Rows emitted on the main port (counted by the executor).
    pub rows_out: u64,
    /// The last watermark emitted: the operator's own, which for a watermark assigner is
    /// ahead of anything its input carries.
    pub watermark_out: Option<Timestamp>,
}

/// What an operator is handed with each call.
pub struct Context<'a> {
    /// The input port the current batch came from.
    pub input: usize,
    /// The current watermark of each input.
    pub input_watermarks: &'a [Timestamp],
    /// The operator's counters.
    pub counters: &'a mut OperatorCounters,
    /// The number of the source batch being processed (see [`Operator::retained_epoch`]).
    pub epoch: u64,
    out: &'a mut Vec<(usize, Message)>,
    rejected: Vec<RejectedRows>,
}

impl<'a> Context<'a> {
    /// A context collecting output into `out`.
    pub fn new(
        input: usize,
        input_watermarks: &'a [Timestamp],
        counters: &'a mut OperatorCounters,
        out: &'a mut Vec<(usize, Message)>,
    ) -> Self {
        Self {
            input,
            input_watermarks,
            counters,
            epoch: 0,
            out,
            rejected: Vec::new(),
        }
    }

    /// The same context, processing source batch `epoch`.
    pub fn at_epoch(mut self, epoch: u64) -> Self {
        self.epoch = epoch;
        self
    }

    /// Emits rows on the main port; empty batches are dropped.
    pub fn emit(&mut self, batch: ChangeBatch) {
        if batch.num_rows() > 0 {
            self.out.push((MAIN_PORT, Message::Batch(batch)));
        }
    }

    /// Emits late rows on the late port and counts them.
    pub fn emit_late(&mut self, batch: ChangeBatch) {
        self.emit_late_on(LATE_PORT, batch);
    }

    /// Emits late rows on late port `port` ([`LATE_PORT`] or [`SECOND_LATE_PORT`]) and
    /// counts them.
    pub fn emit_late_on(&mut self, port: usize, batch: ChangeBatch) {
        if batch.num_rows() > 0 {
            self.counters.late_rows += batch.num_rows() as u64;
            self.out.push((port, Message::Batch(batch)));
        }
    }

    /// Forwards a watermark on the main port.
    pub fn emit_watermark(&mut self, watermark: Timestamp) {
        self.counters.watermark_out = Some(watermark);
        self.out.push((MAIN_PORT, Message::Watermark(watermark)));
    }

    /// Sets rows aside whose expressions failed, for the query's dead letters.
    pub fn reject(&mut self, rows: RejectedRows) {
        if rows.rows.num_rows() > 0 {
            self.rejected.push(rows);
        }
    }

    /// The rows rejected during this call.
    pub fn take_rejected(&mut self) -> Vec<RejectedRows> {
        std::mem::take(&mut self.rejected)
    }

    /// Ends the operator's output early (e.g. a reached LIMIT).
    pub fn end(&mut self) {
        self.out.push((MAIN_PORT, Message::End));
    }
}

/// A streaming operator. See the module docs for the contract.
pub trait Operator: Send {
    /// Short name, as EXPLAIN shows it.
    fn name(&self) -> &'static str;

    /// A new operator doing the same with no state: a query whose state is kept per input
    /// split runs one copy of its graph per split.
    fn new_instance(&self) -> Result<Box<dyn Operator>>;

    /// Details for EXPLAIN: expressions, keys, window.
    fn describe(&self) -> String {
        String::new()
    }

    /// Handles rows from input `ctx.input`.
    fn on_batch(&mut self, batch: ChangeBatch, ctx: &mut Context) -> Result<()>;

    /// Called when the merged watermark of the inputs advances. Forwards it by default.
    fn on_watermark(&mut self, watermark: Timestamp, ctx: &mut Context) -> Result<()> {
        ctx.emit_watermark(watermark);
        Ok(())
    }

    /// Whether input `input`'s watermark leaves the operator's alone: a lookup join's table
    /// has no event time to wait for.
    fn untimed_input(&self, input: usize) -> bool {
        let _ = input;
        false
    }

    /// A watermark came on an untimed input (`WATERMARK_MAX` once it has ended).
    fn on_untimed_watermark(&mut self, watermark: Timestamp, ctx: &mut Context) -> Result<()> {
        let _ = (watermark, ctx);
        Ok(())
    }

    /// Only on a source's entry operator: rows from split `split` of a source with several
    /// (see [`SourceEvent::SplitBatch`](crate::connector::SourceEvent::SplitBatch)).
    fn on_split_batch(&mut self, split: u32, batch: ChangeBatch, ctx: &mut Context) -> Result<()> {
        let _ = split;
        self.on_batch(batch, ctx)
    }

    /// Only on a source's entry operator: the source's splits changed. Only the watermark
    /// operator cares.
    fn on_split_status(&mut self, status: &SplitStatus, ctx: &mut Context) -> Result<()> {
        let _ = (status, ctx);
        Ok(())
    }

    /// The query resumes after a restart without its state: every window ending at or
    /// before `emitted_until` was emitted and delivered by the earlier run. Its input is read
    /// again from the last acknowledged position, so window operators must not build those
    /// windows again from the part of their events that comes back.
    fn resume(&mut self, emitted_until: Timestamp) {
        let _ = emitted_until;
    }

    /// The wall clock reads `now`; the running query calls this about twice a second. An
    /// operator that emits on wall time when its input is quiet (a window emitting early)
    /// does so here. Nothing else calls it, which keeps runs fed by hand deterministic.
    fn on_clock(&mut self, now: std::time::Instant, ctx: &mut Context) -> Result<()> {
        let _ = (now, ctx);
        Ok(())
    }

    /// Called once every input has ended.
    fn on_end(&mut self, ctx: &mut Context) -> Result<()> {
        let _ = ctx;
        Ok(())
    }

    /// Rows held in state (windows and groups), for metrics and tests.
    fn state_rows(&self) -> usize {
        0
    }

    /// Bytes held in state, as DataFusion's group tables and accumulators account them.
    fn state_bytes(&self) -> usize {
        0
    }

    /// The oldest source batch ([`Context::epoch`]) whose rows still sit in this operator's
    /// state without having reached its output; `None` when it holds none. Input older than
    /// every operator's retained epoch is fully delivered once the sinks flush, so sources may
    /// acknowledge it.
    fn retained_epoch(&self) -> Option<u64> {
        None
    }

    /// The operator's state as Arrow batches, which a checkpoint can write as Arrow IPC.
    /// The operator keeps running unchanged. Stateless operators have none.
    fn snapshot(&mut self) -> Result<Vec<RecordBatch>> {
        Ok(Vec::new())
    }

    /// Loads state produced by [`Operator::snapshot`] into a fresh operator.
    fn restore(&mut self, state: Vec<RecordBatch>) -> Result<()> {
        if state.is_empty() {
            Ok(())
        } else {
            Err(crate::Error::Internal(format!(
                "{} keeps no state to restore",
                self.name()
            )))
        }
    }
}

/// Passes rows through: the entry node of a source in the graph.
#[derive(Debug)]
pub struct SourceScan {
    /// The source's name.
    pub source: String,
}

impl Operator for SourceScan {
    fn new_instance(&self) -> Result<Box<dyn Operator>> {
        Ok(Box::new(Self {
            source: self.source.clone(),
        }))
    }

    fn name(&self) -> &'static str {
        "Source"
    }

    fn describe(&self) -> String {
        self.source.clone()
    }

    fn on_batch(&mut self, batch: ChangeBatch, ctx: &mut Context) -> Result<()> {
        ctx.emit(batch);
        Ok(())
    }
}

/// State of an operator that only remembers a watermark: one row, one column.
pub(crate) fn watermark_state(watermark: Timestamp) -> Result<Vec<RecordBatch>> {
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    let schema = Arc::new(Schema::new(vec![Field::new(
        "watermark",
        DataType::Int64,
        false,
    )]));
    Ok(vec![RecordBatch::try_new(
        schema,
        vec![Arc::new(Int64Array::from(vec![watermark]))],
    )?])
}

/// Reads [`watermark_state`] back.
pub(crate) fn restore_watermark(state: &[RecordBatch]) -> Result<Option<Timestamp>> {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::Int64Type;
    Ok(state
        .first()
        .filter(|b| b.num_rows() == 1 && b.num_columns() == 1)
        .map(|b| b.column(0).as_primitive::<Int64Type>().value(0)))
}

/// Evaluates expressions over a batch into arrays of its length.
pub(crate) fn evaluate_all(
    exprs: &[Arc<dyn PhysicalExpr>],
    batch: &RecordBatch,
) -> Result<Vec<ArrayRef>> {
    exprs
        .iter()
        .map(|e| Ok(e.evaluate(batch)?.into_array(batch.num_rows())?))
        .collect()
}

/// The fields of `keys`, expressions over rows of `schema`, in Arrow's row format.
pub(crate) fn key_fields(
    keys: &[Arc<dyn PhysicalExpr>],
    schema: &datafusion::arrow::datatypes::Schema,
) -> Result<Vec<datafusion::arrow::row::SortField>> {
    keys.iter()
        .map(|k| Ok(datafusion::arrow::row::SortField::new(k.data_type(schema)?)))
        .collect()
}

/// Shows physical expressions the way EXPLAIN prints them.
pub(crate) fn show_exprs(exprs: &[Arc<dyn PhysicalExpr>]) -> String {
    exprs
        .iter()
        .map(|e| show_expr(e.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An expression as SQL text (`score > 0`, not `score@4 > 0`), so EXPLAIN and the live graph
/// read in the terms of the rule that produced them.
pub(crate) fn show_expr(expr: &dyn PhysicalExpr) -> String {
    datafusion::physical_expr_common::physical_expr::fmt_sql(expr).to_string()
}

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers to drive an operator by hand.
    use super::*;

    /// Output of one call, split by kind.
    #[derive(Default, Debug)]
    pub struct Collected {
        pub batches: Vec<ChangeBatch>,
        pub late: Vec<ChangeBatch>,
        pub watermarks: Vec<Timestamp>,
        pub ended: bool,
    }

    fn collect(out: Vec<(usize, Message)>) -> Collected {
        let mut c = Collected::default();
        for (port, msg) in out {
            match (port, msg) {
                (LATE_PORT, Message::Batch(b)) => c.late.push(b),
                (_, Message::Batch(b)) => c.batches.push(b),
                (_, Message::Watermark(w)) => c.watermarks.push(w),
                (_, Message::End) => c.ended = true,
            }
        }
        c
    }

    /// Runs `call` with a fresh context and collects what it emitted.
    fn drive(call: impl FnOnce(&mut Context) -> Result<()>) -> Collected {
        let mut out = Vec::new();
        let mut counters = OperatorCounters::default();
        call(&mut Context::new(0, &[], &mut counters, &mut out)).unwrap();
        collect(out)
    }

    pub fn batch(op: &mut dyn Operator, b: ChangeBatch) -> Collected {
        drive(|ctx| op.on_batch(b, ctx))
    }

    pub fn split_batch(op: &mut dyn Operator, split: u32, b: ChangeBatch) -> Collected {
        drive(|ctx| op.on_split_batch(split, b, ctx))
    }

    pub fn split_status(op: &mut dyn Operator, status: &SplitStatus) -> Collected {
        drive(|ctx| op.on_split_status(status, ctx))
    }
}
