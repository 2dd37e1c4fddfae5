//! `vigil`: run, explain and demo anomaly rules written in SQL.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use vigil_connectors::generator::Kind;
use vigil_connectors::kafka::KafkaSettings;
use vigil_connectors::stdout::{StdoutFormat, StdoutSink, stdout_closed};
use vigil_engine::checkpoint::{StateConfig, StateLocation};
use vigil_engine::runtime::RunningQuery;
use vigil_engine::sql::{Statement, StreamParser};
use vigil_engine::{Engine, EngineConfig, StatementOutcome};

/// `println!` that treats a closed standard output as the reader having had enough
/// (`vigil demo | head`): nothing more is printed and the command winds down quietly.
macro_rules! say {
    ($($arg:tt)*) => {{
        let line = format!("{}\n", format_args!($($arg)*));
        // Any other failure to print is as unrecoverable here as it is for println!.
        vigil_connectors::stdout::print(line.as_bytes()).expect("printing to stdout");
    }};
}

mod client;
mod demo;
mod deploy;
mod produce;
mod rules;
mod serve;

#[derive(Parser)]
#[command(
    name = "vigil",
    version,
    about = "Streaming SQL engine for anomaly rules"
)]
struct Cli {
    /// Kafka brokers (host:port,...); default: VIGIL_KAFKA_BROKERS, else localhost:9092.
    #[arg(long, global = true)]
    brokers: Option<String>,
    /// Log lines on stderr as text or as JSON objects; which levels come from VIGIL_LOG,
    /// else RUST_LOG (default: warn).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "VIGIL_LOG_FORMAT"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// How log lines are written.
#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines, coloured on a terminal.
    Text,
    /// One JSON object per line.
    Json,
}

/// Logs to stderr at the levels VIGIL_LOG (else RUST_LOG) names, warnings by default;
/// colours only on a terminal.
fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = ["VIGIL_LOG", "RUST_LOG"]
        .into_iter()
        .find_map(|name| EnvFilter::try_from_env(name).ok())
        .unwrap_or_else(|| EnvFilter::new("warn"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
}

/// Durable state: where queries writing to sinks checkpoint, and how often.
#[derive(clap::Args)]
struct StateArgs {
    /// Checkpoint every query that writes to a sink here and resume from it after a restart
    /// (a directory). Without it, state lives in memory only.
    #[arg(long, env = "VIGIL_STATE_DIR", value_name = "DIR")]
    state_dir: Option<String>,
    /// Time between two checkpoints of a query: 10s, 500ms, 2m.
    #[arg(long, default_value = "10s", value_parser = parse_interval, value_name = "DURATION")]
    checkpoint_interval: Duration,
    /// Delete the queries' checkpoints and read their sources from their configured start.
    #[arg(long, requires = "state_dir")]
    reset_state: bool,
}

impl StateArgs {
    /// The engine's state settings; `None` without a state dir.
    fn config(&self) -> Result<Option<StateConfig>> {
        let Some(dir) = &self.state_dir else {
            return Ok(None);
        };
        let location = StateLocation::parse(dir)?;
        Ok(Some(StateConfig {
            location,
            interval: self.checkpoint_interval,
            reset: self.reset_state,
        }))
    }
}

fn parse_interval(text: &str) -> std::result::Result<Duration, String> {
    vigil_engine::sql::parse_duration(text)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("'{text}' is not a duration such as 10s, 500ms or 2m"))
}

#[derive(Subcommand)]
enum Command {
    /// Run SQL files in order: declare sources and sinks, start every rule, stream until the
    /// sources end or Ctrl-C.
    Run {
        /// SQL files; put source and sink declarations (a profile) before the rules.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print bare SELECT results as JSON lines instead of tables.
        #[arg(long)]
        json: bool,
        /// Rows per batch read from sources.
        #[arg(long, default_value_t = 8192)]
        batch_size: usize,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Print the operator graph of every query in the files, without running anything; or,
    /// with --analyze, a running query's operators with live counters from a server.
    Explain {
        /// SQL files, profile first.
        #[arg(required_unless_present = "analyze")]
        files: Vec<PathBuf>,
        /// EXPLAIN ANALYZE the query with this id on --server.
        #[arg(
            long,
            value_name = "QUERY_ID",
            requires = "server",
            conflicts_with = "files"
        )]
        analyze: Option<u64>,
        /// The Vigil server (http://host:port); its token comes from VIGIL_TOKEN.
        #[arg(long, value_name = "URL")]
        server: Option<String>,
    },
    /// Run the rules shipped in queries/ on generated events and print alerts as they fire.
    Demo {
        /// Stop after this many seconds (default: run until Ctrl-C).
        #[arg(long)]
        seconds: Option<u64>,
        /// Run against Kafka: generators feed topics, the rules read them, alert topics are
        /// printed.
        #[arg(long)]
        kafka: bool,
    },
    /// Interactive SQL: declare sources, try queries and watch rows arrive. Piped input
    /// (`vigil repl < file.sql`) runs as a script and stops at the first error.
    Repl {
        /// Print SELECT rows as JSON lines instead of tables.
        #[arg(long)]
        json: bool,
        /// SQL files to run first, e.g. a profile declaring sources and sinks.
        #[arg(long = "init")]
        init: Vec<PathBuf>,
        /// A rules directory (such as queries/): loads its profile's sources and sinks and
        /// its rules' views, so the rules' sources can be queried here.
        #[arg(long)]
        queries: Option<PathBuf>,
        /// The profile of --queries to load (default: kafka with --kafka, else demo).
        #[arg(long, requires = "queries")]
        profile: Option<String>,
        /// Kafka brokers for live topics (host:port,...); same as --brokers.
        #[arg(long, value_name = "BROKERS")]
        kafka: Option<String>,
    },
    /// Run Vigil as a service: an HTTP API to submit SQL, watch results and manage queries.
    /// Settings also come from VIGIL_BIND, VIGIL_TOKEN, VIGIL_MAX_QUERIES,
    /// VIGIL_MAX_BODY_BYTES, VIGIL_DATA_DIR, VIGIL_TRANSIENT_GRACE_SECONDS and
    /// VIGIL_TRANSIENT_RETENTION_SECONDS.
    Serve {
        /// Address to listen on (default 127.0.0.1:8080). A non-loopback address needs
        /// VIGIL_TOKEN.
        #[arg(long)]
        bind: Option<std::net::SocketAddr>,
        /// A rules directory to deploy at start: its profile, then every rule file.
        #[arg(long)]
        queries: Option<PathBuf>,
        /// The profile of --queries (default: demo).
        #[arg(long, default_value = "demo", requires = "queries")]
        profile: String,
        /// Start even when a rule file fails to load.
        #[arg(long)]
        keep_going: bool,
        /// The only directory file sources and sinks may use (default: data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Check rule files without running or connecting to anything: every problem as
    /// file:line:column, with warnings for likely mistakes.
    Check {
        /// A rules directory (rules, profiles/), or rule files (checked with the profiles of
        /// their directory).
        #[arg(default_value = ".")]
        paths: Vec<PathBuf>,
        /// Check with this profile only (default: every profile).
        #[arg(long)]
        profile: Option<String>,
        /// Output format: text or json.
        #[arg(long, default_value = "text", value_parser = ["text", "json"])]
        format: String,
        /// Turn a style lint off (repeatable, or comma-separated); a file turns one off
        /// with a comment `-- vigil:allow(NAME)`.
        #[arg(long, value_delimiter = ',', value_parser = LINT_NAMES)]
        allow: Vec<String>,
    },
    /// Run the rule tests of a rules directory (tests/NAME.test tests NAME.sql) and show a
    /// diff of expected and actual rows for each failure.
    Test {
        /// The rules directory.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Only the tests of these rules (tests/NAME.test).
        names: Vec<String>,
        /// Only the cases whose `rule: case name` contains this text.
        #[arg(long)]
        filter: Option<String>,
        /// The profile declaring the rules' sources and sinks (default: demo, else the first).
        #[arg(long)]
        profile: Option<String>,
        /// Report format: text, or junit (JUnit XML on stdout, for CI).
        #[arg(long, default_value = "text", value_parser = ["text", "junit"])]
        format: String,
        /// Run the tests again whenever a rule, profile or test file changes.
        #[arg(long)]
        watch: bool,
    },
    /// Format rule files in the canonical style; `vigil fmt -` formats stdin to stdout.
    Fmt {
        /// Files, rules directories (their rules and profiles), or - for stdin.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Change nothing; show the diff and fail if a file is not formatted (for CI).
        #[arg(long)]
        check: bool,
    },
    /// Compare a rules directory with the rules a running `vigil serve` has deployed and show
    /// the plan (added, changed with a diff, removed, drift). Exits 0 when there is nothing
    /// to do, 2 when changes are pending, 1 on an error or a rule that does not plan;
    /// --apply carries the plan out.
    Deploy {
        /// The rules directory.
        dir: PathBuf,
        /// The server (http://host:port); its token comes from VIGIL_TOKEN.
        #[arg(long)]
        server: String,
        /// Carry the plan out.
        #[arg(long)]
        apply: bool,
        /// Also declare this profile's sources and sinks where the server lacks them (a
        /// server started without --queries).
        #[arg(long)]
        with_profile: Option<String>,
    },
    /// Print a shell completion script: `vigil completions bash > /etc/bash_completion.d/vigil`,
    /// `vigil completions zsh > "${fpath[1]}/_vigil"`, `vigil completions fish >
    /// ~/.config/fish/completions/vigil.fish`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Produce generated events to a Kafka topic (created if missing), keyed by the
    /// sensor, account or user id.
    Produce {
        /// Event kind: sensors, payments, dues or logins.
        #[arg(long)]
        kind: String,
        /// Target topic (default: the kind's name).
        #[arg(long)]
        topic: Option<String>,
        /// Events per second (default: as fast as possible).
        #[arg(long)]
        rate: Option<f64>,
        /// Stop after this many events (default: until Ctrl-C).
        #[arg(long)]
        count: Option<u64>,
        /// Distinct sensors, accounts or users.
        #[arg(long, default_value_t = 100)]
        keys: u64,
        /// Share of anomalous events.
        #[arg(long, default_value_t = 0.02)]
        anomaly_ratio: f64,
        /// Generator seed: the same seed gives the same events.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Partitions of the topic when it is created.
        #[arg(long, default_value_t = 4)]
        partitions: i32,
    },
}

/// The style lints `vigil check --allow` takes.
const LINT_NAMES: [&str; 3] = [
    vigil_rules::lints::Lint::ALL[0].name(),
    vigil_rules::lints::Lint::ALL[1].name(),
    vigil_rules::lints::Lint::ALL[2].name(),
];

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<deploy::ChangesPending>().is_some() => {
            eprintln!("{e}");
            std::process::ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("{e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let kafka = KafkaSettings::from_env(cli.brokers);
    match cli.command {
        Command::Run {
            files,
            json,
            batch_size,
            state,
        } => {
            let mut engine = Engine::with_config(
                vigil_connectors::registry_with(kafka),
                EngineConfig {
                    batch_size,
                    state: state.config()?,
                    ..EngineConfig::default()
                },
            );
            let format = if json {
                StdoutFormat::Json
            } else {
                StdoutFormat::Table
            };
            let mut queries = Vec::new();
            for file in &files {
                let sql = read(file)?;
                queries.extend(
                    execute_file(&mut engine, &file.display().to_string(), &sql, format).await?,
                );
            }
            if queries.is_empty() {
                bail!("the files declare no query: add a CREATE SINK ... AS SELECT or a SELECT");
            }
            supervise(queries, None).await
        }
        Command::Explain {
            analyze: Some(id),
            server: Some(server),
            ..
        } => {
            let client = client::ServerClient::new(&server)?;
            let text = client
                .get_text(&format!("/v1/queries/{id}/graph"), "text/plain")
                .await?;
            print!("{text}");
            Ok(())
        }
        Command::Explain { files, .. } => {
            let mut engine = Engine::new(vigil_connectors::registry_with(kafka));
            for file in &files {
                let sql = read(file)?;
                explain_file(&mut engine, &file.display().to_string(), &sql).await?;
            }
            Ok(())
        }
        Command::Demo {
            seconds,
            kafka: false,
        } => demo::run(seconds.map(Duration::from_secs)).await,
        Command::Demo {
            seconds,
            kafka: true,
        } => demo::run_kafka(kafka, seconds.map(Duration::from_secs)).await,
        Command::Repl {
            json,
            init,
            queries,
            profile,
            kafka: kafka_brokers,
        } => {
            let format = if json {
                StdoutFormat::Json
            } else {
                StdoutFormat::Table
            };
            let live = kafka_brokers.is_some();
            let kafka = match kafka_brokers {
                Some(brokers) => KafkaSettings::from_env(Some(brokers)),
                None => kafka,
            };
            let rules = queries.map(|dir| {
                let profile = profile.unwrap_or_else(|| if live { "kafka" } else { "demo" }.into());
                (dir, profile)
            });
            repl(kafka, format, &init, rules).await
        }
        Command::Serve {
            bind,
            queries,
            profile,
            keep_going,
            data_dir,
            state,
        } => {
            let mut config = vigil_server::ServerConfig::from_env()?;
            if let Some(bind) = bind {
                config.bind = bind;
            }
            if let Some(dir) = data_dir {
                config.data_dir = dir;
            }
            let rules = queries.map(|dir| (dir, profile));
            serve::run(kafka, config, rules, keep_going, state.config()?).await
        }
        Command::Check {
            paths,
            profile,
            format,
            allow,
        } => rules::check(kafka, &paths, profile.as_deref(), format == "json", &allow).await,
        Command::Test {
            dir,
            names,
            filter,
            profile,
            format,
            watch,
        } => {
            let args = rules::TestArgs {
                dir,
                names,
                filter,
                profile,
                junit: format == "junit",
                watch,
            };
            rules::test(kafka, &args).await
        }
        Command::Fmt { paths, check } => rules::fmt(&paths, check),
        Command::Deploy {
            dir,
            server,
            apply,
            with_profile,
        } => {
            let args = deploy::DeployArgs {
                dir: &dir,
                server: &server,
                apply,
                with_profile: with_profile.as_deref(),
            };
            deploy::deploy(args).await
        }
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "vigil", &mut std::io::stdout());
            Ok(())
        }
        Command::Produce {
            kind,
            topic,
            rate,
            count,
            keys,
            anomaly_ratio,
            seed,
            partitions,
        } => {
            let kind = Kind::parse(&kind).with_context(|| {
                format!("unknown kind '{kind}': use sensors, payments, dues or logins")
            })?;
            let args = produce::ProduceArgs {
                topic: topic.unwrap_or_else(|| kind.name().to_string()),
                kind,
                rate,
                count,
                keys,
                anomaly_ratio,
                seed,
            };
            produce::run(kafka, args, partitions).await
        }
    }
}

/// `vigil repl`: a prompt on a terminal, a script otherwise.
async fn repl(
    kafka: KafkaSettings,
    format: StdoutFormat,
    init: &[PathBuf],
    rules: Option<(PathBuf, String)>,
) -> Result<()> {
    use std::io::IsTerminal;
    use vigil_repl::Mode;
    let mode = if std::io::stdin().is_terminal() {
        Mode::Interactive
    } else {
        Mode::Script
    };
    let engine = Engine::new(vigil_connectors::registry_with(kafka));
    let origin = match mode {
        Mode::Interactive => "input",
        Mode::Script => "<stdin>",
    };
    let mut session = vigil_repl::Session::new(engine, format, origin, mode);
    if let Some((dir, profile)) = rules {
        let loaded = vigil_repl::load_rules(&mut session, &dir, &profile)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        if mode == Mode::Interactive {
            println!(
                "loaded {} and {} rules from {} (\\sources, \\views and \\sinks list them)",
                loaded.profile.display(),
                loaded.rules.len(),
                dir.display()
            );
        }
    }
    for file in init {
        vigil_repl::run_file(&mut session, &file.display().to_string())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let result = match mode {
        Mode::Interactive => vigil_repl::run_interactive(session).await,
        Mode::Script => vigil_repl::run_script(session, std::io::stdin().lock()).await,
    };
    result.map_err(|e| anyhow::anyhow!("{e}"))
}

fn read(path: &PathBuf) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Executes a file's statements; returns the queries it started, named.
pub(crate) async fn execute_file(
    engine: &mut Engine,
    file: &str,
    sql: &str,
    format: StdoutFormat,
) -> Result<Vec<(String, RunningQuery)>> {
    let statements = StreamParser::parse_sql(sql).map_err(|e| report(e, file, sql))?;
    let mut started = Vec::new();
    for statement in statements {
        let outcome = engine
            .execute_statement(statement)
            .await
            .map_err(|e| report(e, file, sql))?;
        match outcome {
            StatementOutcome::SinkStarted { name, query } => started.push((name, query)),
            StatementOutcome::Query(planned) => {
                let label = first_line(&planned.sql);
                let query = engine.start(planned, Box::new(StdoutSink::new(format)))?;
                started.push((label, query));
            }
            StatementOutcome::Explain(graph) => println!("{graph}"),
            StatementOutcome::Rows(batches) => {
                let mut out = StdoutSink::new(format);
                for batch in batches {
                    vigil_engine::connector::Sink::write(&mut out, batch).await?;
                }
            }
            StatementOutcome::Created { .. }
            | StatementOutcome::Dropped { .. }
            | StatementOutcome::SinkPlanned { .. } => {}
        }
    }
    Ok(started)
}

async fn explain_file(engine: &mut Engine, file: &str, sql: &str) -> Result<()> {
    let statements = StreamParser::parse_sql(sql).map_err(|e| report(e, file, sql))?;
    for mut statement in statements {
        let label = match &statement.statement {
            Statement::CreateSink(s) if s.query.is_some() => Some(format!("sink {}", s.name.value)),
            Statement::Query(_) => Some(first_line(&statement.sql)),
            _ => None,
        };
        if let Some(label) = &label {
            statement.statement = Statement::Explain(Box::new(statement.statement));
            println!("-- {file}: {label}");
        }
        if let StatementOutcome::Explain(graph) = engine
            .execute_statement(statement)
            .await
            .map_err(|e| report(e, file, sql))?
        {
            println!("{graph}");
        }
    }
    Ok(())
}

fn first_line(sql: &str) -> String {
    let line = sql.lines().next().unwrap_or_default();
    if line.len() > 60 {
        format!("{}...", &line[..60])
    } else {
        line.to_string()
    }
}

/// Renders an engine error for the terminal, with the file, the line and a caret.
pub(crate) fn report(e: vigil_engine::Error, file: &str, sql: &str) -> anyhow::Error {
    anyhow::anyhow!("{}", e.report(file, sql))
}

/// Polls `future` once: `Some` with its output if it was ready.
async fn poll_once<F: std::future::Future + Unpin>(mut future: F) -> Option<F::Output> {
    std::future::poll_fn(|cx| match std::pin::Pin::new(&mut future).poll(cx) {
        std::task::Poll::Ready(v) => std::task::Poll::Ready(Some(v)),
        std::task::Poll::Pending => std::task::Poll::Ready(None),
    })
    .await
}

/// Waits for every query to end; Ctrl-C, SIGTERM or the time limit stops them gracefully.
pub(crate) async fn supervise(
    queries: Vec<(String, RunningQuery)>,
    limit: Option<Duration>,
) -> Result<()> {
    let stop_all = |queries: &[(String, RunningQuery)]| queries.iter().for_each(|(_, q)| q.stop());
    let deadline = async {
        match limit {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    // Polled once before saying so, so that Ctrl-C is handled from the moment it is said.
    let mut interrupted = std::pin::pin!(serve::shutdown_signal());
    if poll_once(interrupted.as_mut()).await.is_some() {
        eprintln!("stopping...");
        stop_all(&queries);
    } else {
        let running = match queries.len() {
            1 => "1 query running".to_string(),
            n => format!("{n} queries running"),
        };
        eprintln!("{running}; Ctrl-C stops them");
        // A closed stdout ends the run as Ctrl-C would: its reader has gone.
        let all_done = async {
            while !queries.iter().all(|(_, q)| q.is_finished()) && !stdout_closed() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if stdout_closed() {
                stop_all(&queries);
            }
        };
        tokio::select! {
            _ = all_done => {}
            _ = interrupted => { eprintln!("stopping..."); stop_all(&queries) }
            _ = deadline => stop_all(&queries),
        }
    }
    let mut failed = false;
    let quiet = stdout_closed();
    for (name, query) in queries {
        let metrics = query.metrics().snapshot();
        if let Err(e) = query.wait().await {
            eprintln!("{name}: {e}");
            failed = true;
        } else if quiet {
            continue;
        } else if metrics.late_events > 0
            || metrics.dead_letters > 0
            || metrics.row_errors > 0
            || metrics.connector_errors > 0
        {
            eprintln!(
                "{name}: {} late events, {} dead letters, {} rows an expression failed on, {} \
                 connector errors retried",
                metrics.late_events,
                metrics.dead_letters,
                metrics.row_errors,
                metrics.connector_errors
            );
        }
    }
    if failed {
        bail!("a query failed");
    }
    Ok(())
}
