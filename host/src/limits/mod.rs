//! Abuse controls: send and guess budgets per client network, per credential and per
//! destination group, shared across instances, answered with 429 and `Retry-After`.
//!
//! This module owns the capability whole (Spin's "factor" style): its settings
//! ([`config`], the `[limits]` table), its checks ([`Limits`]), and its stores
//! ([`memory`] for one instance, [`redis`] for many). The service calls it at a few
//! points of each request, always *before* anything changes, so a refused request
//! changes nothing — no id retired, the cookie untouched, no attempt spent, nothing sent:
//! - requests per client network (bounds the CPU one client can use): every OTP
//!   request is charged once, before it changes anything — folded into the send or
//!   verify charge below when it gets that far (one store call, one Redis round trip,
//!   which on Redis also makes the request's id change where it can), alone
//!   ([`Limits::before_request`]) when it ends earlier; a network it refused is refused
//!   again first thing ([`Limits::before_anything`]) until its `Retry-After` has passed;
//! - [`Limits::before_send`]: create and resend, before the send: the destination
//!   group's allow/deny lists (403 `CREDENTIAL:NOT_ALLOWED`), sends per credential (per
//!   10 minutes and per day), per client network, globally, and the fraud guard; a send
//!   that turns out to send nothing (every sender unavailable, none bound, no call slot)
//!   gives the send budgets back ([`Limits::after_unsent`]);
//! - [`Limits::before_verify`] / [`Limits::after_verify`]: a verification *reserves* one
//!   failure of the per-network and per-(credential, network) failure budgets before the
//!   code is compared (so concurrent guesses cannot overshoot), and gives it back when
//!   the guess was right or was no guess at all. No budget is keyed on the credential
//!   alone, so an attacker's failures cannot lock the owner (on another network) out.
//!
//! Budgets are GCRA ([`gcra`]): O(1) state per key that expires by itself. Keys are
//! HMACs ([`keys`]): the stores never hold a credential or an address. The fraud guard
//! ([`fraud`]) counts unverified sends per destination group. Safe lists exempt
//! credentials (test numbers) and networks (an office) from every budget.
//!
//! When the store fails, requests fail closed with 503 `STORE:UNAVAILABLE`, or with
//! `fail_open = true` are served without limits; the log and `/ready` say so.

pub mod config;
pub mod fraud;
pub mod gcra;
pub mod keys;
pub mod measured;
pub mod memory;
pub mod redis;
pub mod store;

use crate::store::{IdChange, StoreError};
pub use config::{ForwardedHeader, LimitsConfig};
use fraud::FraudMode;
use ipnet::IpNet;
pub use keys::{KeyHasher, LimiterKey, Network};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
pub use store::{BudgetKind, Check, FraudCheck, LimiterStore, Reason, Refusal, Verdict};

/// A refusal as the client sees it: which policy, its quota and window (for the
/// `RateLimit-Policy` / `RateLimit` headers), when to come back, and why in general
/// words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimited {
    pub policy: &'static str,
    pub quota: u64,
    pub window_secs: u64,
    /// Whole seconds, rounded up, at least 1.
    pub retry_after_secs: u64,
    pub message: &'static str,
}

/// Why the limits stop a request.
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    /// A budget ran out (429 `RATE:LIMITED`).
    #[error("rate limited: {}", .0.policy)]
    Limited(RateLimited),
    /// The destination group is denied or not allowed (403 `CREDENTIAL:NOT_ALLOWED`).
    #[error("destination group not allowed")]
    NotAllowed,
    /// The limiter store did not answer and the limits fail closed (503).
    #[error(transparent)]
    Unavailable(#[from] StoreError),
}

/// How a verification turned out, for [`Limits::after_verify`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuessOutcome {
    /// The code was right: the reserved failure is given back, the send converted.
    Verified,
    /// The code was wrong: the reserved failure stays spent.
    Failed,
    /// No code was compared (stale cookie, expired, blocked, a store error).
    NoGuess,
}

/// What [`Limits::before_verify`] reserved.
#[must_use = "hand the reservation to after_verify"]
#[derive(Debug, Default)]
pub struct Reservation {
    checks: Vec<Check>,
    credential: Option<LimiterKey>,
}

/// What [`Limits::before_send`] charged.
#[derive(Debug, Default)]
pub struct SendCharge {
    /// Whether the charge made the request's id change: `Some(taken)` when it did, `None`
    /// when the caller must (see [`LimiterStore::charge_with`]).
    pub made: Option<bool>,
    /// The send budgets charged (not the request's own requests-per-network charge).
    sends: Vec<Check>,
}

/// What one charge did: whether the store charged at all (not when it failed open),
/// and whether it made the request's id change.
struct Charged {
    applied: bool,
    made: Option<bool>,
}

impl Charged {
    /// Nothing charged (nothing to charge, or the store failed open), nothing made.
    const NOTHING: Charged = Charged {
        applied: false,
        made: None,
    };
}

/// Counters for `/ready` (and a future metrics endpoint).
#[derive(Debug, Default)]
pub struct LimitCounters {
    pub rate_limited: AtomicU64,
    pub not_allowed: AtomicU64,
    pub fraud_tripped: AtomicU64,
    pub served_without_limits: AtomicU64,
}

pub struct Limits {
    config: LimitsConfig,
    hasher: KeyHasher,
    store: Arc<dyn LimiterStore>,
    safe_credentials: HashSet<LimiterKey>,
    counters: LimitCounters,
    /// When the last "served without limits" / fraud warning was logged (ms), so a
    /// failing store or a tripped group logs a line per ten seconds, not per request.
    last_warning: AtomicU64,
    /// Networks the request budget refused, with the answer and until when (this
    /// instance's monotonic clock, the `Retry-After` they were given): their requests
    /// are refused again at once, before a plugin runs or the store is asked
    /// ([`Limits::before_anything`]).
    refused_networks: parking_lot::Mutex<HashMap<Network, (Instant, RateLimited)>>,
    /// Whether `refused_networks` may hold anything (spares the lock otherwise).
    any_refused: AtomicBool,
}

/// At most this many refused networks are remembered; beyond, the memory starts over.
const REMEMBERED_REFUSALS: usize = 65_536;

/// The network of requests whose address is unknown: they share one budget.
const UNKNOWN: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
const WARN_EVERY_MS: u64 = 10_000;

impl Limits {
    pub fn new(config: LimitsConfig, hasher: KeyHasher, store: Arc<dyn LimiterStore>) -> Limits {
        let safe_credentials = config
            .safe_credentials
            .iter()
            .map(|id| hasher.credential(id))
            .collect();
        Limits {
            config,
            hasher,
            store,
            safe_credentials,
            counters: LimitCounters::default(),
            last_warning: AtomicU64::new(0),
            refused_networks: Default::default(),
            any_refused: AtomicBool::new(false),
        }
    }

    /// A network whose request budget is spent is refused here, first thing: the budget
    /// bounds the work one client can cause, so an OTP request from it runs no plugin
    /// (a validator may call a paid lookup) and no store call until the `Retry-After`
    /// it was given has passed. The answer is the store's own, remembered; other
    /// instances ask their store.
    pub fn before_anything(&self, client_ip: Option<&str>) -> Result<(), LimitError> {
        if !self.any_refused.load(Ordering::Relaxed) {
            return Ok(());
        }
        let Some(network) = self.network(client_ip) else {
            return Ok(());
        };
        let mut refused = self.refused_networks.lock();
        let Some((until, answer)) = refused.get(&network) else {
            return Ok(());
        };
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            refused.remove(&network);
            if refused.is_empty() {
                self.any_refused.store(false, Ordering::Relaxed);
            }
            return Ok(());
        }
        let answer = RateLimited {
            retry_after_secs: left.as_millis().div_ceil(1000).max(1) as u64,
            ..answer.clone()
        };
        self.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
        Err(LimitError::Limited(answer))
    }

    /// Remembers a refusal by the request budget of `network` (see
    /// [`Limits::before_anything`]).
    fn remember_refusal<T>(&self, network: Network, result: &Result<T, LimitError>) {
        let Err(LimitError::Limited(answer)) = result else {
            return;
        };
        if answer.policy != BudgetKind::NetworkRequests.policy() {
            return;
        }
        let until = Instant::now() + Duration::from_secs(answer.retry_after_secs);
        let mut refused = self.refused_networks.lock();
        if refused.len() >= REMEMBERED_REFUSALS {
            refused.clear();
        }
        refused.insert(network, (until, answer.clone()));
        self.any_refused.store(true, Ordering::Relaxed);
    }

    pub fn config(&self) -> &LimitsConfig {
        &self.config
    }

    pub fn counters(&self) -> &LimitCounters {
        &self.counters
    }

    /// `None` when the network is exempt (safe list) or limits are off.
    fn network(&self, client_ip: Option<&str>) -> Option<Network> {
        if !self.config.enabled {
            return None;
        }
        let address = client_ip
            .and_then(|ip| ip.parse::<IpAddr>().ok())
            .unwrap_or(UNKNOWN);
        let safe = |net: &IpNet| net.contains(&address);
        if self.config.safe_networks.iter().any(safe) {
            return None;
        }
        Some(Network::of(address))
    }

    /// The requests-per-network budget of one request.
    fn request_check(&self, network_key: LimiterKey) -> Option<Check> {
        self.config.requests_per_network.map(|rate| Check {
            kind: BudgetKind::NetworkRequests,
            key: network_key,
            rate,
        })
    }

    /// Requests per client network, charged alone: for a request that ends before it
    /// would send or compare a code (the others fold this budget into
    /// [`Limits::before_send`] or [`Limits::before_verify`], one store call each).
    pub async fn before_request(&self, client_ip: Option<&str>) -> Result<(), LimitError> {
        let Some(network) = self.network(client_ip) else {
            return Ok(());
        };
        let Some(check) = self.request_check(self.hasher.network(network)) else {
            return Ok(());
        };
        let result = self.charge(&[check], None, None, None).await.map(|_| ());
        self.remember_refusal(network, &result);
        result
    }

    /// The destination group's allow and deny lists.
    pub fn check_group(&self, group: &str) -> Result<(), LimitError> {
        if !self.config.enabled {
            return Ok(());
        }
        let matches = |pattern: &String| match pattern.strip_suffix('*') {
            Some(prefix) => group.starts_with(prefix),
            None => group == pattern,
        };
        let denied = self.config.deny_groups.iter().any(matches)
            || (!self.config.allow_groups.is_empty()
                && !self.config.allow_groups.iter().any(matches));
        if denied {
            self.counters.not_allowed.fetch_add(1, Ordering::Relaxed);
            tracing::info!(group, "send refused: the destination group is not allowed");
            return Err(LimitError::NotAllowed);
        }
        Ok(())
    }

    /// Every send budget and the fraud guard, charged together, before a code is sent.
    ///
    /// `change` is the request's change of session ids, which may only be made once the
    /// budgets allow it. When the store made it along with the charge (Redis), the
    /// answer's `made` is `Some(taken)`; `None` leaves it to the caller. The answer also
    /// holds what [`Limits::after_unsent`] gives back if the send sends nothing.
    ///
    /// `group` is the destination group when it is known (a create: the validator's
    /// group, or the channel). A resend passes `None`: the session does not carry the
    /// group, so the group's lists are not checked again (its credential was, against
    /// its real group, when the session was created), and the fraud guard counts the
    /// send for the group of the credential's pending send, which the store keeps.
    pub async fn before_send(
        &self,
        client_ip: Option<&str>,
        credential_id: &str,
        group: Option<&str>,
        change: Option<IdChange>,
    ) -> Result<SendCharge, LimitError> {
        if let Some(Err(refused)) = group.map(|g| self.check_group(g)) {
            // Refused for its destination, it still counts as a request.
            self.before_request(client_ip).await?;
            return Err(refused);
        }
        let Some(network) = self.network(client_ip) else {
            return Ok(SendCharge::default());
        };
        let credential = self.hasher.credential(credential_id);
        if self.safe_credentials.contains(&credential) {
            // Exempt from the send budgets, not from the network's request budget.
            self.before_request(client_ip).await?;
            return Ok(SendCharge::default());
        }
        let c = &self.config;
        let network_key = self.hasher.network(network);
        let request = self.request_check(network_key);
        let checks: Vec<Check> = [
            (
                BudgetKind::CredentialSends,
                credential,
                c.sends_per_credential,
            ),
            (
                BudgetKind::CredentialDailySends,
                credential,
                c.sends_per_credential_daily,
            ),
            (BudgetKind::NetworkSends, network_key, c.sends_per_network),
            (BudgetKind::GlobalSends, LimiterKey([0; 16]), c.global_sends),
        ]
        .into_iter()
        .filter_map(|(kind, key, rate)| rate.map(|rate| Check { kind, key, rate }))
        .chain(request)
        .collect();
        let fraud = c.fraud_guard.map(|mode| FraudCheck {
            group: group.map(|g| self.hasher.group(g)),
            credential,
            thresholds: c.fraud,
            mode,
        });
        let charged = self.charge(&checks, fraud.as_ref(), group, change).await;
        let charged = self
            .count_refused_request(charged, request, client_ip)
            .await;
        self.remember_refusal(network, &charged);
        let charged = charged?;
        let mut sends = checks;
        sends.retain(|c| charged.applied && c.kind != BudgetKind::NetworkRequests);
        Ok(SendCharge {
            made: charged.made,
            sends,
        })
    }

    /// Gives back the send budgets of a send that sent nothing (every sender unavailable,
    /// none bound, no call slot): a provider outage must not use up a user's sends. The
    /// request itself stays counted, and so does the fraud guard's send (it counts
    /// attempts to reach a destination group).
    pub async fn after_unsent(&self, charge: SendCharge) {
        if charge.sends.is_empty() {
            return;
        }
        if let Err(error) = self.store.settle(&charge.sends, None).await {
            tracing::warn!(%error, "limits: could not give back the budgets of an unsent code");
        }
    }

    /// A charge is all or nothing, so a request refused by another budget has not been
    /// counted as a request yet: count it alone, so refused requests still use up the
    /// network's request budget (only refusals pay the second store call).
    async fn count_refused_request<T>(
        &self,
        charged: Result<T, LimitError>,
        request: Option<Check>,
        client_ip: Option<&str>,
    ) -> Result<T, LimitError> {
        match charged {
            Err(LimitError::Limited(limited))
                if request.is_some() && limited.policy != BudgetKind::NetworkRequests.policy() =>
            {
                let _ = self.before_request(client_ip).await;
                Err(LimitError::Limited(limited))
            }
            other => other,
        }
    }

    /// Reserves one failure of each failure budget before a code is compared, and
    /// makes `change` (the id change the verdict on the code brings: a wrong code's
    /// replace, or a keep that asks whether the id is live) along with the charge when
    /// the store can, as [`Limits::before_send`] does.
    pub async fn before_verify(
        &self,
        client_ip: Option<&str>,
        credential_id: &str,
        change: Option<IdChange>,
    ) -> Result<(Reservation, Option<bool>), LimitError> {
        let Some(network) = self.network(client_ip) else {
            return Ok((Reservation::default(), None));
        };
        let credential = self.hasher.credential(credential_id);
        if self.safe_credentials.contains(&credential) {
            // Exempt from the failure budgets, not from the network's request budget.
            self.before_request(client_ip).await?;
            return Ok((Reservation::default(), None));
        }
        let c = &self.config;
        let network_key = self.hasher.network(network);
        let request = self.request_check(network_key);
        let checks: Vec<Check> = [
            (
                BudgetKind::NetworkFailures,
                network_key,
                c.failed_verifies_per_network,
            ),
            (
                BudgetKind::CredentialNetworkFailures,
                self.hasher.credential_on_network(credential_id, network),
                c.failed_verifies_per_credential_network,
            ),
        ]
        .into_iter()
        .filter_map(|(kind, key, rate)| rate.map(|rate| Check { kind, key, rate }))
        .collect();
        // This request's requests-per-network charge goes with the reservation (one
        // store call) but is never given back.
        let charged: Vec<Check> = checks.iter().copied().chain(request).collect();
        if charged.is_empty() && c.fraud_guard.is_none() {
            return Ok((Reservation::default(), None));
        }
        let mut result = Charged {
            applied: true,
            made: None,
        };
        if !charged.is_empty() {
            let charge = self.charge(&charged, None, None, change).await;
            let charge = self.count_refused_request(charge, request, client_ip).await;
            self.remember_refusal(network, &charge);
            result = charge?;
        }
        // Served without limits (fail open): nothing was reserved, nothing to give back,
        // and a right code's conversion goes uncounted by the fraud guard.
        let reservation = match result.applied {
            true => Reservation {
                checks,
                credential: c.fraud_guard.map(|_| credential),
            },
            false => Reservation::default(),
        };
        Ok((reservation, result.made))
    }

    /// Settles a reservation: a right code gives the failure back and counts the
    /// conversion for the fraud guard; no guess gives it back; a wrong code keeps it.
    pub async fn after_verify(&self, reservation: Reservation, outcome: GuessOutcome) {
        let (refunds, verified) = match outcome {
            GuessOutcome::Verified => (reservation.checks.as_slice(), reservation.credential),
            GuessOutcome::NoGuess => (reservation.checks.as_slice(), None),
            GuessOutcome::Failed => return,
        };
        if refunds.is_empty() && verified.is_none() {
            return;
        }
        if let Err(error) = self.store.settle(refunds, verified).await {
            tracing::warn!(%error, "limits: could not settle a verification reservation");
        }
    }

    /// Charges the store; the answer says whether it did (not when it failed open) and
    /// whether it made `change` too (see [`LimiterStore::charge_with`]).
    async fn charge(
        &self,
        checks: &[Check],
        fraud: Option<&FraudCheck>,
        group: Option<&str>,
        change: Option<IdChange>,
    ) -> Result<Charged, LimitError> {
        if checks.is_empty() && fraud.is_none() {
            return Ok(Charged::NOTHING);
        }
        let charged = match change {
            Some(change) => self.store.charge_with(checks, fraud, change).await,
            None => self.store.charge(checks, fraud).await.map(|v| (v, None)),
        };
        match charged {
            Ok((Verdict::Allowed { fraud_tripped }, changed)) => {
                if fraud_tripped {
                    self.fraud_tripped(group, FraudMode::Record);
                }
                Ok(Charged {
                    applied: true,
                    made: changed,
                })
            }
            Ok((Verdict::Refused(refusal), _)) => {
                self.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
                let answer = self.answer(refusal);
                if refusal.reason == Reason::FraudGuard {
                    self.fraud_tripped(group, FraudMode::Deny);
                } else {
                    tracing::info!(
                        policy = answer.policy,
                        retry_after_secs = answer.retry_after_secs,
                        "otp.rate_limited"
                    );
                }
                Err(LimitError::Limited(answer))
            }
            Err(error) if self.config.fail_open => {
                self.counters
                    .served_without_limits
                    .fetch_add(1, Ordering::Relaxed);
                if self.warn_now() {
                    tracing::warn!(%error, "limiter store unavailable: serving WITHOUT limits (fail_open)");
                }
                // Nothing was charged and, as far as this instance knows, nothing made:
                // the id store makes the change (and says whether it can, for it may be
                // on the same failing Redis).
                Ok(Charged::NOTHING)
            }
            Err(error) => {
                tracing::warn!(%error, "limiter store unavailable: refusing (fail closed)");
                Err(LimitError::Unavailable(error))
            }
        }
    }

    fn fraud_tripped(&self, group: Option<&str>, mode: FraudMode) {
        self.counters.fraud_tripped.fetch_add(1, Ordering::Relaxed);
        let group = group.unwrap_or("?");
        match mode {
            FraudMode::Record => tracing::warn!(
                group,
                mode = "record",
                "otp.fraud_guard: unverified sends to a destination group exceed its threshold; sent anyway"
            ),
            FraudMode::Deny => tracing::warn!(
                group,
                mode = "deny",
                "otp.fraud_guard: unverified sends to a destination group exceed its threshold; refused"
            ),
        }
    }

    fn warn_now(&self) -> bool {
        let now = crate::clock::Clock::now_ms(&crate::clock::SystemClock);
        let last = self.last_warning.load(Ordering::Relaxed);
        now.saturating_sub(last) >= WARN_EVERY_MS
            && self
                .last_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    fn answer(&self, refusal: Refusal) -> RateLimited {
        let retry_after_secs = refusal.retry_after_ms.div_ceil(1000).max(1);
        match refusal.reason {
            Reason::Budget(kind, rate) => RateLimited {
                policy: kind.policy(),
                quota: u64::from(rate.burst),
                window_secs: rate.window_ms().div_ceil(1000).max(1),
                retry_after_secs,
                message: kind.message(),
            },
            Reason::FraudGuard => RateLimited {
                policy: "fraud-guard",
                quota: self.config.fraud.hourly_floor,
                window_secs: fraud::HOUR_MS / 1000,
                retry_after_secs,
                message:
                    "codes to this destination are paused for unusual traffic; try again later",
            },
        }
    }

    /// The limits' part of `/ready`.
    pub async fn status(&self) -> serde_json::Value {
        let store = match self.store.ping().await {
            Ok(()) => "ok",
            Err(_) if self.config.fail_open => "unavailable (serving without limits)",
            Err(_) => "unavailable",
        };
        let count = |c: &AtomicU64| c.load(Ordering::Relaxed);
        serde_json::json!({
            "enabled": self.config.enabled,
            "store": store,
            "failOpen": self.config.fail_open,
            "fraudGuard": match self.config.fraud_guard {
                Some(FraudMode::Record) => "record",
                Some(FraudMode::Deny) => "deny",
                None => "off",
            },
            "rateLimited": count(&self.counters.rate_limited),
            "notAllowed": count(&self.counters.not_allowed),
            "fraudGuardTripped": count(&self.counters.fraud_tripped),
            "servedWithoutLimits": count(&self.counters.served_without_limits),
        })
    }

    /// Whether the limits let `/ready` say ready: a failing store fails readiness
    /// only when the limits fail closed.
    pub async fn ready(&self) -> bool {
        self.config.fail_open || self.store.ping().await.is_ok()
    }
}

#[cfg(test)]
mod tests;
