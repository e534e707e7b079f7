//! The admin listener: what operators and their tools need, kept off the public port.
//!
//! - `GET /metrics`: the Prometheus (OpenMetrics) text of [`crate::metrics`].
//! - `GET /ready`: the detailed readiness report (hooks, plugins, channels, problems,
//!   rejected files, store, limits, audit counters); the public `/ready` only says ready
//!   or not, so plugin versions and allow-lists are not shown to anyone who asks.
//! - `POST /admin/keys/rotate`: makes a fresh key-encryption key current now, on every
//!   instance sharing the key store (e.g. after a suspected leak of a key; cookies sealed
//!   before keep opening — to cut them off use `otp-server keys rotate --revoke-current`).
//!   The key maintenance loop announces it (`kek.rotated`, `otp_kek_rotations_total`)
//!   within a second, as it announces every change of the current key.
//!
//! With `admin_token` set every request needs `Authorization: Bearer TOKEN` (bound beyond
//! loopback the token is mandatory, [`AdminConfig::requires_token`]; without one such a
//! listener refuses every request rather than serve them open); the comparison is constant-time over SHA-256 digests,
//! so neither the token's bytes nor its length leak through timing. A missing or wrong
//! token gets 401 `ADMIN:UNAUTHORIZED` with `WWW-Authenticate: Bearer`.

use super::health;
use super::AppState;
use crate::clock::Clock;
use crate::config::AdminConfig;
use crate::crypto::KeyStore;
use crate::logging::LogThrottle;
use crate::metrics::{Metrics, Scrape};
use crate::plugins::Hook;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// What the admin routes reach.
#[derive(Clone)]
pub struct AdminState {
    pub app: AppState,
    pub keys: Arc<dyn KeyStore>,
    pub clock: Arc<dyn Clock>,
    pub metrics: &'static Metrics,
    /// Tells the key maintenance loop that the next change of key was requested here.
    rotation_requested: Arc<AtomicBool>,
    /// What requests must carry.
    access: Access,
}

#[derive(Clone, Copy)]
enum Access {
    Open,
    /// SHA-256 of the bearer token.
    Token([u8; 32]),
    /// Beyond loopback without a token (configuration validation prevents it): refuse all.
    Closed,
}

impl AdminState {
    pub fn new(
        app: AppState,
        keys: Arc<dyn KeyStore>,
        clock: Arc<dyn Clock>,
        metrics: &'static Metrics,
        config: &AdminConfig,
        rotation_requested: Arc<AtomicBool>,
    ) -> AdminState {
        let access = match (&config.token, config.requires_token()) {
            (Some(token), _) => Access::Token(Sha256::digest(token.as_bytes()).into()),
            (None, false) => Access::Open,
            (None, true) => Access::Closed,
        };
        AdminState {
            app,
            keys,
            clock,
            metrics,
            rotation_requested,
            access,
        }
    }
}

/// The admin routes; with a token, every one of them requires it.
pub fn router(state: AdminState) -> Router {
    let mut router = Router::new()
        .route("/metrics", get(metrics))
        .route("/ready", get(ready))
        .route("/admin/keys/rotate", post(rotate));
    if !matches!(state.access, Access::Open) {
        router = router.layer(middleware::from_fn_with_state(state.clone(), bearer));
    }
    router.with_state(state)
}

async fn bearer(State(state): State<AdminState>, request: Request, next: Next) -> Response {
    let given: Option<[u8; 32]> = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        // The scheme is case-insensitive (RFC 9110 §11.1).
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token)
        .map(|t| Sha256::digest(t.trim().as_bytes()).into());
    let accepted = match (given, state.access) {
        (Some(given), Access::Token(expected)) => bool::from(given.ct_eq(&expected)),
        (_, Access::Open) => true,
        _ => false,
    };
    if accepted {
        return next.run(request).await;
    }
    refused_logged();
    let mut response = (
        StatusCode::UNAUTHORIZED,
        Json(serde_json::json!({
            "error": "ADMIN:UNAUTHORIZED",
            "message": "send Authorization: Bearer <admin_token>",
        })),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// Logs a refused admin request (a token guessed at leaves a trace), at most once every
/// 10 s with the number refused since, so a flood of guesses cannot flood the log.
fn refused_logged() {
    static REFUSED: LogThrottle = LogThrottle::new(std::time::Duration::from_secs(10));
    if let Some(refused) = REFUSED.count() {
        tracing::warn!(
            refused,
            "admin request refused: missing or wrong admin token"
        );
    }
}

async fn metrics(State(state): State<AdminState>) -> Response {
    let runtime = state.app.registry.runtime();
    let counts = state.app.audit.counts();
    let scrape = Scrape {
        slots_in_use: Hook::ALL
            .iter()
            .map(|hook| (hook.name(), runtime.slots_in_use(*hook)))
            .collect(),
        events_dropped: counts.dropped.load(Ordering::Relaxed),
        events_failed: counts.failed.load(Ordering::Relaxed),
        events_delivered: counts.delivered.load(Ordering::Relaxed),
    };
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        state.metrics.render(&scrape),
    )
        .into_response()
}

async fn ready(State(state): State<AdminState>) -> Response {
    let (ready, details) = health::readiness(&state.app).await;
    (health::status(ready), Json(details)).into_response()
}

async fn rotate(State(state): State<AdminState>) -> Response {
    let before = state.keys.current().id();
    state.rotation_requested.store(true, Ordering::Relaxed);
    match state.keys.rotate(state.clock.now_ms()).await {
        Ok(current) => {
            tracing::info!(kek_id = %current, previous = %before, "key-encryption key rotated on request");
            Json(serde_json::json!({ "rotated": true, "keyId": current.to_string() }))
                .into_response()
        }
        Err(error) => {
            state.rotation_requested.store(false, Ordering::Relaxed);
            tracing::warn!(%error, "requested key rotation failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                // The reason says which: Redis unreachable, or another instance holding
                // the rotation lock (Redis errors never carry the URL's credentials).
                Json(serde_json::json!({
                    "error": "STORE:UNAVAILABLE",
                    "message": format!("the key could not be rotated now ({error}); try again"),
                })),
            )
                .into_response()
        }
    }
}
