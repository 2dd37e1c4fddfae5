//! [`QueryTable`]: the queries the server runs, with their SQL, status and live counters.
//!
//! A transient query (a bare SELECT) lives while someone watches it, as ksqlDB's push
//! queries do: it stops once no results client has watched it for a grace period (which
//! also gives the first client time to connect and a dropped one time to reconnect), and it
//! leaves the table a retention time after it ended, freeing its results.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use schemars::JsonSchema;
use serde::Serialize;
use tokio::sync::watch;
use vigil_engine::runtime::{QueryMetrics, RunningQuery, StopHandle};

use crate::results::ResultHub;

/// Where a query is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum QueryStatus {
    /// Reading and emitting.
    Running,
    /// Its sources ended (or its LIMIT was reached) and everything was flushed.
    Finished,
    /// Stopped on request, or (a transient query) because nobody watched it.
    Stopped {
        /// Why, when nobody asked.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Failed; `reason` says why.
    Failed {
        /// The error.
        reason: String,
    },
}

impl QueryStatus {
    /// `running`, `finished`, `stopped` or `failed: ...`.
    pub fn label(&self) -> String {
        match self {
            QueryStatus::Running => "running".into(),
            QueryStatus::Finished => "finished".into(),
            QueryStatus::Stopped { reason: None } => "stopped".into(),
            QueryStatus::Stopped {
                reason: Some(reason),
            } => format!("stopped: {reason}"),
            QueryStatus::Failed { reason } => format!("failed: {reason}"),
        }
    }
}

/// A query the server started.
#[derive(Debug)]
pub struct QueryEntry {
    /// Its id in the API.
    pub id: u64,
    /// The sink it writes, or `select` for a transient query.
    pub name: String,
    /// `persistent` (a CREATE SINK) or `transient` (a bare SELECT).
    pub kind: &'static str,
    /// The statement that started it.
    pub sql: String,
    /// When it started.
    pub started: SystemTime,
    /// Its counters.
    pub metrics: Arc<QueryMetrics>,
    /// Its rows, for results clients.
    pub results: Arc<ResultHub>,
    stop: StopHandle,
    stop_requested: AtomicBool,
    /// Why it was stopped when nobody asked (a transient query nobody watched).
    stop_reason: Mutex<Option<String>>,
    status: watch::Sender<QueryStatus>,
}

impl QueryEntry {
    /// The current status.
    pub fn status(&self) -> QueryStatus {
        self.status.borrow().clone()
    }

    /// Asks the query to stop gracefully and waits up to `timeout` for it to end; returns
    /// the status it ended with (still `running` if it did not end in time).
    pub async fn stop(&self, timeout: Duration) -> QueryStatus {
        self.stop_requested.store(true, Ordering::SeqCst);
        self.stop.stop();
        let mut status = self.status.subscribe();
        let _ =
            tokio::time::timeout(timeout, status.wait_for(|s| *s != QueryStatus::Running)).await;
        self.status()
    }

    /// Whether it has ended (finished, stopped or failed).
    pub fn ended(&self) -> bool {
        *self.status.borrow() != QueryStatus::Running
    }

    /// Stops it because nobody watched it for `grace`.
    fn stop_unwatched(&self, grace: Duration) {
        let reason = format!(
            "no results client for {} s (transient queries live while watched)",
            grace.as_secs_f64()
        );
        *self.stop_reason.lock().expect("stop reason lock") = Some(reason);
        self.stop_requested.store(true, Ordering::SeqCst);
        self.stop.stop();
    }

    /// The status it ended with, from how its run ended.
    fn ended_with(&self, outcome: Result<(), vigil_engine::Error>) -> QueryStatus {
        match outcome {
            Err(e) => QueryStatus::Failed {
                reason: e.to_string(),
            },
            Ok(()) if self.stop_requested.load(Ordering::SeqCst) => QueryStatus::Stopped {
                reason: self.stop_reason.lock().expect("stop reason lock").take(),
            },
            Ok(()) => QueryStatus::Finished,
        }
    }

    /// Seconds since the epoch when it started.
    pub fn started_epoch_seconds(&self) -> f64 {
        self.started
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    }
}

/// How long transient queries live unwatched, and stay listed once ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransientLifetime {
    /// A transient query nobody has watched for this long stops.
    pub grace: Duration,
    /// An ended transient query leaves the table this long after it ended.
    pub retention: Duration,
}

/// Every query the server started, running or ended, by id.
#[derive(Debug)]
pub struct QueryTable {
    entries: Arc<Mutex<BTreeMap<u64, Arc<QueryEntry>>>>,
    next_id: Mutex<u64>,
    transient: TransientLifetime,
}

impl QueryTable {
    /// An empty table whose transient queries live as `transient` says.
    pub fn new(transient: TransientLifetime) -> Self {
        Self {
            entries: Arc::default(),
            next_id: Mutex::new(0),
            transient,
        }
    }

    /// Records a started query and watches it end. Returns its entry.
    pub fn add(
        &self,
        name: String,
        kind: &'static str,
        sql: String,
        query: RunningQuery,
        results: Arc<ResultHub>,
    ) -> Arc<QueryEntry> {
        let id = {
            let mut next = self.next_id.lock().expect("query ids lock");
            *next += 1;
            *next
        };
        let (status, _) = watch::channel(QueryStatus::Running);
        let entry = Arc::new(QueryEntry {
            id,
            name,
            kind,
            sql,
            started: SystemTime::now(),
            metrics: Arc::clone(query.metrics()),
            results,
            stop: query.stop_handle(),
            stop_requested: AtomicBool::new(false),
            stop_reason: Mutex::default(),
            status,
        });
        self.entries
            .lock()
            .expect("queries lock")
            .insert(id, Arc::clone(&entry));
        tokio::spawn(watch_query(
            Arc::clone(&entry),
            query,
            (kind == TRANSIENT).then_some(self.transient),
            Arc::clone(&self.entries),
        ));
        entry
    }

    /// Takes an ended query out of the table, freeing its results; `None` when it is
    /// running or unknown.
    pub fn remove_ended(&self, id: u64) -> Option<Arc<QueryEntry>> {
        let mut entries = self.entries.lock().expect("queries lock");
        if !entries.get(&id)?.ended() {
            return None;
        }
        entries.remove(&id)
    }

    /// The query with this id.
    pub fn get(&self, id: u64) -> Option<Arc<QueryEntry>> {
        self.entries.lock().expect("queries lock").get(&id).cloned()
    }

    /// Every query, by id.
    pub fn all(&self) -> Vec<Arc<QueryEntry>> {
        self.entries
            .lock()
            .expect("queries lock")
            .values()
            .cloned()
            .collect()
    }

    /// How many are running, of both kinds: the number `VIGIL_MAX_QUERIES` caps.
    pub fn running(&self) -> usize {
        self.all()
            .iter()
            .filter(|q| q.status() == QueryStatus::Running)
            .count()
    }

    /// Stops every running query, waiting up to `timeout` for each.
    pub async fn stop_all(&self, timeout: Duration) {
        for entry in self.all() {
            if entry.status() == QueryStatus::Running {
                entry.stop(timeout).await;
            }
        }
    }
}

/// The kind of a query started by a bare SELECT.
pub const TRANSIENT: &str = "transient";

/// Waits for `entry`'s query to end and records how; a transient one (`transient` given)
/// is stopped when nobody watches it and leaves `entries` once its retention has passed.
async fn watch_query(
    entry: Arc<QueryEntry>,
    query: RunningQuery,
    transient: Option<TransientLifetime>,
    entries: Arc<Mutex<BTreeMap<u64, Arc<QueryEntry>>>>,
) {
    let run = query.wait();
    tokio::pin!(run);
    let outcome = match transient {
        Some(lifetime) => tokio::select! {
            outcome = &mut run => outcome,
            () = entry.results.unwatched_for(lifetime.grace) => {
                entry.stop_unwatched(lifetime.grace);
                run.await
            }
        },
        None => run.await,
    };
    let status = entry.ended_with(outcome);
    entry.results.end(&status.label());
    entry.status.send_replace(status);
    let Some(lifetime) = transient else {
        return;
    };
    let id = entry.id;
    drop(entry);
    tokio::time::sleep(lifetime.retention).await;
    entries.lock().expect("queries lock").remove(&id);
}
