//! End-to-end throughput and peak memory of the product's rules.
//!
//! `cargo bench --bench throughput` runs every case in its own process (so peak memory is the
//! case's own) and prints a table. `VIGIL_BENCH_EVENTS` sets the event count (default 10M);
//! `VIGIL_BENCH_CASES` (e.g. `Q4,Q5`) and `VIGIL_BENCH_INPUTS` (e.g. `file`) pick rows.
//!
//! Cases: Q1 the sensor threshold rule; Q2 1-minute tumbling count/avg/max per sensor over
//! 1,000 sensors; Q3 5-minute windows sliding by 1 minute; Q4 payment due over 100,000
//! accounts; Q5 1-hour windows sliding by 1 minute; Q6 the temperature z-score rule (an OVER
//! window over 10 minutes); Q7 each 10-second window's peak readings (Nexmark q7's window
//! join); Q8 an interval join of a sensor's readings within 2 s; Q9 Nexmark q5 (hot auctions
//! per sliding window) over bids; Q10 Nexmark q8 (a window join of persons and auctions);
//! Q11 a join of two changelogs (each account's payments and dues); Q12 an updating Top-N
//! (the ten accounts owing most); Q13 the rising-temperature event pattern (MATCH_RECOGNIZE
//! per sensor); Q14 1-hour tumbling windows per sensor emitting early every minute of event
//! time; Q15 the same windows emitting once, at their end.
//! Inputs come from the `generator`
//! connector: a pool of batches is made once and replayed with event time shifted forward,
//! so the clock never goes back. Each case reads:
//!
//! - `arrow`: the batches, pushed through the synchronous graph executor on one thread;
//! - `json`: the same as JSON lines held in memory, decoded by the bench thread;
//! - `file`: the same JSON lines written once to `target/bench-data/`, read by the file
//!   source of a query the engine runs as `vigil run` does, results to a file. These files
//!   are the input `benches/duckdb_peer.py` times DuckDB on. With `VIGIL_BENCH_STATE=10s`
//!   (any interval) the file cases checkpoint to `target/bench-data/state-*` at that
//!   interval, as `vigil run --state-dir` does (input `file+state`), and print the last
//!   checkpoint's size and duration.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{ArrayRef, AsArray, RecordBatch, TimestampNanosecondArray};
use datafusion::arrow::compute::kernels::arity::unary;
use datafusion::arrow::datatypes::TimestampNanosecondType;
use vigil_connectors::format::{JsonDecoder, encode_json_lines};
use vigil_connectors::generator::{GeneratorConfig, GeneratorSource};
use vigil_engine::connector::{Source, SourceEvent};
use vigil_engine::operators::{MAIN_PORT, Message};
use vigil_engine::runtime::{GraphExecutor, OutputPort};
use vigil_engine::sql::{Options, Statement, StreamParser};
use vigil_engine::{ChangeBatch, Engine, EngineConfig, StatementOutcome};

const BATCH: usize = 8192;
const POOL_BATCHES: usize = 64;
const STEP_MS: i64 = 10;

const PROFILE: &str = "
CREATE SOURCE sensors (sensor_id TEXT, temperature DOUBLE, humidity DOUBLE, ts TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '5' SECOND) WITH (connector = 'memory');
CREATE SOURCE payments (account_id BIGINT, amount DOUBLE, ts TIMESTAMP) WITH (connector = 'memory');
CREATE SOURCE dues (account_id BIGINT, amount DOUBLE, ts TIMESTAMP) WITH (connector = 'memory');
CREATE SINK sensor_alerts WITH (connector = 'memory');
CREATE SINK sensor_stats_1m WITH (connector = 'memory');
CREATE SINK sensor_stats_5m WITH (connector = 'memory');
CREATE SINK sensor_stats_1h WITH (connector = 'memory');
CREATE SINK sensor_stats_hourly WITH (connector = 'memory');
CREATE SINK rising_temperature_alerts WITH (connector = 'memory');
CREATE SINK payment_due_alerts WITH (connector = 'memory');
CREATE SINK temperature_zscore_alerts WITH (connector = 'memory');
CREATE SINK sensor_peaks WITH (connector = 'memory');
CREATE SINK sensor_pairs WITH (connector = 'memory');
CREATE SOURCE bids (auction BIGINT, bidder BIGINT, price BIGINT, ts TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '5' SECOND) WITH (connector = 'memory');
CREATE SOURCE persons (id BIGINT, name TEXT, city TEXT, ts TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '5' SECOND) WITH (connector = 'memory');
CREATE SOURCE auctions (id BIGINT, seller BIGINT, category BIGINT, ts TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '5' SECOND) WITH (connector = 'memory');
CREATE SINK hot_items WITH (connector = 'memory');
CREATE SINK new_sellers WITH (connector = 'memory');
CREATE SINK account_positions WITH (connector = 'memory');
CREATE SINK top_debtors WITH (connector = 'memory');
";

/// The same sources and sinks over files: `{data}` is the input directory, `{sensors}` and
/// `{ledger}` the event counts in the file names, `{out}` the output file.
const FILE_PROFILE: &str = "
CREATE SOURCE sensors (sensor_id TEXT, temperature DOUBLE, humidity DOUBLE, ts TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
    WITH (connector = 'file', path = '{data}/sensors-{sensors}.jsonl');
CREATE SOURCE payments (account_id BIGINT, amount DOUBLE, ts TIMESTAMP)
    WITH (connector = 'file', path = '{data}/payments-{ledger}.jsonl');
CREATE SOURCE dues (account_id BIGINT, amount DOUBLE, ts TIMESTAMP)
    WITH (connector = 'file', path = '{data}/dues-{ledger}.jsonl');
CREATE SOURCE bids (auction BIGINT, bidder BIGINT, price BIGINT, ts TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
    WITH (connector = 'file', path = '{data}/bids-{sensors}.jsonl');
CREATE SOURCE persons (id BIGINT, name TEXT, city TEXT, ts TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
    WITH (connector = 'file', path = '{data}/persons-{ledger}.jsonl',
        max_drift = '30s');
CREATE SOURCE auctions (id BIGINT, seller BIGINT, category BIGINT, ts TIMESTAMP,
    WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
    WITH (connector = 'file', path = '{data}/auctions-{ledger}.jsonl',
        max_drift = '30s');
CREATE SINK {sink} WITH (connector = 'file', path = '{out}');
";

const HOP_1H: &str = "CREATE SINK sensor_stats_1h AS
SELECT window_start, window_end, sensor_id, count(*) AS readings,
       avg(temperature) AS avg_temperature
FROM HOP(sensors, ts, INTERVAL '1' MINUTE, INTERVAL '1' HOUR)
GROUP BY window_start, window_end, sensor_id;";

/// Hourly statistics per sensor, emitted once (Q15) or early every minute too (Q14).
macro_rules! hourly_stats {
    () => {
        "CREATE SINK sensor_stats_hourly AS
SELECT window_start, window_end, sensor_id, count(*) AS readings,
       avg(temperature) AS avg_temperature, max(temperature) AS max_temperature
FROM TUMBLE(sensors, ts, INTERVAL '1' HOUR)
GROUP BY window_start, window_end, sensor_id"
    };
}
const TUMBLE_1H_ONCE: &str = concat!(hourly_stats!(), ";");
const TUMBLE_1H_EARLY: &str = concat!(hourly_stats!(), " EMIT EARLY EVERY INTERVAL '1' MINUTE;");

/// Nexmark q7's shape: each 10-second window's readings at the window's peak temperature,
/// a window's rows joined with its own aggregate.
const PEAKS: &str = "CREATE SINK sensor_peaks AS
SELECT r.sensor_id, r.temperature, r.ts
FROM TUMBLE(sensors, ts, INTERVAL '10' SECOND) r
JOIN (SELECT window_start, window_end, max(temperature) AS peak
      FROM TUMBLE(sensors, ts, INTERVAL '10' SECOND) GROUP BY window_start, window_end) m
  ON r.window_start = m.window_start AND r.window_end = m.window_end
  AND r.temperature = m.peak;";

/// An interval join: readings of one sensor within 2 s of each other, both over 30.
const PAIRS: &str = "CREATE SINK sensor_pairs AS
SELECT a.sensor_id, a.ts AS first_ts, b.ts AS second_ts
FROM sensors a JOIN sensors b
  ON a.sensor_id = b.sensor_id AND b.ts > a.ts AND b.ts <= a.ts + INTERVAL '2' SECOND
  AND a.temperature > 30 AND b.temperature > 30;";

/// Nexmark q5: the auctions with the most bids in each 10-second window sliding by 2 s.
const HOT_ITEMS: &str = "CREATE SINK hot_items AS
SELECT ab.starttime, ab.auction, ab.num
FROM (SELECT auction, count(*) AS num, window_start AS starttime, window_end AS endtime
      FROM HOP(bids, ts, INTERVAL '2' SECOND, INTERVAL '10' SECOND)
      GROUP BY auction, window_start, window_end) ab
JOIN (SELECT max(c.num) AS maxn, c.starttime, c.endtime
      FROM (SELECT count(*) AS num, window_start AS starttime, window_end AS endtime
            FROM HOP(bids, ts, INTERVAL '2' SECOND, INTERVAL '10' SECOND)
            GROUP BY auction, window_start, window_end) c
      GROUP BY c.starttime, c.endtime) mb
  ON ab.starttime = mb.starttime AND ab.endtime = mb.endtime AND ab.num >= mb.maxn;";

/// Nexmark q8: people who opened an auction in the 10-second window they registered in.
const NEW_SELLERS: &str = "CREATE SINK new_sellers AS
SELECT p.id, p.name, p.window_start
FROM (SELECT id, name, window_start, window_end FROM TUMBLE(persons, ts, INTERVAL '10' SECOND)
      GROUP BY id, name, window_start, window_end) p
JOIN (SELECT seller, window_start, window_end FROM TUMBLE(auctions, ts, INTERVAL '10' SECOND)
      GROUP BY seller, window_start, window_end) a
  ON p.id = a.seller AND p.window_start = a.window_start AND p.window_end = a.window_end;";

/// A join of two changelogs keyed by the join key: each account's payments and dues.
const POSITIONS: &str = "CREATE SINK account_positions AS
SELECT p.account_id, p.paid, d.due
FROM (SELECT account_id, sum(amount) AS paid FROM payments GROUP BY account_id) p
JOIN (SELECT account_id, sum(amount) AS due FROM dues GROUP BY account_id) d
  ON p.account_id = d.account_id;";

/// An updating Top-N: the ten accounts owing most, kept current.
const TOP_DEBTORS: &str = "CREATE VIEW owed AS
SELECT account_id, sum(amount) AS owed
FROM (SELECT account_id, amount FROM dues UNION ALL SELECT account_id, -amount FROM payments)
GROUP BY account_id;
CREATE SINK top_debtors AS
SELECT account_id, owed, r
FROM (SELECT account_id, owed, ROW_NUMBER() OVER (ORDER BY owed DESC) AS r FROM owed)
WHERE r <= 10;";

struct Case {
    name: &'static str,
    rule: &'static str,
    sink: &'static str,
    /// (source, generator options) fed in turn.
    inputs: &'static [(&'static str, &'static str)],
}

const CASES: [Case; 15] = [
    Case {
        name: "Q1 threshold",
        rule: include_str!("../queries/sensor_threshold.sql"),
        sink: "sensor_alerts",
        inputs: &[("sensors", "sensors:1000")],
    },
    Case {
        name: "Q2 tumble 1m",
        rule: include_str!("../queries/sensor_windows.sql"),
        sink: "sensor_stats_1m",
        inputs: &[("sensors", "sensors:1000")],
    },
    Case {
        name: "Q3 hop 5m/1m",
        rule: include_str!("../queries/sensor_windows.sql"),
        sink: "sensor_stats_5m",
        inputs: &[("sensors", "sensors:1000")],
    },
    Case {
        name: "Q4 payment due",
        rule: include_str!("../queries/payment_due.sql"),
        sink: "payment_due_alerts",
        inputs: &[("payments", "payments:100000"), ("dues", "dues:100000")],
    },
    Case {
        name: "Q5 hop 1h/1m",
        rule: HOP_1H,
        sink: "sensor_stats_1h",
        inputs: &[("sensors", "sensors:1000")],
    },
    Case {
        name: "Q6 zscore OVER",
        rule: include_str!("../queries/temperature_zscore.sql"),
        sink: "temperature_zscore_alerts",
        inputs: &[("sensors", "sensors:1000")],
    },
    Case {
        name: "Q7 window peaks",
        rule: PEAKS,
        sink: "sensor_peaks",
        inputs: &[("sensors", "sensors:1000")],
    },
    Case {
        name: "Q8 interval join",
        rule: PAIRS,
        sink: "sensor_pairs",
        inputs: &[("sensors", "sensors:1000")],
    },
    Case {
        name: "Q9 nexmark q5",
        rule: HOT_ITEMS,
        sink: "hot_items",
        inputs: &[("bids", "bids:1000")],
    },
    Case {
        name: "Q10 nexmark q8",
        rule: NEW_SELLERS,
        sink: "new_sellers",
        inputs: &[("persons", "persons:1000"), ("auctions", "auctions:1000")],
    },
    Case {
        name: "Q11 changelog join",
        rule: POSITIONS,
        sink: "account_positions",
        inputs: &[("payments", "payments:100000"), ("dues", "dues:100000")],
    },
    Case {
        name: "Q12 updating top-N",
        rule: TOP_DEBTORS,
        sink: "top_debtors",
        inputs: &[("payments", "payments:100000"), ("dues", "dues:100000")],
    },
    Case {
        name: "Q13 rising pattern",
        rule: include_str!("../queries/rising_temperature.sql"),
        sink: "rising_temperature_alerts",
        inputs: &[("sensors", "sensors:1000")],
    },
    Case {
        name: "Q14 tumble 1h early",
        rule: TUMBLE_1H_EARLY,
        sink: "sensor_stats_hourly",
        inputs: &[("sensors", "sensors:1000")],
    },
    Case {
        name: "Q15 tumble 1h",
        rule: TUMBLE_1H_ONCE,
        sink: "sensor_stats_hourly",
        inputs: &[("sensors", "sensors:1000")],
    },
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(pos) = args.iter().position(|a| a == "--case") {
        let case = &CASES[args[pos + 1].parse::<usize>().expect("case index")];
        let events: u64 = args[pos + 3].parse().expect("event count");
        match args[pos + 2].as_str() {
            "file" => run_file_case(case, events),
            input => run_case(case, input == "json", events),
        }
        return;
    }
    if let Some(pos) = args.iter().position(|a| a == "--generate") {
        let (spec, salt, events, path) = (
            &args[pos + 1],
            &args[pos + 2],
            &args[pos + 3],
            &args[pos + 4],
        );
        generate(
            spec,
            salt.parse().expect("salt"),
            events.parse().expect("count"),
            path,
        );
        return;
    }
    let events: u64 = std::env::var("VIGIL_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let picked = |var: &str, name: &str| {
        std::env::var(var)
            // A case by its number (Q1 is not Q10), an input by its name.
            .map(|v| {
                v.split(',')
                    .any(|p| name.split(' ').next() == Some(p.trim()))
            })
            .unwrap_or(true)
    };
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    println!(
        "Vigil throughput, {} cores: {cpu}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:<16} {:<6} {:>12} {:>10} {:>14} {:>12} {:>10}",
        "case", "input", "events", "seconds", "events/s", "peak RSS MB", "out rows"
    );
    let mut runs: Vec<(usize, &str, u64)> = Vec::new();
    for (case, c) in CASES.iter().enumerate() {
        for input in ["arrow", "json", "file"] {
            if picked("VIGIL_BENCH_CASES", c.name) && picked("VIGIL_BENCH_INPUTS", input) {
                runs.push((case, input, events));
            }
        }
    }
    // Memory must stay flat as the stream grows: Q2 from JSON at a tenth of the events.
    if picked("VIGIL_BENCH_CASES", CASES[1].name) && picked("VIGIL_BENCH_INPUTS", "json") {
        runs.push((1, "json", events / 10));
    }
    for (case, input, n) in runs {
        if input == "file" {
            write_input_files(&CASES[case], n);
        }
        child(&["--case", &case.to_string(), input, &n.to_string()]);
    }
}

/// Runs this bench binary with `args`, printing what it prints.
fn child(args: &[&str]) {
    let me = std::env::current_exe().expect("own path");
    let out = Command::new(&me).args(args).output().expect("bench child");
    print!("{}", String::from_utf8_lossy(&out.stdout));
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    }
}

/// Where the file inputs and outputs live.
fn data_dir() -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let dir = PathBuf::from(target).join("bench-data");
    std::fs::create_dir_all(&dir).expect("bench data directory");
    std::fs::canonicalize(dir).expect("bench data path")
}

/// The input file of `source` for a run of `events` events, and its event count.
fn input_file(case: &Case, source: &str, events: u64) -> (PathBuf, u64) {
    let per_source = events / case.inputs.len() as u64;
    (
        data_dir().join(format!("{source}-{per_source}.jsonl")),
        per_source,
    )
}

/// Writes the case's input files, in a child process, unless they exist.
fn write_input_files(case: &Case, events: u64) {
    for (salt, (source, spec)) in case.inputs.iter().enumerate() {
        let (path, count) = input_file(case, source, events);
        if !path.exists() {
            let path = path.display().to_string();
            child(&[
                "--generate",
                spec,
                &salt.to_string(),
                &count.to_string(),
                &path,
            ]);
        }
    }
}

/// Writes `events` events of the pool for `spec` as JSON lines to `path`.
fn generate(spec: &str, salt: u64, events: u64, path: &str) {
    let pool = pool(spec, salt);
    let span = (BATCH * POOL_BATCHES) as i64 * STEP_MS * 1_000_000;
    let partial = format!("{path}.partial");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&partial).expect("create"));
    let mut written = 0u64;
    'cycles: for cycle in 0.. {
        for batch in &pool {
            let left = (events - written) as usize;
            if left == 0 {
                break 'cycles;
            }
            let batch = shifted(batch, cycle * span);
            let batch = batch.slice(0, left.min(batch.num_rows()));
            written += batch.num_rows() as u64;
            file.write_all(&encode_json_lines(&batch).expect("encode"))
                .expect("write");
        }
    }
    file.flush().expect("flush");
    drop(file);
    std::fs::rename(&partial, path).expect("rename");
}

/// Runs the case as `vigil run` would: file sources, the rule's query, a file sink.
fn run_file_case(case: &Case, events: u64) {
    let out = data_dir().join(format!("out-{}.jsonl", case.sink));
    let _ = std::fs::remove_file(&out);
    let ledger = events / 2;
    let profile = FILE_PROFILE
        .replace("{data}", &data_dir().display().to_string())
        .replace("{sensors}", &events.to_string())
        .replace("{ledger}", &ledger.to_string())
        .replace("{sink}", case.sink)
        .replace("{out}", &out.display().to_string());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let state = bench_state(case);
    let label = if state.is_some() {
        "file+state"
    } else {
        "file"
    };
    let mut engine = bench_engine(true, state);
    let started = Instant::now();
    let (rows_out, checkpoint) = runtime.block_on(async {
        engine.execute(&profile).await.expect("profile");
        let mut metrics = None;
        for statement in StreamParser::parse_sql(case.rule).expect("rule parses") {
            let other_sink = matches!(&statement.statement,
                Statement::CreateSink(s) if s.query.is_some() && s.name.value != case.sink);
            if other_sink {
                continue;
            }
            if let StatementOutcome::SinkStarted { query, .. } = engine
                .execute_statement(statement)
                .await
                .expect("rule runs")
            {
                let m = Arc::clone(query.metrics());
                query.wait().await.expect("the query finishes");
                metrics = Some(m);
            }
        }
        let metrics = metrics.expect("the case's sink");
        (metrics.snapshot().rows_out, metrics.last_checkpoint())
    });
    let seconds = started.elapsed().as_secs_f64();
    let fed = if case.inputs.len() == 2 {
        ledger * 2
    } else {
        events
    };
    print_row(case, label, fed, seconds, rows_out);
    if let Some(c) = checkpoint {
        println!(
            "{:<16} last checkpoint: epoch {}, {} bytes, {} ms",
            "", c.epoch, c.bytes, c.duration_ms
        );
    }
}

/// `VIGIL_BENCH_STATE=<interval>`: checkpoints to a fresh state dir of the case's own.
fn bench_state(case: &Case) -> Option<vigil_engine::checkpoint::StateConfig> {
    let interval = std::env::var("VIGIL_BENCH_STATE").ok()?;
    let interval =
        vigil_engine::sql::parse_duration(&interval).expect("VIGIL_BENCH_STATE: an interval");
    let dir = data_dir().join(format!("state-{}", case.sink));
    let _ = std::fs::remove_dir_all(&dir);
    let location = vigil_engine::checkpoint::StateLocation::local(&dir).expect("state dir");
    Some(vigil_engine::checkpoint::StateConfig {
        interval,
        ..vigil_engine::checkpoint::StateConfig::new(location)
    })
}

fn print_row(case: &Case, input: &str, fed: u64, seconds: f64, rows_out: u64) {
    println!(
        "{:<16} {:<6} {:>12} {:>10.2} {:>14.0} {:>12.1} {:>10}",
        case.name,
        input,
        fed,
        seconds,
        fed as f64 / seconds,
        peak_rss_mb(),
        rows_out
    );
}

/// Generates the pool of input batches for one source.
fn pool(spec: &str, salt: u64) -> Vec<RecordBatch> {
    let (kind, keys) = spec.split_once(':').expect("kind:keys");
    let options = Options::new([
        ("kind", kind.to_string()),
        ("keys", keys.to_string()),
        ("seed", (7 + salt).to_string()),
        ("step_ms", STEP_MS.to_string()),
        ("disorder_ms", "2000".to_string()),
        ("count", (BATCH * POOL_BATCHES).to_string()),
    ]);
    let config = GeneratorConfig::from_options(&options).expect("bench options");
    let mut source =
        GeneratorSource::try_new(config.clone(), config.kind.schema(), BATCH).expect("generator");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut batches = Vec::new();
    while let SourceEvent::Batch(b) = runtime
        .block_on(source.next_batch(Duration::ZERO))
        .expect("generate")
    {
        batches.push(b);
    }
    batches
}

/// The batch with its `ts` column (the last) moved forward by `shift` nanoseconds.
fn shifted(batch: &RecordBatch, shift: i64) -> RecordBatch {
    let ts_index = batch.num_columns() - 1;
    let ts = batch
        .column(ts_index)
        .as_primitive::<TimestampNanosecondType>();
    let moved: TimestampNanosecondArray = unary(ts, |t| t + shift);
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    columns[ts_index] = Arc::new(moved);
    RecordBatch::try_new(batch.schema(), columns).expect("same schema")
}

/// An engine cutting batches of `BATCH` rows; `start_queries` as `vigil run` (true) or to
/// plan graphs the bench drives itself (false).
fn bench_engine(
    start_queries: bool,
    state: Option<vigil_engine::checkpoint::StateConfig>,
) -> Engine {
    Engine::with_config(
        vigil_connectors::registry(),
        EngineConfig {
            batch_size: BATCH,
            start_queries,
            state,
            ..EngineConfig::default()
        },
    )
}

fn run_case(case: &Case, json: bool, events: u64) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut engine = bench_engine(false, None);
    let mut graph = None;
    runtime.block_on(async {
        engine.execute(PROFILE).await.expect("profile");
        for statement in StreamParser::parse_sql(case.rule).expect("rule parses") {
            if let StatementOutcome::SinkPlanned { name, query } = engine
                .execute_statement(statement)
                .await
                .expect("rule plans")
                && name == case.sink
            {
                graph = Some(query.graph);
            }
        }
    });
    let graph = graph.expect("the case's sink");
    let source_names: Vec<String> = graph.sources.iter().map(|s| s.def.name.clone()).collect();
    let pools: Vec<Vec<RecordBatch>> = case
        .inputs
        .iter()
        .enumerate()
        .map(|(i, (_, spec))| pool(spec, i as u64))
        .collect();
    let encoded: Vec<Vec<Vec<u8>>> = if json {
        pools
            .iter()
            .map(|p| {
                p.iter()
                    .map(|b| encode_json_lines(b).expect("encode"))
                    .collect()
            })
            .collect()
    } else {
        Vec::new()
    };
    let decoders: Vec<JsonDecoder> = pools
        .iter()
        .map(|p| JsonDecoder::new(p[0].schema(), BATCH))
        .collect();
    let span = (BATCH * POOL_BATCHES) as i64 * STEP_MS * 1_000_000;

    let result = OutputPort {
        node: graph.output,
        port: MAIN_PORT,
    };
    let mut executor = GraphExecutor::new(graph, vec![result]);
    let mut rows_out = 0u64;
    let mut fed = 0u64;
    let started = Instant::now();
    let mut cycle = 0i64;
    'outer: loop {
        for b in 0..POOL_BATCHES {
            for (input, (source, _)) in case.inputs.iter().enumerate() {
                if fed >= events {
                    break 'outer;
                }
                let batch = if json {
                    let (mut batches, bad) =
                        decoders[input].decode(&encoded[input][b]).expect("decode");
                    assert!(bad.is_empty());
                    batches.remove(0)
                } else {
                    pools[input][b].clone()
                };
                let batch = shifted(&batch, cycle * span);
                fed += batch.num_rows() as u64;
                for (i, name) in source_names.iter().enumerate() {
                    if name == source {
                        for (_, message) in executor
                            .push_source(i, Message::Batch(ChangeBatch::inserts(batch.clone())))
                            .expect("run")
                        {
                            if let Message::Batch(out) = message {
                                rows_out += out.num_rows() as u64;
                            }
                        }
                    }
                }
            }
        }
        cycle += 1;
    }
    for i in 0..source_names.len() {
        for (_, message) in executor.end_source(i).expect("end") {
            if let Message::Batch(out) = message {
                rows_out += out.num_rows() as u64;
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    print_row(
        case,
        if json { "json" } else { "arrow" },
        fed,
        seconds,
        rows_out,
    );
}

/// Peak resident memory of this process (Linux), in MB.
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}
