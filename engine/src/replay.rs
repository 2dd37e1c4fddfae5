//! Deterministic replay: a planned query run over scripted input in the calling thread, to
//! the end of input. Rule tests (`vigil test`) and the SQL logic tests use it, so a result
//! depends on the input and its order only, never on task scheduling.

use std::collections::HashMap;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::concat_batches;

use crate::batch::{ChangeBatch, RejectedRows};
use crate::operators::{MAIN_PORT, Message};
use crate::plan::OperatorGraph;
use crate::runtime::{GraphExecutor, OutputPort};

/// Input events in arrival order: (source name, rows).
#[derive(Debug, Clone, Default)]
pub struct Script {
    entries: Vec<(String, RecordBatch)>,
}

impl Script {
    /// Appends rows of `source`.
    pub fn push(&mut self, source: &str, rows: RecordBatch) {
        self.entries.push((source.to_string(), rows));
    }

    /// The same rows and order, cut into batches of `batch_size` (consecutive rows of one
    /// source are joined first, so batches may span inserts).
    pub fn rechunk(&self, batch_size: usize) -> Vec<(String, RecordBatch)> {
        let mut runs: Vec<(String, Vec<RecordBatch>)> = Vec::new();
        for (source, rows) in &self.entries {
            match runs.last_mut() {
                Some((s, batches)) if s == source => batches.push(rows.clone()),
                _ => runs.push((source.clone(), vec![rows.clone()])),
            }
        }
        let mut out = Vec::new();
        for (source, batches) in runs {
            let all = concat_batches(&batches[0].schema(), &batches)
                .expect("a source's rows share its schema");
            let mut offset = 0;
            while offset < all.num_rows() {
                let len = batch_size.min(all.num_rows() - offset);
                out.push((source.clone(), all.slice(offset, len)));
                offset += len;
            }
        }
        out
    }
}

/// What a run produced: the result rows and the late rows per late-events sink.
pub struct RunOutput {
    /// Result rows (with `op` first for updating queries).
    pub rows: Vec<RecordBatch>,
    /// Late rows by sink name.
    pub late: HashMap<String, Vec<RecordBatch>>,
    /// Late events the windows dropped (whether or not a late sink got them).
    pub late_events: u64,
    /// Rows set aside because an expression failed on them.
    pub rejected: Vec<RejectedRows>,
}

/// Runs a planned query over the script to the end of input, deterministically.
pub fn run_to_completion(
    graph: OperatorGraph,
    script: &Script,
    batch_size: usize,
) -> crate::Result<RunOutput> {
    let mut outputs = vec![OutputPort {
        node: graph.output,
        port: MAIN_PORT,
    }];
    let late_names: Vec<String> = graph
        .late_outputs
        .iter()
        .map(|l| l.sink.name.clone())
        .collect();
    outputs.extend(graph.late_outputs.iter().map(|l| OutputPort {
        node: l.node,
        port: l.port,
    }));
    let source_names: Vec<String> = graph.sources.iter().map(|s| s.def.name.clone()).collect();
    let updating = graph.updating;
    let mut executor = GraphExecutor::new(graph, outputs);
    let mut result = RunOutput {
        rows: Vec::new(),
        late: HashMap::new(),
        late_events: 0,
        rejected: Vec::new(),
    };
    let collect = |emitted: Vec<(usize, Message)>, result: &mut RunOutput| -> crate::Result<()> {
        for (index, message) in emitted {
            if let Message::Batch(batch) = message {
                if index == 0 {
                    result.rows.push(batch.into_output(updating)?);
                } else {
                    result
                        .late
                        .entry(late_names[index - 1].clone())
                        .or_default()
                        .push(batch.rows);
                }
            }
        }
        Ok(())
    };
    for (source, rows) in script.rechunk(batch_size) {
        for (i, name) in source_names.iter().enumerate() {
            if *name == source && !executor.output_ended(0) {
                let emitted =
                    executor.push_source(i, Message::Batch(ChangeBatch::inserts(rows.clone())))?;
                collect(emitted, &mut result)?;
                result.rejected.extend(executor.take_rejected());
            }
        }
    }
    for i in 0..source_names.len() {
        let emitted = executor.end_source(i)?;
        collect(emitted, &mut result)?;
        result.rejected.extend(executor.take_rejected());
    }
    result.late_events = executor.operator_stats().iter().map(|o| o.late_rows).sum();
    Ok(result)
}
