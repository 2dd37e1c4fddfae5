//! A window aggregate's state as batches: one per open window or pane, for checkpoints.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, TimestampNanosecondArray};
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};

use super::WindowAggregate;
use super::rows::timestamps;
use crate::error::{Error, Result};
use crate::operators::window_groups::Frozen;
use crate::time::Timestamp;

const WATERMARK_KEY: &str = "vigil.watermark";
const EMITTED_THROUGH_KEY: &str = "vigil.emitted_through";
const CLOSED_PANE_KEY: &str = "vigil.closed_pane";

impl WindowAggregate {
    /// Lays out one window's (or pane's) groups as a state batch.
    pub(super) fn state_batch(
        &self,
        (start, end): (Timestamp, Timestamp),
        groups: &Frozen,
        closed_pane: bool,
    ) -> Result<RecordBatch> {
        let rows = groups.groups;
        let mut fields = vec![
            Field::new("window_start", crate::time::TIMESTAMP_TYPE, false),
            Field::new("window_end", crate::time::TIMESTAMP_TYPE, false),
        ];
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(TimestampNanosecondArray::from_value(start, rows)),
            Arc::new(TimestampNanosecondArray::from_value(end, rows)),
        ];
        for (i, key) in groups.keys.iter().enumerate() {
            fields.push(Field::new(
                format!("key_{i}"),
                key.data_type().clone(),
                true,
            ));
            columns.push(Arc::clone(key));
        }
        for (i, state) in groups.states.iter().enumerate() {
            for (j, column) in state.iter().enumerate() {
                fields.push(Field::new(
                    format!("agg_{i}_{j}"),
                    column.data_type().clone(),
                    true,
                ));
                columns.push(Arc::clone(column));
            }
        }
        let mut metadata = HashMap::from([(WATERMARK_KEY.to_string(), self.watermark.to_string())]);
        if let Some(panes) = &self.panes {
            metadata.insert(
                EMITTED_THROUGH_KEY.into(),
                panes.emitted_through.to_string(),
            );
            metadata.insert(CLOSED_PANE_KEY.into(), closed_pane.to_string());
        }
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        Ok(RecordBatch::try_new_with_options(
            Arc::new(Schema::new_with_metadata(fields, metadata)),
            columns,
            &options,
        )?)
    }

    /// Loads one state batch: an open window or pane, or a closed pane.
    pub(super) fn restore_batch(&mut self, batch: &RecordBatch) -> Result<()> {
        let metadata = batch.schema().metadata().clone();
        let number = |key: &str| -> Result<Option<Timestamp>> {
            metadata
                .get(key)
                .map(|v| {
                    v.parse()
                        .map_err(|_| Error::Internal(format!("bad {key} in window state")))
                })
                .transpose()
        };
        if let Some(watermark) = number(WATERMARK_KEY)? {
            self.watermark = watermark;
        }
        if let (Some(panes), Some(through)) = (&mut self.panes, number(EMITTED_THROUGH_KEY)?) {
            panes.emitted_through = through;
        }
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let start = timestamps(batch.column(0))?.value(0);
        let end = timestamps(batch.column(1))?.value(0);
        let n_keys = self.spec().keys.len();
        let mut states = Vec::with_capacity(self.spec().calls.len());
        let mut column = 2 + n_keys;
        for call in &self.spec().calls {
            let width = call.function.state_fields()?.len();
            states.push(batch.columns()[column..column + width].to_vec());
            column += width;
        }
        let groups = Frozen {
            keys: batch.columns()[2..2 + n_keys].to_vec(),
            states,
            groups: batch.num_rows(),
            first_epoch: 0,
        };
        let closed = metadata.get(CLOSED_PANE_KEY).is_some_and(|v| v == "true");
        match &mut self.panes {
            Some(panes) if closed => panes.close_pane(start, end, groups, &self.factory),
            _ => {
                let window = self.factory.merged([&groups])?;
                self.windows.insert((end, start), window);
                Ok(())
            }
        }
    }
}
