//! [`MeasuredLimiterStore`]: a shared limiter store with each call timed and its
//! failures counted beside the session store's calls
//! (`otp_store_call_duration_seconds{op="charge"|"settle"}`, `otp_store_errors_total`).
//! On Redis a charge also makes the request's session-id change (on a Cluster, of a
//! session in the limiter's slot, as all are while the limits are on), so a Redis that
//! stops answering fails there first: the store-error alert has to see it.

use super::keys::LimiterKey;
use super::store::{Check, FraudCheck, LimiterStore, Verdict};
use crate::store::{measured, IdChange, StoreError};
use async_trait::async_trait;
use std::sync::Arc;

/// Wraps a limiter store; charges (with or without an id change) are recorded as
/// `charge`, settlements as `settle`.
pub struct MeasuredLimiterStore {
    inner: Arc<dyn LimiterStore>,
}

impl MeasuredLimiterStore {
    pub fn new(inner: Arc<dyn LimiterStore>) -> MeasuredLimiterStore {
        MeasuredLimiterStore { inner }
    }
}

#[async_trait]
impl LimiterStore for MeasuredLimiterStore {
    async fn charge(
        &self,
        checks: &[Check],
        fraud: Option<&FraudCheck>,
    ) -> Result<Verdict, StoreError> {
        measured("charge", self.inner.charge(checks, fraud)).await
    }

    async fn charge_with(
        &self,
        checks: &[Check],
        fraud: Option<&FraudCheck>,
        change: IdChange,
    ) -> Result<(Verdict, Option<bool>), StoreError> {
        measured("charge", self.inner.charge_with(checks, fraud, change)).await
    }

    async fn settle(
        &self,
        refunds: &[Check],
        verified: Option<LimiterKey>,
    ) -> Result<(), StoreError> {
        measured("settle", self.inner.settle(refunds, verified)).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}
