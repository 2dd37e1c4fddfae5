//! Sources are told which columns a query reads, so that they decode only those.

use vigil_engine::{Engine, EngineConfig};

const SOURCES: &str = "
CREATE SOURCE sensors (sensor_id TEXT, temperature DOUBLE, humidity DOUBLE, site TEXT, ts TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '5' SECOND) WITH (connector = 'memory');
CREATE SOURCE payments (account_id BIGINT, amount DOUBLE, note TEXT, ts TIMESTAMP)
    WITH (connector = 'memory');
CREATE VIEW hot AS SELECT sensor_id, temperature FROM sensors WHERE humidity > 80;";

/// The names of the columns each source of `sql` reads; `*` when all.
async fn read(sql: &str) -> Vec<String> {
    let mut engine = Engine::with_config(
        vigil_connectors::registry(),
        EngineConfig {
            start_queries: false,
            ..EngineConfig::default()
        },
    );
    engine.execute(SOURCES).await.unwrap();
    let graph = engine.plan(sql).await.unwrap().graph;
    graph
        .sources
        .iter()
        .map(|s| match &s.read_columns {
            None => format!("{}: *", s.def.name),
            Some(columns) => {
                let names: Vec<&str> = columns
                    .iter()
                    .map(|&i| s.def.schema.field(i).name().as_str())
                    .collect();
                format!("{}: {}", s.def.name, names.join(", "))
            }
        })
        .collect()
}

#[tokio::test]
async fn a_source_reads_the_columns_its_query_uses_and_its_watermark_needs() {
    let cases = [
        // The watermark's column is read even when the query does not use it.
        (
            "SELECT sensor_id FROM sensors WHERE temperature > 30",
            vec!["sensors: sensor_id, temperature, ts"],
        ),
        // A window reads its time column.
        (
            "SELECT window_start, window_end, count(*) FROM TUMBLE(sensors, ts, INTERVAL '1' MINUTE) \
             GROUP BY window_start, window_end",
            vec!["sensors: ts"],
        ),
        // Through a view, its filter's columns too.
        (
            "SELECT sensor_id, max(temperature) FROM hot GROUP BY sensor_id",
            vec!["sensors: sensor_id, temperature, humidity, ts"],
        ),
        (
            "SELECT account_id, sum(amount) FROM payments GROUP BY account_id",
            vec!["payments: account_id, amount"],
        ),
        ("SELECT * FROM payments", vec!["payments: *"]),
    ];
    for (sql, expected) in cases {
        assert_eq!(read(sql).await, expected, "{sql}");
    }
}
