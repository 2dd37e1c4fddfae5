//! Operator state can be snapshotted mid-stream and restored into a fresh plan: the restored
//! query then produces exactly what the uninterrupted one does.

use std::sync::Arc;

use datafusion::arrow::array::{Float64Array, RecordBatch, StringArray, TimestampNanosecondArray};
use vigil_engine::operators::{MAIN_PORT, Message};
use vigil_engine::runtime::{GraphExecutor, OutputPort};
use vigil_engine::{ChangeBatch, Engine, EngineConfig};
use vigil_tests::format_rows;

const SOURCE: &str = "CREATE SOURCE sensors (sensor_id TEXT, temperature DOUBLE, ts TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '5' SECOND) WITH (connector = 'memory')";
const QUERY: &str = "SELECT window_start, sensor_id, count(*), avg(temperature), max(temperature), count(DISTINCT temperature)
    FROM HOP(sensors, ts, INTERVAL '20' SECOND, INTERVAL '1' MINUTE) GROUP BY window_start, window_end, sensor_id";

async fn executor(engine: &Engine) -> GraphExecutor {
    let graph = engine.plan(QUERY).await.unwrap().graph;
    let output = OutputPort {
        node: graph.output,
        port: MAIN_PORT,
    };
    GraphExecutor::new(graph, vec![output])
}

fn readings(engine: &Engine, from: i64, n: i64) -> RecordBatch {
    let schema = Arc::clone(&engine.catalog().sources()["sensors"].schema);
    let ids: Vec<String> = (from..from + n).map(|i| format!("s{}", i % 3)).collect();
    let temps: Vec<f64> = (from..from + n).map(|i| (i % 7) as f64).collect();
    let ts: Vec<i64> = (from..from + n)
        .map(|i| 1_700_000_000_000_000_000 + i * 3_000_000_000)
        .collect();
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(ids)),
            Arc::new(Float64Array::from(temps)),
            Arc::new(TimestampNanosecondArray::from(ts)),
        ],
    )
    .unwrap()
}

fn feed(executor: &mut GraphExecutor, batch: RecordBatch, out: &mut Vec<RecordBatch>) {
    for (_, m) in executor
        .push_source(0, Message::Batch(ChangeBatch::inserts(batch)))
        .unwrap()
    {
        if let Message::Batch(b) = m {
            out.push(b.rows);
        }
    }
}

fn finish(executor: &mut GraphExecutor, out: &mut Vec<RecordBatch>) {
    for (_, m) in executor.end_source(0).unwrap() {
        if let Message::Batch(b) = m {
            out.push(b.rows);
        }
    }
}

#[tokio::test]
async fn restored_window_state_continues_like_the_original() {
    let mut engine = Engine::with_config(
        vigil_connectors::registry(),
        EngineConfig {
            batch_size: 16,
            start_queries: false,
            ..EngineConfig::default()
        },
    );
    engine.execute(SOURCE).await.unwrap();

    let mut uninterrupted = executor(&engine).await;
    let mut expected = Vec::new();
    feed(&mut uninterrupted, readings(&engine, 0, 50), &mut expected);
    feed(&mut uninterrupted, readings(&engine, 50, 50), &mut expected);
    finish(&mut uninterrupted, &mut expected);

    let mut first = executor(&engine).await;
    let mut actual = Vec::new();
    feed(&mut first, readings(&engine, 0, 50), &mut actual);
    let snapshot = first.snapshot().unwrap();
    assert!(
        snapshot
            .iter()
            .any(|n| n.operator.iter().any(|b| b.num_rows() > 0)),
        "open windows are in the snapshot"
    );
    drop(first);

    let mut second = executor(&engine).await;
    second.restore(snapshot).unwrap();
    feed(&mut second, readings(&engine, 50, 50), &mut actual);
    finish(&mut second, &mut actual);

    assert!(!expected.is_empty());
    assert_eq!(format_rows(&actual), format_rows(&expected));
}

#[tokio::test]
async fn restored_group_state_continues_the_changelog() {
    let mut engine = Engine::with_config(
        vigil_connectors::registry(),
        EngineConfig {
            batch_size: 4,
            start_queries: false,
            ..EngineConfig::default()
        },
    );
    engine.execute(SOURCE).await.unwrap();
    let query = "SELECT sensor_id, sum(temperature), count(*), avg(temperature) FROM sensors GROUP BY sensor_id HAVING count(*) > 3";
    let plan = async || {
        let graph = engine.plan(query).await.unwrap().graph;
        let output = OutputPort {
            node: graph.output,
            port: MAIN_PORT,
        };
        GraphExecutor::new(graph, vec![output])
    };
    let changes = |executor: &mut GraphExecutor, batch: RecordBatch, out: &mut Vec<RecordBatch>| {
        for (_, m) in executor
            .push_source(0, Message::Batch(ChangeBatch::inserts(batch)))
            .unwrap()
        {
            if let Message::Batch(b) = m {
                out.push(b.into_output(true).unwrap());
            }
        }
    };

    let mut uninterrupted = plan().await;
    let mut expected = Vec::new();
    changes(&mut uninterrupted, readings(&engine, 0, 10), &mut expected);
    changes(&mut uninterrupted, readings(&engine, 10, 10), &mut expected);

    let mut first = plan().await;
    let mut actual = Vec::new();
    changes(&mut first, readings(&engine, 0, 10), &mut actual);
    let snapshot = first.snapshot().unwrap();
    let mut second = plan().await;
    second.restore(snapshot).unwrap();
    changes(&mut second, readings(&engine, 10, 10), &mut actual);

    let rows = format_rows(&actual);
    assert!(
        rows.iter().any(|r| r[0] == "-U"),
        "updates after the restore: {rows:?}"
    );
    assert_eq!(rows, format_rows(&expected));
}

/// A lookup join's table is in its snapshot: restored, the join meets the rows the table had,
/// and rows upserted after the restore replace them.
#[tokio::test]
async fn restored_lookup_table_answers_like_the_original() {
    let mut engine = Engine::with_config(
        vigil_connectors::registry(),
        EngineConfig {
            start_queries: false,
            ..EngineConfig::default()
        },
    );
    engine.execute(SOURCE).await.unwrap();
    engine
        .execute(
            "CREATE TABLE limits (sensor_id TEXT PRIMARY KEY, max_temperature DOUBLE)
             WITH (connector = 'memory')",
        )
        .await
        .unwrap();
    let query = "SELECT s.sensor_id, s.temperature, l.max_temperature
        FROM sensors s JOIN limits l ON s.sensor_id = l.sensor_id WHERE s.temperature > l.max_temperature";
    let plan = async || {
        let graph = engine.plan(query).await.unwrap().graph;
        let table = (graph.sources.iter())
            .position(|s| s.def.name == "limits")
            .unwrap();
        let output = OutputPort {
            node: graph.output,
            port: MAIN_PORT,
        };
        (GraphExecutor::new(graph, vec![output]), table)
    };
    let limits = |ids: &[&str], max: f64| {
        let schema = Arc::clone(&engine.catalog().sources()["limits"].schema);
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(ids.to_vec())),
                Arc::new(Float64Array::from(vec![max; ids.len()])),
            ],
        )
        .unwrap()
    };
    let push = |executor: &mut GraphExecutor,
                source: usize,
                batch: RecordBatch,
                out: &mut Vec<RecordBatch>| {
        let emitted = executor
            .push_source(source, Message::Batch(ChangeBatch::inserts(batch)))
            .unwrap();
        for (_, m) in emitted {
            if let Message::Batch(b) = m {
                out.push(b.rows);
            }
        }
    };

    let (mut uninterrupted, table) = plan().await;
    let stream = 1 - table;
    let mut expected = Vec::new();
    push(
        &mut uninterrupted,
        table,
        limits(&["s0", "s1", "s2"], 3.0),
        &mut expected,
    );
    push(
        &mut uninterrupted,
        stream,
        readings(&engine, 0, 30),
        &mut expected,
    );
    push(
        &mut uninterrupted,
        table,
        limits(&["s1"], 5.0),
        &mut expected,
    );
    push(
        &mut uninterrupted,
        stream,
        readings(&engine, 30, 30),
        &mut expected,
    );

    let (mut first, _) = plan().await;
    let mut actual = Vec::new();
    push(
        &mut first,
        table,
        limits(&["s0", "s1", "s2"], 3.0),
        &mut actual,
    );
    push(&mut first, stream, readings(&engine, 0, 30), &mut actual);
    let snapshot = first.snapshot().unwrap();
    drop(first);
    let (mut second, _) = plan().await;
    second.restore(snapshot).unwrap();
    push(&mut second, table, limits(&["s1"], 5.0), &mut actual);
    push(&mut second, stream, readings(&engine, 30, 30), &mut actual);

    assert!(!expected.is_empty());
    assert_eq!(format_rows(&actual), format_rows(&expected));
}
