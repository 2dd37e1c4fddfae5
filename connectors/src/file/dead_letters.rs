//! [`FileDeadLetters`]: rows an expression failed on, appended to a source's
//! `dead_letter_path` as JSON lines next to its malformed lines.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use vigil_engine::connector::Sink;

use crate::ConnectorError;
use crate::format::rejected_rows;

/// Appends each rejected row as `{"source", "query", "operator", "error", "row"}`.
pub struct FileDeadLetters {
    path: PathBuf,
    out: Option<File>,
}

impl FileDeadLetters {
    /// Dead letters appended to `path`, opened on the first one.
    pub fn new(path: PathBuf) -> Self {
        Self { path, out: None }
    }
}

/// Opens `path` for appending, creating it and its directory: dead letters of a source and
/// of the queries over it share the file, and none may overwrite another.
pub(crate) fn open_append(path: &Path) -> Result<File, ConnectorError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| ConnectorError::io(format!("creating '{}'", dir.display()), e))?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| {
            ConnectorError::io(
                format!("cannot open dead-letter file '{}'", path.display()),
                e,
            )
        })
}

#[async_trait]
impl Sink for FileDeadLetters {
    async fn write(&mut self, batch: RecordBatch) -> Result<(), ConnectorError> {
        let mut lines = Vec::new();
        for row in rejected_rows(&batch)? {
            lines.extend_from_slice(row.to_json().to_string().as_bytes());
            lines.push(b'\n');
        }
        if self.out.is_none() {
            self.out = Some(open_append(&self.path)?);
        }
        let out = self.out.as_mut().expect("opened above");
        // One write per batch: lines of the source's own dead letters never interleave.
        out.write_all(&lines)
            .map_err(|e| ConnectorError::io("writing a dead letter", e))
    }

    async fn flush(&mut self) -> Result<(), ConnectorError> {
        match &mut self.out {
            Some(out) => out
                .flush()
                .map_err(|e| ConnectorError::io("flushing dead letters", e)),
            None => Ok(()),
        }
    }
}
