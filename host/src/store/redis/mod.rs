//! Redis as the shared store of several otp-server instances: single-use session ids
//! ([`RedisIdStore`]) and key-encryption keys wrapped by the master key
//! ([`RedisKeyStore`]).
//!
//! One multiplexed connection per instance, managed by redis-rs's `ConnectionManager`
//! (it reconnects by itself), and a timeout on every call: when Redis is unreachable
//! the OTP endpoints fail fast with 503 `STORE:UNAVAILABLE` and recover on their own.
//!
//! Key layout (all under the configured prefix, default `otp:`), Redis-Cluster safe:
//! - `PREFIX s:{TAG}:REST` — a live session id (value `1`, TTL = the session's life).
//!   `TAG` is the first 4 bytes of the id in hex, kept by every successor id of a
//!   session, so the old and new key of an atomic `replace` share a hash slot.
//! - `PREFIX kek:{keys}:ID` — a KEK wrapped with the master key (creation time +
//!   AES-KW output), expiring once no cookie can still use it.
//! - `PREFIX kek:{keys}:current` — the id of the KEK every instance seals with.
//! - `PREFIX kek:{keys}:rotating` — a short lock so one instance rotates.
//!
//! Nothing stored reveals a credential, a code or a usable key.

mod ids;
mod keys;

pub use ids::RedisIdStore;
pub use keys::{KeyStoreError, RedisKeyStore};

use super::StoreError;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::future::Future;
use std::time::Duration;

/// A connection to Redis shared by the id store and the key store.
#[derive(Clone)]
pub struct RedisConnection {
    manager: ConnectionManager,
    prefix: String,
    timeout: Duration,
}

impl RedisConnection {
    /// Prepares a connection to `url` (`redis://` or `rediss://`). Connecting happens
    /// lazily, so the server starts even while Redis is down.
    pub fn new(url: &str, prefix: &str, timeout: Duration) -> Result<RedisConnection, StoreError> {
        let client = redis::Client::open(url)
            .map_err(|e| StoreError::Unavailable(format!("invalid Redis URL: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let manager = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| StoreError::Unavailable(format!("Redis: {e}")))?;
        Ok(RedisConnection {
            manager,
            prefix: prefix.to_string(),
            timeout,
        })
    }

    pub fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    /// Runs one Redis operation under the store timeout.
    pub async fn run<T, F, Fut>(&self, operation: F) -> Result<T, StoreError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        match tokio::time::timeout(self.timeout, operation(self.manager.clone())).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(StoreError::Unavailable(format!("Redis: {error}"))),
            Err(_) => Err(StoreError::Unavailable(
                "Redis did not answer in time".into(),
            )),
        }
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        self.run(|mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await })
            .await
            .map(|_| ())
    }
}
