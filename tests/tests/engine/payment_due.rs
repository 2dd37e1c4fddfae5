//! The payment-due rule from `queries/payment_due.sql`, on the example of the issue.

use datafusion::arrow::array::{Float64Array, Int64Array, RecordBatch, TimestampNanosecondArray};
use std::sync::Arc;
use vigil_engine::replay::{Script, run_to_completion};
use vigil_engine::sql::StreamParser;
use vigil_engine::{Engine, EngineConfig, StatementOutcome};
use vigil_tests::{format_rows, workspace_root};

const PROFILE: &str = "
CREATE SOURCE payments (account_id BIGINT, amount DOUBLE, ts TIMESTAMP) WITH (connector = 'memory');
CREATE SOURCE dues (account_id BIGINT, amount DOUBLE, ts TIMESTAMP) WITH (connector = 'memory');
CREATE SINK payment_due_alerts WITH (connector = 'memory');
";

fn event(engine: &Engine, source: &str, account: i64, amount: f64, t: i64) -> RecordBatch {
    let schema = Arc::clone(&engine.catalog().sources()[source].schema);
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(vec![account])),
            Arc::new(Float64Array::from(vec![amount])),
            Arc::new(TimestampNanosecondArray::from(vec![t])),
        ],
    )
    .unwrap()
}

#[tokio::test]
async fn payment_due_alerts_follow_the_outstanding_amount_of_the_changed_account_only() {
    let mut engine = Engine::with_config(
        vigil_connectors::registry(),
        EngineConfig {
            batch_size: 1,
            start_queries: false,
            ..EngineConfig::default()
        },
    );
    engine.execute(PROFILE).await.unwrap();
    let rule = std::fs::read_to_string(workspace_root().join("queries/payment_due.sql")).unwrap();
    let mut planned = None;
    for statement in StreamParser::parse_sql(&rule).unwrap() {
        if let StatementOutcome::SinkPlanned { query, .. } =
            engine.execute_statement(statement).await.unwrap()
        {
            planned = Some(query);
        }
    }
    let graph = planned.expect("the rule plans a sink").graph;

    let mut script = Script::default();
    // Account 2 owes a lot once, early; it must never be re-emitted afterwards.
    script.push("dues", event(&engine, "dues", 2, 500.0, 0));
    script.push("payments", event(&engine, "payments", 1, 100.0, 1));
    script.push("payments", event(&engine, "payments", 1, 101.0, 2));
    script.push("dues", event(&engine, "dues", 1, 200.0, 3)); // outstanding -1: no alert
    script.push("dues", event(&engine, "dues", 1, 211.0, 4)); // 210: alert
    script.push("dues", event(&engine, "dues", 3, 20.0, 5)); // another account, below 150
    script.push("dues", event(&engine, "dues", 1, 212.0, 6)); // 422: alert updated

    let out = run_to_completion(graph, &script, 1).unwrap();
    let rows = format_rows(&out.rows);
    let expected: Vec<Vec<String>> = [
        ["+I", "2", "500.0"],
        ["+I", "1", "210.0"],
        ["-U", "1", "210.0"],
        ["+U", "1", "422.0"],
    ]
    .iter()
    .map(|r| r.iter().map(|s| s.to_string()).collect())
    .collect();
    assert_eq!(rows, expected);
}
