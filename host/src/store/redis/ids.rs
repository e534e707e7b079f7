//! Single-use session ids in Redis. Each operation is one command or one Lua script,
//! so it is atomic across every instance sharing the Redis.
//!
//! An id's first bytes are its key's Cluster hash tag, and a session's successive ids
//! keep them, so `replace` touches one slot. A new session's tag is random (sessions
//! spread over a Cluster's masters) or, while the abuse controls are on, the one tag
//! whose slot is the limiter's ([`IdPlacement::WithLimiter`]): then the limiter's
//! script, which touches that slot only, can make a request's id change in its charge
//! on a Cluster too — one round trip per request, as on one Redis.

use super::RedisConnection;
use crate::protocol::SessionId;
use crate::store::{IdStore, StoreError};
use async_trait::async_trait;

/// Deletes the old id and, only if it existed, creates the new one: the atomic
/// "this cookie state is used up, its successor is live".
const REPLACE: &str = r"
if redis.call('DEL', KEYS[1]) == 1 then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[1])
  return 1
end
return 0";

/// Bytes of an id that successor ids keep, naming the hash slot of a session's keys.
const TAG_LEN: usize = 4;

/// What every limiter key starts with (after the store prefix): its hash tag `{lim}`
/// puts all of them in one Cluster slot.
pub const LIMITER_KEY_PREFIX: &str = "lim:{lim}:";

/// The session tag whose key (`s:{000078a8}:…`) lands in `{lim}`'s Cluster slot, 8883:
/// the first four-byte value, counting up from zero, whose hex hashes to that slot (a
/// unit test checks it; the Cluster suite asks `CLUSTER KEYSLOT`).
const LIMITER_SLOT_TAG: [u8; TAG_LEN] = [0x00, 0x00, 0x78, 0xa8];

/// Where a new session's id goes on a Redis Cluster (on one Redis, it makes no
/// difference).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdPlacement {
    /// A random hash tag: sessions spread over every master.
    Spread,
    /// The limiter's slot. Every limited request reaches that slot's master anyway (all
    /// limiter keys are there), so its id change goes in the same script: one round trip
    /// instead of two, and a request depends on one master instead of two. The price:
    /// the sessions' keys (about 134 bytes each) are all on that master. Ids keep 96
    /// random bits.
    WithLimiter,
}

/// Whether `id` carries the limiter's tag (its session began with
/// [`IdPlacement::WithLimiter`]), so that its key is in the limiter's slot — when the key
/// prefix has no hash tag of its own that says otherwise ([`limiter_tag_shares_slot`]).
pub fn has_limiter_tag(id: &SessionId) -> bool {
    id.as_bytes()[..TAG_LEN] == LIMITER_SLOT_TAG
}

/// Whether, under `redis`'s key prefix, an id with the limiter's tag is in the slot of
/// the limiter's keys: not when the prefix holds a `{` that makes another hash tag.
pub fn limiter_tag_shares_slot(redis: &RedisConnection) -> bool {
    let mut tagged = [0u8; 16];
    tagged[..TAG_LEN].copy_from_slice(&LIMITER_SLOT_TAG);
    slot(&id_key(redis, &SessionId::from_bytes(tagged))) == slot(&redis.key(LIMITER_KEY_PREFIX))
}

/// The Redis Cluster slot of `key`: the CRC16 (XMODEM) of its hash tag, modulo 16384.
fn slot(key: &str) -> u16 {
    let mut crc: u16 = 0;
    for &byte in hash_tag(key).as_bytes() {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

/// The part of `key` Redis Cluster hashes: what is between its first `{` and the next
/// `}` when that is not empty, else the whole key.
fn hash_tag(key: &str) -> &str {
    key.find('{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            rest.find('}')
                .filter(|&len| len > 0)
                .map(|len| &rest[..len])
        })
        .unwrap_or(key)
}

/// A fresh id: the successor of `previous` keeps its tag (its key stays in the slot of
/// the old one); a new session's tag is random or the limiter's, as `placement` says.
fn new_id(previous: Option<&SessionId>, placement: IdPlacement) -> SessionId {
    let mut bytes = *SessionId::random().as_bytes();
    match (previous, placement) {
        (Some(previous), _) => bytes[..TAG_LEN].copy_from_slice(&previous.as_bytes()[..TAG_LEN]),
        (None, IdPlacement::WithLimiter) => bytes[..TAG_LEN].copy_from_slice(&LIMITER_SLOT_TAG),
        (None, IdPlacement::Spread) => {}
    }
    SessionId::from_bytes(bytes)
}

pub struct RedisIdStore {
    redis: RedisConnection,
    replace: redis::Script,
    placement: IdPlacement,
}

impl RedisIdStore {
    pub fn new(redis: RedisConnection, placement: IdPlacement) -> RedisIdStore {
        RedisIdStore {
            redis,
            replace: redis::Script::new(REPLACE),
            placement,
        }
    }

    fn key(&self, id: &SessionId) -> String {
        id_key(&self.redis, id)
    }
}

/// The key of a live id: `PREFIX s:{TAG}:REST`. The hash tag keeps a session's
/// successive ids in one Cluster slot. The limiter's Redis store writes these keys too,
/// when a charge carries the request's id change (one Redis, or an id in its slot).
pub fn id_key(redis: &RedisConnection, id: &SessionId) -> String {
    let bytes = id.as_bytes();
    redis.key(&format!(
        "s:{{{}}}:{}",
        hex::encode(&bytes[..TAG_LEN]),
        hex::encode(&bytes[TAG_LEN..])
    ))
}

#[async_trait]
impl IdStore for RedisIdStore {
    async fn create(&self, id: SessionId, ttl_ms: u64, _now_ms: u64) -> Result<(), StoreError> {
        let key = self.key(&id);
        self.redis
            .run(|mut c| async move {
                redis::cmd("SET")
                    .arg(&key)
                    .arg("1")
                    .arg("PX")
                    .arg(ttl_ms.max(1))
                    .query_async::<()>(&mut c)
                    .await
            })
            .await
    }

    async fn extend(&self, id: SessionId, ttl_ms: u64, _now_ms: u64) -> Result<bool, StoreError> {
        let key = self.key(&id);
        self.redis
            .run(|mut c| async move {
                redis::cmd("PEXPIRE")
                    .arg(&key)
                    .arg(ttl_ms.max(1))
                    .query_async::<i64>(&mut c)
                    .await
            })
            .await
            .map(|n| n == 1)
    }

    async fn replace(
        &self,
        old: SessionId,
        new: SessionId,
        ttl_ms: u64,
        _now_ms: u64,
    ) -> Result<bool, StoreError> {
        let (old_key, new_key) = (self.key(&old), self.key(&new));
        let script = &self.replace;
        self.redis
            .run(|mut c| async move {
                script
                    .key(old_key)
                    .key(new_key)
                    .arg(ttl_ms.max(1))
                    .invoke_async::<i64>(&mut c)
                    .await
            })
            .await
            .map(|n| n == 1)
    }

    async fn consume(&self, id: SessionId, _now_ms: u64) -> Result<bool, StoreError> {
        let key = self.key(&id);
        self.redis
            .run(
                |mut c| async move { redis::cmd("DEL").arg(&key).query_async::<i64>(&mut c).await },
            )
            .await
            .map(|n| n == 1)
    }

    async fn contains(&self, id: SessionId, _now_ms: u64) -> Result<bool, StoreError> {
        let key = self.key(&id);
        self.redis
            .run(|mut c| async move {
                redis::cmd("EXISTS")
                    .arg(&key)
                    .query_async::<i64>(&mut c)
                    .await
            })
            .await
            .map(|n| n == 1)
    }

    fn successor_id(&self, previous: Option<&SessionId>) -> SessionId {
        new_id(previous, self.placement)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.redis.ping().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limiter_slot_tag_is_the_first_in_the_limiters_slot() {
        // Values Redis documents and answers (`CLUSTER KEYSLOT foo`, the CRC16 check).
        assert_eq!(slot("foo"), 12182);
        assert_eq!(slot("123456789"), 0x31c3);
        assert_eq!(slot("otp:lim:{lim}:g:"), 8883);
        let first = (0u32..)
            .map(u32::to_be_bytes)
            .find(|tag| slot(&hex::encode(tag)) == 8883)
            .unwrap();
        assert_eq!(first, LIMITER_SLOT_TAG);
    }

    #[test]
    fn a_new_session_takes_its_placements_tag_and_a_successor_its_sessions() {
        let limited = new_id(None, IdPlacement::WithLimiter);
        assert!(has_limiter_tag(&limited));
        let spread: Vec<SessionId> = (0..8).map(|_| new_id(None, IdPlacement::Spread)).collect();
        assert!(spread.iter().any(|id| !has_limiter_tag(id)));
        for placement in [IdPlacement::Spread, IdPlacement::WithLimiter] {
            let next = new_id(Some(&limited), placement);
            assert!(has_limiter_tag(&next));
            let next = new_id(Some(&spread[0]), placement);
            assert_eq!(next.as_bytes()[..TAG_LEN], spread[0].as_bytes()[..TAG_LEN]);
            assert_ne!(next.as_bytes()[TAG_LEN..], spread[0].as_bytes()[TAG_LEN..]);
        }
    }

    #[tokio::test]
    async fn a_key_prefix_with_a_hash_tag_of_its_own_decides_the_slot() {
        let shares = |prefix: &str| {
            let timeout = std::time::Duration::from_secs(1);
            limiter_tag_shares_slot(
                &RedisConnection::new("redis://127.0.0.1:1", prefix, timeout).unwrap(),
            )
        };
        assert!(shares("otp:"));
        assert!(shares("{app}otp:"));
        assert!(!shares("otp{a:"));
    }

    #[test]
    fn hash_tags_as_redis_cluster_reads_them() {
        assert_eq!(hash_tag("otp:s:{000078a8}:ab"), "000078a8");
        assert_eq!(hash_tag("otp:lim:{lim}:g:"), "lim");
        assert_eq!(hash_tag("{app}otp:s:{000078a8}:ab"), "app");
        assert_eq!(hash_tag("otp{a:lim:{lim}:"), "a:lim:{lim");
        assert_eq!(hash_tag("otp:{}:s:{x}"), "otp:{}:s:{x}");
        assert_eq!(hash_tag("otp:none"), "otp:none");
    }
}
