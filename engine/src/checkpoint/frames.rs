//! The state file of an epoch: every node's state batches as Arrow IPC streams, one stream
//! per batch (batches of one operator may differ in schema metadata), each framed by the
//! node it belongs to and its length.
//!
//! ```text
//! "VGLSTATE" then, per batch:  node (u32 LE) · length (u64 LE) · Arrow IPC stream
//! ```

use std::io::Cursor;

use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::record_batch::RecordBatch;

use crate::error::{Error, Result};

const MAGIC: &[u8; 8] = b"VGLSTATE";

/// Encodes the state batches of each node, in node order.
pub fn encode(nodes: &[&[RecordBatch]]) -> Result<Vec<u8>> {
    let mut out = MAGIC.to_vec();
    for (node, batches) in nodes.iter().enumerate() {
        for batch in batches.iter() {
            let mut stream = Vec::new();
            let mut writer = StreamWriter::try_new(&mut stream, &batch.schema())?;
            writer.write(batch)?;
            writer.finish()?;
            drop(writer);
            out.extend_from_slice(&(node as u32).to_le_bytes());
            out.extend_from_slice(&(stream.len() as u64).to_le_bytes());
            out.extend_from_slice(&stream);
        }
    }
    Ok(out)
}

/// Decodes a state file of `nodes` nodes back into each node's batches.
pub fn decode(bytes: &[u8], nodes: usize) -> Result<Vec<Vec<RecordBatch>>> {
    let damaged = |what: &str| Error::State(format!("state file: {what}"));
    let mut rest = bytes
        .strip_prefix(MAGIC.as_slice())
        .ok_or_else(|| damaged("not a Vigil state file"))?;
    let mut out = vec![Vec::new(); nodes];
    while !rest.is_empty() {
        if rest.len() < 12 {
            return Err(damaged("truncated frame header"));
        }
        let node = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
        let len = u64::from_le_bytes(rest[4..12].try_into().expect("8 bytes"));
        let len = usize::try_from(len).map_err(|_| damaged("frame too long"))?;
        rest = &rest[12..];
        if rest.len() < len {
            return Err(damaged("truncated frame"));
        }
        let slot = out
            .get_mut(node)
            .ok_or_else(|| damaged("frame of a node the plan does not have"))?;
        let reader = StreamReader::try_new(Cursor::new(&rest[..len]), None)?;
        for batch in reader {
            slot.push(batch?);
        }
        rest = &rest[len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn batch(tag: &str, values: Vec<i64>) -> RecordBatch {
        let metadata = HashMap::from([("tag".to_string(), tag.to_string())]);
        let schema = Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("v", DataType::Int64, false),
        ])
        .with_metadata(metadata);
        let keys: Vec<String> = values.iter().map(|v| format!("k{v}")).collect();
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(StringArray::from(keys)),
                Arc::new(Int64Array::from(values)),
            ],
        )
        .unwrap()
    }

    #[test]
    fn batches_come_back_to_their_nodes_with_their_metadata() {
        let (a, b, c) = (
            batch("a", vec![1, 2]),
            batch("b", vec![]),
            batch("c", vec![3]),
        );
        let bytes = encode(&[&[a.clone(), b.clone()], &[], std::slice::from_ref(&c)]).unwrap();
        let decoded = decode(&bytes, 3).unwrap();
        assert_eq!(decoded, vec![vec![a, b], vec![], vec![c]]);
    }

    #[test]
    fn a_truncated_file_is_an_error_not_a_short_state() {
        let bytes = encode(&[&[batch("a", vec![1, 2, 3])]]).unwrap();
        for cut in [3, 10, bytes.len() - 1] {
            assert!(decode(&bytes[..cut], 1).is_err(), "cut at {cut}");
        }
    }
}
