//! [`MeasuredIdStore`]: any [`IdStore`] with each call timed and its failures counted
//! (`otp_store_call_duration_seconds{op}`, `otp_store_errors_total{op}`), so the service
//! and the stores stay free of instrumentation.

use super::{IdStore, StoreError};
use crate::protocol::SessionId;
use async_trait::async_trait;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

/// Wraps a store; every operation is recorded under its own name.
pub struct MeasuredIdStore {
    inner: Arc<dyn IdStore>,
}

impl MeasuredIdStore {
    pub fn new(inner: Arc<dyn IdStore>) -> MeasuredIdStore {
        MeasuredIdStore { inner }
    }
}

/// Runs one store call, recording it as `op`.
pub(crate) async fn measured<T>(
    op: &'static str,
    call: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let started = Instant::now();
    let result = call.await;
    crate::metrics::store_call(op, started.elapsed(), result.is_err());
    result
}

#[async_trait]
impl IdStore for MeasuredIdStore {
    async fn create(&self, id: SessionId, ttl_ms: u64, now_ms: u64) -> Result<(), StoreError> {
        measured("create", self.inner.create(id, ttl_ms, now_ms)).await
    }

    async fn extend(&self, id: SessionId, ttl_ms: u64, now_ms: u64) -> Result<bool, StoreError> {
        measured("extend", self.inner.extend(id, ttl_ms, now_ms)).await
    }

    async fn replace(
        &self,
        old: SessionId,
        new: SessionId,
        ttl_ms: u64,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        measured("replace", self.inner.replace(old, new, ttl_ms, now_ms)).await
    }

    async fn consume(&self, id: SessionId, now_ms: u64) -> Result<bool, StoreError> {
        measured("consume", self.inner.consume(id, now_ms)).await
    }

    async fn contains(&self, id: SessionId, now_ms: u64) -> Result<bool, StoreError> {
        measured("contains", self.inner.contains(id, now_ms)).await
    }

    fn successor_id(&self, previous: Option<&SessionId>) -> SessionId {
        self.inner.successor_id(previous)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        measured("ping", self.inner.ping()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryIdStore;

    #[tokio::test]
    async fn passes_every_call_through() {
        let store = MeasuredIdStore::new(Arc::new(MemoryIdStore::new()));
        let a = store.successor_id(None);
        let b = store.successor_id(Some(&a));
        store.create(a, 1000, 0).await.unwrap();
        assert!(store.contains(a, 10).await.unwrap());
        assert!(store.extend(a, 1000, 10).await.unwrap());
        assert!(store.replace(a, b, 1000, 20).await.unwrap());
        assert!(!store.consume(a, 30).await.unwrap());
        assert!(store.consume(b, 30).await.unwrap());
        store.ping().await.unwrap();
    }
}
