//! Snapshot and restore at any point: a query run over a prefix of its input, checkpointed
//! to a state dir, restored by a freshly planned query (as another process would) and fed
//! the rest produces exactly what one uninterrupted run produces, row for row and in order,
//! at batch sizes 1, 7 and 1024.
//!
//! The input comes from two splits (as two Kafka partitions would) with disordered, partly
//! late events, so the restored state includes per-split watermarks, open windows, panes,
//! sessions, and multisets whose current extreme is later retracted.

use std::sync::Arc;

use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray, TimestampNanosecondArray};
use vigil_engine::checkpoint::{
    Checkpoint, MetricsManifest, QueryCheckpoints, SourceManifest, StateLocation,
};
use vigil_engine::operators::{MAIN_PORT, Message};
use vigil_engine::runtime::{GraphExecutor, OutputPort};
use vigil_engine::{ChangeBatch, Engine, EngineConfig};
use vigil_tests::format_rows;
use vigil_tests::fuzz::Rng;

pub(crate) const SECOND: i64 = 1_000_000_000;

const SOURCE: &str = "CREATE SOURCE events (k TEXT, v BIGINT, ts TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '5' SECOND) WITH (connector = 'memory')";
const BALANCES: &str =
    "CREATE VIEW balances AS SELECT k, sum(v) AS b FROM events GROUP BY k HAVING sum(v) % 4 <> 0";

pub(crate) const QUERIES: &[&str] = &[
    "SELECT k, v FROM events WHERE v % 3 = 0",
    "SELECT window_start, k, count(*), sum(v), min(v), max(v), count(DISTINCT v)
     FROM TUMBLE(events, ts, INTERVAL '10' SECOND) GROUP BY window_start, window_end, k",
    // By panes: the aggregate reads no window column but the start.
    "SELECT window_start, count(*), sum(v), max(v)
     FROM HOP(events, ts, INTERVAL '2' SECOND, INTERVAL '30' SECOND) GROUP BY window_start, window_end",
    // Copied into each window: the window end is read before the aggregate.
    "SELECT window_end, k, count(*) FROM HOP(events, ts, INTERVAL '5' SECOND, INTERVAL '15' SECOND)
     WHERE window_end > ts GROUP BY window_start, window_end, k",
    "SELECT b % 3 AS r, count(*), sum(b), min(b), max(b), count(DISTINCT b) FROM balances GROUP BY b % 3",
    // Open sessions, and the emitted ones a late event could still change.
    "SELECT window_start, window_end, k, count(*), sum(v), max(v)
     FROM SESSION(events, ts, INTERVAL '3' SECOND) GROUP BY window_start, window_end, k",
    "SELECT window_end, count(*), min(v)
     FROM CUMULATE(events, ts, INTERVAL '5' SECOND, INTERVAL '20' SECOND) GROUP BY window_start, window_end",
    // Rows of both sides waiting for partners; an outer join's rows that met none yet.
    "SELECT a.k, a.v, b.v FROM events a JOIN events b
     ON a.k = b.k AND b.ts BETWEEN a.ts AND a.ts + INTERVAL '3' SECOND AND a.v < b.v",
    "SELECT a.k, a.v, b.k, b.v FROM events a FULL OUTER JOIN events b
     ON a.k = b.k AND b.ts > a.ts + INTERVAL '2' SECOND AND b.ts <= a.ts + INTERVAL '4' SECOND",
    // A window join: counts per key with each window's largest value.
    "SELECT x.window_start, x.k, x.n, y.m
     FROM (SELECT window_start, window_end, k, count(*) AS n
           FROM TUMBLE(events, ts, INTERVAL '10' SECOND) GROUP BY window_start, window_end, k) x
     JOIN (SELECT window_start, window_end, max(v) AS m
           FROM TUMBLE(events, ts, INTERVAL '10' SECOND) GROUP BY window_start, window_end) y
     ON x.window_start = y.window_start AND x.window_end = y.window_end",
    // OVER windows: rows waiting for the watermark and each partition's recent past.
    "SELECT k, v, count(*) OVER w, sum(v) OVER w, max(v) OVER w FROM events
     WINDOW w AS (PARTITION BY k ORDER BY ts RANGE BETWEEN INTERVAL '4' SECOND PRECEDING AND CURRENT ROW)",
    // Sliding frames: each partition's frame values and running accumulators.
    "SELECT k, v, count(*) OVER w, avg(v) OVER w, round(stddev_pop(v) OVER w, 6),
       min(CAST(v AS DOUBLE)) OVER w
     FROM events
     WINDOW w AS (PARTITION BY k ORDER BY ts RANGE BETWEEN INTERVAL '3' SECOND PRECEDING AND CURRENT ROW)",
    "/* state per key */ SELECT k, v, sum(CAST(v AS DOUBLE)) OVER (PARTITION BY k ORDER BY ts
       ROWS BETWEEN 2 PRECEDING AND CURRENT ROW), avg(v) OVER (PARTITION BY k ORDER BY ts
       RANGE BETWEEN INTERVAL '2' SECOND PRECEDING AND CURRENT ROW)
     FROM events",
    "/* state per key */ SELECT k, v, avg(v) OVER (PARTITION BY k ORDER BY ts ROWS BETWEEN 2 PRECEDING AND CURRENT ROW),
       lag(v) OVER (PARTITION BY k ORDER BY ts ROWS BETWEEN 2 PRECEDING AND CURRENT ROW)
     FROM events",
    // Dedup: ROW_NUMBER going on from a count per key.
    "/* state per key */ SELECT * FROM (SELECT k, v, CAST(ts AS BIGINT) AS t,
       ROW_NUMBER() OVER (PARTITION BY k ORDER BY ts) AS n FROM events) WHERE n <= 3",
    // Top-N per window: each window's rows held until it closes.
    "SELECT window_start, k, v, r FROM (
       SELECT window_start, k, v,
         ROW_NUMBER() OVER (PARTITION BY window_start, window_end ORDER BY v DESC) AS r
       FROM TUMBLE(events, ts, INTERVAL '10' SECOND)) WHERE r <= 2",
    // Joins with no time bound: two changelogs keyed by the join key, an outer side padded.
    "SELECT x.k, x.b, y.n FROM balances x FULL JOIN
       (SELECT k, count(*) AS n FROM events WHERE v % 2 = 0 GROUP BY k) y ON x.k = y.k",
    // Updating Top-N: every live row of a changelog ranked; a stream's first rows per key.
    "SELECT * FROM (SELECT k, b, ROW_NUMBER() OVER (ORDER BY b DESC) AS r FROM balances)
     WHERE r <= 2",
    "SELECT * FROM (SELECT k, v, ROW_NUMBER() OVER (PARTITION BY k ORDER BY v DESC) AS r
       FROM events) WHERE r <= 2",
    // Emit policies: open windows emitted early, ended ones corrected within their
    // lateness, each with the rows it last emitted.
    "SELECT window_start, k, count(*), sum(v), max(v) FROM TUMBLE(events, ts, INTERVAL '10' SECOND)
     GROUP BY window_start, window_end, k
     EMIT EARLY EVERY INTERVAL '2' SECOND ALLOWED LATENESS INTERVAL '6' SECOND",
    "SELECT window_start, count(*), min(v) FROM HOP(events, ts, INTERVAL '5' SECOND, INTERVAL '20' SECOND)
     GROUP BY window_start, window_end EMIT EARLY EVERY INTERVAL '3' SECOND",
    // Append-only rows kept for a state TTL, and forgotten after it.
    "CREATE SINK recent WITH (connector = 'memory', state_ttl = '15 seconds') AS
     SELECT a.k, a.v, b.v FROM events a JOIN events b ON a.k = b.k AND a.v < b.v",
];

/// One split's batch of events.
pub(crate) struct Part {
    pub split: u32,
    pub rows: RecordBatch,
}

/// Events advancing ~1 s each, disordered by up to 20 s, alternating between two splits in
/// runs, cut into `batch_size` rows.
pub(crate) fn input(engine: &Engine, seed: u64, n: usize, batch_size: usize) -> Vec<Part> {
    let schema = Arc::clone(&engine.catalog().sources()["events"].schema);
    let mut rng = Rng::new(seed);
    let mut parts = Vec::new();
    let mut i = 0;
    while i < n {
        let split = rng.below(2) as u32;
        let len = batch_size.min(n - i).min(1 + rng.below(2 * batch_size));
        let range = i..i + len;
        let keys: Vec<String> = range
            .clone()
            .map(|_| format!("k{}", rng.below(5)))
            .collect();
        let values: Vec<i64> = range.clone().map(|_| rng.below(900) as i64 - 200).collect();
        let times: Vec<i64> = range
            .map(|j| 1_700_000_000 * SECOND + j as i64 * SECOND - rng.below(20) as i64 * SECOND)
            .collect();
        let rows = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(StringArray::from(keys)),
                Arc::new(Int64Array::from(values)),
                Arc::new(TimestampNanosecondArray::from(times)),
            ],
        )
        .unwrap();
        parts.push(Part { split, rows });
        i += len;
    }
    parts
}

pub(crate) async fn engine() -> Engine {
    let mut engine = Engine::with_config(
        vigil_connectors::registry(),
        EngineConfig {
            start_queries: false,
            ..EngineConfig::default()
        },
    );
    engine.execute(SOURCE).await.unwrap();
    engine.execute(BALANCES).await.unwrap();
    engine
}

/// A freshly planned executor of `query`, with its fingerprint.
pub(crate) async fn executor(query: &str) -> (GraphExecutor, bool, String) {
    let engine = engine().await;
    let graph = engine.plan(query).await.unwrap().graph;
    let (updating, fingerprint) = (graph.updating, graph.fingerprint());
    let output = OutputPort {
        node: graph.output,
        port: MAIN_PORT,
    };
    (
        GraphExecutor::new(graph, vec![output]),
        updating,
        fingerprint,
    )
}

fn collect(emitted: Vec<(usize, Message)>, updating: bool, out: &mut Vec<RecordBatch>) {
    for (_, message) in emitted {
        if let Message::Batch(batch) = message {
            out.push(batch.into_output(updating).unwrap());
        }
    }
}

pub(crate) fn feed(
    executor: &mut GraphExecutor,
    parts: &[Part],
    updating: bool,
    out: &mut Vec<RecordBatch>,
) {
    for part in parts {
        let batch = ChangeBatch::inserts(part.rows.clone());
        let emitted = executor.push_split_batch(0, part.split, batch).unwrap();
        collect(emitted, updating, out);
    }
}

fn finish(executor: &mut GraphExecutor, updating: bool, out: &mut Vec<RecordBatch>) {
    collect(executor.end_source(0).unwrap(), updating, out);
}

/// Checkpoints `executor` into `store` and reads it back, as a restarted process would.
async fn through_the_state_dir(
    executor: &mut GraphExecutor,
    store: &QueryCheckpoints,
    fingerprint: &str,
    epoch: u64,
) -> Vec<vigil_engine::runtime::NodeSnapshot> {
    let checkpoint = Checkpoint {
        epoch,
        fingerprint: fingerprint.to_string(),
        nodes: executor.snapshot().unwrap(),
        sources: vec![SourceManifest {
            name: "events".into(),
            position: Default::default(),
        }],
        sinks: vec![None],
        watermark: executor.output_watermark(0),
        metrics: MetricsManifest::default(),
        taken_at_ms: 0,
    };
    store.save(&checkpoint).await.unwrap();
    let restored = store.load_latest().await.unwrap().restored.unwrap();
    assert_eq!(restored.manifest.epoch, epoch);
    assert_eq!(restored.manifest.fingerprint, fingerprint);
    restored.nodes
}

#[tokio::test]
async fn a_run_restored_at_any_point_equals_one_uninterrupted_run() {
    let dir = std::env::temp_dir().join(format!("vigil-restore-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let location = StateLocation::local(&dir).unwrap();
    let inputs = engine().await;
    let mut epoch = 0;
    for (q, query) in QUERIES.iter().enumerate() {
        let store = QueryCheckpoints::new(&location, &format!("q{q}"));
        for batch_size in [1, 7, 1024] {
            for seed in 1..=3u64 {
                let parts = input(&inputs, seed * 31 + q as u64, 240, batch_size);
                let (mut whole, updating, fingerprint) = executor(query).await;
                let mut expected = Vec::new();
                feed(&mut whole, &parts, updating, &mut expected);
                finish(&mut whole, updating, &mut expected);
                let expected = format_rows(&expected);
                assert!(!expected.is_empty(), "query {q} emits something");

                let mut rng = Rng::new(seed + batch_size as u64);
                // Two restarts at random points.
                let mut cuts = [rng.below(parts.len() + 1), rng.below(parts.len() + 1)];
                cuts.sort_unstable();
                let (mut running, _, _) = executor(query).await;
                let mut actual = Vec::new();
                let mut at = 0;
                for cut in cuts {
                    feed(&mut running, &parts[at..cut], updating, &mut actual);
                    epoch += 1;
                    let nodes =
                        through_the_state_dir(&mut running, &store, &fingerprint, epoch).await;
                    (running, _, _) = executor(query).await;
                    running.restore(nodes).unwrap();
                    at = cut;
                }
                feed(&mut running, &parts[at..], updating, &mut actual);
                finish(&mut running, updating, &mut actual);
                assert_eq!(
                    format_rows(&actual),
                    expected,
                    "query {q}, batch size {batch_size}, seed {seed}, restored at {cuts:?} of {}",
                    parts.len()
                );
            }
        }
    }
}
