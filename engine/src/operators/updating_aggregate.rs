//! [`UpdatingAggregate`]: GROUP BY without a window, whose output is a changelog.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int8Array, Int64Array, UInt32Array, make_comparator,
};
use datafusion::arrow::buffer::BooleanBuffer;
use datafusion::arrow::compute::kernels::cmp::distinct;
use datafusion::arrow::compute::{SortOptions, concat, take};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::logical_expr::EmitTo;
use datafusion::physical_plan::aggregates::group_values::{GroupValues, new_group_values};
use datafusion::physical_plan::aggregates::order::GroupOrdering;

use super::aggregate::AggregateSpec;
use super::group_accumulators::{self, GroupAccumulator, GroupRows};
use super::{Context, Operator, evaluate_or_reject};
use crate::batch::{ChangeBatch, ChangeKind};
use crate::error::{Error, Result};

/// Groups whose rows were all taken back stay interned (a key that comes back finds its
/// id) until they are this many and outnumber the live ones; then ids are renumbered.
const COMPACT_AT: usize = 4096;

/// Keeps every group's aggregates for all time, and after each batch emits, for the groups
/// that batch touched only, `+I` (new group), `-U`/`+U` (changed value) or `-D` (every row of
/// the group taken back; its state is freed). An unchanged value emits nothing.
///
/// Group keys are interned by DataFusion's `GroupValues` into dense ids, and each aggregate
/// keeps its state in arrays indexed by id ([`group_accumulators`]), updated a batch at a
/// time. The values emitted for a group are read from the state before and after the
/// batch, so nothing is kept per group besides the state itself.
pub struct UpdatingAggregate {
    spec: AggregateSpec,
    /// What it was made over, for [`Operator::new_instance`].
    input_schema: SchemaRef,
    updating_input: Option<String>,
    key_schema: SchemaRef,
    /// `None` for a global aggregate: one group, id 0.
    keys: Option<Box<dyn GroupValues>>,
    accumulators: Vec<Box<dyn GroupAccumulator>>,
    /// Rows added minus rows taken back, per group id; a group is live while above zero.
    rows: Vec<i64>,
    live: usize,
    /// The batch that last touched each group, to list touched groups without hashing.
    touched_in: Vec<u64>,
    batches: u64,
    /// Whether the input retracts rows (chooses the accumulators).
    updating: bool,
    /// The first source batch whose rows are in the groups: their state lives as long as
    /// the query, and is not checkpointed, so that input can never be acknowledged.
    first_epoch: Option<u64>,
}

/// The groups one batch touched, with where each first appears in it.
struct Touched {
    groups: Vec<usize>,
    first_rows: Vec<u32>,
    rows_before: Vec<i64>,
}

impl UpdatingAggregate {
    /// An updating aggregate over `input_schema`. `updating_input` names the input when it
    /// is itself a changelog, for the error when an aggregate cannot take rows back.
    pub fn try_new(
        spec: AggregateSpec,
        input_schema: &SchemaRef,
        updating_input: Option<&str>,
    ) -> Result<Self> {
        let key_schema = spec.key_schema(input_schema)?;
        let updating = updating_input.is_some();
        let accumulators = spec
            .calls
            .iter()
            .map(|call| {
                group_accumulators::create(
                    call,
                    input_schema,
                    updating,
                    updating_input.unwrap_or(""),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let mut aggregate = Self {
            spec,
            input_schema: Arc::clone(input_schema),
            updating_input: updating_input.map(str::to_string),
            key_schema,
            keys: None,
            accumulators,
            rows: Vec::new(),
            live: 0,
            touched_in: Vec::new(),
            batches: 0,
            updating,
            first_epoch: None,
        };
        aggregate.keys = aggregate.new_keys()?;
        Ok(aggregate)
    }

    fn new_keys(&self) -> Result<Option<Box<dyn GroupValues>>> {
        if self.spec.keys.is_empty() {
            return Ok(None);
        }
        Ok(Some(new_group_values(
            Arc::clone(&self.key_schema),
            &GroupOrdering::None,
        )?))
    }

    /// Group ids of the rows with these key columns, adding new groups.
    fn intern(&mut self, keys: &[ArrayRef], rows: usize) -> Result<Vec<usize>> {
        let mut ids = Vec::with_capacity(rows);
        match &mut self.keys {
            Some(values) => values.intern(keys, &mut ids)?,
            None => ids.resize(rows, 0),
        }
        let total = self.group_count();
        if self.rows.len() < total {
            self.rows.resize(total, 0);
            self.touched_in.resize(total, 0);
        }
        Ok(ids)
    }

    fn group_count(&self) -> usize {
        self.keys.as_ref().map_or(1, |k| k.len())
    }

    /// The distinct groups of `ids`, in first-seen order.
    fn touched(&mut self, ids: &[usize]) -> Touched {
        self.batches += 1;
        let mut touched = Touched {
            groups: Vec::new(),
            first_rows: Vec::new(),
            rows_before: Vec::new(),
        };
        for (row, &g) in ids.iter().enumerate() {
            if self.touched_in[g] != self.batches {
                self.touched_in[g] = self.batches;
                touched.groups.push(g);
                touched.first_rows.push(row as u32);
                touched.rows_before.push(self.rows[g]);
            }
        }
        touched
    }

    /// Adds the batch's rows to their groups' row counts and aggregates.
    fn update(
        &mut self,
        ids: &[usize],
        weights: Option<&[i64]>,
        args: &[(
            Vec<ArrayRef>,
            Option<datafusion::arrow::array::BooleanArray>,
        )],
    ) -> Result<()> {
        match weights {
            None => ids.iter().for_each(|&g| self.rows[g] += 1),
            Some(w) => ids.iter().zip(w).for_each(|(&g, &w)| self.rows[g] += w),
        }
        let total_groups = self.group_count();
        for (accumulator, (values, filter)) in self.accumulators.iter_mut().zip(args) {
            let filtered = group_accumulators::weights(weights, filter.as_ref(), ids.len());
            accumulator.update(&GroupRows {
                values,
                groups: ids,
                weights: filtered.as_deref().or(weights),
                total_groups,
            })?;
        }
        Ok(())
    }

    fn evaluate(&mut self, groups: &[usize]) -> Result<Vec<ArrayRef>> {
        self.accumulators
            .iter_mut()
            .map(|a| a.evaluate(groups))
            .collect()
    }

    /// Frees the state of touched groups left without rows.
    fn free_emptied(&mut self, touched: &Touched) {
        let mut emptied = Vec::new();
        for (&g, &before) in touched.groups.iter().zip(&touched.rows_before) {
            let now = self.rows[g];
            if now <= 0 {
                self.rows[g] = 0;
                emptied.push(g);
            }
            self.live = self.live + usize::from(now > 0) - usize::from(before > 0);
        }
        if !emptied.is_empty() {
            for accumulator in &mut self.accumulators {
                accumulator.reset(&emptied);
            }
        }
    }

    /// Renumbers groups once enough emptied ones pile up, so memory follows live groups.
    fn maybe_compact(&mut self) -> Result<()> {
        let dead = self.group_count() - self.live;
        if self.keys.is_none() || dead < COMPACT_AT || dead < self.live {
            return Ok(());
        }
        self.compact()
    }

    /// Drops every group without rows and renumbers the others densely, in order.
    fn compact(&mut self) -> Result<()> {
        let Some(mut keys) = self.keys.take() else {
            return Ok(());
        };
        let columns = keys.emit(EmitTo::All)?;
        let keep: Vec<usize> = (0..self.rows.len()).filter(|&g| self.rows[g] > 0).collect();
        let indices = UInt32Array::from_iter_values(keep.iter().map(|&g| g as u32));
        let kept = columns
            .iter()
            .map(|c| take(c.as_ref(), &indices, None))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let mut fresh = self.new_keys()?.expect("keyed aggregate");
        let mut ids = Vec::with_capacity(keep.len());
        fresh.intern(&kept, &mut ids)?;
        self.keys = Some(fresh);
        self.rows = keep.iter().map(|&g| self.rows[g]).collect();
        self.touched_in = vec![0; keep.len()];
        for accumulator in &mut self.accumulators {
            accumulator.compact(&keep);
        }
        Ok(())
    }
}

impl Operator for UpdatingAggregate {
    fn new_instance(&self) -> Result<Box<dyn Operator>> {
        let fresh = Self::try_new(
            self.spec.clone(),
            &self.input_schema,
            self.updating_input.as_deref(),
        )?;
        Ok(Box::new(fresh))
    }

    fn name(&self) -> &'static str {
        "UpdatingAggregate"
    }

    fn describe(&self) -> String {
        self.spec.describe()
    }

    fn on_batch(&mut self, batch: ChangeBatch, ctx: &mut Context) -> Result<()> {
        let spec = &self.spec;
        let evaluated = evaluate_or_reject("UpdatingAggregate", batch, ctx, |rows| {
            Ok((spec.evaluate_keys(rows)?, spec.evaluate_args(rows)?))
        })?;
        let Some((batch, (keys, args))) = evaluated else {
            return Ok(());
        };
        if batch.is_updating() && !self.updating {
            return Err(Error::Internal(
                "an updating aggregate planned for an append-only input got retractions".into(),
            ));
        }
        self.first_epoch.get_or_insert(ctx.epoch);
        let weights = batch.ops.as_ref().map(retraction_weights);
        let ids = self.intern(&keys, batch.num_rows())?;
        let touched = self.touched(&ids);
        let old = self.evaluate(&touched.groups)?;
        self.update(&ids, weights.as_deref(), &args)?;
        let new = self.evaluate(&touched.groups)?;
        self.emit_changes(&touched, &keys, old, new, ctx)?;
        self.free_emptied(&touched);
        self.maybe_compact()
    }

    fn state_rows(&self) -> usize {
        self.live
    }

    fn state_bytes(&self) -> usize {
        let keys = self.keys.as_ref().map_or(0, |k| k.size());
        let counts = self.rows.capacity() * size_of::<i64>() * 2;
        keys + counts + self.accumulators.iter().map(|a| a.size()).sum::<usize>()
    }

    fn retained_epoch(&self) -> Option<u64> {
        self.first_epoch
    }

    /// One batch: the live groups' key columns, their row counts, then each accumulator's
    /// state columns, named `agg_<call>_<column>`.
    fn snapshot(&mut self) -> Result<Vec<RecordBatch>> {
        if self.live == 0 {
            return Ok(Vec::new());
        }
        self.compact()?;
        let groups = self.group_count();
        let mut fields = Vec::new();
        let mut columns: Vec<ArrayRef> = Vec::new();
        if let Some(keys) = &mut self.keys {
            let key_columns = keys.emit(EmitTo::All)?;
            let mut ids = Vec::with_capacity(groups);
            keys.intern(&key_columns, &mut ids)?;
            for (i, key) in key_columns.into_iter().enumerate() {
                fields.push(Field::new(
                    format!("key_{i}"),
                    key.data_type().clone(),
                    true,
                ));
                columns.push(key);
            }
        }
        fields.push(Field::new("rows", DataType::Int64, false));
        columns.push(Arc::new(Int64Array::from(self.rows[..groups].to_vec())));
        for (i, accumulator) in self.accumulators.iter_mut().enumerate() {
            for (j, state) in accumulator.state(groups)?.into_iter().enumerate() {
                let field = Field::new(format!("agg_{i}_{j}"), state.data_type().clone(), true);
                fields.push(field);
                columns.push(state);
            }
        }
        let schema = Arc::new(Schema::new(fields));
        Ok(vec![RecordBatch::try_new(schema, columns)?])
    }

    fn restore(&mut self, state: Vec<RecordBatch>) -> Result<()> {
        for batch in state.into_iter().filter(|b| b.num_rows() > 0) {
            self.first_epoch = Some(0);
            let n_keys = self.spec.keys.len();
            let ids = self.intern(&batch.columns()[..n_keys], batch.num_rows())?;
            let counts = batch.column(n_keys).as_primitive::<Int64Type>();
            for (&g, &count) in ids.iter().zip(counts.values()) {
                self.live += usize::from(self.rows[g] <= 0 && count > 0);
                self.rows[g] = count;
            }
            let total = self.group_count();
            let schema = batch.schema();
            for (i, accumulator) in self.accumulators.iter_mut().enumerate() {
                let prefix = format!("agg_{i}_");
                let columns: Vec<ArrayRef> = schema
                    .fields()
                    .iter()
                    .zip(batch.columns())
                    .filter(|(f, _)| f.name().starts_with(&prefix))
                    .map(|(_, c)| Arc::clone(c))
                    .collect();
                accumulator.restore(&columns, &ids, total)?;
            }
        }
        Ok(())
    }
}

impl UpdatingAggregate {
    /// Emits each touched group's change: `+I` when it gained its first rows, `-D` when it
    /// lost its last, `-U`/`+U` when a value changed.
    fn emit_changes(
        &self,
        touched: &Touched,
        keys: &[ArrayRef],
        old: Vec<ArrayRef>,
        new: Vec<ArrayRef>,
        ctx: &mut Context,
    ) -> Result<()> {
        let n = touched.groups.len() as u32;
        let changed = changed_rows(&old, &new, n as usize)?;
        let mut ops: Vec<i8> = Vec::new();
        let mut key_rows: Vec<u32> = Vec::new();
        // Indices into the old values followed by the new ones.
        let mut value_rows: Vec<u32> = Vec::new();
        for (i, (&g, &before)) in touched.groups.iter().zip(&touched.rows_before).enumerate() {
            let mut push = |kind: ChangeKind, value: u32| {
                ops.push(kind as i8);
                key_rows.push(touched.first_rows[i]);
                value_rows.push(value);
            };
            let i32 = i as u32;
            match (before > 0, self.rows[g] > 0) {
                (true, false) => push(ChangeKind::Delete, i32),
                (false, true) => push(ChangeKind::Insert, n + i32),
                (true, true) if changed.value(i) => {
                    push(ChangeKind::UpdateBefore, i32);
                    push(ChangeKind::UpdateAfter, n + i32);
                }
                _ => {}
            }
        }
        if ops.is_empty() {
            return Ok(());
        }
        let key_rows = UInt32Array::from(key_rows);
        let value_rows = UInt32Array::from(value_rows);
        let key_columns = keys
            .iter()
            .map(|k| take(k.as_ref(), &key_rows, None))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let aggregates = old
            .iter()
            .zip(&new)
            .map(|(o, n)| {
                take(
                    concat(&[o.as_ref(), n.as_ref()])?.as_ref(),
                    &value_rows,
                    None,
                )
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let rows = self
            .spec
            .assemble(None, key_columns, aggregates, ops.len())?;
        ctx.emit(ChangeBatch {
            rows,
            ops: Some(Int8Array::from(ops)),
            row_watermarks: None,
        });
        Ok(())
    }
}

/// `1` for an insert, `-1` for a retraction.
fn retraction_weights(ops: &Int8Array) -> Vec<i64> {
    ops.values()
        .iter()
        .map(|&op| {
            if ChangeKind::from_i8(op).is_retraction() {
                -1
            } else {
                1
            }
        })
        .collect()
}

/// Per row, whether any aggregate's new value differs from its old one (NULLs compare
/// equal to each other).
fn changed_rows(old: &[ArrayRef], new: &[ArrayRef], rows: usize) -> Result<BooleanBuffer> {
    let mut any = BooleanBuffer::new_unset(rows);
    for (o, n) in old.iter().zip(new) {
        let column = if o.data_type().is_nested() {
            let compare = make_comparator(o.as_ref(), n.as_ref(), SortOptions::default())?;
            (0..rows).map(|i| compare(i, i).is_ne()).collect()
        } else {
            distinct(o, n)?.values().clone()
        };
        any = &any | &column;
    }
    Ok(any)
}
