//! [`ChangeBatch`]: the unit of data that flows between operators.
//!
//! Every stream is a changelog. A batch holds Arrow rows plus, per row, the kind of change it
//! is (insert or retract). Append-only streams leave `ops` empty, which costs nothing.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, Int8Array, Int64Array, StringArray};
use datafusion::arrow::compute::{filter, take};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;

use crate::error::Result;

/// Schema metadata key marking a batch in changelog form: its first column, `op`, holds each
/// row's change kind as text (`+I`, `-U`, `+U`, `-D`). Sinks of updating queries receive this
/// form; a source reading deletes (a Kafka table's tombstones) gives it.
pub const CHANGELOG_METADATA_KEY: &str = "vigil.changelog";

/// The kind of change a row carries, as Flink names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i8)]
pub enum ChangeKind {
    /// `+I`: a new row.
    Insert = 0,
    /// `-U`: the old value of an updated row (a retraction).
    UpdateBefore = 1,
    /// `+U`: the new value of an updated row.
    UpdateAfter = 2,
    /// `-D`: a removed row (a retraction).
    Delete = 3,
}

impl ChangeKind {
    /// Decodes the `i8` stored in an ops array.
    pub fn from_i8(code: i8) -> ChangeKind {
        match code {
            1 => ChangeKind::UpdateBefore,
            2 => ChangeKind::UpdateAfter,
            3 => ChangeKind::Delete,
            _ => ChangeKind::Insert,
        }
    }

    /// True for `-U` and `-D`: the row takes a previous row back.
    pub fn is_retraction(self) -> bool {
        matches!(self, ChangeKind::UpdateBefore | ChangeKind::Delete)
    }

    /// The kind Flink's short name names.
    pub fn parse(name: &str) -> Option<ChangeKind> {
        Some(match name {
            "+I" => ChangeKind::Insert,
            "-U" => ChangeKind::UpdateBefore,
            "+U" => ChangeKind::UpdateAfter,
            "-D" => ChangeKind::Delete,
            _ => return None,
        })
    }

    /// Flink's short name: `+I`, `-U`, `+U`, `-D`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Insert => "+I",
            ChangeKind::UpdateBefore => "-U",
            ChangeKind::UpdateAfter => "+U",
            ChangeKind::Delete => "-D",
        }
    }
}

/// Rows an operator could not process because an expression failed on them (a division by
/// zero, a cast that does not fit, a value too large to build): set aside, with the error,
/// for the query's dead-letter destination, while the other rows go on.
#[derive(Debug, Clone)]
pub struct RejectedRows {
    /// The operator that rejected them (`Project`, `Filter`, ...).
    pub operator: &'static str,
    /// The rows as the operator received them.
    pub rows: RecordBatch,
    /// Why, per row.
    pub errors: Vec<String>,
}

impl RejectedRows {
    /// The rows as one batch for a dead-letter sink (see
    /// [`ConnectorFactory::create_dead_letter_sink`](crate::connector::ConnectorFactory::create_dead_letter_sink)):
    /// columns `query`, `source`, `operator`, `error` and `row`, the rejected row as a struct.
    pub fn to_dead_letters(&self, query: &str, source: &str) -> Result<RecordBatch> {
        let n = self.rows.num_rows();
        let text = |value: &str| -> ArrayRef { Arc::new(StringArray::from(vec![value; n])) };
        let row = datafusion::arrow::array::StructArray::from(self.rows.clone());
        let fields = vec![
            Field::new("query", DataType::Utf8, false),
            Field::new("source", DataType::Utf8, false),
            Field::new("operator", DataType::Utf8, false),
            Field::new("error", DataType::Utf8, false),
            Field::new("row", row.data_type().clone(), false),
        ];
        let columns: Vec<ArrayRef> = vec![
            text(query),
            text(source),
            text(self.operator),
            Arc::new(StringArray::from(self.errors.clone())),
            Arc::new(row),
        ];
        Ok(RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns,
        )?)
    }
}

/// Rows plus their change kinds, and for rows fresh from a source, the watermark each row's
/// source had reached just before the row arrived.
#[derive(Debug, Clone)]
pub struct ChangeBatch {
    /// The rows.
    pub rows: RecordBatch,
    /// Change kind per row as `ChangeKind as i8`; `None` means every row is an insert.
    pub ops: Option<Int8Array>,
    /// Per-row watermark (nanoseconds) as it stood before the row arrived. Window operators
    /// use it to decide lateness the same way whatever the batch size. `None` when the stream
    /// has no event-time watermark at this point.
    pub row_watermarks: Option<Int64Array>,
}

impl ChangeBatch {
    /// An append-only batch.
    pub fn inserts(rows: RecordBatch) -> Self {
        Self {
            rows,
            ops: None,
            row_watermarks: None,
        }
    }

    /// A batch as a source gives it: append-only rows, or rows in changelog form (see
    /// [`CHANGELOG_METADATA_KEY`]), whose `op` column becomes the batch's change kinds.
    pub fn from_source(rows: RecordBatch) -> Result<Self> {
        let schema = rows.schema();
        if !schema.metadata().contains_key(CHANGELOG_METADATA_KEY) {
            return Ok(Self::inserts(rows));
        }
        let names = (rows.columns().first())
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            .ok_or_else(|| {
                crate::error::Error::Internal("a changelog batch without its op column".into())
            })?;
        let ops = (names.iter())
            .map(|name| {
                name.and_then(ChangeKind::parse)
                    .map(|k| k as i8)
                    .ok_or_else(|| {
                        crate::error::Error::Internal(format!(
                            "change kind {name:?} in a changelog batch"
                        ))
                    })
            })
            .collect::<Result<Int8Array>>()?;
        let fields: Vec<_> = schema.fields().iter().skip(1).cloned().collect();
        let columns = rows.columns()[1..].to_vec();
        let rows = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
        Ok(Self {
            rows,
            ops: Some(ops),
            row_watermarks: None,
        })
    }

    /// Number of rows.
    pub fn num_rows(&self) -> usize {
        self.rows.num_rows()
    }

    /// True when the batch has retractions or updates.
    pub fn is_updating(&self) -> bool {
        self.ops.is_some()
    }

    /// The change kind of row `i`.
    pub fn kind(&self, i: usize) -> ChangeKind {
        self.ops
            .as_ref()
            .map_or(ChangeKind::Insert, |ops| ChangeKind::from_i8(ops.value(i)))
    }

    /// Keeps the rows where `mask` is true, with their ops and watermarks.
    ///
    /// On an updating stream a `-U`/`+U` pair may be split: a lone `-U` becomes `-D` and a
    /// lone `+U` becomes `+I`, so the output is a well-formed changelog (HAVING relies on it).
    pub fn filter(&self, mask: &BooleanArray) -> Result<ChangeBatch> {
        let rows = datafusion::arrow::compute::filter_record_batch(&self.rows, mask)?;
        let ops = match &self.ops {
            Some(ops) => Some(filter_ops(ops, mask)?),
            None => None,
        };
        let row_watermarks = match &self.row_watermarks {
            Some(w) => Some(downcast_i64(filter(w, mask)?)),
            None => None,
        };
        Ok(ChangeBatch {
            rows,
            ops,
            row_watermarks,
        })
    }

    /// Renders the batch for output: updating streams get a leading `op` column.
    pub fn into_output(self, updating: bool) -> Result<RecordBatch> {
        if !updating {
            return Ok(self.rows);
        }
        // Indexed by the `i8` code of each kind.
        let names = StringArray::from(
            [
                ChangeKind::Insert,
                ChangeKind::UpdateBefore,
                ChangeKind::UpdateAfter,
                ChangeKind::Delete,
            ]
            .map(ChangeKind::as_str)
            .to_vec(),
        );
        let ops: ArrayRef = match &self.ops {
            Some(codes) => {
                let indices = datafusion::arrow::compute::cast(codes, &DataType::UInt32)?;
                take(&names, indices.as_ref(), None)?
            }
            None => Arc::new(StringArray::from(vec!["+I"; self.rows.num_rows()])),
        };
        let mut fields = vec![Arc::new(Field::new("op", DataType::Utf8, false))];
        fields.extend(self.rows.schema().fields().iter().cloned());
        let mut columns: Vec<ArrayRef> = vec![ops];
        columns.extend(self.rows.columns().iter().cloned());
        Ok(RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns,
        )?)
    }
}

/// Filters ops and repairs `-U`/`+U` pairs that the mask split.
fn filter_ops(ops: &Int8Array, mask: &BooleanArray) -> Result<Int8Array> {
    let n = ops.len();
    let keep = |i: usize| mask.is_valid(i) && mask.value(i);
    let repaired: Int8Array = (0..n)
        .map(|i| {
            let kind = ChangeKind::from_i8(ops.value(i));
            let fixed = match kind {
                ChangeKind::UpdateBefore if !(i + 1 < n && keep(i + 1)) => ChangeKind::Delete,
                ChangeKind::UpdateAfter if !(i > 0 && keep(i - 1)) => ChangeKind::Insert,
                k => k,
            };
            Some(fixed as i8)
        })
        .collect();
    Ok(downcast_i8(filter(&repaired, mask)?))
}

fn downcast_i64(array: ArrayRef) -> Int64Array {
    array
        .as_any()
        .downcast_ref::<Int64Array>()
        .expect("filter keeps the Int64 type")
        .clone()
}

fn downcast_i8(array: ArrayRef) -> Int8Array {
    array
        .as_any()
        .downcast_ref::<Int8Array>()
        .expect("filter keeps the Int8 type")
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int32Array;

    fn batch(ops: &[ChangeKind]) -> ChangeBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int32, false)]));
        let xs = Int32Array::from_iter_values(0..ops.len() as i32);
        let rows = RecordBatch::try_new(schema, vec![Arc::new(xs)]).unwrap();
        let ops = Int8Array::from_iter_values(ops.iter().map(|k| *k as i8));
        ChangeBatch {
            rows,
            ops: Some(ops),
            row_watermarks: None,
        }
    }

    #[test]
    fn filter_turns_split_update_pairs_into_delete_and_insert() {
        use ChangeKind::*;
        let b = batch(&[UpdateBefore, UpdateAfter, UpdateBefore, UpdateAfter]);
        let mask = BooleanArray::from(vec![true, false, false, true]);
        let out = b.filter(&mask).unwrap();
        assert_eq!(out.kind(0), Delete);
        assert_eq!(out.kind(1), Insert);
    }

    #[test]
    fn filter_keeps_whole_update_pairs() {
        use ChangeKind::*;
        let b = batch(&[Insert, UpdateBefore, UpdateAfter]);
        let mask = BooleanArray::from(vec![false, true, true]);
        let out = b.filter(&mask).unwrap();
        assert_eq!((out.kind(0), out.kind(1)), (UpdateBefore, UpdateAfter));
    }
}
