//! [`SplitLease`]: which process holds a split's state, so that the next one waits for its
//! last checkpoint.
//!
//! A consumer group may hand a partition to its next owner before the last one has let it
//! go (a coordinator that completes a rebalance without waiting for every member, or a
//! member too slow to notice one). The lease, `queries/<query>/splits/<split>/lease.json`,
//! makes the handover ordered: the owner renews it with each checkpoint and releases it
//! after its last; a process given the split waits until the lease is released, or has not
//! been renewed for a while (its holder died), before it loads the split's checkpoint.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::StateLocation;
use crate::error::{Error, Result};

/// How often a process waiting for a lease looks again.
const WAIT_STEP: Duration = Duration::from_millis(50);

/// What the lease file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct LeaseRecord {
    /// The process holding (or last holding) the split: see [`SplitLease::new`].
    owner: String,
    /// False once the owner checkpointed the split and let it go.
    held: bool,
    /// When the owner last renewed it, milliseconds since the Unix epoch (its clock).
    renewed_at_ms: i64,
}

/// One process's hold on one split's state.
#[derive(Debug, Clone)]
pub struct SplitLease {
    location: StateLocation,
    query: String,
    split: String,
    owner: String,
}

impl SplitLease {
    /// The lease of split `split` of `query`, as process `owner` (a name unique among the
    /// processes sharing the state location) takes and renews it.
    pub fn new(location: &StateLocation, query: &str, split: u32, owner: &str) -> Self {
        Self {
            location: location.clone(),
            query: query.to_string(),
            split: split.to_string(),
            owner: owner.to_string(),
        }
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
                tracing::info!(split = %self.split, %holder, "waiting for the split's last holder to hand it over");
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

    /// Says the owner still holds the split.
    pub async fn renew(&self) -> Result<()> {
        self.write(true).await
    }

    /// Lets the split go: its last checkpoint is written.
    pub async fn release(&self) -> Result<()> {
        self.write(false).await
    }

    async fn read(&self) -> Result<Option<LeaseRecord>> {
        let Some(bytes) = self.location.read(&self.parts()).await? else {
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
        self.location.write(&self.parts(), bytes).await
    }

    fn parts(&self) -> [&str; 5] {
        ["queries", &self.query, "splits", &self.split, "lease.json"]
    }
}

fn millis(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

fn now_ms() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.map_or(0, millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location(name: &str) -> StateLocation {
        let dir = std::env::temp_dir().join(format!("vigil-lease-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        StateLocation::local(&dir).unwrap()
    }

    #[tokio::test]
    async fn a_held_lease_is_waited_for_until_released() {
        let location = location("held");
        let first = SplitLease::new(&location, "q", 1, "first");
        let second = SplitLease::new(&location, "q", 1, "second");
        assert_eq!(first.acquire(Duration::from_secs(60)).await.unwrap(), None);
        let waiting = tokio::spawn(async move { second.acquire(Duration::from_secs(60)).await });
        tokio::time::sleep(WAIT_STEP * 4).await;
        assert!(!waiting.is_finished(), "taken while held");
        first.release().await.unwrap();
        let waited = waiting.await.unwrap().unwrap();
        assert_eq!(waited.as_deref(), Some("first"));
        // Now the second holds it.
        let third = SplitLease::new(&location, "q", 1, "third");
        let taking = tokio::spawn(async move { third.acquire(Duration::from_millis(300)).await });
        tokio::time::sleep(WAIT_STEP * 2).await;
        assert!(!taking.is_finished());
        // Never renewed, the second's hold goes stale.
        assert_eq!(taking.await.unwrap().unwrap().as_deref(), Some("second"));
    }

    #[tokio::test]
    async fn the_holder_takes_its_own_lease_again_at_once() {
        let location = location("own");
        let lease = SplitLease::new(&location, "q", 0, "me");
        lease.acquire(Duration::from_secs(60)).await.unwrap();
        assert_eq!(lease.acquire(Duration::from_secs(60)).await.unwrap(), None);
    }
}
