//! [`QueryTable`]: the queries the server runs, with their SQL, status and live counters.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::watch;
use vigil_engine::runtime::{QueryMetrics, RunningQuery, StopHandle};

use crate::results::ResultHub;

/// Where a query is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum QueryStatus {
    /// Reading and emitting.
    Running,
    /// Its sources ended (or its LIMIT was reached) and everything was flushed.
    Finished,
    /// Stopped on request.
    Stopped,
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
            QueryStatus::Stopped => "stopped".into(),
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

    /// Seconds since the epoch when it started.
    pub fn started_epoch_seconds(&self) -> f64 {
        self.started
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    }
}

/// Every query the server started, running or ended, by id.
#[derive(Debug, Default)]
pub struct QueryTable {
    entries: Mutex<BTreeMap<u64, Arc<QueryEntry>>>,
    next_id: Mutex<u64>,
}

impl QueryTable {
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
            status,
        });
        self.entries
            .lock()
            .expect("queries lock")
            .insert(id, Arc::clone(&entry));
        let watched = Arc::clone(&entry);
        tokio::spawn(async move {
            let outcome = query.wait().await;
            let status = match outcome {
                Err(e) => QueryStatus::Failed {
                    reason: e.to_string(),
                },
                Ok(()) if watched.stop_requested.load(Ordering::SeqCst) => QueryStatus::Stopped,
                Ok(()) => QueryStatus::Finished,
            };
            watched.results.end(&status.label());
            watched.status.send_replace(status);
        });
        entry
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

    /// How many are running.
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
