//! `vigil check`, `vigil test`, `vigil fmt` and `vigil deploy` on copies of `queries/`: the
//! rule author's loop from a typo to a deployed change.

use std::path::{Path, PathBuf};

use super::{Served, scratch, vigil, workspace};

/// A copy of `queries/` (rules, profiles, tests) in a scratch directory.
fn rules_copy(name: &str) -> PathBuf {
    let dir = scratch(name).join("rules");
    copy_dir(&workspace().join("queries"), &dir);
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// Replaces `from` by `to` in a file, which must contain it.
fn edit(file: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(file).unwrap();
    assert!(text.contains(from), "{} has no {from:?}", file.display());
    std::fs::write(file, text.replacen(from, to, 1)).unwrap();
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_shipped_rules_check_clean_and_pass_their_tests() {
    let out = vigil(&workspace(), &["check", "queries"]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(text(&out.stdout), "", "no diagnostics");
    assert!(
        text(&out.stderr)
            .contains("checked 12 rule file(s) with 4 profile(s): 0 error(s), 0 warning(s)"),
        "{}",
        text(&out.stderr)
    );

    let out = vigil(&workspace(), &["test", "queries"]);
    let report = text(&out.stdout);
    assert!(out.status.success(), "{report}{}", text(&out.stderr));
    for rule in [
        "brute_force",
        "payment_due",
        "sensor_threshold",
        "sensor_windows",
        "temperature_zscore",
        "silent_sensor",
        "rapid_activity",
        "city_events",
        "login_then_transfer",
    ] {
        assert!(
            report.contains(&format!("ok    queries/tests/{rule}.test:")),
            "{report}"
        );
    }
    assert!(report.ends_with(" passed, 0 failed\n"), "{report}");
    assert!(
        !text(&out.stderr).contains("has no tests"),
        "{}",
        text(&out.stderr)
    );

    let out = vigil(&workspace(), &["fmt", "--check", "queries"]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn check_reports_a_typo_with_its_line_and_column_and_warns_of_likely_mistakes() {
    let dir = rules_copy("check");
    edit(
        &dir.join("sensor_threshold.sql"),
        "WHERE score > 0;",
        "WHERE scor > 0;",
    );
    edit(
        &dir.join("brute_force.sql"),
        "HAVING count(*) >= 5;",
        "HAVING user_id <> 'admin';",
    );
    let root = dir.parent().unwrap();
    let out = vigil(root, &["check", "rules"]);
    assert!(!out.status.success());
    let lines: Vec<String> = text(&out.stdout).lines().map(String::from).collect();
    assert_eq!(
        lines,
        [
            "rules/brute_force.sql:17:1: warning: this HAVING tests only GROUP BY columns \
             (user_id): as a WHERE it would drop rows before the windows keep them, instead of \
             after they close",
            "rules/sensor_threshold.sql:48:7: error: column 'scor' not found (did you mean \
             'sensor_scores.score'?)",
        ]
    );
    let at = std::fs::read_to_string(dir.join("sensor_threshold.sql")).unwrap();
    assert!(
        at.lines().nth(47).unwrap()[6..].starts_with("scor > 0"),
        "line 48, column 7"
    );

    // The same for tools, as JSON.
    let out = vigil(root, &["check", "rules", "--format", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json[1]["file"], "rules/sensor_threshold.sql");
    assert_eq!(
        (json[1]["line"].as_u64(), json[1]["column"].as_u64()),
        (Some(48), Some(7))
    );
    assert_eq!(json[1]["severity"], "error");
}

#[test]
fn check_warns_of_windows_without_watermarks_unkeyed_topics_and_unused_sources() {
    let dir = rules_copy("check-warnings");
    // The files profile without its watermark on logins, and a source nothing reads.
    let files = dir.join("profiles/files.sql");
    edit(
        &files,
        "new_device BOOLEAN,\n    ts TIMESTAMP,\n    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND\n)",
        "new_device BOOLEAN,\n    ts TIMESTAMP\n)",
    );
    let mut text_of_files = std::fs::read_to_string(&files).unwrap();
    text_of_files.push_str("\nCREATE SOURCE clicks (user_id TEXT, ts TIMESTAMP)\nWITH (connector = 'file', path = 'data/clicks.jsonl');\n");
    let clicks_line = text_of_files.lines().count() - 1;
    std::fs::write(&files, text_of_files).unwrap();
    // The Kafka profile's payments topic not declared as keyed by account.
    edit(
        &dir.join("profiles/kafka.sql"),
        "topic = 'payments', format = 'json',\n    partitioned_by = 'account_id',",
        "topic = 'payments', format = 'json',",
    );
    let out = vigil(dir.parent().unwrap(), &["check", "rules"]);
    assert!(out.status.success(), "warnings only: {}", text(&out.stderr));
    let report = text(&out.stdout);
    let line = |needle: &str| {
        report
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in:\n{report}"))
            .to_string()
    };
    assert!(
        line("declares no watermark").starts_with(
            "rules/brute_force.sql:14:6: warning: window over source 'logins', which declares no watermark"
        ),
        "HOP is at line 14, column 6: {report}"
    );
    assert!(
        line("declares no watermark").ends_with("(with profile files)"),
        "{report}"
    );
    // An interval join of it keeps the other side's rows until the source ends.
    assert!(
        line("the other side's rows are kept").starts_with(
            "rules/login_then_transfer.sql:17:1: warning: join of source 'logins', which declares no watermark"
        ),
        "{report}"
    );
    assert!(
        line("not declared partitioned_by").starts_with(
            "rules/payment_due.sql:16:1: warning: the query groups by (account_id) but source 'payments'"
        ),
        "{report}"
    );
    assert!(
        line("not declared partitioned_by").ends_with("(with profile kafka)"),
        "{report}"
    );
    assert!(
        line("clicks").starts_with(&format!(
            "rules/profiles/files.sql:{clicks_line}:1: warning: source 'clicks' is declared but no rule reads it"
        )),
        "{report}"
    );
}

#[test]
fn a_changed_threshold_fails_its_test_with_a_diff_of_the_rows() {
    let dir = rules_copy("test-diff");
    edit(
        &dir.join("sensor_threshold.sql"),
        "WHEN temperature > 35 OR temperature < 5 THEN 3",
        "WHEN temperature > 36 OR temperature < 5 THEN 3",
    );
    let out = vigil(dir.parent().unwrap(), &["test", "rules"]);
    assert!(!out.status.success());
    let report = text(&out.stdout);
    let failure = "\
FAIL  rules/tests/sensor_threshold.test:3: readings are scored and those above 0 alert
      expect sensor_alerts (line 13): the rows differ (- expected, + actual)
            sensor_id | score | level    | reasons                          | prediction
          - s1        | 3     | CRITICAL | [HIGH_TEMPERATURE]               | ANOMALY_DETECTED
          + s1        | 1     | CRITICAL | [HIGH_TEMPERATURE]               | WARNING_DETECTED
            s2        | 5     | CRITICAL | [LOW_TEMPERATURE, HIGH_HUMIDITY] | ANOMALY_DETECTED
";
    assert!(report.contains(failure), "{report}");
    assert!(report.ends_with(" passed, 1 failed\n"), "{report}");
}

#[test]
fn a_mistyped_test_file_names_its_line() {
    let dir = rules_copy("test-typo");
    edit(
        &dir.join("tests/payment_due.test"),
        "expect payment_due_alerts",
        "expect payment_due_alerts\n  op | account_id\n  +I",
    );
    let out = vigil(dir.parent().unwrap(), &["test", "rules"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr)
            .contains("rules/tests/payment_due.test:19: 1 cells, but the header names 2 columns"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn fmt_reads_stdin_and_wraps_long_lines() {
    use std::io::Write;
    let long = "select sensor_id, count(*) as readings, avg(temperature) as mean, max(temperature) as peak from sensors where temperature > 30 and humidity < 20 group by sensor_id;\n";
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["fmt", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(long.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout),
        "\
SELECT sensor_id,
    count(*) AS readings,
    avg(temperature) AS mean,
    max(temperature) AS peak
FROM sensors
WHERE temperature > 30
    AND humidity < 20
GROUP BY sensor_id;
"
    );
}

#[test]
fn check_warns_of_style_a_sqlfluff_user_would_and_each_lint_can_be_turned_off() {
    let dir = rules_copy("lints");
    std::fs::write(
        dir.join("sloppy.sql"),
        "CREATE SINK sensor_alerts AS\nselect * FROM sensors s WHERE temperature > 40;\n",
    )
    .unwrap();
    let root = dir.parent().unwrap();
    let out = vigil(root, &["check", "rules/sloppy.sql", "--profile", "demo"]);
    assert!(out.status.success(), "warnings only: {}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "\
rules/sloppy.sql:2:1: warning: keyword 'select' is not in the upper case of the file's other keywords (vigil fmt upper-cases keywords) [keyword-case]
rules/sloppy.sql:2:8: warning: sink 'sensor_alerts' selects *: its columns change whenever its source's do; name them [select-star-in-sink]
rules/sloppy.sql:2:23: warning: table alias 's' without AS: write AS s [implicit-alias]
"
    );
    let args = ["check", "rules/sloppy.sql", "--profile", "demo"];
    let out = vigil(
        root,
        &[&args[..], &["--allow", "keyword-case,implicit-alias"]].concat(),
    );
    assert_eq!(
        text(&out.stdout)
            .lines()
            .map(|l| l.rsplit(' ').next().unwrap())
            .collect::<Vec<_>>(),
        ["[select-star-in-sink]"]
    );
    edit(
        &dir.join("sloppy.sql"),
        "CREATE SINK",
        "-- vigil:allow(select-star-in-sink)\nCREATE SINK",
    );
    let out = vigil(
        root,
        &[&args[..], &["--allow", "keyword-case,implicit-alias"]].concat(),
    );
    assert_eq!(text(&out.stdout), "", "turned off in the file");
    let out = vigil(root, &[&args[..], &["--allow", "no-such-lint"]].concat());
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("keyword-case"),
        "names the lints there are"
    );
}

#[test]
fn test_selects_rules_and_cases_and_writes_junit_that_a_junit_parser_reads() {
    let dir = rules_copy("test-select");
    let root = dir.parent().unwrap();
    let out = vigil(
        root,
        &[
            "test",
            "rules",
            "brute_force",
            "sensor_windows",
            "--filter",
            "late",
        ],
    );
    let report = text(&out.stdout);
    assert!(out.status.success(), "{report}{}", text(&out.stderr));
    let cases: Vec<&str> = report.lines().filter(|l| l.starts_with("ok")).collect();
    assert_eq!(
        cases,
        [
            "ok    rules/tests/brute_force.test:37: a failure arriving after its windows closed is late, not counted",
            "ok    rules/tests/sensor_windows.test:31: a reading behind the watermark is late for the minutes already emitted",
        ],
        "{report}"
    );
    let out = vigil(root, &["test", "rules", "no_such_rule"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr)
            .contains("no test for rule 'no_such_rule' (rules with tests: brute_force,")
    );

    // A rule with no test, and a failing case: both as CI reads them.
    std::fs::write(
        dir.join("cold.sql"),
        "CREATE SINK cold_alerts WITH (connector = 'stdout') AS\nSELECT sensor_id FROM sensors WHERE temperature < 0;\n",
    )
    .unwrap();
    edit(
        &dir.join("sensor_threshold.sql"),
        "WHEN temperature > 35 OR temperature < 5 THEN 3",
        "WHEN temperature > 36 OR temperature < 5 THEN 3",
    );
    let out = vigil(root, &["test", "rules"]);
    assert!(
        text(&out.stdout).contains("\nrules with no test: cold\n"),
        "{}",
        text(&out.stdout)
    );
    let out = vigil(root, &["test", "rules", "--format", "junit"]);
    assert!(!out.status.success(), "a failure still fails the run");
    let suites = junit_parser::from_reader(std::io::Cursor::new(out.stdout)).expect("JUnit XML");
    assert_eq!((suites.tests, suites.failures, suites.skipped), (37, 1, 1));
    let threshold = suites
        .suites
        .iter()
        .find(|s| s.name == "sensor_threshold")
        .unwrap();
    let failed: Vec<&junit_parser::TestCase> = threshold
        .cases
        .iter()
        .filter(|c| c.status.is_failure())
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].classname.as_deref(), Some("sensor_threshold"));
    let failure = failed[0].status.failure_as_ref();
    assert!(
        failure
            .message
            .contains("expect sensor_alerts (line 13): the rows differ")
    );
    assert!(
        failure.text.contains("+ s1        | 1     | CRITICAL"),
        "{}",
        failure.text
    );
    let untested = suites.suites.iter().find(|s| s.name == "untested").unwrap();
    assert!(untested.cases[0].status.is_skipped());
    assert_eq!(untested.cases[0].original_name, "cold has no test");
}

#[test]
fn test_watch_runs_again_when_a_file_is_saved() {
    use std::io::BufRead;
    let dir = rules_copy("test-watch");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
        .current_dir(dir.parent().unwrap())
        .args(["test", "rules", "sensor_threshold", "--watch"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (lines, received) = std::sync::mpsc::channel();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let next_summary = || loop {
        let line = received
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("a test run's summary");
        if line.ends_with(" failed") {
            return line;
        }
    };
    assert_eq!(next_summary(), "3 passed, 0 failed");
    edit(
        &dir.join("sensor_threshold.sql"),
        "WHEN temperature > 35 OR temperature < 5 THEN 3",
        "WHEN temperature > 36 OR temperature < 5 THEN 3",
    );
    assert_eq!(next_summary(), "2 passed, 1 failed");
    edit(
        &dir.join("sensor_threshold.sql"),
        "WHEN temperature > 36 OR temperature < 5 THEN 3",
        "WHEN temperature > 35 OR temperature < 5 THEN 3",
    );
    assert_eq!(next_summary(), "3 passed, 0 failed");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn fmt_rewrites_a_sloppy_rule_and_check_mode_fails_until_it_is_formatted() {
    let dir = scratch("fmt");
    let rule = dir.join("hot.sql");
    std::fs::write(
        &rule,
        "create sink hot as\nselect sensor_id,count( * ) as n from TUMBLE(sensors,ts,interval '1' minute)\n  group by window_start,window_end,sensor_id ;\n",
    )
    .unwrap();
    let out = vigil(&dir, &["fmt", "--check", "hot.sql"]);
    assert!(!out.status.success());
    let report = text(&out.stdout);
    assert!(
        report.starts_with("would reformat hot.sql\n  @@ -1,3 +1,3 @@\n  -create sink hot as\n"),
        "{report}"
    );
    assert!(report.contains("\n  +CREATE SINK hot AS\n"), "{report}");
    assert!(
        std::fs::read_to_string(&rule)
            .unwrap()
            .starts_with("create sink"),
        "--check changes nothing"
    );

    let out = vigil(&dir, &["fmt", "hot.sql"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(&rule).unwrap(),
        "CREATE SINK hot AS\nSELECT sensor_id, count(*) AS n FROM TUMBLE(sensors, ts, INTERVAL '1' MINUTE)\nGROUP BY window_start, window_end, sensor_id;\n"
    );
    let out = vigil(&dir, &["fmt", "--check", "hot.sql"]);
    assert!(out.status.success(), "{}", text(&out.stdout));
}

/// `vigil deploy rules --server URL` plus `extra` in `root`: its exit code and stdout, with
/// its stderr for failures.
fn deploy(root: &Path, url: &str, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["deploy", "rules", "--server", url];
    args.extend_from_slice(extra);
    let out = vigil(root, &args);
    let code = out.status.code().expect("exited");
    (code, text(&out.stdout), text(&out.stderr))
}

/// The plan's lines for rules and declarations, without the diffs under them.
fn plan_lines(plan: &str) -> Vec<String> {
    plan.lines()
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .collect()
}

#[test]
fn deploy_shows_the_plan_with_diffs_and_exit_codes_and_applies_it() {
    let dir = rules_copy("deploy");
    let root = dir.parent().unwrap().to_path_buf();
    let mut served = Served::start(&root, &["--queries", "rules"]);
    let url = served.url.clone();
    let (code, plan, _) = deploy(&root, &url, &[]);
    assert_eq!(code, 0, "nothing to do exits 0: {plan}");
    assert!(
        plan.contains("  = sensor_threshold         unchanged"),
        "{plan}"
    );
    assert!(plan.ends_with("nothing to do\n"), "{plan}");

    // Change the threshold, drop a rule, add one.
    edit(
        &dir.join("sensor_threshold.sql"),
        "WHERE score > 0;",
        "WHERE score > 1;",
    );
    std::fs::remove_file(dir.join("brute_force.sql")).unwrap();
    std::fs::write(
        dir.join("cold.sql"),
        "CREATE SINK cold_alerts WITH (connector = 'stdout') AS\nSELECT sensor_id, temperature FROM sensors WHERE temperature < 0;\n",
    )
    .unwrap();
    let (code, plan, pending) = deploy(&root, &url, &[]);
    assert_eq!(code, 2, "pending changes exit 2: {plan}{pending}");
    assert_eq!(
        plan_lines(&plan),
        [
            "- brute_force remove",
            "= city_events unchanged",
            "+ cold add",
            "= login_burst_then_success unchanged",
            "= login_then_transfer unchanged",
            "= payment_due unchanged",
            "= rapid_activity unchanged",
            "= rising_temperature unchanged",
            "= sensor_hourly unchanged",
            "~ sensor_threshold change",
            "= sensor_windows unchanged",
            "= silent_sensor unchanged",
            "= temperature_zscore unchanged",
        ],
        "{plan}"
    );
    // The changed rule's SQL as a diff, with its line numbers.
    assert!(
        plan.contains("      -WHERE score > 0;\n      +WHERE score > 1;\n"),
        "{plan}"
    );
    assert!(plan.contains("      @@ -4"), "{plan}");
    assert!(
        pending.contains("3 change(s) pending; run again with --apply to carry them out"),
        "{pending}"
    );
    // Without --apply nothing changed there.
    assert_eq!(deploy(&root, &url, &[]).1, plan);

    let (code, applied, error) = deploy(&root, &url, &["--apply"]);
    assert_eq!(code, 0, "{applied}{error}");
    assert!(applied.contains("removed brute_force"), "{applied}");
    assert!(applied.contains("added cold (queries ["), "{applied}");
    assert!(
        applied.contains("changed sensor_threshold (queries ["),
        "{applied}"
    );
    assert_eq!(deploy(&root, &url, &[]).0, 0);

    // The server runs the new text: its query's SQL has the new threshold, the old one stopped.
    // Queries are numbered in the order of the rules' names: sensor_threshold's is the 9th.
    let queries = vigil(&root, &["explain", "--server", &url, "--analyze", "9"]);
    assert!(
        text(&queries.stdout).starts_with("query 9 (sensor_alerts), stopped"),
        "{}",
        text(&queries.stdout)
    );

    // A rule that does not plan is refused in the plan, with its position, and nothing is
    // deployed, not even the other changes.
    edit(
        &dir.join("sensor_threshold.sql"),
        "WHERE score > 1;",
        "WHERE scor > 1;",
    );
    std::fs::remove_file(dir.join("cold.sql")).unwrap();
    let (code, plan, error) = deploy(&root, &url, &["--apply"]);
    assert_eq!(code, 1, "{plan}{error}");
    assert!(
        plan.contains(
            "! sensor_threshold         refused"
        ) && plan.contains(
            "does not plan: server answered 400 sql_error at line 48, column 7: column 'scor' not found"
        ),
        "{plan}"
    );
    assert!(
        error.contains("1 rule(s) do not plan (sensor_threshold); nothing was deployed"),
        "{error}"
    );
    assert!(!plan.contains("removed cold"), "{plan}");
    assert!(
        plan_lines(&plan).contains(&"- cold remove".to_string()),
        "{plan}"
    );
    // The running version stays: with the typo fixed and cold back, nothing is left to do.
    edit(
        &dir.join("sensor_threshold.sql"),
        "WHERE scor > 1;",
        "WHERE score > 1;",
    );
    std::fs::write(
        dir.join("cold.sql"),
        "CREATE SINK cold_alerts WITH (connector = 'stdout') AS\nSELECT sensor_id, temperature FROM sensors WHERE temperature < 0;\n",
    )
    .unwrap();
    let (code, plan, _) = deploy(&root, &url, &[]);
    assert_eq!(
        (code, plan.ends_with("nothing to do\n")),
        (0, true),
        "{plan}"
    );

    let (status, rest) = served.terminate();
    assert!(status.success(), "{rest}");
}

/// POSTs `sql` to the server's `/v1/statements`; the status line.
fn post_statement(url: &str, sql: &str) -> String {
    use std::io::{Read, Write};
    let body = serde_json::json!({ "sql": sql }).to_string();
    let mut stream = std::net::TcpStream::connect(url.trim_start_matches("http://")).unwrap();
    write!(
        stream,
        "POST /v1/statements HTTP/1.1\r\nHost: vigil\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer.lines().next().unwrap_or_default().to_string()
}

#[test]
fn a_bare_server_takes_a_profile_with_the_rules_and_hand_made_queries_show_as_drift() {
    let dir = rules_copy("deploy-profile");
    let root = dir.parent().unwrap().to_path_buf();
    let mut served = Served::start(&root, &[]);
    let url = served.url.clone();

    // Without the profile the server has no sources: every rule is refused.
    let (code, plan, error) = deploy(&root, &url, &[]);
    assert_eq!(code, 1, "{plan}{error}");
    assert!(plan.contains("! sensor_threshold"), "{plan}");
    assert!(error.contains("12 rule(s) do not plan"), "{error}");

    let (code, plan, _) = deploy(&root, &url, &["--with-profile", "demo"]);
    assert_eq!(code, 2, "{plan}");
    let lines = plan_lines(&plan);
    assert!(lines.contains(&"+ source sensors".to_string()), "{plan}");
    assert!(
        lines.contains(&"+ sink sensor_alerts".to_string()),
        "{plan}"
    );
    assert!(
        lines.contains(&"+ sensor_threshold add".to_string()),
        "{plan}"
    );

    let (code, applied, error) = deploy(&root, &url, &["--with-profile", "demo", "--apply"]);
    assert_eq!(code, 0, "{applied}{error}");
    assert!(applied.contains("declared source sensors"), "{applied}");
    assert!(
        applied.contains("added sensor_threshold (queries ["),
        "{applied}"
    );
    let (code, plan, _) = deploy(&root, &url, &["--with-profile", "demo"]);
    assert_eq!(code, 0, "{plan}");
    assert!(
        plan.contains("  = source sensors           present    (profile)\n"),
        "{plan}"
    );

    // A query started by hand is not in the directory: drift, which keeps the plan pending.
    let status = post_statement(
        &url,
        "CREATE SINK by_hand WITH (connector = 'stdout') AS SELECT sensor_id FROM sensors",
    );
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let (code, plan, _) = deploy(&root, &url, &[]);
    assert_eq!(code, 2, "{plan}");
    let drift = plan
        .lines()
        .find(|l| l.contains(" drift "))
        .unwrap_or_else(|| panic!("no drift in {plan}"));
    assert!(drift.contains("writes by_hand; started by hand"), "{drift}");

    let (status, rest) = served.terminate();
    assert!(status.success(), "{rest}");
}

/// Whether `sink`'s query has written a complete checkpoint under the state dir `state`.
fn has_checkpoint(state: &Path, sink: &str) -> bool {
    let dir = state.join("queries").join(sink).join("checkpoints");
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with("-manifest.json"))
    })
}

/// Polls `done` until it holds, failing after 60 s with `what`.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn with_a_state_dir_deploy_says_which_state_is_kept_and_a_restart_keeps_the_rules() {
    let dir = rules_copy("deploy-state");
    let root = dir.parent().unwrap().to_path_buf();
    let state = root.join("state");
    let serve_args = [
        "--queries",
        "rules",
        "--state-dir",
        "state",
        "--checkpoint-interval",
        "100ms",
    ];
    let mut served = Served::start(&root, &serve_args);
    wait_until("checkpoints of both sinks", || {
        has_checkpoint(&state, "sensor_stats_1m") && has_checkpoint(&state, "sensor_alerts")
    });

    // Layout only: the plan is the same, so the state stays. A new threshold: a new plan.
    edit(
        &dir.join("sensor_windows.sql"),
        "    count(*) AS readings,",
        "    count(*)   AS readings,",
    );
    edit(
        &dir.join("sensor_threshold.sql"),
        "WHERE score > 0;",
        "WHERE score > 1;",
    );
    let (code, plan, _) = deploy(&root, &served.url, &[]);
    assert_eq!(code, 2, "{plan}");
    let line = |name: &str| {
        let line = plan
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name));
        line.unwrap_or_else(|| panic!("no {name} in {plan}"))
            .to_string()
    };
    let windows = line("sensor_windows");
    assert!(
        windows.contains("state kept: sensor_stats_1m (epoch "),
        "{plan}"
    );
    assert!(
        windows.contains("state kept: sensor_stats_5m (epoch "),
        "{plan}"
    );
    let threshold = line("sensor_threshold");
    assert!(
        threshold.contains("state reset: sensor_alerts (epoch "),
        "{plan}"
    );
    assert!(!line("payment_due").contains("state"), "unchanged: {plan}");

    let (code, applied, error) = deploy(&root, &served.url, &["--apply"]);
    assert_eq!(code, 0, "{applied}{error}");
    assert!(
        applied.contains("changed sensor_windows (queries ["),
        "{applied}"
    );
    assert!(applied.contains("state kept: sensor_stats_1m"), "{applied}");
    assert!(applied.contains("state reset: sensor_alerts"), "{applied}");
    let (status, rest) = served.terminate();
    assert!(status.success(), "{rest}");

    // The same command line again: the catalog and the applied rules come back from the
    // state dir, the profile declares nothing twice, and nothing is left to deploy.
    let mut served = Served::start(&root, &serve_args);
    assert!(
        served
            .report
            .contains("catalog restored from the state dir"),
        "{}",
        served.report
    );
    assert!(
        served.report.contains("profiles/demo.sql: nothing to do"),
        "{}",
        served.report
    );
    assert!(
        served
            .report
            .contains("sensor_threshold.sql: nothing to do"),
        "{}",
        served.report
    );
    let (code, plan, _) = deploy(&root, &served.url, &[]);
    assert_eq!(
        (code, plan.ends_with("nothing to do\n")),
        (0, true),
        "{plan}"
    );
    let (status, rest) = served.terminate();
    assert!(status.success(), "{rest}");
}
