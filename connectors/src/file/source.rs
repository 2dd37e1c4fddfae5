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
    /// Decoded batches, each with the file offset after its lines when it is the last of
    /// its piece (see [`FileSource::decode_piece`]).
    ready: VecDeque<(RecordBatch, Option<u64>)>,
    /// Where the source stands after the batch returned last, when it can say.
    position: Option<u64>,

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
            position: Some(0),

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
        let mut added_newline = false;
        if read == 0 {
            self.eof = true;
            if !buf.is_empty() && buf.last() != Some(&b'\n') {
                buf.push(b'\n');
                added_newline = true;
            }
        }
        let complete = match memchr::memrchr(b'\n', &buf) {
            Some(pos) => pos + 1,
            None if self.eof => buf.len(),
            None => {
                self.carry = buf;
                return Ok(());
            }
        };
        self.carry = buf.split_off(complete);
        // Where the complete lines end in the file, and so where `buf` starts.
        let end = self.read_to - self.carry.len() as u64;
        let start = end + u64::from(added_newline) - buf.len() as u64;
        let mut at = 0;
        while at < buf.len() {
            let (length, lines) = first_lines(&buf[at..], self.ctx.batch_size.max(1));
            let piece = at + length;
            let piece_end = (start + piece as u64).min(end);
            self.decode_piece(&buf[at..piece], piece_end)?;
            self.line_base += lines;
            at = piece;
        }
        Ok(())
    }

    /// Decodes up to a batch of lines ending at byte `end` of the file: the batch can then
    /// say where the source stands after it.
    fn decode_piece(&mut self, lines: &[u8], end: u64) -> Result<(), ConnectorError> {
        let (batches, bad) = self.decoder.decode(lines)?;
        let last = batches.len().saturating_sub(1);
        for (i, batch) in batches.into_iter().enumerate() {
            self.ready.push_back((batch, (i == last).then_some(end)));
        }
        if !bad.is_empty() {
            let split: Vec<&[u8]> = lines.split(|b| *b == b'\n').collect();
            for record in &bad {
                let line_no = self.line_base + record.index + 1;
                self.dead_letter(
                    line_no,
                    &record.error,
                    split.get(record.index).copied().unwrap_or_default(),
                )?;
            }
        }
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

/// The first `lines` lines of `bytes`, which ends with a newline: their length and how many
/// there are (fewer when `bytes` has fewer).
fn first_lines(bytes: &[u8], lines: usize) -> (usize, usize) {
    let mut seen = 0;
    for i in memchr::memchr_iter(b'\n', bytes) {
        seen += 1;
        if seen == lines {
            return (i + 1, seen);
        }
    }
    (bytes.len(), seen)
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
        lines += memchr::memchr_iter(b'\n', buf).count();
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
        let Some((batch, after)) = self.ready.pop_front() else {
            return Ok(SourceEvent::End);
        };
        // Lines that decoded to no row at all (blank or bad) before this batch's own were
        // read too: the offset after them is only known at a piece's last batch.
        self.position = after;
        Ok(SourceEvent::Batch(batch))
    }

    /// The byte after the lines of the batch returned last (batches are decoded a batch of
    /// lines at a time, so each knows where its lines end).
    fn position(&self) -> Option<SourcePosition> {
        self.position.map(|p| SourcePosition::single(p as i64))
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
        self.position = Some(offset);
        // Past the start, a byte-order mark was already skipped.
        self.started = offset > 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{AsArray, Int64Array};
    use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use vigil_engine::connector::Delivered;
    use vigil_engine::runtime::QueryMetrics;

    use super::*;

    fn source(path: &std::path::Path) -> FileSource {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)]));
        let ctx = SourceContext {
            name: "s".into(),
            metrics: Arc::new(QueryMetrics::default()),
            batch_size: 3,
            query: "q".into(),
            delivered: Arc::new(Delivered::default()),
            read_columns: None,
            split_state: false,
            table_key: Vec::new(),
        };
        FileSource::new(path.to_path_buf(), None, JsonDecoder::new(schema, 3), ctx)
    }

    /// Every batch's values with the position after it.
    async fn read_all(source: &mut FileSource) -> Vec<(Vec<i64>, Option<i64>)> {
        let mut out = Vec::new();
        while let SourceEvent::Batch(batch) = source.next_batch(Duration::ZERO).await.unwrap() {
            let values: &Int64Array = batch.column(0).as_primitive::<Int64Type>();
            let position = source.position().and_then(|p| p.splits.get(&0).copied());
            out.push((values.values().to_vec(), position));
        }
        out
    }

    #[tokio::test]
    async fn every_batch_knows_where_its_lines_end_and_a_restore_continues_there() {
        let path =
            std::env::temp_dir().join(format!("vigil-file-pos-{}.jsonl", std::process::id()));
        // Eight lines, one malformed and one blank, the last without a newline.
        let text = "{\"v\":1}\n{\"v\":2}\nnot json\n{\"v\":3}\n\n{\"v\":4}\n{\"v\":5}\n{\"v\":6}";
        std::fs::write(&path, text).unwrap();
        let batches = read_all(&mut source(&path)).await;
        let after = |line: usize| {
            text.split_inclusive('\n')
                .take(line)
                .map(str::len)
                .sum::<usize>() as i64
        };
        assert_eq!(
            batches,
            vec![
                (vec![1, 2], Some(after(3))),
                (vec![3, 4], Some(after(6))),
                (vec![5], Some(after(7))),
                // The last line, without its newline, once the end shows it is complete.
                (vec![6], Some(text.len() as i64)),
            ]
        );
        let mut resumed = source(&path);
        resumed
            .restore(SourcePosition::single(after(3)))
            .await
            .unwrap();
        assert_eq!(read_all(&mut resumed).await, batches[1..].to_vec());
        let _ = std::fs::remove_file(&path);
    }
}
