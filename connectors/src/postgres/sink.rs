//! [`PostgresSink`]: each batch in one transaction of its own, or, with a state dir, each
//! checkpoint epoch's batches in one transaction that also records the epoch
//! (`epochs.rs`), so the table holds every result once across crashes.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls};
use vigil_engine::connector::{Health, Sink};

use super::SinkConfig;
use super::columns::{Column, create_table, quoted_table};
use super::epochs;
use super::writes::{WriteMode, write_batch};
use crate::ConnectorError;

/// Tries per batch before the query fails with the database's message.
const ATTEMPTS: u32 = 8;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long a connection attempt may take, unless the URL says (`connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a write failed: worth trying again (the connection, the server restarting) or not
/// (the table, the data).
pub(super) enum Failure {
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
    mode: WriteMode,
    client: Option<Client>,
    /// Where the sink says whether it reaches the database, for `/readyz`.
    health: Option<Health>,
    /// With a state dir: output is committed at checkpoints, with their epoch.
    epochs: Option<Epochs>,
}

/// The transaction of the checkpoint epoch being written.
struct Epochs {
    /// The query's name, which keys its committed epochs.
    query: String,
    /// The epoch's batches so far: a lost connection takes the open transaction with it,
    /// and they are written again on the next.
    pending: Vec<RecordBatch>,
    /// Whether the current connection has the epoch's transaction open.
    open: bool,
}

/// One thing the sink does against the database, tried again while it fails transiently.
enum Step<'a> {
    /// Writes one batch in a transaction of its own.
    Batch(&'a RecordBatch),
    /// Writes the newest pending batch into the epoch's transaction.
    EpochBatch,
    /// Commits the epoch's transaction with its epoch.
    Commit(u64),
    /// Reads the last committed epoch.
    ReadEpoch,
}

impl PostgresSink {
    pub(super) fn new(config: SinkConfig, columns: Vec<Column>, changelog: bool) -> Self {
        let mode = match (changelog, config.key.is_empty()) {
            (true, _) => WriteMode::Changes,
            (false, true) => WriteMode::Copy,
            (false, false) => WriteMode::UpsertRows,
        };
        Self {
            config,
            columns,
            mode,
            client: None,
            health: None,
            epochs: None,
        }
    }

    /// Makes the connection (and the table ready) when there is none. A new connection has
    /// no transaction open.
    async fn connect(&mut self) -> Result<(), Failure> {
        if self.client.is_some() {
            return Ok(());
        }
        let mut settings: tokio_postgres::Config = (self.config.url()?.parse())
            .map_err(|e| Failure::Fatal(format!("the connection URL does not parse: {e}")))?;
        // A statement starting the query waits for this: an unreachable host must not hold
        // it for the operating system's TCP timeout.
        if settings.get_connect_timeout().is_none() {
            settings.connect_timeout(CONNECT_TIMEOUT);
        }
        let (client, connection) = settings.connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "the Postgres connection ended");
            }
        });
        self.prepare_table(&client).await?;
        if let Some(epochs) = &mut self.epochs {
            epochs.open = false;
        }
        self.client = Some(client);
        Ok(())
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

    async fn write_to(&self, client: &Client, batch: &RecordBatch) -> Result<(), Failure> {
        let (table, key) = (&self.config.table, &self.config.key);
        write_batch(client, self.mode, table, &self.columns, key, batch).await
    }

    async fn try_step(&mut self, step: &Step<'_>) -> Result<Option<u64>, Failure> {
        self.connect().await?;
        let client = self.client.as_ref().expect("connected above");
        match step {
            Step::Batch(batch) => {
                client.batch_execute("BEGIN").await?;
                self.write_to(client, batch).await?;
                client.batch_execute("COMMIT").await?;
            }
            Step::EpochBatch => {
                let epochs = self.epochs.as_ref().expect("epochs");
                if epochs.open {
                    let newest = epochs.pending.last().expect("pushed before the step");
                    self.write_to(client, newest).await?;
                } else {
                    self.reopen_epoch().await?;
                }
            }
            Step::Commit(epoch) => self.try_commit(*epoch).await?,
            Step::ReadEpoch => {
                let query = &self.epochs.as_ref().expect("epochs").query;
                epochs::ensure_table(client).await?;
                return Ok(Some(
                    epochs::committed(client, query, &self.config.table).await?,
                ));
            }
        }
        Ok(None)
    }

    /// Opens the epoch's transaction on the current connection and writes the epoch's
    /// batches so far into it: what a lost connection took with it.
    async fn reopen_epoch(&mut self) -> Result<(), Failure> {
        let client = self.client.as_ref().expect("connected");
        client.batch_execute("BEGIN").await?;
        for batch in &self.epochs.as_ref().expect("epochs").pending {
            self.write_to(client, batch).await?;
        }
        self.epochs.as_mut().expect("epochs").open = true;
        Ok(())
    }

    /// Commits the epoch's output with `epoch`. On a new connection the transaction is
    /// gone: either it committed just before the connection went (the recorded epoch
    /// says so) or its batches are written again first.
    async fn try_commit(&mut self, epoch: u64) -> Result<(), Failure> {
        let table = &self.config.table;
        let client = self.client.as_ref().expect("connected");
        let epochs = self.epochs.as_ref().expect("epochs");
        if !epochs.open {
            if epochs::committed(client, &epochs.query, table).await? >= epoch {
                self.epochs.as_mut().expect("epochs").pending.clear();
                return Ok(());
            }
            self.reopen_epoch().await?;
        }
        let (client, epochs) = (
            self.client.as_ref().expect("connected"),
            self.epochs.as_ref().expect("epochs"),
        );
        epochs::record(client, &epochs.query, &self.config.table, epoch).await?;
        client.batch_execute("COMMIT").await?;
        let epochs = self.epochs.as_mut().expect("epochs");
        epochs.open = false;
        epochs.pending.clear();
        Ok(())
    }

    /// The query's error for `error`, naming the sink's table.
    fn failed(&self, error: impl std::fmt::Display) -> ConnectorError {
        ConnectorError::External(format!("postgres sink '{}': {error}", self.config.table))
    }

    /// Does `step`, trying again with backoff while the database fails transiently (the
    /// sink then reports itself unreachable); the query fails with the database's message
    /// once the tries are spent, or at once for a failure that will not pass.
    async fn retrying(&mut self, step: Step<'_>) -> Result<Option<u64>, ConnectorError> {
        let mut backoff = FIRST_BACKOFF;
        for attempt in 1.. {
            let error = match self.try_step(&step).await {
                Ok(answer) => {
                    if let (Some(health), true) = (&self.health, attempt > 1) {
                        health.reachable();
                    }
                    return Ok(answer);
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
            return Err(self.failed(error));
        }
        unreachable!("the loop returns")
    }
}

#[async_trait]
impl Sink for PostgresSink {
    /// Creates the table, or checks the existing one can take every result column. A
    /// database not reachable yet is left to the writes, which try again.
    async fn open(&mut self) -> Result<(), ConnectorError> {
        match self.connect().await {
            Ok(()) => Ok(()),
            Err(Failure::Fatal(error)) => Err(self.failed(error)),
            Err(Failure::Transient(error)) => {
                tracing::warn!(table = %self.config.table, %error, "Postgres is not reachable yet; the first write tries again");
                Ok(())
            }
        }
    }

    async fn write(&mut self, batch: RecordBatch) -> Result<(), ConnectorError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        match &mut self.epochs {
            None => self.retrying(Step::Batch(&batch)).await?,
            Some(epochs) => {
                epochs.pending.push(batch);
                self.retrying(Step::EpochBatch).await?
            }
        };
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), ConnectorError> {
        Ok(())
    }

    /// A state dir: from now on output is committed at checkpoints, with the epoch.
    async fn committed_epoch(&mut self, query: &str) -> Result<Option<u64>, ConnectorError> {
        self.epochs = Some(Epochs {
            query: query.to_string(),
            pending: Vec::new(),
            open: false,
        });
        self.retrying(Step::ReadEpoch).await
    }

    async fn commit(&mut self, epoch: u64) -> Result<(), ConnectorError> {
        if self.epochs.is_some() {
            self.retrying(Step::Commit(epoch)).await?;
        }
        Ok(())
    }

    /// The recorded epoch belongs to the query as a whole, not to one of its processes.
    fn single_writer(&self) -> bool {
        true
    }

    fn report_health(&mut self, health: Health) {
        self.health = Some(health);
    }
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
