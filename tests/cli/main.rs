//! End-to-end tests of the `vigil` binary: real files in, real files out.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod habits;
mod repl;
mod repl_terminal;
mod rules;

fn vigil(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("vigil runs")
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A scratch directory with the files profile's inputs.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vigil-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("data")).unwrap();
    for input in [
        "sensors",
        "payments",
        "dues",
        "logins",
        "transfers",
        "city_events",
    ] {
        std::fs::write(dir.join(format!("data/{input}.jsonl")), "").unwrap();
    }
    dir
}

fn profile() -> String {
    workspace()
        .join("queries/profiles/files.sql")
        .display()
        .to_string()
}

fn rule(name: &str) -> String {
    workspace().join("queries").join(name).display().to_string()
}

#[test]
fn run_writes_alerts_and_dead_letters_as_json_lines() {
    let dir = scratch("threshold");
    std::fs::write(
        dir.join("data/sensors.jsonl"),
        concat!(
            "{\"sensor_id\":\"s1\",\"temperature\":36.5,\"humidity\":40,\"ts\":\"2024-01-01T00:00:01Z\"}\n",
            "{\"sensor_id\":\"s2\",\"temperature\":21.0,\"humidity\":91,\"ts\":1704067202000}\n",
            "{\"sensor_id\":\"s3\",\"temperature\":\"hot\",\"humidity\":40,\"ts\":\"2024-01-01T00:00:03Z\"}\n",
            "{\"sensor_id\":\"s4\",\"temperature\":20.0,\"humidity\":40,\"ts\":\"2024-01-01T00:00:04Z\"}\n",
            "not json at all\n",
            "{\"sensor_id\":\"s5\",\"temperature\":2.0,\"humidity\":40,\"ts\":\"2024-01-01T00:00:05.123+01:00\"}\n",
        ),
    )
    .unwrap();
    let out = vigil(&dir, &["run", &profile(), &rule("sensor_threshold.sql")]);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let alerts = std::fs::read_to_string(dir.join("out/sensor_alerts.jsonl")).unwrap();
    let expected = concat!(
        "{\"sensor_id\":\"s1\",\"temperature\":36.5,\"humidity\":40.0,\"ts\":\"2024-01-01T00:00:01.000Z\",\"score\":3,\"level\":\"CRITICAL\",\"reasons\":[\"HIGH_TEMPERATURE\"],\"prediction\":\"ANOMALY_DETECTED\"}\n",
        "{\"sensor_id\":\"s2\",\"temperature\":21.0,\"humidity\":91.0,\"ts\":\"2024-01-01T00:00:02.000Z\",\"score\":2,\"level\":\"WARNING\",\"reasons\":[\"HIGH_HUMIDITY\"],\"prediction\":\"WARNING_DETECTED\"}\n",
        "{\"sensor_id\":\"s5\",\"temperature\":2.0,\"humidity\":40.0,\"ts\":\"2023-12-31T23:00:05.123Z\",\"score\":3,\"level\":\"CRITICAL\",\"reasons\":[\"LOW_TEMPERATURE\"],\"prediction\":\"ANOMALY_DETECTED\"}\n",
    );
    assert_eq!(alerts, expected);

    let dead = std::fs::read_to_string(dir.join("out/dead_letters/sensors.jsonl")).unwrap();
    let lines: Vec<&str> = dead.lines().collect();
    assert_eq!(lines.len(), 2, "{dead}");
    assert!(
        lines[0].contains("\"line\":3") && lines[0].contains("hot"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("\"line\":5") && lines[1].contains("not json at all"),
        "{}",
        lines[1]
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("2 dead letters"));
}

#[test]
fn run_finds_event_patterns_in_a_file() {
    let dir = scratch("patterns");
    // s1 rises 27, 28, 29, 31 within 30 s; s2 rises as often, below 30; a line is bad.
    let mut lines = String::new();
    for (i, (sensor, temperature)) in [
        ("s1", 27.0),
        ("s2", 20.0),
        ("s1", 28.0),
        ("s2", 21.0),
        ("s1", 29.0),
        ("s2", 22.0),
        ("s1", 31.0),
        ("s2", 23.0),
        ("s1", 25.0),
    ]
    .iter()
    .enumerate()
    {
        lines.push_str(&format!(
            "{{\"sensor_id\":\"{sensor}\",\"temperature\":{temperature},\"humidity\":50,\"ts\":{}}}\n",
            1_704_067_200_000i64 + i as i64 * 5000
        ));
        if i == 3 {
            lines.push_str("{\"sensor_id\":\"s1\",\"temperature\":\"warm\"}\n");
        }
    }
    std::fs::write(dir.join("data/sensors.jsonl"), lines).unwrap();
    let out = vigil(&dir, &["run", &profile(), &rule("rising_temperature.sql")]);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let alerts = std::fs::read_to_string(dir.join("out/rising_temperature_alerts.jsonl")).unwrap();
    assert_eq!(
        alerts,
        "{\"sensor_id\":\"s1\",\"first_ts\":\"2024-01-01T00:00:00.000Z\",\"last_ts\":\"2024-01-01T00:00:30.000Z\",\"first_temperature\":27.0,\"last_temperature\":31.0,\"readings\":4}\n"
    );
    let dead = std::fs::read_to_string(dir.join("out/dead_letters/sensors.jsonl")).unwrap();
    assert_eq!(dead.lines().count(), 1, "{dead}");
}

#[test]
fn run_emits_hourly_figures_early_and_corrects_them_from_late_readings() {
    let dir = scratch("emit");
    // Seconds after midnight: 01:00:30 closes the first hour, 00:58 corrects it (within the
    // 10 minutes allowed), 01:12 is an early tick, and by then 00:40 is too late.
    let mut lines = String::new();
    for (temperature, t) in [
        (20, 3590),
        (21, 3630),
        (30, 3480),
        (22, 3640),
        (23, 4320),
        (99, 2400),
    ] {
        lines.push_str(&format!(
            "{{\"sensor_id\":\"s1\",\"temperature\":{temperature}.0,\"humidity\":50,\"ts\":{}}}\n",
            1_704_067_200_000i64 + t * 1000
        ));
    }
    std::fs::write(dir.join("data/sensors.jsonl"), lines).unwrap();
    let out = vigil(&dir, &["run", &profile(), &rule("sensor_hourly.sql")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stderr: {stderr}");
    assert!(
        stderr.contains("sensor_stats_hourly: 1 late events"),
        "{stderr}"
    );
    let rows = std::fs::read_to_string(dir.join("out/sensor_stats_hourly.jsonl")).unwrap();
    let changes: Vec<(String, String, i64, f64)> = (rows.lines())
        .map(|line| {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            let hour = row["window_start"].as_str().unwrap()[11..13].to_string();
            let op = row["op"].as_str().unwrap().to_string();
            (
                op,
                hour,
                row["readings"].as_i64().unwrap(),
                row["max_temperature"].as_f64().unwrap(),
            )
        })
        .collect();
    let change = |op: &str, hour: &str, n, max| (op.to_string(), hour.to_string(), n, max);
    assert_eq!(
        changes,
        [
            change("+I", "00", 1, 20.0),
            change("+I", "01", 1, 21.0),
            change("-U", "00", 1, 20.0),
            change("+U", "00", 2, 30.0),
            change("-U", "01", 1, 21.0),
            change("+U", "01", 3, 23.0),
        ]
    );
}

#[test]
fn run_emits_every_window_at_the_end_of_bounded_input() {
    let dir = scratch("windows");
    let mut lines = String::new();
    for (i, t) in [5, 30, 65, 70, 130].iter().enumerate() {
        lines.push_str(&format!(
            "{{\"sensor_id\":\"s1\",\"temperature\":{}.0,\"humidity\":50,\"ts\":{}}}\n",
            20 + i,
            1_704_067_200_000i64 + t * 1000
        ));
    }
    std::fs::write(dir.join("data/sensors.jsonl"), lines).unwrap();
    let out = vigil(&dir, &["run", &profile(), &rule("sensor_windows.sql")]);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats = std::fs::read_to_string(dir.join("out/sensor_stats_1m.jsonl")).unwrap();
    assert_eq!(
        stats,
        concat!(
            "{\"window_start\":\"2024-01-01T00:00:00.000Z\",\"window_end\":\"2024-01-01T00:01:00.000Z\",\"sensor_id\":\"s1\",\"readings\":2,\"avg_temperature\":20.5,\"max_temperature\":21.0}\n",
            "{\"window_start\":\"2024-01-01T00:01:00.000Z\",\"window_end\":\"2024-01-01T00:02:00.000Z\",\"sensor_id\":\"s1\",\"readings\":2,\"avg_temperature\":22.5,\"max_temperature\":23.0}\n",
            "{\"window_start\":\"2024-01-01T00:02:00.000Z\",\"window_end\":\"2024-01-01T00:03:00.000Z\",\"sensor_id\":\"s1\",\"readings\":1,\"avg_temperature\":24.0,\"max_temperature\":24.0}\n",
        )
    );
    let hopping = std::fs::read_to_string(dir.join("out/sensor_stats_5m.jsonl")).unwrap();
    assert_eq!(hopping.lines().count(), 7, "{hopping}");
}

#[test]
fn updating_rule_writes_change_kinds() {
    let dir = scratch("payments");
    std::fs::write(
        dir.join("data/dues.jsonl"),
        "{\"account_id\":1,\"amount\":200,\"ts\":1}\n{\"account_id\":1,\"amount\":50,\"ts\":2}\n",
    )
    .unwrap();
    std::fs::write(dir.join("data/payments.jsonl"), "").unwrap();
    let out = vigil(
        &dir,
        &[
            "run",
            "--batch-size",
            "1",
            &profile(),
            &rule("payment_due.sql"),
        ],
    );
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let alerts = std::fs::read_to_string(dir.join("out/payment_due_alerts.jsonl")).unwrap();
    assert_eq!(
        alerts,
        "{\"op\":\"+I\",\"account_id\":1,\"outstanding\":200.0}\n{\"op\":\"-U\",\"account_id\":1,\"outstanding\":200.0}\n{\"op\":\"+U\",\"account_id\":1,\"outstanding\":250.0}\n"
    );
}

#[test]
fn sql_errors_name_file_line_column_with_a_caret() {
    let dir = scratch("errors");
    std::fs::write(
        dir.join("broken.sql"),
        "CREATE SINK sensor_alerts AS\nSELECT sensor_id, (temperature FROM sensors;\n",
    )
    .unwrap();
    let out = vigil(&dir, &["run", &profile(), "broken.sql"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("error: broken.sql:2:32: expected ), found FROM"),
        "{stderr}"
    );
    assert!(
        stderr.contains("2 | SELECT sensor_id, (temperature FROM sensors;"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("  | {}^", " ".repeat(31))),
        "{stderr}"
    );

    std::fs::write(
        dir.join("unknown.sql"),
        "CREATE SINK sensor_alerts AS\nSELECT sensor, temperature FROM sensors;\n",
    )
    .unwrap();
    let out = vigil(&dir, &["run", &profile(), "unknown.sql"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("unknown.sql:2:8: column 'sensor' not found"),
        "{stderr}"
    );
    assert!(
        stderr.contains("help: did you mean 'sensors.sensor_id'?"),
        "{stderr}"
    );
}

#[test]
fn explain_prints_the_operator_graph() {
    let dir = scratch("explain");
    let out = vigil(&dir, &["explain", &profile(), &rule("brute_force.sql")]);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for expected in [
        "sink brute_force_alerts",
        "Filter",
        "WindowAggregate",
        "Hop: slide=10s size=1m",
        "Source: logins watermark=ts - INTERVAL '2' SECOND",
    ] {
        assert!(text.contains(expected), "missing {expected} in\n{text}");
    }
}

#[test]
fn demo_runs_the_rules_on_generators_and_stops_cleanly() {
    let dir = scratch("demo");
    let out = vigil(&dir, &["demo", "--seconds", "4"]);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("Vigil demo:"), "{text}");
    assert!(
        text.contains("sensor_alerts (sensor_threshold.sql)"),
        "no sensor alert in 4 s:\n{text}"
    );
}

#[test]
fn ctrl_c_stops_an_unbounded_run_gracefully() {
    use std::io::{BufRead, Read};
    let dir = scratch("ctrlc");
    let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .current_dir(&dir)
        .args([
            "run",
            &workspace()
                .join("queries/profiles/demo.sql")
                .display()
                .to_string(),
            &rule("sensor_windows.sql"),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until it says it runs (and handles Ctrl-C), then for a while more.
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut said = String::new();
    while !said.contains("Ctrl-C stops them") {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            panic!("vigil run ended before running: {said}");
        }
        said.push_str(&line);
    }
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert!(
        child.try_wait().unwrap().is_none(),
        "an unbounded generator keeps the query running"
    );
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let out = child.wait_with_output().unwrap();
    stderr.read_to_string(&mut said).unwrap();
    assert!(out.status.success(), "stderr: {said}");
    assert!(said.contains("stopping"), "{said}");
    // No minute has closed in 2 s: open windows are not emitted as if complete.
    assert!(!String::from_utf8_lossy(&out.stdout).contains("window_start"));
}

/// EXPLAIN of `rule` over `profile_sql`, written to a scratch file.
fn explain_with(name: &str, profile_sql: &str, rule_name: &str) -> String {
    let dir = scratch(name);
    let profile = dir.join("profile.sql");
    std::fs::write(&profile, profile_sql).unwrap();
    let out = vigil(
        &dir,
        &["explain", &profile.display().to_string(), &rule(rule_name)],
    );
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn explain_warns_when_a_keyed_rule_reads_a_shared_topic_not_partitioned_by_its_key() {
    let sinks = "CREATE SINK payment_due_alerts WITH (connector = 'stdout');";
    let source = |name: &str, partitioned: &str| {
        format!(
            "CREATE SOURCE {name} (account_id BIGINT, note TEXT, amount DOUBLE, ts TIMESTAMP) \
             WITH (connector = 'kafka', topic = '{name}', group_id = 'vigil'{partitioned});\n"
        )
    };
    let keyed = ", partitioned_by = 'account_id'";
    let by_note = ", partitioned_by = 'note'";

    let text = explain_with(
        "partitioned",
        &format!(
            "{}{}{sinks}",
            source("dues", keyed),
            source("payments", keyed)
        ),
        "payment_due.sql",
    );
    assert!(!text.contains("Warning"), "{text}");

    let text = explain_with(
        "unpartitioned",
        &format!("{}{}{sinks}", source("dues", keyed), source("payments", "")),
        "payment_due.sql",
    );
    assert!(
        text.contains(
            "Warning: the query groups by (account_id) but source 'payments' is not declared \
             partitioned_by those columns"
        ),
        "{text}"
    );

    let text = explain_with(
        "other_key",
        &format!(
            "{}{}{sinks}",
            source("dues", by_note),
            source("payments", by_note)
        ),
        "payment_due.sql",
    );
    assert!(
        text.contains(
            "groups by (account_id) but source 'dues', 'payments' is not declared partitioned_by"
        ),
        "{text}"
    );

    // The shipped Kafka profile declares how its topics are keyed: no warning for any rule.
    for name in [
        "sensor_threshold.sql",
        "sensor_windows.sql",
        "payment_due.sql",
        "brute_force.sql",
    ] {
        let text = explain_with(
            "shipped",
            &std::fs::read_to_string(workspace().join("queries/profiles/kafka.sql")).unwrap(),
            name,
        );
        assert!(!text.contains("Warning"), "{name}: {text}");
    }
}

#[test]
fn produce_writes_keyed_generator_events_to_a_topic() {
    let broker = vigil_tests::kafka::Broker::start();
    let dir = scratch("produce");
    let out = vigil(
        &dir,
        &[
            "--brokers",
            &broker.address,
            "produce",
            "--kind",
            "logins",
            "--count",
            "500",
            "--keys",
            "20",
        ],
    );
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records = broker.read_topic("logins");
    assert_eq!(records.len(), 500);
    for record in &records {
        let value: serde_json::Value =
            serde_json::from_str(record.value.as_deref().unwrap()).unwrap();
        assert_eq!(record.key.as_deref(), value["user_id"].as_str());
    }
    let users: std::collections::BTreeSet<_> = records.iter().map(|r| r.key.clone()).collect();
    assert_eq!(users.len(), 20);
}

#[test]
fn demo_on_kafka_prints_alerts_from_the_alert_topics() {
    let broker = vigil_tests::kafka::Broker::start();
    let dir = scratch("demo-kafka");
    let out = vigil(
        &dir,
        &[
            "--brokers",
            &broker.address,
            "demo",
            "--kafka",
            "--seconds",
            "8",
        ],
    );
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("sensor_alerts "), "{text}");
    assert!(text.contains("payment_due_alerts "), "{text}");
}

/// A `vigil serve` child process on a free loopback port.
struct Served {
    child: std::process::Child,
    stderr: std::io::BufReader<std::process::ChildStderr>,
    /// `http://127.0.0.1:port`.
    url: String,
    /// What it printed before it was ready (the deploy report).
    report: String,
}

impl Served {
    /// Starts `vigil serve --bind 127.0.0.1:0` plus `args` in `dir`, and waits until it serves.
    fn start(dir: &Path, args: &[&str]) -> Self {
        use std::io::BufRead;
        let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
            .current_dir(dir)
            .args(["serve", "--bind", "127.0.0.1:0"])
            .args(args)
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("vigil serve starts");
        let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut report = String::new();
        let url = loop {
            let mut line = String::new();
            assert!(
                stderr.read_line(&mut line).unwrap() > 0,
                "exited early: {report}"
            );
            report.push_str(&line);
            if let Some(address) = line.trim().strip_prefix("vigil serving on ") {
                break address.to_string();
            }
        };
        Self {
            child,
            stderr,
            url,
            report,
        }
    }

    /// SIGTERM; returns whether it exited 0, and what it printed meanwhile.
    fn terminate(&mut self) -> (std::process::ExitStatus, String) {
        use std::io::Read;
        let killed = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let status = self.child.wait().unwrap();
        let mut rest = String::new();
        self.stderr.read_to_string(&mut rest).unwrap();
        (status, rest)
    }
}

/// A test that fails half way leaves no server running.
impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn serve_deploys_the_rules_answers_and_stops_cleanly_on_sigterm() {
    use std::io::{Read, Write};
    let queries = workspace().join("queries").display().to_string();
    let mut served = Served::start(&workspace(), &["--queries", &queries]);
    let report = &served.report;
    // Each rule file is reported with what it started.
    assert!(
        report.contains("profiles/demo.sql: source sensors"),
        "{report}"
    );
    assert!(
        report.contains("sensor_threshold.sql: view sensor_scores, query"),
        "{report}"
    );
    let address = served.url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: vigil\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let (status, rest) = served.terminate();
    assert!(status.success(), "{status}: {rest}");
    assert!(rest.contains("vigil stopped"), "{rest}");
}

#[test]
fn explain_analyze_shows_a_served_query_with_live_counters() {
    let queries = workspace().join("queries").display().to_string();
    let mut served = Served::start(&workspace(), &["--queries", &queries]);
    // Rules deploy in name order: query 1 is brute_force.sql's, on the login generator.
    let analyze = |id: &str| {
        vigil(
            &workspace(),
            &["explain", "--server", &served.url, "--analyze", id],
        )
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let text = loop {
        let out = analyze("1");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let read_some =
            !text.contains("Source: logins watermark=ts - INTERVAL '2' SECOND  [rows in 0");
        if read_some || std::time::Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(
        text.starts_with("query 1 (brute_force_alerts), running\n"),
        "{text}"
    );
    assert!(
        text.contains("Filter: event_type = login_failed  [rows in "),
        "{text}"
    );
    let source = line_with(&text, "Source: logins");
    assert!(
        source.contains("[rows in ") && !source.contains("[rows in 0,"),
        "the generator's rows are counted: {text}"
    );
    let window = line_with(&text, "WindowAggregate:");
    assert!(window.contains("; state "), "{text}");

    let missing = analyze("99");
    assert!(!missing.status.success());
    let error = String::from_utf8_lossy(&missing.stderr);
    assert!(error.contains("server answered 404 not_found"), "{error}");
    let (status, rest) = served.terminate();
    assert!(status.success(), "{rest}");
}

/// The line of `text` containing `needle`.
fn line_with<'a>(text: &'a str, needle: &str) -> &'a str {
    text.lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{text}"))
}

#[test]
fn serve_refuses_to_start_on_a_broken_rule() {
    let dir = scratch("serve-broken");
    std::fs::create_dir_all(dir.join("rules/profiles")).unwrap();
    std::fs::write(dir.join("rules/profiles/demo.sql"), "").unwrap();
    std::fs::write(dir.join("rules/typo.sql"), "SELECT nope FROM nowhere;\n").unwrap();
    let out = vigil(
        &dir,
        &["serve", "--bind", "127.0.0.1:0", "--queries", "rules"],
    );
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("rules/typo.sql:1:"), "{text}");
    assert!(text.contains("--keep-going"), "{text}");
}

/// A file table is read to its end before the stream's rows meet it, so each reading meets
/// the latest row of its sensor in the file, whichever source is quicker.
#[test]
fn run_enriches_a_stream_with_a_file_table_read_first() {
    let dir = scratch("lookup");
    let mut sites = String::new();
    for i in 0..500 {
        sites.push_str(&format!(
            "{{\"sensor_id\":\"s{i}\",\"site\":\"old\",\"max_temperature\":10.0}}\n"
        ));
    }
    sites.push_str("{\"sensor_id\":\"s1\",\"site\":\"north\",\"max_temperature\":30.0}\n");
    sites.push_str("{\"sensor_id\":\"s2\",\"site\":\"south\",\"max_temperature\":28.0}\n");
    std::fs::write(dir.join("data/sites.jsonl"), sites).unwrap();
    std::fs::write(
        dir.join("data/readings.jsonl"),
        concat!(
            "{\"sensor_id\":\"s1\",\"temperature\":31.0,\"ts\":\"2024-01-01T00:00:01Z\"}\n",
            "{\"sensor_id\":\"s2\",\"temperature\":26.0,\"ts\":\"2024-01-01T00:00:02Z\"}\n",
            "{\"sensor_id\":\"s9999\",\"temperature\":99.0,\"ts\":\"2024-01-01T00:00:03Z\"}\n",
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("rule.sql"),
        "CREATE SOURCE readings (sensor_id TEXT, temperature DOUBLE, ts TIMESTAMP,
             WATERMARK FOR ts AS ts) WITH (connector = 'file', path = 'data/readings.jsonl');
         CREATE TABLE sites (sensor_id TEXT PRIMARY KEY, site TEXT, max_temperature DOUBLE)
             WITH (connector = 'file', path = 'data/sites.jsonl');
         CREATE SINK hot WITH (connector = 'file', path = 'out/hot.jsonl') AS
         SELECT r.sensor_id, t.site, r.temperature
         FROM readings r LEFT JOIN sites FOR SYSTEM_TIME AS OF r.ts AS t
           ON r.sensor_id = t.sensor_id
         WHERE t.site IS NULL OR r.temperature > t.max_temperature;",
    )
    .unwrap();
    let out = vigil(&dir, &["run", "rule.sql"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hot = std::fs::read_to_string(dir.join("out/hot.jsonl")).unwrap();
    assert_eq!(
        hot,
        concat!(
            "{\"sensor_id\":\"s1\",\"site\":\"north\",\"temperature\":31.0}\n",
            "{\"sensor_id\":\"s9999\",\"site\":null,\"temperature\":99.0}\n",
        )
    );
}
