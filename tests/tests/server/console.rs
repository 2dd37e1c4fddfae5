//! The web console at `/`, in a real headless Chromium driven over WebDriver.

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use vigil_server::ServerConfig;
use vigil_tests::browser::Browser;

use super::{PACED_SOURCE, Running};

const TOKEN: &str = "console-token";

/// A windowed rule with two numeric columns, so the page can chart it.
fn counts_rule(out: &std::path::Path) -> String {
    format!(
        "CREATE SINK sensor_counts WITH (connector = 'file', path = '{}') AS\n\
         SELECT window_start, window_end, sensor_id, count(*) AS readings,\n       \
         max(temperature) AS hottest\n\
         FROM TUMBLE(sensors, ts, INTERVAL '1' SECOND)\n\
         GROUP BY window_start, window_end, sensor_id;\n",
        out.display()
    )
}

async fn with_token() -> Running {
    Running::start(ServerConfig {
        token: Some(TOKEN.into()),
        ..ServerConfig::default()
    })
    .await
}

/// Opens `page` of the console and signs in with `token` when the page asks for one.
async fn sign_in(browser: &Browser, server: &Running, page: &str, token: &str) {
    browser.open(&format!("{}/{page}", server.base)).await;
    let field = "#token-form:not([hidden]) #token";
    browser.clear(field).await;
    browser.type_into(field, token).await;
    browser.click("#token-form button").await;
}

/// The number `css`'s first element carries in `attribute`, 0 while it has none.
async fn number_at(browser: &Browser, css: &str, attribute: &str) -> u64 {
    let script = "const e = document.querySelector(arguments[0]); \
                  return e ? Number(e.getAttribute(arguments[1]) || 0) : 0;";
    let value = browser
        .eval(script, vec![json!(css), json!(attribute)])
        .await;
    value.as_u64().unwrap_or(0)
}

/// Waits until `css`'s attribute holds more than `floor`; answers with what it holds.
async fn wait_above(browser: &Browser, css: &str, attribute: &str, floor: u64) -> u64 {
    let what = format!("{css} [{attribute}] above {floor}");
    browser
        .wait_for(&what, || async {
            let now = number_at(browser, css, attribute).await;
            (now > floor).then_some(now)
        })
        .await
}

/// The results table's rows as the page shows them: change kind, then the cells.
async fn table_rows(browser: &Browser) -> Vec<Vec<String>> {
    let script = "return [...document.querySelectorAll('#results tbody tr')]\
                  .map(tr => [...tr.cells].map(td => td.textContent));";
    let rows = browser.eval(script, vec![]).await;
    serde_json::from_value(rows).expect("rows of cells")
}

/// The first `n` rows of a query's results as an API client reads them, in the table's
/// column order.
async fn first_rows(server: &Running, id: u64, columns: &[&str], n: usize) -> Vec<Vec<String>> {
    let response = server
        .request(reqwest::Method::GET, &format!("/v1/queries/{id}/results"))
        .header("accept", "application/x-ndjson")
        .send()
        .await
        .unwrap();
    let mut body = response.bytes_stream();
    let mut text = String::new();
    while text.matches('\n').count() < n {
        let chunk = tokio::time::timeout(Duration::from_secs(30), body.next())
            .await
            .expect("rows within 30 s")
            .expect("the stream goes on")
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    // As the page writes them: JavaScript prints 30.0 as 30.
    let cell = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "NULL".into(),
        Value::Number(n) => n.as_f64().expect("a number").to_string(),
        other => other.to_string(),
    };
    text.lines()
        .take(n)
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .map(|row| columns.iter().map(|c| cell(&row[*c])).collect())
        .collect()
}

fn screenshot_path(name: &str) -> std::path::PathBuf {
    vigil_tests::workspace_root()
        .join("target/console")
        .join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_a_deployed_rule_its_graph_and_its_rows_live() {
    let server = with_token().await;
    let (status, body) = server.sql("/v1/statements", PACED_SOURCE).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // File sinks over HTTP write inside the server's data directory.
    let out = std::env::temp_dir()
        .join("vigil-server-data")
        .join(format!("console-{}.jsonl", std::process::id()));
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let rule = counts_rule(&out);
    let (status, body) = server.put_sql("/v1/rules/sensor_counts", &rule).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = body["rule"]["queries"][0].as_u64().expect("a query");

    let browser = Browser::start().await;
    sign_in(&browser, &server, "", TOKEN).await;
    let row = format!("#queries tr[data-query-id='{id}']");
    assert_eq!(
        browser.text(&format!("{row} .query-name")).await,
        "sensor_counts"
    );
    assert_eq!(browser.text(&format!("{row} .status")).await, "running");
    wait_above(&browser, &format!("{row} td:nth-child(5)"), "data-value", 0).await;
    browser.screenshot(&screenshot_path("queries.png")).await;

    browser.click(&format!("{row} .query-name")).await;
    assert_eq!(browser.text("#query-name").await, "sensor_counts");
    // One box per operator the API reports, and the counters move.
    let (_, graph) = server.get_json(&format!("/v1/queries/{id}/graph")).await;
    let operators = graph["operators"].as_array().expect("operators").len();
    let drawn = browser
        .wait_for("the operator graph", || async {
            let n = browser.count("#graph g.operator").await;
            (n > 0).then_some(n)
        })
        .await;
    assert_eq!(drawn, operators);

    // Rows arrive while the page is open, and they are the rows an API client reads.
    let seen = wait_above(&browser, "#result-count", "data-rows", 2).await;
    wait_above(&browser, "#result-count", "data-rows", seen).await;
    let columns = [
        "op",
        "window_start",
        "window_end",
        "sensor_id",
        "readings",
        "hottest",
    ];
    let shown = table_rows(&browser).await;
    assert_eq!(shown[..3], first_rows(&server, id, &columns, 3).await[..]);

    // The chart holds one point per row of the current answer, at the row's value.
    let script = "return [document.querySelectorAll('#results tbody tr').length, \
                  [...document.querySelectorAll('#chart circle.point')].map(c => \
                  [c.dataset.windowStart, c.dataset.value])];";
    let chart = browser.eval(script, vec![]).await;
    let points = chart[1].as_array().expect("points");
    assert_eq!(points.len() as u64, chart[0].as_u64().unwrap());
    let readings: Vec<(String, String)> = table_rows(&browser)
        .await
        .into_iter()
        .map(|r| (r[1].clone(), r[4].clone()))
        .collect();
    for point in points {
        let point = (
            point[0].as_str().unwrap().to_string(),
            point[1].as_str().unwrap().to_string(),
        );
        assert!(
            readings.contains(&point),
            "{point:?} is not a row's readings"
        );
    }
    browser.screenshot(&screenshot_path("query.png")).await;

    // The rules page shows the deployed text and its hash.
    browser.open(&format!("{}/#/rules", server.base)).await;
    let section = "section[data-rule='sensor_counts']";
    let hash = vigil_rules::layout::content_hash(&rule);
    assert_eq!(browser.text(&format!("{section} .hash")).await, hash);
    assert_eq!(
        browser.text(&format!("{section} pre.sql")).await.trim(),
        rule.trim()
    );
    drop(browser);
    server.stop().await;
    let _ = std::fs::remove_file(out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sql_box_shows_where_a_statement_is_wrong_and_runs_a_good_one() {
    let server = with_token().await;
    server.sql("/v1/statements", PACED_SOURCE).await;
    let browser = Browser::start().await;

    sign_in(&browser, &server, "#/sql", "not-the-token").await;
    let refused = browser
        .wait_for("the token to be refused", || async {
            let text = browser.text("#token-error").await;
            (!text.is_empty()).then_some(text)
        })
        .await;
    assert_eq!(refused, "That token was refused.");
    sign_in(&browser, &server, "#/sql", TOKEN).await;
    // The catalog beside the box: each source with its columns, as the API has them.
    let (_, catalog) = server.get_json("/v1/catalog").await;
    let columns: Vec<String> = (catalog["sources"][0]["columns"].as_array().unwrap().iter())
        .map(|c| {
            format!(
                "{} {}",
                c["name"].as_str().unwrap(),
                c["type"].as_str().unwrap()
            )
        })
        .collect();
    let listed = browser.text("#catalog li[data-object='sensors']").await;
    assert_eq!(listed, format!("sensors ({})", columns.join(", ")));

    let bad = "SELECT sensor_id\nFROM sensors\nWHERE temprature > 30";
    let (_, verdict) = server.sql("/v1/validate", bad).await;
    let error = &verdict["errors"][0];
    assert_eq!(error["line"], 3, "{verdict}");
    let expected = format!(
        "line {}, column {}: {}",
        error["line"],
        error["column"],
        error["message"].as_str().unwrap()
    );
    browser.type_into("#sql", bad).await;
    assert_eq!(browser.text("#verdict .sql-error .message").await, expected);
    let caret = browser.text("#verdict pre.caret").await;
    let column = error["column"].as_u64().unwrap() as usize;
    assert_eq!(
        caret,
        format!("WHERE temprature > 30\n{}^", " ".repeat(column - 1))
    );
    browser.screenshot(&screenshot_path("sql-error.png")).await;

    browser.clear("#sql").await;
    browser
        .type_into("#sql", "SELECT sensor_id, temperature FROM sensors")
        .await;
    browser
        .wait_for("the statement to be valid", || async {
            (browser.text("#verdict").await == "Valid.").then_some(())
        })
        .await;
    browser.click("#run").await;
    // Running a SELECT opens its query's page, where its rows arrive.
    wait_above(&browser, "#result-count", "data-rows", 0).await;
    let (_, list) = server.get_json("/v1/queries").await;
    assert_eq!(list["queries"][0]["kind"], "transient", "{list}");
    drop(browser);
    server.stop().await;
}

#[tokio::test]
async fn the_console_is_served_without_the_token_and_loads_nothing_from_elsewhere() {
    let server = with_token().await;
    let client = reqwest::Client::new();
    for (path, kind) in [
        ("/", "text/html"),
        ("/console/console.js", "text/javascript"),
        ("/console/console.css", "text/css"),
    ] {
        let response = client
            .get(format!("{}{path}", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let headers = response.headers();
        assert!(
            headers["content-type"].to_str().unwrap().starts_with(kind),
            "{path}"
        );
        let policy = headers["content-security-policy"].to_str().unwrap();
        assert!(policy.starts_with("default-src 'self'"), "{policy}");
        let text = response.text().await.unwrap();
        for attribute in ["src=\"", "href=\""] {
            for reference in text.split(attribute).skip(1) {
                assert!(
                    reference.starts_with('/') || reference.starts_with('#'),
                    "{path} refers to {}",
                    &reference[..reference.len().min(40)]
                );
            }
        }
    }
    // The data behind it still needs the token.
    let response = client
        .get(format!("{}/v1/queries", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    server.stop().await;
}
