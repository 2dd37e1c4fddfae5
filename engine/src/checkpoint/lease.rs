//! [`StateLease`]: which process holds a query's state, or one split's.
//!
//! - A split's lease (`queries/<query>/splits/<split>/lease.json`) orders a handover. A
//!   consumer group may hand a partition to its next owner before the last one has let it go
//!   (a coordinator that completes a rebalance without waiting for every member, or a member
//!   too slow to notice one). The owner renews the lease with each checkpoint and releases it
//!   after its last; a process given the split waits until the lease is released, or has not
//!   been renewed for a while (its holder died), before it loads the split's checkpoint.
//! - A whole query's lease (`queries/<query>/lease.json`) fences: a process starting the
//!   query takes it at once, and a process that finds, before writing a checkpoint, that
//!   another one took it stops, so two processes never write one query's state.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::StateLocation;
use crate::error::{Error, Result};

/// How often a process waiting for a lease looks again.
const WAIT_STEP: Duration = Duration::from_millis(50);

/// What the lease file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct LeaseRecord {
    /// The process holding (or last holding) the state: see [`process_name`].
    owner: String,
    /// False once the owner checkpointed the split and let it go.
    held: bool,
    /// When the owner last renewed it, milliseconds since the Unix epoch (its clock).
    renewed_at_ms: i64,
}

/// One process's hold on a query's state, or one split's.
#[derive(Debug, Clone)]
pub struct StateLease {
    location: StateLocation,
    /// The lease file's path under the location.
    parts: Vec<String>,
    owner: String,
}

impl StateLease {
    /// The lease of split `split` of `query`, as process `owner` (a name unique among the
    /// processes sharing the state location) takes and renews it.
    pub fn of_split(location: &StateLocation, query: &str, split: u32, owner: &str) -> Self {
        let split = split.to_string();
        let parts = ["queries", query, "splits", &split, "lease.json"];
        Self::at(location, &parts, owner)
    }

    /// The lease of the whole state of `query`, as process `owner` holds it.
    pub fn of_query(location: &StateLocation, query: &str, owner: &str) -> Self {
        Self::at(location, &["queries", query, "lease.json"], owner)
    }

    fn at(location: &StateLocation, parts: &[&str], owner: &str) -> Self {
        Self {
            location: location.clone(),
            parts: parts.iter().map(|p| p.to_string()).collect(),
            owner: owner.to_string(),
        }
    }

    /// The process this lease is held as.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The process holding the lease now, if any holds it.
    pub async fn holder(&self) -> Result<Option<String>> {
        let record = self.read().await?;
        Ok(record.filter(|r| r.held).map(|r| r.owner))
    }

    /// Takes the lease once no other process holds it: released, never taken, or not
    /// renewed for `stale_after` (its holder is gone). Returns the holder waited for, if any.
    pub async fn acquire(&self, stale_after: Duration) -> Result<Option<String>> {
        let mut waited = None;
        let started = std::time::Instant::now();
        loop {
            let record = self.read().await?;
            let free = record.as_ref().is_none_or(|r| {
                !r.held || r.owner == self.owner || now_ms() - r.renewed_at_ms > millis(stale_after)
            });
            if free {
                self.write(true).await?;
                return Ok(waited);
            }
            if waited.is_none() {
                let holder = record.map(|r| r.owner).unwrap_or_default();
                let lease = self.parts.join("/");
                tracing::info!(%lease, %holder, "waiting for the last holder to hand the state over");
                waited = Some(holder);
            }
            // The holder's clock may run behind; give up on it after twice the limit anyway.
            if started.elapsed() > 2 * stale_after {
                self.write(true).await?;
                return Ok(waited);
            }
            tokio::time::sleep(WAIT_STEP).await;
        }
    }

    /// Takes the lease whoever holds it, or says the owner still holds it.
    pub async fn renew(&self) -> Result<()> {
        self.write(true).await
    }

    /// Lets the state go: its last checkpoint is written.
    pub async fn release(&self) -> Result<()> {
        self.write(false).await
    }

    async fn read(&self) -> Result<Option<LeaseRecord>> {
        let Some(bytes) = self.location.read(&self.parts_ref()).await? else {
            return Ok(None);
        };
        // A lease that cannot be read holds nothing back: the checkpoints decide.
        Ok(serde_json::from_slice(&bytes).ok())
    }

    async fn write(&self, held: bool) -> Result<()> {
        let record = LeaseRecord {
            owner: self.owner.clone(),
            held,
            renewed_at_ms: now_ms(),
        };
        let bytes = serde_json::to_vec(&record)
            .map_err(|e| Error::Internal(format!("encoding a lease: {e}")))?;
        self.location.write(&self.parts_ref(), bytes).await
    }

    fn parts_ref(&self) -> Vec<&str> {
        self.parts.iter().map(String::as_str).collect()
    }
}

/// A name for this process, unique among those sharing a state location: host, process
/// id and start time.
pub fn process_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
    format!("{host}:{}:{}", std::process::id(), now_ms())
}

fn millis(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

/// Now, in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.map_or(0, millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location(name: &str) -> StateLocation {
        StateLocation::scratch(&format!("lease-{name}"))
    }

    #[tokio::test]
    async fn a_released_lease_is_taken_without_waiting_for_it_to_go_stale() {
        let location = location("released");
        let first = StateLease::of_split(&location, "q", 1, "first");
        let second = StateLease::of_split(&location, "q", 1, "second");
        assert_eq!(first.acquire(Duration::from_secs(60)).await.unwrap(), None);
        let started = std::time::Instant::now();
        let waiting = tokio::spawn(async move { second.acquire(Duration::from_secs(60)).await });
        first.release().await.unwrap();
        waiting.await.unwrap().unwrap();
        // Taken once released, not after the minute it would take to go stale.
        assert!(started.elapsed() < Duration::from_secs(30));
    }

    #[tokio::test]
    async fn a_lease_never_released_is_taken_once_stale() {
        let location = location("stale");
        let dead = StateLease::of_split(&location, "q", 2, "dead");
        dead.acquire(Duration::from_secs(60)).await.unwrap();
        let next = StateLease::of_split(&location, "q", 2, "next");
        let started = std::time::Instant::now();
        let waited = next.acquire(Duration::from_millis(300)).await.unwrap();
        assert_eq!(waited.as_deref(), Some("dead"));
        assert!(started.elapsed() >= Duration::from_millis(300));
    }

    #[tokio::test]
    async fn the_holder_takes_its_own_lease_again_at_once() {
        let location = location("own");
        let lease = StateLease::of_split(&location, "q", 0, "me");
        lease.acquire(Duration::from_secs(60)).await.unwrap();
        assert_eq!(lease.acquire(Duration::from_secs(60)).await.unwrap(), None);
    }
}
