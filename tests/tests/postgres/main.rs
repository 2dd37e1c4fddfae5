//! The `postgres` sink against a real PostgreSQL server started per test: append-only
//! results copied in, an updating query's table holding its current answer, a table with
//! the wrong columns, and a database that goes away mid-stream and comes back.

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray, TimestampNanosecondArray};
use vigil_connectors::postgres::PostgresFactory;
use vigil_engine::runtime::RunningQuery;
use vigil_engine::{Engine, EngineConfig, StatementOutcome};
use vigil_tests::postgres::Postgres;
use vigil_tests::{format_rows, materialize};

/// An engine whose postgres sinks reach `server` through the variable `TEST_PG`.
fn engine(server: &Postgres) -> Engine {
    vigil_tests::test_logging();
    let url = server.url();
    let mut registry = vigil_connectors::registry();
    registry.register(Arc::new(PostgresFactory::with_environment(Arc::new(
        move |name| (name == "TEST_PG").then(|| url.clone()),
    ))));
    Engine::with_config(
        registry,
        EngineConfig {
            batch_size: 64,
            ..EngineConfig::default()
        },
    )
}

async fn start(engine: &mut Engine, sql: &str) -> Vec<RunningQuery> {
    (engine
        .execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter())
    .filter_map(|outcome| match outcome {
        StatementOutcome::SinkStarted { query, .. } => Some(query),
        _ => None,
    })
    .collect()
}

async fn finish(queries: Vec<RunningQuery>) -> Vec<Result<(), String>> {
    let mut outcomes = Vec::new();
    for query in queries {
        let outcome = tokio::time::timeout(Duration::from_secs(90), query.wait())
            .await
            .expect("the bounded query ends");
        outcomes.push(outcome.map_err(|e| e.to_string()));
    }
    outcomes
}

/// What a memory sink named `name` received, as text rows in the order they came.
fn memory_changes(engine: &Engine, name: &str) -> Vec<Vec<String>> {
    let batches = engine
        .registry()
        .memory()
        .output(name)
        .lock()
        .unwrap()
        .clone();
    format_rows(&batches)
}

/// What a memory sink named `name` received, as sorted text rows.
fn memory_rows(engine: &Engine, name: &str) -> Vec<Vec<String>> {
    let mut rows = memory_changes(engine, name);
    rows.sort();
    rows
}

const STATS: &str = "SELECT sensor_id, CAST(window_start AS BIGINT) AS window_ns,
    window_start, count(*) AS readings, round(max(temperature), 2) AS hottest
  FROM TUMBLE(sensors, ts, INTERVAL '10' SECOND)
  GROUP BY window_start, window_end, sensor_id";

/// Sensors, and 10-second statistics into table `sensor_stats` (by key), table
/// `sensor_stats_copied` (no key: copied in) and a memory sink.
fn stats_rule(source_options: &str) -> String {
    format!(
        "CREATE SOURCE sensors (sensor_id TEXT, temperature DOUBLE, humidity DOUBLE, ts TIMESTAMP,
            WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
            WITH (connector = 'generator', kind = 'sensors', keys = '5', seed = '7'{source_options});
         CREATE SINK sensor_stats WITH (connector = 'postgres', table = 'sensor_stats',
            key = 'sensor_id, window_start', url_env = 'TEST_PG') AS {STATS};
         CREATE SINK sensor_stats_copied WITH (connector = 'postgres',
            table = 'sensor_stats_copied', url_env = 'TEST_PG') AS {STATS};
         CREATE SINK expected WITH (connector = 'memory', name = 'expected') AS {STATS};"
    )
}

const STATS_ROWS: &str = "SELECT sensor_id, window_ns, readings, hottest FROM sensor_stats";

/// The statistics Vigil computed, as `STATS_ROWS` reads them back: the same columns,
/// numbers printed alike (Postgres prints 28.0 as 28).
fn expected_stats(engine: &Engine) -> Vec<Vec<String>> {
    (memory_rows(engine, "expected").into_iter())
        .map(|r| vec![r[0].clone(), r[1].clone(), r[3].clone(), same_number(&r[4])])
        .collect()
}

async fn stored_stats(server: &Postgres, table: &str) -> Vec<Vec<String>> {
    let sql = STATS_ROWS.replace("sensor_stats", table);
    let mut rows: Vec<Vec<String>> = (server.rows(&sql).await.into_iter())
        .map(|mut r| {
            r[3] = same_number(&r[3]);
            r
        })
        .collect();
    rows.sort();
    rows
}

fn same_number(text: &str) -> String {
    format!("{:.2}", text.parse::<f64>().expect("a number"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_only_results_are_upserted_by_key_or_copied_into_tables_it_creates() {
    let server = Postgres::start();
    let mut engine = engine(&server);
    let queries = start(&mut engine, &stats_rule(", count = '3000', step_ms = '20'")).await;
    for outcome in finish(queries).await {
        outcome.unwrap();
    }
    let expected = expected_stats(&engine);
    assert!(expected.len() > 20, "{} windows", expected.len());
    assert_eq!(stored_stats(&server, "sensor_stats").await, expected);
    assert_eq!(stored_stats(&server, "sensor_stats_copied").await, expected);
    let types = server
        .rows(
            "SELECT column_name, data_type FROM information_schema.columns
             WHERE table_name = 'sensor_stats' ORDER BY ordinal_position",
        )
        .await;
    assert_eq!(types[2], ["window_start", "timestamp with time zone"]);
    let key = server
        .rows(
            "SELECT string_agg(a.attname, ',' ORDER BY a.attnum) FROM pg_index i
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
             WHERE i.indrelid = 'sensor_stats'::regclass AND i.indisprimary",
        )
        .await;
    assert_eq!(key, [["sensor_id,window_start"]]);
}

/// Balances per account: a changelog whose rows are updated and, by the HAVING, deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_updating_query_leaves_its_current_answer_in_the_table() {
    let server = Postgres::start();
    let mut engine = engine(&server);
    let second = 1_000_000_000i64;
    let batches: Vec<RecordBatch> = (0..40)
        .map(|b| {
            let accounts: Vec<String> = (0..10)
                .map(|i| format!("a{}", (b * 7 + i * 3) % 13))
                .collect();
            let amounts: Vec<i64> = (0..10).map(|i| (b * 5 + i * 11) % 17 - 4).collect();
            let times: Vec<i64> = (0..10).map(|i| (b * 10 + i) * second).collect();
            RecordBatch::try_from_iter([
                ("account", Arc::new(StringArray::from(accounts)) as _),
                ("amount", Arc::new(Int64Array::from(amounts)) as _),
                ("ts", Arc::new(TimestampNanosecondArray::from(times)) as _),
            ])
            .unwrap()
        })
        .collect();
    engine.registry().memory().set_input("payments", batches);
    let balances = "SELECT account, sum(amount) AS balance, count(*) AS payments
        FROM payments GROUP BY account HAVING sum(amount) % 3 <> 0";
    let queries = start(
        &mut engine,
        &format!(
            "CREATE SOURCE payments (account TEXT, amount BIGINT, ts TIMESTAMP)
                WITH (connector = 'memory', name = 'payments');
             CREATE SINK balances WITH (connector = 'postgres', table = 'balances',
                key = 'account', url_env = 'TEST_PG') AS {balances};
             CREATE SINK expected WITH (connector = 'memory', name = 'expected') AS {balances};"
        ),
    )
    .await;
    for outcome in finish(queries).await {
        outcome.unwrap();
    }
    let changes = memory_changes(&engine, "expected");
    assert!(
        changes.iter().any(|c| c[0] == "-D") && changes.iter().any(|c| c[0] == "+U"),
        "the changelog updates and deletes rows"
    );
    let expected = materialize(changes);
    let mut stored = server
        .rows("SELECT account, balance, payments FROM balances")
        .await;
    stored.sort();
    assert_eq!(stored, expected);
}

/// Windows emitting early: the table holds each window's latest row, which at the end is
/// what the same windows emit without a policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_rows_of_windows_are_upserted_until_their_final_row() {
    let server = Postgres::start();
    let mut engine = engine(&server);
    let early = format!("{STATS} EMIT EARLY EVERY INTERVAL '2' SECOND");
    let queries = start(
        &mut engine,
        &format!(
            "{};
             CREATE SINK early_stats WITH (connector = 'postgres', table = 'early_stats',
                key = 'sensor_id, window_start', url_env = 'TEST_PG') AS {early};
             CREATE SINK early_changes WITH (connector = 'memory', name = 'early_changes')
                AS {early};",
            stats_rule(", count = '3000', step_ms = '20'")
        ),
    )
    .await;
    for outcome in finish(queries).await {
        outcome.unwrap();
    }
    let changes = memory_changes(&engine, "early_changes");
    assert!(
        changes.iter().any(|c| c[0] == "+U"),
        "windows are updated early"
    );
    assert_eq!(
        stored_stats(&server, "early_stats").await,
        expected_stats(&engine)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_with_columns_of_other_types_fails_the_create_sink_saying_which() {
    let server = Postgres::start();
    server
        .client()
        .await
        .batch_execute(
            "CREATE TABLE sensor_stats (sensor_id integer, window_ns bigint,
            window_start timestamptz, readings bigint, hottest double precision)",
        )
        .await
        .unwrap();
    let mut engine = engine(&server);
    let error = engine
        .execute(&stats_rule(", count = '500', step_ms = '20'"))
        .await
        .err()
        .expect("CREATE SINK into the wrong table fails")
        .to_string();
    assert!(
        error.contains("column 'sensor_id' is int4, where the query writes text"),
        "{error}"
    );
    // The statement failed before its query started: nothing was written, and the sink
    // was not declared.
    assert_eq!(
        server.rows("SELECT count(*) FROM sensor_stats").await,
        [["0"]]
    );
    assert!(!engine.catalog().sinks().contains_key("sensor_stats"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_goes_away_mid_stream_slows_the_query_and_loses_nothing() {
    let server = Postgres::start();
    let mut engine = engine(&server);
    // About 6 s of events at 1,000 a second, stamped with the wall clock: a window closes
    // every second.
    let rule = "CREATE SOURCE sensors (sensor_id TEXT, temperature DOUBLE, humidity DOUBLE,
            ts TIMESTAMP, WATERMARK FOR ts AS ts)
            WITH (connector = 'generator', kind = 'sensors', keys = '5', count = '6000',
            rate = '1000');
        CREATE SINK sensor_stats WITH (connector = 'postgres', table = 'sensor_stats',
            key = 'sensor_id, window_start', url_env = 'TEST_PG') AS
        SELECT sensor_id, window_start, count(*) AS readings
        FROM TUMBLE(sensors, ts, INTERVAL '1' SECOND) GROUP BY window_start, window_end, sensor_id";
    let queries = start(&mut engine, rule).await;
    // Waits for the first rows in the table, then takes the database away until a write
    // has failed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let table_exists = "SELECT count(*) FROM pg_tables WHERE tablename = 'sensor_stats'";
    loop {
        if server.rows(table_exists).await == [["1"]]
            && server.rows("SELECT count(*) FROM sensor_stats").await != [["0"]]
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no rows reached the table"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.stop();
    // Waits until a write has failed: the sink reports the database unreachable.
    let metrics = Arc::clone(queries[0].metrics());
    while metrics.unreachable().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no write failed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.resume();
    for outcome in finish(queries).await {
        outcome.unwrap();
    }
    // Every event counted once: none lost, and a window written again (the batch whose
    // transaction failed) replaces itself by its key.
    assert!(
        metrics.unreachable().is_empty(),
        "reachable again once written"
    );
    let counted = server
        .rows("SELECT sum(readings), count(*) FROM sensor_stats")
        .await;
    assert_eq!(
        counted[0][0], "6000",
        "every event in exactly one stored window"
    );
    let windows: usize = counted[0][1].parse().unwrap();
    assert!(windows >= 5, "{windows} windows");
}
