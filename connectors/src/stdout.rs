//! The `stdout` connector: results on standard output, as an aligned table (`format =
//! 'table'`, the default) or JSON lines (`format = 'json'`). `title = '...'` prefixes each
//! table with a line naming the rule.
//!
//! A closed standard output (`vigil demo | head`) is the reader's way of saying it has
//! seen enough, not an error: [`print`] notes it, rows for it are dropped, and
//! [`stdout_closed`] tells the command to stop its queries and exit quietly.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use vigil_engine::connector::{ConnectorFactory, Sink};
use vigil_engine::sql::Options;

use crate::ConnectorError;
use crate::format::{encode_json_lines, format_table};

/// Set once a write found standard output closed.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Whether standard output was found closed: whoever read it has gone.
pub fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::Relaxed)
}

/// Writes `bytes` to standard output and flushes; a closed output is noted (see
/// [`stdout_closed`]) and not an error.
pub fn print(bytes: &[u8]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            STDOUT_CLOSED.store(true, Ordering::Relaxed);
            Ok(())
        }
        other => other,
    }
}

/// How rows are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StdoutFormat {
    /// Aligned table with a header per emission.
    Table,
    /// One JSON object per line.
    Json,
}

/// Factory of the `stdout` connector.
#[derive(Debug, Default)]
pub struct StdoutFactory;

impl ConnectorFactory for StdoutFactory {
    fn name(&self) -> &'static str {
        "stdout"
    }

    fn create_sink(
        &self,
        options: &Options,
        _schema: SchemaRef,
    ) -> Result<Box<dyn Sink>, ConnectorError> {
        let mut r = options.reader();
        let format = match r.take("format").as_deref() {
            None | Some("table") => StdoutFormat::Table,
            Some("json") => StdoutFormat::Json,
            Some(other) => {
                return Err(ConnectorError::config(
                    "format",
                    format!("'{other}' is not 'table' or 'json'"),
                ));
            }
        };
        let title = r.take("title");
        r.finish()?;
        Ok(Box::new(StdoutSink { format, title }))
    }
}

/// Prints rows to standard output.
#[derive(Debug)]
pub struct StdoutSink {
    format: StdoutFormat,
    title: Option<String>,
}

impl StdoutSink {
    /// A sink printing in `format`.
    pub fn new(format: StdoutFormat) -> Self {
        Self {
            format,
            title: None,
        }
    }
}

#[async_trait]
impl Sink for StdoutSink {
    async fn write(&mut self, batch: RecordBatch) -> Result<(), ConnectorError> {
        let mut text = match self.format {
            StdoutFormat::Json => encode_json_lines(&batch)?,
            StdoutFormat::Table => {
                format!("{}\n", format_table(std::slice::from_ref(&batch))?).into_bytes()
            }
        };
        if let Some(title) = &self.title {
            let prefix = match self.format {
                StdoutFormat::Table => format!("{title}\n"),
                StdoutFormat::Json => String::new(),
            };
            text.splice(0..0, prefix.into_bytes());
        }
        print(&text).map_err(|e| ConnectorError::io("writing to stdout", e))
    }

    async fn flush(&mut self) -> Result<(), ConnectorError> {
        // `print` flushes each write.
        Ok(())
    }
}
