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

/// The hash tag of every limiter key (`{lim}`): all of them share one Cluster slot.
pub const LIMITER_HASH_TAG: &str = "lim";

/// The session tag whose key (`s:{000078a8}:…`) lands in `{lim}`'s Cluster slot, 8883:
/// the first four-byte value counting up from zero whose hex has the CRC16 of `lim`
/// modulo 16384 (a unit test checks it; the Cluster suite asks `CLUSTER KEYSLOT`).
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

/// Whether `id`'s key is in the limiter's slot (its session began with
/// [`IdPlacement::WithLimiter`]).
pub fn in_limiter_slot(id: &SessionId) -> bool {
    id.as_bytes()[..TAG_LEN] == LIMITER_SLOT_TAG
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
        let mut bytes = *SessionId::random().as_bytes();
        match (previous, self.placement) {
            (Some(previous), _) => {
                bytes[..TAG_LEN].copy_from_slice(&previous.as_bytes()[..TAG_LEN]);
            }
            (None, IdPlacement::WithLimiter) => bytes[..TAG_LEN].copy_from_slice(&LIMITER_SLOT_TAG),
            (None, IdPlacement::Spread) => {}
        }
        SessionId::from_bytes(bytes)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.redis.ping().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Redis Cluster's slot of a hash tag: CRC16 (XMODEM) modulo 16384.
    fn slot(tag: &[u8]) -> u16 {
        let mut crc: u16 = 0;
        for &byte in tag {
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

    #[test]
    fn the_limiter_slot_tag_is_the_first_in_the_limiters_slot() {
        // Values Redis documents and answers (`CLUSTER KEYSLOT foo`, the CRC16 check).
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"123456789"), 0x31c3);
        let target = slot(LIMITER_HASH_TAG.as_bytes());
        assert_eq!(target, 8883);
        let first = (0u32..)
            .map(u32::to_be_bytes)
            .find(|tag| slot(hex::encode(tag).as_bytes()) == target)
            .unwrap();
        assert_eq!(first, LIMITER_SLOT_TAG);
    }
}
