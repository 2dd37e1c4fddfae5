//! `vigil run --state-dir` killed (SIGKILL) 20 times at random points, during checkpoint
//! writes too, and started again until its input is done: the file sink then holds exactly
//! what one uninterrupted run writes. For a filter, a TUMBLE, a HOP and `payment_due`
//! (updating, over two sources) on generated events, and for a TUMBLE reading a real broker.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vigil_tests::fuzz::Rng;
use vigil_tests::kafka::Broker;

use super::{Run, scratch};

const KILLS: usize = 20;

/// `profile.sql` then `rule.sql`, checkpointing every 100 ms into `state/`.
pub(super) const CHECKPOINTED_RUN: [&str; 7] = [
    "run",
    "--state-dir",
    "state",
    "--checkpoint-interval",
    "100ms",
    "profile.sql",
    "rule.sql",
];

/// A rule over files of generated events, with its profile.
struct Case {
    name: &'static str,
    profile: &'static str,
    rule: &'static str,
    /// The output is a changelog: compared once applied, since the two sources of
    /// `payment_due` interleave differently from run to run.
    updating: bool,
}

/// Writes the input files: generated readings, payments and dues as JSON lines.
const INPUTS: &str = "
    CREATE SOURCE gen_sensors (sensor_id TEXT, temperature DOUBLE, ts TIMESTAMP)
    WITH (connector = 'generator', kind = 'sensors', count = '3000000', keys = '50',
          disorder_ms = '2000', late_ratio = '0.001', seed = '3');
    CREATE SOURCE gen_payments (account_id BIGINT, amount DOUBLE, ts TIMESTAMP)
    WITH (connector = 'generator', kind = 'payments', count = '1000000', keys = '5000', seed = '5');
    CREATE SOURCE gen_dues (account_id BIGINT, amount DOUBLE, ts TIMESTAMP)
    WITH (connector = 'generator', kind = 'dues', count = '1000000', keys = '5000', seed = '6');
    CREATE SINK sensors_file WITH (connector = 'file', path = 'sensors.jsonl');
    CREATE SINK payments_file WITH (connector = 'file', path = 'payments.jsonl');
    CREATE SINK dues_file WITH (connector = 'file', path = 'dues.jsonl');
    CREATE SINK sensors_file AS SELECT * FROM gen_sensors;
    CREATE SINK payments_file AS SELECT * FROM gen_payments;
    CREATE SINK dues_file AS SELECT * FROM gen_dues;";

const SENSORS: &str = "
    CREATE SOURCE sensors (sensor_id TEXT, temperature DOUBLE, ts TIMESTAMP,
        WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
    WITH (connector = 'file', path = '../sensors.jsonl');
    CREATE SINK out WITH (connector = 'file', path = 'out.jsonl');";

const PAYMENTS: &str = "
    CREATE SOURCE payments (account_id BIGINT, amount DOUBLE, ts TIMESTAMP)
    WITH (connector = 'file', path = '../payments.jsonl');
    CREATE SOURCE dues (account_id BIGINT, amount DOUBLE, ts TIMESTAMP)
    WITH (connector = 'file', path = '../dues.jsonl');
    CREATE SINK payment_due_alerts WITH (connector = 'file', path = 'out.jsonl');";

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "filter",
            profile: SENSORS,
            rule: "CREATE SINK out AS SELECT sensor_id, temperature, ts FROM sensors WHERE temperature > 30;",
            updating: false,
        },
        Case {
            name: "tumble",
            profile: SENSORS,
            rule: "CREATE SINK out AS SELECT window_start, sensor_id, count(*) AS n, max(temperature) AS hi
                   FROM TUMBLE(sensors, ts, INTERVAL '1' MINUTE) GROUP BY window_start, window_end, sensor_id;",
            updating: false,
        },
        Case {
            name: "hop",
            profile: SENSORS,
            // Integer sums: a float sum's last digit follows the batch boundaries, which
            // differ after a restore (as they do between batch sizes).
            rule: "CREATE SINK out AS SELECT window_start, count(*) AS n,
                       sum(CAST(temperature * 10 AS BIGINT)) AS t10, min(temperature) AS lo
                   FROM HOP(sensors, ts, INTERVAL '10' SECOND, INTERVAL '2' MINUTE)
                   GROUP BY window_start, window_end;",
            updating: false,
        },
        Case {
            name: "payment_due",
            profile: PAYMENTS,
            rule: include_str!("../../queries/payment_due.sql"),
            updating: true,
        },
    ]
}

pub(super) fn start(dir: &Path, args: &[&str]) -> Run {
    start_with(dir, args, &[])
}

/// [`start`] with `env` set.
pub(super) fn start_with(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    start_logging_to(dir, "runs.log", args, env)
}

/// `vigil` with `args` and `env` in `dir`, appending what it logs to `dir/log`.
pub(super) fn start_logging_to(dir: &Path, log: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(log))
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_vigil"))
        .current_dir(dir)
        .args(args)
        .envs(env.iter().copied())
        .env("VIGIL_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map(Run)
        .expect("vigil run starts")
}

/// Waits for a run to finish by itself.
pub(super) fn finish(mut run: Run) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Some(status) = run.0.try_wait().unwrap() {
            assert!(status.success(), "the last run failed: {status}");
            return;
        }
        assert!(Instant::now() < deadline, "the last run did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What a kill loop found.
#[derive(Debug, Default)]
pub(super) struct Tally {
    pub kills: usize,
    /// Kills that came while a checkpoint epoch was half written.
    pub mid_checkpoint: usize,
}

/// Runs `args` in `dir` and kills it `KILLS` times, then lets a last run finish. Each run
/// is killed after it wrote a checkpoint, so every run moves the output on: at once, a
/// little later, or as soon as it is seen writing the next checkpoint.
pub(super) fn kill_loop(dir: &Path, args: &[&str], seed: u64) -> Tally {
    let state = LocalState(dir.join("state"));
    kill_loop_watching(dir, args, &[], seed, &state)
}

/// Where a kill loop sees checkpoints being written.
pub(super) trait StateView {
    /// The newest epoch with a manifest.
    fn newest_epoch(&self) -> Option<u64>;
    /// True when some epoch has its state file but not yet its manifest.
    fn half_written(&self) -> bool;
}

/// A local state dir.
pub(super) struct LocalState(pub PathBuf);

impl StateView for LocalState {
    fn newest_epoch(&self) -> Option<u64> {
        newest_epoch(&self.0)
    }

    fn half_written(&self) -> bool {
        half_written(&self.0)
    }
}

/// [`kill_loop`] with `env` set for every run, watching checkpoints in `state`.
pub(super) fn kill_loop_watching(
    dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    seed: u64,
    state: &dyn StateView,
) -> Tally {
    let mut rng = Rng::new(seed);
    let mut tally = Tally::default();
    while tally.kills < KILLS {
        let mut run = start_with(dir, args, env);
        let seen = state.newest_epoch();
        let deadline = Instant::now() + Duration::from_secs(120);
        while state.newest_epoch() == seen {
            if let Some(status) = run.0.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "a run failed ({status}): see {}",
                    dir.display()
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no checkpoint after epoch {seen:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let mid_checkpoint = match rng.below(3) {
            0 => false,
            1 => {
                std::thread::sleep(Duration::from_millis(rng.below(250) as u64));
                false
            }
            _ => wait_for_a_half_written_epoch(state),
        };
        if run.0.try_wait().unwrap().is_some() {
            // It finished first: the input is done.
            break;
        }
        tally.mid_checkpoint += usize::from(mid_checkpoint);
        run.kill();
        tally.kills += 1;
    }
    finish(start_with(dir, args, env));
    tally
}

/// The newest epoch with a manifest.
fn newest_epoch(state: &Path) -> Option<u64> {
    walk(state)
        .iter()
        .filter_map(|f| {
            let name = f.file_name()?.to_str()?;
            name.strip_suffix("-manifest.json")?.parse().ok()
        })
        .max()
}

/// Polls for up to a second for an epoch being written; true when one was seen.
fn wait_for_a_half_written_epoch(state: &dyn StateView) -> bool {
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        if state.half_written() {
            return true;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    false
}

/// True when some epoch has its state file but not yet its manifest.
fn half_written(state: &Path) -> bool {
    let files = walk(state);
    files.iter().any(|f| {
        f.to_string_lossy().ends_with("-state.arrows")
            && !files.contains(&PathBuf::from(
                f.to_string_lossy()
                    .replace("-state.arrows", "-manifest.json"),
            ))
    })
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|e| {
            let path = e.path();
            if path.is_dir() {
                walk(&path)
            } else {
                vec![path]
            }
        })
        .collect()
}

pub(super) fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Applies a changelog of JSON lines strictly: a retraction must match the row present for
/// its account, and an account present is never inserted again. The rows left, sorted.
fn applied(changes: &[String]) -> Vec<String> {
    let mut present = std::collections::HashMap::new();
    for line in changes {
        let mut row: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(line).unwrap();
        let op = row.remove("op").unwrap();
        let key = row["account_id"].to_string();
        let row = serde_json::Value::Object(row).to_string();
        if op.as_str().unwrap().starts_with('+') {
            let before = present.insert(key, row);
            assert!(
                before.is_none(),
                "{line}: inserted while present, a duplicate"
            );
        } else {
            let before = present.remove(&key);
            assert_eq!(before, Some(row), "{line}: retracts another row");
        }
    }
    let mut rows: Vec<String> = present.into_values().collect();
    rows.sort();
    rows
}

/// Lines the uninterrupted run wrote that the killed ones lack, and lines they wrote more
/// often.
pub(super) fn lost_and_duplicated(truth: &[String], actual: &[String]) -> (usize, usize) {
    let count = |lines: &[String]| {
        let mut counts = std::collections::BTreeMap::new();
        for line in lines {
            *counts.entry(line.clone()).or_insert(0i64) += 1;
        }
        counts
    };
    let (truth, actual) = (count(truth), count(actual));
    let lost = truth
        .iter()
        .map(|(line, n)| (n - actual.get(line).copied().unwrap_or(0)).max(0))
        .sum::<i64>();
    let duplicated = actual
        .iter()
        .map(|(line, n)| (n - truth.get(line).copied().unwrap_or(0)).max(0))
        .sum::<i64>();
    (lost as usize, duplicated as usize)
}

#[test]
fn rules_killed_twenty_times_with_a_state_dir_write_every_result_exactly_once() {
    let inputs = scratch("durable");
    std::fs::write(inputs.join("inputs.sql"), INPUTS).unwrap();
    finish(start(&inputs, &["run", "inputs.sql"]));
    for (i, case) in cases().into_iter().enumerate() {
        let dir = inputs.join(case.name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("profile.sql"), case.profile).unwrap();
        std::fs::write(dir.join("rule.sql"), case.rule).unwrap();
        finish(start(&dir, &["run", "profile.sql", "rule.sql"]));
        let truth = lines(&dir.join("out.jsonl"));
        assert!(truth.len() > 100, "{}: {} lines", case.name, truth.len());
        std::fs::rename(dir.join("out.jsonl"), dir.join("truth.jsonl")).unwrap();

        let tally = kill_loop(&dir, &CHECKPOINTED_RUN, 17 + i as u64);
        let actual = lines(&dir.join("out.jsonl"));
        let (lost, duplicated) = lost_and_duplicated(&truth, &actual);
        let outcome = if case.updating {
            // Two sources interleave differently from run to run: only the final rows compare.
            format!("{} final rows", applied(&truth).len())
        } else {
            format!(
                "{} results, {lost} lost, {duplicated} duplicated",
                truth.len()
            )
        };
        eprintln!(
            "{}: {} kills ({} during a checkpoint write), {outcome}",
            case.name, tally.kills, tally.mid_checkpoint
        );
        if case.updating {
            assert!(
                applied(&actual) == applied(&truth),
                "{}: another final state",
                case.name
            );
        } else {
            assert_eq!((lost, duplicated), (0, 0), "{}", case.name);
            // Windows close in the same order; the rows of one window's emission follow
            // the order its groups were first seen in, which a restore may change.
            let windows = |lines: &[String]| -> Vec<String> {
                lines
                    .iter()
                    .map(|l| l.split(',').next().unwrap().to_string())
                    .collect()
            };
            assert!(
                windows(&actual) == windows(&truth),
                "{}: windows out of order",
                case.name
            );
        }
    }
}

const EVENTS: i64 = 30_000;

/// Event `i` of partition `i % 2`, in time order within its partition: nothing is late,
/// so the windows do not depend on how the partitions interleave.
fn event(i: i64) -> String {
    let second = 60 + i / 4;
    format!(
        r#"{{"id": {i}, "ts": "2024-01-01T{:02}:{:02}:{:02}.000Z"}}"#,
        second / 3600,
        second % 3600 / 60,
        second % 60
    )
}

#[test]
fn a_tumble_over_kafka_killed_twenty_times_writes_every_window_once() {
    let broker = Broker::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(broker.create_topics(&["readings"], 2));
    runtime.block_on(async {
        let producer = broker.producer();
        let send = |i: i64| {
            let value = event(i);
            let record = rdkafka::producer::FutureRecord::<(), _>::to("readings")
                .partition((i % 2) as i32)
                .payload(&value);
            let sent = producer.send_result(record).expect("queued");
            async move {
                sent.await
                    .unwrap()
                    .unwrap_or_else(|(e, _)| panic!("producing: {e}"))
            }
        };
        // One record per batch, each sent once the one before is acknowledged: Tansu 0.6
        // answers a fetch from an offset inside a batch with the batches after it, so a
        // restart resuming mid-batch would skip the rest of that batch.
        for i in 0..EVENTS {
            send(i).await;
        }
    });
    let profile = |group: &str| {
        format!(
            "CREATE SOURCE readings (id BIGINT, ts TIMESTAMP,
                WATERMARK FOR ts AS ts - INTERVAL '30' SECOND)
             WITH (connector = 'kafka', topic = 'readings', group_id = '{group}',
                   bounded = 'latest', idle_advance = 'none');
             CREATE SINK out WITH (connector = 'file', path = 'out.jsonl');"
        )
    };
    let rule = "CREATE SINK out AS SELECT window_start, count(*) AS n, sum(id) AS ids
        FROM TUMBLE(readings, ts, INTERVAL '10' SECOND) GROUP BY window_start, window_end;";
    let dir = scratch("durable-kafka");
    std::fs::write(dir.join("rule.sql"), rule).unwrap();
    std::fs::write(dir.join("profile.sql"), profile("truth")).unwrap();
    let brokers = ["--brokers", broker.address.as_str()];
    let run_args = |extra: &[&'static str]| -> Vec<String> {
        let mut args: Vec<String> = brokers.iter().map(|s| s.to_string()).collect();
        args.extend(["run", "--batch-size", "4"].map(String::from));
        args.extend(extra.iter().map(|s| s.to_string()));
        args.extend(["profile.sql", "rule.sql"].map(String::from));
        args
    };
    let truth_args = run_args(&[]);
    finish(start(
        &dir,
        &truth_args.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    let mut truth = lines(&dir.join("out.jsonl"));
    assert_eq!(truth.len() as i64, (60 + (EVENTS - 1) / 4) / 10 - 5);
    std::fs::rename(dir.join("out.jsonl"), dir.join("truth.jsonl")).unwrap();

    std::fs::write(dir.join("profile.sql"), profile("killed")).unwrap();
    let args = run_args(&["--state-dir", "state", "--checkpoint-interval", "100ms"]);
    let tally = kill_loop(
        &dir,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        5,
    );
    let mut actual = lines(&dir.join("out.jsonl"));
    let (lost, duplicated) = lost_and_duplicated(&truth, &actual);
    eprintln!(
        "kafka tumble: {} kills ({} during a checkpoint write), {} windows, {lost} lost, {duplicated} duplicated",
        tally.kills,
        tally.mid_checkpoint,
        truth.len()
    );
    // Windows close in the same order; rows of one emission may not.
    truth.sort();
    actual.sort();
    assert_eq!((lost, duplicated), (0, 0));
    assert_eq!(actual, truth);
}

/// Runs `vigil run` in `dir` to its end: whether it succeeded, and what it logged.
fn run_to_end(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .current_dir(dir)
        .args(args)
        .env("VIGIL_LOG", "info")
        .output()
        .expect("vigil run starts");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_changed_rule_refuses_old_state_and_a_damaged_checkpoint_falls_back() {
    let dir = scratch("durable-plans");
    let profile = "CREATE SOURCE sensors (sensor_id TEXT, temperature DOUBLE, ts TIMESTAMP,
            WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
        WITH (connector = 'generator', kind = 'sensors', count = '2000000', keys = '5', seed = '1');
        CREATE SINK out WITH (connector = 'file', path = 'out.jsonl');";
    let counts = "CREATE SINK out AS SELECT window_start, count(*) AS n
        FROM TUMBLE(sensors, ts, INTERVAL '1' MINUTE) GROUP BY window_start, window_end;";
    let maxima = "CREATE SINK out AS SELECT window_start, max(temperature) AS hi
        FROM TUMBLE(sensors, ts, INTERVAL '1' MINUTE) GROUP BY window_start, window_end;";
    std::fs::write(dir.join("profile.sql"), profile).unwrap();
    std::fs::write(dir.join("rule.sql"), counts).unwrap();
    let args = [
        "run",
        "--state-dir",
        "state",
        "--checkpoint-interval",
        "20ms",
        "profile.sql",
        "rule.sql",
    ];
    let (ok, log) = run_to_end(&dir, &args);
    assert!(ok, "{log}");
    let first = lines(&dir.join("out.jsonl"));

    // The same rule again: it resumes at the end and adds nothing.
    let (ok, log) = run_to_end(&dir, &args);
    assert!(
        ok && log.contains("state restored from a checkpoint"),
        "{log}"
    );
    assert_eq!(lines(&dir.join("out.jsonl")), first);

    // Another rule under the same name: its state is not this one's.
    std::fs::write(dir.join("rule.sql"), maxima).unwrap();
    let (ok, log) = run_to_end(&dir, &args);
    assert!(!ok, "a changed plan started on old state: {log}");
    assert!(
        log.contains("was written by a different plan") && log.contains("--reset-state"),
        "{log}"
    );
    let mut reset = args.to_vec();
    reset.insert(1, "--reset-state");
    let (ok, log) = run_to_end(&dir, &reset);
    assert!(ok && log.contains("state reset"), "{log}");
    let maxima_out = lines(&dir.join("out.jsonl"));
    assert_eq!(maxima_out.len(), first.len());
    assert!(maxima_out[0].contains("\"hi\""), "{}", maxima_out[0]);

    // A checkpoint whose state file lost its tail: the one before is used, and said so.
    let state = dir.join("state");
    let newest = newest_epoch(&state).expect("a checkpoint");
    assert!(newest > 1, "one checkpoint only: none to fall back to");
    let damaged = walk(&state)
        .into_iter()
        .find(|f| f.ends_with(format!("{newest:020}-state.arrows")))
        .expect("its state file");
    let bytes = std::fs::read(&damaged).unwrap();
    std::fs::write(&damaged, &bytes[..bytes.len() / 2]).unwrap();
    let (ok, log) = run_to_end(&dir, &args);
    assert!(ok, "{log}");
    assert!(
        log.contains("checkpoint damaged: using the one before"),
        "the fallback is not reported: {log}"
    );
}

#[test]
fn a_second_process_on_the_same_state_takes_it_over_and_the_first_stops() {
    let dir = scratch("durable-fenced");
    let profile = "CREATE SOURCE sensors (sensor_id TEXT, temperature DOUBLE, ts TIMESTAMP)
        WITH (connector = 'generator', kind = 'sensors', rate = '2000', keys = '5', seed = '1');
        CREATE SINK out WITH (connector = 'stdout');";
    let rule =
        "CREATE SINK out AS SELECT sensor_id, count(*) AS n FROM sensors GROUP BY sensor_id;";
    std::fs::write(dir.join("profile.sql"), profile).unwrap();
    std::fs::write(dir.join("rule.sql"), rule).unwrap();
    let args = [
        "run",
        "--state-dir",
        "state",
        "--checkpoint-interval",
        "50ms",
        "profile.sql",
        "rule.sql",
    ];
    let state = dir.join("state");
    let mut first = start(&dir, &args);
    let deadline = Instant::now() + Duration::from_secs(60);
    while newest_epoch(&state).is_none() {
        assert!(
            Instant::now() < deadline,
            "the first run wrote no checkpoint"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut second = start(&dir, &args);
    // The first finds the state taken at its next checkpoint, and stops with an error.
    let status = loop {
        if let Some(status) = first.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the first run went on writing the state"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success());
    let log = std::fs::read_to_string(dir.join("runs.log")).unwrap();
    assert!(log.contains("took its state over"), "{log}");
    assert!(
        second.0.try_wait().unwrap().is_none(),
        "the second run stopped: {log}"
    );
}
