//! [`Session`]: one REPL session's engine, output format and background queries.

use std::sync::Arc;
use std::time::Duration;

use vigil_connectors::stdout::{StdoutFormat, StdoutSink};
use vigil_engine::runtime::RunningQuery;
use vigil_engine::{Engine, StatementOutcome};

use crate::ReplError;

/// What the caller should do after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Read the next input.
    Continue,
    /// Leave the REPL.
    Quit,
}

/// The help text of `\help`.
pub const HELP: &str = "\
Statements end with ';'. CREATE SOURCE / VIEW / SINK change the catalog; CREATE SINK ... AS
starts a query in the background; a SELECT prints its rows as they arrive (Ctrl-C stops it).

  \\sources  \\views  \\sinks     list the catalog
  \\describe NAME               columns, watermark and connector of a source
  \\queries                     background queries, with rows read and written
  \\stop ID                     stop a background query
  \\format table|json           how SELECT rows print
  \\help                        this text
  \\quit                        leave (Ctrl-D on an empty line too)";

/// A background query started by `CREATE SINK ... AS`.
struct Background {
    id: usize,
    name: String,
    query: RunningQuery,
}

/// A REPL session.
pub struct Session {
    engine: Engine,
    format: StdoutFormat,
    /// Where statements come from, for error messages (`<stdin>`, a file name).
    origin: String,
    /// Whether to print confirmations of DDL (interactive use).
    chatty: bool,
    background: Vec<Background>,
    next_id: usize,
}

impl Session {
    /// A session over `engine`, printing rows in `format`.
    pub fn new(engine: Engine, format: StdoutFormat, origin: &str, chatty: bool) -> Self {
        Self {
            engine,
            format,
            origin: origin.to_string(),
            chatty,
            background: Vec::new(),
            next_id: 1,
        }
    }

    /// The engine, for completion and listings.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Executes one statement that starts on `line` of the input. A SELECT runs in the
    /// foreground until its sources end or Ctrl-C.
    pub async fn execute(&mut self, text: &str, line: usize) -> Result<(), ReplError> {
        // Leading newlines make error positions count from the start of the input.
        let padded = format!("{}{text}", "\n".repeat(line.saturating_sub(1)));
        let outcomes = self
            .engine
            .execute(&padded)
            .await
            .map_err(|e| ReplError::Statement(e.report(&self.origin, &padded)))?;
        for outcome in outcomes {
            match outcome {
                StatementOutcome::Created { kind, name } => {
                    self.say(&format!("created {kind} {name}"))
                }
                StatementOutcome::Dropped { kind, name } => {
                    self.say(&format!("dropped {kind} {name}"))
                }
                StatementOutcome::SinkPlanned { name, .. } => {
                    self.say(&format!("planned sink {name}"))
                }
                StatementOutcome::Explain(graph) => println!("{graph}"),
                StatementOutcome::SinkStarted { name, query } => {
                    let id = self.next_id;
                    self.next_id += 1;
                    self.say(&format!(
                        "query {id} started: sink {name} (\\queries lists it, \\stop {id} stops it)"
                    ));
                    self.background.push(Background { id, name, query });
                }
                StatementOutcome::Query(planned) => {
                    let query = self
                        .engine
                        .start(planned, Box::new(StdoutSink::new(self.format)))
                        .map_err(|e| ReplError::Statement(e.report(&self.origin, &padded)))?;
                    self.foreground(query).await?;
                }
            }
        }
        Ok(())
    }

    /// Waits for a SELECT to end; Ctrl-C stops it and returns to the prompt.
    async fn foreground(&self, query: RunningQuery) -> Result<(), ReplError> {
        let metrics = Arc::clone(query.metrics());
        tokio::select! {
            _ = wait_finished(&query) => {}
            _ = tokio::signal::ctrl_c() => query.stop(),
        }
        query
            .wait()
            .await
            .map_err(|e| ReplError::Statement(format!("{}: {e}", self.origin)))?;
        let m = metrics.snapshot();
        if m.late_events > 0 || m.dead_letters > 0 {
            eprintln!(
                "{} late events, {} dead letters",
                m.late_events, m.dead_letters
            );
        }
        Ok(())
    }

    /// Runs a meta command (the text after the backslash).
    pub async fn meta(&mut self, command: &str) -> Result<Control, ReplError> {
        let (name, arg) = command
            .split_once(char::is_whitespace)
            .map_or((command, ""), |(n, a)| (n, a.trim()));
        let catalog = self.engine.catalog();
        match name {
            "q" | "quit" | "exit" => return Ok(Control::Quit),
            "?" | "h" | "help" => println!("{HELP}"),
            "sources" => list(catalog.sources().keys()),
            "views" => list(catalog.views().keys()),
            "sinks" => list(catalog.sinks().keys()),
            "d" | "describe" => {
                let source = catalog.sources().get(arg).ok_or_else(|| {
                    ReplError::Statement(format!("no source named '{arg}' (\\sources lists them)"))
                })?;
                for field in source.schema.fields() {
                    println!("  {:<20} {}", field.name(), field.data_type());
                }
                if let Some(wm) = &source.watermark {
                    println!("  watermark for {} as {}", wm.column, wm.sql);
                }
                let options: Vec<String> = source
                    .options
                    .iter()
                    .map(|(k, v)| format!("{k} = '{v}'"))
                    .collect();
                println!("  with ({})", options.join(", "));
            }
            "queries" => {
                for b in &self.background {
                    let m = b.query.metrics().snapshot();
                    let state = if b.query.is_finished() {
                        "finished"
                    } else {
                        "running"
                    };
                    println!(
                        "  {:>3}  {:<24} {state:<8} {} read, {} written, {} late, {} dead letters",
                        b.id, b.name, m.events_in, m.rows_out, m.late_events, m.dead_letters
                    );
                }
            }
            "stop" => {
                let id: usize = arg.parse().map_err(|_| {
                    ReplError::Statement(format!(
                        "\\stop takes a query id (\\queries lists them), not '{arg}'"
                    ))
                })?;
                let position =
                    self.background
                        .iter()
                        .position(|b| b.id == id)
                        .ok_or_else(|| {
                            ReplError::Statement(format!("no query {id} (\\queries lists them)"))
                        })?;
                let b = self.background.remove(position);
                b.query.stop();
                b.query
                    .wait()
                    .await
                    .map_err(|e| ReplError::Statement(format!("query {id}: {e}")))?;
                self.say(&format!("query {id} stopped"));
            }
            "format" => {
                self.format = match arg {
                    "table" => StdoutFormat::Table,
                    "json" => StdoutFormat::Json,
                    other => {
                        return Err(ReplError::Statement(format!(
                            "\\format takes table or json, not '{other}'"
                        )));
                    }
                };
            }
            other => {
                return Err(ReplError::Statement(format!(
                    "unknown command \\{other} (\\help lists them)"
                )));
            }
        }
        Ok(Control::Continue)
    }

    /// Waits for the background queries to end (Ctrl-C stops them), reporting failures.
    pub async fn finish(self) -> Result<(), ReplError> {
        let all_done = async {
            while !self.background.iter().all(|b| b.query.is_finished()) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::select! {
            _ = all_done => {}
            _ = tokio::signal::ctrl_c() => self.background.iter().for_each(|b| b.query.stop()),
        }
        for b in self.background {
            b.query
                .wait()
                .await
                .map_err(|e| ReplError::Statement(format!("query {} ({}): {e}", b.id, b.name)))?;
        }
        Ok(())
    }

    fn say(&self, text: &str) {
        if self.chatty {
            println!("{text}");
        }
    }
}

fn list<'a>(names: impl Iterator<Item = &'a String>) {
    for name in names {
        println!("  {name}");
    }
}

async fn wait_finished(query: &RunningQuery) {
    while !query.is_finished() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
