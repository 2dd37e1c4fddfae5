//! A real Prometheus (the distribution's `prometheus` package, which `.ci/run` installs)
//! scrapes `vigil serve` on loopback with the API token, and one of Vigil's series comes
//! back through Prometheus's HTTP API.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::{manifest, repo, serve_with};

/// A Prometheus server, stopped and its data removed when dropped.
struct Prometheus {
    child: Child,
    dir: std::path::PathBuf,
    address: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_address() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    format!("127.0.0.1:{port}")
}

/// Starts Prometheus scraping `target` every second at `metrics_path` with `token`.
fn prometheus(target: &str, metrics_path: &str, token: &str) -> Prometheus {
    let dir = std::env::temp_dir().join(format!("vigil-prometheus-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: vigil\n    \
         metrics_path: {metrics_path}\n    authorization:\n      credentials: {token}\n    \
         static_configs:\n      - targets: ['{target}']\n"
    );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let address = free_address();
    let child = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={address}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus runs: install the prometheus package (.ci/run does)");
    Prometheus {
        child,
        dir,
        address,
    }
}

#[tokio::test]
async fn prometheus_scrapes_vigil_serve_and_answers_with_its_series() {
    let token = "scrape-token";
    let rules = repo().join("queries").display().to_string();
    let vigil = serve_with(token, &["--queries", &rules]);
    let deployment = manifest("deployment.yaml");
    let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
    let path = annotations["prometheus.io/path"].as_str().unwrap();
    let server = prometheus(&vigil.address, path, token);
    let client = reqwest::Client::new();
    let query = format!(
        "http://{}/api/v1/query?query=vigil_query_events_in_total%7Bname%3D%22brute_force_alerts%22%7D",
        server.address
    );
    // Waits for a scrape to have stored the series with events counted.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let value = loop {
        let answer = match client.get(&query).send().await {
            Ok(response) => response.json::<Value>().await.ok(),
            Err(_) => None,
        };
        let value = answer
            .as_ref()
            .and_then(|a| a.pointer("/data/result/0/value/1"));
        if let Some(value) = value
            .and_then(Value::as_str)
            .and_then(|v| v.parse::<f64>().ok())
            && value > 0.0
        {
            break value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Prometheus never stored the series: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(value >= 1.0, "events counted: {value}");
    let up = format!(
        "http://{}/api/v1/query?query=up%7Bjob%3D%22vigil%22%7D",
        server.address
    );
    let up: Value = client.get(&up).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        up.pointer("/data/result/0/value/1"),
        Some(&Value::from("1"))
    );
}
