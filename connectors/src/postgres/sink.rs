//! [`PostgresSink`]: each batch in one transaction: binary `COPY` for an append-only query;
//! for an updating one, the batch's last change per key, upserted (`INSERT ... ON CONFLICT
//! DO UPDATE`) or deleted, so the table always holds the current answer.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::row::{RowConverter, SortField};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls, Transaction};
use vigil_engine::connector::{Health, Sink};

use super::SinkConfig;
use super::columns::{Column, Values, create_table, quoted, quoted_table};
use crate::ConnectorError;

/// Tries per batch before the query fails with the database's message.
const ATTEMPTS: u32 = 8;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Why a write failed: worth trying again (the connection, the server restarting) or not
/// (the table, the data).
enum Failure {
    Transient(String),
    Fatal(String),
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Self {
        let message = match e.as_db_error() {
            Some(db) => format!("{}: {}", db.severity(), db.message()),
            None => e.to_string(),
        };
        // Without an SQLSTATE the connection failed; classes 08 (connection), 53
        // (resources), 57 (operator intervention) and 40 (rollbacks) pass.
        let transient = e.code().is_none_or(|code| {
            let class = &code.code()[..2];
            matches!(class, "08" | "53" | "57" | "40")
        });
        if transient {
            Self::Transient(message)
        } else {
            Self::Fatal(message)
        }
    }
}

impl From<ConnectorError> for Failure {
    fn from(e: ConnectorError) -> Self {
        Self::Fatal(e.to_string())
    }
}

/// Writes a query's results into a Postgres table.
pub struct PostgresSink {
    config: SinkConfig,
    columns: Vec<Column>,
    /// The query is updating: its rows carry `op` first.
    changelog: bool,
    client: Option<Client>,
    /// Where the sink says whether it reaches the database, for `/readyz`.
    health: Option<Health>,
}

impl PostgresSink {
    pub(super) fn new(config: SinkConfig, columns: Vec<Column>, changelog: bool) -> Self {
        Self {
            config,
            columns,
            changelog,
            client: None,
            health: None,
        }
    }

    /// The connection, made (and the table made ready) when there is none.
    async fn client(&mut self) -> Result<&mut Client, Failure> {
        if self.client.is_none() {
            let url = self.config.url()?;
            let (client, connection) = tokio_postgres::connect(&url, NoTls).await?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(error = %e, "the Postgres connection ended");
                }
            });
            self.prepare_table(&client).await?;
            self.client = Some(client);
        }
        Ok(self.client.as_mut().expect("connected above"))
    }

    /// Creates the table if it is missing, then checks that it can take every result
    /// column, taking its column types for binding.
    async fn prepare_table(&mut self, client: &Client) -> Result<(), Failure> {
        let table = &self.config.table;
        let ddl = create_table(table, &self.columns, &self.config.key);
        client.batch_execute(&ddl).await?;
        let rows = client
            .query(
                "SELECT attname::text, atttypid FROM pg_attribute \
                 WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped",
                &[&quoted_table(table)],
            )
            .await?;
        let existing: HashMap<String, u32> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        let mut problems = Vec::new();
        for column in &mut self.columns {
            match existing.get(&column.name).map(|oid| Type::from_oid(*oid)) {
                None => problems.push(format!("it has no column '{}'", column.name)),
                Some(Some(ty)) if column.binding.accepts(&ty) => column.ty = ty,
                Some(ty) => problems.push(format!(
                    "its column '{}' is {}, where the query writes {}",
                    column.name,
                    ty.map_or_else(|| "of another type".to_string(), |t| t.name().to_string()),
                    column.binding.created_type().name()
                )),
            }
        }
        if !problems.is_empty() {
            return Err(Failure::Fatal(format!(
                "table '{table}' cannot take the query's rows: {}",
                problems.join("; ")
            )));
        }
        if let Some(time_column) = &self.config.hypertable {
            make_hypertable(client, table, time_column).await?;
        }
        Ok(())
    }

    async fn try_write(&mut self, batch: &RecordBatch) -> Result<(), Failure> {
        let changelog = self.changelog;
        let columns = self.columns.clone();
        let (table, key) = (self.config.table.clone(), self.config.key.clone());
        let client = self.client().await?;
        let tx = client.transaction().await?;
        if changelog {
            apply_changes(&tx, &table, &columns, &key, batch).await?;
        } else {
            copy_rows(&tx, &table, &columns, batch).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl Sink for PostgresSink {
    async fn write(&mut self, batch: RecordBatch) -> Result<(), ConnectorError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let mut backoff = FIRST_BACKOFF;
        for attempt in 1.. {
            let error = match self.try_write(&batch).await {
                Ok(()) => {
                    if let (Some(health), true) = (&self.health, attempt > 1) {
                        health.reachable();
                    }
                    return Ok(());
                }
                Err(Failure::Fatal(error)) => error,
                Err(Failure::Transient(error)) if attempt < ATTEMPTS => {
                    tracing::warn!(table = %self.config.table, attempt, %error, "writing to Postgres failed; trying again");
                    if let Some(health) = &self.health {
                        health.unreachable(format!("Postgres: {error}"));
                    }
                    self.client = None;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
                Err(Failure::Transient(error)) => format!("{error} (after {ATTEMPTS} tries)"),
            };
            return Err(ConnectorError::External(format!(
                "postgres sink '{}': {error}",
                self.config.table
            )));
        }
        unreachable!("the loop returns")
    }

    async fn flush(&mut self) -> Result<(), ConnectorError> {
        Ok(())
    }

    fn report_health(&mut self, health: Health) {
        self.health = Some(health);
    }
}

/// Appends the rows of `batch` with a binary `COPY`.
async fn copy_rows(
    tx: &Transaction<'_>,
    table: &str,
    columns: &[Column],
    batch: &RecordBatch,
) -> Result<(), Failure> {
    let values = batch_values(batch, columns, 0)?;
    let names: Vec<String> = columns.iter().map(|c| quoted(&c.name)).collect();
    let statement = format!(
        "COPY {} ({}) FROM STDIN BINARY",
        quoted_table(table),
        names.join(", ")
    );
    let sink = tx.copy_in(&statement).await?;
    let types: Vec<Type> = columns.iter().map(|c| c.ty.clone()).collect();
    let writer = BinaryCopyInWriter::new(sink, &types);
    write_copy_rows(writer, &values, batch.num_rows()).await
}

/// Writes `rows` rows of `values` through a binary `COPY`, then ends it.
async fn write_copy_rows(
    writer: BinaryCopyInWriter,
    values: &[Values],
    rows: usize,
) -> Result<(), Failure> {
    let mut writer = std::pin::pin!(writer);
    let mut row: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(values.len());
    for i in 0..rows {
        row.clear();
        row.extend(values.iter().map(|v| v.get(i)));
        writer.as_mut().write(&row).await?;
    }
    writer.as_mut().finish().await?;
    Ok(())
}

/// Applies a changelog batch: per key its last change wins, an insert or update upserting
/// the row and a retraction deleting it.
async fn apply_changes(
    tx: &Transaction<'_>,
    table: &str,
    columns: &[Column],
    key: &[String],
    batch: &RecordBatch,
) -> Result<(), Failure> {
    let values = batch_values(batch, columns, 1)?;
    let key_at: Vec<usize> = (key.iter())
        .map(|k| {
            columns
                .iter()
                .position(|c| &c.name == k)
                .expect("checked at creation")
        })
        .collect();
    let (upserts, deletes) = last_change_per_key(batch, &key_at)?;
    if !deletes.is_empty() {
        let keyed: Vec<&Column> = key_at.iter().map(|&i| &columns[i]).collect();
        let names: Vec<String> = keyed.iter().map(|c| quoted(&c.name)).collect();
        let statement = format!(
            "DELETE FROM {} WHERE ({}) IN (SELECT * FROM UNNEST({}))",
            quoted_table(table),
            names.join(", "),
            array_params(&keyed)
        );
        let params: Vec<_> = key_at
            .iter()
            .map(|&i| values[i].array_of(&deletes))
            .collect();
        tx.execute(&statement, &param_refs(&params)).await?;
    }
    if !upserts.is_empty() {
        let all: Vec<&Column> = columns.iter().collect();
        let names: Vec<String> = columns.iter().map(|c| quoted(&c.name)).collect();
        let keys: Vec<String> = key.iter().map(|k| quoted(k)).collect();
        let updates: Vec<String> = (columns.iter())
            .filter(|c| !key.contains(&c.name))
            .map(|c| format!("{0} = EXCLUDED.{0}", quoted(&c.name)))
            .collect();
        let on_conflict = if updates.is_empty() {
            "DO NOTHING".to_string()
        } else {
            format!("DO UPDATE SET {}", updates.join(", "))
        };
        let statement = format!(
            "INSERT INTO {} ({}) SELECT * FROM UNNEST({}) ON CONFLICT ({}) {on_conflict}",
            quoted_table(table),
            names.join(", "),
            array_params(&all),
            keys.join(", ")
        );
        let params: Vec<_> = values.iter().map(|v| v.array_of(&upserts)).collect();
        tx.execute(&statement, &param_refs(&params)).await?;
    }
    Ok(())
}

/// `$1::type[], $2::type[], ...` for `columns`.
fn array_params(columns: &[&Column]) -> String {
    (columns.iter().enumerate())
        .map(|(i, c)| format!("${}::{}[]", i + 1, c.ty.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn param_refs(params: &[Box<dyn ToSql + Sync + Send>]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

/// The values of each of `columns`, which start at column `first` of `batch`.
fn batch_values(
    batch: &RecordBatch,
    columns: &[Column],
    first: usize,
) -> Result<Vec<Values>, ConnectorError> {
    (columns.iter().enumerate())
        .map(|(i, c)| Values::of(batch.column(first + i), c.binding))
        .collect()
}

/// The rows whose change is the last of their key in the batch: those to upsert and those
/// to delete, each in batch order.
fn last_change_per_key(
    batch: &RecordBatch,
    key_at: &[usize],
) -> Result<(Vec<usize>, Vec<usize>), ConnectorError> {
    let ops = (batch.column(0).as_string_opt::<i32>())
        .ok_or_else(|| ConnectorError::Schema("a changelog without its op column".into()))?;
    let key_columns: Vec<_> = key_at
        .iter()
        .map(|&i| batch.column(1 + i).clone())
        .collect();
    let fields = key_columns
        .iter()
        .map(|c| SortField::new(c.data_type().clone()))
        .collect();
    let keys = RowConverter::new(fields)?.convert_columns(&key_columns)?;
    let mut last: HashMap<&[u8], usize> = HashMap::new();
    for i in 0..batch.num_rows() {
        last.insert(keys.row(i).data(), i);
    }
    let mut rows: Vec<usize> = last.into_values().collect();
    rows.sort_unstable();
    let retracts = |i: &usize| matches!(ops.value(*i), "-D" | "-U");
    let (deletes, upserts) = rows.into_iter().partition(retracts);
    Ok((upserts, deletes))
}

/// Makes `table` a TimescaleDB hypertable on `time_column`, saying so clearly when the
/// extension is not there.
async fn make_hypertable(client: &Client, table: &str, time_column: &str) -> Result<(), Failure> {
    let installed = client
        .query_opt(
            "SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'",
            &[],
        )
        .await?;
    if installed.is_none() {
        return Err(Failure::Fatal(format!(
            "create = 'hypertable' for table '{table}' needs TimescaleDB, whose extension is \
             not installed in this database (CREATE EXTENSION timescaledb)"
        )));
    }
    client
        .execute(
            "SELECT create_hypertable($1::text::regclass, $2::text::name, if_not_exists => TRUE)",
            &[&quoted_table(table), &time_column],
        )
        .await?;
    Ok(())
}
