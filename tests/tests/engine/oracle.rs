//! Oracle: on random, disordered, bounded inputs, the final output of a window query equals
//! DataFusion's batch GROUP BY over the same events, minus what was late; and the final
//! rows of an aggregate over a changelog equal DataFusion's nested GROUP BY.
//!
//! The model of lateness is the definition: the watermark before an event is the largest
//! `ts - delay` among the events before it, and a copy of the event for a window is dropped
//! when that window's end is at or below it.

use std::sync::Arc;

use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray, TimestampNanosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use vigil_engine::replay::{Script, run_to_completion};
use vigil_engine::{Engine, EngineConfig};
use vigil_tests::{format_rows, materialize};

const SECOND: i64 = 1_000_000_000;
const DELAY: i64 = 5 * SECOND;

struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

struct Events {
    keys: Vec<String>,
    values: Vec<i64>,
    times: Vec<i64>,
}

/// Events with times advancing ~1 s each, shuffled back by up to 20 s: some are late.
fn random_events(seed: u64, n: usize) -> Events {
    let mut rng = Lcg(seed);
    let mut events = Events {
        keys: Vec::new(),
        values: Vec::new(),
        times: Vec::new(),
    };
    for i in 0..n as i64 {
        events.keys.push(format!("k{}", rng.below(4)));
        events.values.push(rng.below(1000) as i64 - 200);
        events
            .times
            .push(1_700_000_000 * SECOND + i * SECOND - rng.below(20) as i64 * SECOND);
    }
    events
}

/// The watermark each event arrives to.
fn watermarks_before(times: &[i64]) -> Vec<i64> {
    let mut wm = i64::MIN;
    times
        .iter()
        .map(|&t| {
            let before = wm;
            wm = wm.max(t - DELAY);
            before
        })
        .collect()
}

fn source_batch(schema: &Arc<Schema>, e: &Events) -> RecordBatch {
    RecordBatch::try_new(
        Arc::clone(schema),
        vec![
            Arc::new(StringArray::from(e.keys.clone())),
            Arc::new(Int64Array::from(e.values.clone())),
            Arc::new(TimestampNanosecondArray::from(e.times.clone())),
        ],
    )
    .unwrap()
}

/// An engine that plans without starting queries, cutting input into `batch_size` rows.
fn test_engine(batch_size: usize) -> Engine {
    Engine::with_config(
        vigil_connectors::registry(),
        EngineConfig {
            batch_size,
            start_queries: false,
            ..EngineConfig::default()
        },
    )
}

/// DataFusion over `batch` as table `events`.
fn datafusion_over(schema: Arc<Schema>, batch: RecordBatch) -> SessionContext {
    let ctx = SessionContext::new();
    ctx.register_table(
        "events",
        Arc::new(MemTable::try_new(schema, vec![vec![batch]]).unwrap()),
    )
    .unwrap();
    ctx
}

/// DataFusion's batch answer: each event copied into each of its windows, copies whose
/// window ended before the event arrived dropped, then GROUP BY.
async fn oracle(e: &Events, slide: i64, size: i64) -> Vec<Vec<String>> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Utf8, false),
        Field::new("v", DataType::Int64, false),
        Field::new("ts", DataType::Int64, false),
        Field::new("wm", DataType::Int64, false),
    ]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(StringArray::from(e.keys.clone())),
            Arc::new(Int64Array::from(e.values.clone())),
            Arc::new(Int64Array::from(e.times.clone())),
            Arc::new(Int64Array::from(watermarks_before(&e.times))),
        ],
    )
    .unwrap();
    let ctx = datafusion_over(schema, batch);
    let copies = (0..size / slide)
        .map(|j| format!("({j})"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT ws, k, count(*), sum(v), min(v), max(v) FROM (
            SELECT k, v, wm, (ts - ((ts % {slide}) + {slide}) % {slide}) - j * {slide} AS ws
            FROM events CROSS JOIN (VALUES {copies}) AS copies(j)
         ) WHERE ws + {size} > wm
         GROUP BY ws, k ORDER BY ws, k"
    );
    let batches = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
    format_rows(&batches)
}

async fn streamed(e: &Events, window: &str, batch_size: usize) -> Vec<Vec<String>> {
    let mut engine = test_engine(batch_size);
    engine
        .execute("CREATE SOURCE events (k TEXT, v BIGINT, ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '5' SECOND) WITH (connector = 'memory')")
        .await
        .unwrap();
    let schema = Arc::clone(&engine.catalog().sources()["events"].schema);
    let mut script = Script::default();
    script.push("events", source_batch(&schema, e));
    let sql = format!(
        "SELECT CAST(window_start AS BIGINT), k, count(*), sum(v), min(v), max(v) FROM {window} GROUP BY window_start, window_end, k"
    );
    let planned = engine.plan(&sql).await.unwrap();
    let out = run_to_completion(planned.graph, &script, batch_size).unwrap();
    let mut rows = format_rows(&out.rows);
    rows.sort_by(|a, b| {
        (a[0].parse::<i64>().unwrap(), &a[1]).cmp(&(b[0].parse::<i64>().unwrap(), &b[1]))
    });
    rows
}

#[tokio::test]
async fn window_results_equal_batch_group_by_minus_late_events() {
    let windows = [
        (
            "TUMBLE(events, ts, INTERVAL '10' SECOND)",
            10 * SECOND,
            10 * SECOND,
        ),
        (
            "HOP(events, ts, INTERVAL '5' SECOND, INTERVAL '15' SECOND)",
            5 * SECOND,
            15 * SECOND,
        ),
        // Fifteen panes per window: the pane queue flips many times.
        (
            "HOP(events, ts, INTERVAL '2' SECOND, INTERVAL '30' SECOND)",
            2 * SECOND,
            30 * SECOND,
        ),
    ];
    for seed in 1..=12 {
        let events = random_events(seed, 300);
        for (window, slide, size) in windows {
            let expected = oracle(&events, slide, size).await;
            assert!(expected.len() > 20, "the oracle has windows to compare");
            for batch_size in [1, 7, 64, 1024] {
                let actual = streamed(&events, window, batch_size).await;
                assert_eq!(
                    actual, expected,
                    "seed {seed}, {window}, batch size {batch_size}"
                );
            }
        }
    }
}

#[test]
fn the_random_inputs_do_have_late_events() {
    let events = random_events(3, 300);
    let wms = watermarks_before(&events.times);
    let late = events
        .times
        .iter()
        .zip(&wms)
        .filter(|(t, w)| (*t - t.rem_euclid(10 * SECOND)) + 10 * SECOND <= **w)
        .count();
    assert!(late > 10, "only {late} late events");
}

/// Rows move between groups as balances change, and leave the view when a balance is a
/// multiple of 4: every aggregate sees retractions of its current extreme, out of order.
const NESTED_INNER: &str = "SELECT k, sum(v) AS b FROM events GROUP BY k HAVING sum(v) % 4 <> 0";
const NESTED_OUTER: &str = "SELECT b % 3 AS r, count(*), sum(b), min(b), max(b), \
    count(DISTINCT b), array_agg(DISTINCT b) FROM balances GROUP BY b % 3";

async fn nested_oracle(e: &Events) -> Vec<Vec<String>> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Utf8, false),
        Field::new("v", DataType::Int64, false),
    ]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(StringArray::from(e.keys.clone())),
            Arc::new(Int64Array::from(e.values.clone())),
        ],
    )
    .unwrap();
    let ctx = datafusion_over(schema, batch);
    ctx.sql(&format!("CREATE VIEW balances AS {NESTED_INNER}"))
        .await
        .unwrap();
    let sql = NESTED_OUTER.replace("array_agg(DISTINCT b)", "array_agg(DISTINCT b ORDER BY b)");
    let batches = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
    let mut rows = format_rows(&batches);
    rows.sort();
    rows
}

async fn nested_streamed(e: &Events, batch_size: usize) -> Vec<Vec<String>> {
    let mut engine = test_engine(batch_size);
    engine
        .execute(
            "CREATE SOURCE events (k TEXT, v BIGINT, ts TIMESTAMP) WITH (connector = 'memory')",
        )
        .await
        .unwrap();
    engine
        .execute(&format!("CREATE VIEW balances AS {NESTED_INNER}"))
        .await
        .unwrap();
    let schema = Arc::clone(&engine.catalog().sources()["events"].schema);
    let mut script = Script::default();
    script.push("events", source_batch(&schema, e));
    let planned = engine.plan(NESTED_OUTER).await.unwrap();
    let out = run_to_completion(planned.graph, &script, batch_size).unwrap();
    materialize(format_rows(&out.rows))
}

#[tokio::test]
async fn aggregates_over_a_changelog_equal_a_nested_batch_group_by() {
    for seed in 1..=8 {
        let mut events = random_events(seed, 400);
        // Twenty accounts, so balances change many times each.
        let mut rng = Lcg(seed + 100);
        for key in &mut events.keys {
            *key = format!("a{}", rng.below(20));
        }
        let expected = nested_oracle(&events).await;
        assert!(
            expected.len() == 3,
            "every residue has balances: {expected:?}"
        );
        for batch_size in [1, 7, 64, 1024] {
            let actual = nested_streamed(&events, batch_size).await;
            assert_eq!(actual, expected, "seed {seed}, batch size {batch_size}");
        }
    }
}
