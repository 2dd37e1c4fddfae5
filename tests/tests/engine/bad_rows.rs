//! Bad records and rows in files: each is dead-lettered alone with its coordinates, and the
//! query goes on with the rest.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use vigil_engine::{Engine, EngineConfig, StatementOutcome};

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vigil-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn json_lines(path: &PathBuf) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// Runs `rule` (sources and a sink over files) to the end; returns the query's counters.
async fn run(sql: &str, batch_size: usize) -> vigil_engine::runtime::MetricsSnapshot {
    let mut engine = Engine::with_config(
        vigil_connectors::registry(),
        EngineConfig {
            batch_size,
            ..EngineConfig::default()
        },
    );
    let mut snapshot = None;
    for outcome in engine.execute(sql).await.unwrap() {
        if let StatementOutcome::SinkStarted { query, .. } = outcome {
            let metrics = std::sync::Arc::clone(query.metrics());
            tokio::time::timeout(Duration::from_secs(60), query.wait())
                .await
                .expect("the bounded query ends")
                .expect("the query succeeds despite bad rows");
            snapshot = Some(metrics.snapshot());
        }
    }
    snapshot.expect("a query ran")
}

/// `v / h` with some `h = 0`: those rows go to the dead-letter file with the error and the
/// row, at every batch size; the other rows reach the sink.
#[tokio::test]
async fn a_row_whose_expression_fails_is_dead_lettered_and_the_query_goes_on() {
    for batch_size in [1, 7, 1024] {
        let dir = scratch_dir(&format!("row-errors-{batch_size}"));
        let input = dir.join("in.jsonl");
        let lines: Vec<String> = (0..50)
            .map(|i| format!(r#"{{"id": {i}, "v": {}, "h": {}}}"#, i * 10, i % 10))
            .collect();
        std::fs::write(&input, lines.join("\n")).unwrap();
        let (output, dead) = (dir.join("out.jsonl"), dir.join("dead.jsonl"));
        let metrics = run(
            &format!(
                "CREATE SOURCE s (id BIGINT, v BIGINT, h BIGINT) WITH (connector = 'file', \
                 path = '{}', dead_letter_path = '{}');
                 CREATE SINK out WITH (connector = 'file', path = '{}') AS
                 SELECT id, v / h AS q FROM s;",
                input.display(),
                dead.display(),
                output.display()
            ),
            batch_size,
        )
        .await;
        let ids: Vec<i64> = json_lines(&output)
            .iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect();
        let expected: Vec<i64> = (0..50).filter(|i| i % 10 != 0).collect();
        assert_eq!(ids, expected, "batch size {batch_size}");
        let dead = json_lines(&dead);
        let dead_ids: Vec<i64> = dead
            .iter()
            .map(|d| d["row"]["id"].as_i64().unwrap())
            .collect();
        assert_eq!(dead_ids, vec![0, 10, 20, 30, 40], "batch size {batch_size}");
        for letter in &dead {
            assert_eq!(letter["source"], "s");
            assert_eq!(letter["query"], "out");
            assert_eq!(letter["operator"], "Project");
            assert!(
                letter["error"].as_str().unwrap().contains("Divide by zero"),
                "{letter}"
            );
        }
        assert_eq!(metrics.row_errors, 5);
        assert_eq!(metrics.dead_letters, 0);
    }
}

/// A file's records are judged one by one: values that do not fit their type exactly are
/// dead letters with their line, a byte-order mark is skipped, and whether a line is
/// accepted does not depend on the lines around it. (The query reads every column: a column
/// no query reads is not decoded, so not judged either.)
#[tokio::test]
async fn file_records_that_do_not_fit_exactly_are_dead_lettered_with_their_line() {
    let dir = scratch_dir("strict-json");
    let input = dir.join("in.jsonl");
    let text = "\u{feff}{\"n\": 1, \"x\": 1.5, \"ts\": \"2024-01-01T00:00:00Z\"}\n\
        {\"n\": 1.9}\n\
        {\"x\": 1e400}\n\
        {\"ts\": \"3000-01-01T00:00:00Z\"}\n\
        {\"n\": 2}{\"n\": 3}\n\
        {\"n\": 4,\n\
        \"x\": 2}\n\
        {\"n\": 5}\n";
    std::fs::write(&input, text).unwrap();
    let (output, dead) = (dir.join("out.jsonl"), dir.join("dead.jsonl"));
    let metrics = run(
        &format!(
            "CREATE SOURCE s (n BIGINT, x DOUBLE, ts TIMESTAMP) WITH (connector = 'file', \
             path = '{}', dead_letter_path = '{}');
             CREATE SINK out WITH (connector = 'file', path = '{}') AS SELECT n, x, ts FROM s;",
            input.display(),
            dead.display(),
            output.display()
        ),
        1024,
    )
    .await;
    let kept: Vec<i64> = json_lines(&output)
        .iter()
        .map(|r| r["n"].as_i64().unwrap())
        .collect();
    assert_eq!(kept, vec![1, 5]);
    let lines: Vec<i64> = json_lines(&dead)
        .iter()
        .map(|d| d["line"].as_i64().unwrap())
        .collect();
    assert_eq!(lines, vec![2, 3, 4, 5, 6, 7]);
    assert_eq!(metrics.dead_letters, 6);
}
