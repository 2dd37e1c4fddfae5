//! [`OperatorGraph`]: the operators of one query and how they connect.

use std::fmt::Write;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;

use crate::catalog::{SinkDef, SourceDef};
use crate::operators::{LATE_PORT, Operator};

/// Index of a node in [`OperatorGraph::nodes`].
pub type NodeId = usize;

/// An input of a node: output `port` of node `from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    /// The upstream node.
    pub from: NodeId,
    /// Its output port.
    pub port: usize,
}

/// One operator and its inputs.
pub struct GraphNode {
    /// The operator.
    pub operator: Box<dyn Operator>,
    /// Its inputs, in port order.
    pub inputs: Vec<Edge>,
}

/// A source read by the query, entering the graph at `node`.
#[derive(Debug, Clone)]
pub struct SourceBinding {
    /// The declared source.
    pub def: Arc<SourceDef>,
    /// The node its rows enter.
    pub node: NodeId,
    /// The columns the query reads (by index in the source's schema, in order), when it
    /// reads only some: a source may leave the others null. `None`: every column.
    pub read_columns: Option<Vec<usize>>,
}

/// Late events of a window operator going to a declared sink.
#[derive(Debug, Clone)]
pub struct LateOutput {
    /// The window operator.
    pub node: NodeId,
    /// The sink named by the source's `late_sink` option.
    pub sink: Arc<SinkDef>,
    /// The schema of the late rows.
    pub schema: SchemaRef,
    /// The operator's port they come on: [`LATE_PORT`], or a join's second input's.
    pub port: usize,
}

/// A planned query. Nodes are in topological order: inputs come before the nodes they feed.
pub struct OperatorGraph {
    /// The operators.
    pub nodes: Vec<GraphNode>,
    /// Where sources enter.
    pub sources: Vec<SourceBinding>,
    /// The node whose main output is the query's result.
    pub output: NodeId,
    /// The schema of the result.
    pub schema: SchemaRef,
    /// True when the result is a changelog with updates and deletes.
    pub updating: bool,
    /// Late-event outputs.
    pub late_outputs: Vec<LateOutput>,
    /// What the planner found questionable but not wrong (EXPLAIN prints them).
    pub warnings: Vec<PlanWarning>,
    /// True when the query reads one source whose splits processes share (a Kafka consumer
    /// group) and no operator's state mixes rows of two splits: every group it keeps is
    /// keyed by the columns the source is `partitioned_by`, or it keeps none. One copy of
    /// the graph per split then computes what one graph over every split would, so state
    /// can be kept per split and move with it.
    pub split_local: bool,
}

/// Something the planner found questionable but not wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanWarning {
    /// Which kind, so tools can point at the clause it is about.
    pub kind: WarningKind,
    /// What and why, with a hint.
    pub message: String,
}

/// The kinds of [`PlanWarning`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarningKind {
    /// A TUMBLE, HOP or CUMULATE over a source that declares no watermark.
    WindowWithoutWatermark,
    /// An interval or window join of a source that declares no watermark: the other side's
    /// rows are kept until the source ends.
    JoinWithoutWatermark,
    /// A keyed aggregate over a shared input not partitioned by its keys.
    GroupsNotPartitioned,
    /// A HAVING on a windowed aggregate that tests group columns only: as a WHERE it would
    /// drop rows before they are kept in window state.
    HavingCouldBeWhere,
}

impl std::fmt::Display for PlanWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl OperatorGraph {
    /// A digest of what the query's state depends on: every node's operator, what it does
    /// and its inputs, the sources and their schemas, the result's schema. Checkpointed
    /// state is restored only into a plan with the same fingerprint.
    pub fn fingerprint(&self) -> String {
        let mut text = String::new();
        for (id, node) in self.nodes.iter().enumerate() {
            let inputs: Vec<String> = node
                .inputs
                .iter()
                .map(|e| format!("{}:{}", e.from, e.port))
                .collect();
            let (name, detail) = (node.operator.name(), node.operator.describe());
            let _ = writeln!(text, "{id} {name} [{}] {detail}", inputs.join(","));
        }
        for source in &self.sources {
            let _ = writeln!(
                text,
                "source {} @{} {:?}",
                source.def.name,
                source.node,
                source.def.schema.fields()
            );
        }
        let _ = writeln!(
            text,
            "output {} {:?} {}",
            self.output,
            self.schema.fields(),
            self.updating
        );
        crate::checkpoint::sha256_hex(text.as_bytes())[..32].to_string()
    }

    /// The graph as an indented tree from the result down to the sources, as EXPLAIN prints it.
    pub fn explain(&self) -> String {
        let mut out = String::new();
        let kind = if self.updating {
            "updating (changelog: +I -U +U -D)"
        } else {
            "append-only"
        };
        for warning in &self.warnings {
            let _ = writeln!(out, "Warning: {warning}");
        }
        let _ = writeln!(out, "Query output: {kind}");
        let columns: Vec<String> = self
            .schema
            .fields()
            .iter()
            .map(|f| format!("{} {}", f.name(), f.data_type()))
            .collect();
        let _ = writeln!(out, "  columns: {}", columns.join(", "));
        self.explain_node(self.output, 1, &mut out);
        out
    }

    fn explain_node(&self, id: NodeId, depth: usize, out: &mut String) {
        let node = &self.nodes[id];
        let mut detail = node.operator.describe();
        for binding in self.sources.iter().filter(|s| s.node == id) {
            if let Some(columns) = &binding.read_columns {
                let schema = &binding.def.schema;
                let names: Vec<&str> = columns
                    .iter()
                    .map(|&i| schema.field(i).name().as_str())
                    .collect();
                detail.push_str(&format!(" reads=[{}]", names.join(", ")));
            }
        }
        let pad = "  ".repeat(depth);
        if detail.is_empty() {
            let _ = writeln!(out, "{pad}{}", node.operator.name());
        } else {
            let _ = writeln!(out, "{pad}{}: {detail}", node.operator.name());
        }
        for late in self.late_outputs.iter().filter(|l| l.node == id) {
            let _ = writeln!(out, "{pad}  (late events -> sink {})", late.sink.name);
        }
        for edge in &node.inputs {
            if edge.port == LATE_PORT {
                let _ = writeln!(out, "{pad}  (late events of)");
            }
            self.explain_node(edge.from, depth + 1, out);
        }
    }
}
