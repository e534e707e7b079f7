//! What a limiter store does, whatever keeps the state: one atomic check-and-charge of
//! every budget a request needs (with the fraud guard's count), and one settlement
//! afterwards (give back reservations, record a conversion). A store that also holds the
//! session ids (one Redis; a Cluster, for ids in the limiter's slot) may make the
//! request's id change in the same step ([`LimiterStore::charge_with`]); the others
//! leave it to the id store.
//!
//! The store owns the clock: the memory store reads the server's [`Clock`] (so
//! `POST /test/clock` moves windows), Redis reads its own `TIME`, so every instance
//! judges every window by one clock.
//!
//! [`Clock`]: crate::clock::Clock

use super::fraud::{FraudMode, FraudThresholds};
use super::gcra::Rate;
use super::keys::LimiterKey;
use crate::store::{IdChange, StoreError};
use async_trait::async_trait;

/// The budgets, by what they count. The short tag names the key kind in the stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BudgetKind {
    CredentialSends,
    CredentialDailySends,
    NetworkSends,
    NetworkRequests,
    NetworkFailures,
    CredentialNetworkFailures,
    GlobalSends,
}

impl BudgetKind {
    pub fn tag(self) -> &'static str {
        match self {
            BudgetKind::CredentialSends => "sc",
            BudgetKind::CredentialDailySends => "sd",
            BudgetKind::NetworkSends => "sn",
            BudgetKind::NetworkRequests => "rn",
            BudgetKind::NetworkFailures => "fn",
            BudgetKind::CredentialNetworkFailures => "fc",
            BudgetKind::GlobalSends => "sg",
        }
    }

    /// The policy name in `RateLimit-Policy` / `RateLimit`.
    pub fn policy(self) -> &'static str {
        match self {
            BudgetKind::CredentialSends => "sends-per-credential",
            BudgetKind::CredentialDailySends => "sends-per-credential-daily",
            BudgetKind::NetworkSends => "sends-per-network",
            BudgetKind::NetworkRequests => "requests-per-network",
            BudgetKind::NetworkFailures => "failed-verifications-per-network",
            BudgetKind::CredentialNetworkFailures => "failed-verifications-per-credential-network",
            BudgetKind::GlobalSends => "sends-global",
        }
    }

    /// What ran out, in general words (never the key).
    pub fn message(self) -> &'static str {
        match self {
            BudgetKind::CredentialSends | BudgetKind::CredentialDailySends => {
                "too many codes were sent to this credential; try again later"
            }
            BudgetKind::NetworkSends => {
                "too many codes were requested from your network; try again later"
            }
            BudgetKind::NetworkRequests => "too many requests from your network; slow down",
            BudgetKind::NetworkFailures | BudgetKind::CredentialNetworkFailures => {
                "too many incorrect codes from your network; try again later"
            }
            BudgetKind::GlobalSends => "the server is sending too many codes; try again later",
        }
    }
}

/// One budget to charge: which, under which key, at which rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Check {
    pub kind: BudgetKind,
    pub key: LimiterKey,
    pub rate: Rate,
}

/// The fraud guard's part of a send.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FraudCheck {
    /// The destination group; `None` for a resend (the cookie keeps no group): the store
    /// takes the group of the credential's pending send, and skips the guard without one.
    pub group: Option<LimiterKey>,
    pub credential: LimiterKey,
    pub thresholds: FraudThresholds,
    pub mode: FraudMode,
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    Budget(BudgetKind, Rate),
    FraudGuard,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub reason: Reason,
    pub retry_after_ms: u64,
}

/// The outcome of a charge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every budget was charged; `fraud_tripped` says whether the send exceeded the
    /// fraud guard's threshold in `record` mode.
    Allowed { fraud_tripped: bool },
    /// Nothing was charged.
    Refused(Refusal),
}

#[async_trait]
pub trait LimiterStore: Send + Sync + 'static {
    /// Charges one unit to every check and, for a send, counts it for the fraud guard
    /// — all of it or (when any budget or the guard in `deny` mode refuses) none.
    async fn charge(
        &self,
        checks: &[Check],
        fraud: Option<&FraudCheck>,
    ) -> Result<Verdict, StoreError>;

    /// Charges like [`charge`](Self::charge) and, only when allowed, makes the request's
    /// `change` of session ids in the same atomic step, when this store can reach them
    /// (one Redis, or a Cluster for ids in the limiter's slot: one script, one round
    /// trip). The second value is `Some(taken)` when it made the change (`taken` as
    /// [`IdChange::apply`] says it), `None` when the caller must make it — always so for
    /// a refusal, and by default.
    async fn charge_with(
        &self,
        checks: &[Check],
        fraud: Option<&FraudCheck>,
        change: IdChange,
    ) -> Result<(Verdict, Option<bool>), StoreError> {
        let _ = change;
        Ok((self.charge(checks, fraud).await?, None))
    }

    /// Gives one unit back to each check, and when `verified` names a credential,
    /// counts its pending send as verified for the fraud guard.
    async fn settle(
        &self,
        refunds: &[Check],
        verified: Option<LimiterKey>,
    ) -> Result<(), StoreError>;

    /// Whether the store answers (for `/ready`).
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
