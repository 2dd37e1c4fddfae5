//! [`WatermarkAssign`]: turns a source's `WATERMARK FOR` declaration into watermarks.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch, UInt32Array,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, TimeUnit, UInt32Type};
use datafusion::physical_expr::PhysicalExpr;

use super::{Context, Operator, evaluate_or_reject};
use crate::batch::ChangeBatch;
use crate::connector::SplitStatus;
use crate::error::Result;
use crate::time::{Timestamp, WATERMARK_MAX, WATERMARK_MIN};

/// Snapshot metadata: the source's watermark.
const CURRENT_KEY: &str = "vigil.watermark";
/// Snapshot metadata: the highest watermark any split reached.
const HIGHEST_KEY: &str = "vigil.highest";

/// The watermark of a source: per split, the largest value of the watermark expression seen
/// so far (so `max(ts) - delay`); over splits, the minimum of the active ones. It never goes
/// backwards.
///
/// Each batch leaves with a per-row watermark, the one that stood just before the row
/// arrived. Window operators decide lateness with it, so a batch of 1,000 rows gives the
/// same results as 1,000 batches of one row.
///
/// Splits come from sources with several (Kafka partitions, see [`SplitStatus`]). A split
/// the source reports idle stops holding the watermark back and rejoins with its next row;
/// its rows may then be late. A source with one split never reports any: its only split is
/// always active.
#[derive(Debug)]
pub struct WatermarkAssign {
    source: String,
    expr: Arc<dyn PhysicalExpr>,
    /// `expr` as written, for EXPLAIN.
    expr_sql: String,
    splits: BTreeMap<u32, SplitMark>,
    /// The largest watermark any split has reached, the anchor of wall-clock advance.
    highest: Timestamp,
    current: Timestamp,
}

#[derive(Debug, Clone, Copy)]
struct SplitMark {
    watermark: Timestamp,
    active: bool,
}

impl WatermarkAssign {
    /// Watermarks of source `source` from `expr`, a timestamp expression over its rows,
    /// written `expr_sql` in the source's DDL.
    pub fn new(
        source: impl Into<String>,
        expr: Arc<dyn PhysicalExpr>,
        expr_sql: impl Into<String>,
    ) -> Self {
        Self {
            source: source.into(),
            expr,
            expr_sql: expr_sql.into(),
            splits: BTreeMap::new(),
            highest: WATERMARK_MIN,
            current: WATERMARK_MIN,
        }
    }

    /// The lowest watermark over active splits other than `except`; `None` when there are none.
    fn others_floor(&self, except: u32) -> Option<Timestamp> {
        self.splits
            .iter()
            .filter(|(split, mark)| **split != except && mark.active)
            .map(|(_, mark)| mark.watermark)
            .min()
    }

    fn advance_to(&mut self, watermark: Timestamp, ctx: &mut Context) {
        if watermark > self.current {
            self.current = watermark;
            ctx.emit_watermark(watermark);
        }
    }

    fn assign(&mut self, split: u32, batch: ChangeBatch, ctx: &mut Context) -> Result<()> {
        let expr = &self.expr;
        let evaluated = evaluate_or_reject("WatermarkAssign", batch, ctx, |rows| {
            let marks = expr.evaluate(rows)?.into_array(rows.num_rows())?;
            let marks = cast(&marks, &DataType::Timestamp(TimeUnit::Nanosecond, None))?;
            Ok(cast(&marks, &DataType::Int64)?)
        })?;
        let Some((batch, marks)) = evaluated else {
            return Ok(());
        };
        let marks = marks.as_primitive::<Int64Type>();

        // Data makes a split active again.
        let mark = self.splits.entry(split).or_insert(SplitMark {
            watermark: WATERMARK_MIN,
            active: true,
        });
        mark.active = true;
        let floor = self.others_floor(split).unwrap_or(WATERMARK_MAX);
        let current = self.current;
        // Exclusive running maximum: row i sees the watermark made by rows before it, capped
        // by the other splits and never below what was already emitted.
        let mut running = self.splits[&split].watermark;
        let before: Int64Array = if marks.null_count() == 0 {
            marks
                .values()
                .iter()
                .map(|&m| {
                    let seen = running.min(floor).max(current);
                    running = running.max(m);
                    seen
                })
                .collect::<Vec<_>>()
                .into()
        } else {
            marks
                .iter()
                .map(|m| {
                    let seen = running.min(floor).max(current);
                    if let Some(m) = m {
                        running = running.max(m);
                    }
                    Some(seen)
                })
                .collect()
        };
        self.splits
            .get_mut(&split)
            .expect("inserted above")
            .watermark = running;
        self.highest = self.highest.max(running);
        ctx.emit(ChangeBatch {
            row_watermarks: Some(before),
            ..batch
        });
        self.advance_to(running.min(floor), ctx);
        Ok(())
    }
}

impl Operator for WatermarkAssign {
    fn new_instance(&self) -> Result<Box<dyn Operator>> {
        let expr = Arc::clone(&self.expr);
        Ok(Box::new(Self::new(
            self.source.clone(),
            expr,
            self.expr_sql.clone(),
        )))
    }

    fn name(&self) -> &'static str {
        "Source"
    }

    fn describe(&self) -> String {
        format!("{} watermark={}", self.source, self.expr_sql)
    }

    fn on_batch(&mut self, batch: ChangeBatch, ctx: &mut Context) -> Result<()> {
        self.assign(0, batch, ctx)
    }

    fn on_split_batch(&mut self, split: u32, batch: ChangeBatch, ctx: &mut Context) -> Result<()> {
        self.assign(split, batch, ctx)
    }

    fn on_split_status(&mut self, status: &SplitStatus, ctx: &mut Context) -> Result<()> {
        // Revoked splits are forgotten; new ones start at the minimum and hold the watermark
        // back until they have data or go idle.
        self.splits
            .retain(|split, _| status.active.contains(split) || status.idle.contains(split));
        for (splits, active) in [(&status.active, true), (&status.idle, false)] {
            for &split in splits {
                self.splits
                    .entry(split)
                    .or_insert(SplitMark {
                        watermark: WATERMARK_MIN,
                        active,
                    })
                    .active = active;
            }
        }
        if let Some(floor) = self.others_floor(u32::MAX) {
            self.advance_to(floor, ctx);
        } else if let Some(quiet) = status.quiet_for
            && self.highest > WATERMARK_MIN
        {
            let quiet = i64::try_from(quiet.as_nanos()).unwrap_or(i64::MAX);
            self.advance_to(self.highest.saturating_add(quiet), ctx);
        }
        Ok(())
    }

    /// One batch, a row per split (`split`, `watermark`, `active`); the schema's metadata
    /// holds the source's watermark and the highest any split reached.
    fn snapshot(&mut self) -> Result<Vec<RecordBatch>> {
        let metadata = HashMap::from([
            (CURRENT_KEY.to_string(), self.current.to_string()),
            (HIGHEST_KEY.to_string(), self.highest.to_string()),
        ]);
        let schema = Schema::new(vec![
            Field::new("split", DataType::UInt32, false),
            Field::new("watermark", DataType::Int64, false),
            Field::new("active", DataType::Boolean, false),
        ])
        .with_metadata(metadata);
        let splits: UInt32Array = self.splits.keys().copied().collect::<Vec<_>>().into();
        let marks: Int64Array = self
            .splits
            .values()
            .map(|m| m.watermark)
            .collect::<Vec<_>>()
            .into();
        let active: BooleanArray = self.splits.values().map(|m| Some(m.active)).collect();
        let columns: Vec<ArrayRef> = vec![Arc::new(splits), Arc::new(marks), Arc::new(active)];
        Ok(vec![RecordBatch::try_new(Arc::new(schema), columns)?])
    }

    fn restore(&mut self, state: Vec<RecordBatch>) -> Result<()> {
        let Some(batch) = state.first() else {
            return Ok(());
        };
        let metadata = batch.schema_ref().metadata();
        let number = |key: &str| -> Result<Timestamp> {
            metadata
                .get(key)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| crate::Error::State(format!("watermark state without '{key}'")))
        };
        self.current = number(CURRENT_KEY)?;
        self.highest = number(HIGHEST_KEY)?;
        let splits = batch.column(0).as_primitive::<UInt32Type>();
        let marks = batch.column(1).as_primitive::<Int64Type>();
        let active = batch.column(2).as_boolean();
        for i in 0..batch.num_rows() {
            let mark = SplitMark {
                watermark: marks.value(i),
                active: active.value(i),
            };
            self.splits.insert(splits.value(i), mark);
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Timestamp, ctx: &mut Context) -> Result<()> {
        // Only the end of input arrives from upstream: +inf.
        self.advance_to(watermark, ctx);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::testing;
    use datafusion::arrow::array::TimestampNanosecondArray;
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::arrow::record_batch::RecordBatch;
    use datafusion::physical_expr::expressions::Column;

    fn batch(ts: &[i64]) -> ChangeBatch {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "ts",
            crate::time::TIMESTAMP_TYPE,
            true,
        )]));
        let col = TimestampNanosecondArray::from(ts.to_vec());
        ChangeBatch::inserts(RecordBatch::try_new(schema, vec![Arc::new(col)]).unwrap())
    }

    #[test]
    fn row_watermarks_are_the_running_maximum_before_each_row() {
        let mut op = WatermarkAssign::new("s", Arc::new(Column::new("ts", 0)), "ts");
        let out = testing::batch(&mut op, batch(&[10, 30, 20, 40]));
        let wms = out.batches[0].row_watermarks.clone().unwrap();
        assert_eq!(wms.value(0), WATERMARK_MIN);
        assert_eq!(&wms.values()[1..], &[10, 30, 30]);
        assert_eq!(out.watermarks, vec![40]);
        // Never backwards.
        let out = testing::batch(&mut op, batch(&[5]));
        assert!(out.watermarks.is_empty());
        assert_eq!(out.batches[0].row_watermarks.as_ref().unwrap().value(0), 40);
    }

    fn status(active: &[u32], idle: &[u32], quiet_for: Option<u64>) -> SplitStatus {
        SplitStatus {
            active: active.to_vec(),
            idle: idle.to_vec(),
            quiet_for: quiet_for.map(std::time::Duration::from_nanos),
        }
    }

    #[test]
    fn the_watermark_is_the_minimum_over_active_splits() {
        let mut op = WatermarkAssign::new("s", Arc::new(Column::new("ts", 0)), "ts");
        testing::split_status(&mut op, &status(&[0, 1], &[], None));
        // Split 1 has no data yet: it holds the watermark at the minimum.
        let out = testing::split_batch(&mut op, 0, batch(&[100, 200]));
        assert!(out.watermarks.is_empty());
        let out = testing::split_batch(&mut op, 1, batch(&[150]));
        assert_eq!(out.watermarks, vec![150]);
        // Rows of split 1 see the floor set by split 0.
        let out = testing::split_batch(&mut op, 1, batch(&[300, 400]));
        assert_eq!(out.watermarks, vec![200]);
        assert_eq!(
            out.batches[0].row_watermarks.as_ref().unwrap().values(),
            &[150, 200]
        );
    }

    #[test]
    fn an_idle_split_stops_holding_the_watermark_and_rejoins_with_data() {
        let mut op = WatermarkAssign::new("s", Arc::new(Column::new("ts", 0)), "ts");
        testing::split_status(&mut op, &status(&[0, 1], &[], None));
        testing::split_batch(&mut op, 0, batch(&[100]));
        let out = testing::split_status(&mut op, &status(&[0], &[1], None));
        assert_eq!(out.watermarks, vec![100]);
        testing::split_batch(&mut op, 0, batch(&[500]));
        // Split 1 rejoins behind: its rows are late against the emitted watermark, which
        // never moves backwards, and it holds further progress at its own pace.
        let out = testing::split_batch(&mut op, 1, batch(&[50]));
        assert!(out.watermarks.is_empty());
        assert_eq!(
            out.batches[0].row_watermarks.as_ref().unwrap().value(0),
            500
        );
        let out = testing::split_batch(&mut op, 0, batch(&[900]));
        assert!(out.watermarks.is_empty(), "split 1 at 50 holds it back");
        let out = testing::split_batch(&mut op, 1, batch(&[700]));
        assert_eq!(out.watermarks, vec![700]);
    }

    #[test]
    fn a_quiet_source_advances_from_the_highest_event_time() {
        let mut op = WatermarkAssign::new("s", Arc::new(Column::new("ts", 0)), "ts");
        // Quiet before any data: nothing to anchor on.
        let out = testing::split_status(&mut op, &status(&[], &[0, 1], Some(1_000)));
        assert!(out.watermarks.is_empty());
        testing::split_status(&mut op, &status(&[0, 1], &[], None));
        testing::split_batch(&mut op, 0, batch(&[100]));
        testing::split_batch(&mut op, 1, batch(&[300]));
        let out = testing::split_status(&mut op, &status(&[], &[0, 1], Some(5_000)));
        assert_eq!(out.watermarks, vec![5_300]);
        // Revoked splits are forgotten.
        testing::split_status(&mut op, &status(&[1], &[], None));
        let out = testing::split_batch(&mut op, 1, batch(&[6_000]));
        assert_eq!(out.watermarks, vec![6_000]);
    }
}
