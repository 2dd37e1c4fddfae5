//! [`FileSink`]: results appended to a JSON-lines file.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use vigil_engine::connector::Sink;

use crate::ConnectorError;
use crate::format::encode_json_lines;

/// Writes rows as JSON lines; the file is created (or truncated) on first use.
pub struct FileSink {
    path: PathBuf,
    out: Option<BufWriter<File>>,
}

impl FileSink {
    /// A sink writing to `path`.
    pub fn new(path: PathBuf) -> Self {
        Self { path, out: None }
    }

    fn writer(&mut self) -> Result<&mut BufWriter<File>, ConnectorError> {
        if self.out.is_none() {
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| ConnectorError::io(format!("creating '{}'", dir.display()), e))?;
            }
            let file = File::create(&self.path).map_err(|e| {
                ConnectorError::io(format!("cannot create '{}'", self.path.display()), e)
            })?;
            self.out = Some(BufWriter::new(file));
        }
        Ok(self.out.as_mut().expect("created above"))
    }
}

#[async_trait]
impl Sink for FileSink {
    async fn write(&mut self, batch: RecordBatch) -> Result<(), ConnectorError> {
        let bytes = encode_json_lines(&batch)?;
        let path = self.path.display().to_string();
        self.writer()?
            .write_all(&bytes)
            .map_err(|e| ConnectorError::io(format!("writing '{path}'"), e))
    }

    async fn flush(&mut self) -> Result<(), ConnectorError> {
        let path = self.path.display().to_string();
        self.writer()?
            .flush()
            .map_err(|e| ConnectorError::io(format!("flushing '{path}'"), e))
    }
}
