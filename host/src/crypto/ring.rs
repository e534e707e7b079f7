//! Where KEKs come from: the [`KeySource`] seam and the in-memory [`KeyRing`].
//!
//! Cookies are sealed with the current KEK and opened with whichever KEK their header
//! names, so after a rotation the previous keys must stay available for as long as a cookie
//! sealed with them can still be useful — `retention_ms`, which the shell sets to the
//! session max age: every re-seal uses the current KEK and a token's expiry is fixed at
//! creation, so a cookie sealed before a KEK was retired holds nothing usable once
//! `retention_ms` have passed since.
//!
//! [`KeySource`] is synchronous on purpose, because `open`/`seal` sit on every request:
//! they only ever read the local ring. A shared deployment's keys come into it through
//! [`KeyStore`](super::KeyStore): its upkeep publishes and refreshes them, and a cookie
//! naming a key this instance does not hold yet makes the service await one
//! `KeyStore::fetch` of that id, then open the cookie again.

use std::sync::Arc;

use parking_lot::RwLock;

use super::key::{KekId, KeyEncryptionKey};

/// Provides the KEK to seal with and looks up KEKs to open with.
pub trait KeySource: Send + Sync {
    /// The key new cookies are sealed with.
    fn current(&self) -> Arc<KeyEncryptionKey>;
    /// The key a cookie names in its header, if it is still held.
    fn get(&self, id: &KekId) -> Option<Arc<KeyEncryptionKey>>;
}

/// An in-memory, thread-safe set of KEKs: one current, plus recently retired ones.
#[derive(Debug)]
pub struct KeyRing {
    keys: RwLock<Keys>,
    retention_ms: u64,
}

#[derive(Debug)]
struct Keys {
    current: Arc<KeyEncryptionKey>,
    retired: Vec<Retired>,
}

#[derive(Debug)]
struct Retired {
    key: Arc<KeyEncryptionKey>,
    retired_at_ms: u64,
}

impl KeyRing {
    /// A ring with a freshly generated current key. `retention_ms` is how long a retired key
    /// stays usable for opening (the session max age).
    pub fn new(now_ms: u64, retention_ms: u64) -> Self {
        Self::with_current(KeyEncryptionKey::generate(now_ms), retention_ms)
    }

    pub fn with_current(current: KeyEncryptionKey, retention_ms: u64) -> Self {
        Self {
            keys: RwLock::new(Keys {
                current: Arc::new(current),
                retired: Vec::new(),
            }),
            retention_ms,
        }
    }

    /// A ring whose current key is shared with other holders (e.g. loaded from Redis).
    pub fn from_shared(current: Arc<KeyEncryptionKey>, retention_ms: u64) -> Self {
        Self {
            keys: RwLock::new(Keys {
                current,
                retired: Vec::new(),
            }),
            retention_ms,
        }
    }

    pub fn current(&self) -> Arc<KeyEncryptionKey> {
        Arc::clone(&self.keys.read().current)
    }

    pub fn get(&self, id: &KekId) -> Option<Arc<KeyEncryptionKey>> {
        let keys = self.keys.read();
        if keys.current.id() == *id {
            return Some(Arc::clone(&keys.current));
        }
        keys.retired
            .iter()
            .find(|retired| retired.key.id() == *id)
            .map(|retired| Arc::clone(&retired.key))
    }

    /// Makes a fresh key current; the previous one is retired at `now_ms`.
    pub fn rotate(&self, now_ms: u64) -> Arc<KeyEncryptionKey> {
        let mut keys = self.keys.write();
        Self::rotate_locked(&mut keys, now_ms)
    }

    /// Rotates if the current key is at least `interval_ms` old. The age check and the
    /// rotation happen under one lock, so concurrent callers rotate once.
    pub fn rotate_if_due(&self, now_ms: u64, interval_ms: u64) -> bool {
        let mut keys = self.keys.write();
        if now_ms.saturating_sub(keys.current.created_at_ms()) < interval_ms {
            return false;
        }
        Self::rotate_locked(&mut keys, now_ms);
        true
    }

    /// Drops retired keys retired more than `retention_ms` ago; returns how many.
    pub fn prune(&self, now_ms: u64) -> usize {
        let mut keys = self.keys.write();
        let before = keys.retired.len();
        let retention_ms = self.retention_ms;
        keys.retired
            .retain(|retired| now_ms.saturating_sub(retired.retired_at_ms) <= retention_ms);
        before - keys.retired.len()
    }

    /// Forgets a key at once, e.g. when a [`Corrupt`](super::CookieError::Corrupt) cookie
    /// suggests it leaked. Revoking the current key rotates first. Every cookie sealed with
    /// it stops opening, so its users must start over. Returns whether the key was held.
    pub fn revoke(&self, id: &KekId, now_ms: u64) -> bool {
        let mut keys = self.keys.write();
        if keys.current.id() == *id {
            Self::rotate_locked(&mut keys, now_ms);
        }
        let before = keys.retired.len();
        keys.retired.retain(|retired| retired.key.id() != *id);
        before != keys.retired.len()
    }

    /// Makes `kek` current (another instance rotated, or it was loaded at start-up); the
    /// previous current key is retired at `now_ms`. A no-op if `kek` is current already.
    pub fn adopt_current(&self, kek: Arc<KeyEncryptionKey>, now_ms: u64) {
        let mut keys = self.keys.write();
        if keys.current.id() == kek.id() {
            return;
        }
        keys.retired.retain(|retired| retired.key.id() != kek.id());
        let previous = std::mem::replace(&mut keys.current, kek);
        keys.retired.push(Retired {
            key: previous,
            retired_at_ms: now_ms,
        });
    }

    /// Holds a key that is not current (fetched for a cookie sealed elsewhere), as if it
    /// had been retired at `now_ms`.
    pub fn insert_retired(&self, kek: Arc<KeyEncryptionKey>, now_ms: u64) {
        let mut keys = self.keys.write();
        if keys.current.id() == kek.id() || keys.retired.iter().any(|r| r.key.id() == kek.id()) {
            return;
        }
        keys.retired.push(Retired {
            key: kek,
            retired_at_ms: now_ms,
        });
    }

    /// Number of keys held, current included.
    pub fn len(&self) -> usize {
        self.keys.read().retired.len() + 1
    }

    /// Always false: a ring holds at least its current key.
    pub fn is_empty(&self) -> bool {
        false
    }

    fn rotate_locked(keys: &mut Keys, now_ms: u64) -> Arc<KeyEncryptionKey> {
        let fresh = Arc::new(KeyEncryptionKey::generate(now_ms));
        let previous = std::mem::replace(&mut keys.current, Arc::clone(&fresh));
        keys.retired.push(Retired {
            key: previous,
            retired_at_ms: now_ms,
        });
        fresh
    }
}

impl KeySource for KeyRing {
    fn current(&self) -> Arc<KeyEncryptionKey> {
        KeyRing::current(self)
    }

    fn get(&self, id: &KekId) -> Option<Arc<KeyEncryptionKey>> {
        KeyRing::get(self, id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RETENTION: u64 = 180_000;

    #[test]
    fn rotation_keeps_old_keys_until_pruned() {
        let ring = KeyRing::new(0, RETENTION);
        let first = ring.current().id();
        let second = ring.rotate(1_000).id();
        assert_ne!(first, second);
        assert_eq!(ring.current().id(), second);
        assert_eq!(ring.get(&first).map(|k| k.id()), Some(first));
        assert_eq!(ring.len(), 2);

        assert_eq!(ring.prune(1_000 + RETENTION), 0);
        assert!(ring.get(&first).is_some());
        assert_eq!(ring.prune(1_000 + RETENTION + 1), 1);
        assert!(ring.get(&first).is_none());
        assert_eq!(ring.get(&second).map(|k| k.id()), Some(second));
        assert_eq!(ring.len(), 1);
    }

    #[test]
    fn rotate_if_due_respects_interval() {
        let ring = KeyRing::new(10_000, RETENTION);
        let first = ring.current().id();
        assert!(!ring.rotate_if_due(10_000 + 59_999, 60_000));
        assert_eq!(ring.current().id(), first);
        assert!(ring.rotate_if_due(10_000 + 60_000, 60_000));
        assert_ne!(ring.current().id(), first);
        assert!(!ring.rotate_if_due(10_000 + 60_001, 60_000));
    }

    #[test]
    fn revoke_forgets_keys_immediately() {
        let ring = KeyRing::new(0, RETENTION);
        let first = ring.current().id();
        let second = ring.rotate(5).id();
        assert!(ring.revoke(&first, 6));
        assert!(ring.get(&first).is_none());
        assert!(ring.revoke(&second, 7));
        assert!(ring.get(&second).is_none());
        assert_ne!(ring.current().id(), second);
        assert!(!ring.revoke(&KekId::random(), 8));
    }

    #[test]
    fn unknown_ids_are_absent() {
        let ring = KeyRing::new(0, RETENTION);
        assert!(ring.get(&KekId::random()).is_none());
        assert!(!ring.is_empty());
    }

    #[test]
    fn concurrent_rotate_if_due_rotates_once() {
        let ring = Arc::new(KeyRing::new(0, RETENTION));
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let ring = Arc::clone(&ring);
                std::thread::spawn(move || ring.rotate_if_due(100_000, 60_000))
            })
            .collect();
        let rotated = handles
            .into_iter()
            .map(|handle| handle.join().unwrap_or(false))
            .filter(|&rotated| rotated)
            .count();
        assert_eq!(rotated, 1);
        assert_eq!(ring.len(), 2);
    }
}
