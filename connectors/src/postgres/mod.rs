//! The `postgres` connector: a sink writing a query's results into a table, which
//! TimescaleDB makes a hypertable.
//!
//! `CREATE SINK stats WITH (connector = 'postgres', table = 'sensor_stats_1m', key =
//! 'sensor_id, window_start')`. The connection URL comes from the environment
//! (`VIGIL_POSTGRES_URL`, or the variable `url_env` names), never from a rule file. The
//! table is created if missing, with the result's columns (timestamps as `timestamptz`)
//! and `key` as its primary key; `create = 'hypertable'` makes it a TimescaleDB hypertable
//! on `time_column` (default `window_start`). An append-only query's rows are copied in
//! (binary `COPY`), or upserted when it has a `key`; an updating query needs `key`, and the
//! table then holds its current answer: each change upserts or deletes its key's row. Every
//! batch is one transaction, or with a state dir every checkpoint epoch, committed with the
//! epoch (`epochs.rs`); a failing database is tried again with backoff, and the query fails
//! with its message once the tries are spent. Nothing is dropped.

mod columns;
mod epochs;
mod sink;
mod writes;

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use vigil_engine::connector::{ConnectorFactory, Sink, is_changelog};
use vigil_engine::sql::Options;

pub use sink::PostgresSink;

use crate::ConnectorError;

/// The environment variable holding the connection URL when a sink names none.
pub const URL_ENV: &str = "VIGIL_POSTGRES_URL";

/// Looks up an environment variable.
pub type Environment = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Factory of the `postgres` connector.
pub struct PostgresFactory {
    env: Environment,
}

impl Default for PostgresFactory {
    /// Reads the process environment.
    fn default() -> Self {
        Self::with_environment(Arc::new(|name| std::env::var(name).ok()))
    }
}

impl PostgresFactory {
    /// A factory whose sinks find their URLs through `env` (tests give their own).
    pub fn with_environment(env: Environment) -> Self {
        Self { env }
    }
}

/// A sink's options.
pub(crate) struct SinkConfig {
    table: String,
    key: Vec<String>,
    url_env: String,
    /// With `create = 'hypertable'`: the time column.
    hypertable: Option<String>,
    env: Environment,
}

impl SinkConfig {
    fn from_options(
        options: &Options,
        schema: &SchemaRef,
        env: Environment,
    ) -> Result<Self, ConnectorError> {
        let mut r = options.reader();
        let table = r.require("table")?;
        let key: Vec<String> = (r.take("key").unwrap_or_default().split(','))
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(str::to_string)
            .collect();
        let url_env = r.take("url_env").unwrap_or_else(|| URL_ENV.to_string());
        let create = r.take("create");
        let time_column = r.take("time_column");
        r.finish()?;
        // A declaration without a query has no columns yet: its key is checked when a
        // query attaches.
        let declared_only = schema.fields().is_empty();
        for column in key.iter().chain(&time_column).filter(|_| !declared_only) {
            if schema.index_of(column).is_err() || column == "op" {
                return Err(ConnectorError::config(
                    "key",
                    format!("the query has no column '{column}'"),
                ));
            }
        }
        if is_changelog(schema) && key.is_empty() {
            return Err(ConnectorError::config(
                "key",
                "an updating query's table holds its current answer by key: name the GROUP BY \
                 columns (key = 'account_id')",
            ));
        }
        let hypertable = match create.as_deref() {
            None | Some("table") => None,
            Some("hypertable") => Some(time_column.unwrap_or_else(|| "window_start".into())),
            Some(other) => {
                return Err(ConnectorError::config(
                    "create",
                    format!("'{other}': use 'table' (the default) or 'hypertable'"),
                ));
            }
        };
        Ok(Self {
            table,
            key,
            url_env,
            hypertable,
            env,
        })
    }

    /// The connection URL, from the environment.
    fn url(&self) -> Result<String, ConnectorError> {
        (self.env)(&self.url_env).ok_or_else(|| {
            ConnectorError::config(
                "url_env",
                format!(
                    "the environment variable {} with the Postgres URL is not set",
                    self.url_env
                ),
            )
        })
    }
}

impl ConnectorFactory for PostgresFactory {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn create_sink(
        &self,
        options: &Options,
        schema: SchemaRef,
    ) -> Result<Box<dyn Sink>, ConnectorError> {
        let config = SinkConfig::from_options(options, &schema, Arc::clone(&self.env))?;
        let changelog = is_changelog(&schema);
        let fields = &schema.fields()[usize::from(changelog)..];
        let columns = columns::columns(fields)?;
        Ok(Box::new(PostgresSink::new(config, columns, changelog)))
    }
}
