//! Runs rule tests: the rule's sources swapped for a test's input events, the rule run to the
//! end of input deterministically, its sinks' rows compared with what the test expects.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{ArrayRef, RecordBatch, new_null_array};
use datafusion::arrow::datatypes::SchemaRef;
use vigil_engine::replay::{RunOutput, Script, run_to_completion};
use vigil_engine::{Engine, PlannedQuery, StatementOutcome};

use crate::diff::diff;
use crate::fixture::{Table, TestCase, TestFile};
use crate::report::{RuleReport, TestReport};
use crate::values::{format_rows, normalize, parse_column};
use crate::{Rule, RulesDir, RulesError};

/// How the rule under test gets its catalog: a fresh engine that only plans.
pub type NewEngine<'a> = &'a dyn Fn() -> Engine;

/// The result of one test case.
#[derive(Debug, Clone)]
pub struct CaseOutcome {
    /// The case's name.
    pub name: String,
    /// `file:line` of its `test:` line.
    pub location: String,
    /// What went wrong, each readable on its own (with a diff for wrong rows); empty when
    /// the case passed.
    pub failures: Vec<String>,
    /// How long it took to run.
    pub seconds: f64,
}

impl CaseOutcome {
    /// Whether the case passed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Runs every case of `test` against `rule`, whose sources and sinks `profile` declares (if
/// the rule does not declare them itself).
pub async fn run_test_file(
    new_engine: NewEngine<'_>,
    profile: Option<&Path>,
    rule: &Rule,
    test: &TestFile,
) -> Result<Vec<CaseOutcome>, RulesError> {
    let profile = match profile {
        Some(path) => Some((
            path.display().to_string(),
            std::fs::read_to_string(path).map_err(|e| RulesError::io(path, e))?,
        )),
        None => None,
    };
    let mut outcomes = Vec::with_capacity(test.cases.len());
    for case in &test.cases {
        let started = Instant::now();
        let failures = match run_case(new_engine, profile.as_ref(), rule, case).await {
            Ok(failures) => failures,
            Err(failure) => vec![failure],
        };
        outcomes.push(CaseOutcome {
            name: case.name.clone(),
            location: format!("{}:{}", test.file, case.line),
            failures,
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    Ok(outcomes)
}

/// Which of a directory's tests a run takes.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Only these rules' tests (all when empty).
    pub rules: Vec<String>,
    /// Only cases whose `rule: case name` contains this text.
    pub filter: Option<String>,
}

impl Selection {
    fn takes_case(&self, rule: &str, case: &str) -> bool {
        self.filter
            .as_deref()
            .is_none_or(|text| format!("{rule}: {case}").contains(text))
    }
}

/// Runs the selected tests of a rules directory with `profile`; with no rules named, the
/// report lists the rules that have no test.
pub async fn run_directory(
    new_engine: NewEngine<'_>,
    dir: &RulesDir,
    profile: Option<&Path>,
    selection: &Selection,
) -> Result<TestReport, RulesError> {
    let tests = dir.test_paths()?;
    let test_of = |path: &PathBuf| {
        path.file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned()
    };
    if let Some(unknown) = selection
        .rules
        .iter()
        .find(|name| !tests.iter().any(|t| test_of(t) == **name))
    {
        let names: Vec<String> = tests.iter().map(test_of).collect();
        return Err(RulesError::Layout(format!(
            "no test for rule '{unknown}' (rules with tests: {})",
            names.join(", ")
        )));
    }
    let mut report = TestReport::default();
    for path in &tests {
        let name = test_of(path);
        if !selection.rules.is_empty() && !selection.rules.contains(&name) {
            continue;
        }
        let rule = Rule::read(&dir.rule_of_test(path))?;
        let mut file = TestFile::read(path)?;
        file.cases
            .retain(|case| selection.takes_case(&name, &case.name));
        report.rules.push(RuleReport {
            rule: name,
            file: file.file.clone(),
            cases: run_test_file(new_engine, profile, &rule, &file).await?,
        });
    }
    if selection.rules.is_empty() {
        for rule in dir.rule_paths()? {
            let name = test_of(&rule);
            if !tests.iter().any(|t| test_of(t) == name) {
                report.untested.push(name);
            }
        }
    }
    Ok(report)
}

/// One case: its failures, or the one problem that stopped it.
async fn run_case(
    new_engine: NewEngine<'_>,
    profile: Option<&(String, String)>,
    rule: &Rule,
    case: &TestCase,
) -> Result<Vec<String>, String> {
    let mut engine = new_engine();
    engine.config_mut().start_queries = false;
    if let Some((file, sql)) = profile {
        engine.execute(sql).await.map_err(|e| e.report(file, sql))?;
    }
    let rule_file = rule.path.display().to_string();
    let mut sinks: BTreeMap<String, PlannedQuery> = BTreeMap::new();
    for outcome in engine
        .execute(&rule.sql)
        .await
        .map_err(|e| e.report(&rule_file, &rule.sql))?
    {
        if let StatementOutcome::SinkPlanned { name, query } = outcome {
            sinks.insert(name, query);
        }
    }
    let script = script(&engine, case)?;
    // Each sink's query runs once, on every input event in its own batch: the output shows
    // each change as a stream would at worst.
    let mut outputs: BTreeMap<String, (SchemaRef, RunOutput)> = BTreeMap::new();
    for (name, query) in sinks {
        let schema = query.output_schema();
        let output = run_to_completion(query.graph, &script, 1)
            .map_err(|e| format!("running sink {name}: {e}"))?;
        outputs.insert(name, (schema, output));
    }
    let mut failures = Vec::new();
    for expected in &case.expects {
        let Some((schema, output)) = outputs.get(&expected.name) else {
            let names: Vec<&str> = outputs.keys().map(String::as_str).collect();
            failures.push(format!(
                "expect {} (line {}): the rule writes no sink of that name (its sinks: {})",
                expected.name,
                expected.line,
                names.join(", ")
            ));
            continue;
        };
        if let Err(failure) = compare(expected, schema, &output.rows) {
            failures.push(failure);
        }
    }
    if let Some((count, line)) = case.late {
        let late: u64 = outputs.values().map(|(_, o)| o.late_events).sum();
        if late != count {
            failures.push(format!(
                "expect late (line {line}): expected {count} late events, the rule dropped {late}"
            ));
        }
    }
    Ok(failures)
}

/// The case's input blocks as batches of their sources, in arrival order.
fn script(engine: &Engine, case: &TestCase) -> Result<Script, String> {
    let mut script = Script::default();
    for input in &case.inputs {
        let sources = engine.catalog().sources();
        let source = sources.get(&input.name).ok_or_else(|| {
            let names: Vec<&str> = sources.keys().map(String::as_str).collect();
            format!(
                "input {} (line {}): no source of that name (sources: {})",
                input.name,
                input.line,
                names.join(", ")
            )
        })?;
        script.push(&input.name, batch(input, &source.schema)?);
    }
    Ok(script)
}

/// An input block as a batch of the source's schema; columns it does not name are NULL.
fn batch(input: &Table, schema: &SchemaRef) -> Result<RecordBatch, String> {
    if let Some(unknown) = input
        .header
        .iter()
        .find(|h| schema.column_with_name(h).is_none())
    {
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        return Err(format!(
            "input {} (line {}): the source has no column '{unknown}' (its columns: {})",
            input.name,
            input.line,
            names.join(", ")
        ));
    }
    let rows = input.rows.len();
    let columns = schema
        .fields()
        .iter()
        .map(
            |field| match input.header.iter().position(|h| h == field.name()) {
                None => Ok(new_null_array(field.data_type(), rows)),
                Some(i) => {
                    let cells: Vec<&str> = input.rows.iter().map(|(_, r)| r[i].as_str()).collect();
                    parse_column(&cells, field.data_type()).map_err(|e| {
                        format!(
                            "input {} (line {}), column {}: {e}",
                            input.name,
                            input.line,
                            field.name()
                        )
                    })
                }
            },
        )
        .collect::<Result<Vec<ArrayRef>, String>>()?;
    let options = datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(rows));
    RecordBatch::try_new_with_options(Arc::clone(schema), columns, &options)
        .map_err(|e| format!("input {} (line {}): {e}", input.name, input.line))
}

/// Compares a sink's rows with an `expect` block, on the columns the block names; the
/// failure is a diff.
fn compare(expected: &Table, schema: &SchemaRef, rows: &[RecordBatch]) -> Result<(), String> {
    let columns: Vec<usize> = expected
        .header
        .iter()
        .map(|name| {
            schema.index_of(name).map_err(|_| {
                let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                format!(
                    "expect {} (line {}): the sink has no column '{name}' (its columns: {})",
                    expected.name,
                    expected.line,
                    names.join(", ")
                )
            })
        })
        .collect::<Result<_, _>>()?;
    if schema.index_of("op").is_ok() && !expected.header.iter().any(|h| h == "op") {
        return Err(format!(
            "expect {} (line {}): the rule updates its rows; name the change kind as the first \
             column, op (+I, -U, +U, -D)",
            expected.name, expected.line
        ));
    }
    let actual: Vec<Vec<String>> = format_rows(rows)
        .into_iter()
        .map(|row| columns.iter().map(|&c| row[c].clone()).collect())
        .collect();
    let mut wanted: Vec<Vec<String>> = vec![Vec::new(); expected.rows.len()];
    for (i, &c) in columns.iter().enumerate() {
        let cells: Vec<&str> = expected.rows.iter().map(|(_, r)| r[i].as_str()).collect();
        for (row, cell) in wanted
            .iter_mut()
            .zip(normalize(&cells, schema.field(c).data_type()))
        {
            row.push(cell);
        }
    }
    if actual == wanted {
        return Ok(());
    }
    Err(format!(
        "expect {} (line {}): the rows differ (- expected, + actual)\n{}",
        expected.name,
        expected.line,
        render_diff(&expected.header, &wanted, &actual)
    ))
}

/// A row diff as aligned table lines: ` ` both, `-` expected only, `+` actual only.
fn render_diff(header: &[String], expected: &[Vec<String>], actual: &[Vec<String>]) -> String {
    let lines = diff(expected, actual);
    let mut widths: Vec<usize> = header.iter().map(String::len).collect();
    for (_, row) in &lines {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let render = |mark: char, row: &[String]| {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("    {mark} {}", cells.join(" | ").trim_end())
    };
    let mut out = vec![render(' ', header)];
    out.extend(lines.iter().map(|(mark, row)| render(mark.symbol(), row)));
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(cells: &[&[&str]]) -> Vec<Vec<String>> {
        cells
            .iter()
            .map(|r| r.iter().map(|c| c.to_string()).collect())
            .collect()
    }

    #[test]
    fn a_diff_keeps_common_rows_and_marks_the_rest() {
        let header = vec!["op".to_string(), "outstanding".to_string()];
        let expected = rows(&[&["+I", "210.0"], &["-U", "210.0"], &["+U", "422.0"]]);
        let actual = rows(&[&["+I", "210.0"], &["-U", "210.0"], &["+U", "423.0"]]);
        assert_eq!(
            render_diff(&header, &expected, &actual),
            "      op | outstanding\n\
             \x20     +I | 210.0\n\
             \x20     -U | 210.0\n\
             \x20   - +U | 422.0\n\
             \x20   + +U | 423.0"
        );
    }
}
