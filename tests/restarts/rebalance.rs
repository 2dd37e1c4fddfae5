//! One rule run by one, two, then three `vigil run` processes sharing a consumer group and a
//! state dir, and back to one: as processes join and leave, the group moves partitions,
//! and their window state moves with them (checkpointed by the process giving a partition
//! up, loaded by the one getting it). The output holds every window of every account once,
//! with its true count and sum, as one uninterrupted run writes them. With the third
//! process killed instead, its partitions' windows since its last checkpoint come twice
//! (the Kafka sink is at least once), each time with the true count.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use vigil_tests::kafka::Broker;

use super::durable::start_logging_to;
use super::{Run, scratch, text};

const ACCOUNTS: i64 = 12;
const PARTITIONS: i64 = 3;
const SECONDS: i64 = 240;
/// Accounts of the events that close the last windows, one per partition.
const LAST: i64 = 1000;

const PROFILE: &str = "CREATE SOURCE payments (account BIGINT, amount BIGINT, ts TIMESTAMP,
        WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
    WITH (connector = 'kafka', topic = 'payments', group_id = 'scaling',
          partitioned_by = 'account', idle_advance = 'none',
          properties.session.timeout.ms = '6000', properties.heartbeat.interval.ms = '500');
CREATE SINK per_account WITH (connector = 'kafka', topic = 'per_account');";

const RULE: &str = "CREATE SINK per_account AS
SELECT window_start, account, count(*) AS n, sum(amount) AS total
FROM TUMBLE(payments, ts, INTERVAL '10' SECOND)
GROUP BY window_start, window_end, account;";

/// Event `i`: account `i % ACCOUNTS` (on partition `account % PARTITIONS`, so the topic is
/// partitioned by account), one per account and second, in time order.
fn event(i: i64) -> (i32, String) {
    let account = i % ACCOUNTS;
    let second = 60 + i / ACCOUNTS;
    let value = format!(
        r#"{{"account": {account}, "amount": {i}, "ts": "{}"}}"#,
        text(second)
    );
    ((account % PARTITIONS) as i32, value)
}

/// (window start, account) to (count, sum), computed from the events.
fn truth() -> BTreeMap<(String, i64), (i64, i64)> {
    let mut windows = BTreeMap::new();
    for i in 0..ACCOUNTS * SECONDS {
        let second = 60 + i / ACCOUNTS;
        let entry = windows
            .entry((text(second.div_euclid(10) * 10), i % ACCOUNTS))
            .or_insert((0, 0));
        entry.0 += 1;
        entry.1 += i;
    }
    windows
}

/// Every (window start, account) row of the output with its (count, sum), repeats kept.
fn output(broker: &Broker) -> Vec<((String, i64), (i64, i64))> {
    let records = broker.read_topic("per_account");
    let rows = records.iter().map(|r| {
        let row: serde_json::Value = serde_json::from_str(r.value.as_deref().unwrap()).unwrap();
        let key = (
            row["window_start"].as_str().unwrap().to_string(),
            row["account"].as_i64().unwrap(),
        );
        (
            key,
            (row["n"].as_i64().unwrap(), row["total"].as_i64().unwrap()),
        )
    });
    rows.filter(|((_, account), _)| *account < LAST).collect()
}

/// A `vigil run` of the rule, logging to `<name>.log` in `dir`.
fn start(dir: &Path, broker: &Broker, name: &str) -> Run {
    let args = [
        "--brokers",
        &broker.address,
        "run",
        "--batch-size",
        "8",
        "--state-dir",
        "state",
        "--checkpoint-interval",
        "200ms",
        "profile.sql",
        "rule.sql",
    ];
    start_logging_to(dir, &format!("{name}.log"), &args, &[])
}

/// How often the process logging to `<name>.log` took on a non-empty set of partitions.
fn takeovers(dir: &Path, name: &str) -> usize {
    let log = std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default();
    log.lines()
        .filter(|l| l.contains("splits taken on") && !l.contains("splits=[]"))
        .count()
}

/// Polls `done` until it holds, failing after 120 s with `what`.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Stops a run as SIGTERM does, and waits for it to exit cleanly.
fn stop(mut run: Run) {
    let pid = run.0.id().to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(sent.success());
    let status = run.0.wait().unwrap();
    assert!(status.success(), "a stopped run failed: {status}");
}

/// What the output holds per (window start, account): every (count, sum) emitted.
type Emitted = BTreeMap<(String, i64), Vec<(i64, i64)>>;

/// How the third process leaves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Leave {
    /// SIGTERM: it checkpoints and hands its partitions over.
    Stop,
    /// SIGKILL, then another process takes its place (Tansu 0.6 drops a dead member from
    /// the group only when a rebalance finds it gone, not when its session times out).
    KillAndReplace,
}

#[test]
fn scaling_from_one_process_to_three_and_back_moves_state_with_the_partitions() {
    let emitted = one_to_three_and_back("rebalance", Leave::Stop);
    let duplicated: Vec<_> = emitted.iter().filter(|(_, v)| v.len() > 1).collect();
    assert!(
        duplicated.is_empty(),
        "windows emitted more than once: {duplicated:?}"
    );
    assert_true_and_complete(&emitted);
}

#[test]
fn a_process_killed_while_scaled_out_loses_no_window_and_miscounts_none() {
    let emitted = one_to_three_and_back("rebalance-kill", Leave::KillAndReplace);
    // Its successor reads again what came after its last checkpoint: at least once.
    let repeats: usize = emitted.values().map(|v| v.len() - 1).sum();
    eprintln!(
        "killed while scaled out: {} windows, {repeats} emitted again",
        emitted.len()
    );
    assert_true_and_complete(&emitted);
}

/// Every window of the truth is in `emitted`, each time with its true count and sum, and
/// nothing else is.
fn assert_true_and_complete(emitted: &Emitted) {
    let truth = truth();
    let wrong: Vec<_> = truth
        .iter()
        .filter(|(key, value)| {
            emitted
                .get(*key)
                .is_none_or(|values| values.iter().any(|v| v != *value))
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "{} windows missing or miscounted: {wrong:?}",
        wrong.len()
    );
    assert_eq!(emitted.len(), truth.len());
}

/// Runs the rule in one process, then two, then three, then two (the second stops),
/// then one (the third leaves as `leave` says), each set reading a fifth of the events;
/// returns what the output holds once every window closed.
fn one_to_three_and_back(name: &str, leave: Leave) -> Emitted {
    let broker = Broker::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(broker.create_topics(&["payments"], PARTITIONS as i32));
    runtime.block_on(broker.create_topics(&["per_account"], 1));
    let dir: PathBuf = scratch(name);
    std::fs::write(dir.join("profile.sql"), PROFILE).unwrap();
    std::fs::write(dir.join("rule.sql"), RULE).unwrap();

    // The events come in five parts, each read by another set of processes.
    let producer = broker.producer();
    let produce = |seconds: std::ops::Range<i64>| {
        let events = (seconds.start * ACCOUNTS..seconds.end * ACCOUNTS).map(event);
        runtime.block_on(send_all(&producer, events.collect()));
    };
    let part = SECONDS / 5;
    let broker_ref = &broker;
    let grown = |from: usize| move || output(broker_ref).len() > from;

    produce(0..part);
    let first = start(&dir, &broker, "first");
    wait_until("the first windows", grown(0));
    let second = start(&dir, &broker, "second");
    wait_until("the second process to take partitions", || {
        takeovers(&dir, "second") > 0
    });
    let seen = output(&broker).len();
    produce(part..2 * part);
    wait_until("windows read by two processes", grown(seen));
    let third = start(&dir, &broker, "third");
    wait_until("the third process to take partitions", || {
        takeovers(&dir, "third") > 0
    });
    let seen = output(&broker).len();
    produce(2 * part..3 * part);
    wait_until("windows read by three processes", grown(seen));
    let before = takeovers(&dir, "first") + takeovers(&dir, "third");
    stop(second);
    wait_until("the second's partitions to move", || {
        takeovers(&dir, "first") + takeovers(&dir, "third") > before
    });
    let seen = output(&broker).len();
    produce(3 * part..4 * part);
    wait_until("windows read by two processes again", grown(seen));
    let replacement = match leave {
        Leave::Stop => {
            stop(third);
            None
        }
        Leave::KillAndReplace => {
            third.kill();
            wait_until("the killed process's session to time out", || {
                group_members(&broker) == 1
            });
            let fourth = start(&dir, &broker, "fourth");
            wait_until("the fourth process to take partitions", || {
                takeovers(&dir, "fourth") > 0
            });
            Some(fourth)
        }
    };
    produce(4 * part..SECONDS);
    // Events far later on every partition close the last windows.
    let closing = (0..PARTITIONS).map(|p| {
        let value = format!(
            r#"{{"account": {}, "amount": 0, "ts": "{}"}}"#,
            LAST + p,
            text(60 + SECONDS + 3600)
        );
        (((LAST + p) % PARTITIONS) as i32, value)
    });
    runtime.block_on(send_all(&producer, closing.collect()));

    let windows = truth().len();
    wait_until("every window", || emitted(&broker).len() >= windows);
    stop(first);
    if let Some(fourth) = replacement {
        stop(fourth);
    }
    emitted(&broker)
}

/// How many members the rule's consumer group has, as the broker lists them.
fn group_members(broker: &Broker) -> usize {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = broker.config().create().expect("a client");
    let group = "scaling.per_account.payments";
    let listed = consumer.fetch_group_list(Some(group), Duration::from_secs(10));
    let groups = listed.expect("the group list");
    let members = groups.groups().iter().find(|g| g.name() == group);
    members.map_or(0, |g| g.members().len())
}

/// The output, by window and account.
fn emitted(broker: &Broker) -> Emitted {
    let mut emitted = Emitted::new();
    for (key, value) in output(broker) {
        emitted.entry(key).or_default().push(value);
    }
    emitted
}

/// Produces `(partition, value)` records in order, one record per batch (see `durable.rs`):
/// each is sent once the one before is acknowledged.
async fn send_all(producer: &rdkafka::producer::FutureProducer, records: Vec<(i32, String)>) {
    for (partition, value) in records {
        let record = rdkafka::producer::FutureRecord::<(), _>::to("payments")
            .partition(partition)
            .payload(&value);
        producer
            .send(record, Duration::from_secs(30))
            .await
            .unwrap_or_else(|(e, _)| panic!("producing: {e}"));
    }
}
