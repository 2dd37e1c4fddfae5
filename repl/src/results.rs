//! A foreground query's output: rows on standard output as a streaming table or JSON lines,
//! and, on a terminal, a status line on standard error kept below them.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::temporal_conversions::timestamp_ns_to_datetime;
use vigil_connectors::format::encode_json_lines;
use vigil_connectors::stdout::StdoutFormat;
use vigil_engine::connector::{ConnectorError, Sink};
use vigil_engine::runtime::MetricsSnapshot;
use vigil_engine::time::WATERMARK_MIN;

use crate::ReplError;
use crate::live_table::LiveTable;
use crate::settings::ResultMode;
use crate::table::StreamingTable;

/// Erases the terminal line the cursor is on.
const CLEAR_LINE: &str = "\r\x1b[2K";

/// Prints a query's rows and keeps its status line; shared by the query's sink and the
/// ticker that refreshes the status.
#[derive(Clone)]
pub struct ResultWriter {
    inner: Arc<Mutex<Output>>,
}

/// How a foreground query's rows are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Display {
    /// Table or JSON lines.
    pub format: StdoutFormat,
    /// Tables with one field per line.
    pub expanded: bool,
    /// An updating query's changes, or its current rows redrawn in place.
    pub result_mode: ResultMode,
}

struct Output {
    display: Display,
    table: StreamingTable,
    /// In table result mode, the updating query's current rows.
    live: Option<LiveTable>,
    /// Whether the live table is redrawn as it changes (a terminal) or printed at the end.
    redraw: bool,
    /// Whether a status line is drawn (standard error is a terminal).
    status_line: bool,
    /// The status line on screen, if any.
    status: Option<String>,
    /// The widest a status line may be without wrapping.
    columns: usize,
}

impl ResultWriter {
    /// Prints as `display` says; a table repeats its header every `page_rows` rows. With
    /// `status_line` (a terminal), [`ResultWriter::show_status`] draws a line of progress
    /// under the rows, and a live table is redrawn as it changes rather than printed once
    /// at the end.
    pub fn new(display: Display, page_rows: Option<usize>, status_line: bool) -> Self {
        let columns = crate::terminal::size().map_or(80, |(columns, _)| columns);
        let live = (display.result_mode == ResultMode::Table).then(LiveTable::default);
        Self {
            inner: Arc::new(Mutex::new(Output {
                display,
                table: StreamingTable::new(page_rows),
                live,
                redraw: status_line,
                status_line,
                status: None,
                columns,
            })),
        }
    }

    /// A sink writing through this writer.
    pub fn sink(&self) -> Box<dyn Sink> {
        Box::new(ResultSink(self.clone()))
    }

    /// Prints a batch's rows, above the status line.
    pub fn print(&self, batch: &RecordBatch) -> Result<(), ReplError> {
        let mut output = self.inner.lock().expect("output lock");
        let text = output.text_of(batch)?;
        if !text.is_empty() {
            output.write(&text)?;
        }
        Ok(())
    }

    /// The query ended: a live table not redrawn as it changed is printed now.
    pub fn finish(&self) -> Result<(), ReplError> {
        let mut output = self.inner.lock().expect("output lock");
        if output.redraw {
            return Ok(());
        }
        if let Some(text) = output.live.as_ref().map(LiveTable::render) {
            output.write(&text)?;
        }
        Ok(())
    }

    /// Replaces the status line, when there is one.
    pub fn show_status(&self, text: &str) {
        let mut output = self.inner.lock().expect("output lock");
        if !output.status_line {
            return;
        }
        let text: String = text
            .chars()
            .take(output.columns.saturating_sub(1))
            .collect();
        draw_status(&text);
        output.status = Some(text);
    }

    /// Removes the status line.
    pub fn clear_status(&self) {
        let mut output = self.inner.lock().expect("output lock");
        if output.status.take().is_some() {
            erase_status();
        }
    }
}

impl Output {
    /// What a batch prints as: table rows, expanded records, JSON lines, or, for a live
    /// table, the whole table redrawn (nothing when it is printed at the end).
    fn text_of(&mut self, batch: &RecordBatch) -> Result<String, ReplError> {
        // Batches of an updating query carry their change kinds in a first column `op`.
        let changelog = batch.num_columns() > 0 && batch.schema().field(0).name() == "op";
        if let (Some(live), true) = (&mut self.live, changelog) {
            live.apply(batch)?;
            // Home and clear the screen, then the table as it stands.
            return Ok(if self.redraw {
                format!("\x1b[H\x1b[2J{}", live.render())
            } else {
                String::new()
            });
        }
        match (self.display.format, self.display.expanded) {
            (StdoutFormat::Table, false) => self.table.render(batch),
            (StdoutFormat::Table, true) => self.table.render_expanded(batch),
            (StdoutFormat::Json, _) => String::from_utf8(
                encode_json_lines(batch).map_err(|e| ReplError::Output(e.to_string()))?,
            )
            .map_err(|e| ReplError::Output(e.to_string())),
        }
    }

    /// Writes `text` above the status line.
    fn write(&mut self, text: &str) -> Result<(), ReplError> {
        let status = self.status.take();
        if status.is_some() {
            erase_status();
        }
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(text.as_bytes())?;
        stdout.flush()?;
        if let Some(status) = status {
            draw_status(&status);
            self.status = Some(status);
        }
        Ok(())
    }
}

fn draw_status(text: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = write!(stderr, "{CLEAR_LINE}{text}");
    let _ = stderr.flush();
}

fn erase_status() {
    let mut stderr = std::io::stderr().lock();
    let _ = write!(stderr, "{CLEAR_LINE}");
    let _ = stderr.flush();
}

struct ResultSink(ResultWriter);

#[async_trait]
impl Sink for ResultSink {
    async fn write(&mut self, batch: RecordBatch) -> Result<(), ConnectorError> {
        self.0
            .print(&batch)
            .map_err(|e| ConnectorError::Format(e.to_string()))
    }

    async fn flush(&mut self) -> Result<(), ConnectorError> {
        Ok(())
    }
}

/// Progress of a running query, as the status line and the closing summary show it.
#[derive(Debug)]
pub struct Progress {
    started: Instant,
    last: (Instant, u64),
}

impl Progress {
    /// Progress from now.
    pub fn start() -> Self {
        let now = Instant::now();
        Self {
            started: now,
            last: (now, 0),
        }
    }

    /// The status line for `m`: events read, the rate since the last call, the watermark,
    /// rows out, late events and dead letters.
    pub fn status(&mut self, m: &MetricsSnapshot) -> String {
        let now = Instant::now();
        let (then, events_then) = self.last;
        let seconds = now.duration_since(then).as_secs_f64();
        let rate = if seconds > 0.0 {
            (m.events_in.saturating_sub(events_then)) as f64 / seconds
        } else {
            0.0
        };
        self.last = (now, m.events_in);
        format!(
            "{} events | {}/s | watermark {} | {} rows | {} late | {} dead letters",
            m.events_in,
            rate.round(),
            watermark_text(m.watermark),
            m.rows_out,
            m.late_events,
            m.set_aside()
        )
    }

    /// One line summing up a finished query.
    pub fn summary(&self, m: &MetricsSnapshot) -> String {
        let seconds = self.started.elapsed().as_secs_f64();
        let mut text = format!(
            "({} rows, {} events in {seconds:.1} s",
            m.rows_out, m.events_in
        );
        if m.late_events > 0 || m.set_aside() > 0 {
            text.push_str(&format!(
                "; {} late, {} dead letters",
                m.late_events,
                m.set_aside()
            ));
        }
        text.push(')');
        text
    }
}

/// A watermark as a UTC time (the time of day alone when it is today), or `none` before the
/// first one.
pub fn watermark_text(watermark: i64) -> String {
    if watermark == WATERMARK_MIN {
        return "none".into();
    }
    let Some(time) = timestamp_ns_to_datetime(watermark) else {
        return watermark.to_string();
    };
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    let today = timestamp_ns_to_datetime(now_ns).map(|now| now.date());
    if today == Some(time.date()) {
        time.format("%H:%M:%S").to_string()
    } else {
        time.format("%Y-%m-%d %H:%M:%S").to_string()
    }
}
