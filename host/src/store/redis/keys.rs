//! Key-encryption keys shared through Redis, wrapped by the master key.
//!
//! Every instance keeps the keys it knows in a local [`KeyRing`] (sealing and opening
//! never wait on Redis) and polls the shared "current" pointer once per maintenance
//! tick. Rotation is done by one instance — whichever takes a short `SET NX` lock once
//! the current key is due — and the others adopt the new key at their next poll, so
//! there is no thundering herd. A cookie naming a key this instance has not seen yet
//! (sealed just after another instance rotated) is handled by [`KeyStore::fetch`].

use super::RedisConnection;
use crate::crypto::{
    KekId, KeyEncryptionKey, KeyRing, KeySource, KeyStore, MasterKey, MasterKeyError,
};
use crate::store::StoreError;
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

/// Sets the current pointer to ARGV[2] only if it still names ARGV[1] (or nothing), so
/// a slow rotator cannot undo a newer rotation.
const SWAP_CURRENT: &str = r"
local current = redis.call('GET', KEYS[1])
if current == false or current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
  return 1
end
return 0";

/// How long the rotation lock is held at most.
const ROTATION_LOCK: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0} (OTP_MASTER_KEY / master_key_file)")]
    Master(#[from] MasterKeyError),
}

pub struct RedisKeyStore {
    redis: RedisConnection,
    master: MasterKey,
    ring: KeyRing,
    rotation_interval_ms: u64,
    /// How long a stored key lives: while current, plus while cookies sealed with it live.
    stored_ttl_ms: u64,
    swap_current: redis::Script,
}

impl RedisKeyStore {
    /// Loads the shared current key, creating and publishing one if Redis has none.
    /// Fails if Redis cannot be reached or the master key does not match.
    pub async fn connect(
        redis: RedisConnection,
        master: MasterKey,
        now_ms: u64,
        retention_ms: u64,
        rotation_interval_ms: u64,
    ) -> Result<RedisKeyStore, KeyStoreError> {
        let stored_ttl_ms = rotation_interval_ms
            .saturating_mul(2)
            .saturating_add(retention_ms)
            .saturating_add(60_000);
        let mut store = RedisKeyStore {
            redis,
            master,
            ring: KeyRing::new(now_ms, retention_ms),
            rotation_interval_ms,
            stored_ttl_ms,
            swap_current: redis::Script::new(SWAP_CURRENT),
        };
        let current = match store.shared_current().await? {
            Some(kek) => kek,
            None => {
                let fresh = Arc::new(KeyEncryptionKey::generate(now_ms));
                store.publish(&fresh, None).await?;
                // Another instance may have published first: whatever the pointer names wins.
                match store.shared_current().await? {
                    Some(kek) => kek,
                    None => fresh,
                }
            }
        };
        store.ring = KeyRing::from_shared(current, retention_ms);
        Ok(store)
    }

    fn pointer_key(&self) -> String {
        self.redis.key("kek:{keys}:current")
    }

    fn lock_key(&self) -> String {
        self.redis.key("kek:{keys}:rotating")
    }

    fn kek_key(&self, id: &KekId) -> String {
        self.redis.key(&format!("kek:{{keys}}:{id}"))
    }

    /// The key the shared pointer names, if any (`None` also when it has expired).
    async fn shared_current(&self) -> Result<Option<Arc<KeyEncryptionKey>>, KeyStoreError> {
        let pointer = self.pointer_key();
        let id: Option<String> = self
            .redis
            .run(|mut c| async move { redis::cmd("GET").arg(&pointer).query_async(&mut c).await })
            .await?;
        let Some(id) = id.and_then(|hex_id| parse_kek_id(&hex_id)) else {
            return Ok(None);
        };
        if let Some(kek) = self.ring.get(&id) {
            return Ok(Some(kek));
        }
        self.load(&id).await
    }

    /// Reads and unwraps one stored key.
    async fn load(&self, id: &KekId) -> Result<Option<Arc<KeyEncryptionKey>>, KeyStoreError> {
        let key = self.kek_key(id);
        let stored: Option<Vec<u8>> = self
            .redis
            .run(|mut c| async move { redis::cmd("GET").arg(&key).query_async(&mut c).await })
            .await?;
        match stored {
            Some(bytes) => Ok(Some(Arc::new(self.master.unwrap(*id, &bytes)?))),
            None => Ok(None),
        }
    }

    /// Stores `kek` wrapped and points the shared pointer at it, if the pointer still
    /// names `expected` (or nothing). Returns whether the pointer moved.
    async fn publish(
        &self,
        kek: &KeyEncryptionKey,
        expected: Option<&KekId>,
    ) -> Result<bool, StoreError> {
        let (key, wrapped, ttl) = (
            self.kek_key(&kek.id()),
            self.master.wrap(kek),
            self.stored_ttl_ms,
        );
        self.redis
            .run(|mut c| async move {
                redis::cmd("SET")
                    .arg(&key)
                    .arg(wrapped)
                    .arg("PX")
                    .arg(ttl)
                    .query_async::<()>(&mut c)
                    .await
            })
            .await?;
        let (pointer, script) = (self.pointer_key(), &self.swap_current);
        let expected = expected.map(|id| id.to_string()).unwrap_or_default();
        let new_id = kek.id().to_string();
        self.redis
            .run(|mut c| async move {
                script
                    .key(pointer)
                    .arg(expected)
                    .arg(new_id)
                    .invoke_async::<i64>(&mut c)
                    .await
            })
            .await
            .map(|n| n == 1)
    }

    /// Makes a new key current everywhere, if this instance wins the rotation lock.
    async fn rotate(&self, now_ms: u64, forced: bool) -> Result<(), StoreError> {
        let lock = self.lock_key();
        let won: Option<String> = self
            .redis
            .run(|mut c| async move {
                redis::cmd("SET")
                    .arg(&lock)
                    .arg("1")
                    .arg("NX")
                    .arg("PX")
                    .arg(ROTATION_LOCK.as_millis() as u64)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        if won.is_none() && !forced {
            return Ok(());
        }
        let previous = self.ring.current().id();
        let fresh = Arc::new(KeyEncryptionKey::generate(now_ms));
        if self.publish(&fresh, Some(&previous)).await? {
            self.ring.adopt_current(fresh, now_ms);
            tracing::info!("key-encryption key rotated (shared)");
        }
        Ok(())
    }
}

fn parse_kek_id(text: &str) -> Option<KekId> {
    let bytes: [u8; 16] = hex::decode(text).ok()?.try_into().ok()?;
    Some(KekId::from_bytes(bytes))
}

impl KeySource for RedisKeyStore {
    fn current(&self) -> Arc<KeyEncryptionKey> {
        self.ring.current()
    }

    fn get(&self, id: &KekId) -> Option<Arc<KeyEncryptionKey>> {
        self.ring.get(id)
    }
}

#[async_trait]
impl KeyStore for RedisKeyStore {
    async fn fetch(
        &self,
        id: &KekId,
        now_ms: u64,
    ) -> Result<Option<Arc<KeyEncryptionKey>>, StoreError> {
        if let Some(kek) = self.ring.get(id) {
            return Ok(Some(kek));
        }
        match self.load(id).await {
            Ok(Some(kek)) => {
                self.ring.insert_retired(kek.clone(), now_ms);
                Ok(Some(kek))
            }
            Ok(None) => Ok(None),
            Err(KeyStoreError::Store(e)) => Err(e),
            Err(KeyStoreError::Master(error)) => {
                // A record this master key cannot unwrap: treat the cookie as invalid.
                tracing::warn!(%error, kek_id = %id, "stored key-encryption key cannot be unwrapped");
                Ok(None)
            }
        }
    }

    async fn force_rotation(&self, now_ms: u64) -> Result<(), StoreError> {
        self.rotate(now_ms, true).await
    }

    async fn maintain(&self, now_ms: u64) -> Result<(), StoreError> {
        match self.shared_current().await {
            Ok(Some(shared)) => {
                if shared.id() != self.ring.current().id() {
                    self.ring.adopt_current(shared, now_ms);
                    tracing::info!("adopted the shared key-encryption key");
                }
            }
            Ok(None) => {
                // Redis lost the keys (flushed, or restarted without persistence):
                // publish ours again so every instance converges on one.
                let current = self.ring.current();
                self.publish(&current, None).await?;
            }
            Err(KeyStoreError::Store(e)) => return Err(e),
            Err(KeyStoreError::Master(error)) => {
                tracing::error!(%error, "the shared key-encryption key cannot be unwrapped");
            }
        }
        let current = self.ring.current();
        if now_ms.saturating_sub(current.created_at_ms()) >= self.rotation_interval_ms {
            self.rotate(now_ms, false).await?;
        }
        self.ring.prune(now_ms);
        Ok(())
    }
}
