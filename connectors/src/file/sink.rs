//! [`FileSink`]: results appended to a JSON-lines file.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::PathBuf;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use vigil_engine::connector::Sink;

use crate::ConnectorError;
use crate::format::encode_json_lines;

/// Writes rows as JSON lines; the file is created (or truncated) on first use.
///
/// With checkpoints the file holds every result once: a checkpoint records its length, and
/// a query resuming from it cuts the file back to that length before writing again what
/// came after. Until then, readers may see results the next checkpoint does not cover yet.
pub struct FileSink {
    path: PathBuf,
    out: Option<BufWriter<File>>,
    /// Bytes in the file, flushed or not.
    written: u64,
}

impl FileSink {
    /// A sink writing to `path`.
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            out: None,
            written: 0,
        }
    }

    fn writer(&mut self) -> Result<&mut BufWriter<File>, ConnectorError> {
        if self.out.is_none() {
            self.create_dir()?;
            let file = File::create(&self.path).map_err(|e| {
                ConnectorError::io(format!("cannot create '{}'", self.path.display()), e)
            })?;
            self.out = Some(BufWriter::new(file));
        }
        Ok(self.out.as_mut().expect("created above"))
    }

    fn create_dir(&self) -> Result<(), ConnectorError> {
        match self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            Some(dir) => std::fs::create_dir_all(dir)
                .map_err(|e| ConnectorError::io(format!("creating '{}'", dir.display()), e)),
            None => Ok(()),
        }
    }

    /// Opens the file cut back to `length` bytes, to append after them.
    fn reopen_at(&mut self, length: u64) -> Result<(), ConnectorError> {
        self.create_dir()?;
        let path = self.path.display().to_string();
        let cannot = |e| ConnectorError::io(format!("resuming '{path}' at byte {length}"), e);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.path)
            .map_err(cannot)?;
        let found = file.metadata().map_err(cannot)?.len();
        if found < length {
            return Err(ConnectorError::External(format!(
                "'{path}' has {found} bytes, fewer than the {length} its checkpoint holds: \
                 it was changed outside Vigil"
            )));
        }
        file.set_len(length).map_err(cannot)?;
        let mut out = BufWriter::new(file);
        out.seek(SeekFrom::End(0)).map_err(cannot)?;
        self.out = Some(out);
        self.written = length;
        Ok(())
    }
}

#[async_trait]
impl Sink for FileSink {
    /// Cut back to its checkpointed length after a crash: one writer only.
    fn single_writer(&self) -> bool {
        true
    }

    async fn write(&mut self, batch: RecordBatch) -> Result<(), ConnectorError> {
        let bytes = encode_json_lines(&batch)?;
        let path = self.path.display().to_string();
        self.writer()?
            .write_all(&bytes)
            .map_err(|e| ConnectorError::io(format!("writing '{path}'"), e))?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), ConnectorError> {
        let path = self.path.display().to_string();
        self.writer()?
            .flush()
            .map_err(|e| ConnectorError::io(format!("flushing '{path}'"), e))
    }

    async fn pre_commit(&mut self) -> Result<Option<u64>, ConnectorError> {
        self.flush().await?;
        Ok(Some(self.written))
    }

    async fn restore(&mut self, position: Option<u64>) -> Result<(), ConnectorError> {
        match position {
            Some(length) => self.reopen_at(length),
            None => Ok(()),
        }
    }
}
