//! `vigil repl` through a pipe: a script with no prompts, exact output, the first error ends it.

use std::path::PathBuf;
use std::process::{Command, Output};

/// Runs `vigil repl` with `input` piped to it.
fn repl_script(args: &[&str], input: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .arg("repl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("vigil runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Runs a script with `--json` among `args`; checks it succeeded and returns its rows.
fn json_rows(args: &[&str], input: &str) -> Vec<serde_json::Value> {
    let out = repl_script(args, input);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

const REPL_SOURCE: &str =
    "CREATE SOURCE sensors (sensor_id TEXT, temperature DOUBLE, humidity DOUBLE, ts TIMESTAMP,
  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
  WITH (connector = 'generator', kind = 'sensors', count = '3000', keys = '2', seed = '1');
";

#[test]
fn piped_repl_runs_statements_and_prints_rows_as_json_lines() {
    let input = format!(
        "{REPL_SOURCE}-- a comment; not a statement
SELECT window_start, sensor_id, count(*) AS readings
FROM TUMBLE(sensors, ts, INTERVAL '10' SECOND)
GROUP BY window_start, window_end, sensor_id;
"
    );
    // 3,000 readings 10 ms apart: three 10-second windows of 1,000, over two sensors.
    let rows = json_rows(&["--json"], &input);
    assert_eq!(rows.len(), 6);
    for (window, start) in ["00:00:00", "00:00:10", "00:00:20"].iter().enumerate() {
        let in_window: Vec<&serde_json::Value> = rows[window * 2..window * 2 + 2].iter().collect();
        let mut sensors: Vec<&str> = in_window
            .iter()
            .map(|r| r["sensor_id"].as_str().unwrap())
            .collect();
        sensors.sort();
        assert_eq!(sensors, vec!["sensor-0000", "sensor-0001"]);
        for row in &in_window {
            assert_eq!(row["window_start"], format!("2024-01-01T{start}.000Z"));
        }
        let total: i64 = in_window
            .iter()
            .map(|r| r["readings"].as_i64().unwrap())
            .sum();
        assert_eq!(total, 1000, "window {start}");
    }
}

#[test]
fn piped_repl_runs_an_event_pattern_over_generated_logins() {
    // Generated logins with failures bursting for a few users (anomaly_ratio): every alert
    // the pattern finds has at least 5 failures, then a success after them.
    let input = "CREATE SOURCE logins (user_id TEXT, event_type TEXT, ip TEXT, device_id TEXT,
  new_device BOOLEAN, ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
  WITH (connector = 'generator', kind = 'logins', count = '20000', keys = '20', seed = '3',
  anomaly_ratio = '0.2');
SELECT user_id, failures, first_ts, success_ts FROM logins MATCH_RECOGNIZE (
  PARTITION BY user_id ORDER BY ts
  MEASURES COUNT(F.*) AS failures, FIRST(F.ts) AS first_ts, S.ts AS success_ts
  PATTERN (F{5,} S) WITHIN INTERVAL '2' MINUTE
  DEFINE F AS F.event_type = 'login_failed', S AS S.event_type = 'login_success');
";
    let rows = json_rows(&["--json"], input);
    assert!(!rows.is_empty(), "the generated bursts match");
    for row in &rows {
        assert!(row["failures"].as_i64().unwrap() >= 5, "{row}");
        // RFC 3339 times of one zone and precision order as text.
        assert!(
            row["first_ts"].as_str() < row["success_ts"].as_str(),
            "{row}"
        );
    }
}

#[test]
fn piped_repl_runs_windows_emitting_early_whose_changelog_folds_to_the_final_rows() {
    let stats = "SELECT window_start, sensor_id, count(*) AS n, max(temperature) AS hottest
  FROM TUMBLE(sensors, ts, INTERVAL '10' SECOND) GROUP BY window_start, window_end, sensor_id";
    let input = format!("{REPL_SOURCE}{stats} EMIT EARLY EVERY INTERVAL '2' SECOND;\n");
    let changes = json_rows(&["--json"], &input);
    assert!(
        changes.iter().any(|c| c["op"] == "+U"),
        "early rows are updated"
    );
    // The latest row per window and sensor is what the windows emit without a policy.
    let mut folded = std::collections::BTreeMap::new();
    for mut change in changes {
        let key = (
            change["window_start"].to_string(),
            change["sensor_id"].to_string(),
        );
        match change["op"].as_str() {
            Some("+I" | "+U") => {
                change.as_object_mut().unwrap().remove("op");
                folded.insert(key, change);
            }
            Some("-U") => assert!(folded.contains_key(&key), "{change}"),
            _ => panic!("unexpected change {change}"),
        }
    }
    let mut finals = json_rows(&["--json"], &format!("{REPL_SOURCE}{stats};\n"));
    finals.sort_by_key(|row| {
        (
            row["window_start"].to_string(),
            row["sensor_id"].to_string(),
        )
    });
    assert!(finals.len() > 2, "{finals:?}");
    assert_eq!(folded.into_values().collect::<Vec<_>>(), finals);
}

#[test]
fn piped_repl_stops_at_the_first_error_with_its_line_and_a_caret() {
    let input = format!("{REPL_SOURCE}\\describe sensors\nSELECT nope FROM sensors;\nSELECT 1;\n");
    let out = repl_script(&[], &input);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "  sensor_id            Utf8
  temperature          Float64
  humidity             Float64
  ts                   Timestamp(ns)
  watermark for ts as ts - INTERVAL '5' SECOND
  with (connector = 'generator', count = '3000', keys = '2', kind = 'sensors', seed = '1')
"
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: <stdin>:5:8: column 'nope' not found
  |
5 | SELECT nope FROM sensors;
  |        ^
"
    );
}

#[test]
fn piped_repl_prints_a_window_query_as_one_aligned_table() {
    let input = format!(
        "{REPL_SOURCE}SELECT window_start, window_end, count(*) AS readings
FROM TUMBLE(sensors, ts, INTERVAL '10' SECOND)
GROUP BY window_start, window_end;
"
    );
    let out = repl_script(&[], &input);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        " window_start             | window_end               | readings
--------------------------+--------------------------+----------
 2024-01-01T00:00:00.000Z | 2024-01-01T00:00:10.000Z |     1000
 2024-01-01T00:00:10.000Z | 2024-01-01T00:00:20.000Z |     1000
 2024-01-01T00:00:20.000Z | 2024-01-01T00:00:30.000Z |     1000
"
    );
}

#[test]
fn piped_repl_shows_change_kinds_of_an_updating_query_and_limit_ends_it() {
    // Unbounded: only the LIMIT ends this query.
    let input = "CREATE SOURCE logins (user_id TEXT, event_type TEXT, ip TEXT, ts TIMESTAMP)
  WITH (connector = 'generator', kind = 'logins', keys = '1');
SELECT user_id, count(*) AS attempts FROM logins GROUP BY user_id LIMIT 3;
";
    let rows = json_rows(&["--json"], input);
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(rows[0]["op"], "+I");
    assert_eq!(rows[1]["op"], "-U");
    assert_eq!(rows[2]["op"], "+U");
    assert_eq!(rows[1]["attempts"], rows[0]["attempts"]);
    assert!(rows[2]["attempts"].as_i64() > rows[1]["attempts"].as_i64());
}

#[test]
fn piped_repl_includes_files_and_loads_a_rules_directory() {
    let dir = std::env::temp_dir().join(format!("vigil-repl-include-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("source.sql");
    std::fs::write(
        &file,
        REPL_SOURCE.replace("SOURCE sensors", "SOURCE readings"),
    )
    .unwrap();
    let queries = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("queries");
    let input = format!(
        "\\i {}\n\\sources\n\\sinks\nSELECT sensor_id FROM readings LIMIT 2;\n",
        file.display()
    );
    let out = repl_script(&["--queries", &queries.display().to_string()], &input);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    // The demo profile's sources, and the rules' sinks.
    let listed: Vec<&str> = text.lines().map(str::trim).collect();
    for name in [
        "dues",
        "logins",
        "payments",
        "readings",
        "sensors",
        "sensor_alerts",
        "brute_force_alerts",
    ] {
        assert!(listed.contains(&name), "{name} missing from {text}");
    }
    // The included source answers a query; its LIMIT ends it.
    assert!(
        text.ends_with(" sensor_id\n-------------\n sensor-0000\n sensor-0001\n"),
        "{text}"
    );
}

#[test]
fn piped_repl_warns_of_a_window_over_a_source_without_watermark() {
    let input = "CREATE SOURCE sensors (sensor_id TEXT, ts TIMESTAMP)
  WITH (connector = 'generator', kind = 'sensors', count = '1500', keys = '1');
SELECT window_start, window_end, count(*) AS readings
FROM TUMBLE(sensors, ts, INTERVAL '10' SECOND)
GROUP BY window_start, window_end;
";
    let out = repl_script(&["--json"], input);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "warning: window over source 'sensors', which declares no watermark: its windows close \
         only when the source ends; declare one on the source, e.g. WATERMARK FOR ts AS ts - \
         INTERVAL '5' SECOND\n"
    );
    // The windows still close when the bounded source ends.
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
}

#[test]
fn piped_repl_queries_live_topics_of_the_kafka_profile() {
    let broker = vigil_tests::kafka::Broker::start();
    let produced = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["--brokers", &broker.address, "produce", "--kind", "sensors"])
        .args(["--count", "300", "--keys", "3"])
        .output()
        .expect("vigil produce runs");
    assert!(
        produced.status.success(),
        "{}",
        String::from_utf8_lossy(&produced.stderr)
    );
    // The profile's sources send malformed messages to this topic.
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(broker.create_topics(&["dead_letters"], 1));
    let queries = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("queries");
    let queries = queries.display().to_string();
    // The topic never ends: the LIMIT ends the query.
    let rows = json_rows(
        &["--json", "--queries", &queries, "--kafka", &broker.address],
        "SELECT sensor_id, temperature FROM sensors LIMIT 5;\n",
    );
    assert_eq!(rows.len(), 5, "{rows:?}");
    for row in &rows {
        assert!(row["sensor_id"].as_str().unwrap().starts_with("sensor-"));
        assert!(row["temperature"].is_number());
    }
}

#[test]
fn piped_repl_answers_show_describe_and_set_as_flink_and_ksqldb_users_type_them() {
    let input = format!(
        "{REPL_SOURCE}CREATE SINK alerts WITH (connector = 'stdout');
SHOW SOURCES;
SHOW SINKS;
DESCRIBE sensors;
DESCRIBE alerts;
\\d
SET 'sql-client.execution.result-mode' = 'table';
SHOW result_mode;
SET format = json;
SHOW ALL;
RESET;
SHOW format;
SET colour = 'red';
"
    );
    let out = repl_script(&[], &input);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the unknown setting ends the script");
    let expected_lines = [
        "  sensors",
        "  alerts",
        "  sensor_id            Utf8",
        "  watermark for ts as ts - INTERVAL '5' SECOND",
        "  sink alerts",
        "  with (connector = 'stdout')",
        "  source  sensors",
        "  sink    alerts",
        "table",
        "  format       json       (table | json)",
        "  result_mode  table      (changelog | table)",
    ];
    let mut rest = stdout.as_ref();
    for line in expected_lines {
        let at = rest
            .find(line)
            .unwrap_or_else(|| panic!("no {line:?} (in order) in:\n{stdout}"));
        rest = &rest[at + line.len()..];
    }
    // RESET brings the defaults back.
    assert_eq!(rest.trim().lines().last(), Some("table"), "{stdout}");
    assert!(stderr.contains("no setting 'colour'"), "{stderr}");
}

/// A join with no time bound is refused until the session sets a state TTL, then runs.
#[test]
fn piped_repl_runs_a_join_with_no_time_bound_once_a_state_ttl_is_set() {
    let sources = "CREATE SOURCE a (sensor_id TEXT, temperature DOUBLE, ts TIMESTAMP)
  WITH (connector = 'generator', kind = 'sensors', count = '3', keys = '1', seed = '1');
CREATE SOURCE b (sensor_id TEXT, humidity DOUBLE, ts TIMESTAMP)
  WITH (connector = 'generator', kind = 'sensors', count = '2', keys = '1', seed = '2');
";
    let join = "SELECT a.sensor_id, a.temperature, b.humidity FROM a JOIN b ON a.sensor_id = b.sensor_id;\n";
    let out = repl_script(&["--json"], &format!("{sources}{join}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("SET state_ttl = '7 days'"), "{stderr}");

    let rows = json_rows(
        &["--json"],
        &format!("{sources}SET state_ttl = '1 day';\n{join}"),
    );
    // Every pair of a's 3 rows with b's 2.
    assert_eq!(rows.len(), 6, "{rows:?}");
    assert!(
        rows.iter().all(|r| r["sensor_id"] == "sensor-0000"),
        "{rows:?}"
    );
}

#[test]
fn piped_repl_evaluates_a_select_without_a_source_once() {
    let out = repl_script(
        &["--json"],
        "SELECT 1 + 1 AS two, upper('vigil') AS name;\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "{\"two\":2,\"name\":\"VIGIL\"}\n"
    );
}

#[test]
fn piped_repl_shows_an_updating_query_as_its_final_table_or_expanded_rows() {
    let logins = "CREATE SOURCE logins (user_id TEXT, event_type TEXT, ip TEXT, ts TIMESTAMP)
  WITH (connector = 'generator', kind = 'logins', keys = '3', count = '300', seed = '1');
";
    let query = "SELECT user_id, count(*) AS attempts FROM logins GROUP BY user_id;\n";
    // The changelog, folded here, is what the table mode must show.
    let changes = json_rows(&["--json"], &format!("{logins}{query}"));
    let mut current: std::collections::BTreeMap<String, i64> = Default::default();
    for change in &changes {
        let user = change["user_id"].as_str().unwrap().to_string();
        match change["op"].as_str().unwrap() {
            "+I" | "+U" => current.insert(user, change["attempts"].as_i64().unwrap()),
            _ => current.remove(&user),
        };
    }
    assert_eq!(current.values().sum::<i64>(), 300);
    let out = repl_script(&[], &format!("{logins}SET result_mode = table;\n{query}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    let mut shown: Vec<(String, i64)> = table
        .lines()
        .skip(2)
        .filter(|l| l.contains('|'))
        .map(|l| {
            let (user, attempts) = l.split_once('|').unwrap();
            (user.trim().to_string(), attempts.trim().parse().unwrap())
        })
        .collect();
    shown.sort();
    assert_eq!(shown, current.into_iter().collect::<Vec<_>>(), "{table}");
    assert!(table.ends_with("(3 rows)\n"), "{table}");
    assert!(!table.contains("+U"), "{table}");

    // \x: one field per line.
    let out = repl_script(
        &[],
        &format!("{REPL_SOURCE}\\x\nSELECT sensor_id, temperature FROM sensors LIMIT 2;\n"),
    );
    let expanded = String::from_utf8_lossy(&out.stdout);
    assert!(
        expanded.starts_with("-[ RECORD 1 ]-\nsensor_id   | sensor-000"),
        "{expanded}"
    );
    assert!(expanded.contains("-[ RECORD 2 ]-\n"), "{expanded}");
    assert!(expanded.contains("temperature | "), "{expanded}");
}

#[test]
fn piped_repl_points_flink_and_ksqldb_spellings_at_vigils() {
    let input = format!(
        "{REPL_SOURCE}SELECT window_start, count(*) FROM TABLE(SESSION(TABLE sensors PARTITION BY sensor_id, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) GROUP BY window_start, window_end;\n"
    );
    // Flink's SESSION form is taken as written; its PARTITION BY must be the GROUP BY keys.
    let out = repl_script(&[], &input);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("SESSION's PARTITION BY (sensor_id) must be the GROUP BY keys"),
        "{stderr}"
    );
    let out = repl_script(
        &[],
        "CREATE STREAM s (a INT) WITH (KAFKA_TOPIC = 's', VALUE_FORMAT = 'JSON');\n",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("CREATE STREAM is CREATE SOURCE"),
        "{stderr}"
    );
    // INSERT INTO a declared sink runs the query into it, as CREATE SINK ... AS does.
    let input = format!(
        "{REPL_SOURCE}CREATE SINK hot WITH (connector = 'stdout', format = 'json');
INSERT INTO hot SELECT sensor_id FROM sensors WHERE temperature > 1000;
"
    );
    let out = repl_script(&[], &input);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
