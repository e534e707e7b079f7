//! Single-use session ids in Redis. Each operation is one command or one Lua script,
//! so it is atomic across every instance sharing the Redis.

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

pub struct RedisIdStore {
    redis: RedisConnection,
    replace: redis::Script,
}

impl RedisIdStore {
    pub fn new(redis: RedisConnection) -> RedisIdStore {
        RedisIdStore {
            redis,
            replace: redis::Script::new(REPLACE),
        }
    }

    fn key(&self, id: &SessionId) -> String {
        id_key(&self.redis, id)
    }
}

/// The key of a live id: `PREFIX s:{TAG}:REST`. The hash tag keeps a session's
/// successive ids in one Cluster slot. The limiter's Redis store writes these keys too,
/// when a charge carries the request's id change (one Redis only).
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
        if let Some(previous) = previous {
            bytes[..TAG_LEN].copy_from_slice(&previous.as_bytes()[..TAG_LEN]);
        }
        SessionId::from_bytes(bytes)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.redis.ping().await
    }
}
