//! A rule writing to a real PostgreSQL, `vigil run --state-dir` killed (SIGKILL) 20 times
//! and started again until its input is done: with the checkpoint epoch committed in the
//! same transaction as the rows, its table holds exactly what one uninterrupted run writes.

use vigil_tests::postgres::Postgres;

use super::durable::{CHECKPOINTED_RUN, LocalState, finish, kill_loop_watching, start_with};
use super::scratch;

/// Generated readings, written once as the input file.
const INPUTS: &str = "
    CREATE SOURCE generated (sensor_id TEXT, temperature DOUBLE, ts TIMESTAMP)
    WITH (connector = 'generator', kind = 'sensors', count = '1500000', keys = '50',
          disorder_ms = '2000', seed = '11');
    CREATE SINK readings WITH (connector = 'file', path = 'readings.jsonl');
    CREATE SINK readings AS SELECT * FROM generated;";

/// The readings, and a table named `table` for the alerts (append-only: copied in).
fn profile(table: &str) -> String {
    format!(
        "CREATE SOURCE sensors (sensor_id TEXT, temperature DOUBLE, ts TIMESTAMP,
            WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
         WITH (connector = 'file', path = 'readings.jsonl');
         CREATE SINK hot WITH (connector = 'postgres', table = '{table}');"
    )
}

const RULE: &str =
    "CREATE SINK hot AS SELECT sensor_id, temperature, ts FROM sensors WHERE temperature > 28;";

/// The single number `sql` answers.
fn number(server: &Postgres, runtime: &tokio::runtime::Runtime, sql: &str) -> i64 {
    let rows = runtime.block_on(server.rows(sql));
    rows[0][0]
        .parse()
        .unwrap_or_else(|_| panic!("{sql}: {rows:?}"))
}

#[test]
fn a_rule_killed_twenty_times_leaves_every_row_in_its_postgres_table_exactly_once() {
    vigil_tests::test_logging();
    let server = Postgres::start();
    let url = server.url();
    let env = [("VIGIL_POSTGRES_URL", url.as_str())];
    let dir = scratch("postgres-kills");
    std::fs::write(dir.join("inputs.sql"), INPUTS).unwrap();
    std::fs::write(dir.join("truth.sql"), profile("truth")).unwrap();
    std::fs::write(dir.join("profile.sql"), profile("hot")).unwrap();
    std::fs::write(dir.join("rule.sql"), RULE).unwrap();
    finish(start_with(&dir, &["run", "inputs.sql"], &[]));
    finish(start_with(&dir, &["run", "truth.sql", "rule.sql"], &env));

    let state = LocalState(dir.join("state"));
    let tally = kill_loop_watching(&dir, &CHECKPOINTED_RUN, &env, 23, &state);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let truth = number(&server, &runtime, "SELECT count(*) FROM truth");
    let lost = number(
        &server,
        &runtime,
        "SELECT count(*) FROM (SELECT * FROM truth EXCEPT ALL SELECT * FROM hot) AS lost",
    );
    let duplicated = number(
        &server,
        &runtime,
        "SELECT count(*) FROM (SELECT * FROM hot EXCEPT ALL SELECT * FROM truth) AS extra",
    );
    let epoch = number(
        &server,
        &runtime,
        "SELECT max(epoch) FROM vigil_sink_epochs WHERE sink_table = 'hot'",
    );
    eprintln!(
        "postgres: {} kills ({} during a checkpoint write), {truth} rows, {lost} lost, \
         {duplicated} duplicated, last epoch {epoch}",
        tally.kills, tally.mid_checkpoint
    );
    assert!(truth > 1000, "{truth} rows");
    assert_eq!((lost, duplicated), (0, 0));
    assert!(epoch > 0, "no epoch recorded");
}
