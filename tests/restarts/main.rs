//! `vigil run` on Kafka killed (SIGKILL) again and again mid-stream and started again, with
//! no state directory: every window of its output is present, and none has a wrong count.
//!
//! A test binary of its own: it keeps a broker, a producer and a `vigil run` busy for a
//! minute, which would starve the terminal tests running beside it in `tests/cli`.

use std::collections::BTreeMap;
use std::process::Child;
use std::time::{Duration, Instant};

use vigil_tests::kafka::{Broker, window_counts};

mod durable;
mod exactly_once;
mod postgres;
mod rebalance;
mod s3;

/// An empty scratch directory for the runs.
fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("vigil-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Window size of the rule, in seconds.
const WINDOW: i64 = 10;
const EVENTS: i64 = 1500;

const PROFILE: &str = "CREATE SOURCE events (id BIGINT, ts TIMESTAMP,
        WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
    WITH (connector = 'kafka', topic = 'events', group_id = 'kill_loop', idle_advance = 'none',
          -- A killed process holds its partitions until its session times out.
          properties.session.timeout.ms = '6000', properties.heartbeat.interval.ms = '1000');
CREATE SINK counts WITH (connector = 'kafka', topic = 'counts');";

const RULE: &str = "CREATE SINK counts AS
SELECT window_start, count(*) AS n FROM TUMBLE(events, ts, INTERVAL '10' SECOND)
GROUP BY window_start, window_end;";

/// Event `i` happens `60 + i` seconds in, give or take four: windows straddle batches and
/// commits.
fn event_second(i: i64) -> i64 {
    60 + i + (i * 7) % 9 - 4
}

fn window_of(second: i64) -> i64 {
    second.div_euclid(WINDOW) * WINDOW
}

fn text(second: i64) -> String {
    format!(
        "2024-01-01T{:02}:{:02}:{:02}.000Z",
        second.div_euclid(3600),
        second.rem_euclid(3600) / 60,
        second.rem_euclid(60)
    )
}

/// Window start to how many events fall in it.
fn truth() -> BTreeMap<String, i64> {
    let mut counts = BTreeMap::new();
    for i in 0..EVENTS {
        *counts.entry(text(window_of(event_second(i)))).or_default() += 1;
    }
    counts
}

/// Window start to every count the output holds for it.
fn output(broker: &Broker) -> BTreeMap<String, Vec<i64>> {
    window_counts(&broker.read_topic("counts"), "n")
}

/// A `vigil run` child, killed when dropped so a failing test leaves no process behind.
struct Run(Child);

impl Run {
    /// SIGKILL, as a crash would.
    fn kill(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_run(dir: &std::path::Path, broker: &Broker) -> Run {
    let args = ["--brokers", &broker.address, "run", "--batch-size", "16"];
    durable::start(dir, &[&args[..], &["profile.sql", "rule.sql"]].concat())
}

/// Waits until the output holds more windows than `seen`; returns how many it holds.
fn wait_for_more_windows(broker: &Broker, seen: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let now = output(broker).len();
        if now > seen {
            return now;
        }
        assert!(Instant::now() < deadline, "no new window after {seen}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_rule_killed_five_times_mid_stream_emits_every_window_with_its_true_count() {
    let broker = Broker::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(broker.create_topics(&["events", "counts"], 2));
    let dir = scratch("kill-loop");
    std::fs::write(dir.join("profile.sql"), PROFILE).unwrap();
    std::fs::write(dir.join("rule.sql"), RULE).unwrap();

    // Events arrive while the rule is killed and restarted.
    let producing = {
        let producer = broker.producer();
        runtime.spawn(async move {
            for i in 0..EVENTS {
                let value = format!(r#"{{"id": {i}, "ts": "{}"}}"#, text(event_second(i)));
                let key = (i % 2).to_string();
                let record = rdkafka::producer::FutureRecord::to("events")
                    .partition((i % 2) as i32)
                    .key(&key)
                    .payload(&value);
                producer
                    .send(record, Duration::from_secs(30))
                    .await
                    .unwrap_or_else(|(e, _)| panic!("producing: {e}"));
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        })
    };
    let mut windows = 0;
    let mut kills = 0;
    // Each run is killed once it has emitted a new window, while events still arrive.
    while kills < 5 && !producing.is_finished() {
        let run = start_run(&dir, &broker);
        windows = wait_for_more_windows(&broker, windows);
        run.kill();
        kills += 1;
    }
    assert_eq!(kills, 5, "five runs were killed mid-stream");
    runtime.block_on(producing).unwrap();

    // A last run sees the input through; the last windows stay open (no later events).
    let truth = truth();
    let last_closed = text(window_of(event_second(EVENTS - 1)) - 2 * WINDOW);
    let run = start_run(&dir, &broker);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !output(&broker).contains_key(&last_closed) {
        assert!(Instant::now() < deadline, "window {last_closed} never came");
        std::thread::sleep(Duration::from_millis(200));
    }
    run.kill();

    let output = output(&broker);
    for (start, counts) in &output {
        for n in counts {
            assert_eq!(
                Some(n),
                truth.get(start),
                "window {start} emitted with {counts:?}"
            );
        }
    }
    let missing: Vec<&String> = truth
        .keys()
        .filter(|s| **s <= last_closed && !output.contains_key(*s))
        .collect();
    assert!(missing.is_empty(), "windows missing: {missing:?}");
}
