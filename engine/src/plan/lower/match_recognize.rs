//! Lowering of a `MATCH_RECOGNIZE` ([`MatchTable`]) to a [`MatchRecognize`] operator.

use std::sync::Arc;

use datafusion::common::DFSchema;

use super::join::late_sink_reaching;
use super::{Lowering, Partitioning, Stream, arrow_schema};
use crate::error::{Error, Result};
use crate::operators::{
    AggregateAtom, LATE_PORT, MatchRecognize, MatchSpec, Measures, NavigationAtom, PrevColumn,
    Program,
};
use crate::plan::graph::LateOutput;
use crate::plan::match_table::MatchTable;

impl Lowering<'_> {
    /// The operator matching `table`'s pattern over its input's rows.
    pub(super) fn lower_match(&mut self, table: &MatchTable) -> Result<Stream> {
        let late_sink = match late_sink_reaching(&table.input) {
            Some(source) => Some(self.over_late_sink(&table.input, &source)?),
            None => None,
        };
        let input = self.lower(&table.input)?;
        if let Some(what) = &input.updating {
            return Err(Error::Unsupported(format!(
                "MATCH_RECOGNIZE over {what}: patterns are matched over append-only streams"
            )));
        }
        let spec = self.match_spec(table)?;
        // What is wrong with the pattern itself is said first.
        Program::compile(&spec.pattern)?;
        check_bounded(&spec)?;
        let operator = MatchRecognize::try_new(spec, &arrow_schema(table.input.schema()))?;
        let node = self.add_after(Box::new(operator), &input);
        if let Some((sink, schema)) = late_sink {
            self.late_outputs.push(LateOutput {
                node,
                sink,
                schema,
                port: LATE_PORT,
            });
        }
        // A key's rows must meet in one place, whichever split they came through.
        self.spans_splits = true;
        Ok(Stream {
            node,
            window: None,
            updating: None,
            partitioning: Partitioning::Unknown(input.partitioning.sources().to_vec()),
        })
    }

    fn match_spec(&self, table: &MatchTable) -> Result<MatchSpec> {
        let logical = &table.spec;
        let input = table.input.schema();
        let prevs = (logical.prevs.iter())
            .map(|(arg, offset)| {
                Ok(PrevColumn {
                    arg: self.physical_expr(arg, input)?,
                    offset: *offset,
                })
            })
            .collect::<Result<_>>()?;
        let defines = (logical.defines.iter())
            .map(|d| {
                d.as_ref()
                    .map(|d| self.physical_expr(d, &logical.define_schema))
                    .transpose()
            })
            .collect::<Result<_>>()?;
        Ok(MatchSpec {
            partition_by: self.physical_exprs(&logical.partition_by, input)?,
            time_column: logical.time_column,
            order_by: self.physical_exprs(&logical.order_by, input)?,
            prevs,
            variables: logical.variables.clone(),
            defines,
            pattern: logical.pattern.clone(),
            after_match: logical.after_match,
            within: logical.within,
            state_ttl: self.options.state_ttl,
            measures: self.measures(table)?,
            measure_labels: logical.measure_labels.clone(),
        })
    }

    fn measures(&self, table: &MatchTable) -> Result<Measures> {
        let logical = &table.spec;
        let input: &DFSchema = table.input.schema();
        let arrow_input = arrow_schema(input);
        let navigations = (logical.navigations.iter())
            .map(|n| {
                Ok(NavigationAtom {
                    var: n.var,
                    navigation: n.navigation,
                    arg: self.physical_expr(&n.arg, input)?,
                })
            })
            .collect::<Result<_>>()?;
        let aggregates = (logical.aggregates.iter())
            .map(|a| {
                let call = self.aggregate_call(&a.call, input, &arrow_input)?;
                if call.filter.is_some() {
                    return Err(Error::Unsupported(
                        "FILTER on a MEASURES aggregate; aggregate over a variable instead".into(),
                    ));
                }
                Ok(AggregateAtom {
                    var: a.var,
                    function: call.function,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Measures {
            keys: self.physical_exprs(&logical.partition_by, input)?,
            navigations,
            aggregates,
            atoms_schema: arrow_schema(&logical.atoms_schema),
            exprs: self.physical_exprs(&logical.measures, &logical.atoms_schema)?,
            schema: Arc::clone(&table.schema),
        })
    }
}

/// Refuses a pattern whose matches can span any number of rows with nothing to bound them:
/// a key would hold every row from a match's start.
fn check_bounded(spec: &MatchSpec) -> Result<()> {
    if spec.within.is_some() || spec.state_ttl.is_some() || spec.pattern.max_rows().is_some() {
        return Ok(());
    }
    Err(Error::Plan(format!(
        "PATTERN ({}) is a pattern without WITHIN whose matches can grow without bound: each \
         key would keep every row from a match's start; add WITHIN INTERVAL '10' MINUTE after \
         the PATTERN, or a state_ttl (state_ttl = '1 hour' on the sink, or SET state_ttl = \
         '1 hour' in the REPL), which then bounds every match",
        spec.pattern.display(&spec.variables)
    )))
}
