//! [`StreamDb`]: the sqllogictest adapter, and [`run_to_completion`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{RecordBatch, new_null_array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::prelude::SessionContext;
use sqllogictest::{DBOutput, DefaultColumnType};
use vigil_engine::plan::OperatorGraph;
use vigil_engine::replay::{Script, run_to_completion};
use vigil_engine::sql::StreamParser;
use vigil_engine::{Engine, EngineConfig, PlannedQuery, StatementOutcome};

use crate::format_rows;

/// The workspace root, where `queries/` lives.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_path_buf()
}

/// A sqllogictest database over a Vigil engine with scripted inputs.
pub struct StreamDb {
    engine: Engine,
    script: Script,
    batch_size: usize,
    sinks: HashMap<String, PlannedQuery>,
    late: HashMap<String, Vec<RecordBatch>>,
    values: SessionContext,
}

/// Errors of the harness.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// From the engine.
    #[error("{0}")]
    Engine(String),
    /// From the harness itself.
    #[error("{0}")]
    Harness(String),
}

fn engine_err(e: vigil_engine::Error) -> HarnessError {
    HarnessError::Engine(e.to_string())
}

impl StreamDb {
    /// A fresh database whose inputs are cut into batches of `batch_size`.
    pub fn new(batch_size: usize) -> Self {
        let config = EngineConfig {
            batch_size,
            start_queries: false,
            ..EngineConfig::default()
        };
        Self {
            engine: Engine::with_config(vigil_connectors::registry(), config),
            script: Script::default(),
            batch_size,
            sinks: HashMap::new(),
            late: HashMap::new(),
            values: SessionContext::new(),
        }
    }

    async fn insert(&mut self, sql: &str) -> Result<(), HarnessError> {
        // INSERT INTO name [(columns)] VALUES ...: DataFusion evaluates the VALUES, cast to
        // the source; columns left out are NULL.
        let rest = sql.trim_start()[6..].trim_start();
        let rest = rest
            .strip_prefix("INTO")
            .or_else(|| rest.strip_prefix("into"))
            .unwrap_or(rest)
            .trim_start();
        let split = rest
            .find(|c: char| c.is_whitespace() || c == '(')
            .ok_or_else(|| HarnessError::Harness("INSERT INTO name VALUES ...".into()))?;
        let (name, values) = rest.split_at(split);
        let (columns, values) = column_list(values)?;
        let name = name.to_ascii_lowercase();
        let schema = self
            .engine
            .catalog()
            .sources()
            .get(&name)
            .map(|s| Arc::clone(&s.schema))
            .ok_or_else(|| HarnessError::Harness(format!("no source named '{name}'")))?;
        let batches = self
            .values
            .sql(values.trim())
            .await
            .map_err(|e| HarnessError::Harness(e.to_string()))?;
        let batches = batches
            .collect()
            .await
            .map_err(|e| HarnessError::Harness(e.to_string()))?;
        for batch in batches {
            let batch = match &columns {
                Some(columns) => widen(&batch, columns, &schema)?,
                None => batch,
            };
            self.script.push(&name, cast_to(&batch, &schema)?);
        }
        Ok(())
    }

    async fn load(&mut self, path: &str) -> Result<(), HarnessError> {
        let file = workspace_root().join(path);
        let sql = std::fs::read_to_string(&file)
            .map_err(|e| HarnessError::Harness(format!("{}: {e}", file.display())))?;
        self.execute(&sql)
            .await
            .map_err(|e| HarnessError::Engine(format!("{path}: {e}")))?;
        Ok(())
    }

    async fn execute(&mut self, sql: &str) -> Result<Option<Vec<Vec<String>>>, HarnessError> {
        let statements = StreamParser::parse_sql(sql).map_err(engine_err)?;
        let mut rows = None;
        for statement in statements {
            match self
                .engine
                .execute_statement(statement)
                .await
                .map_err(engine_err)?
            {
                StatementOutcome::SinkPlanned { name, query } => {
                    self.sinks.insert(name, query);
                }
                StatementOutcome::Query(query) => rows = Some(self.run(query.graph)?),
                StatementOutcome::Rows(batches) => rows = Some(format_rows(&batches)),
                StatementOutcome::Explain(text) => {
                    rows = Some(text.lines().map(|l| vec![l.to_string()]).collect())
                }
                _ => {}
            }
        }
        Ok(rows)
    }

    fn run(&mut self, graph: OperatorGraph) -> Result<Vec<Vec<String>>, HarnessError> {
        let out = run_to_completion(graph, &self.script, self.batch_size).map_err(engine_err)?;
        self.late = out.late;
        Ok(format_rows(&out.rows))
    }

    async fn results(&mut self, name: &str) -> Result<Vec<Vec<String>>, HarnessError> {
        if let Some(query) = self.sinks.get(name) {
            // Plan again: operators are stateful, and a sink may be read more than once.
            let planned = self.engine.plan(&query.sql).await;
            let graph = match planned {
                Ok(p) => p.graph,
                Err(e) => return Err(engine_err(e)),
            };
            return self.run(graph);
        }
        if let Some(rows) = self.late.get(name) {
            return Ok(format_rows(rows));
        }
        if self.engine.catalog().sinks().contains_key(name) {
            return Ok(Vec::new());
        }
        Err(HarnessError::Harness(format!("no sink named '{name}'")))
    }
}

/// Splits `(a, b) VALUES ...` into the named columns and the VALUES; `VALUES ...` names none.
fn column_list(values: &str) -> Result<(Option<Vec<String>>, &str), HarnessError> {
    let values = values.trim_start();
    let Some(list) = values.strip_prefix('(') else {
        return Ok((None, values));
    };
    let (names, values) = list
        .split_once(')')
        .ok_or_else(|| HarnessError::Harness("INSERT INTO name (columns) VALUES ...".into()))?;
    let names = names
        .split(',')
        .map(|n| n.trim().to_ascii_lowercase())
        .collect();
    Ok((Some(names), values.trim_start()))
}

/// The VALUES of named columns as a row of every column of `schema`, NULL where unnamed.
fn widen(
    batch: &RecordBatch,
    columns: &[String],
    schema: &SchemaRef,
) -> Result<RecordBatch, HarnessError> {
    if batch.num_columns() != columns.len() {
        return Err(HarnessError::Harness(format!(
            "INSERT names {} columns and gives {} values per row",
            columns.len(),
            batch.num_columns()
        )));
    }
    if let Some(unknown) = columns.iter().find(|c| schema.index_of(c).is_err()) {
        return Err(HarnessError::Harness(format!(
            "the source has no column '{unknown}'"
        )));
    }
    let all = schema.fields().iter().map(|field| {
        let column = match columns.iter().position(|c| c == field.name()) {
            Some(i) => Arc::clone(batch.column(i)),
            None => new_null_array(field.data_type(), batch.num_rows()),
        };
        (field.name().clone(), column)
    });
    RecordBatch::try_from_iter(all).map_err(|e| HarnessError::Harness(e.to_string()))
}

fn cast_to(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, HarnessError> {
    if batch.num_columns() != schema.fields().len() {
        return Err(HarnessError::Harness(format!(
            "INSERT gives {} values per row; the source has {} columns",
            batch.num_columns(),
            schema.fields().len()
        )));
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| cast(c, f.data_type()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| HarnessError::Harness(e.to_string()))?;
    RecordBatch::try_new(Arc::clone(schema), columns)
        .map_err(|e| HarnessError::Harness(e.to_string()))
}

/// Applies a changelog (first column `+I`, `-U`, `+U` or `-D`) and returns the rows it
/// leaves, sorted: the result a consumer of the changelog ends up with.
pub fn materialize(changes: Vec<Vec<String>>) -> Vec<Vec<String>> {
    let mut rows: Vec<Vec<String>> = Vec::new();
    for mut change in changes {
        let op = change.remove(0);
        if op.starts_with('+') {
            rows.push(change);
        } else if let Some(pos) = rows.iter().position(|r| *r == change) {
            rows.remove(pos);
        }
    }
    rows.sort();
    rows
}

fn strip_command<'a>(sql: &'a str, command: &str) -> Option<&'a str> {
    let trimmed = sql.trim().trim_end_matches(';').trim();
    let head = trimmed.get(..command.len())?;
    head.eq_ignore_ascii_case(command)
        .then(|| trimmed[command.len()..].trim())
}

#[async_trait]
impl sqllogictest::AsyncDB for StreamDb {
    type Error = HarnessError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, HarnessError> {
        let statement_ok = Ok(DBOutput::StatementComplete(0));
        if let Some(rest) = strip_command(sql, "SET batch_size") {
            let n = rest.trim_start_matches('=').trim();
            self.batch_size = n
                .parse()
                .map_err(|_| HarnessError::Harness(format!("bad batch size '{n}'")))?;
            return statement_ok;
        }
        if strip_command(sql, "CLEAR INPUTS").is_some() {
            self.script = Script::default();
            return statement_ok;
        }
        if strip_command(sql, "INSERT").is_some() {
            self.insert(sql.trim().trim_end_matches(';')).await?;
            return statement_ok;
        }
        if let Some(path) = strip_command(sql, "LOAD") {
            self.load(path.trim_matches('\'')).await?;
            return statement_ok;
        }
        let rows = if let Some(name) = strip_command(sql, "RESULTS") {
            Some(self.results(&name.to_ascii_lowercase()).await?)
        } else if let Some(query) = strip_command(sql, "MATERIALIZE") {
            self.execute(query).await?.map(materialize)
        } else {
            self.execute(sql).await?
        };
        match rows {
            None => statement_ok,
            Some(rows) => {
                let width = rows.first().map_or(1, Vec::len);
                Ok(DBOutput::Rows {
                    types: vec![DefaultColumnType::Any; width],
                    rows,
                })
            }
        }
    }

    fn engine_name(&self) -> &str {
        "vigil"
    }

    async fn shutdown(&mut self) {}
}
