//! [`FileSource`]: a JSON-lines file, read in large chunks and decoded with arrow-json.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use vigil_engine::connector::{Source, SourceContext, SourceEvent, SourcePosition};

use crate::ConnectorError;
use crate::format::JsonDecoder;

/// Bytes read per chunk; decoding works on whole chunks. About a batch of lines: a chunk
/// and the rows decoded from it are held at once, per source.
const CHUNK_BYTES: usize = 1 << 20;

/// Reads a JSON-lines file to its end. Malformed lines are counted, logged with file and line
/// number, written to the dead-letter file when there is one, and skipped.
pub struct FileSource {
    path: PathBuf,
    dead_letter_path: Option<PathBuf>,
    decoder: JsonDecoder,
    ctx: SourceContext,
    file: Option<File>,
    dead_letters: Option<File>,
    /// Bytes read but not yet decoded (an incomplete last line).
    carry: Vec<u8>,
    /// Lines before `carry`.
    line_base: usize,
    /// Bytes read from the file; the lines decoded so far end `carry.len()` before.
    read_to: u64,
    ready: VecDeque<RecordBatch>,
    /// Whether the file's first bytes were read (and a byte-order mark skipped).
    started: bool,
    eof: bool,
}

/// The UTF-8 byte-order mark some editors put at the start of a file.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

impl FileSource {
    /// A source over `path`; nothing is opened until the first read.
    pub fn new(
        path: PathBuf,
        dead_letter_path: Option<PathBuf>,
        decoder: JsonDecoder,
        ctx: SourceContext,
    ) -> Self {
        Self {
            path,
            dead_letter_path,
            decoder,
            ctx,
            file: None,
            dead_letters: None,
            carry: Vec::new(),
            line_base: 0,
            read_to: 0,
            ready: VecDeque::new(),
            started: false,
            eof: false,
        }
    }

    fn open(&mut self) -> Result<(), ConnectorError> {
        if self.file.is_none() {
            let file = File::open(&self.path).map_err(|e| {
                ConnectorError::io(format!("cannot open '{}'", self.path.display()), e)
            })?;
            self.file = Some(file);
        }
        Ok(())
    }

    /// Reads the next chunk and decodes its complete lines.
    fn read_chunk(&mut self) -> Result<(), ConnectorError> {
        self.open()?;
        let file = self.file.as_mut().expect("opened above");
        let mut buf = std::mem::take(&mut self.carry);
        let start = buf.len();
        buf.resize(start + CHUNK_BYTES, 0);
        let read = file
            .read(&mut buf[start..])
            .map_err(|e| ConnectorError::io(format!("reading '{}'", self.path.display()), e))?;
        buf.truncate(start + read);
        self.read_to += read as u64;
        if !self.started {
            // A byte-order mark is no part of the first record.
            self.started = true;
            if buf.starts_with(UTF8_BOM) {
                buf.drain(..UTF8_BOM.len());
            }
        }
        if read == 0 {
            self.eof = true;
            if !buf.is_empty() && buf.last() != Some(&b'\n') {
                buf.push(b'\n');
            }
        }
        let complete = match buf.iter().rposition(|b| *b == b'\n') {
            Some(pos) => pos + 1,
            None if self.eof => buf.len(),
            None => {
                self.carry = buf;
                return Ok(());
            }
        };
        self.carry = buf.split_off(complete);
        let (batches, bad) = self.decoder.decode(&buf)?;
        self.ready.extend(batches);
        if !bad.is_empty() {
            let lines: Vec<&[u8]> = buf.split(|b| *b == b'\n').collect();
            for record in &bad {
                let line_no = self.line_base + record.index + 1;
                self.dead_letter(
                    line_no,
                    &record.error,
                    lines.get(record.index).copied().unwrap_or_default(),
                )?;
            }
        }
        self.line_base += buf.iter().filter(|b| **b == b'\n').count();
        Ok(())
    }

    fn dead_letter(&mut self, line: usize, error: &str, raw: &[u8]) -> Result<(), ConnectorError> {
        if self.ctx.metrics.add_dead_letter() {
            tracing::warn!(source = %self.ctx.name, file = %self.path.display(), line, error, "malformed record set aside (counted in dead_letters)");
        }
        let Some(path) = &self.dead_letter_path else {
            return Ok(());
        };
        if self.dead_letters.is_none() {
            self.dead_letters = Some(super::dead_letters::open_append(path)?);
        }
        let record = serde_json::json!({
            "source": self.ctx.name,
            "file": self.path.display().to_string(),
            "line": line,
            "error": error,
            "raw": String::from_utf8_lossy(raw),
        });
        let out = self.dead_letters.as_mut().expect("created above");
        // One write a line, so the lines of the query's dead letters never interleave.
        out.write_all(format!("{record}\n").as_bytes())
            .map_err(|e| ConnectorError::io("writing a dead letter", e))
    }
}

/// Newlines in the first `bytes` bytes of `file`, which must have that many.
fn count_lines(file: &File, bytes: u64) -> std::io::Result<usize> {
    let mut reader = BufReader::with_capacity(CHUNK_BYTES, file.take(bytes));
    let (mut lines, mut seen) = (0, 0u64);
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        lines += buf.iter().filter(|b| **b == b'\n').count();
        seen += buf.len() as u64;
        let n = buf.len();
        reader.consume(n);
    }
    if seen < bytes {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("the file has {seen} bytes, fewer than the {bytes} already read"),
        ));
    }
    Ok(lines)
}

#[async_trait]
impl Source for FileSource {
    async fn next_batch(&mut self, _max_wait: Duration) -> Result<SourceEvent, ConnectorError> {
        while self.ready.is_empty() && !self.eof {
            self.read_chunk()?;
        }
        Ok(self
            .ready
            .pop_front()
            .map_or(SourceEvent::End, SourceEvent::Batch))
    }

    /// The end of the last chunk, once its last batch was returned: checkpoints are taken
    /// at chunk boundaries.
    fn position(&self) -> Option<SourcePosition> {
        self.ready
            .is_empty()
            .then(|| SourcePosition::single((self.read_to - self.carry.len() as u64) as i64))
    }

    async fn restore(&mut self, position: SourcePosition) -> Result<(), ConnectorError> {
        let offset = position.splits.get(&0).copied().unwrap_or(0).max(0) as u64;
        self.open()?;
        let path = self.path.display().to_string();
        let file = self.file.as_mut().expect("opened above");
        let resumed = count_lines(file, offset).and_then(|lines| {
            file.seek(SeekFrom::Start(offset))?;
            Ok(lines)
        });
        self.line_base = resumed
            .map_err(|e| ConnectorError::io(format!("resuming '{path}' at byte {offset}"), e))?;
        self.read_to = offset;
        // Past the start, a byte-order mark was already skipped.
        self.started = offset > 0;
        Ok(())
    }
}
