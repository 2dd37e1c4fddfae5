//! `vigil demo`: the rules of `queries/` on paced generators, alerts on the terminal.

use std::time::Duration;

use anyhow::Result;
use vigil_connectors::stdout::StdoutFormat;
use vigil_engine::Engine;

use crate::{execute_file, supervise};

/// The demo profile and the rules, compiled in so the demo needs no files.
const FILES: [(&str, &str); 5] = [
    (
        "queries/profiles/demo.sql",
        include_str!("../queries/profiles/demo.sql"),
    ),
    (
        "queries/sensor_threshold.sql",
        include_str!("../queries/sensor_threshold.sql"),
    ),
    (
        "queries/sensor_windows.sql",
        include_str!("../queries/sensor_windows.sql"),
    ),
    (
        "queries/payment_due.sql",
        include_str!("../queries/payment_due.sql"),
    ),
    (
        "queries/brute_force.sql",
        include_str!("../queries/brute_force.sql"),
    ),
];

pub async fn run(limit: Option<Duration>) -> Result<()> {
    println!(
        "Vigil demo: the rules in queries/ on generated events (profile queries/profiles/demo.sql)."
    );
    println!("  sensor_threshold  alerts on readings over thresholds, as they arrive");
    println!(
        "  sensor_windows    per-sensor stats, 1-minute tumbling and 5-minute hopping windows"
    );
    println!("  payment_due       accounts owing more than 150 (changelog: +I -U +U -D)");
    println!("  brute_force       5+ failed logins per user in a minute, every 10 s");
    println!("Windows close 5 s after they end (the watermark delay). Ctrl-C stops.\n");
    let mut engine = Engine::new(vigil_connectors::registry());
    let mut queries = Vec::new();
    for (file, sql) in FILES {
        queries.extend(execute_file(&mut engine, file, sql, StdoutFormat::Table).await?);
    }
    supervise(queries, limit).await
}
