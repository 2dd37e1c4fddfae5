//! `vigil repl` at a terminal: the real binary in a pseudo-terminal, typed at as a person
//! would, with prompts, streaming rows, Ctrl-C, history and Tab.

use std::path::{Path, PathBuf};
use std::process::Command;

use rexpect::session::PtySession;

/// Longest wait for any expected output; the binary is a debug build.
const TIMEOUT_MS: u64 = 60_000;

/// A paced generator source: event time follows the wall clock, so 1-second windows close
/// while the test watches.
const SOURCE_LINES: [&str; 3] = [
    "CREATE SOURCE sensors (sensor_id TEXT, temperature DOUBLE, humidity DOUBLE, ts TIMESTAMP,",
    "  WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)",
    "  WITH (connector = 'generator', kind = 'sensors', rate = '200', keys = '2');",
];

/// A REPL in a pseudo-terminal.
struct Terminal {
    session: PtySession,
}

impl Terminal {
    /// Starts `vigil repl` keeping its history in `history`.
    fn open(history: &Path) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_vigil"));
        command
            .arg("repl")
            .env("VIGIL_HISTORY", history)
            .env("TERM", "xterm")
            .env_remove("VIGIL_LOG");
        let session = rexpect::session::spawn_command(command, Some(TIMEOUT_MS))
            .expect("vigil repl starts in a pseudo-terminal");
        let mut terminal = Self { session };
        terminal.expect("Vigil SQL");
        terminal.expect("vigil> ");
        terminal
    }

    /// Waits for `text`; returns what came before it.
    fn expect(&mut self, text: &str) -> String {
        self.session
            .exp_string(text)
            .unwrap_or_else(|e| panic!("expected {text:?} on the terminal: {e}"))
    }

    /// Waits for a match of `regex`; returns the match.
    fn expect_regex(&mut self, regex: &str) -> String {
        self.session
            .exp_regex(regex)
            .unwrap_or_else(|e| panic!("expected /{regex}/ on the terminal: {e}"))
            .1
    }

    /// Types `text` and presses Enter.
    fn line(&mut self, text: &str) {
        self.session.send_line(text).expect("typing");
    }

    /// Types `text` without Enter.
    fn keys(&mut self, text: &str) {
        self.session.send(text).expect("typing");
        self.session.flush().expect("typing");
    }

    /// Types the source declaration line by line: Enter before the `;` opens the next line
    /// of the same statement.
    fn declare_source(&mut self) {
        for line in SOURCE_LINES {
            self.line(line);
        }
        self.expect("created source sensors");
        self.expect("vigil> ");
    }

    /// Leaves with `\quit` and checks the exit status.
    fn quit(mut self) {
        self.line("\\quit");
        self.exits_cleanly();
    }

    /// Leaves with Ctrl-D on an empty line and checks the exit status.
    fn quit_with_ctrl_d(mut self) {
        self.session.send_control('d').expect("Ctrl-D");
        self.exits_cleanly();
    }

    fn exits_cleanly(&mut self) {
        self.session.exp_eof().expect("the REPL exits");
        let status = self.session.process().wait().expect("exit status");
        assert!(
            matches!(status, rexpect::process::WaitStatus::Exited(_, 0)),
            "{status:?}"
        );
    }
}

fn history_file(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("vigil-history-{name}-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

#[test]
fn window_rows_stream_in_and_ctrl_c_returns_to_the_prompt() {
    let history = history_file("stream");
    let mut t = Terminal::open(&history);
    t.declare_source();
    t.line("SELECT window_start, window_end, sensor_id, count(*) AS readings");
    t.line("FROM TUMBLE(sensors, ts, INTERVAL '1' SECOND)");
    t.line("GROUP BY window_start, window_end, sensor_id;");
    // The header, then rows of closed windows while the query keeps running.
    t.expect("window_start");
    t.expect("readings");
    t.expect_regex(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z \| \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z \| sensor-000[01] +\| +\d+");
    // The status line under the rows: events read, rate, watermark, late and dead letters.
    t.expect_regex(
        r"\d+ events \| \d+/s \| watermark \d\d:\d\d:\d\d \| \d+ rows \| 0 late \| 0 dead letters",
    );
    t.session.send_control('c').expect("Ctrl-C");
    t.expect_regex(r"\(\d+ rows, \d+ events in \d+\.\d s\)");
    t.expect("vigil> ");
    // Still alive: the catalog answers.
    t.line("\\sources");
    t.expect("sensors");
    t.expect("vigil> ");
    t.quit();
}

#[test]
fn a_background_sink_runs_while_the_prompt_is_back_and_stops_on_request() {
    let history = history_file("background");
    let mut t = Terminal::open(&history);
    t.declare_source();
    let out = std::env::temp_dir().join(format!("vigil-background-{}.jsonl", std::process::id()));
    t.line(&format!(
        "CREATE SINK hot WITH (connector = 'file', path = '{}', format = 'json');",
        out.display()
    ));
    t.expect("created sink hot");
    t.expect("vigil> ");
    t.line("CREATE SINK hot AS SELECT sensor_id, temperature FROM sensors WHERE temperature > 0;");
    t.expect("query 1 started: sink hot");
    t.expect("vigil> ");
    t.line("\\queries");
    t.expect_regex(r"1  hot +running +\d+ read \(\d+/s\), \d+ written");
    t.expect("vigil> ");
    // Its operators with live counters, refreshed twice a second: ask until rows show.
    let counted = |shown: &str, operator: &str| {
        let line = shown.lines().find(|l| l.contains(operator)).unwrap_or("");
        let number = |label: &str| -> u64 {
            let Some((_, rest)) = line.split_once(label) else {
                return 0;
            };
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().unwrap_or(0)
        };
        (
            number("[rows in "),
            number(", out "),
            line.contains("; watermark 2"),
        )
    };
    let mut shown = String::new();
    for _ in 0..50 {
        t.line("EXPLAIN ANALYZE 1;");
        shown = t.expect("vigil> ");
        if counted(&shown, "Filter: temperature > 0  [").1 > 0 {
            break;
        }
    }
    let (filter_in, filter_out, watermark) = counted(&shown, "Filter: temperature > 0  [");
    assert!(filter_in > 0 && filter_out > 0 && watermark, "{shown}");
    let (_, source_out, _) = counted(
        &shown,
        "Source: sensors watermark=ts - INTERVAL '1' SECOND  [",
    );
    assert!(source_out > 0, "{shown}");
    t.line("\\stop 1");
    t.expect("query 1 stopped");
    t.expect("vigil> ");
    // The sink wrote while the prompt was free.
    let written = std::fs::read_to_string(&out).expect("the sink's file");
    assert!(
        written.lines().count() > 0,
        "nothing written to {}",
        out.display()
    );
    assert!(
        written
            .lines()
            .all(|l| l.contains("\"sensor_id\":\"sensor-000")),
        "{written}"
    );
    t.quit();
}

#[test]
fn tab_completes_commands_names_and_columns() {
    let history = history_file("complete");
    let mut t = Terminal::open(&history);
    t.declare_source();
    // `\des` + Tab becomes `\describe `, then `sen` + Tab becomes `sensors`.
    t.keys("\\des\t");
    t.expect("\\describe");
    t.keys("sen\t");
    t.expect("sensors");
    t.line("");
    t.expect("watermark for ts as ts - INTERVAL '1' SECOND");
    t.expect("vigil> ");
    // A column of the source the statement names; the LIMIT ends the query.
    t.keys("SELECT sensor_id FROM sensors WHERE hum\t");
    t.expect("humidity");
    t.line(" >= 0 LIMIT 2;");
    t.expect("sensor_id");
    t.expect_regex(r"\(2 rows, \d+ events in");
    t.expect("vigil> ");
    t.quit();
}

#[test]
fn history_survives_a_restart_and_ctrl_r_finds_a_statement() {
    let history = history_file("history");
    let mut t = Terminal::open(&history);
    t.declare_source();
    t.line("SELECT sensor_id, temperature FROM sensors LIMIT 1;");
    t.expect_regex(r"\(1 rows, \d+ events");
    t.expect("vigil> ");
    t.quit();
    let saved = std::fs::read_to_string(&history).expect("history file written");
    assert!(saved.contains("LIMIT 1;"), "{saved}");

    let mut t = Terminal::open(&history);
    // The source declaration is one history entry, though typed on three lines: Ctrl-R finds
    // it and Enter runs it.
    t.keys("\x12");
    t.keys("WATERMARK FOR");
    t.expect("reverse-i-search");
    t.keys("\r");
    t.expect("created source sensors");
    t.expect("vigil> ");
    t.keys("\x12");
    t.keys("LIMIT 1");
    t.expect("reverse-i-search");
    t.keys("\r");
    t.expect_regex(r"\(1 rows, \d+ events");
    t.expect("vigil> ");
    // Up brings back the statement just run.
    t.keys("\x1b[A");
    t.expect("SELECT sensor_id, temperature FROM sensors LIMIT 1;");
    t.keys("\r");
    t.expect_regex(r"\(1 rows, \d+ events");
    t.expect("vigil> ");
    t.quit();
}

#[test]
fn an_error_shows_a_caret_and_a_hint_and_the_prompt_returns() {
    let history = history_file("error");
    let mut t = Terminal::open(&history);
    t.declare_source();
    t.line("SELECT sensor_id,");
    t.line("  temprature FROM sensors;");
    t.expect("error: input:2:3: column 'temprature' not found");
    t.expect("2 |   temprature FROM sensors;");
    t.expect("  |   ^");
    t.expect("help: did you mean 'sensors.temperature'?");
    t.expect("vigil> ");
    // Ctrl-C on a half-typed statement discards it.
    t.line("SELECT");
    t.keys("sensor_id");
    t.expect("sensor_id");
    t.session.send_control('c').expect("Ctrl-C");
    t.expect("vigil> ");
    t.line("\\sources");
    t.expect("sensors");
    t.expect("vigil> ");
    t.quit_with_ctrl_d();
}

#[test]
fn lines_typed_ahead_of_the_prompt_are_not_lost() {
    let history = history_file("ahead");
    let mut t = Terminal::open(&history);
    // A paste without bracketed-paste markers: every line arrives before the first prompt
    // has read its own.
    let pasted: String = SOURCE_LINES
        .iter()
        .chain(&["\\sources"])
        .map(|line| format!("{line}\r"))
        .collect();
    t.keys(&pasted);
    t.expect("created source sensors");
    t.expect("\\sources");
    t.expect("sensors");
    t.expect("vigil> ");
    t.quit();
}

#[test]
fn session_statements_and_expanded_rows_at_the_prompt() {
    let history = history_file("session");
    let mut t = Terminal::open(&history);
    t.declare_source();
    t.line("SHOW SOURCES;");
    t.expect("  sensors");
    t.expect("vigil> ");
    t.line("DESCRIBE sensors;");
    t.expect("watermark for ts");
    t.expect("vigil> ");
    t.line("\\x");
    t.expect("expanded display is on");
    t.line("SELECT sensor_id, temperature FROM sensors LIMIT 1;");
    t.expect("-[ RECORD 1 ]-");
    t.expect_regex(r"temperature \| \d");
    t.expect("vigil> ");
    t.line("SELECT 1 + 1 AS two;");
    t.expect("two | 2");
    t.expect("vigil> ");
    t.line("SET batch_size = 7;");
    t.expect("vigil> ");
    t.line("SHOW batch_size;");
    t.expect("7");
    t.expect("vigil> ");
    t.quit();
}

#[test]
fn the_arrow_keys_move_up_into_earlier_lines_of_a_statement() {
    let history = history_file("multiline");
    let mut t = Terminal::open(&history);
    // Two lines of one statement; before Enter on the second, go up and rewrite the first.
    t.line("SELECT 2 + 2 AS fuor,");
    t.keys("3 AS three;");
    t.expect("three;");
    t.keys("\x1b[A");
    t.session.send_control('a').expect("Ctrl-A");
    t.session.send_control('k').expect("Ctrl-K");
    t.keys("SELECT 2 + 2 AS four,\r");
    t.expect_regex(r"four +\| +three");
    t.expect_regex(r"4 +\| +3");
    t.expect("vigil> ");
    // The statement is one history entry, both lines, as it ran.
    t.keys("\x1b[A");
    t.expect("3 AS three;");
    t.session.send_control('c').expect("Ctrl-C");
    t.expect("vigil> ");
    t.quit();
}
