//! Oracle for Nexmark q5, q7 and q8 over the generator's `persons`, `auctions` and `bids`,
//! disordered and with late events: Vigil's rows equal DataFusion's batch SQL over the same
//! events minus those late for their windows, at batch sizes 1, 7 and 1024.
//!
//! Lateness is the definition, per source: the watermark before an event is the largest
//! `ts - 5 s` among the earlier events of its own source, and an event counts in a window
//! that ends after it.

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{ArrayRef, AsArray, Int64Array, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimestampNanosecondType};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use vigil_connectors::generator::{GeneratorConfig, GeneratorSource};
use vigil_engine::connector::{Source, SourceEvent};
use vigil_engine::replay::Script;
use vigil_engine::sql::Options;

use crate::join_oracle::{batch_rows, planning_engine, streamed_rows};

const DELAY: i64 = 5_000_000_000;

/// The sources: name, generator kind and options. Each spans the same minute of event time
/// in its batches, so taking one batch of each in turn keeps them abreast.
const SOURCES: [(&str, &str, &str, &str, usize); 3] = [
    ("persons", "persons", "240", "250", 4),
    ("auctions", "auctions", "720", "83", 12),
    ("bids", "bids", "2880", "21", 48),
];

/// One source's batches, made by the generator: `count` events `step_ms` apart, disordered
/// by up to 3 s, 4% of them 20 s late.
async fn generated(
    kind: &str,
    count: &str,
    step_ms: &str,
    batch: usize,
    seed: u64,
) -> Vec<RecordBatch> {
    let seed = seed.to_string();
    let options = Options::new([
        ("kind", kind),
        ("count", count),
        ("step_ms", step_ms),
        ("keys", "40"),
        ("anomaly_ratio", "0.3"),
        ("disorder_ms", "3000"),
        ("late_ratio", "0.04"),
        ("late_by_ms", "20000"),
        ("seed", seed.as_str()),
    ]);
    let config = GeneratorConfig::from_options(&options).unwrap();
    let schema = config.kind.schema();
    let mut source = GeneratorSource::try_new(config, schema, batch).unwrap();
    let mut batches = Vec::new();
    while let SourceEvent::Batch(b) = source.next_batch(Duration::ZERO).await.unwrap() {
        batches.push(b);
    }
    batches
}

/// Every source's batches in arrival order: one batch of each in turn.
async fn arrivals(seed: u64) -> Vec<(usize, RecordBatch)> {
    let mut per_source = Vec::new();
    for (_, kind, count, step, batch) in SOURCES {
        per_source.push(generated(kind, count, step, batch, seed).await);
    }
    let rounds = per_source.iter().map(Vec::len).max().unwrap_or(0);
    let mut out = Vec::new();
    for round in 0..rounds {
        for (source, batches) in per_source.iter().enumerate() {
            if let Some(batch) = batches.get(round) {
                out.push((source, batch.clone()));
            }
        }
    }
    out
}

/// The tables DataFusion joins: each source's rows with `ts` in nanoseconds and `wm`, the
/// watermark its source stood at before the row arrived.
fn batch_tables(arrivals: &[(usize, RecordBatch)]) -> SessionContext {
    let mut watermarks = [i64::MIN; 3];
    let mut tables: Vec<Vec<RecordBatch>> = vec![Vec::new(); 3];
    for (source, batch) in arrivals {
        let ts = batch.column_by_name("ts").unwrap();
        let times = ts.as_primitive::<TimestampNanosecondType>();
        let wm: Int64Array = (times.values().iter())
            .map(|t| {
                let before = watermarks[*source];
                watermarks[*source] = before.max(t - DELAY);
                before
            })
            .collect();
        // Text as it is; ids, prices and times as BIGINT.
        let mut fields: Vec<Field> = Vec::new();
        let mut columns: Vec<ArrayRef> = Vec::new();
        for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
            let column = match field.data_type() {
                DataType::Utf8 => Arc::clone(column),
                _ => cast(column, &DataType::Int64).unwrap(),
            };
            fields.push(Field::new(field.name(), column.data_type().clone(), true));
            columns.push(column);
        }
        fields.push(Field::new("wm", DataType::Int64, false));
        columns.push(Arc::new(wm));
        tables[*source].push(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap());
    }
    let ctx = SessionContext::new();
    for ((name, ..), batches) in SOURCES.iter().zip(tables) {
        let schema = batches[0].schema();
        let table = MemTable::try_new(schema, vec![batches]).unwrap();
        ctx.register_table(*name, Arc::new(table)).unwrap();
    }
    ctx
}

async fn oracle(arrivals: &[(usize, RecordBatch)], sql: &str) -> Vec<Vec<String>> {
    batch_rows(&batch_tables(arrivals), sql).await
}

async fn streamed(
    arrivals: &[(usize, RecordBatch)],
    sql: &str,
    batch_size: usize,
) -> Vec<Vec<String>> {
    let mut engine = planning_engine(batch_size);
    for (name, kind, ..) in SOURCES {
        let columns = vigil_connectors::generator::Kind::parse(kind)
            .unwrap()
            .columns_sql();
        engine
            .execute(&format!(
                "CREATE SOURCE {name} ({columns}, WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
                 WITH (connector = 'memory')"
            ))
            .await
            .unwrap();
    }
    let mut script = Script::default();
    for (source, batch) in arrivals {
        script.push(SOURCES[*source].0, batch.clone());
    }
    streamed_rows(&engine, sql, &script, batch_size).await
}

/// Each query as Vigil runs it, and as DataFusion computes it over the on-time events.
const QUERIES: [(&str, &str, &str); 3] = [
    (
        "q5: the hottest auctions of each 10-second window sliding by 2 s",
        "SELECT CAST(ab.starttime AS BIGINT), ab.auction, ab.num
         FROM (SELECT auction, count(*) AS num, window_start AS starttime, window_end AS endtime
               FROM HOP(bids, ts, INTERVAL '2' SECOND, INTERVAL '10' SECOND)
               GROUP BY auction, window_start, window_end) ab
         JOIN (SELECT max(c.num) AS maxn, c.starttime, c.endtime
               FROM (SELECT count(*) AS num, window_start AS starttime, window_end AS endtime
                     FROM HOP(bids, ts, INTERVAL '2' SECOND, INTERVAL '10' SECOND)
                     GROUP BY auction, window_start, window_end) c
               GROUP BY c.starttime, c.endtime) mb
           ON ab.starttime = mb.starttime AND ab.endtime = mb.endtime AND ab.num >= mb.maxn",
        "WITH w AS (SELECT auction, ts - ts % 2000000000 - k * 2000000000 AS ws, wm
                    FROM bids CROSS JOIN (VALUES (0), (1), (2), (3), (4)) AS o(k)),
              counts AS (SELECT auction, ws, count(*) AS num FROM w
                         WHERE ws + 10000000000 > wm GROUP BY auction, ws)
         SELECT c.ws, c.auction, c.num FROM counts c
         JOIN (SELECT ws, max(num) AS maxn FROM counts GROUP BY ws) m
           ON c.ws = m.ws AND c.num = m.maxn",
    ),
    (
        "q7: each 10-second window's highest bids",
        "SELECT b.auction, b.price, CAST(b.ts AS BIGINT)
         FROM TUMBLE(bids, ts, INTERVAL '10' SECOND) b
         JOIN (SELECT window_start, window_end, max(price) AS maxprice
               FROM TUMBLE(bids, ts, INTERVAL '10' SECOND) GROUP BY window_start, window_end) m
           ON b.window_start = m.window_start AND b.window_end = m.window_end
           AND b.price = m.maxprice",
        "WITH w AS (SELECT auction, price, ts, ts - ts % 10000000000 AS ws FROM bids
                    WHERE ts - ts % 10000000000 + 10000000000 > wm)
         SELECT w.auction, w.price, w.ts FROM w
         JOIN (SELECT ws, max(price) AS maxprice FROM w GROUP BY ws) m
           ON w.ws = m.ws AND w.price = m.maxprice",
    ),
    (
        "q8: people who opened an auction in the 10-second window they registered in",
        "SELECT p.id, p.name, CAST(p.window_start AS BIGINT)
         FROM (SELECT id, name, window_start, window_end
               FROM TUMBLE(persons, ts, INTERVAL '10' SECOND)
               GROUP BY id, name, window_start, window_end) p
         JOIN (SELECT seller, window_start, window_end
               FROM TUMBLE(auctions, ts, INTERVAL '10' SECOND)
               GROUP BY seller, window_start, window_end) a
           ON p.id = a.seller AND p.window_start = a.window_start AND p.window_end = a.window_end",
        "WITH p AS (SELECT DISTINCT id, name, ts - ts % 10000000000 AS ws FROM persons
                    WHERE ts - ts % 10000000000 + 10000000000 > wm),
              a AS (SELECT DISTINCT seller, ts - ts % 10000000000 AS ws FROM auctions
                    WHERE ts - ts % 10000000000 + 10000000000 > wm)
         SELECT p.id, p.name, p.ws FROM p JOIN a ON p.id = a.seller AND p.ws = a.ws",
    ),
];

#[tokio::test]
async fn nexmark_q5_q7_q8_equal_batch_sql_minus_late_events() {
    for seed in 1..=3 {
        let arrivals = arrivals(seed).await;
        let late = batch_tables(&arrivals)
            .sql("SELECT count(*) FROM bids WHERE ts <= wm")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let late = late[0]
            .column(0)
            .as_primitive::<datafusion::arrow::datatypes::Int64Type>();
        assert!(
            late.value(0) > 10,
            "seed {seed}: bids come late ({})",
            late.value(0)
        );
        for (name, streaming, batch) in QUERIES {
            let expected = oracle(&arrivals, batch).await;
            assert!(
                expected.len() > 5,
                "{name}: rows to compare ({})",
                expected.len()
            );
            for batch_size in [1, 7, 1024] {
                let actual = streamed(&arrivals, streaming, batch_size).await;
                assert_eq!(
                    actual, expected,
                    "{name}, seed {seed}, batch size {batch_size}"
                );
            }
        }
    }
}
