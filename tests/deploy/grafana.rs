//! The Grafana files in `docs/grafana/`: every panel uses a provisioned data source, every
//! metric a PromQL panel plots is one `vigil serve` exports, and every SQL panel runs, with
//! rows, against the tables the product rules create through the `postgres` profile in a
//! real PostgreSQL.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use vigil_tests::postgres::Postgres;

use super::{repo, serve_with};

fn grafana_file(name: &str) -> String {
    let path = repo().join("docs/grafana").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

/// Every query target of the dashboard, with the title of its panel.
fn targets() -> Vec<(String, Value)> {
    let dashboard: Value =
        serde_json::from_str(&grafana_file("vigil-dashboard.json")).expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    (panels.iter())
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap_or_default().to_string();
            let targets = p["targets"].as_array().cloned().unwrap_or_default();
            targets.into_iter().map(move |t| (title.clone(), t))
        })
        .collect()
}

fn of_source<'a>(
    targets: &'a [(String, Value)],
    uid: &str,
    field: &str,
) -> Vec<(&'a str, &'a str)> {
    (targets.iter())
        .filter(|(_, t)| t["datasource"]["uid"] == uid)
        .map(|(title, t)| (title.as_str(), t[field].as_str().expect("the query's text")))
        .collect()
}

/// The names of Vigil's series a PromQL expression reads.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("vigil_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        names.push(name);
    }
    names
}

#[test]
fn every_panel_reads_a_data_source_the_provisioning_declares() {
    let provisioned: Value =
        serde_norway::from_str(&grafana_file("provisioning/datasources/vigil.yaml"))
            .expect("the data sources are YAML");
    let uids: BTreeSet<&str> = (provisioned["datasources"]
        .as_array()
        .expect("a list")
        .iter())
    .map(|d| d["uid"].as_str().expect("a uid"))
    .collect();
    let targets = targets();
    assert!(targets.len() >= 12, "{} queries", targets.len());
    for (title, target) in &targets {
        let uid = target["datasource"]["uid"].as_str().unwrap_or_default();
        assert!(
            uids.contains(uid),
            "panel '{title}' reads '{uid}', not provisioned"
        );
    }
    let dashboards: Value =
        serde_norway::from_str(&grafana_file("provisioning/dashboards/vigil.yaml")).unwrap();
    assert_eq!(dashboards["providers"][0]["type"], "file");
}

#[tokio::test]
async fn every_metric_the_dashboard_plots_is_one_vigil_serve_exports() {
    let token = "dashboard-token";
    let rules = repo().join("queries").display().to_string();
    let vigil = serve_with(token, &["--queries", &rules]);
    let client = reqwest::Client::new();
    let url = format!("http://{}/metrics", vigil.address);
    let deadline = Instant::now() + Duration::from_secs(30);
    let exported = loop {
        let answer = client.get(&url).bearer_auth(token).send().await;
        if let Ok(response) = answer
            && response.status().is_success()
        {
            break response.text().await.unwrap();
        }
        assert!(Instant::now() < deadline, "vigil serve never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let targets = targets();
    let promql = of_source(&targets, "vigil-prometheus", "expr");
    assert!(promql.len() >= 6, "{} PromQL panels", promql.len());
    for (title, expr) in promql {
        let names = metric_names(expr);
        assert!(
            !names.is_empty(),
            "panel '{title}' reads none of Vigil's series: {expr}"
        );
        for name in names {
            assert!(
                exported.contains(&format!("# TYPE {name} ")),
                "panel '{title}' plots {name}, which /metrics does not export"
            );
        }
    }
}

/// The `postgres` profile with bounded sources: each generator's pacing `rate` becomes a
/// `count`, so the rules run to the end of their input in seconds and every window closes.
fn bounded_profile() -> String {
    let profile = std::fs::read_to_string(repo().join("queries/profiles/postgres.sql")).unwrap();
    let mut out = String::new();
    let mut rest = profile.as_str();
    while let Some(at) = rest.find("rate = '") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "rate = '".len()..];
        let end = after.find('\'').expect("a closed rate");
        out.push_str("count = '60000'");
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    assert!(out.matches("count = '60000'").count() >= 6, "{out}");
    out
}

/// Grafana's `$__timeFilter(column)` as Grafana expands it, over all of time.
fn expand_macros(sql: &str) -> String {
    let mut out = String::new();
    let mut rest = sql;
    while let Some(at) = rest.find("$__timeFilter(") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "$__timeFilter(".len()..];
        let end = after.find(')').expect("a closed macro");
        out.push_str(&format!(
            "{} BETWEEN '1970-01-01T00:00:00Z' AND '2100-01-01T00:00:00Z'",
            &after[..end]
        ));
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    assert!(
        !out.contains("$__"),
        "a macro this test does not expand: {out}"
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sql_panel_runs_against_the_tables_the_product_rules_create() {
    let server = Postgres::start();
    let dir = std::env::temp_dir().join(format!("vigil-grafana-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("postgres.sql"), bounded_profile()).unwrap();
    let mut rules: Vec<String> = std::fs::read_dir(repo().join("queries"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .map(|p| p.display().to_string())
        .collect();
    rules.sort();
    let run = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .arg("run")
        .arg(dir.join("postgres.sql"))
        .args(&rules)
        .env("VIGIL_POSTGRES_URL", server.url())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("vigil run starts");
    assert!(
        run.status.success(),
        "the product rules failed on the postgres profile: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let targets = targets();
    let panels = of_source(&targets, "vigil-postgres", "rawSql");
    assert!(panels.len() >= 6, "{} SQL panels", panels.len());
    let client = server.client().await;
    for (title, sql) in panels {
        let sql = expand_macros(sql);
        let rows = client
            .query(&sql, &[])
            .await
            .unwrap_or_else(|e| panic!("panel '{title}' fails: {e}\n{sql}"));
        assert!(!rows.is_empty(), "panel '{title}' finds no rows:\n{sql}");
    }
    let _ = std::fs::remove_dir_all(dir);
}
