//! Single-use session ids: the server-side half of "every cookie state can be used once".
//!
//! The cookie carries the whole session, sealed; the server only remembers which
//! [`SessionId`]s are live. Each state change retires the old id and registers a new one
//! atomically ([`IdStore::replace`]); a successful verification ends the session
//! ([`IdStore::consume`]). A replayed cookie names a retired id and is refused.
//!
//! Operations take `now_ms` from the shell's injectable clock instead of reading the
//! system clock, so expiry is testable without sleeping and every node of a future shared
//! store judges expiry by the same rule.
//!
//! The stores are [`MemoryIdStore`] and [`redis::RedisIdStore`]; with metrics on, the
//! server wraps the Redis one in [`MeasuredIdStore`] to time its calls and count failures.
//!
//! A request's change of ids is an [`IdChange`], so that whoever runs it can be chosen:
//! the id store itself, or — on one Redis, or on a Redis Cluster for ids in the
//! limiter's slot — the abuse controls' charge, in the same script, so that a request
//! charged for is one round trip.

mod measured;
mod memory;
pub mod redis;

use async_trait::async_trait;

pub(crate) use measured::measured;
pub use measured::MeasuredIdStore;
pub use memory::MemoryIdStore;

use crate::protocol::SessionId;

/// Why the store could not answer. The in-memory store never fails; a networked one can.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The backing service did not answer (in time). The request must fail closed.
    #[error("session id store unavailable: {0}")]
    Unavailable(String),
}

/// What a request does to the live ids once it may go ahead: a new session registers its
/// id, any other state change retires the cookie's id for its successor, and a request
/// that changes no state yet (a right code before its final action, a refusal) keeps the
/// id and asks whether it is live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdChange {
    Create {
        id: SessionId,
        ttl_ms: u64,
    },
    Replace {
        old: SessionId,
        new: SessionId,
        ttl_ms: u64,
    },
    Keep {
        id: SessionId,
    },
}

impl IdChange {
    /// Makes the change on `store`: true when it took (a replace whose old id is no
    /// longer live does not; a keep takes when its id is live).
    pub async fn apply(self, store: &dyn IdStore, now_ms: u64) -> Result<bool, StoreError> {
        match self {
            IdChange::Create { id, ttl_ms } => {
                store.create(id, ttl_ms, now_ms).await.map(|()| true)
            }
            IdChange::Replace { old, new, ttl_ms } => store.replace(old, new, ttl_ms, now_ms).await,
            IdChange::Keep { id } => store.contains(id, now_ms).await,
        }
    }
}

/// A set of live session ids, each with an expiry.
///
/// An id whose expiry is `<= now_ms` is treated as absent by every operation.
#[async_trait]
pub trait IdStore: Send + Sync + 'static {
    /// Registers `id` as live until `now_ms + ttl_ms` (overwriting any previous expiry;
    /// ids hold at least 96 random bits — a store may fix the first 4 bytes as a Cluster
    /// hash tag — so an existing entry can only come from misuse).
    async fn create(&self, id: SessionId, ttl_ms: u64, now_ms: u64) -> Result<(), StoreError>;

    /// Moves the expiry of a live `id` to `now_ms + ttl_ms`. False if `id` is not live.
    async fn extend(&self, id: SessionId, ttl_ms: u64, now_ms: u64) -> Result<bool, StoreError>;

    /// Retires `old` and registers `new` (live until `now_ms + ttl_ms`), atomically with
    /// respect to other callers: true only for the one caller that found `old` live.
    async fn replace(
        &self,
        old: SessionId,
        new: SessionId,
        ttl_ms: u64,
        now_ms: u64,
    ) -> Result<bool, StoreError>;

    /// Retires `id`; true for exactly one caller if it was live.
    async fn consume(&self, id: SessionId, now_ms: u64) -> Result<bool, StoreError>;

    /// Whether `id` is live. Checking and then acting is a race, so request handling
    /// decides with `replace`/`consume`; a check only answers a spent cookie early.
    async fn contains(&self, id: SessionId, now_ms: u64) -> Result<bool, StoreError>;

    /// A fresh id for the successor of `previous` (or for a new session). Random by
    /// default; a store may keep part of the previous id so both land on the same shard
    /// (Redis Cluster hash tags), which `replace` needs to be atomic.
    fn successor_id(&self, previous: Option<&SessionId>) -> SessionId {
        let _ = previous;
        SessionId::random()
    }

    /// Whether the store can serve requests now (for `/ready`).
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
