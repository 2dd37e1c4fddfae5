//! [`UpdatingTopN`]: `ROW_NUMBER() OVER (PARTITION BY k ORDER BY x DESC) AS r ... WHERE r <= N`
//! over a changelog (or an append-only stream with no window), as an updating result: each
//! partition's first N rows with their numbers, kept current.
//!
//! A partition's rows are ordered by the ORDER BY columns in Arrow's row format (which
//! encodes ASC/DESC and NULLS FIRST/LAST), ties by arrival. After a batch, each partition it
//! touched compares its first N rows with what it had emitted: a number whose row changed is
//! retracted (`-D`) and given its new row (`+I`). An append-only input never takes a row
//! back, so a partition keeps only its first N; a changelog keeps every live row, as many as
//! its keys.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, Int8Array, RecordBatch, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, UInt64Type};
use datafusion::arrow::row::{OwnedRow, RowConverter, SortField};
use datafusion::physical_expr::PhysicalExpr;

use super::{Context, Operator, evaluate_all, show_exprs};
use crate::batch::{ChangeBatch, ChangeKind};
use crate::error::Result;

/// Where a row sits in its partition: its ORDER BY key, then its arrival.
type Place = (SortKey, u64);

/// An ORDER BY key in Arrow's row format. Fixed-width keys of up to 16 bytes (one or two
/// numbers, a time) are packed into an integer with the same order: comparing them is one
/// instruction, not a `memcmp` call per step of the ordered map.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum SortKey {
    Packed(u128),
    Bytes(Box<[u8]>),
}

impl SortKey {
    /// The key of `bytes`; `packed` when every key has the same width of at most 16 bytes.
    fn new(bytes: &[u8], packed: bool) -> Self {
        if !packed {
            return SortKey::Bytes(bytes.into());
        }
        // Equal widths: big-endian, left-aligned, the integers order as the bytes do.
        let mut word = [0u8; 16];
        word[..bytes.len()].copy_from_slice(bytes);
        SortKey::Packed(u128::from_be_bytes(word))
    }
}

/// Whether keys of `types` are fixed-width in the row format and at most 16 bytes: a NULL
/// flag byte and the value for each primitive type.
fn packs(types: &[DataType]) -> bool {
    let width: Option<usize> = (types.iter())
        .map(|t| t.primitive_width().map(|w| w + 1))
        .sum();
    width.is_some_and(|w| w <= 16)
}

/// The ranked rows of one partition.
#[derive(Default)]
struct Ranking {
    rows: BTreeMap<Place, OwnedRow>,
    /// Where each distinct row is (several places for copies), to take one back.
    places: HashMap<OwnedRow, Vec<Place>>,
    /// The first rows as last emitted, by number.
    emitted: Vec<OwnedRow>,
}

/// Keeps each partition's first `limit` rows by the ORDER BY; see the module docs.
pub struct UpdatingTopN {
    partition_by: Vec<Arc<dyn PhysicalExpr>>,
    order_by: Vec<Arc<dyn PhysicalExpr>>,
    order_fields: Vec<SortField>,
    /// Whether the ORDER BY keys pack into integers ([`SortKey`]).
    packed: bool,
    input: SchemaRef,
    schema: SchemaRef,
    limit: usize,
    /// The input is a changelog: a row after the first `limit` may move up when one before
    /// it is taken back, so every live row is kept.
    keeps_all: bool,
    /// The ORDER BY keys in the row format, with their directions.
    order_keys: RowConverter,
    rows: RowConverter,
    partitions: HashMap<Box<[u8]>, Ranking>,
    arrivals: u64,
}

impl UpdatingTopN {
    /// The first `limit` rows of each partition of `partition_by` over rows of `input` by
    /// `order_by` (with each key's sort options in `order_fields`), giving rows of `schema`:
    /// the input's columns and the row number. `keeps_all` when the input is a changelog.
    pub fn try_new(
        partition_by: Vec<Arc<dyn PhysicalExpr>>,
        order_by: Vec<Arc<dyn PhysicalExpr>>,
        order_fields: Vec<SortField>,
        (input, schema): (SchemaRef, SchemaRef),
        limit: usize,
        keeps_all: bool,
    ) -> Result<Self> {
        let fields = (input.fields().iter())
            .map(|f| SortField::new(f.data_type().clone()))
            .collect();
        let order_types = (order_by.iter())
            .map(|e| e.data_type(&input))
            .collect::<datafusion::common::Result<Vec<_>>>()?;
        Ok(Self {
            partition_by,
            order_by,
            packed: packs(&order_types),
            order_keys: RowConverter::new(order_fields.clone())?,
            order_fields,
            rows: RowConverter::new(fields)?,
            input,
            schema,
            limit,
            keeps_all,
            partitions: HashMap::new(),
            arrivals: 0,
        })
    }

    /// Applies each row of `batch` to its partition (`arrivals`, when given, numbering the
    /// rows as a checkpoint had them); the partitions it touched, in the order it did.
    fn apply(&mut self, batch: &ChangeBatch, arrivals: Option<&[u64]>) -> Result<Vec<Box<[u8]>>> {
        let keys = partition_keys(&self.partition_by, &batch.rows)?;
        let order =
            (self.order_keys).convert_columns(&evaluate_all(&self.order_by, &batch.rows)?)?;
        let rows = self.rows.convert_columns(batch.rows.columns())?;
        let (mut touched, mut seen) = (Vec::new(), HashSet::new());
        for i in 0..batch.num_rows() {
            let key: Box<[u8]> = keys
                .as_ref()
                .map_or(Box::default(), |k| k.row(i).data().into());
            let ranking = self.partitions.entry(key.clone()).or_default();
            let row = rows.row(i).owned();
            if batch.kind(i).is_retraction() {
                ranking.take_back(&row);
            } else {
                self.arrivals = arrivals.map_or(self.arrivals + 1, |a| a[i].max(self.arrivals));
                let arrival = arrivals.map_or(self.arrivals, |a| a[i]);
                let place = (SortKey::new(order.row(i).data(), self.packed), arrival);
                ranking
                    .places
                    .entry(row.clone())
                    .or_default()
                    .push(place.clone());
                ranking.rows.insert(place, row);
                if !self.keeps_all {
                    ranking.keep_first(self.limit);
                }
            }
            if seen.insert(key.clone()) {
                touched.push(key);
            }
        }
        Ok(touched)
    }

    /// The changes of partition `key`'s first rows since they were last emitted.
    fn changes(&mut self, key: &[u8], out: &mut Vec<(OwnedRow, u64, ChangeKind)>) {
        let Some(ranking) = self.partitions.get_mut(key) else {
            return;
        };
        let now: Vec<OwnedRow> = ranking.rows.values().take(self.limit).cloned().collect();
        let width = now.len().max(ranking.emitted.len());
        for n in 0..width {
            let (before, after) = (ranking.emitted.get(n), now.get(n));
            if before == after {
                continue;
            }
            if let Some(row) = before {
                out.push((row.clone(), n as u64 + 1, ChangeKind::Delete));
            }
            if let Some(row) = after {
                out.push((row.clone(), n as u64 + 1, ChangeKind::Insert));
            }
        }
        ranking.emitted = now;
        if ranking.rows.is_empty() {
            self.partitions.remove(key);
        }
    }

    /// The changes as one batch: the input's columns, the number, the change kinds.
    fn build(&self, changes: Vec<(OwnedRow, u64, ChangeKind)>) -> Result<ChangeBatch> {
        let mut columns: Vec<ArrayRef> = self
            .rows
            .convert_rows(changes.iter().map(|(row, ..)| row.row()))?;
        columns.push(Arc::new(UInt64Array::from_iter_values(
            changes.iter().map(|(_, n, _)| *n),
        )));
        let ops = Int8Array::from_iter_values(changes.iter().map(|(.., kind)| *kind as i8));
        Ok(ChangeBatch {
            rows: RecordBatch::try_new(Arc::clone(&self.schema), columns)?,
            ops: Some(ops),
            row_watermarks: None,
        })
    }
}

impl Ranking {
    /// Takes one copy of `row` back (the latest to arrive); nothing if it is not here.
    fn take_back(&mut self, row: &OwnedRow) {
        let Some(places) = self.places.get_mut(row) else {
            return;
        };
        if let Some(place) = places.pop() {
            self.rows.remove(&place);
        }
        if places.is_empty() {
            self.places.remove(row);
        }
    }

    /// Drops the rows after the first `limit`: an append-only input never needs them.
    fn keep_first(&mut self, limit: usize) {
        while self.rows.len() > limit {
            let Some((_, row)) = self.rows.pop_last() else {
                return;
            };
            let places = self.places.get_mut(&row).expect("a kept row has a place");
            places.retain(|p| self.rows.contains_key(p));
            if places.is_empty() {
                self.places.remove(&row);
            }
        }
    }
}

/// The partition keys of `rows` in Arrow's row format; `None` without PARTITION BY (one
/// partition).
fn partition_keys(
    exprs: &[Arc<dyn PhysicalExpr>],
    rows: &RecordBatch,
) -> Result<Option<datafusion::arrow::row::Rows>> {
    if exprs.is_empty() {
        return Ok(None);
    }
    let columns = evaluate_all(exprs, rows)?;
    let fields = (columns.iter())
        .map(|c| SortField::new(c.data_type().clone()))
        .collect();
    Ok(Some(RowConverter::new(fields)?.convert_columns(&columns)?))
}

impl Operator for UpdatingTopN {
    fn name(&self) -> &'static str {
        "UpdatingTopN"
    }

    fn new_instance(&self) -> Result<Box<dyn Operator>> {
        Ok(Box::new(Self::try_new(
            self.partition_by.clone(),
            self.order_by.clone(),
            self.order_fields.clone(),
            (Arc::clone(&self.input), Arc::clone(&self.schema)),
            self.limit,
            self.keeps_all,
        )?))
    }

    fn describe(&self) -> String {
        let partition = match self.partition_by.is_empty() {
            true => String::new(),
            false => format!(" partition by [{}]", show_exprs(&self.partition_by)),
        };
        format!(
            "row_number <= {}{partition} order by [{}]",
            self.limit,
            show_exprs(&self.order_by)
        )
    }

    fn on_batch(&mut self, batch: ChangeBatch, ctx: &mut Context) -> Result<()> {
        let touched = self.apply(&batch, None)?;
        let mut changes = Vec::new();
        for key in touched {
            self.changes(&key, &mut changes);
        }
        if !changes.is_empty() {
            ctx.emit(self.build(changes)?);
        }
        Ok(())
    }

    fn state_rows(&self) -> usize {
        self.partitions.values().map(|p| p.rows.len()).sum()
    }

    /// Every kept row with its arrival number. What was emitted is each partition's first
    /// rows: a batch leaves them emitted.
    fn snapshot(&mut self) -> Result<Vec<RecordBatch>> {
        let kept: Vec<(&Place, &OwnedRow)> = (self.partitions.values())
            .flat_map(|p| p.rows.iter())
            .collect();
        let mut columns = self
            .rows
            .convert_rows(kept.iter().map(|(_, row)| row.row()))?;
        let arrivals = UInt64Array::from_iter_values(kept.iter().map(|((_, a), _)| *a));
        columns.push(Arc::new(arrivals));
        let mut fields: Vec<Field> = (self.input.fields().iter())
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new("__arrival", DataType::UInt64, false));
        Ok(vec![RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns,
        )?])
    }

    fn restore(&mut self, state: Vec<RecordBatch>) -> Result<()> {
        for part in state {
            let width = self.input.fields().len();
            let rows =
                RecordBatch::try_new(Arc::clone(&self.input), part.columns()[..width].to_vec())?;
            let arrivals = part
                .column(width)
                .as_primitive::<UInt64Type>()
                .values()
                .to_vec();
            let touched = self.apply(&ChangeBatch::inserts(rows), Some(&arrivals))?;
            for key in touched {
                self.changes(&key, &mut Vec::new());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::Float64Array;
    use datafusion::arrow::compute::SortOptions;

    use super::*;

    /// Packed keys order as their row-format bytes do, NULLs and both directions included.
    #[test]
    fn packed_keys_order_as_their_bytes() {
        let values = Float64Array::from(vec![
            Some(2.5),
            None,
            Some(-1.0),
            Some(0.0),
            Some(-0.0),
            Some(1e300),
            Some(f64::NEG_INFINITY),
            Some(2.5),
        ]);
        assert!(packs(&[DataType::Float64]) && packs(&[DataType::Int64, DataType::Int32]));
        assert!(!packs(&[DataType::Int64, DataType::Int64]) && !packs(&[DataType::Utf8]));
        for descending in [false, true] {
            let options = SortOptions {
                descending,
                nulls_first: !descending,
            };
            let field = SortField::new_with_options(DataType::Float64, options);
            let rows = RowConverter::new(vec![field])
                .unwrap()
                .convert_columns(&[Arc::new(values.clone()) as ArrayRef])
                .unwrap();
            for i in 0..rows.num_rows() {
                for j in 0..rows.num_rows() {
                    let (a, b) = (rows.row(i).data(), rows.row(j).data());
                    let packed = SortKey::new(a, true).cmp(&SortKey::new(b, true));
                    assert_eq!(
                        packed,
                        a.cmp(b),
                        "rows {i} and {j}, descending {descending}"
                    );
                }
            }
        }
    }
}
