//! [`Limit`]: `LIMIT n [OFFSET m]`, which ends the query after n rows.

use super::{Context, Operator};
use crate::batch::ChangeBatch;
use crate::error::Result;

/// Passes rows `skip..skip + fetch`, then ends its output, which ends the query.
#[derive(Debug)]
pub struct Limit {
    skip: usize,
    fetch: Option<usize>,
    seen: usize,
    done: bool,
}

impl Limit {
    /// Skips `skip` rows then passes at most `fetch`.
    pub fn new(skip: usize, fetch: Option<usize>) -> Self {
        Self {
            skip,
            fetch,
            seen: 0,
            done: false,
        }
    }
}

impl Operator for Limit {
    fn new_instance(&self) -> Result<Box<dyn Operator>> {
        Ok(Box::new(Self::new(self.skip, self.fetch)))
    }

    fn name(&self) -> &'static str {
        "Limit"
    }

    fn describe(&self) -> String {
        match self.fetch {
            Some(f) => format!("skip={} fetch={f}", self.skip),
            None => format!("skip={}", self.skip),
        }
    }

    fn on_batch(&mut self, batch: ChangeBatch, ctx: &mut Context) -> Result<()> {
        if self.done {
            return Ok(());
        }
        let n = batch.num_rows();
        let start = self.skip.saturating_sub(self.seen).min(n);
        let end = match self.fetch {
            Some(f) => (self.skip + f).saturating_sub(self.seen).min(n),
            None => n,
        };
        self.seen += n;
        if end > start {
            let slice = |a: &datafusion::arrow::array::Int64Array| a.slice(start, end - start);
            ctx.emit(ChangeBatch {
                rows: batch.rows.slice(start, end - start),
                ops: batch.ops.as_ref().map(|o| o.slice(start, end - start)),
                row_watermarks: batch.row_watermarks.as_ref().map(slice),
            });
        }
        if self.fetch.is_some_and(|f| self.seen >= self.skip + f) {
            self.done = true;
            ctx.end();
        }
        Ok(())
    }
}
