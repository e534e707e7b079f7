//! The in-process [`IdStore`]: a sharded hash map from session id to expiry.
//!
//! Every request touches exactly one or two shards, each under a short `parking_lot` lock,
//! so operations are O(1) and never scan. Expired ids are treated as absent the moment
//! they expire and are physically removed either when touched or by the background sweep.
//!
//! Memory bound: the map holds the ids that are live plus those that expired since the
//! sweep last visited their shard. With the sweeper running at `interval` per shard, a full
//! pass takes `SHARDS * interval`, so the map holds at most the ids created during
//! `max session age + SHARDS * interval` — roughly 40–60 bytes each (16-byte key, 8-byte
//! expiry, table overhead). A million live sessions cost on the order of 50 MB.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use super::{IdStore, StoreError};
use crate::clock::Clock;
use crate::protocol::SessionId;

/// Enough shards that 2 to 64 cores rarely contend on one lock; a power of two so the shard
/// is just the low bits of the id.
const SHARDS: usize = 64;

type Expiries = HashMap<SessionId, u64, BuildHasherDefault<IdHasher>>;

/// In-memory single-use session id store for a single server process.
pub struct MemoryIdStore {
    shards: Vec<Mutex<Expiries>>,
}

impl Default for MemoryIdStore {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MemoryIdStore {
    // Never list ids: they are what makes a cookie valid.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryIdStore")
            .field("len", &self.len())
            .finish()
    }
}

impl MemoryIdStore {
    pub fn new() -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(Expiries::default()))
                .collect(),
        }
    }

    /// Number of stored ids, including expired ones the sweep has not removed yet.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|shard| shard.lock().len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every expired id now; returns how many. The background sweeper does the same
    /// one shard at a time.
    pub fn sweep_expired(&self, now_ms: u64) -> usize {
        (0..SHARDS)
            .map(|index| self.sweep_shard(index, now_ms))
            .sum()
    }

    /// Starts a task that sweeps one shard every `interval`, so a full pass takes
    /// `64 * interval` and each pass holds only one shard's lock at a time. The task holds
    /// the store weakly and ends once the store is dropped; abort the handle to stop sooner.
    pub fn spawn_sweeper(
        self: Arc<Self>,
        clock: Arc<dyn Clock>,
        interval: Duration,
    ) -> JoinHandle<()> {
        let store: Weak<Self> = Arc::downgrade(&self);
        drop(self);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let mut next_shard = 0;
            loop {
                ticker.tick().await;
                let Some(store) = store.upgrade() else {
                    return;
                };
                let removed = store.sweep_shard(next_shard, clock.now_ms());
                if removed > 0 {
                    tracing::trace!(shard = next_shard, removed, "swept expired session ids");
                }
                next_shard = (next_shard + 1) % SHARDS;
            }
        })
    }

    fn sweep_shard(&self, index: usize, now_ms: u64) -> usize {
        let Some(shard) = self.shards.get(index) else {
            return 0;
        };
        let mut expiries = shard.lock();
        let before = expiries.len();
        expiries.retain(|_, expires_at_ms| *expires_at_ms > now_ms);
        // Hash maps never shrink on their own; after a burst of sessions the table would
        // otherwise keep its peak size forever.
        if expiries.capacity() > 4 * expiries.len() + 64 {
            expiries.shrink_to_fit();
        }
        before - expiries.len()
    }

    fn shard(&self, id: &SessionId) -> &Mutex<Expiries> {
        // Ids are uniformly random, so their low bits spread evenly over the shards.
        let index = usize::from(id.as_bytes()[15]) % SHARDS;
        &self.shards[index]
    }

    fn insert(&self, id: SessionId, expires_at_ms: u64) {
        self.shard(&id).lock().insert(id, expires_at_ms);
    }

    fn set_expiry_if_live(&self, id: SessionId, expires_at_ms: u64, now_ms: u64) -> bool {
        let mut expiries = self.shard(&id).lock();
        match expiries.get_mut(&id) {
            Some(existing) if *existing > now_ms => {
                *existing = expires_at_ms;
                true
            }
            _ => false,
        }
    }

    /// Removes `id`, returning whether it was live. This removal is the linearisation point
    /// of `consume` and `replace`: only one caller can take a given id out of its shard.
    fn take_if_live(&self, id: SessionId, now_ms: u64) -> bool {
        self.shard(&id)
            .lock()
            .remove(&id)
            .is_some_and(|expires_at_ms| expires_at_ms > now_ms)
    }

    fn is_live(&self, id: SessionId, now_ms: u64) -> bool {
        self.shard(&id)
            .lock()
            .get(&id)
            .is_some_and(|&expires_at_ms| expires_at_ms > now_ms)
    }
}

#[async_trait]
impl IdStore for MemoryIdStore {
    async fn create(&self, id: SessionId, ttl_ms: u64, now_ms: u64) -> Result<(), StoreError> {
        self.insert(id, now_ms.saturating_add(ttl_ms));
        Ok(())
    }

    async fn extend(&self, id: SessionId, ttl_ms: u64, now_ms: u64) -> Result<bool, StoreError> {
        Ok(self.set_expiry_if_live(id, now_ms.saturating_add(ttl_ms), now_ms))
    }

    async fn replace(
        &self,
        old: SessionId,
        new: SessionId,
        ttl_ms: u64,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        // `old` and `new` usually live in different shards. Taking `old` out first decides
        // the race; `new` is inserted afterwards, which is safe because nobody can know
        // `new` before this call returns (its cookie has not been issued yet).
        if !self.take_if_live(old, now_ms) {
            return Ok(false);
        }
        self.insert(new, now_ms.saturating_add(ttl_ms));
        Ok(true)
    }

    async fn consume(&self, id: SessionId, now_ms: u64) -> Result<bool, StoreError> {
        Ok(self.take_if_live(id, now_ms))
    }

    async fn contains(&self, id: SessionId, now_ms: u64) -> Result<bool, StoreError> {
        Ok(self.is_live(id, now_ms))
    }
}

/// A cheap hasher for session ids. They are server-generated random bytes that clients
/// can neither choose nor see, so there is no hash-flooding risk to pay SipHash for; one
/// multiply per 8 bytes (FxHash-style) spreads them well enough.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word))
                .wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests;
