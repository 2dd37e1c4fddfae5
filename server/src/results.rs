//! [`ResultHub`]: a query's rows fanned out to every client watching it. Publishing never
//! waits for a client: each has a bounded buffer, and one that falls behind is sent a gap
//! marker instead of slowing the query. Rows are numbered, so a client that reconnects
//! (SSE `Last-Event-ID`) gets only the rows after the last one it saw. The hub counts its
//! watchers, for the server to stop a transient query nobody watches.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use tokio::sync::{broadcast, watch};
use vigil_connectors::format::encode_json_lines;
use vigil_engine::ChangeBatch;
use vigil_engine::connector::{ConnectorError, Health, Sink};

/// Rows kept for clients that connect after they were emitted.
const REPLAY_ROWS: usize = 1000;

/// What a results client receives.
#[derive(Debug, Clone)]
pub enum ResultEvent {
    /// One result row as a JSON object, with its change kind in `op`.
    Row {
        /// Its number in the query's results, from 1: the SSE event id.
        id: u64,
        /// The row.
        row: Arc<str>,
    },
    /// `0` rows the client will not see: it fell behind, or they were emitted too long
    /// before it (re)connected.
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
    /// How many clients are subscribed now.
    watchers: Arc<watch::Sender<usize>>,
}

#[derive(Debug, Default)]
struct History {
    recent: VecDeque<(u64, Arc<str>)>,
    /// Rows published so far: the id of the last one.
    published: u64,
    end: Option<Arc<str>>,
}

impl History {
    /// The replay for a client that last saw row `after` (`None`: a new client): a gap
    /// marker when some of the rows it missed are no longer kept, then the kept ones.
    fn replay_after(&self, after: Option<u64>) -> Vec<ResultEvent> {
        let seen = after.unwrap_or(0);
        let first_kept = self
            .recent
            .front()
            .map_or(self.published + 1, |(id, _)| *id);
        let mut replay = Vec::new();
        if after.is_some() && first_kept > seen + 1 {
            replay.push(ResultEvent::Gap(first_kept - seen - 1));
        }
        replay.extend(
            self.recent
                .iter()
                .filter(|(id, _)| *id > seen)
                .map(|(id, row)| ResultEvent::Row {
                    id: *id,
                    row: Arc::clone(row),
                }),
        );
        replay
    }
}

/// A client's view: the replayed rows, then the live ones. The client counts as watching
/// the query while this (or the stream made of it) lives.
pub struct Subscription {
    /// Rows emitted before the client came, oldest first (and the end, if reached).
    pub replay: Vec<ResultEvent>,
    /// Rows from now on; `None` when the query had already ended.
    pub live: Option<broadcast::Receiver<ResultEvent>>,
    /// Counts the client out when dropped.
    pub watching: Watching,
}

/// One client counted among a hub's watchers until dropped.
#[derive(Debug)]
pub struct Watching(Arc<watch::Sender<usize>>);

impl Watching {
    fn new(watchers: &Arc<watch::Sender<usize>>) -> Self {
        watchers.send_modify(|n| *n += 1);
        Self(Arc::clone(watchers))
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

impl ResultHub {
    /// A hub giving each client a buffer of `client_buffer` events.
    pub fn new(client_buffer: usize) -> Arc<Self> {
        let (sender, _) = broadcast::channel(client_buffer.max(1));
        Arc::new(Self {
            sender,
            history: Mutex::default(),
            watchers: Arc::new(watch::channel(0).0),
        })
    }

    /// Publishes rows; never waits for clients.
    pub fn publish(&self, rows: Vec<Arc<str>>) {
        let mut history = self.history.lock().expect("results lock");
        for row in rows {
            if history.recent.len() == REPLAY_ROWS {
                history.recent.pop_front();
            }
            history.published += 1;
            let id = history.published;
            history.recent.push_back((id, Arc::clone(&row)));
            // No receivers is not an error: nobody is watching.
            let _ = self.sender.send(ResultEvent::Row { id, row });
        }
    }

    /// Marks the end of the results with the query's final status.
    pub fn end(&self, status: &str) {
        let mut history = self.history.lock().expect("results lock");
        let status: Arc<str> = Arc::from(status);
        history.end = Some(Arc::clone(&status));
        let _ = self.sender.send(ResultEvent::End(status));
    }

    /// Subscribes a client that last saw row `after` (`None` for a new client: every kept
    /// row is replayed).
    pub fn subscribe(&self, after: Option<u64>) -> Subscription {
        let history = self.history.lock().expect("results lock");
        let mut replay = history.replay_after(after);
        let watching = Watching::new(&self.watchers);
        match &history.end {
            Some(status) => {
                replay.push(ResultEvent::End(Arc::clone(status)));
                Subscription {
                    replay,
                    live: None,
                    watching,
                }
            }
            None => Subscription {
                replay,
                live: Some(self.sender.subscribe()),
                watching,
            },
        }
    }

    /// Resolves once no client has watched for `grace` in a row: from now if none watches
    /// now, else from when the last one leaves.
    pub async fn unwatched_for(&self, grace: Duration) {
        let mut watchers = self.watchers.subscribe();
        loop {
            // The sender lives in `self`: waiting cannot fail while `self` is borrowed.
            let _ = watchers.wait_for(|n| *n == 0).await.map(|_| ());
            let returned = tokio::time::timeout(grace, watchers.wait_for(|n| *n > 0)).await;
            if returned.is_err() {
                return;
            }
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

    async fn committed_epoch(&mut self, query: &str) -> Result<Option<u64>, ConnectorError> {
        match &mut self.inner {
            Some(inner) => inner.committed_epoch(query).await,
            None => Ok(None),
        }
    }

    async fn pre_commit(&mut self) -> Result<Option<u64>, ConnectorError> {
        match &mut self.inner {
            Some(inner) => inner.pre_commit().await,
            None => Ok(None),
        }
    }

    async fn commit(&mut self, epoch: u64) -> Result<(), ConnectorError> {
        match &mut self.inner {
            Some(inner) => inner.commit(epoch).await,
            None => Ok(()),
        }
    }

    fn single_writer(&self) -> bool {
        self.inner
            .as_ref()
            .is_some_and(|inner| inner.single_writer())
    }

    async fn restore(&mut self, position: Option<u64>) -> Result<(), ConnectorError> {
        match &mut self.inner {
            Some(inner) => inner.restore(position).await,
            None => Ok(()),
        }
    }

    fn report_health(&mut self, health: Health) {
        if let Some(inner) = &mut self.inner {
            inner.report_health(health);
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
        let mut sub = hub.subscribe(None);
        assert_eq!(sub.replay.len(), 2);
        hub.publish(vec![row("3")]);
        let live = sub.live.as_mut().unwrap();
        assert!(matches!(live.try_recv(), Ok(ResultEvent::Row { id: 3, row }) if &*row == "3"));
    }

    #[test]
    fn a_slow_client_never_blocks_publishing_and_learns_of_the_gap() {
        let hub = ResultHub::new(2);
        let mut sub = hub.subscribe(None);
        hub.publish((0..10).map(|i| row(&i.to_string())).collect());
        let live = sub.live.as_mut().unwrap();
        assert!(matches!(
            live.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(8))
        ));
        assert!(matches!(live.try_recv(), Ok(ResultEvent::Row { row, .. }) if &*row == "8"));
    }

    #[test]
    fn after_the_end_a_subscriber_gets_the_rows_and_the_end() {
        let hub = ResultHub::new(2);
        hub.publish(vec![row("1")]);
        hub.end("finished");
        let sub = hub.subscribe(None);
        assert!(sub.live.is_none());
        assert!(matches!(sub.replay.last(), Some(ResultEvent::End(s)) if &**s == "finished"));
    }

    fn ids(events: &[ResultEvent]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                ResultEvent::Row { id, .. } => id.to_string(),
                ResultEvent::Gap(n) => format!("gap {n}"),
                ResultEvent::End(s) => format!("end {s}"),
            })
            .collect()
    }

    #[test]
    fn a_client_resuming_after_a_row_gets_only_the_later_ones() {
        let hub = ResultHub::new(4);
        hub.publish((1..=5).map(|i| row(&i.to_string())).collect());
        assert_eq!(ids(&hub.subscribe(Some(3)).replay), ["4", "5"]);
        assert!(hub.subscribe(Some(5)).replay.is_empty());
    }

    #[test]
    fn a_client_resuming_after_rows_no_longer_kept_is_told_how_many_it_missed() {
        let hub = ResultHub::new(4);
        hub.publish(
            (1..=REPLAY_ROWS as u64 + 10)
                .map(|i| row(&i.to_string()))
                .collect(),
        );
        let replay = hub.subscribe(Some(5)).replay;
        assert_eq!(ids(&replay[..2]), ["gap 5", "11"]);
        assert_eq!(replay.len(), REPLAY_ROWS + 1);
    }

    #[tokio::test]
    async fn a_hub_is_unwatched_once_its_last_client_has_been_gone_for_the_grace() {
        let hub = ResultHub::new(4);
        let grace = Duration::from_millis(200);
        let first = hub.subscribe(None);
        let second = hub.subscribe(None);
        let unwatched = hub.unwatched_for(grace);
        tokio::pin!(unwatched);
        drop(first);
        assert!(
            tokio::time::timeout(grace * 3, &mut unwatched)
                .await
                .is_err()
        );
        drop(second);
        let left = std::time::Instant::now();
        unwatched.await;
        assert!(left.elapsed() >= grace);
    }
}
