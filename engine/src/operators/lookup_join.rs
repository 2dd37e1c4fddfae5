//! [`LookupJoin`]: a stream's rows enriched with a table's row of the same primary key.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, UInt32Array};
use datafusion::arrow::compute::take_record_batch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::physical_expr::PhysicalExpr;

use super::lookup_table::LookupTable;
use super::row_errors::predicate_holds;
use super::{Context, Operator, evaluate_or_reject, show_expr};
use crate::batch::{ChangeBatch, RejectedRows};
use crate::error::{Error, Result};
use crate::time::{Timestamp, WATERMARK_MAX};

const TABLE_KEY: &str = "vigil.lookup";

/// Which input is which, and where the table's columns go in the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LookupSides {
    /// The input (0 or 1) the table's rows come on; the stream's is the other.
    pub table_input: usize,
    /// Whether stream rows without a match are emitted with NULLs (a LEFT JOIN of the
    /// stream) instead of dropped.
    pub keep_unmatched: bool,
    /// Whether the stream's rows wait until the table has been read to its end (a table
    /// read once at start, such as a file).
    pub load_first: bool,
}

/// Joins each row of an append-only stream with the table's current row of its key, as it
/// arrives: Flink's lookup join. The table is the latest row per primary key; its rows
/// replace each other as they come and hold no watermark back. The output is append-only:
/// a row joined with the table's old row is not taken back when the row changes.
pub struct LookupJoin {
    table: LookupTable,
    table_name: String,
    stream_keys: Vec<Arc<dyn PhysicalExpr>>,
    residual: Option<Arc<dyn PhysicalExpr>>,
    sides: LookupSides,
    schema: SchemaRef,
    /// Stream rows (with their source batch) waiting for the table to load.
    waiting: Vec<(u64, ChangeBatch)>,
    waiting_watermark: Option<Timestamp>,
    loaded: bool,
}

impl LookupJoin {
    /// A join of stream rows keyed by `stream_keys` with `table`, giving rows of `schema`
    /// (the join's inputs' columns in order); `residual` is the rest of the ON condition.
    pub(crate) fn try_new(
        table: LookupTable,
        table_name: String,
        stream_keys: Vec<Arc<dyn PhysicalExpr>>,
        residual: Option<Arc<dyn PhysicalExpr>>,
        sides: LookupSides,
        schema: SchemaRef,
    ) -> Result<Self> {
        Ok(Self {
            table,
            table_name,
            stream_keys,
            residual,
            loaded: !sides.load_first,
            sides,
            schema,
            waiting: Vec::new(),
            waiting_watermark: None,
        })
    }

    /// Emits `rows` of the stream joined with the table as it stands.
    fn join(&mut self, batch: ChangeBatch, ctx: &mut Context) -> Result<()> {
        let table = &self.table;
        let evaluated = evaluate_or_reject("LookupJoin", batch, ctx, |rows| {
            table.keys_of(&self.stream_keys, rows)
        })?;
        let Some((batch, keys)) = evaluated else {
            return Ok(());
        };
        let mut slots = self.table.lookup(&keys);
        if let Some(residual) = &self.residual {
            let matched: Vec<u32> = (0..slots.len() as u32)
                .filter(|i| slots[*i as usize].is_some())
                .collect();
            let joined = self.output(&batch.rows, &matched, &slots)?;
            let holds = predicate_holds("LookupJoin", residual, joined, ctx)?;
            for (i, holds) in matched.iter().zip(holds) {
                if !holds {
                    slots[*i as usize] = None;
                }
            }
        }
        let emitted: Vec<u32> = (0..slots.len() as u32)
            .filter(|i| self.sides.keep_unmatched || slots[*i as usize].is_some())
            .collect();
        let output = self.output(&batch.rows, &emitted, &slots)?;
        ctx.emit(ChangeBatch::inserts(output));
        Ok(())
    }

    /// Output rows for stream rows `picked`, each with the table row at its slot.
    fn output(
        &self,
        rows: &RecordBatch,
        picked: &[u32],
        slots: &[Option<(usize, usize)>],
    ) -> Result<RecordBatch> {
        let stream = take_record_batch(rows, &UInt32Array::from(picked.to_vec()))?;
        let table_slots: Vec<_> = picked.iter().map(|i| slots[*i as usize]).collect();
        let table = self.table.gather(&table_slots)?;
        let (first, second): (&[ArrayRef], &[ArrayRef]) = if self.sides.table_input == 0 {
            (table.columns(), stream.columns())
        } else {
            (stream.columns(), table.columns())
        };
        let columns = first.iter().chain(second).cloned().collect();
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }

    /// The table has been read: the stream rows that waited are joined, in order.
    fn release(&mut self, ctx: &mut Context) -> Result<()> {
        self.loaded = true;
        for (_, batch) in std::mem::take(&mut self.waiting) {
            self.join(batch, ctx)?;
        }
        if let Some(watermark) = self.waiting_watermark.take() {
            ctx.emit_watermark(watermark);
        }
        Ok(())
    }
}

impl Operator for LookupJoin {
    fn name(&self) -> &'static str {
        "LookupJoin"
    }

    fn new_instance(&self) -> Result<Box<dyn Operator>> {
        Ok(Box::new(Self {
            table: self.table.empty_copy(),
            table_name: self.table_name.clone(),
            stream_keys: self.stream_keys.clone(),
            residual: self.residual.clone(),
            sides: self.sides,
            schema: Arc::clone(&self.schema),
            waiting: Vec::new(),
            waiting_watermark: None,
            loaded: !self.sides.load_first,
        }))
    }

    fn describe(&self) -> String {
        let keys = (self.stream_keys.iter())
            .zip(self.table.key_exprs())
            .map(|(s, t)| format!("{} = {}", show_expr(s.as_ref()), show_expr(t.as_ref())))
            .collect::<Vec<_>>()
            .join(", ");
        let kind = if self.sides.keep_unmatched {
            "left outer"
        } else {
            "inner"
        };
        let mut text = format!("{kind}: table {} on ({keys})", self.table_name);
        if self.sides.load_first {
            text.push_str(", loaded first");
        }
        if let Some(residual) = &self.residual {
            text.push_str(&format!(", filter: {}", show_expr(residual.as_ref())));
        }
        text
    }

    fn untimed_input(&self, input: usize) -> bool {
        input == self.sides.table_input
    }

    fn on_batch(&mut self, batch: ChangeBatch, ctx: &mut Context) -> Result<()> {
        if ctx.input == self.sides.table_input {
            if let Some(rows) = self.table.apply(batch)? {
                let error = format!("NULL primary key in table '{}'", self.table_name);
                ctx.reject(RejectedRows {
                    operator: "LookupJoin",
                    errors: vec![error; rows.num_rows()],
                    rows,
                });
            }
            return Ok(());
        }
        if batch.is_updating() {
            return Err(Error::Execution(
                "a lookup join cannot take an updating stream".into(),
            ));
        }
        if !self.loaded {
            self.waiting.push((ctx.epoch, batch));
            return Ok(());
        }
        self.join(batch, ctx)
    }

    fn on_watermark(&mut self, watermark: Timestamp, ctx: &mut Context) -> Result<()> {
        if self.loaded {
            ctx.emit_watermark(watermark);
        } else {
            self.waiting_watermark = Some(watermark);
        }
        Ok(())
    }

    fn on_untimed_watermark(&mut self, watermark: Timestamp, ctx: &mut Context) -> Result<()> {
        // A table read once reaches the end of its input, and its watermark the end of time.
        if !self.loaded && watermark == WATERMARK_MAX {
            self.release(ctx)?;
        }
        Ok(())
    }

    fn on_end(&mut self, ctx: &mut Context) -> Result<()> {
        self.release(ctx)
    }

    fn state_rows(&self) -> usize {
        self.table.key_count()
            + self
                .waiting
                .iter()
                .map(|(_, b)| b.num_rows())
                .sum::<usize>()
    }

    fn state_bytes(&self) -> usize {
        self.table.bytes()
    }

    fn retained_epoch(&self) -> Option<u64> {
        self.waiting.iter().map(|(epoch, _)| *epoch).min()
    }

    /// The table's live rows, then any stream rows still waiting for it to load.
    fn snapshot(&mut self) -> Result<Vec<RecordBatch>> {
        let table = if self.loaded { "loaded" } else { "loading" };
        let mut out = vec![marked(self.table.live_rows()?, table)?];
        for (_, batch) in &self.waiting {
            out.push(marked(batch.rows.clone(), "waiting")?);
        }
        Ok(out)
    }

    fn restore(&mut self, state: Vec<RecordBatch>) -> Result<()> {
        for batch in state {
            let columns = batch.columns().to_vec();
            match batch.schema().metadata().get(TABLE_KEY).map(String::as_str) {
                Some(part @ ("loaded" | "loading")) => {
                    self.loaded = part == "loaded";
                    let rows = RecordBatch::try_new(Arc::clone(self.table.schema()), columns)?;
                    self.table.upsert(rows)?;
                }
                Some("waiting") => {
                    let schema = Arc::new(
                        batch
                            .schema()
                            .as_ref()
                            .clone()
                            .with_metadata(Default::default()),
                    );
                    let rows = RecordBatch::try_new(schema, columns)?;
                    self.waiting.push((0, ChangeBatch::inserts(rows)));
                }
                _ => return Err(Error::Internal("lookup join state without its part".into())),
            }
        }
        Ok(())
    }
}

/// `rows` with which part of the state they are in their schema's metadata.
fn marked(rows: RecordBatch, part: &str) -> Result<RecordBatch> {
    let mut metadata = rows.schema().metadata().clone();
    metadata.insert(TABLE_KEY.into(), part.into());
    let schema = Arc::new(rows.schema().as_ref().clone().with_metadata(metadata));
    Ok(rows.with_schema(schema)?)
}
