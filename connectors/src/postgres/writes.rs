//! The statements a batch becomes, inside the transaction the sink opened: binary `COPY` for
//! append-only rows; for changes, each key's last change in the batch, upserted
//! (`INSERT ... ON CONFLICT DO UPDATE`) or deleted.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{AsArray, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::row::{RowConverter, SortField};
use tokio_postgres::Client;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

use super::columns::{Binding, Column, Values, quoted, quoted_table};
use super::sink::Failure;
use crate::ConnectorError;

/// How a sink's batches reach its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Rows appended by `COPY`: an append-only result without a key.
    Copy,
    /// Rows upserted by key: an append-only result with a key, so a row written again
    /// (after a restart without a state dir) replaces itself.
    UpsertRows,
    /// Changes applied by key: an updating result, `op` first.
    Changes,
}

/// Writes `batch` to `table` in `mode`.
pub async fn write_batch(
    client: &Client,
    mode: WriteMode,
    table: &str,
    columns: &[Column],
    key: &[String],
    batch: &RecordBatch,
) -> Result<(), Failure> {
    match mode {
        WriteMode::Copy => copy_rows(client, table, columns, batch).await,
        WriteMode::UpsertRows => {
            apply_changes(client, table, columns, key, &as_inserts(batch)?).await
        }
        WriteMode::Changes => apply_changes(client, table, columns, key, batch).await,
    }
}

/// An append-only batch as a changelog of inserts.
fn as_inserts(batch: &RecordBatch) -> Result<RecordBatch, ConnectorError> {
    let ops = Arc::new(StringArray::from(vec!["+I"; batch.num_rows()]));
    let schema = batch.schema();
    let fields = std::iter::once(Arc::new(Field::new("op", DataType::Utf8, false)))
        .chain(schema.fields().iter().cloned());
    let columns = std::iter::once(ops as _).chain(batch.columns().iter().cloned());
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields.collect::<Vec<_>>())),
        columns.collect(),
    )?)
}

/// Appends the rows of `batch` with a binary `COPY`.
async fn copy_rows(
    client: &Client,
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
    let sink = client.copy_in(&statement).await?;
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
    client: &Client,
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
        client.execute(&statement, &param_refs(&params)).await?;
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
            "INSERT INTO {} ({}) SELECT {} FROM UNNEST({}) AS u({}) ON CONFLICT ({}) {on_conflict}",
            quoted_table(table),
            names.join(", "),
            unnested_values(&all),
            array_params(&all),
            (1..=all.len())
                .map(|i| format!("c{i}"))
                .collect::<Vec<_>>()
                .join(", "),
            keys.join(", ")
        );
        let params: Vec<_> = values.iter().map(|v| v.array_of(&upserts)).collect();
        client.execute(&statement, &param_refs(&params)).await?;
    }
    Ok(())
}

/// `$1::type[], $2::type[], ...` for `columns`. A list column goes as an array of its
/// values' array literals (UNNEST would flatten an array of arrays).
fn array_params(columns: &[&Column]) -> String {
    (columns.iter().enumerate())
        .map(|(i, c)| match c.binding {
            Binding::TextList => format!("${}::text[]", i + 1),
            _ => format!("${}::{}[]", i + 1, c.ty.name()),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The select list over `UNNEST(...) AS u(c1, c2, ...)`: list literals cast back to arrays.
fn unnested_values(columns: &[&Column]) -> String {
    (columns.iter().enumerate())
        .map(|(i, c)| match c.binding {
            Binding::TextList => format!("c{}::text[]", i + 1),
            _ => format!("c{}", i + 1),
        })
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
