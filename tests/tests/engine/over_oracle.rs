//! Oracle for OVER windows: on random, disordered readings with NULLs, ties in time and
//! late rows, each row's sliding aggregates (RANGE and ROWS frames, every aggregate Vigil
//! slides itself) equal DataFusion's batch window functions over the on-time rows, at
//! batch sizes 1, 7 and 1024.
//!
//! Lateness is the definition: the watermark before a row is the largest `ts - 5 s` among
//! the rows before it, and a row at or below it is dropped.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampNanosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use vigil_engine::replay::Script;
use vigil_tests::fuzz::Rng;

use crate::join_oracle::{batch_rows, planning_engine, streamed_rows};

const SECOND: i64 = 1_000_000_000;
const DELAY: i64 = 5 * SECOND;

struct Reading {
    key: String,
    value: Option<f64>,
    ts: i64,
}

/// Readings ~250 ms apart over 5 sensors, shuffled back by up to 3 s, 3% of them 12 s late,
/// 10% without a value. With `whole_seconds`, times fall on seconds, so many share one.
fn readings(seed: u64, n: usize, whole_seconds: bool) -> Vec<Reading> {
    let mut rng = Rng::new(seed);
    (0..n as i64)
        .map(|i| {
            let mut ts = 1_700_000_000 * SECOND + i * SECOND / 4 + rng.below(1000) as i64;
            ts -= rng.below(3000) as i64 * SECOND / 1000;
            if rng.below(100) < 3 {
                ts -= 12 * SECOND;
            }
            if whole_seconds {
                ts -= ts.rem_euclid(SECOND);
            }
            let value = (rng.below(10) != 0).then(|| rng.below(10_000) as f64 / 100.0);
            Reading {
                key: format!("s{}", rng.below(5)),
                value,
                ts,
            }
        })
        .collect()
}

fn columns(readings: &[Reading]) -> Vec<ArrayRef> {
    vec![
        Arc::new(StringArray::from_iter_values(
            readings.iter().map(|r| r.key.as_str()),
        )),
        Arc::new(Float64Array::from_iter(readings.iter().map(|r| r.value))),
    ]
}

/// DataFusion's table `r`: the on-time readings, times as BIGINT nanoseconds.
fn on_time_table(readings: &[Reading]) -> SessionContext {
    let mut watermark = i64::MIN;
    let on_time: Vec<&Reading> = (readings.iter())
        .filter(|r| {
            let before = watermark;
            watermark = watermark.max(r.ts - DELAY);
            r.ts > before
        })
        .collect();
    let owned: Vec<Reading> = (on_time.iter())
        .map(|r| Reading {
            key: r.key.clone(),
            value: r.value,
            ts: r.ts,
        })
        .collect();
    let mut columns = columns(&owned);
    columns.push(Arc::new(Int64Array::from_iter_values(
        owned.iter().map(|r| r.ts),
    )));
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Utf8, false),
        Field::new("v", DataType::Float64, true),
        Field::new("ts", DataType::Int64, false),
    ]));
    let rows = RecordBatch::try_new(Arc::clone(&schema), columns).unwrap();
    let ctx = SessionContext::new();
    let table = MemTable::try_new(schema, vec![vec![rows]]).unwrap();
    ctx.register_table("r", Arc::new(table)).unwrap();
    ctx
}

async fn streamed(readings: &[Reading], sql: &str, batch_size: usize) -> Vec<Vec<String>> {
    let mut engine = planning_engine(batch_size);
    engine
        .execute(
            "CREATE SOURCE r (k TEXT, v DOUBLE, ts TIMESTAMP,
             WATERMARK FOR ts AS ts - INTERVAL '5' SECOND) WITH (connector = 'memory')",
        )
        .await
        .unwrap();
    let schema = Arc::clone(&engine.catalog().sources()["r"].schema);
    let mut script = Script::default();
    for chunk in readings.chunks(64) {
        let mut columns = columns(chunk);
        columns.push(Arc::new(TimestampNanosecondArray::from_iter_values(
            chunk.iter().map(|r| r.ts),
        )));
        script.push(
            "r",
            RecordBatch::try_new(Arc::clone(&schema), columns).unwrap(),
        );
    }
    streamed_rows(&engine, sql, &script, batch_size).await
}

/// The aggregates of one frame, rounded so that sums taken in another order agree.
fn every_aggregate(frame: &str) -> String {
    ["count(*)", "count(v)"]
        .iter()
        .map(|f| format!("{f} OVER {frame}"))
        .chain(
            [
                "sum",
                "avg",
                "min",
                "max",
                "stddev_samp",
                "stddev_pop",
                "var_samp",
                "var_pop",
            ]
            .iter()
            .map(|f| format!("round({f}(v) OVER {frame}, 6)")),
        )
        .collect::<Vec<_>>()
        .join(", ")
}

/// Each query as Vigil runs it and as DataFusion computes it, and whether it needs times
/// that tie (RANGE peers) or that do not (ROWS frames order ties by arrival, DataFusion by
/// chance).
fn queries() -> Vec<(String, String, bool)> {
    let range = |reach: &str| {
        format!("(PARTITION BY k ORDER BY ts RANGE BETWEEN {reach} PRECEDING AND CURRENT ROW)")
    };
    let rows = "(PARTITION BY k ORDER BY ts ROWS BETWEEN 2 PRECEDING AND CURRENT ROW)";
    vec![
        (
            format!(
                "SELECT k, CAST(ts AS BIGINT), {} FROM r",
                every_aggregate(&range("INTERVAL '3' SECOND"))
            ),
            format!(
                "SELECT k, ts, {} FROM r",
                every_aggregate(&range("3000000000"))
            ),
            true,
        ),
        (
            format!(
                "SELECT k, CAST(ts AS BIGINT), {} FROM r",
                every_aggregate(rows)
            ),
            format!("SELECT k, ts, {} FROM r", every_aggregate(rows)),
            false,
        ),
        (
            format!(
                "SELECT k, CAST(ts AS BIGINT), round(avg(v) OVER {}, 6),
                   max(v) OVER (PARTITION BY k ORDER BY ts ROWS BETWEEN 3 PRECEDING AND CURRENT ROW)
                 FROM r",
                range("INTERVAL '2' SECOND")
            ),
            format!(
                "SELECT k, ts, round(avg(v) OVER {}, 6),
                   max(v) OVER (PARTITION BY k ORDER BY ts ROWS BETWEEN 3 PRECEDING AND CURRENT ROW)
                 FROM r",
                range("2000000000")
            ),
            false,
        ),
        (
            "SELECT CAST(ts AS BIGINT), count(*) OVER (ORDER BY ts RANGE BETWEEN
               INTERVAL '1' SECOND PRECEDING AND CURRENT ROW), min(v) OVER (ORDER BY ts
               RANGE BETWEEN INTERVAL '1' SECOND PRECEDING AND CURRENT ROW) FROM r"
                .into(),
            "SELECT ts, count(*) OVER (ORDER BY ts RANGE BETWEEN 1000000000 PRECEDING AND
               CURRENT ROW), min(v) OVER (ORDER BY ts RANGE BETWEEN 1000000000 PRECEDING AND
               CURRENT ROW) FROM r"
                .into(),
            true,
        ),
    ]
}

#[tokio::test]
async fn sliding_over_aggregates_equal_datafusion_over_the_on_time_rows() {
    for seed in [3, 17, 2024] {
        for (vigil, datafusion, ties) in queries() {
            let input = readings(seed, 700, ties);
            let expected = batch_rows(&on_time_table(&input), &datafusion).await;
            assert!(expected.len() > 500, "most readings are on time");
            for batch_size in [1, 7, 1024] {
                let got = streamed(&input, &vigil, batch_size).await;
                assert_eq!(
                    got, expected,
                    "seed {seed}, batch size {batch_size}: {vigil}"
                );
            }
        }
    }
}
