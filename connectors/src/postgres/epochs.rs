//! With a state dir, each sink records in its database the last checkpoint epoch whose
//! output it committed, in the same transaction as that output: table
//! `vigil_sink_epochs (query, sink_table, epoch)`. A query resumes from that epoch, so what
//! a crash left uncommitted is written again, once.

use tokio_postgres::Client;

use super::sink::Failure;

/// The table of committed epochs, in the connection's default schema.
pub const EPOCHS_TABLE: &str = "vigil_sink_epochs";

/// Creates the epochs table if it is missing. Sinks of several queries starting together
/// take an advisory lock first: concurrent `CREATE TABLE IF NOT EXISTS` of one name can
/// fail on Postgres' catalog.
pub async fn ensure_table(client: &Client) -> Result<(), Failure> {
    client
        .batch_execute(&format!(
            "BEGIN; SELECT pg_advisory_xact_lock(hashtext('{EPOCHS_TABLE}')); \
             CREATE TABLE IF NOT EXISTS {EPOCHS_TABLE} (query text NOT NULL, \
             sink_table text NOT NULL, epoch bigint NOT NULL, \
             committed_at timestamptz NOT NULL DEFAULT now(), \
             PRIMARY KEY (query, sink_table)); COMMIT"
        ))
        .await?;
    Ok(())
}

/// The last epoch `query` committed into `table`; 0 when none.
pub async fn committed(client: &Client, query: &str, table: &str) -> Result<u64, Failure> {
    let row = client
        .query_opt(
            &format!("SELECT epoch FROM {EPOCHS_TABLE} WHERE query = $1 AND sink_table = $2"),
            &[&query, &table],
        )
        .await?;
    Ok(row.map_or(0, |r| r.get::<_, i64>(0).max(0) as u64))
}

/// Records `epoch` as committed, inside the transaction that commits its output.
pub async fn record(client: &Client, query: &str, table: &str, epoch: u64) -> Result<(), Failure> {
    let epoch = i64::try_from(epoch).map_err(|_| Failure::Fatal("epoch out of range".into()))?;
    client
        .execute(
            &format!(
                "INSERT INTO {EPOCHS_TABLE} (query, sink_table, epoch) VALUES ($1, $2, $3) \
                 ON CONFLICT (query, sink_table) DO UPDATE \
                 SET epoch = EXCLUDED.epoch, committed_at = now()"
            ),
            &[&query, &table, &epoch],
        )
        .await?;
    Ok(())
}
