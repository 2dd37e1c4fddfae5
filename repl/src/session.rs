//! [`Session`]: one REPL session's engine, output settings and background queries.

use std::sync::Arc;
use std::time::{Duration, Instant};

use vigil_connectors::stdout::StdoutFormat;
use vigil_engine::runtime::{OperatorStats, RunningQuery};
use vigil_engine::{Engine, StatementOutcome};

use crate::ReplError;
use crate::completion::Vocabulary;
use crate::results::{Display, Progress, ResultWriter, watermark_text};
use crate::settings::{ResultMode, Settings};
use crate::statements::{Listing, SessionStatement};

/// What the caller should do after a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Read the next input.
    Continue,
    /// Run the statements of this file (`\i FILE`).
    Include(String),
    /// Leave the REPL.
    Quit,
}

/// The help text of `\help`.
pub const HELP: &str = "\
Statements end with ';' and may span lines. CREATE SOURCE / VIEW / SINK change the catalog;
CREATE SINK ... AS starts a query in the background; a SELECT prints its rows as they arrive
until its sources end, its LIMIT is reached or you press Ctrl-C.

  SHOW SOURCES | VIEWS | SINKS | QUERIES | FUNCTIONS
  \\sources  \\views  \\sinks     list the catalog (\\d alone lists it all)
  DESCRIBE NAME, \\d NAME       columns, watermark and connector of a source, view or sink
  \\explain QUERY               the operator graph of a query, without running it
  \\queries                     background queries with their rates
  EXPLAIN ANALYZE ID           a background query's operators with live counters
  \\stop ID                     stop a background query
  \\i FILE                      run the statements of a file
  SET name = value, RESET [name], SHOW name, SHOW ALL
                               session settings: format (table|json), result_mode
                               (changelog|table: an updating SELECT redrawn in place),
                               expanded (on|off), timing (on|off), batch_size,
                               state_ttl (7 days|off: joins with no time bound)
  \\format table|json           how SELECT rows print
  \\x [on|off]                  expanded rows: one field per line, for wide results
  \\timing [on|off]             print how long each statement took
  \\help                        this text
  \\quit                        leave (Ctrl-D on an empty line too)

Tab completes keywords, names, columns and functions; Ctrl-R searches the history.";

/// How often the status line of a running SELECT is refreshed.
const STATUS_INTERVAL: Duration = Duration::from_millis(250);

/// How a session talks to its user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A person at a terminal: confirmations, a status line, headers every screenful.
    Interactive,
    /// A script through a pipe: rows and errors only.
    Script,
}

/// A background query started by `CREATE SINK ... AS`.
struct Background {
    id: usize,
    name: String,
    query: RunningQuery,
    started: Instant,
}

/// A REPL session.
pub struct Session {
    engine: Engine,
    settings: Settings,
    /// The settings the session started with, for RESET.
    defaults: Settings,
    mode: Mode,
    /// Where statements come from, for error messages (`<stdin>`, a file name).
    origin: String,
    background: Vec<Background>,
    next_id: usize,
}

impl Session {
    /// A session over `engine`, printing rows in `format`; `origin` names the input in
    /// error messages.
    pub fn new(engine: Engine, format: StdoutFormat, origin: &str, mode: Mode) -> Self {
        let settings = Settings {
            format,
            result_mode: ResultMode::Changelog,
            expanded: false,
            timing: false,
            batch_size: engine.config().batch_size,
            state_ttl: None,
        };
        Self {
            engine,
            defaults: settings.clone(),
            settings,
            mode,
            origin: origin.to_string(),
            background: Vec::new(),
            next_id: 1,
        }
    }

    /// The engine, for loading rules.
    pub fn engine_mut(&mut self) -> &mut Engine {
        &mut self.engine
    }

    /// What tab completion can offer now.
    pub fn vocabulary(&self) -> Vocabulary {
        Vocabulary::from_engine(&self.engine)
    }

    /// Names the input statements come from, returning the previous name (`\i` swaps it).
    pub fn set_origin(&mut self, origin: &str) -> String {
        std::mem::replace(&mut self.origin, origin.to_string())
    }

    /// Executes the statements of `text`, which starts on `line` of the input. A SELECT runs
    /// in the foreground until its sources end, its LIMIT is reached or Ctrl-C.
    pub async fn execute(&mut self, text: &str, line: usize) -> Result<(), ReplError> {
        if let Some(statement) = crate::statements::parse(text) {
            return self.session_statement(statement.map_err(ReplError::Statement)?);
        }
        if let Some(id) = explain_analyze_target(text) {
            return self.explain_analyze(id);
        }
        let started = Instant::now();
        // Leading newlines make error positions count from the start of the input.
        let padded = format!("{}{text}", "\n".repeat(line.saturating_sub(1)));
        let report = |e: vigil_engine::Error| ReplError::Statement(e.report(&self.origin, &padded));
        let outcomes = self.engine.execute(&padded).await.map_err(report)?;
        for outcome in outcomes {
            match outcome {
                StatementOutcome::Created { kind, name } => {
                    self.say(&format!("created {kind} {name}"))
                }
                StatementOutcome::Dropped {
                    kind,
                    name,
                    stopped,
                } => self.say(&dropped_message(&kind, &name, &stopped)),
                StatementOutcome::SinkPlanned { name, .. } => {
                    self.say(&format!("planned sink {name}"))
                }
                StatementOutcome::Explain(graph) => println!("{graph}"),
                StatementOutcome::Rows(batches) => {
                    let writer = ResultWriter::new(self.display(), None, false);
                    for batch in &batches {
                        writer.print(batch)?;
                    }
                    writer.finish()?;
                }
                StatementOutcome::SinkStarted { name, query } => {
                    let id = self.next_id;
                    self.next_id += 1;
                    self.say(&format!(
                        "query {id} started: sink {name} (\\queries lists it, \\stop {id} stops it)"
                    ));
                    self.background.push(Background {
                        id,
                        name,
                        query,
                        started: Instant::now(),
                    });
                }
                StatementOutcome::Query(mut planned) => {
                    // Shown here rather than logged by the engine.
                    for warning in planned.graph.warnings.drain(..) {
                        eprintln!("warning: {warning}");
                    }
                    let interactive = self.mode == Mode::Interactive;
                    let writer = ResultWriter::new(self.display(), self.page_rows(), interactive);
                    let query = self
                        .engine
                        .start(planned, writer.sink())
                        .map_err(|e| ReplError::Statement(e.report(&self.origin, &padded)))?;
                    self.foreground(query, &writer).await?;
                }
            }
        }
        if self.settings.timing {
            println!("Time: {:.3} ms", started.elapsed().as_secs_f64() * 1000.0);
        }
        Ok(())
    }

    /// How results print, from the settings.
    fn display(&self) -> Display {
        Display {
            format: self.settings.format,
            expanded: self.settings.expanded,
            result_mode: self.settings.result_mode,
        }
    }

    /// Rows of a table page: a screenful at a terminal, unlimited in a script.
    fn page_rows(&self) -> Option<usize> {
        match self.mode {
            // Room for the header, its rule, the status line and the prompt.
            Mode::Interactive => Some(crate::terminal::size().map_or(20, |(_, rows)| rows - 4)),
            Mode::Script => None,
        }
    }

    /// Waits for a SELECT to end, refreshing its status line; Ctrl-C stops it and returns to
    /// the prompt.
    async fn foreground(
        &self,
        query: RunningQuery,
        writer: &ResultWriter,
    ) -> Result<(), ReplError> {
        let metrics = Arc::clone(query.metrics());
        let mut progress = Progress::start();
        let mut ticks = tokio::time::interval(STATUS_INTERVAL);
        {
            let finished = wait_finished(&query);
            tokio::pin!(finished);
            loop {
                tokio::select! {
                    _ = &mut finished => break,
                    _ = tokio::signal::ctrl_c() => {
                        query.stop();
                        break;
                    }
                    _ = ticks.tick() => writer.show_status(&progress.status(&metrics.snapshot())),
                }
            }
        }
        let result = query.wait().await;
        writer.clear_status();
        result.map_err(|e| ReplError::Statement(format!("{}: {e}", self.origin)))?;
        writer.finish()?;
        let m = metrics.snapshot();
        match self.mode {
            Mode::Interactive => eprintln!("{}", progress.summary(&m)),
            Mode::Script if m.late_events > 0 || m.set_aside() > 0 => eprintln!(
                "{} late events, {} dead letters",
                m.late_events,
                m.set_aside()
            ),
            Mode::Script => {}
        }
        Ok(())
    }

    /// Runs a meta command (the text after the backslash).
    pub async fn meta(&mut self, command: &str) -> Result<Control, ReplError> {
        let (name, arg) = command
            .split_once(char::is_whitespace)
            .map_or((command, ""), |(n, a)| (n, a.trim()));
        match name {
            "q" | "quit" | "exit" => return Ok(Control::Quit),
            "?" | "h" | "help" => println!("{HELP}"),
            "sources" => self.show(Listing::Sources),
            "views" => self.show(Listing::Views),
            "sinks" => self.show(Listing::Sinks),
            "d" if arg.is_empty() => self.list_everything(),
            "d" | "describe" => self.describe(arg)?,
            "x" => {
                self.toggle("expanded", arg, self.settings.expanded)?;
                let state = on_off_text(self.settings.expanded);
                self.say(&format!("expanded display is {state}"));
            }
            "explain" => {
                if arg.is_empty() {
                    return Err(ReplError::Statement("\\explain takes a query".into()));
                }
                self.execute(&format!("EXPLAIN {arg}"), 1).await?;
            }
            "queries" => self.queries(),
            "stop" => self.stop(arg).await?,
            "i" | "include" => {
                if arg.is_empty() {
                    return Err(ReplError::Statement("\\i takes a file name".into()));
                }
                return Ok(Control::Include(arg.to_string()));
            }
            "format" => {
                self.settings
                    .set("format", arg)
                    .map_err(|e| ReplError::Statement(format!("\\format: {e}")))?;
            }
            "timing" => {
                self.toggle("timing", arg, self.settings.timing)?;
                self.say(&format!("timing is {}", on_off_text(self.settings.timing)));
            }
            other => {
                return Err(ReplError::Statement(format!(
                    "unknown command \\{other} (\\help lists them)"
                )));
            }
        }
        Ok(Control::Continue)
    }

    /// A statement about the session or its catalog.
    fn session_statement(&mut self, statement: SessionStatement) -> Result<(), ReplError> {
        let setting_error = ReplError::Statement;
        match statement {
            SessionStatement::Show(listing) => self.show(listing),
            SessionStatement::ShowSetting(name) => {
                println!("{}", self.settings.show(&name).map_err(setting_error)?)
            }
            SessionStatement::Describe(name) => self.describe(&name)?,
            SessionStatement::Set { name, value } => {
                self.settings.set(&name, &value).map_err(setting_error)?
            }
            SessionStatement::Reset(Some(name)) => self
                .settings
                .reset(&name, &self.defaults)
                .map_err(setting_error)?,
            SessionStatement::Reset(None) => self.settings = self.defaults.clone(),
        }
        // The engine reads its sources in batches of the session's size, and plans joins with
        // no time bound with its state TTL.
        self.engine.config_mut().batch_size = self.settings.batch_size;
        self.engine
            .set_state_ttl(self.settings.state_ttl.as_deref())
            .map_err(|e| ReplError::Statement(e.to_string()))?;
        Ok(())
    }

    /// `\x` or `\timing`: on/off setting `name` set to `arg`, or flipped from `now` when
    /// `arg` is empty.
    fn toggle(&mut self, name: &str, arg: &str, now: bool) -> Result<(), ReplError> {
        let value = if arg.is_empty() {
            on_off_text(!now)
        } else {
            arg
        };
        self.settings.set(name, value).map_err(ReplError::Statement)
    }

    /// `SHOW ...`: part of the catalog, the background queries, the functions or the
    /// settings.
    fn show(&self, listing: Listing) {
        let catalog = self.engine.catalog();
        match listing {
            Listing::Sources => self.list(catalog.sources().keys()),
            Listing::Views => self.list(catalog.views().keys()),
            Listing::Sinks => self.list(catalog.sinks().keys()),
            Listing::Queries => self.queries(),
            Listing::Functions => self.list(catalog.function_names().iter()),
            Listing::Settings => println!("{}", self.settings.show_all()),
        }
    }

    /// `\d` alone: every source, view and sink, by kind.
    fn list_everything(&self) {
        let catalog = self.engine.catalog();
        let kinds = [
            ("source", catalog.sources().keys().collect::<Vec<_>>()),
            ("view", catalog.views().keys().collect()),
            ("sink", catalog.sinks().keys().collect()),
        ];
        if kinds.iter().all(|(_, names)| names.is_empty()) {
            self.say("the catalog is empty (CREATE SOURCE declares a source)");
        }
        for (kind, names) in kinds {
            for name in names {
                println!("  {kind:<7} {name}");
            }
        }
    }

    /// `EXPLAIN ANALYZE ID`: a background query's operators with their live counters.
    fn explain_analyze(&self, id: usize) -> Result<(), ReplError> {
        let b =
            self.background.iter().find(|b| b.id == id).ok_or_else(|| {
                ReplError::Statement(format!("no query {id} (\\queries lists them)"))
            })?;
        print!(
            "{}",
            OperatorStats::render_tree(&b.query.metrics().operators())
        );
        Ok(())
    }

    fn describe(&self, name: &str) -> Result<(), ReplError> {
        let catalog = self.engine.catalog();
        let name = name.to_lowercase();
        if let Some(sink) = catalog.sinks().get(&name) {
            let written = if sink.has_query {
                ", written by a query"
            } else {
                ""
            };
            println!("  sink {name}{written}");
            println!("  with ({})", options_text(&sink.options));
            return Ok(());
        }
        let schema = catalog.relation_schema(&name).ok_or_else(|| {
            ReplError::Statement(format!(
                "no source, view or sink named '{name}' (SHOW SOURCES, SHOW VIEWS and SHOW \
                 SINKS list them)"
            ))
        })?;
        for field in schema.fields() {
            println!("  {:<20} {}", field.name(), field.data_type());
        }
        if let Some(source) = catalog.sources().get(&name) {
            match &source.watermark {
                Some(wm) => println!("  watermark for {} as {}", wm.column, wm.sql),
                None => println!("  no watermark: windows over it close only when it ends"),
            }
            println!("  with ({})", options_text(&source.options));
        } else if let Some(view) = catalog.views().get(&name) {
            println!("  {}", view.sql.trim());
        }
        Ok(())
    }

    fn queries(&self) {
        if self.background.is_empty() {
            self.say("no background queries (CREATE SINK ... AS SELECT starts one)");
        }
        for b in &self.background {
            let m = b.query.metrics().snapshot();
            let state = if b.query.is_finished() {
                "finished"
            } else {
                "running"
            };
            let seconds = b.started.elapsed().as_secs_f64().max(1e-3);
            println!(
                "  {:>3}  {:<24} {state:<8} {} read ({:.0}/s), {} written, watermark {}, {} late, {} dead letters",
                b.id,
                b.name,
                m.events_in,
                m.events_in as f64 / seconds,
                m.rows_out,
                watermark_text(m.watermark),
                m.late_events,
                m.set_aside()
            );
        }
    }

    async fn stop(&mut self, arg: &str) -> Result<(), ReplError> {
        let id: usize = arg.parse().map_err(|_| {
            ReplError::Statement(format!(
                "\\stop takes a query id (\\queries lists them), not '{arg}'"
            ))
        })?;
        let position = self
            .background
            .iter()
            .position(|b| b.id == id)
            .ok_or_else(|| ReplError::Statement(format!("no query {id} (\\queries lists them)")))?;
        let b = self.background.remove(position);
        b.query.stop();
        b.query
            .wait()
            .await
            .map_err(|e| ReplError::Statement(format!("query {id}: {e}")))?;
        self.say(&format!("query {id} stopped"));
        Ok(())
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

    /// Stops the background queries without waiting for their sources to end.
    pub fn stop_all(&self) {
        self.background.iter().for_each(|b| b.query.stop());
    }

    fn list<'a>(&self, names: impl Iterator<Item = &'a String>) {
        let mut any = false;
        for name in names {
            println!("  {name}");
            any = true;
        }
        if !any {
            self.say("  (none)");
        }
    }

    fn say(&self, text: &str) {
        if self.mode == Mode::Interactive {
            println!("{text}");
        }
    }
}

/// Connector options as a WITH clause shows them.
fn options_text(options: &vigil_engine::sql::Options) -> String {
    let options: Vec<String> = options
        .iter()
        .map(|(k, v)| format!("{k} = '{v}'"))
        .collect();
    options.join(", ")
}

fn on_off_text(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}

async fn wait_finished(query: &RunningQuery) {
    while !query.is_finished() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The query id of `EXPLAIN ANALYZE <id>`, which names a running query rather than SQL.
fn explain_analyze_target(text: &str) -> Option<usize> {
    let mut words = text.trim().trim_end_matches(';').split_whitespace();
    let explain = words.next()?.eq_ignore_ascii_case("explain");
    let analyze = words.next()?.eq_ignore_ascii_case("analyze");
    let id = words.next()?.parse().ok()?;
    (explain && analyze && words.next().is_none()).then_some(id)
}

/// What a DROP did, naming the queries `CASCADE` stopped.
fn dropped_message(kind: &str, name: &str, stopped: &[String]) -> String {
    if stopped.is_empty() {
        format!("dropped {kind} {name}")
    } else {
        format!("dropped {kind} {name}, stopping {}", stopped.join(", "))
    }
}
