//! Streaming planning: from DataFusion's logical plan to an [`OperatorGraph`].

mod graph;
mod join_condition;
mod lower;
pub(crate) mod match_planning;
pub mod match_table;
mod panes;
mod read_columns;
pub mod window_table;

pub use graph::{
    Edge, GraphNode, LateOutput, NodeId, OperatorGraph, PlanWarning, SourceBinding, WarningKind,
};
pub use lower::{LowerOptions, lower_query, lower_query_with};
