//! [`IntervalJoin`]: rows of two append-only streams that meet on equal keys within a time
//! bound, Flink's interval join. A window join is one of width zero on the windows' ends.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, BooleanArray, UInt32Array, new_null_array};
use datafusion::arrow::compute::{filter_record_batch, take_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::physical_expr::PhysicalExpr;

use super::join_side::{JoinSide, KeyedRows, RowRef};
use super::row_errors::predicate_holds;
use super::{Context, LATE_PORT, Operator, SECOND_LATE_PORT, evaluate_or_reject, show_expr};
use crate::batch::ChangeBatch;
use crate::error::{Error, Result};
use crate::time::{Timestamp, WATERMARK_MAX, WATERMARK_MIN};

const LEFT: usize = 0;
const RIGHT: usize = 1;

/// Which rows of a join appear in its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    /// Pairs only.
    Inner,
    /// Pairs, and left rows that met none, with NULLs for the right's columns.
    Left,
    /// Pairs, and right rows that met none.
    Right,
    /// Pairs, and rows of either side that met none.
    Full,
}

impl JoinKind {
    /// Whether rows of each side that meet none are emitted, padded with NULLs.
    pub(crate) fn pads(self) -> [bool; 2] {
        match self {
            JoinKind::Inner => [false, false],
            JoinKind::Left => [true, false],
            JoinKind::Right => [false, true],
            JoinKind::Full => [true, true],
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            JoinKind::Inner => "inner",
            JoinKind::Left => "left outer",
            JoinKind::Right => "right outer",
            JoinKind::Full => "full outer",
        }
    }
}

/// One input of a join.
pub struct JoinInput {
    /// Its rows' schema.
    pub schema: SchemaRef,
    /// Its equality keys, pairwise equal to the other input's.
    pub keys: Vec<Arc<dyn PhysicalExpr>>,
    /// Its time column, a nanosecond timestamp.
    pub time_column: usize,
}

/// Joins two append-only streams on equal keys where `lower <= right.time - left.time <=
/// upper`.
///
/// A pair is emitted as soon as its second row arrives: the output is append-only. A row is
/// late, counted and dropped, when its time is at or below its own input's watermark as it
/// stood before the row arrived. A row is kept until the other input's watermark passes the
/// last time a partner could have; then it is freed, and for an outer join, emitted with
/// NULLs if it met none. The output watermark trails the inputs' by the bound, so that no
/// row emitted later is behind it.
pub struct IntervalJoin {
    sides: [JoinSide; 2],
    lower: i64,
    upper: i64,
    residual: Option<Arc<dyn PhysicalExpr>>,
    kind: JoinKind,
    schema: SchemaRef,
    bound_text: String,
    watermark_out: Timestamp,
}

impl IntervalJoin {
    /// A join of `left` and `right` producing rows of `schema` (the left's columns, then the
    /// right's); `residual` is the rest of the ON condition, over those rows.
    pub fn try_new(
        left: JoinInput,
        right: JoinInput,
        (lower, upper): (i64, i64),
        residual: Option<Arc<dyn PhysicalExpr>>,
        kind: JoinKind,
        schema: SchemaRef,
        bound_text: String,
    ) -> Result<Self> {
        // A left row may meet right rows up to `upper` after it; a right row, left rows up
        // to `lower` before it.
        let left = JoinSide::new(left.schema, left.keys, left.time_column, upper)?;
        let right = JoinSide::new(right.schema, right.keys, right.time_column, -lower)?;
        Ok(Self {
            sides: [left, right],
            lower,
            upper,
            residual,
            kind,
            schema,
            bound_text,
            watermark_out: WATERMARK_MIN,
        })
    }

    /// Whether `left` and `right` times are close enough.
    fn within(&self, left: Timestamp, right: Timestamp) -> bool {
        let difference = i128::from(right) - i128::from(left);
        (i128::from(self.lower)..=i128::from(self.upper)).contains(&difference)
    }

    /// The stored rows of the other side each new row meets: (new row, stored row) pairs.
    fn probe(&self, side: usize, keyed: &KeyedRows, keep: &[bool]) -> Vec<(u32, RowRef)> {
        let other = &self.sides[1 - side];
        let mut pairs = Vec::new();
        for (i, time) in keyed.times.iter().enumerate() {
            if !(keep[i] && keyed.joinable[i]) {
                continue;
            }
            for &stored in other.candidates(keyed.key(i)) {
                let stored_time = other.time(stored);
                let (left, right) = if side == LEFT {
                    (*time, stored_time)
                } else {
                    (stored_time, *time)
                };
                if self.within(left, right) {
                    pairs.push((i as u32, stored));
                }
            }
        }
        pairs
    }

    /// The output rows of `pairs`: the new rows' columns and the stored rows', left first.
    fn joined(
        &self,
        side: usize,
        rows: &RecordBatch,
        pairs: &[(u32, RowRef)],
    ) -> Result<RecordBatch> {
        let new_rows: UInt32Array = pairs.iter().map(|(i, _)| *i).collect();
        let new_part = take_record_batch(rows, &new_rows)?;
        let stored: Vec<RowRef> = pairs.iter().map(|(_, r)| *r).collect();
        let stored_part = self.sides[1 - side].gather(&stored)?;
        let (left, right) = if side == LEFT {
            (new_part, stored_part)
        } else {
            (stored_part, new_part)
        };
        self.output(left.columns(), right.columns())
    }

    /// `rows` of `side` with NULLs for the other side's columns.
    fn padded(&self, side: usize, rows: &RecordBatch) -> Result<RecordBatch> {
        let nulls: Vec<ArrayRef> = (self.sides[1 - side].schema.fields().iter())
            .map(|f| new_null_array(f.data_type(), rows.num_rows()))
            .collect();
        if side == LEFT {
            self.output(rows.columns(), &nulls)
        } else {
            self.output(&nulls, rows.columns())
        }
    }

    fn output(&self, left: &[ArrayRef], right: &[ArrayRef]) -> Result<RecordBatch> {
        let columns = left.iter().chain(right).cloned().collect();
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }

    /// Emits the pairs a batch of `side` makes with the other side's kept rows, marking the
    /// rows of both that met one; returns the new rows' marks.
    fn emit_pairs(
        &mut self,
        side: usize,
        rows: &RecordBatch,
        keyed: &KeyedRows,
        keep: &[bool],
        ctx: &mut Context,
    ) -> Result<Vec<bool>> {
        let mut matched = vec![false; rows.num_rows()];
        let pairs = self.probe(side, keyed, keep);
        if pairs.is_empty() {
            return Ok(matched);
        }
        let joined = self.joined(side, rows, &pairs)?;
        let holds = match &self.residual {
            Some(residual) => predicate_holds("IntervalJoin", residual, joined.clone(), ctx)?,
            None => vec![true; joined.num_rows()],
        };
        for ((new, stored), _) in pairs.iter().zip(&holds).filter(|(_, h)| **h) {
            matched[*new as usize] = true;
            self.sides[1 - side].set_matched(*stored);
        }
        let output = filter_record_batch(&joined, &BooleanArray::from(holds))?;
        ctx.emit(ChangeBatch::inserts(output));
        Ok(matched)
    }

    /// Frees the rows the other side's watermark has passed, padding the unmatched ones of
    /// an outer side.
    fn expire(&mut self, watermarks: [Timestamp; 2], ctx: &mut Context) -> Result<()> {
        let pads = self.kind.pads();
        for side in [LEFT, RIGHT] {
            let unmatched = self.sides[side].expire(watermarks[1 - side])?;
            if let Some(rows) = unmatched.filter(|_| pads[side]) {
                let padded = self.padded(side, &rows)?;
                ctx.emit(ChangeBatch::inserts(padded));
            }
        }
        Ok(())
    }

    /// The watermark no later output row is at or behind: pairs can be up to the bound
    /// behind the inputs' watermark, and padded rows as old as the oldest kept row.
    fn output_watermark(&self, merged: Timestamp) -> Timestamp {
        if merged == WATERMARK_MAX {
            return WATERMARK_MAX;
        }
        let mut watermark = merged.saturating_add(0.min(self.lower).min(-self.upper));
        let pads = self.kind.pads();
        for side in [LEFT, RIGHT] {
            if let Some(earliest) = self.sides[side].earliest_time().filter(|_| pads[side]) {
                watermark = watermark.min(earliest.saturating_sub(1));
            }
        }
        watermark
    }

    fn input_watermarks(ctx: &Context, merged: Timestamp) -> [Timestamp; 2] {
        let of = |side: usize| ctx.input_watermarks.get(side).copied().unwrap_or(merged);
        [of(LEFT), of(RIGHT)]
    }
}

impl Operator for IntervalJoin {
    fn name(&self) -> &'static str {
        "IntervalJoin"
    }

    fn new_instance(&self) -> Result<Box<dyn Operator>> {
        Ok(Box::new(Self {
            sides: [
                self.sides[LEFT].empty_copy(),
                self.sides[RIGHT].empty_copy(),
            ],
            residual: self.residual.clone(),
            schema: Arc::clone(&self.schema),
            bound_text: self.bound_text.clone(),
            watermark_out: WATERMARK_MIN,
            ..*self
        }))
    }

    fn describe(&self) -> String {
        let keys = (self.sides[LEFT].key_exprs().iter())
            .zip(self.sides[RIGHT].key_exprs())
            .map(|(l, r)| format!("{} = {}", show_expr(l.as_ref()), show_expr(r.as_ref())))
            .collect::<Vec<_>>()
            .join(", ");
        let mut text = format!("{}: ", self.kind.as_str());
        if !self.sides[LEFT].key_exprs().is_empty() {
            text.push_str(&format!("keys ({keys}), "));
        }
        text.push_str(&self.bound_text);
        if let Some(residual) = &self.residual {
            text.push_str(&format!(", filter: {}", show_expr(residual.as_ref())));
        }
        text
    }

    fn on_batch(&mut self, batch: ChangeBatch, ctx: &mut Context) -> Result<()> {
        if batch.is_updating() {
            return Err(Error::Execution(
                "an interval join cannot take an updating input".into(),
            ));
        }
        let side = ctx.input.min(RIGHT);
        let evaluated = evaluate_or_reject("IntervalJoin", batch, ctx, |rows| {
            self.sides[side].key_rows(rows)
        })?;
        let Some((batch, keyed)) = evaluated else {
            return Ok(());
        };
        let watermarks = Self::input_watermarks(ctx, WATERMARK_MIN);
        let own = watermarks[side];
        let row_watermark =
            |i: usize| (batch.row_watermarks.as_ref()).map_or(own, |w| w.value(i).max(own));
        let on_time: Vec<bool> = (keyed.times.iter().enumerate())
            .map(|(i, t)| !keyed.joinable[i] || *t > row_watermark(i))
            .collect();
        // Late rows go to this side's late port (its source's late_sink, if it has one).
        let late: BooleanArray = on_time.iter().map(|ok| Some(!*ok)).collect();
        if late.true_count() > 0 {
            let rows = filter_record_batch(&batch.rows, &late)?;
            let port = if side == LEFT {
                LATE_PORT
            } else {
                SECOND_LATE_PORT
            };
            ctx.emit_late_on(port, ChangeBatch::inserts(rows));
        }
        let matched = self.emit_pairs(side, &batch.rows, &keyed, &on_time, ctx)?;
        // Rows no later row of the other side can meet are not kept; an outer side's that
        // met none are padded now.
        let expiry_offset = if side == LEFT {
            self.upper
        } else {
            -self.lower
        };
        let other = watermarks[1 - side];
        let live = |i: usize| keyed.times[i].saturating_add(expiry_offset) > other;
        let keep: Vec<bool> = (0..batch.num_rows())
            .map(|i| on_time[i] && live(i))
            .collect();
        let done: Vec<bool> = (0..batch.num_rows())
            .map(|i| on_time[i] && !live(i) && !matched[i])
            .collect();
        if self.kind.pads()[side] && done.contains(&true) {
            let rows = filter_record_batch(&batch.rows, &BooleanArray::from(done))?;
            ctx.emit(ChangeBatch::inserts(self.padded(side, &rows)?));
        }
        self.sides[side].insert(batch.rows, keyed, matched, &keep, ctx.epoch);
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Timestamp, ctx: &mut Context) -> Result<()> {
        let watermarks = Self::input_watermarks(ctx, watermark);
        self.expire(watermarks, ctx)?;
        let out = self.output_watermark(watermark);
        if out > self.watermark_out {
            self.watermark_out = out;
            ctx.emit_watermark(out);
        }
        Ok(())
    }

    fn on_end(&mut self, ctx: &mut Context) -> Result<()> {
        self.expire([WATERMARK_MAX; 2], ctx)
    }

    fn state_rows(&self) -> usize {
        self.sides.iter().map(JoinSide::len).sum()
    }

    fn state_bytes(&self) -> usize {
        self.sides.iter().map(JoinSide::bytes).sum()
    }

    fn retained_epoch(&self) -> Option<u64> {
        self.sides.iter().filter_map(JoinSide::first_epoch).min()
    }

    /// Each side's kept rows, batch by batch, with a last column saying whether each met a
    /// row; the side in the metadata.
    fn snapshot(&mut self) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        for (side, name) in [(LEFT, "left"), (RIGHT, "right")] {
            for (rows, matched) in self.sides[side].snapshot()? {
                out.push(with_matched(rows, matched, name)?);
            }
        }
        Ok(out)
    }

    fn restore(&mut self, state: Vec<RecordBatch>) -> Result<()> {
        for batch in state {
            let side = match batch.schema().metadata().get(SIDE_KEY).map(String::as_str) {
                Some("left") => LEFT,
                Some("right") => RIGHT,
                _ => return Err(Error::Internal("join state without its side".into())),
            };
            let last = batch.num_columns() - 1;
            let matched = batch.column(last).as_boolean().clone();
            let rows = RecordBatch::try_new(
                Arc::clone(&self.sides[side].schema),
                batch.columns()[..last].to_vec(),
            )?;
            self.sides[side].restore(rows, &matched)?;
        }
        Ok(())
    }
}

const SIDE_KEY: &str = "vigil.join_side";
const MATCHED_COLUMN: &str = "vigil.matched";

/// `rows` with `matched` as a last column and the side in the schema's metadata.
fn with_matched(rows: RecordBatch, matched: BooleanArray, side: &str) -> Result<RecordBatch> {
    let mut fields: Vec<Arc<Field>> = rows.schema().fields().iter().cloned().collect();
    fields.push(Arc::new(Field::new(
        MATCHED_COLUMN,
        DataType::Boolean,
        false,
    )));
    let metadata = HashMap::from([(SIDE_KEY.to_string(), side.to_string())]);
    let schema = Arc::new(Schema::new_with_metadata(fields, metadata));
    let mut columns = rows.columns().to_vec();
    columns.push(Arc::new(matched));
    Ok(RecordBatch::try_new(schema, columns)?)
}
