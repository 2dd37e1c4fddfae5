//! State is freed as the watermark passes: after a run of disordered events, events far
//! later on every split leave each stateful operator holding what those events alone make
//! it hold (EXPLAIN ANALYZE's state rows back to their floor).

use std::sync::Arc;

use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray, TimestampNanosecondArray};
use vigil_engine::Engine;
use vigil_engine::runtime::GraphExecutor;

use crate::restore::{Part, QUERIES, SECOND, engine, executor, feed, input};

/// One event per split, a day after the input, moving every split's watermark past it.
fn a_day_later(engine: &Engine) -> Vec<Part> {
    let schema = Arc::clone(&engine.catalog().sources()["events"].schema);
    let at = 1_700_000_000 * SECOND + 86_400 * SECOND;
    (0..2)
        .map(|split| Part {
            split,
            rows: RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(StringArray::from(vec!["k0"])),
                    Arc::new(Int64Array::from(vec![3])),
                    Arc::new(TimestampNanosecondArray::from(vec![at])),
                ],
            )
            .unwrap(),
        })
        .collect()
}

/// Each operator's state rows, by node.
fn state_rows(executor: &GraphExecutor) -> Vec<(&'static str, u64)> {
    (executor.operator_stats().iter())
        .map(|s| (s.operator, s.state_rows))
        .collect()
}

#[tokio::test]
async fn windows_sessions_and_joins_hold_no_rows_the_watermark_has_passed() {
    let inputs = engine().await;
    let later = a_day_later(&inputs);
    for (q, query) in QUERIES.iter().enumerate() {
        let (mut fresh, updating, _) = executor(query).await;
        let windowed = query.contains("EMIT");
        if (updating && !windowed) || query.contains("state per key") {
            // An updating GROUP BY keeps a row per key for as long as the key exists, a ROWS
            // frame a partition's last rows, ROW_NUMBER a count per key: bounded by the
            // keys, not by time. Windows emitting early or late are freed by time.
            continue;
        }
        feed(&mut fresh, &later, updating, &mut Vec::new());
        let floor = state_rows(&fresh);
        for batch_size in [1, 7, 1024] {
            let parts = input(&inputs, q as u64 + 5, 240, batch_size);
            let (mut running, _, _) = executor(query).await;
            feed(&mut running, &parts, updating, &mut Vec::new());
            let held: u64 = state_rows(&running).iter().map(|(_, rows)| rows).sum();
            assert!(
                held > 0 || floor.iter().all(|(_, r)| *r == 0),
                "query {q} holds state mid-run"
            );
            feed(&mut running, &later, updating, &mut Vec::new());
            let left = state_rows(&running);
            if windowed {
                // An open window may also hold the rows it emitted early, which the floor's
                // windows, never past an early tick, do not.
                let within = left.iter().zip(&floor).all(|(l, f)| l.1 <= 2 * f.1);
                assert!(
                    within,
                    "query {q}, batch size {batch_size}: {left:?} over {floor:?}"
                );
                continue;
            }
            if query.contains("state_ttl") {
                // A TTL counts from the watermark a row arrived at: the later events, come
                // while the watermark still stood at the run's end, are forgotten too.
                let within = left.iter().zip(&floor).all(|(l, f)| l.1 <= f.1);
                assert!(
                    within,
                    "query {q}, batch size {batch_size}: {left:?} over {floor:?}"
                );
                continue;
            }
            assert_eq!(left, floor, "query {q}, batch size {batch_size}");
        }
    }
}

#[tokio::test]
async fn state_kept_per_key_is_bounded_by_the_keys_not_the_events() {
    let inputs = engine().await;
    let later = a_day_later(&inputs);
    for (q, query) in QUERIES.iter().enumerate() {
        let (_, updating, _) = executor(query).await;
        if updating || !query.contains("state per key") {
            continue;
        }
        let parts = input(&inputs, q as u64 + 5, 240, 7);
        let (mut running, _, _) = executor(query).await;
        feed(&mut running, &parts, updating, &mut Vec::new());
        feed(&mut running, &later, updating, &mut Vec::new());
        // 5 keys on 2 splits: a count, or a frame's last few rows, per key and split.
        let held: u64 = state_rows(&running).iter().map(|(_, rows)| rows).sum();
        assert!(
            held <= 40,
            "query {q} holds {held} rows of 240 events: {query}"
        );
    }
}
