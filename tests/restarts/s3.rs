//! `--state-dir s3://bucket/prefix` against a real S3-compatible server on loopback (moto's
//! `moto_server`, `pip install "moto[server]"`): a rule killed again and again checkpoints
//! there and resumes from it, and its file sink holds exactly what one uninterrupted run
//! writes.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::aws::AmazonS3Builder;
use object_store::path::Path as StorePath;
use vigil_engine::checkpoint::{QueryCheckpoints, StateLocation};

use super::durable::{StateView, finish, kill_loop_watching, lines, lost_and_duplicated, start};
use super::scratch;

const BUCKET: &str = "vigil-state";

/// A `moto_server` on a free loopback port, stopped when dropped.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Moto {
    fn start() -> Self {
        let binary = std::env::var_os("VIGIL_MOTO_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("moto_server"));
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(&binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({e}): the S3 test needs moto's server, \
                     `pip install \"moto[server]\"` (or set VIGIL_MOTO_BIN)",
                    binary.display()
                )
            });
        let moto = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        moto.create_bucket(port);
        moto
    }

    /// Creates the bucket, retrying until the server answers.
    fn create_bucket(&self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
                let request = format!(
                    "PUT /{BUCKET} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                stream.write_all(request.as_bytes()).unwrap();
                let mut answer = String::new();
                let _ = stream.read_to_string(&mut answer);
                if answer.starts_with("HTTP/1.1 200") {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "moto_server did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What `vigil` needs in its environment to reach the server.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The checkpoints of query `out` under `s3://vigil-state/<prefix>`, seen from the test.
struct S3State {
    checkpoints: QueryCheckpoints,
    runtime: tokio::runtime::Runtime,
}

impl S3State {
    fn new(moto: &Moto, prefix: &str) -> Self {
        let store = AmazonS3Builder::new()
            .with_endpoint(&moto.endpoint)
            .with_allow_http(true)
            .with_bucket_name(BUCKET)
            .with_region("us-east-1")
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .build()
            .unwrap();
        let location = StateLocation::new(Arc::new(store), StorePath::from(prefix), prefix.into());
        Self {
            checkpoints: QueryCheckpoints::new(&location, "out"),
            runtime: tokio::runtime::Runtime::new().unwrap(),
        }
    }

    fn files(&self) -> Vec<String> {
        self.runtime
            .block_on(self.checkpoints.file_names())
            .unwrap_or_default()
    }
}

impl StateView for S3State {
    fn newest_epoch(&self) -> Option<u64> {
        self.files()
            .iter()
            .filter_map(|f| f.strip_suffix("-manifest.json")?.parse().ok())
            .max()
    }

    fn half_written(&self) -> bool {
        let files = self.files();
        files.iter().any(|f| {
            f.strip_suffix("-state.arrows")
                .is_some_and(|epoch| !files.contains(&format!("{epoch}-manifest.json")))
        })
    }
}

#[test]
fn a_rule_checkpointing_to_s3_resumes_after_kills_and_writes_every_result_once() {
    let moto = Moto::start();
    let dir = scratch("durable-s3");
    let profile = "CREATE SOURCE sensors (sensor_id TEXT, temperature DOUBLE, ts TIMESTAMP,
            WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
        WITH (connector = 'generator', kind = 'sensors', count = '3000000', keys = '30',
              disorder_ms = '2000', seed = '8');
        CREATE SINK out WITH (connector = 'file', path = 'out.jsonl');";
    let rule = "CREATE SINK out AS SELECT window_start, sensor_id, count(*) AS n
        FROM TUMBLE(sensors, ts, INTERVAL '1' MINUTE) GROUP BY window_start, window_end, sensor_id;";
    std::fs::write(dir.join("profile.sql"), profile).unwrap();
    std::fs::write(dir.join("rule.sql"), rule).unwrap();
    finish(start(&dir, &["run", "profile.sql", "rule.sql"]));
    let mut truth = lines(&dir.join("out.jsonl"));
    std::fs::rename(dir.join("out.jsonl"), dir.join("truth.jsonl")).unwrap();

    let url = format!("s3://{BUCKET}/ci");
    let args = [
        "run",
        "--state-dir",
        url.as_str(),
        "--checkpoint-interval",
        "100ms",
        "profile.sql",
        "rule.sql",
    ];
    let env = moto.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let state = S3State::new(&moto, "ci");
    let tally = kill_loop_watching(&dir, &args, &env, 9, &state);
    let mut actual = lines(&dir.join("out.jsonl"));
    truth.sort();
    actual.sort();
    let (lost, duplicated) = lost_and_duplicated(&truth, &actual);
    eprintln!(
        "s3: {} kills ({} during a checkpoint write), {} results, {lost} lost, {duplicated} duplicated",
        tally.kills,
        tally.mid_checkpoint,
        truth.len()
    );
    assert_eq!((lost, duplicated), (0, 0));
    assert!(state.newest_epoch().is_some(), "no checkpoint in S3");
}
