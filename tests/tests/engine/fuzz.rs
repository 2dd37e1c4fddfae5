//! Generated statements, valid and not, deep and long, through the planning-only engine
//! `vigil check` uses: every one gets an answer, none a panic or an abort.

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use vigil_engine::{Engine, EngineConfig};
use vigil_tests::fuzz::{SqlGen, seeds};
use vigil_tests::workspace_root;

/// Statements per seed, and the most time a seed may take (debug builds are slow).
const STATEMENTS: usize = 2000;
const BUDGET: Duration = Duration::from_secs(20);

fn rules() -> Vec<String> {
    let dir = workspace_root().join("queries");
    let mut rules = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "sql") {
            let text = std::fs::read_to_string(&path).unwrap();
            rules.extend(
                text.split(';')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from),
            );
        }
    }
    rules
}

#[tokio::test(flavor = "multi_thread")]
async fn generated_statements_never_panic_or_abort_the_planner() {
    let profile =
        std::fs::read_to_string(workspace_root().join("queries/profiles/demo.sql")).unwrap();
    for seed in seeds() {
        let mut engine = Engine::with_config(
            vigil_connectors::registry(),
            EngineConfig {
                start_queries: false,
                ..EngineConfig::default()
            },
        );
        engine.execute(&profile).await.unwrap();
        let mut statements = SqlGen::new(seed, rules());
        let started = Instant::now();
        let (mut planned, mut refused) = (0, 0);
        for _ in 0..STATEMENTS {
            if started.elapsed() > BUDGET {
                break;
            }
            let sql = statements.statement();
            let outcome = AssertUnwindSafe(engine.execute(&sql)).catch_unwind().await;
            match outcome {
                Ok(Ok(_)) => planned += 1,
                Ok(Err(e)) => {
                    refused += 1;
                    let message = e.to_string();
                    if std::env::var_os("VIGIL_FUZZ_SHOW").is_some() {
                        eprintln!("{message}");
                    }
                    assert!(
                        !message.contains("bug in DataFusion") && !message.is_empty(),
                        "seed {seed}: {sql}\n{message}"
                    );
                }
                Err(_) => panic!("seed {seed}: the planner panicked on: {sql}"),
            }
        }
        eprintln!("seed {seed}: {planned} planned, {refused} refused");
        assert!(
            planned > 0 && refused > 0,
            "seed {seed}: the generator covers both"
        );
    }
}
