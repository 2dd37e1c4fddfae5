//! [`UpdatingAggregate`]: GROUP BY without a window, whose output is a changelog.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int8Array, Int64Array, UInt32Array, new_null_array,
};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{OwnedRow, RowConverter, SortField};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Accumulator;
use std::collections::HashMap;

use super::aggregate::AggregateSpec;
use super::{Context, Operator, evaluate_or_reject};
use crate::batch::{ChangeBatch, ChangeKind};
use crate::error::{Error, Result};

/// Keeps DataFusion accumulators per group for all time, and after each batch emits, for
/// the groups that batch touched only, `+I` (new group), `-U`/`+U` (changed value) or `-D`
/// (every row of the group retracted, whose state is then freed). An unchanged value emits
/// nothing. Retractions use the accumulators' `retract_batch`.
pub struct UpdatingAggregate {
    spec: AggregateSpec,
    converter: RowConverter,
    /// Group slot by the group key's row bytes.
    index: HashMap<Box<[u8]>, usize>,
    groups: Vec<Option<Group>>,
    free: Vec<usize>,
    /// The groups' bytes, kept up to date as groups change rather than summed on demand.
    state_bytes: usize,
    /// The first source batch whose rows are in the groups: their state lives as long as
    /// the query, and is not checkpointed, so that input can never be acknowledged.
    first_epoch: Option<u64>,
}

struct Group {
    key: OwnedRow,
    accumulators: Vec<Box<dyn Accumulator>>,
    /// Inserted rows minus retracted rows.
    rows: i64,
    /// The aggregate values last emitted.
    emitted: Option<Vec<ScalarValue>>,
    /// Its size when last measured (after its last change).
    bytes: usize,
}

impl Group {
    /// Bytes of its key, accumulators and last emitted values.
    fn measure(&self) -> usize {
        let emitted = self
            .emitted
            .iter()
            .flatten()
            .map(ScalarValue::size)
            .sum::<usize>();
        let accumulators = self.accumulators.iter().map(|a| a.size()).sum::<usize>();
        self.key.as_ref().len() + accumulators + emitted
    }
}

impl UpdatingAggregate {
    /// An updating aggregate over `input_schema`.
    pub fn try_new(spec: AggregateSpec, input_schema: &SchemaRef) -> Result<Self> {
        let key_schema = spec.key_schema(input_schema)?;
        let mut fields: Vec<SortField> = key_schema
            .fields()
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect();
        if fields.is_empty() {
            // A global aggregate: one group, keyed by a constant column the output ignores.
            fields.push(SortField::new(DataType::Boolean));
        }
        let converter = RowConverter::new(fields)?;
        if let Some(call) = spec.calls.iter().find(|c| c.filter.is_some()) {
            return Err(Error::Unsupported(format!(
                "FILTER on {} in an aggregate without a window",
                call.function.name()
            )));
        }
        Ok(Self {
            spec,
            converter,
            index: HashMap::new(),
            groups: Vec::new(),
            free: Vec::new(),
            state_bytes: 0,
            first_epoch: None,
        })
    }

    fn group_slot(&mut self, row: datafusion::arrow::row::Row<'_>) -> Result<usize> {
        if let Some(&slot) = self.index.get(row.as_ref()) {
            return Ok(slot);
        }
        let key = row.owned();
        let accumulators = self
            .spec
            .calls
            .iter()
            .map(|c| c.function.create_sliding_accumulator())
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        let group = Group {
            key,
            accumulators,
            rows: 0,
            emitted: None,
            bytes: 0,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.groups[slot] = Some(group);
                slot
            }
            None => {
                self.groups.push(Some(group));
                self.groups.len() - 1
            }
        };
        self.index.insert(row.as_ref().into(), slot);
        Ok(slot)
    }
}

impl Operator for UpdatingAggregate {
    fn name(&self) -> &'static str {
        "UpdatingAggregate"
    }

    fn describe(&self) -> String {
        self.spec.describe()
    }

    fn on_batch(&mut self, batch: ChangeBatch, ctx: &mut Context) -> Result<()> {
        let spec = &self.spec;
        let evaluated = evaluate_or_reject("UpdatingAggregate", batch, ctx, |rows| {
            let keys = if spec.keys.is_empty() {
                vec![new_null_array(&DataType::Boolean, rows.num_rows())]
            } else {
                spec.evaluate_keys(rows)?
            };
            Ok((keys, spec.evaluate_args(rows)?))
        })?;
        let Some((batch, (keys, args))) = evaluated else {
            return Ok(());
        };
        let n = batch.num_rows();
        self.first_epoch.get_or_insert(ctx.epoch);
        let rows = self.converter.convert_columns(&keys)?;

        // Group id per row, and the touched groups in first-seen order.
        let mut slots = Vec::with_capacity(n);
        let mut touched = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for row in rows.iter() {
            let slot = self.group_slot(row)?;
            if seen.insert(slot) {
                touched.push(slot);
            }
            slots.push(slot);
        }

        // Sort rows by (group, retraction) so each group's inserts and retractions are runs.
        let retracts: Vec<bool> = (0..n).map(|i| batch.kind(i).is_retraction()).collect();
        let mut order: Vec<u32> = (0..n as u32).collect();
        order.sort_by_key(|&i| (slots[i as usize], retracts[i as usize]));
        let order = UInt32Array::from(order);
        let sorted_args: Vec<Vec<ArrayRef>> = args
            .iter()
            .map(|(vals, _)| {
                vals.iter()
                    .map(|v| take(v.as_ref(), &order, None))
                    .collect()
            })
            .collect::<std::result::Result<_, _>>()?;

        let mut i = 0;
        while i < n {
            let row = order.value(i) as usize;
            let (slot, retract) = (slots[row], retracts[row]);
            let len = order.values()[i..]
                .iter()
                .take_while(|&&r| slots[r as usize] == slot && retracts[r as usize] == retract)
                .count();
            let group = self.groups[slot].as_mut().expect("slot of a live group");
            for (acc, vals) in group.accumulators.iter_mut().zip(&sorted_args) {
                let slice: Vec<ArrayRef> = vals.iter().map(|v| v.slice(i, len)).collect();
                if retract {
                    acc.retract_batch(&slice)?;
                } else {
                    acc.update_batch(&slice)?;
                }
            }
            group.rows += if retract { -(len as i64) } else { len as i64 };
            i += len;
        }

        self.emit_changes(&touched, ctx)
    }

    fn state_rows(&self) -> usize {
        self.index.len()
    }

    fn state_bytes(&self) -> usize {
        self.state_bytes
    }

    fn retained_epoch(&self) -> Option<u64> {
        self.first_epoch
    }

    /// One batch: the group key columns, each group's row count, whether it has emitted a
    /// row and what, and each accumulator's state columns.
    ///
    /// Caveat: the state of a retractable `min`/`max` is its current value, not every value
    /// it holds, so after a restore it cannot take back the current extreme.
    fn snapshot(&mut self) -> Result<Vec<RecordBatch>> {
        let live: Vec<&mut Group> = self.groups.iter_mut().flatten().collect();
        if live.is_empty() {
            return Ok(Vec::new());
        }
        let calls = self.spec.calls.len();
        let mut rows = Vec::with_capacity(live.len());
        let mut emitted: Vec<Vec<ScalarValue>> = vec![Vec::new(); calls];
        let mut has_emitted = Vec::with_capacity(live.len());
        let mut states: Vec<Vec<Vec<ScalarValue>>> = vec![Vec::new(); calls];
        let mut keys = Vec::with_capacity(live.len());
        for group in live {
            keys.push(group.key.clone());
            rows.push(group.rows);
            has_emitted.push(group.emitted.is_some());
            for (i, call) in self.spec.calls.iter().enumerate() {
                let value = match &group.emitted {
                    Some(values) => values[i].clone(),
                    None => ScalarValue::try_from(call.function.field().data_type())?,
                };
                emitted[i].push(value);
                let state = group.accumulators[i].state()?;
                if states[i].is_empty() {
                    states[i] = vec![Vec::new(); state.len()];
                }
                for (column, v) in states[i].iter_mut().zip(state) {
                    column.push(v);
                }
            }
        }
        let mut fields = Vec::new();
        let mut columns: Vec<ArrayRef> = Vec::new();
        for (i, key) in self
            .converter
            .convert_rows(keys.iter().map(|k| k.row()))?
            .into_iter()
            .enumerate()
        {
            fields.push(Field::new(
                format!("key_{i}"),
                key.data_type().clone(),
                true,
            ));
            columns.push(key);
        }
        fields.push(Field::new("rows", DataType::Int64, false));
        columns.push(Arc::new(Int64Array::from(rows)));
        fields.push(Field::new("has_emitted", DataType::Boolean, false));
        columns.push(Arc::new(BooleanArray::from(has_emitted)));
        for (i, values) in emitted.into_iter().enumerate() {
            let array = ScalarValue::iter_to_array(values)?;
            fields.push(Field::new(
                format!("emitted_{i}"),
                array.data_type().clone(),
                true,
            ));
            columns.push(array);
        }
        for (i, state) in states.into_iter().enumerate() {
            for (j, values) in state.into_iter().enumerate() {
                let array = ScalarValue::iter_to_array(values)?;
                fields.push(Field::new(
                    format!("agg_{i}_{j}"),
                    array.data_type().clone(),
                    true,
                ));
                columns.push(array);
            }
        }
        Ok(vec![RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns,
        )?])
    }

    fn restore(&mut self, state: Vec<RecordBatch>) -> Result<()> {
        if state.iter().any(|b| b.num_rows() > 0) {
            self.first_epoch = Some(0);
        }
        let n_keys = self.spec.keys.len().max(1);
        let calls = self.spec.calls.len();
        // The retractable accumulators' state can be wider than the function's state fields
        // (a sliding sum also counts its rows), so ask one.
        let widths = self
            .spec
            .calls
            .iter()
            .map(|c| Ok(c.function.create_sliding_accumulator()?.state()?.len()))
            .collect::<Result<Vec<usize>>>()?;
        for batch in state {
            let key_rows = self.converter.convert_columns(&batch.columns()[..n_keys])?;
            let counts = batch.column(n_keys).as_primitive::<Int64Type>().clone();
            let has_emitted = batch.column(n_keys + 1).as_boolean().clone();
            let emitted_at = n_keys + 2;
            for r in 0..batch.num_rows() {
                let slot = self.group_slot(key_rows.row(r))?;
                let group = self.groups[slot].as_mut().expect("slot of a live group");
                group.rows = counts.value(r);
                group.emitted = if has_emitted.value(r) {
                    let values = (0..calls)
                        .map(|i| ScalarValue::try_from_array(batch.column(emitted_at + i), r))
                        .collect::<datafusion::error::Result<Vec<_>>>()?;
                    Some(values)
                } else {
                    None
                };
                let mut column = emitted_at + calls;
                for (acc, &width) in group.accumulators.iter_mut().zip(&widths) {
                    let slice: Vec<ArrayRef> = batch.columns()[column..column + width]
                        .iter()
                        .map(|c| c.slice(r, 1))
                        .collect();
                    acc.merge_batch(&slice)?;
                    column += width;
                }
                group.bytes = group.measure();
                self.state_bytes += group.bytes;
            }
        }
        Ok(())
    }
}

impl UpdatingAggregate {
    fn emit_changes(&mut self, touched: &[usize], ctx: &mut Context) -> Result<()> {
        let mut ops: Vec<i8> = Vec::new();
        let mut key_rows: Vec<OwnedRow> = Vec::new();
        let mut values: Vec<Vec<ScalarValue>> = vec![Vec::new(); self.spec.calls.len()];
        let mut push = |kind: ChangeKind, key: &OwnedRow, vals: &[ScalarValue]| {
            ops.push(kind as i8);
            key_rows.push(key.clone());
            for (column, v) in values.iter_mut().zip(vals) {
                column.push(v.clone());
            }
        };
        for &slot in touched {
            let group = self.groups[slot].as_mut().expect("slot of a live group");
            if group.rows <= 0 {
                if let Some(old) = group.emitted.take() {
                    push(ChangeKind::Delete, &group.key, &old);
                }
                self.state_bytes -= group.bytes;
                self.index.remove(group.key.row().as_ref());
                self.groups[slot] = None;
                self.free.push(slot);
                continue;
            }
            let new = group
                .accumulators
                .iter_mut()
                .map(|a| a.evaluate())
                .collect::<datafusion::error::Result<Vec<_>>>()?;
            match group.emitted.take() {
                None => push(ChangeKind::Insert, &group.key, &new),
                Some(old) if old != new => {
                    push(ChangeKind::UpdateBefore, &group.key, &old);
                    push(ChangeKind::UpdateAfter, &group.key, &new);
                }
                Some(_) => {}
            }
            group.emitted = Some(new);
            let bytes = group.measure();
            self.state_bytes = self.state_bytes + bytes - group.bytes;
            group.bytes = bytes;
        }
        if ops.is_empty() {
            return Ok(());
        }
        let rows = ops.len();
        let keys = self
            .converter
            .convert_rows(key_rows.iter().map(|r| r.row()))?;
        let aggregates = values
            .into_iter()
            .zip(&self.spec.calls)
            .map(|(column, call)| {
                if column.is_empty() {
                    Ok(datafusion::arrow::array::new_empty_array(
                        call.function.field().data_type(),
                    ))
                } else {
                    ScalarValue::iter_to_array(column)
                }
            })
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        let out = self.spec.assemble(None, keys, aggregates, rows)?;
        ctx.emit(ChangeBatch {
            rows: out,
            ops: Some(Int8Array::from(ops)),
            row_watermarks: None,
        });
        Ok(())
    }
}
