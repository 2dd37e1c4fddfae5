//! Oracle for joins: on random, disordered inputs of two sources arriving interleaved, the
//! rows of an interval join (inner, LEFT, FULL OUTER), of a window join of two TUMBLE
//! aggregates and of a join of two changelogs equal DataFusion's batch join of the same
//! events, minus what was late.
//!
//! Lateness is the definition, per source: the watermark before an event is the largest
//! `ts - 5 s` among the earlier events of its own source. A join drops an event at or below
//! it; a window drops an event whose window ended at or below it.

use std::sync::Arc;

use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray, TimestampNanosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use vigil_engine::replay::{Script, run_to_completion};
use vigil_engine::{Engine, EngineConfig};
use vigil_tests::fuzz::Rng;
use vigil_tests::{format_rows, materialize};

const SECOND: i64 = 1_000_000_000;
const DELAY: i64 = 5 * SECOND;
const SOURCES: [&str; 2] = ["a", "b"];

/// One arrival: which source, and its event.
struct Arrival {
    source: usize,
    key: String,
    value: i64,
    ts: i64,
}

/// Events of both sources advancing ~1 s each, shuffled back by up to 12 s, arriving in
/// runs of one source.
fn arrivals(seed: u64, n: usize) -> Vec<Arrival> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    let mut source = 0;
    for i in 0..n as i64 {
        if rng.below(3) == 0 {
            source = 1 - source;
        }
        out.push(Arrival {
            source,
            key: format!("k{}", rng.below(3)),
            value: rng.below(100) as i64,
            ts: 1_700_000_000 * SECOND + i * SECOND - rng.below(12) as i64 * SECOND,
        });
    }
    out
}

/// Each arrival's own source's watermark before it.
fn watermarks_before(arrivals: &[Arrival]) -> Vec<i64> {
    let mut watermarks = [i64::MIN; 2];
    arrivals
        .iter()
        .map(|a| {
            let before = watermarks[a.source];
            watermarks[a.source] = before.max(a.ts - DELAY);
            before
        })
        .collect()
}

fn batch(schema: &Arc<Schema>, rows: &[&Arrival], with_watermark: Option<&[i64]>) -> RecordBatch {
    let mut columns: Vec<Arc<dyn datafusion::arrow::array::Array>> = vec![
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|a| a.key.as_str()),
        )),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|a| a.value))),
    ];
    match with_watermark {
        None => columns.push(Arc::new(TimestampNanosecondArray::from_iter_values(
            rows.iter().map(|a| a.ts),
        ))),
        Some(watermarks) => {
            columns.push(Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|a| a.ts),
            )));
            columns.push(Arc::new(Int64Array::from(watermarks.to_vec())));
        }
    }
    RecordBatch::try_new(Arc::clone(schema), columns).unwrap()
}

/// DataFusion over tables `a` and `b`: each source's events, with the watermark each arrived
/// to in `wm` and times in nanoseconds.
fn batch_tables(arrivals: &[Arrival]) -> SessionContext {
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Utf8, false),
        Field::new("v", DataType::Int64, false),
        Field::new("ts", DataType::Int64, false),
        Field::new("wm", DataType::Int64, false),
    ]));
    let watermarks = watermarks_before(arrivals);
    let ctx = SessionContext::new();
    for (source, name) in SOURCES.iter().enumerate() {
        let (rows, wms): (Vec<&Arrival>, Vec<i64>) = (arrivals.iter().zip(&watermarks))
            .filter(|(a, _)| a.source == source)
            .unzip();
        let rows = batch(&schema, &rows, Some(&wms));
        let table = MemTable::try_new(Arc::clone(&schema), vec![vec![rows]]).unwrap();
        ctx.register_table(*name, Arc::new(table)).unwrap();
    }
    ctx
}

/// DataFusion's rows of `sql` over `ctx`, sorted.
pub(crate) async fn batch_rows(ctx: &SessionContext, sql: &str) -> Vec<Vec<String>> {
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    let mut rows = format_rows(&batches);
    rows.sort();
    rows
}

/// An engine that plans queries without starting them, its sources cut in `batch_size`.
pub(crate) fn planning_engine(batch_size: usize) -> Engine {
    Engine::with_config(
        vigil_connectors::registry(),
        EngineConfig {
            batch_size,
            start_queries: false,
            ..EngineConfig::default()
        },
    )
}

/// Vigil's rows of `sql` over `script`, run to its end at `batch_size`: sorted, or for a
/// changelog the rows it leaves.
pub(crate) async fn streamed_rows(
    engine: &Engine,
    sql: &str,
    script: &Script,
    batch_size: usize,
) -> Vec<Vec<String>> {
    let planned = engine.plan(sql).await.unwrap();
    let updating = planned.graph.updating;
    let out = run_to_completion(planned.graph, script, batch_size).unwrap();
    let mut rows = format_rows(&out.rows);
    if updating {
        return materialize(rows);
    }
    rows.sort();
    rows
}

async fn oracle(arrivals: &[Arrival], sql: &str) -> Vec<Vec<String>> {
    batch_rows(&batch_tables(arrivals), sql).await
}

async fn streamed(arrivals: &[Arrival], sql: &str, batch_size: usize) -> Vec<Vec<String>> {
    let mut engine = planning_engine(batch_size);
    for name in SOURCES {
        engine
            .execute(&format!(
                "CREATE SOURCE {name} (k TEXT, v BIGINT, ts TIMESTAMP,
                 WATERMARK FOR ts AS ts - INTERVAL '5' SECOND) WITH (connector = 'memory')"
            ))
            .await
            .unwrap();
    }
    let schema = Arc::clone(&engine.catalog().sources()["a"].schema);
    let mut script = Script::default();
    for run in arrivals.chunk_by(|x, y| x.source == y.source) {
        let rows: Vec<&Arrival> = run.iter().collect();
        script.push(SOURCES[run[0].source], batch(&schema, &rows, None));
    }
    streamed_rows(&engine, sql, &script, batch_size).await
}

/// Each join as Vigil runs it, and as DataFusion computes it over the on-time events.
const JOINS: &[(&str, &str)] = &[
    (
        "SELECT a.k, a.v, CAST(a.ts AS BIGINT), b.v, CAST(b.ts AS BIGINT) FROM a JOIN b
         ON a.k = b.k AND b.ts BETWEEN a.ts - INTERVAL '3' SECOND AND a.ts + INTERVAL '4' SECOND",
        "SELECT a.k, a.v, a.ts, b.v, b.ts FROM a JOIN b
         ON a.k = b.k AND b.ts BETWEEN a.ts - 3000000000 AND a.ts + 4000000000
         WHERE a.ts > a.wm AND b.ts > b.wm",
    ),
    (
        "SELECT a.k, a.v, CAST(a.ts AS BIGINT), b.v FROM a LEFT JOIN b
         ON a.k = b.k AND b.ts > a.ts AND b.ts < a.ts + INTERVAL '6' SECOND AND a.v < b.v",
        "SELECT a.k, a.v, a.ts, b.v FROM (SELECT * FROM a WHERE ts > wm) a
         LEFT JOIN (SELECT * FROM b WHERE ts > wm) b
         ON a.k = b.k AND b.ts > a.ts AND b.ts < a.ts + 6000000000 AND a.v < b.v",
    ),
    // One-sided conjuncts: the right's filters b before the join, the left's only decides
    // which left rows meet one.
    (
        "SELECT a.k, a.v, CAST(a.ts AS BIGINT), b.v FROM a LEFT JOIN b
         ON a.k = b.k AND b.ts BETWEEN a.ts AND a.ts + INTERVAL '5' SECOND
         AND a.v > 40 AND b.v < 70",
        "SELECT a.k, a.v, a.ts, b.v FROM (SELECT * FROM a WHERE ts > wm) a
         LEFT JOIN (SELECT * FROM b WHERE ts > wm) b
         ON a.k = b.k AND b.ts BETWEEN a.ts AND a.ts + 5000000000 AND a.v > 40 AND b.v < 70",
    ),
    (
        "SELECT a.v, CAST(a.ts AS BIGINT), b.v, CAST(b.ts AS BIGINT) FROM a FULL OUTER JOIN b
         ON a.k = b.k AND a.ts BETWEEN b.ts AND b.ts + INTERVAL '2' SECOND",
        "SELECT a.v, a.ts, b.v, b.ts FROM (SELECT * FROM a WHERE ts > wm) a
         FULL OUTER JOIN (SELECT * FROM b WHERE ts > wm) b
         ON a.k = b.k AND a.ts BETWEEN b.ts AND b.ts + 2000000000",
    ),
    (
        "SELECT CAST(x.window_start AS BIGINT), x.k, x.n, y.total
         FROM (SELECT window_start, window_end, k, count(*) AS n
               FROM TUMBLE(a, ts, INTERVAL '10' SECOND) GROUP BY window_start, window_end, k) x
         JOIN (SELECT window_start, window_end, k, sum(v) AS total
               FROM TUMBLE(b, ts, INTERVAL '10' SECOND) GROUP BY window_start, window_end, k) y
         ON x.k = y.k AND x.window_start = y.window_start AND x.window_end = y.window_end",
        "SELECT x.ws, x.k, x.n, y.total
         FROM (SELECT ts - ts % 10000000000 AS ws, k, count(*) AS n FROM a
               WHERE ts - ts % 10000000000 + 10000000000 > wm GROUP BY 1, 2) x
         JOIN (SELECT ts - ts % 10000000000 AS ws, k, sum(v) AS total FROM b
               WHERE ts - ts % 10000000000 + 10000000000 > wm GROUP BY 1, 2) y
         ON x.k = y.k AND x.ws = y.ws",
    ),
    // Nexmark q7's shape: a window's rows with the largest value of their window, one
    // source read on both sides.
    (
        "SELECT x.k, x.v, CAST(x.ts AS BIGINT) FROM TUMBLE(a, ts, INTERVAL '10' SECOND) x
         JOIN (SELECT window_start, window_end, max(v) AS m
               FROM TUMBLE(a, ts, INTERVAL '10' SECOND) GROUP BY window_start, window_end) y
         ON x.window_start = y.window_start AND x.window_end = y.window_end AND x.v = y.m",
        "WITH w AS (SELECT k, v, ts, ts - ts % 10000000000 AS ws FROM a
                    WHERE ts - ts % 10000000000 + 10000000000 > wm)
         SELECT w.k, w.v, w.ts FROM w JOIN (SELECT ws, max(v) AS m FROM w GROUP BY ws) y
         ON w.ws = y.ws AND w.v = y.m",
    ),
    // A join of two changelogs with no time bound, keyed by the join keys: every event counts
    // (an updating GROUP BY has no window to be late for), and the join's changelog leaves
    // the batch join's rows, a group missing on either side padded (k0 and r 4 and 5).
    (
        "SELECT x.k, x.r, x.n, y.k, y.r, y.total
         FROM (SELECT k, v % 4 AS r, count(*) AS n FROM a GROUP BY k, v % 4) x
         FULL JOIN (SELECT k, v % 6 AS r, sum(v) AS total FROM b WHERE k <> 'k0' GROUP BY k, v % 6) y
         ON x.k = y.k AND x.r = y.r",
        "SELECT x.k, x.r, x.n, y.k, y.r, y.total
         FROM (SELECT k, v % 4 AS r, count(*) AS n FROM a GROUP BY k, v % 4) x
         FULL JOIN (SELECT k, v % 6 AS r, sum(v) AS total FROM b WHERE k <> 'k0' GROUP BY k, v % 6) y
         ON x.k = y.k AND x.r = y.r",
    ),
];

#[tokio::test]
async fn joins_equal_batch_joins_minus_late_events() {
    for seed in 1..=6 {
        let arrivals = arrivals(seed, 240);
        let late = (arrivals.iter().zip(watermarks_before(&arrivals)))
            .filter(|(a, wm)| a.ts <= *wm)
            .count();
        assert!(late > 5, "seed {seed}: the input has late events ({late})");
        for (j, (streaming, batch)) in JOINS.iter().enumerate() {
            let expected = oracle(&arrivals, batch).await;
            assert!(expected.len() > 10, "join {j} has rows to compare");
            for batch_size in [1, 7, 1024] {
                let actual = streamed(&arrivals, streaming, batch_size).await;
                assert_eq!(
                    actual, expected,
                    "join {j}, seed {seed}, batch size {batch_size}"
                );
            }
        }
    }
}
