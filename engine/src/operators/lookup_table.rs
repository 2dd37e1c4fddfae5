//! [`LookupTable`]: the latest row per primary key of a table, for a lookup join.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, BooleanArray, new_null_array};
use datafusion::arrow::compute::interleave_record_batch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::physical_expr::PhysicalExpr;

use super::{evaluate_all, key_fields};
use crate::batch::{ChangeBatch, ChangeKind};
use crate::error::Result;

/// Where a row lives: its stored batch and its index there.
type Slot = (usize, usize);

/// The rows of a table, the latest per key. An upsert or a delete leaves the row it replaces
/// in its batch (a delete's own row too) until such dead rows outnumber live ones; then the
/// live rows are copied into one batch and the rest is freed.
pub struct LookupTable {
    schema: SchemaRef,
    keys: Vec<Arc<dyn PhysicalExpr>>,
    key_fields: Vec<SortField>,
    batches: Vec<RecordBatch>,
    index: HashMap<Box<[u8]>, Slot>,
    /// Rows in `batches` no key points at.
    dead: usize,
}

/// Evaluated keys of a batch: Arrow rows, and whether each has no NULL in it.
pub struct Keys {
    rows: Rows,
    pub valid: Vec<bool>,
}

impl Keys {
    fn key(&self, i: usize) -> Option<&[u8]> {
        self.valid[i].then(|| self.rows.row(i).data())
    }
}

impl LookupTable {
    /// A table of `schema` keyed by `keys`, expressions over its rows.
    pub fn new(schema: SchemaRef, keys: Vec<Arc<dyn PhysicalExpr>>) -> Result<Self> {
        let key_fields = key_fields(&keys, &schema)?;
        Ok(Self {
            schema,
            keys,
            key_fields,
            batches: Vec::new(),
            index: HashMap::new(),
            dead: 0,
        })
    }

    /// The same table, empty.
    pub fn empty_copy(&self) -> Self {
        Self {
            schema: Arc::clone(&self.schema),
            keys: self.keys.clone(),
            key_fields: self.key_fields.clone(),
            batches: Vec::new(),
            index: HashMap::new(),
            dead: 0,
        }
    }

    /// The table's columns.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The key expressions, for EXPLAIN.
    pub fn key_exprs(&self) -> &[Arc<dyn PhysicalExpr>] {
        &self.keys
    }

    /// Evaluates `exprs` over `rows` as keys of this table's types.
    pub fn keys_of(&self, exprs: &[Arc<dyn PhysicalExpr>], rows: &RecordBatch) -> Result<Keys> {
        let columns = evaluate_all(exprs, rows)?;
        let mut valid = vec![true; rows.num_rows()];
        for column in &columns {
            if let Some(nulls) = column.logical_nulls() {
                for (ok, present) in valid.iter_mut().zip(nulls.iter()) {
                    *ok &= present;
                }
            }
        }
        let converter = RowConverter::new(self.key_fields.clone())?;
        Ok(Keys {
            rows: converter.convert_columns(&columns)?,
            valid,
        })
    }

    /// Takes in `rows`, each replacing the row of its key; a later row of one batch wins.
    /// Returns the rows left out for a NULL in their key.
    pub fn upsert(&mut self, rows: RecordBatch) -> Result<Option<RecordBatch>> {
        self.apply(ChangeBatch::inserts(rows))
    }

    /// Takes in `changes` in order: an insert (`+I`, `+U`) replaces its key's row, a
    /// retraction (`-D`, `-U`) removes it. Returns the rows left out for a NULL in their key.
    pub fn apply(&mut self, changes: ChangeBatch) -> Result<Option<RecordBatch>> {
        let rows = changes.rows;
        let keys = self.keys_of(&self.keys.clone(), &rows)?;
        let batch = self.batches.len();
        let retracts = |i: usize| {
            (changes.ops.as_ref())
                .is_some_and(|ops| ChangeKind::from_i8(ops.value(i)).is_retraction())
        };
        for i in 0..rows.num_rows() {
            let Some(key) = keys.key(i) else { continue };
            let gone = if retracts(i) {
                // The retraction's own row is dead from the start.
                self.dead += 1;
                self.index.remove(key)
            } else {
                self.index.insert(key.into(), (batch, i))
            };
            self.dead += usize::from(gone.is_some());
        }
        let null_keys = keys.valid.iter().filter(|v| !**v).count();
        let rejected = (null_keys > 0)
            .then(|| {
                let mask: BooleanArray = keys.valid.iter().map(|v| Some(!v)).collect();
                datafusion::arrow::compute::filter_record_batch(&rows, &mask)
            })
            .transpose()?;
        self.batches.push(rows);
        if self.dead + null_keys > self.index.len() {
            self.compact()?;
        }
        Ok(rejected)
    }

    /// The slot of each row's match, `None` for none.
    pub fn lookup(&self, keys: &Keys) -> Vec<Option<Slot>> {
        (0..keys.valid.len())
            .map(|i| keys.key(i).and_then(|k| self.index.get(k).copied()))
            .collect()
    }

    /// The rows at `slots` as one batch, NULLs where there is none.
    pub fn gather(&self, slots: &[Option<Slot>]) -> Result<RecordBatch> {
        let nulls: Vec<_> = (self.schema.fields().iter())
            .map(|f| new_null_array(f.data_type(), 1))
            .collect();
        let null_row = RecordBatch::try_new(Arc::clone(&self.schema), nulls)?;
        let mut sources: Vec<&RecordBatch> = self.batches.iter().collect();
        sources.push(&null_row);
        let none = (sources.len() - 1, 0);
        let indices: Vec<Slot> = slots.iter().map(|s| s.unwrap_or(none)).collect();
        Ok(interleave_record_batch(&sources, &indices)?)
    }

    /// Copies the live rows into one batch, freeing replaced ones.
    fn compact(&mut self) -> Result<()> {
        let live = self.live_rows()?;
        self.batches.clear();
        self.index.clear();
        self.dead = 0;
        if live.num_rows() > 0 {
            self.upsert(live)?;
        }
        Ok(())
    }

    /// Every live row, as one batch.
    pub fn live_rows(&self) -> Result<RecordBatch> {
        let mut slots: Vec<Option<Slot>> = self.index.values().copied().map(Some).collect();
        slots.sort_unstable();
        if slots.is_empty() {
            return Ok(RecordBatch::new_empty(Arc::clone(&self.schema)));
        }
        self.gather(&slots)
    }

    /// Live rows.
    pub fn key_count(&self) -> usize {
        self.index.len()
    }

    /// Bytes held by the stored batches, replaced rows included.
    pub fn bytes(&self) -> usize {
        let batches: usize = self.batches.iter().map(|b| b.get_array_memory_size()).sum();
        batches + self.index.keys().map(|k| k.len() + 24).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Int8Array, Int64Array};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::physical_expr::expressions::Column;

    use super::*;

    fn table() -> LookupTable {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, true),
            Field::new("v", DataType::Int64, true),
        ]));
        LookupTable::new(schema, vec![Arc::new(Column::new("k", 0))]).unwrap()
    }

    fn changes(table: &LookupTable, rows: &[(i64, i64, ChangeKind)]) -> ChangeBatch {
        let keys = Int64Array::from_iter_values(rows.iter().map(|r| r.0));
        let values = Int64Array::from_iter_values(rows.iter().map(|r| r.1));
        let ops = Int8Array::from_iter_values(rows.iter().map(|r| r.2 as i8));
        let rows = RecordBatch::try_new(
            Arc::clone(table.schema()),
            vec![Arc::new(keys), Arc::new(values)],
        )
        .unwrap();
        ChangeBatch {
            rows,
            ops: Some(ops),
            row_watermarks: None,
        }
    }

    fn live(table: &LookupTable) -> Vec<(i64, i64)> {
        let rows = table.live_rows().unwrap();
        let column = |i: usize| {
            rows.column(i)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .clone()
        };
        let mut live: Vec<_> = column(0)
            .values()
            .iter()
            .copied()
            .zip(column(1).values().iter().copied())
            .collect();
        live.sort_unstable();
        live
    }

    #[test]
    fn deletes_remove_keys_in_order_and_dead_rows_are_freed() {
        use ChangeKind::{Delete, Insert};
        let mut table = table();
        let batch = changes(
            &table,
            &[
                (1, 10, Insert),
                (2, 20, Insert),
                (1, 0, Delete),
                (1, 11, Insert),
            ],
        );
        table.apply(batch).unwrap();
        assert_eq!(live(&table), [(1, 11), (2, 20)]);
        let batch = changes(&table, &[(2, 0, Delete), (3, 30, Insert), (9, 0, Delete)]);
        table.apply(batch).unwrap();
        assert_eq!(live(&table), [(1, 11), (3, 30)]);
        // Dead rows outnumbered live ones, so the live ones were copied out.
        assert_eq!(table.batches.len(), 1);
        assert_eq!(table.batches[0].num_rows(), 2);
    }
}
