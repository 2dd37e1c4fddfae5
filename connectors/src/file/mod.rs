//! The `file` connector: JSON-lines files.
//!
//! As a source (bounded): `path`, `format = 'json'`, `dead_letter_path` (malformed lines go
//! there as JSON with file, line and error), `timestamp_unit` (of epoch numbers in timestamp
//! fields: `second`, `millisecond` (the default), `microsecond`, `nanosecond`). As a sink: `path`, `format = 'json'`; rows are
//! flushed as they are emitted, so `tail -f` shows alerts at once.

mod dead_letters;
mod sink;
mod source;

use datafusion::arrow::datatypes::SchemaRef;
use vigil_engine::connector::{ConnectorFactory, Sink, Source, SourceContext};
use vigil_engine::sql::Options;

pub use dead_letters::FileDeadLetters;
pub use sink::FileSink;
pub use source::FileSource;

use crate::ConnectorError;
use crate::format::{JsonDecoder, timestamp_unit};

/// Factory of the `file` connector.
#[derive(Debug, Default)]
pub struct FileFactory;

fn check_format(format: Option<String>) -> Result<(), ConnectorError> {
    match format.as_deref() {
        None | Some("json") => Ok(()),
        Some(other) => Err(ConnectorError::config(
            "format",
            format!("'{other}' is not supported; use 'json'"),
        )),
    }
}

impl ConnectorFactory for FileFactory {
    fn name(&self) -> &'static str {
        "file"
    }

    fn create_source(
        &self,
        options: &Options,
        schema: SchemaRef,
        ctx: SourceContext,
    ) -> Result<Box<dyn Source>, ConnectorError> {
        let mut r = options.reader();
        let path = r.require("path")?;
        check_format(r.take("format"))?;
        let dead_letters = r.take("dead_letter_path");
        let unit = timestamp_unit(r.take("timestamp_unit"))?;
        r.finish()?;
        let read = ctx.reads(schema.fields().len());
        let decoder = JsonDecoder::reading(schema, ctx.batch_size, unit, &read);
        Ok(Box::new(FileSource::new(
            path.into(),
            dead_letters.map(Into::into),
            decoder,
            ctx,
        )))
    }

    fn create_dead_letter_sink(
        &self,
        options: &Options,
    ) -> Result<Option<Box<dyn Sink>>, ConnectorError> {
        Ok(options
            .get("dead_letter_path")
            .map(|path| Box::new(FileDeadLetters::new(path.into())) as Box<dyn Sink>))
    }

    fn create_sink(
        &self,
        options: &Options,
        _schema: SchemaRef,
    ) -> Result<Box<dyn Sink>, ConnectorError> {
        let mut r = options.reader();
        let path = r.require("path")?;
        check_format(r.take("format"))?;
        r.finish()?;
        Ok(Box::new(FileSink::new(path.into())))
    }
}
