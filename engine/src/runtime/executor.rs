//! [`GraphExecutor`]: runs an operator graph synchronously, message by message.
//!
//! The async runtime feeds it from source tasks; tests feed it directly, which makes a run
//! fully deterministic.

use std::collections::VecDeque;
use std::time::Instant;

use super::OperatorStats;
use crate::batch::{ChangeBatch, RejectedRows};
use crate::checkpoint::NodeSnapshot;
use crate::connector::SplitStatus;
use crate::error::Result;
use crate::operators::{Context, MAIN_PORT, Message, Operator, OperatorCounters};
use crate::plan::{NodeId, OperatorGraph};
use crate::time::{Timestamp, WATERMARK_MAX, WATERMARK_MIN};

/// One output of the graph: the result, or a late-event stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputPort {
    /// The node.
    pub node: NodeId,
    /// Its port.
    pub port: usize,
}

struct NodeState {
    operator: Box<dyn Operator>,
    inputs: Vec<NodeId>,
    input_watermarks: Vec<Timestamp>,
    inputs_ended: Vec<bool>,
    watermark: Timestamp,
    finished: bool,
    counters: OperatorCounters,
}

/// Pushes messages through an [`OperatorGraph`].
pub struct GraphExecutor {
    nodes: Vec<NodeState>,
    /// Per node: (its output port, downstream node, downstream input index).
    downstream: Vec<Vec<(usize, NodeId, usize)>>,
    source_nodes: Vec<NodeId>,
    outputs: Vec<OutputPort>,
    /// The epoch of the source batch being processed; each pushed batch takes the next.
    epoch: u64,
    /// Rows operators rejected since the last [`GraphExecutor::take_rejected`].
    rejected: Vec<RejectedRows>,
}

impl GraphExecutor {
    /// An executor for `graph` whose outputs are `outputs` (index 0 is usually the result).
    pub fn new(graph: OperatorGraph, outputs: Vec<OutputPort>) -> Self {
        let mut downstream = vec![Vec::new(); graph.nodes.len()];
        for (id, node) in graph.nodes.iter().enumerate() {
            for (input, edge) in node.inputs.iter().enumerate() {
                downstream[edge.from].push((edge.port, id, input));
            }
        }
        let nodes = graph
            .nodes
            .into_iter()
            .map(|n| {
                let inputs = n.inputs.len().max(1);
                NodeState {
                    inputs: n.inputs.iter().map(|e| e.from).collect(),
                    operator: n.operator,
                    input_watermarks: vec![WATERMARK_MIN; inputs],
                    inputs_ended: vec![false; inputs],
                    watermark: WATERMARK_MIN,
                    finished: false,
                    counters: OperatorCounters::default(),
                }
            })
            .collect();
        let source_nodes = graph.sources.iter().map(|s| s.node).collect();
        Self {
            nodes,
            downstream,
            source_nodes,
            outputs,
            epoch: 0,
            rejected: Vec::new(),
        }
    }

    /// The same graph with new operators and no state: a copy to run for one split.
    pub fn new_instance(&self) -> Result<Self> {
        let nodes = self
            .nodes
            .iter()
            .map(|n| {
                Ok(NodeState {
                    operator: n.operator.new_instance()?,
                    inputs: n.inputs.clone(),
                    input_watermarks: vec![WATERMARK_MIN; n.input_watermarks.len()],
                    inputs_ended: vec![false; n.inputs_ended.len()],
                    watermark: WATERMARK_MIN,
                    finished: false,
                    counters: OperatorCounters::default(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            nodes,
            downstream: self.downstream.clone(),
            source_nodes: self.source_nodes.clone(),
            outputs: self.outputs.clone(),
            epoch: 0,
            rejected: Vec::new(),
        })
    }

    /// Number of sources feeding the graph.
    pub fn source_count(&self) -> usize {
        self.source_nodes.len()
    }

    /// Delivers a message from source `source`; returns what reached the outputs, tagged
    /// with the output index. A batch takes the next epoch ([`GraphExecutor::epoch`]).
    pub fn push_source(
        &mut self,
        source: usize,
        message: Message,
    ) -> Result<Vec<(usize, Message)>> {
        if matches!(message, Message::Batch(_)) {
            self.epoch += 1;
        }
        let node = self.source_nodes[source];
        let mut emitted = Vec::new();
        self.run(VecDeque::from([(node, 0, message)]), &mut emitted)?;
        Ok(emitted)
    }

    /// Delivers rows from split `split` of source `source`; the batch takes the next epoch.
    pub fn push_split_batch(
        &mut self,
        source: usize,
        split: u32,
        batch: ChangeBatch,
    ) -> Result<Vec<(usize, Message)>> {
        self.epoch += 1;
        self.enter(source, |op, ctx| op.on_split_batch(split, batch, ctx))
    }

    /// Tells source `source`'s entry operator that its splits changed.
    pub fn push_split_status(
        &mut self,
        source: usize,
        status: &SplitStatus,
    ) -> Result<Vec<(usize, Message)>> {
        self.enter(source, |op, ctx| op.on_split_status(status, ctx))
    }

    /// Tells every operator that windows ending at or before `emitted_until` were delivered
    /// by an earlier run (see [`Operator::resume`]).
    pub fn resume(&mut self, emitted_until: Timestamp) {
        for node in &mut self.nodes {
            node.operator.resume(emitted_until);
        }
    }

    /// Rows operators rejected (their expressions failed on them) since the last call.
    pub fn take_rejected(&mut self) -> Vec<RejectedRows> {
        std::mem::take(&mut self.rejected)
    }

    /// The epoch of the last batch pushed (the first is 1; 0 before any).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The oldest epoch whose rows some operator still holds (see
    /// [`Operator::retained_epoch`]).
    pub fn retained_epoch(&self) -> Option<u64> {
        self.nodes
            .iter()
            .filter_map(|n| n.operator.retained_epoch())
            .min()
    }

    /// Calls the entry operator of `source` directly, then runs what it emitted through
    /// the graph.
    fn enter(
        &mut self,
        source: usize,
        call: impl FnOnce(&mut dyn Operator, &mut Context) -> Result<()>,
    ) -> Result<Vec<(usize, Message)>> {
        let id = self.source_nodes[source];
        let out = self.call_node(id, call)?;
        self.run_from(id, out)
    }

    /// The wall clock reads `now`: each operator may emit (see [`Operator::on_clock`]), in
    /// graph order, and what it emits runs through the graph.
    pub fn on_clock(&mut self, now: Instant) -> Result<Vec<(usize, Message)>> {
        let mut emitted = Vec::new();
        for id in 0..self.nodes.len() {
            let out = self.call_node(id, |op, ctx| op.on_clock(now, ctx))?;
            if out.is_empty() {
                continue;
            }
            self.nodes[id].counters.rows_out += main_rows(&out);
            emitted.extend(self.run_from(id, out)?);
        }
        Ok(emitted)
    }

    /// Calls node `id`'s operator directly (unless it has finished); returns what it emitted.
    fn call_node(
        &mut self,
        id: NodeId,
        call: impl FnOnce(&mut dyn Operator, &mut Context) -> Result<()>,
    ) -> Result<Vec<(usize, Message)>> {
        let mut out = Vec::new();
        let node = &mut self.nodes[id];
        if !node.finished {
            let mut ctx = Context::new(0, &node.input_watermarks, &mut node.counters, &mut out)
                .at_epoch(self.epoch);
            call(node.operator.as_mut(), &mut ctx)?;
            self.rejected.append(&mut ctx.take_rejected());
        }
        Ok(out)
    }

    /// Runs what node `id` emitted through the graph; returns what reached the outputs.
    fn run_from(
        &mut self,
        id: NodeId,
        out: Vec<(usize, Message)>,
    ) -> Result<Vec<(usize, Message)>> {
        let mut queue = VecDeque::new();
        let mut emitted = Vec::new();
        self.route(id, out, &mut queue, &mut emitted);
        self.run(queue, &mut emitted)?;
        Ok(emitted)
    }

    /// Ends source `source`: its watermark jumps to +inf, so every window closes, then it ends.
    pub fn end_source(&mut self, source: usize) -> Result<Vec<(usize, Message)>> {
        let mut emitted = self.push_source(source, Message::Watermark(WATERMARK_MAX))?;
        emitted.extend(self.push_source(source, Message::End)?);
        Ok(emitted)
    }

    /// True once output `index` has ended.
    pub fn output_ended(&self, index: usize) -> bool {
        let out = self.outputs[index];
        self.nodes[out.node].finished
    }

    /// The watermark source `source` stands at, as its entry operator emitted it.
    pub fn source_watermark(&self, source: usize) -> Timestamp {
        let node = &self.nodes[self.source_nodes[source]];
        node.counters.watermark_out.unwrap_or(node.watermark)
    }

    /// The watermark at output `index`.
    pub fn output_watermark(&self, index: usize) -> Timestamp {
        self.nodes[self.outputs[index].node].watermark
    }

    /// Every operator with its counters now.
    pub fn operator_stats(&self) -> Vec<OperatorStats> {
        let mut stats: Vec<OperatorStats> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(id, n)| OperatorStats {
                id,
                operator: n.operator.name(),
                detail: n.operator.describe(),
                inputs: n.inputs.clone(),
                ..OperatorStats::default()
            })
            .collect();
        self.refresh_stats(&mut stats);
        stats
    }

    /// Updates the counters of [`GraphExecutor::operator_stats`] in place.
    pub fn refresh_stats(&self, stats: &mut [OperatorStats]) {
        for (stat, node) in stats.iter_mut().zip(&self.nodes) {
            stat.rows_in = node.counters.rows_in;
            stat.rows_out = node.counters.rows_out;
            stat.late_rows = node.counters.late_rows;
            stat.watermark = node.counters.watermark_out.unwrap_or(node.watermark);
            stat.state_rows = node.operator.state_rows() as u64;
            stat.state_bytes = node.operator.state_bytes() as u64;
        }
    }

    /// Adds this graph's counters to `stats` of another instance of it (see
    /// [`GraphExecutor::new_instance`]); the watermark shown is the lowest.
    pub fn add_stats(&self, stats: &mut [OperatorStats]) {
        for (stat, node) in stats.iter_mut().zip(&self.nodes) {
            stat.rows_in += node.counters.rows_in;
            stat.rows_out += node.counters.rows_out;
            stat.late_rows += node.counters.late_rows;
            let watermark = node.counters.watermark_out.unwrap_or(node.watermark);
            stat.watermark = stat.watermark.min(watermark);
            stat.state_rows += node.operator.state_rows() as u64;
            stat.state_bytes += node.operator.state_bytes() as u64;
        }
    }

    /// Every operator's state plus the watermarks the executor tracks per node, for a
    /// checkpoint. The graph keeps running unchanged.
    pub fn snapshot(&mut self) -> Result<Vec<NodeSnapshot>> {
        self.nodes
            .iter_mut()
            .map(|n| {
                Ok(NodeSnapshot {
                    name: n.operator.name().to_string(),
                    operator: n.operator.snapshot()?,
                    input_watermarks: n.input_watermarks.clone(),
                    watermark: n.watermark,
                    rows_in: n.counters.rows_in,
                    rows_out: n.counters.rows_out,
                    late_rows: n.counters.late_rows,
                })
            })
            .collect()
    }

    /// Loads a [`GraphExecutor::snapshot`] taken from the same plan.
    pub fn restore(&mut self, snapshot: Vec<NodeSnapshot>) -> Result<()> {
        if snapshot.len() != self.nodes.len() {
            return Err(crate::Error::Internal("snapshot of another plan".into()));
        }
        for (node, state) in self.nodes.iter_mut().zip(snapshot) {
            if state.input_watermarks.len() != node.input_watermarks.len() {
                return Err(crate::Error::Internal("snapshot of another plan".into()));
            }
            node.operator.restore(state.operator)?;
            node.input_watermarks = state.input_watermarks;
            node.watermark = state.watermark;
            node.counters.rows_in = state.rows_in;
            node.counters.rows_out = state.rows_out;
            node.counters.late_rows = state.late_rows;
        }
        Ok(())
    }

    fn run(
        &mut self,
        mut queue: VecDeque<(NodeId, usize, Message)>,
        emitted: &mut Vec<(usize, Message)>,
    ) -> Result<()> {
        let mut out = Vec::new();
        while let Some((id, input, message)) = queue.pop_front() {
            self.deliver(id, input, message, &mut out)?;
            let produced = std::mem::take(&mut out);
            self.nodes[id].counters.rows_out += main_rows(&produced);
            self.route(id, produced, &mut queue, emitted);
        }
        Ok(())
    }

    /// Sends what node `id` produced to the graph outputs and the nodes downstream.
    fn route(
        &self,
        id: NodeId,
        produced: Vec<(usize, Message)>,
        queue: &mut VecDeque<(NodeId, usize, Message)>,
        emitted: &mut Vec<(usize, Message)>,
    ) {
        for (port, msg) in produced {
            for (index, o) in self.outputs.iter().enumerate() {
                if o.node == id && o.port == port {
                    emitted.push((index, msg.clone()));
                }
            }
            for &(from_port, to, to_input) in &self.downstream[id] {
                if from_port == port {
                    queue.push_back((to, to_input, msg.clone()));
                }
            }
        }
    }

    fn deliver(
        &mut self,
        id: NodeId,
        input: usize,
        message: Message,
        out: &mut Vec<(usize, Message)>,
    ) -> Result<()> {
        let node = &mut self.nodes[id];
        if node.finished {
            return Ok(());
        }
        match message {
            Message::Batch(batch) => {
                node.counters.rows_in += batch.num_rows() as u64;
                let mut ctx = Context::new(input, &node.input_watermarks, &mut node.counters, out)
                    .at_epoch(self.epoch);
                node.operator.on_batch(batch, &mut ctx)?;
                self.rejected.append(&mut ctx.take_rejected());
            }
            Message::Watermark(wm) => {
                let slot = &mut node.input_watermarks[input];
                *slot = (*slot).max(wm);
                if node.operator.untimed_input(input) {
                    let watermark = *slot;
                    let mut ctx =
                        Context::new(input, &node.input_watermarks, &mut node.counters, out);
                    node.operator.on_untimed_watermark(watermark, &mut ctx)?;
                    self.rejected.append(&mut ctx.take_rejected());
                    return Ok(());
                }
                let operator = &node.operator;
                let merged = (node.input_watermarks.iter().enumerate())
                    .filter(|(i, _)| !operator.untimed_input(*i))
                    .map(|(_, w)| *w)
                    .min()
                    .unwrap_or(wm);
                if merged > node.watermark {
                    node.watermark = merged;
                    let mut ctx =
                        Context::new(input, &node.input_watermarks, &mut node.counters, out);
                    node.operator.on_watermark(merged, &mut ctx)?;
                }
            }
            Message::End => {
                node.inputs_ended[input] = true;
                if node.inputs_ended.iter().all(|e| *e) {
                    let mut ctx =
                        Context::new(input, &node.input_watermarks, &mut node.counters, out);
                    node.operator.on_end(&mut ctx)?;
                    self.rejected.append(&mut ctx.take_rejected());
                    out.push((MAIN_PORT, Message::End));
                    out.push((crate::operators::LATE_PORT, Message::End));
                    out.push((crate::operators::SECOND_LATE_PORT, Message::End));
                }
            }
        }
        // An operator that ended its output early (LIMIT) takes no more input.
        if out
            .iter()
            .any(|(port, m)| *port == MAIN_PORT && matches!(m, Message::End))
        {
            node.finished = true;
            if !node.inputs_ended.iter().all(|e| *e) {
                out.push((crate::operators::LATE_PORT, Message::End));
                out.push((crate::operators::SECOND_LATE_PORT, Message::End));
            }
        }
        Ok(())
    }
}

/// The rows among `produced` on the main port.
fn main_rows(produced: &[(usize, Message)]) -> u64 {
    (produced.iter())
        .filter(|(port, _)| *port == MAIN_PORT)
        .map(|(_, m)| match m {
            Message::Batch(b) => b.num_rows() as u64,
            _ => 0,
        })
        .sum()
}
