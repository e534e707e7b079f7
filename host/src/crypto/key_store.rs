//! Where the server's KEKs live, seen from the request path.
//!
//! [`KeySource`] is the synchronous view that sealing and opening use on every request.
//! [`KeyStore`] adds what needs I/O in a shared deployment: fetching a key another
//! instance created, revoking a key everywhere at once, and periodic upkeep. One process's
//! store is [`MemoryKeyStore`], its [`KeyRing`] with nothing to fetch; the Redis-backed
//! one lives in [`crate::store::redis`].

use super::key::{KekId, KeyEncryptionKey};
use super::ring::{KeyRing, KeySource};
use crate::store::StoreError;
use async_trait::async_trait;
use std::sync::Arc;

#[async_trait]
pub trait KeyStore: KeySource {
    /// A key by id, fetched from the shared store if this instance does not hold it.
    async fn fetch(
        &self,
        id: &KekId,
        now_ms: u64,
    ) -> Result<Option<Arc<KeyEncryptionKey>>, StoreError>;

    /// Stops using a key that may have leaked, on every instance sharing this store:
    /// cookies sealed with it no longer open (their users start over); if it was the
    /// current key, a fresh one replaces it first.
    async fn revoke(&self, id: &KekId, now_ms: u64) -> Result<(), StoreError>;

    /// Periodic upkeep: rotate when due, pick up rotations done elsewhere, forget keys
    /// no live cookie can use.
    async fn maintain(&self, now_ms: u64) -> Result<(), StoreError>;

    /// Makes a fresh key current now, here and (at their next upkeep, within a second)
    /// on every instance sharing this store. Cookies sealed before keep opening until
    /// they expire. Returns the new key's id.
    async fn rotate(&self, now_ms: u64) -> Result<KekId, StoreError>;
}

/// The in-memory ring with its rotation schedule.
pub struct MemoryKeyStore {
    ring: KeyRing,
    rotation_interval_ms: u64,
}

impl MemoryKeyStore {
    pub fn new(now_ms: u64, retention_ms: u64, rotation_interval_ms: u64) -> MemoryKeyStore {
        MemoryKeyStore {
            ring: KeyRing::new(now_ms, retention_ms),
            rotation_interval_ms,
        }
    }
}

impl KeySource for MemoryKeyStore {
    fn current(&self) -> Arc<KeyEncryptionKey> {
        self.ring.current()
    }

    fn get(&self, id: &KekId) -> Option<Arc<KeyEncryptionKey>> {
        self.ring.get(id)
    }
}

#[async_trait]
impl KeyStore for MemoryKeyStore {
    async fn fetch(
        &self,
        id: &KekId,
        _now_ms: u64,
    ) -> Result<Option<Arc<KeyEncryptionKey>>, StoreError> {
        Ok(self.ring.get(id))
    }

    async fn revoke(&self, id: &KekId, now_ms: u64) -> Result<(), StoreError> {
        let held = self.ring.revoke(id, now_ms);
        tracing::warn!(kek_id = %id, held, "key-encryption key revoked");
        Ok(())
    }

    async fn maintain(&self, now_ms: u64) -> Result<(), StoreError> {
        if self.ring.rotate_if_due(now_ms, self.rotation_interval_ms) {
            tracing::info!("key-encryption key rotated");
        }
        self.ring.prune(now_ms);
        Ok(())
    }

    async fn rotate(&self, now_ms: u64) -> Result<KekId, StoreError> {
        Ok(self.ring.rotate(now_ms).id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn revoking_the_current_key_replaces_it_and_forgets_it() {
        let store = MemoryKeyStore::new(0, 180_000, 60_000);
        let first = store.current().id();
        store.maintain(60_000).await.unwrap();
        let second = store.current().id();
        assert_ne!(first, second, "rotated when due");
        assert!(store.fetch(&first, 60_001).await.unwrap().is_some());

        store.revoke(&second, 60_002).await.unwrap();
        assert_ne!(store.current().id(), second, "a fresh key is current");
        assert!(
            store.get(&second).is_none(),
            "the revoked key no longer opens"
        );
        assert!(store.fetch(&second, 60_003).await.unwrap().is_none());
        assert!(store.get(&first).is_some(), "other keys are untouched");
    }

    #[tokio::test]
    async fn a_requested_rotation_makes_a_fresh_key_current_and_keeps_the_old_one() {
        let store = MemoryKeyStore::new(0, 180_000, 60_000);
        let first = store.current().id();
        let fresh = store.rotate(1_000).await.unwrap();
        assert_ne!(fresh, first);
        assert_eq!(store.current().id(), fresh);
        assert!(
            store.get(&first).is_some(),
            "cookies sealed before still open"
        );
    }
}
