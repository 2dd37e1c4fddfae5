//! What the engine refuses before it can hurt: statements too deep to plan, DROPs that
//! would orphan a running query, and functions asked to build huge values.

use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray, TimestampNanosecondArray};
use vigil_engine::replay::{Script, run_to_completion};
use vigil_engine::{Engine, EngineConfig, StatementOutcome};
use vigil_tests::format_rows;

const SOURCE: &str = "CREATE SOURCE s (k TEXT, v BIGINT, ts TIMESTAMP, \
    WATERMARK FOR ts AS ts) WITH (connector = 'memory')";

fn engine() -> Engine {
    Engine::with_config(vigil_connectors::registry(), EngineConfig::default())
}

async fn error_of(engine: &mut Engine, sql: &str) -> String {
    match engine.execute(sql).await {
        Ok(_) => panic!("expected an error from {}", &sql[..sql.len().min(80)]),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn statements_nested_past_the_limit_are_refused_with_a_sentence() {
    let mut engine = engine();
    engine.execute(SOURCE).await.unwrap();
    let deep = [
        format!("SELECT {} FROM s", vec!["v"; 3000].join(" + ")),
        format!(
            "SELECT k FROM s WHERE {}",
            vec!["v > 1"; 3000].join(" AND ")
        ),
        format!("SELECT k || {} FROM s", vec!["k"; 3000].join(" || ")),
        vec!["SELECT k FROM s"; 3000].join(" UNION ALL "),
    ];
    for sql in &deep {
        let message = error_of(&mut engine, sql).await;
        assert!(
            message.contains("limit of 256") || message.contains("more than 256"),
            "{message}"
        );
    }
    let huge = format!(
        "SELECT k FROM s WHERE k IN ({})",
        vec!["'x'"; 60_000].join(", ")
    );
    let message = error_of(&mut engine, &huge).await;
    assert!(message.contains("KiB long, over the limit"), "{message}");
    // Within the limit, a long chain plans.
    let within = format!("SELECT {} AS n FROM s", vec!["v"; 200].join(" + "));
    engine.plan(&within).await.unwrap();
}

#[tokio::test]
async fn dropping_a_source_or_sink_in_use_names_the_queries_or_stops_them() {
    let mut engine = engine();
    // A paced generator never ends, so the query keeps running.
    engine
        .execute(
            "CREATE SOURCE s (sensor_id TEXT, temperature DOUBLE, humidity DOUBLE, ts TIMESTAMP) \
             WITH (connector = 'generator', kind = 'sensors', rate = '10')",
        )
        .await
        .unwrap();
    let outcomes = engine
        .execute(
            "CREATE SINK alerts WITH (connector = 'memory') AS \
             SELECT sensor_id FROM s WHERE temperature > 10",
        )
        .await
        .unwrap();
    let Some(StatementOutcome::SinkStarted { query, .. }) = outcomes.into_iter().next() else {
        panic!("the sink's query starts");
    };
    for (drop, what) in [
        ("DROP SOURCE s", "source 's'"),
        ("DROP SINK alerts", "sink 'alerts'"),
    ] {
        let message = error_of(&mut engine, drop).await;
        assert!(message.contains(&format!("{what} is in use")), "{message}");
        assert!(
            message.contains("(alerts)") && message.contains("CASCADE"),
            "{message}"
        );
    }
    assert!(
        !query.is_finished(),
        "a refused DROP leaves the query running"
    );
    let outcomes = engine.execute("DROP SOURCE s CASCADE").await.unwrap();
    match &outcomes[..] {
        [StatementOutcome::Dropped { stopped, .. }] => assert_eq!(stopped, &["alerts"]),
        _ => panic!("one drop"),
    }
    tokio::time::timeout(std::time::Duration::from_secs(10), query.wait())
        .await
        .expect("CASCADE stops the query")
        .unwrap();
    assert!(engine.catalog().sources().is_empty());
    // Nothing uses the sink now.
    engine.execute("DROP SINK alerts").await.unwrap();
}

#[tokio::test]
async fn functions_asked_for_huge_values_fail_instead_of_allocating() {
    let mut engine = engine();
    engine.execute(SOURCE).await.unwrap();
    // The row that asks too much is set aside and the others go on.
    let planned = engine
        .plan("SELECT k, repeat(k, v) AS x, lpad(k, v) AS y FROM s")
        .await
        .unwrap();
    let schema = std::sync::Arc::clone(&engine.catalog().sources()["s"].schema);
    let rows = RecordBatch::try_new(
        schema,
        vec![
            std::sync::Arc::new(StringArray::from(vec!["ab", "cd", "ef"])),
            std::sync::Arc::new(Int64Array::from(vec![2, 100_000_000, 1])),
            std::sync::Arc::new(TimestampNanosecondArray::from(vec![0, 1, 2])),
        ],
    )
    .unwrap();
    let mut script = Script::default();
    script.push("s", rows);
    let output = run_to_completion(planned.graph, &script, 1024).unwrap();
    assert_eq!(
        format_rows(&output.rows),
        vec![vec!["ab", "abab", "ab"], vec!["ef", "ef", "e"]]
    );
    assert_eq!(output.rejected.len(), 1);
    assert!(
        output.rejected[0].errors[0].contains("over the limit"),
        "{:?}",
        output.rejected
    );
}

/// Planning errors point at the clause they are about, not at the statement's first word.
#[tokio::test]
async fn planning_errors_point_at_the_clause_they_are_about() {
    let mut engine = engine();
    engine.execute(SOURCE).await.unwrap();
    let cases = [
        ("SELECT k FROM s\nORDER BY k", (2, 1)),
        ("SELECT a.k FROM s a JOIN s b ON a.k = b.k", (1, 21)),
        (
            "SELECT count(*) FROM HOP(s, ts, INTERVAL '1' MINUTE, INTERVAL '90' SECOND) \
             GROUP BY window_start, window_end",
            (1, 22),
        ),
        (
            "SELECT window_start, count(*) FROM TUMBLE(s, ts, INTERVAL '1' MINUTE)\n  GROUP BY window_start",
            (2, 3),
        ),
        ("SELECT k, count(DISTINCT k, v) FROM s GROUP BY k", (1, 17)),
        ("SELECT k, row_number() OVER (ORDER BY k) FROM s", (1, 30)),
        ("SELECT k FROM s INTERSECT SELECT k FROM s", (1, 17)),
        ("SELECT k FROM s WHERE k IN (SELECT k FROM s)", (1, 29)),
        ("SELECT nope FROM s", (1, 8)),
        ("SELECT k FROM s LIMIT v", (1, 23)),
        ("SELECT upper(k, k) FROM s", (1, 8)),
    ];
    for (sql, (line, column)) in cases {
        let error = engine
            .execute(sql)
            .await
            .err()
            .unwrap_or_else(|| panic!("no error for {sql}"));
        let location = error
            .as_sql()
            .and_then(|e| e.location)
            .unwrap_or_else(|| panic!("no position for {sql}: {error}"));
        assert_eq!(
            (location.line, location.column),
            (line, column),
            "{sql}: {error}"
        );
        let text = error.to_string();
        assert!(
            !text.contains("bug in DataFusion") && !text.contains("@"),
            "{text}"
        );
    }
}
