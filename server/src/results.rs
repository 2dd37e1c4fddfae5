//! [`ResultHub`]: a query's rows fanned out to every client watching it. Publishing never
//! waits for a client: each has a bounded buffer, and one that falls behind is sent a gap
//! marker instead of slowing the query.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use tokio::sync::broadcast;
use vigil_connectors::format::encode_json_lines;
use vigil_engine::ChangeBatch;
use vigil_engine::connector::{ConnectorError, Sink};

/// Rows kept for clients that connect after they were emitted.
const REPLAY_ROWS: usize = 1000;

/// What a results client receives.
#[derive(Debug, Clone)]
pub enum ResultEvent {
    /// One result row as a JSON object, with its change kind in `op`.
    Row(Arc<str>),
    /// The client fell behind and `0` rows were skipped.
    Gap(u64),
    /// The query ended; the text is its final status.
    End(Arc<str>),
}

/// Fans one query's rows out to its clients.
#[derive(Debug)]
pub struct ResultHub {
    sender: broadcast::Sender<ResultEvent>,
    /// The latest rows and the end, replayed to late subscribers; the lock also orders
    /// publishing against subscribing, so a subscriber sees each row exactly once.
    history: Mutex<History>,
}

#[derive(Debug, Default)]
struct History {
    recent: VecDeque<Arc<str>>,
    end: Option<Arc<str>>,
}

/// A client's view: the replayed rows, then the live ones.
pub struct Subscription {
    /// Rows emitted before the client came, oldest first (and the end, if reached).
    pub replay: Vec<ResultEvent>,
    /// Rows from now on; `None` when the query had already ended.
    pub live: Option<broadcast::Receiver<ResultEvent>>,
}

impl ResultHub {
    /// A hub giving each client a buffer of `client_buffer` events.
    pub fn new(client_buffer: usize) -> Arc<Self> {
        let (sender, _) = broadcast::channel(client_buffer.max(1));
        Arc::new(Self {
            sender,
            history: Mutex::default(),
        })
    }

    /// Publishes rows; never waits for clients.
    pub fn publish(&self, rows: Vec<Arc<str>>) {
        let mut history = self.history.lock().expect("results lock");
        for row in rows {
            if history.recent.len() == REPLAY_ROWS {
                history.recent.pop_front();
            }
            history.recent.push_back(Arc::clone(&row));
            // No receivers is not an error: nobody is watching.
            let _ = self.sender.send(ResultEvent::Row(row));
        }
    }

    /// Marks the end of the results with the query's final status.
    pub fn end(&self, status: &str) {
        let mut history = self.history.lock().expect("results lock");
        let status: Arc<str> = Arc::from(status);
        history.end = Some(Arc::clone(&status));
        let _ = self.sender.send(ResultEvent::End(status));
    }

    /// Subscribes a client.
    pub fn subscribe(&self) -> Subscription {
        let history = self.history.lock().expect("results lock");
        let mut replay: Vec<ResultEvent> = history
            .recent
            .iter()
            .map(|row| ResultEvent::Row(Arc::clone(row)))
            .collect();
        match &history.end {
            Some(status) => {
                replay.push(ResultEvent::End(Arc::clone(status)));
                Subscription { replay, live: None }
            }
            None => Subscription {
                replay,
                live: Some(self.sender.subscribe()),
            },
        }
    }

    /// A sink publishing to this hub, in front of `inner` when the query also has a sink of
    /// its own.
    pub fn sink(self: &Arc<Self>, inner: Option<Box<dyn Sink>>) -> Box<dyn Sink> {
        Box::new(HubSink {
            hub: Arc::clone(self),
            inner,
        })
    }
}

struct HubSink {
    hub: Arc<ResultHub>,
    inner: Option<Box<dyn Sink>>,
}

#[async_trait]
impl Sink for HubSink {
    async fn write(&mut self, batch: RecordBatch) -> Result<(), ConnectorError> {
        let rows = json_rows(&batch)?;
        if let Some(inner) = &mut self.inner {
            inner.write(batch).await?;
        }
        self.hub.publish(rows);
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), ConnectorError> {
        match &mut self.inner {
            Some(inner) => inner.flush().await,
            None => Ok(()),
        }
    }

    async fn caught_up(&mut self) -> Result<(), ConnectorError> {
        match &mut self.inner {
            Some(inner) => inner.caught_up().await,
            None => Ok(()),
        }
    }
}

/// The batch's rows as JSON objects, each with an `op`: append-only rows are inserts.
fn json_rows(batch: &RecordBatch) -> Result<Vec<Arc<str>>, ConnectorError> {
    let with_op = if batch.schema().index_of("op").is_ok() {
        batch.clone()
    } else {
        ChangeBatch::inserts(batch.clone())
            .into_output(true)
            .map_err(|e| ConnectorError::Format(e.to_string()))?
    };
    let text = String::from_utf8(encode_json_lines(&with_op)?)
        .map_err(|e| ConnectorError::Format(e.to_string()))?;
    Ok(text.lines().map(Arc::from).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(text: &str) -> Arc<str> {
        Arc::from(text)
    }

    #[test]
    fn late_subscribers_get_the_recent_rows_then_the_live_ones() {
        let hub = ResultHub::new(4);
        hub.publish(vec![row("1"), row("2")]);
        let mut sub = hub.subscribe();
        assert_eq!(sub.replay.len(), 2);
        hub.publish(vec![row("3")]);
        let live = sub.live.as_mut().unwrap();
        assert!(matches!(live.try_recv(), Ok(ResultEvent::Row(r)) if &*r == "3"));
    }

    #[test]
    fn a_slow_client_never_blocks_publishing_and_learns_of_the_gap() {
        let hub = ResultHub::new(2);
        let mut sub = hub.subscribe();
        hub.publish((0..10).map(|i| row(&i.to_string())).collect());
        let live = sub.live.as_mut().unwrap();
        assert!(matches!(
            live.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(8))
        ));
        assert!(matches!(live.try_recv(), Ok(ResultEvent::Row(r)) if &*r == "8"));
    }

    #[test]
    fn after_the_end_a_subscriber_gets_the_rows_and_the_end() {
        let hub = ResultHub::new(2);
        hub.publish(vec![row("1")]);
        hub.end("finished");
        let sub = hub.subscribe();
        assert!(sub.live.is_none());
        assert!(matches!(sub.replay.last(), Some(ResultEvent::End(s)) if &**s == "finished"));
    }
}
