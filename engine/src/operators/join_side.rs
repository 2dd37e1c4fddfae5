//! [`JoinSide`]: the rows of one input that a join keeps for rows of the other to meet.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray};
use datafusion::arrow::compute::{cast, interleave_record_batch};
use datafusion::arrow::datatypes::{DataType, Int64Type, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::physical_expr::PhysicalExpr;

use super::{evaluate_all, key_fields};
use crate::error::Result;
use crate::time::Timestamp;

/// A kept row: the id of its stored batch and its index there.
pub(super) type RowRef = (u64, u32);

/// The evaluated join keys and times of a batch of one side.
pub(super) struct KeyedRows {
    /// Keys in Arrow's row format; `None` when the join has no equality keys.
    pub keys: Option<Rows>,
    /// False for a row with a NULL key, which meets no row.
    pub joinable: Vec<bool>,
    /// Each row's time, in nanoseconds.
    pub times: Vec<Timestamp>,
}

impl KeyedRows {
    /// Row `i`'s key bytes (empty without keys).
    pub fn key(&self, i: usize) -> &[u8] {
        self.keys.as_ref().map_or(&[], |k| k.row(i).data())
    }
}

/// One stored batch.
struct StoredBatch {
    rows: RecordBatch,
    keyed: KeyedRows,
    /// Whether each row has met a row of the other side (outer joins pad those that never
    /// did).
    matched: Vec<bool>,
    alive: usize,
    epoch: u64,
}

/// One input's kept rows, indexed by key and by the time at which they can meet no more
/// rows.
pub(super) struct JoinSide {
    pub schema: SchemaRef,
    keys: Vec<Arc<dyn PhysicalExpr>>,
    key_fields: Vec<SortField>,
    pub time_column: usize,
    /// A row can meet no more rows once the other side's watermark reaches its time plus this.
    expiry_offset: i64,
    batches: BTreeMap<u64, StoredBatch>,
    next_id: u64,
    index: HashMap<Vec<u8>, Vec<RowRef>>,
    expiry: BTreeMap<Timestamp, Vec<RowRef>>,
    rows: usize,
}

impl JoinSide {
    /// A side of `schema` joined on `keys` and the time in `time_column`.
    pub fn new(
        schema: SchemaRef,
        keys: Vec<Arc<dyn PhysicalExpr>>,
        time_column: usize,
        expiry_offset: i64,
    ) -> Result<Self> {
        let key_fields = key_fields(&keys, &schema)?;
        Ok(Self {
            schema,
            keys,
            key_fields,
            time_column,
            expiry_offset,
            batches: BTreeMap::new(),
            next_id: 0,
            index: HashMap::new(),
            expiry: BTreeMap::new(),
            rows: 0,
        })
    }

    /// The same side with no rows.
    pub fn empty_copy(&self) -> Self {
        Self {
            schema: Arc::clone(&self.schema),
            keys: self.keys.clone(),
            key_fields: self.key_fields.clone(),
            time_column: self.time_column,
            expiry_offset: self.expiry_offset,
            batches: BTreeMap::new(),
            next_id: 0,
            index: HashMap::new(),
            expiry: BTreeMap::new(),
            rows: 0,
        }
    }

    /// The key expressions, for EXPLAIN.
    pub fn key_exprs(&self) -> &[Arc<dyn PhysicalExpr>] {
        &self.keys
    }

    /// Evaluates the keys and times of `rows`; fails when an expression fails.
    pub fn key_rows(&self, rows: &RecordBatch) -> Result<KeyedRows> {
        let mut joinable = vec![true; rows.num_rows()];
        // A row with no time meets no row, like one with a NULL key.
        if let Some(nulls) = rows.column(self.time_column).logical_nulls() {
            for (ok, valid) in joinable.iter_mut().zip(nulls.iter()) {
                *ok &= valid;
            }
        }
        let keys = if self.keys.is_empty() {
            None
        } else {
            let columns = evaluate_all(&self.keys, rows)?;
            for column in &columns {
                if let Some(nulls) = column.logical_nulls() {
                    for (ok, valid) in joinable.iter_mut().zip(nulls.iter()) {
                        *ok &= valid;
                    }
                }
            }
            let converter = RowConverter::new(self.key_fields.clone())?;
            Some(converter.convert_columns(&columns)?)
        };
        Ok(KeyedRows {
            keys,
            joinable,
            times: times_of(rows.column(self.time_column))?,
        })
    }

    /// The kept rows with key `key`.
    pub fn candidates(&self, key: &[u8]) -> &[RowRef] {
        self.index.get(key).map_or(&[], Vec::as_slice)
    }

    /// The time of a kept row.
    pub fn time(&self, (batch, row): RowRef) -> Timestamp {
        self.batches[&batch].keyed.times[row as usize]
    }

    /// Records that a kept row met a row of the other side.
    pub fn set_matched(&mut self, (batch, row): RowRef) {
        if let Some(stored) = self.batches.get_mut(&batch) {
            stored.matched[row as usize] = true;
        }
    }

    /// The kept rows at `refs`, as one batch.
    pub fn gather(&self, refs: &[RowRef]) -> Result<RecordBatch> {
        let mut ids: Vec<u64> = refs.iter().map(|(b, _)| *b).collect();
        ids.sort_unstable();
        ids.dedup();
        let batches: Vec<&RecordBatch> = ids.iter().map(|id| &self.batches[id].rows).collect();
        let indices: Vec<(usize, usize)> = refs
            .iter()
            .map(|(b, r)| (ids.binary_search(b).expect("gathered ids"), *r as usize))
            .collect();
        if batches.is_empty() {
            return Ok(RecordBatch::new_empty(Arc::clone(&self.schema)));
        }
        Ok(interleave_record_batch(&batches, &indices)?)
    }

    /// Keeps `rows` (those whose `keep` is true), with whether each already met a row.
    pub fn insert(
        &mut self,
        rows: RecordBatch,
        keyed: KeyedRows,
        matched: Vec<bool>,
        keep: &[bool],
        epoch: u64,
    ) {
        let id = self.next_id;
        self.next_id += 1;
        let mut alive = 0;
        for (i, _) in keep.iter().enumerate().filter(|(_, k)| **k) {
            let row = (id, i as u32);
            if keyed.joinable[i] {
                self.index
                    .entry(keyed.key(i).to_vec())
                    .or_default()
                    .push(row);
            }
            let expires = keyed.times[i].saturating_add(self.expiry_offset);
            self.expiry.entry(expires).or_default().push(row);
            alive += 1;
        }
        if alive == 0 {
            return;
        }
        self.rows += alive;
        self.batches.insert(
            id,
            StoredBatch {
                rows,
                keyed,
                matched,
                alive,
                epoch,
            },
        );
    }

    /// Frees the rows the other side's `watermark` has passed; returns those of them that
    /// never met a row, for an outer join to pad.
    pub fn expire(&mut self, watermark: Timestamp) -> Result<Option<RecordBatch>> {
        let mut unmatched = Vec::new();
        while let Some(entry) = self.expiry.first_entry() {
            if *entry.key() > watermark {
                break;
            }
            for row in entry.remove() {
                if !self.free(row) {
                    unmatched.push(row);
                }
            }
        }
        if unmatched.is_empty() {
            return Ok(None);
        }
        // Gathered before their batches go: `free` keeps a batch until its last row is
        // gathered.
        let padded = self.gather(&unmatched)?;
        self.drop_empty_batches();
        Ok(Some(padded))
    }

    /// Frees one row from the index; returns whether it had met a row.
    fn free(&mut self, (batch, row): RowRef) -> bool {
        let stored = self
            .batches
            .get_mut(&batch)
            .expect("expiring rows are kept");
        stored.alive -= 1;
        self.rows -= 1;
        let i = row as usize;
        if stored.keyed.joinable[i] {
            let key = stored.keyed.key(i).to_vec();
            if let Some(refs) = self.index.get_mut(&key) {
                refs.retain(|r| *r != (batch, row));
                if refs.is_empty() {
                    self.index.remove(&key);
                }
            }
        }
        stored.matched[i]
    }

    fn drop_empty_batches(&mut self) {
        self.batches.retain(|_, b| b.alive > 0);
    }

    /// Rows kept.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Bytes held by kept batches.
    pub fn bytes(&self) -> usize {
        self.batches
            .values()
            .map(|b| b.rows.get_array_memory_size())
            .sum()
    }

    /// The oldest source batch whose rows are kept.
    pub fn first_epoch(&self) -> Option<u64> {
        self.batches.values().map(|b| b.epoch).min()
    }

    /// The earliest time of a kept row.
    pub fn earliest_time(&self) -> Option<Timestamp> {
        self.expiry
            .first_key_value()
            .map(|(t, _)| t.saturating_sub(self.expiry_offset))
    }

    /// The kept rows, each with whether it met a row (a last boolean column).
    pub fn snapshot(&self) -> Result<Vec<(RecordBatch, BooleanArray)>> {
        let mut refs: Vec<RowRef> = self.expiry.values().flatten().copied().collect();
        refs.sort_unstable();
        let mut out = Vec::new();
        for chunk in refs.chunk_by(|a, b| a.0 == b.0) {
            let rows = self.gather(chunk)?;
            let stored = &self.batches[&chunk[0].0];
            let matched: BooleanArray = chunk
                .iter()
                .map(|(_, r)| Some(stored.matched[*r as usize]))
                .collect();
            out.push((rows, matched));
        }
        Ok(out)
    }

    /// Keeps restored rows.
    pub fn restore(&mut self, rows: RecordBatch, matched: &BooleanArray) -> Result<()> {
        let keyed = self.key_rows(&rows)?;
        let matched: Vec<bool> = (0..matched.len()).map(|i| matched.value(i)).collect();
        let keep = vec![true; rows.num_rows()];
        self.insert(rows, keyed, matched, &keep, 0);
        Ok(())
    }
}

/// A timestamp column's values in nanoseconds.
fn times_of(column: &ArrayRef) -> Result<Vec<Timestamp>> {
    let column = cast(column, &DataType::Int64)?;
    Ok(column.as_primitive::<Int64Type>().values().to_vec())
}
