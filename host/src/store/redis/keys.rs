//! Key-encryption keys shared through Redis, sealed by the master key.
//!
//! Every instance keeps the keys it knows in a local [`KeyRing`] (sealing and opening
//! never wait on Redis) and, once per maintenance tick, reads the shared `current`
//! pointer and the list of revoked keys. Rotation is done by one instance — whichever
//! takes a short `SET NX` lock once the current key is due — and the others adopt the
//! new key at their next tick, so there is no thundering herd. A cookie naming a key
//! this instance has not seen yet (sealed just after another instance rotated) is
//! handled by [`KeyStore::fetch`].
//!
//! Rotation cannot stall: a new key's record, its index entry and the pointer move in
//! one script, so the pointer never names a record that was not written; and a pointer
//! that names a record that has since gone (expired, evicted, deleted) is repaired by
//! whichever instance takes the rotation lock, at start-up or at its next tick. A
//! record that does not authenticate under the master key is refused and logged, never
//! used nor overwritten (this instance may be the one with the wrong master key). An
//! instance never adopts a current key older than one it has already seen shared (unless
//! its own current key was revoked), so pointing `current` back at an old key does not
//! roll anyone back; and every key it publishes is created just after the newest shared
//! one, so a publisher whose clock is behind is not taken for a roll-back.

use super::RedisConnection;
use crate::crypto::{
    KekId, KeyEncryptionKey, KeyRing, KeySource, KeyStore, MasterKey, MasterKeyError, MasterKeys,
};
use crate::store::StoreError;
use async_trait::async_trait;
use parking_lot::RwLock;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Writes a new key's record and index entry and points `current` at it — only if the
/// pointer still names ARGV[5] (empty: names nothing) and the key was never revoked, so
/// a slow rotator cannot undo a newer rotation and no orphan record is ever written.
/// KEYS: record, index, pointer, revoked. ARGV: record, ttl ms, expiry ms, id, expected.
const PUBLISH: &str = r"
local current = redis.call('GET', KEYS[3])
if current == false then current = '' end
if current ~= ARGV[5] or redis.call('ZSCORE', KEYS[4], ARGV[4]) then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
redis.call('SET', KEYS[3], ARGV[4])
return 1";

/// Revokes key ARGV[1]: lists it as revoked (forgetting revocations older than ARGV[7]),
/// deletes its record and, if it is current (or nothing is), makes the new key ARGV[3]
/// current in the same step. Returns 1 when it rotated.
/// KEYS: old record, revoked, pointer, new record, index.
/// ARGV: old id, now ms, new id, new record, ttl ms, new expiry ms, forget-before ms.
const REVOKE: &str = r"
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[7])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[5], ARGV[1])
local current = redis.call('GET', KEYS[3])
if current == false or current == ARGV[1] then
  redis.call('SET', KEYS[4], ARGV[4], 'PX', ARGV[5])
  redis.call('ZADD', KEYS[5], ARGV[6], ARGV[3])
  redis.call('SET', KEYS[3], ARGV[3])
  return 1
end
return 0";

/// Drops id ARGV[1] from the index KEYS[2] if its record KEYS[1] does not exist.
const FORGET_IF_GONE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('ZREM', KEYS[2], ARGV[1]) end";

/// Releases the rotation lock if this holder still owns it.
const UNLOCK: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0";

/// How long the rotation lock is held at most (if its holder dies).
const ROTATION_LOCK: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0} (OTP_MASTER_KEY / master_key_file)")]
    Master(#[from] MasterKeyError),
    #[error("another instance holds the rotation lock; try again in a few seconds")]
    Busy,
    #[error(
        "no key-encryption keys under the prefix {prefix:?} in this Redis: is OTP_STORE (and \
         OTP_STORE_PREFIX / store_prefix) the one the instances use?"
    )]
    Empty { prefix: String },
}

/// What [`RedisKeyStore::connect`] does when Redis holds no keys yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhenEmpty {
    /// Publish a fresh key: the first instance of a deployment.
    Create,
    /// Fail with [`KeyStoreError::Empty`]: an operator's command, for which no keys
    /// means the wrong Redis, database or prefix (creating some would report success
    /// on a store no instance uses).
    Refuse,
}

/// What `otp-server keys rotate` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationReport {
    pub previous: Option<KekId>,
    pub current: KekId,
    pub revoked: Option<KekId>,
}

/// What `otp-server keys rewrap` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RewrapReport {
    pub resealed: usize,
    /// Listed but gone (expired or revoked): dropped from the index.
    pub missing: usize,
    /// Not authentic under either master key: left alone, logged.
    pub refused: usize,
}

/// What the shared pointer names, as read once.
enum Shared {
    /// No pointer (a fresh or flushed Redis).
    Nothing,
    Key(Arc<KeyEncryptionKey>),
    /// A pointer naming a record that is not there (or not even an id): its text, which
    /// a repair must find unchanged to replace it.
    Missing(String),
    /// A pointer naming a record that does not open under the master key.
    NotAuthentic(KekId, MasterKeyError),
}

impl Shared {
    /// The pointer's text as read (empty: no pointer), for a publish that must find it
    /// unchanged.
    fn pointer(&self) -> String {
        match self {
            Shared::Nothing => String::new(),
            Shared::Key(kek) => kek.id().to_string(),
            Shared::Missing(text) => text.clone(),
            Shared::NotAuthentic(id, _) => id.to_string(),
        }
    }
}

pub struct RedisKeyStore {
    redis: RedisConnection,
    master: MasterKeys,
    ring: KeyRing,
    rotation_interval_ms: u64,
    /// How long a stored key lives: while current, plus while cookies sealed with it live.
    stored_ttl_ms: u64,
    /// Creation time of the newest key seen through the shared pointer: a pointer moved
    /// back to an older key is not followed.
    newest_shared_ms: AtomicU64,
    /// Keys revoked anywhere, as of the last tick: never fetched again.
    revoked: RwLock<HashSet<KekId>>,
    publish: redis::Script,
    revoke: redis::Script,
    unlock: redis::Script,
}

impl RedisKeyStore {
    /// Loads the shared current key, creating and publishing one if Redis has none (as
    /// `when_empty` says) and repairing the pointer if it names a record that is gone.
    /// Fails if Redis cannot be reached or the current record does not open under the
    /// master key.
    pub async fn connect(
        redis: RedisConnection,
        master: MasterKeys,
        now_ms: u64,
        retention_ms: u64,
        rotation_interval_ms: u64,
        when_empty: WhenEmpty,
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
            newest_shared_ms: AtomicU64::new(0),
            revoked: RwLock::new(HashSet::new()),
            publish: redis::Script::new(PUBLISH),
            revoke: redis::Script::new(REVOKE),
            unlock: redis::Script::new(UNLOCK),
        };
        store.refresh_revoked().await?;
        // A few rounds: another instance may be publishing or repairing at this moment.
        for _ in 0..50 {
            match store.shared().await? {
                Shared::Key(kek) => {
                    store
                        .newest_shared_ms
                        .fetch_max(kek.created_at_ms(), Ordering::Relaxed);
                    store.ring = KeyRing::from_shared(kek, retention_ms);
                    return Ok(store);
                }
                Shared::Nothing if when_empty == WhenEmpty::Refuse => {
                    return Err(KeyStoreError::Empty {
                        prefix: store.redis.key(""),
                    });
                }
                Shared::Nothing => {
                    let fresh = store.fresh_key(now_ms);
                    store.publish(&fresh, "", now_ms).await?;
                }
                Shared::Missing(pointer) => {
                    store.repair(&pointer, now_ms).await?;
                }
                Shared::NotAuthentic(id, error) => {
                    tracing::error!(%error, kek_id = %id, "the shared current key-encryption key record is refused");
                    return Err(error.into());
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(KeyStoreError::Busy)
    }

    fn pointer_key(&self) -> String {
        self.redis.key("kek:{keys}:current")
    }

    fn lock_key(&self) -> String {
        self.redis.key("kek:{keys}:rotating")
    }

    fn index_key(&self) -> String {
        self.redis.key("kek:{keys}:index")
    }

    fn revoked_key(&self) -> String {
        self.redis.key("kek:{keys}:revoked")
    }

    fn record_key(&self, id: &KekId) -> String {
        self.redis.key(&format!("kek:{{keys}}:{id}"))
    }

    fn newest_shared_ms(&self) -> u64 {
        self.newest_shared_ms.load(Ordering::Relaxed)
    }

    /// A new key to publish, created no earlier than just after the newest shared key:
    /// instances refuse to move to an older key, so one published from a host whose
    /// clock is behind (an operator's `keys rotate`) must not look like a move back.
    fn fresh_key(&self, now_ms: u64) -> KeyEncryptionKey {
        KeyEncryptionKey::generate(now_ms.max(self.newest_shared_ms().saturating_add(1)))
    }

    fn is_revoked(&self, id: &KekId) -> bool {
        self.revoked.read().contains(id)
    }

    /// Makes a key read through the shared pointer (or published by this instance) the
    /// current one here, and the newest shared key seen.
    fn adopt_shared(&self, kek: Arc<KeyEncryptionKey>, now_ms: u64) {
        self.newest_shared_ms
            .fetch_max(kek.created_at_ms(), Ordering::Relaxed);
        self.ring.adopt_current(kek, now_ms);
    }

    /// Reads the pointer and opens what it names.
    async fn shared(&self) -> Result<Shared, StoreError> {
        let pointer = self.pointer_key();
        let id: Option<String> = self
            .redis
            .run(|mut c| async move { redis::cmd("GET").arg(&pointer).query_async(&mut c).await })
            .await?;
        let Some(text) = id else {
            return Ok(Shared::Nothing);
        };
        let Some(id) = parse_kek_id(&text) else {
            // Not even an id: like a pointer to a record that is not there.
            return Ok(Shared::Missing(text));
        };
        if let Some(kek) = self.ring.get(&id) {
            return Ok(Shared::Key(kek));
        }
        Ok(match self.load(&id).await? {
            Ok(Some(kek)) => Shared::Key(kek),
            Ok(None) => Shared::Missing(text),
            Err(error) => Shared::NotAuthentic(id, error),
        })
    }

    /// Reads and opens one stored key: `Ok(None)` if there is no record.
    async fn load(
        &self,
        id: &KekId,
    ) -> Result<Result<Option<Arc<KeyEncryptionKey>>, MasterKeyError>, StoreError> {
        let key = self.record_key(id);
        let stored: Option<Vec<u8>> = self
            .redis
            .run(|mut c| async move { redis::cmd("GET").arg(&key).query_async(&mut c).await })
            .await?;
        Ok(match stored {
            Some(bytes) => self.master.open(*id, &bytes).map(|kek| Some(Arc::new(kek))),
            None => Ok(None),
        })
    }

    /// Stores `kek` and points the shared pointer at it, if the pointer still reads
    /// `expected` (empty: there is none). Returns whether the pointer moved.
    async fn publish(
        &self,
        kek: &KeyEncryptionKey,
        expected: &str,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let keys = [
            self.record_key(&kek.id()),
            self.index_key(),
            self.pointer_key(),
            self.revoked_key(),
        ];
        let record = self.master.seal(kek);
        let ttl = self.stored_ttl_ms;
        let expires = now_ms.saturating_add(ttl);
        let expected = expected.to_string();
        let id = kek.id().to_string();
        let script = &self.publish;
        let moved = self
            .redis
            .run(|mut c| async move {
                script
                    .key(&keys[..])
                    .arg(record)
                    .arg(ttl)
                    .arg(expires)
                    .arg(id)
                    .arg(expected)
                    .invoke_async::<i64>(&mut c)
                    .await
            })
            .await?
            == 1;
        if moved {
            self.newest_shared_ms
                .fetch_max(kek.created_at_ms(), Ordering::Relaxed);
        }
        Ok(moved)
    }

    /// Takes the rotation lock; returns its token if this caller got it.
    async fn lock(&self) -> Result<Option<String>, StoreError> {
        let key = self.lock_key();
        let token = KekId::random().to_string();
        let value = token.clone();
        let won: Option<String> = self
            .redis
            .run(|mut c| async move {
                redis::cmd("SET")
                    .arg(&key)
                    .arg(value)
                    .arg("NX")
                    .arg("PX")
                    .arg(ROTATION_LOCK.as_millis() as u64)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(won.map(|_| token))
    }

    async fn unlock(&self, token: String) {
        let (key, script) = (self.lock_key(), &self.unlock);
        let released = self
            .redis
            .run(
                |mut c| async move { script.key(key).arg(token).invoke_async::<i64>(&mut c).await },
            )
            .await;
        if let Err(error) = released {
            tracing::debug!(%error, "rotation lock not released; it expires by itself");
        }
    }

    /// Takes the rotation lock, waiting up to `patience` for another holder to finish.
    async fn lock_within(&self, patience: Duration) -> Result<String, KeyStoreError> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            if let Some(token) = self.lock().await? {
                return Ok(token);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(KeyStoreError::Busy);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Makes a fresh key current in place of the pointer's text `expected` if this
    /// instance wins the lock. Returns the new key if the pointer moved.
    async fn rotate_from(
        &self,
        expected: &str,
        now_ms: u64,
    ) -> Result<Option<Arc<KeyEncryptionKey>>, StoreError> {
        let Some(token) = self.lock().await? else {
            return Ok(None);
        };
        let fresh = Arc::new(self.fresh_key(now_ms));
        let moved = self.publish(&fresh, expected, now_ms).await;
        self.unlock(token).await;
        Ok(moved?.then_some(fresh))
    }

    /// The pointer names a record that is gone (or is not an id): one instance replaces
    /// it with a fresh key.
    async fn repair(&self, missing: &str, now_ms: u64) -> Result<(), StoreError> {
        if let Some(fresh) = self.rotate_from(missing, now_ms).await? {
            self.ring.adopt_current(fresh, now_ms);
            tracing::warn!(
                missing = %missing,
                "the shared current key-encryption key record was gone: repaired with a new key"
            );
        }
        Ok(())
    }

    /// Reads the revoked list and drops every revoked key this instance holds.
    async fn refresh_revoked(&self) -> Result<(), StoreError> {
        let key = self.revoked_key();
        let ids: Vec<String> = self
            .redis
            .run(|mut c| async move {
                redis::cmd("ZRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        let ids: HashSet<KekId> = ids.iter().filter_map(|id| parse_kek_id(id)).collect();
        *self.revoked.write() = ids;
        Ok(())
    }

    /// Drops every revoked key this instance holds. A revoked current key is replaced
    /// by a shared one, never by a key of this instance's own (which no other instance
    /// could open cookies with): by a fresh published key when the pointer still names
    /// it, else it stays until the pointer moves on (the next tick adopts that).
    /// `pointer` is the shared pointer's text as this tick read it (empty: none).
    async fn drop_revoked(&self, now_ms: u64, pointer: &str) -> Result<(), StoreError> {
        let revoked: Vec<KekId> = self.revoked.read().iter().copied().collect();
        for id in revoked {
            if self.ring.get(&id).is_none() {
                continue;
            }
            if self.ring.current().id() == id {
                // Replace the pointer if it names the revoked key or nothing.
                let id_text = id.to_string();
                let expected = if pointer.is_empty() { "" } else { &id_text };
                match self.rotate_from(expected, now_ms).await? {
                    Some(fresh) => self.ring.adopt_current(fresh, now_ms),
                    None => {
                        tracing::warn!(kek_id = %id, "the current key-encryption key is revoked; it is replaced once the shared pointer moves on");
                        continue;
                    }
                }
            }
            self.ring.revoke(&id, now_ms);
            tracing::warn!(kek_id = %id, "dropped a key-encryption key revoked elsewhere");
        }
        Ok(())
    }

    /// `otp-server keys rotate`: makes a fresh key current now (waiting for the rotation
    /// lock if another instance holds it); with `revoke_current`, the previous key is
    /// revoked in the same step, so cookies sealed with it stop opening everywhere.
    pub async fn rotate_now(
        &self,
        now_ms: u64,
        revoke_current: bool,
    ) -> Result<RotationReport, KeyStoreError> {
        let pointer = self.shared().await?.pointer();
        let previous = parse_kek_id(&pointer);
        if revoke_current {
            if let Some(previous) = previous {
                let current = self.revoke_and_replace(&previous, now_ms).await?;
                return Ok(RotationReport {
                    previous: Some(previous),
                    current,
                    revoked: Some(previous),
                });
            }
        }
        let token = self.lock_within(Duration::from_secs(10)).await?;
        let fresh = self.fresh_key(now_ms);
        let moved = self.publish(&fresh, &pointer, now_ms).await;
        self.unlock(token).await;
        if !moved? {
            return Err(KeyStoreError::Busy);
        }
        Ok(RotationReport {
            previous,
            current: fresh.id(),
            revoked: None,
        })
    }

    /// Revokes `id` everywhere; if it was current, a fresh key replaces it in the same
    /// step. Returns the key current afterwards.
    async fn revoke_and_replace(&self, id: &KekId, now_ms: u64) -> Result<KekId, StoreError> {
        let fresh = Arc::new(self.fresh_key(now_ms));
        let keys = [
            self.record_key(id),
            self.revoked_key(),
            self.pointer_key(),
            self.record_key(&fresh.id()),
            self.index_key(),
        ];
        let record = self.master.seal(&fresh);
        let ttl = self.stored_ttl_ms;
        let args = (
            id.to_string(),
            now_ms,
            fresh.id().to_string(),
            record,
            ttl,
            now_ms.saturating_add(ttl),
            now_ms.saturating_sub(ttl),
        );
        let script = &self.revoke;
        let rotated = self
            .redis
            .run(|mut c| async move {
                script
                    .key(&keys[..])
                    .arg(args.0)
                    .arg(args.1)
                    .arg(args.2)
                    .arg(args.3)
                    .arg(args.4)
                    .arg(args.5)
                    .arg(args.6)
                    .invoke_async::<i64>(&mut c)
                    .await
            })
            .await?
            == 1;
        self.revoked.write().insert(*id);
        if rotated {
            self.adopt_shared(fresh.clone(), now_ms);
        } else if self.ring.current().id() == *id {
            // The pointer had moved on already: take the key it names, not one of our own.
            if let Shared::Key(shared) = self.shared().await? {
                if !self.is_revoked(&shared.id()) {
                    self.adopt_shared(shared, now_ms);
                }
            }
        }
        if self.ring.current().id() != *id {
            self.ring.revoke(id, now_ms);
        }
        Ok(self.ring.current().id())
    }

    /// `otp-server keys rewrap`: re-seals every stored key under `new_master`: every key
    /// the index lists and the one the pointer names (whether or not the index still
    /// lists it). Index entries whose record is gone are dropped; the index is never
    /// trimmed by this host's clock, which may be far from the clocks that wrote it.
    pub async fn rewrap(&self, new_master: &MasterKey) -> Result<RewrapReport, StoreError> {
        let (index, pointer) = (self.index_key(), self.pointer_key());
        let (mut listed, current): (Vec<String>, Option<String>) = self
            .redis
            .run(|mut c| async move {
                let listed = redis::cmd("ZRANGE")
                    .arg(&index)
                    .arg(0)
                    .arg(-1)
                    .query_async(&mut c)
                    .await?;
                let current = redis::cmd("GET").arg(&pointer).query_async(&mut c).await?;
                Ok((listed, current))
            })
            .await?;
        if let Some(current) = current.filter(|id| !listed.contains(id)) {
            listed.push(current);
        }
        let forget = redis::Script::new(FORGET_IF_GONE);
        let mut report = RewrapReport::default();
        for (text, id) in listed
            .iter()
            .filter_map(|text| parse_kek_id(text).map(|id| (text, id)))
        {
            match self.load(&id).await? {
                Ok(Some(kek)) => {
                    let (key, record) = (self.record_key(&id), new_master.seal(&kek));
                    // XX: a record that expired meanwhile stays gone; KEEPTTL: same life.
                    let written: Option<String> = self
                        .redis
                        .run(|mut c| async move {
                            redis::cmd("SET")
                                .arg(&key)
                                .arg(record)
                                .arg("XX")
                                .arg("KEEPTTL")
                                .query_async(&mut c)
                                .await
                        })
                        .await?;
                    if written.is_some() {
                        report.resealed += 1;
                    } else {
                        report.missing += 1;
                    }
                }
                Ok(None) => {
                    report.missing += 1;
                    // Unlisted only if still gone: an instance may publish it meanwhile.
                    let keys = [self.record_key(&id), self.index_key()];
                    let (forget, text) = (&forget, text.clone());
                    self.redis
                        .run(|mut c| async move {
                            forget
                                .key(&keys[..])
                                .arg(&text)
                                .invoke_async::<()>(&mut c)
                                .await
                        })
                        .await?;
                }
                Err(error) => {
                    tracing::error!(%error, kek_id = %id, "stored key-encryption key record refused; left as it is");
                    report.refused += 1;
                }
            }
        }
        Ok(report)
    }

    /// One tick: follow the pointer (or repair it), drop revoked keys, rotate when due.
    async fn tick(&self, now_ms: u64) -> Result<(), StoreError> {
        self.refresh_revoked().await?;
        let shared = self.shared().await?;
        let pointer = shared.pointer();
        match shared {
            Shared::Key(shared) => {
                let current = self.ring.current();
                if shared.id() != current.id() && !self.is_revoked(&shared.id()) {
                    // A revoked current key gives way to the shared one, whatever its age.
                    if shared.created_at_ms() < self.newest_shared_ms()
                        && !self.is_revoked(&current.id())
                    {
                        tracing::error!(
                            kek_id = %shared.id(),
                            "the shared pointer names an older key-encryption key than one already in use: not followed"
                        );
                        // Moved back (a failover lost the last write, or a hand): point
                        // it at the newer key again, or rotation would stall on a pointer
                        // no instance's rotation expects. Only a key newer than the one
                        // named: two instances must never push the pointer back and forth.
                        if current.created_at_ms() > shared.created_at_ms()
                            && self.publish(&current, &pointer, now_ms).await?
                        {
                            tracing::warn!(kek_id = %current.id(), "pointed the shared pointer at the newer key again");
                        }
                    } else {
                        self.adopt_shared(shared, now_ms);
                        tracing::info!("adopted the shared key-encryption key");
                    }
                }
            }
            Shared::Nothing => {
                // Redis lost the keys (flushed, or restarted without persistence):
                // publish ours again so every instance converges on one.
                let current = self.ring.current();
                if self.publish(&current, "", now_ms).await? {
                    tracing::warn!("the shared key-encryption keys were gone: published this instance's current key");
                }
            }
            Shared::Missing(pointer) => self.repair(&pointer, now_ms).await?,
            Shared::NotAuthentic(id, error) => {
                tracing::error!(%error, kek_id = %id, "the shared current key-encryption key record is refused");
            }
        }
        self.drop_revoked(now_ms, &pointer).await?;
        let current = self.ring.current();
        if now_ms.saturating_sub(current.created_at_ms()) >= self.rotation_interval_ms {
            match self.rotate_from(&current.id().to_string(), now_ms).await? {
                Some(fresh) => {
                    self.ring.adopt_current(fresh, now_ms);
                    tracing::info!("key-encryption key rotated (shared)");
                }
                None => tracing::debug!("rotation due; another instance rotates"),
            }
        }
        self.ring.prune(now_ms);
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
        if self.revoked.read().contains(id) {
            return Ok(None);
        }
        match self.load(id).await? {
            Ok(Some(kek)) => {
                self.ring.insert_retired(kek.clone(), now_ms);
                Ok(Some(kek))
            }
            Ok(None) => Ok(None),
            Err(error) => {
                // A record that does not authenticate: never used; the cookie is invalid.
                tracing::error!(%error, kek_id = %id, "stored key-encryption key record refused");
                Ok(None)
            }
        }
    }

    async fn revoke(&self, id: &KekId, now_ms: u64) -> Result<(), StoreError> {
        let current = self.revoke_and_replace(id, now_ms).await?;
        tracing::warn!(kek_id = %id, current = %current, "key-encryption key revoked on every instance");
        Ok(())
    }

    async fn maintain(&self, now_ms: u64) -> Result<(), StoreError> {
        self.tick(now_ms).await
    }

    async fn rotate(&self, now_ms: u64) -> Result<KekId, StoreError> {
        let report = self.rotate_now(now_ms, false).await.map_err(|e| match e {
            KeyStoreError::Store(e) => e,
            other => StoreError::Unavailable(other.to_string()),
        })?;
        // Adopt it here now rather than at the next tick. The rotation has happened
        // whatever this answers: a failure here only delays adoption to the next tick.
        if let Err(error) = self.tick(now_ms).await {
            tracing::warn!(%error, "rotated; adopting the new key waits for the next tick");
        }
        Ok(report.current)
    }
}
