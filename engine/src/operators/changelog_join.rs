//! [`ChangelogJoin`]: a join on equality keys with no time bound, of changelogs (or
//! append-only streams). The join of a change is the change of the join: a row inserted on
//! one side adds its pairs with the other side's current rows, a row deleted retracts them.
//! An outer side's row with no partner is emitted padded with NULLs; when its key gains a
//! first partner the padded row is retracted, and when it loses its last one the padded row
//! comes back.
//!
//! Nothing frees such a join's state on its own: it keeps every live row of both sides. With
//! a state TTL a row is forgotten once the watermark is the TTL past the watermark it arrived
//! at (event time, so a rerun forgets the same rows). A change that would have met a
//! forgotten row misses it (a delete of a forgotten row is ignored): the TTL trades
//! exactness on rows that old for bounded state, as Flink's idle-state retention does.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int8Array, Int64Array, RecordBatch, UInt32Array,
    UInt64Array, new_null_array,
};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, UInt64Type};
use datafusion::arrow::row::{OwnedRow, RowConverter, Rows, SortField};
use datafusion::physical_expr::PhysicalExpr;

use super::{Context, JoinKind, Operator, evaluate_all, key_fields, show_exprs};
use crate::batch::{ChangeBatch, ChangeKind};
use crate::error::{Error, Result};
use crate::time::{Timestamp, WATERMARK_MIN, describe_nanos};

/// One side of the join: its schema and key expressions.
#[derive(Clone)]
pub struct ChangelogInput {
    /// The side's columns.
    pub schema: SchemaRef,
    /// Its key expressions, pairwise equal to the other side's.
    pub keys: Vec<Arc<dyn PhysicalExpr>>,
}

/// A join of two changelogs on equality keys; see the module docs.
pub struct ChangelogJoin {
    inputs: [ChangelogInput; 2],
    sides: [SideRows; 2],
    kind: JoinKind,
    residual: Option<Arc<dyn PhysicalExpr>>,
    schema: SchemaRef,
    ttl: Option<i64>,
    watermark: Timestamp,
}

/// A live row of one side, stored in Arrow's row format.
struct Stored {
    row: OwnedRow,
    /// Copies of the same row.
    count: usize,
    /// The watermark when it first arrived; `None` before the first watermark.
    arrived: Option<Timestamp>,
    id: u64,
}

/// The live rows of one side by key, and with a TTL the order they arrived in.
struct SideRows {
    converter: RowConverter,
    key_fields: Vec<SortField>,
    by_key: HashMap<Box<[u8]>, Vec<Stored>>,
    arrivals: VecDeque<(Option<Timestamp>, Box<[u8]>, u64)>,
    /// Whether `arrivals` is kept: only a TTL needs it.
    track_arrivals: bool,
    /// The first watermark the TTL saw: when rows from before any watermark arrived.
    first_watermark: Option<Timestamp>,
    next_id: u64,
    len: usize,
}

/// A row of the output before it is built: each side's part, or NULLs.
struct Pending {
    parts: [Option<OwnedRow>; 2],
    kind: ChangeKind,
}

impl ChangelogJoin {
    /// A join of `left` and `right` of `kind`, keeping pairs where `residual` holds (inner
    /// joins only), writing rows of `schema` (the left's columns, then the right's).
    pub fn try_new(
        left: ChangelogInput,
        right: ChangelogInput,
        kind: JoinKind,
        residual: Option<Arc<dyn PhysicalExpr>>,
        schema: SchemaRef,
        ttl: Option<i64>,
    ) -> Result<Self> {
        if residual.is_some() && kind != JoinKind::Inner {
            return Err(Error::Internal(
                "an outer changelog join with a residual".into(),
            ));
        }
        let track = ttl.is_some();
        let sides = [SideRows::new(&left, track)?, SideRows::new(&right, track)?];
        Ok(Self {
            inputs: [left, right],
            sides,
            kind,
            residual,
            schema,
            ttl,
            watermark: WATERMARK_MIN,
        })
    }

    /// Applies one change of side `side` and collects the output it makes.
    fn apply(
        &mut self,
        side: usize,
        key: Option<&[u8]>,
        row: OwnedRow,
        insert: bool,
    ) -> Vec<Pending> {
        let other = 1 - side;
        let pads = self.kind.pads();
        let mut out = Vec::new();
        let partners: Vec<(OwnedRow, usize)> = key
            .map(|k| self.sides[other].rows_of(k))
            .unwrap_or_default();
        let own_before = key.map_or(0, |k| self.sides[side].count_of(k));
        if !insert
            && let Some(k) = key
            && !self.sides[side].remove(k, &row)
        {
            return out;
        }
        let kind = if insert {
            ChangeKind::Insert
        } else {
            ChangeKind::Delete
        };
        // The other side's padded rows: retracted by this key's first row, back after its last.
        let first_or_last = if insert {
            own_before == 0
        } else {
            own_before == 1
        };
        let flips = pads[other] && key.is_some() && first_or_last;
        if flips && insert {
            push_pads(&mut out, other, &partners, ChangeKind::Delete);
        }
        if partners.is_empty() && pads[side] {
            out.push(Pending::one(side, row.clone(), kind));
        }
        for (partner, count) in &partners {
            for _ in 0..*count {
                out.push(Pending::pair(side, row.clone(), partner.clone(), kind));
            }
        }
        if flips && !insert {
            push_pads(&mut out, other, &partners, ChangeKind::Insert);
        }
        if insert && let Some(k) = key {
            let arrived = (self.watermark != WATERMARK_MIN).then_some(self.watermark);
            self.sides[side].insert(k, row, arrived);
        }
        out
    }

    /// The output rows as one batch, the residual applied.
    fn build(&self, pending: Vec<Pending>) -> Result<Option<ChangeBatch>> {
        if pending.is_empty() {
            return Ok(None);
        }
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        for side in 0..2 {
            let parts = pending.iter().map(|p| p.parts[side].as_ref());
            columns.extend(self.sides[side].columns(parts, &self.inputs[side].schema)?);
        }
        let ops = Int8Array::from_iter_values(pending.iter().map(|p| p.kind as i8));
        let rows = RecordBatch::try_new(Arc::clone(&self.schema), columns)?;
        let batch = ChangeBatch {
            rows,
            ops: Some(ops),
            row_watermarks: None,
        };
        let Some(residual) = &self.residual else {
            return Ok(Some(batch));
        };
        let keep = residual
            .evaluate(&batch.rows)?
            .into_array(batch.num_rows())?;
        let keep = keep.as_boolean();
        // A NULL condition keeps no pair.
        let keep: BooleanArray = keep.iter().map(|v| Some(v == Some(true))).collect();
        Ok(Some(batch.filter(&keep)?))
    }

    /// Forgets the rows whose TTL the watermark has passed.
    fn expire(&mut self, watermark: Timestamp) {
        let Some(ttl) = self.ttl else { return };
        for side in &mut self.sides {
            side.expire(watermark, ttl);
        }
    }
}

impl Pending {
    fn one(side: usize, row: OwnedRow, kind: ChangeKind) -> Self {
        let mut parts = [None, None];
        parts[side] = Some(row);
        Self { parts, kind }
    }

    fn pair(side: usize, row: OwnedRow, partner: OwnedRow, kind: ChangeKind) -> Self {
        let mut parts = [None, None];
        parts[side] = Some(row);
        parts[1 - side] = Some(partner);
        Self { parts, kind }
    }
}

/// Each of `rows` (of side `side`) padded with NULLs, `count` times.
fn push_pads(out: &mut Vec<Pending>, side: usize, rows: &[(OwnedRow, usize)], kind: ChangeKind) {
    for (row, count) in rows {
        for _ in 0..*count {
            out.push(Pending::one(side, row.clone(), kind));
        }
    }
}

impl SideRows {
    fn new(input: &ChangelogInput, track_arrivals: bool) -> Result<Self> {
        let fields = input.schema.fields().iter();
        let converter = RowConverter::new(
            fields
                .map(|f| SortField::new(f.data_type().clone()))
                .collect(),
        )?;
        Ok(Self {
            converter,
            key_fields: key_fields(&input.keys, &input.schema)?,
            by_key: HashMap::new(),
            arrivals: VecDeque::new(),
            track_arrivals,
            first_watermark: None,
            next_id: 0,
            len: 0,
        })
    }

    /// The keys of `rows` (`None` where one is NULL: it meets no row) and the rows themselves.
    fn keys_and_rows(
        &self,
        input: &ChangelogInput,
        rows: &RecordBatch,
    ) -> Result<(Rows, Vec<bool>, Rows)> {
        let key_columns = evaluate_all(&input.keys, rows)?;
        let mut valid = vec![true; rows.num_rows()];
        for column in &key_columns {
            if let Some(nulls) = column.logical_nulls() {
                for (ok, present) in valid.iter_mut().zip(nulls.iter()) {
                    *ok &= present;
                }
            }
        }
        let keys = RowConverter::new(self.key_fields.clone())?.convert_columns(&key_columns)?;
        let full = self.converter.convert_columns(rows.columns())?;
        Ok((keys, valid, full))
    }

    fn rows_of(&self, key: &[u8]) -> Vec<(OwnedRow, usize)> {
        self.by_key.get(key).map_or_else(Vec::new, |rows| {
            rows.iter().map(|s| (s.row.clone(), s.count)).collect()
        })
    }

    fn count_of(&self, key: &[u8]) -> usize {
        self.by_key
            .get(key)
            .map_or(0, |rows| rows.iter().map(|s| s.count).sum())
    }

    fn insert(&mut self, key: &[u8], row: OwnedRow, arrived: Option<Timestamp>) {
        let rows = self.by_key.entry(key.into()).or_default();
        self.len += 1;
        if let Some(stored) = rows.iter_mut().find(|s| s.row == row) {
            stored.count += 1;
            return;
        }
        let id = self.next_id;
        self.next_id += 1;
        rows.push(Stored {
            row,
            count: 1,
            arrived,
            id,
        });
        if self.track_arrivals {
            self.arrivals.push_back((arrived, key.into(), id));
        }
    }

    /// Removes one copy of `row`; false when it is not there.
    fn remove(&mut self, key: &[u8], row: &OwnedRow) -> bool {
        let Some(rows) = self.by_key.get_mut(key) else {
            return false;
        };
        let Some(at) = rows.iter().position(|s| s.row == *row) else {
            return false;
        };
        self.len -= 1;
        rows[at].count -= 1;
        if rows[at].count == 0 {
            // In order: a key's rows meet a change in the order they arrived, restored or not.
            rows.remove(at);
            if rows.is_empty() {
                self.by_key.remove(key);
            }
        }
        true
    }

    /// Forgets rows that arrived more than `ttl` before `watermark` (a row from before the
    /// first watermark counts from `watermark`'s first value).
    fn expire(&mut self, watermark: Timestamp, ttl: i64) {
        let first = *self.first_watermark.get_or_insert(watermark);
        while let Some((arrived, _, _)) = self.arrivals.front() {
            if arrived.unwrap_or(first).saturating_add(ttl) > watermark {
                break;
            }
            let (_, key, id) = self.arrivals.pop_front().expect("looked at above");
            let Some(rows) = self.by_key.get_mut(&key) else {
                continue;
            };
            if let Some(at) = rows.iter().position(|s| s.id == id) {
                self.len -= rows[at].count;
                rows.remove(at);
                if rows.is_empty() {
                    self.by_key.remove(&key);
                }
            }
        }
    }

    /// This side's columns of output rows: a part's values, or NULLs where it has none.
    fn columns<'a>(
        &self,
        parts: impl Iterator<Item = Option<&'a OwnedRow>>,
        schema: &SchemaRef,
    ) -> Result<Vec<ArrayRef>> {
        let mut present = Vec::new();
        let indices: UInt32Array = parts
            .map(|part| {
                part.map(|row| {
                    present.push(row.row());
                    (present.len() - 1) as u32
                })
            })
            .collect();
        if present.is_empty() {
            let n = indices.len();
            return Ok(schema
                .fields()
                .iter()
                .map(|f| new_null_array(f.data_type(), n))
                .collect());
        }
        let values = self.converter.convert_rows(present)?;
        Ok(values
            .iter()
            .map(|v| take(v.as_ref(), &indices, None))
            .collect::<std::result::Result<_, _>>()?)
    }

    /// The live rows with their counts and arrivals, in the order they arrived, for a
    /// checkpoint.
    fn snapshot(&self, schema: &SchemaRef) -> Result<RecordBatch> {
        let stored: Vec<&Stored> = match self.track_arrivals {
            true => (self.arrivals.iter())
                .filter_map(|(_, key, id)| self.by_key.get(key)?.iter().find(|s| s.id == *id))
                .collect(),
            false => self.by_key.values().flatten().collect(),
        };
        let mut columns = self
            .converter
            .convert_rows(stored.iter().map(|s| s.row.row()))?;
        columns.push(Arc::new(UInt64Array::from_iter_values(
            stored.iter().map(|s| s.count as u64),
        )));
        let arrived = stored.iter().map(|s| s.arrived.or(self.first_watermark));
        columns.push(Arc::new(Int64Array::from_iter(arrived)));
        let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new("__count", DataType::UInt64, false));
        fields.push(Field::new("__arrived", DataType::Int64, true));
        Ok(RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns,
        )?)
    }
}

impl Operator for ChangelogJoin {
    fn name(&self) -> &'static str {
        "ChangelogJoin"
    }

    fn new_instance(&self) -> Result<Box<dyn Operator>> {
        let [left, right] = self.inputs.clone();
        Ok(Box::new(Self::try_new(
            left,
            right,
            self.kind,
            self.residual.clone(),
            Arc::clone(&self.schema),
            self.ttl,
        )?))
    }

    fn describe(&self) -> String {
        let ttl = match self.ttl {
            Some(ttl) => format!("state_ttl={}", describe_nanos(ttl)),
            None => "state=every live row (keyed inputs)".to_string(),
        };
        format!(
            "{:?} on left ({}) = right ({}), {ttl}",
            self.kind,
            show_exprs(&self.inputs[0].keys),
            show_exprs(&self.inputs[1].keys),
        )
    }

    fn on_batch(&mut self, batch: ChangeBatch, ctx: &mut Context) -> Result<()> {
        let side = ctx.input.min(1);
        let (keys, valid, full) =
            self.sides[side].keys_and_rows(&self.inputs[side], &batch.rows)?;
        let mut pending = Vec::new();
        for (i, joinable) in valid.into_iter().enumerate() {
            let key = joinable.then(|| keys.row(i).data());
            let insert = !batch.kind(i).is_retraction();
            pending.extend(self.apply(side, key, full.row(i).owned(), insert));
        }
        if let Some(out) = self.build(pending)? {
            ctx.emit(out);
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Timestamp, ctx: &mut Context) -> Result<()> {
        self.watermark = watermark;
        self.expire(watermark);
        ctx.emit_watermark(watermark);
        Ok(())
    }

    fn state_rows(&self) -> usize {
        self.sides.iter().map(|s| s.len).sum()
    }

    /// Each side's live rows, then the watermark (rows arriving next are stamped with it).
    fn snapshot(&mut self) -> Result<Vec<RecordBatch>> {
        let watermark = Int64Array::from(vec![self.watermark]);
        Ok(vec![
            self.sides[0].snapshot(&self.inputs[0].schema)?,
            self.sides[1].snapshot(&self.inputs[1].schema)?,
            RecordBatch::try_from_iter([("__watermark", Arc::new(watermark) as ArrayRef)])?,
        ])
    }

    fn restore(&mut self, state: Vec<RecordBatch>) -> Result<()> {
        if state.is_empty() {
            return Ok(());
        }
        let [left, right, watermark]: [RecordBatch; 3] = state
            .try_into()
            .map_err(|_| Error::Internal("a changelog join's state has three parts".into()))?;
        for (side, part) in [left, right].into_iter().enumerate() {
            self.restore_side(side, &part)?;
        }
        self.watermark = watermark.column(0).as_primitive::<Int64Type>().value(0);
        if self.watermark != WATERMARK_MIN {
            for side in &mut self.sides {
                side.first_watermark = Some(self.watermark);
            }
        }
        Ok(())
    }
}

impl ChangelogJoin {
    fn restore_side(&mut self, side: usize, part: &RecordBatch) -> Result<()> {
        let width = self.inputs[side].schema.fields().len();
        let rows = RecordBatch::try_new(
            Arc::clone(&self.inputs[side].schema),
            part.columns()[..width].to_vec(),
        )?;
        let counts = part.column(width).as_primitive::<UInt64Type>();
        let arrived = part.column(width + 1).as_primitive::<Int64Type>();
        let (keys, valid, full) = self.sides[side].keys_and_rows(&self.inputs[side], &rows)?;
        for i in (0..rows.num_rows()).filter(|&i| valid[i]) {
            let when = arrived.is_valid(i).then(|| arrived.value(i));
            for _ in 0..counts.value(i) {
                self.sides[side].insert(keys.row(i).data(), full.row(i).owned(), when);
            }
        }
        Ok(())
    }
}
