//! The admin listener: what operators and their tools need, kept off the public port.
//!
//! - `GET /metrics`: the Prometheus (OpenMetrics) text of [`crate::metrics`].
//! - `GET /ready`: the detailed readiness report (hooks, plugins, channels, problems,
//!   rejected files, store, limits, audit counters); the public `/ready` only says ready
//!   or not, so plugin versions and allow-lists are not shown to anyone who asks.
//! - `POST /admin/keys/rotate`: makes a fresh key-encryption key current now, on every
//!   instance sharing the key store (e.g. after a suspected leak of a key; cookies sealed
//!   before keep opening — to cut them off use `otp-server keys rotate --revoke-current`).
//!
//! Bound beyond loopback ([`AdminConfig::requires_token`]) every request needs
//! `Authorization: Bearer TOKEN`; the comparison is constant-time over SHA-256 digests,
//! so neither the token's bytes nor its length leak through timing. A missing or wrong
//! token gets 401 `ADMIN:UNAUTHORIZED` with `WWW-Authenticate: Bearer`.

use super::health;
use super::AppState;
use crate::clock::Clock;
use crate::config::AdminConfig;
use crate::crypto::KeyStore;
use crate::events::Subject;
use crate::metrics::{Metrics, Scrape};
use crate::plugins::Hook;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use sha2::{Digest, Sha256};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// What the admin routes reach.
#[derive(Clone)]
pub struct AdminState {
    pub app: AppState,
    pub keys: Arc<dyn KeyStore>,
    pub clock: Arc<dyn Clock>,
    pub metrics: &'static Metrics,
    /// SHA-256 of the bearer token, when one is required.
    token_digest: Option<[u8; 32]>,
}

impl AdminState {
    pub fn new(
        app: AppState,
        keys: Arc<dyn KeyStore>,
        clock: Arc<dyn Clock>,
        metrics: &'static Metrics,
        config: &AdminConfig,
    ) -> AdminState {
        let token_digest = config
            .token
            .as_deref()
            .filter(|_| config.requires_token())
            .map(|t| Sha256::digest(t.as_bytes()).into());
        AdminState {
            app,
            keys,
            clock,
            metrics,
            token_digest,
        }
    }
}

/// The admin routes; with a token, every one of them requires it.
pub fn router(state: AdminState) -> Router {
    let mut router = Router::new()
        .route("/metrics", get(metrics))
        .route("/ready", get(ready))
        .route("/admin/keys/rotate", post(rotate));
    if state.token_digest.is_some() {
        router = router.layer(middleware::from_fn_with_state(state.clone(), bearer));
    }
    router.with_state(state)
}

async fn bearer(State(state): State<AdminState>, request: Request, next: Next) -> Response {
    let given: Option<[u8; 32]> = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| Sha256::digest(t.trim().as_bytes()).into());
    let accepted = match (given, state.token_digest) {
        (Some(given), Some(expected)) => bool::from(given.ct_eq(&expected)),
        _ => false,
    };
    if accepted {
        return next.run(request).await;
    }
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

async fn metrics(State(state): State<AdminState>) -> Response {
    let runtime = state.app.registry.runtime();
    let scrape = Scrape {
        slots_in_use: Hook::ALL
            .iter()
            .map(|hook| (hook.name(), runtime.slots_in_use(*hook)))
            .collect(),
        events_dropped: state.app.audit.counts().dropped.load(Ordering::Relaxed),
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
    match state.keys.rotate(state.clock.now_ms()).await {
        Ok(current) => {
            tracing::info!(kek_id = %current, previous = %before, "key-encryption key rotated on request");
            crate::metrics::kek_rotated();
            state.app.audit.emit("kek.rotated", Subject::None, || {
                serde_json::json!({
                    "keyId": current.to_string(),
                    "previous": before.to_string(),
                    "reason": "requested",
                })
            });
            Json(serde_json::json!({ "rotated": true, "keyId": current.to_string() }))
                .into_response()
        }
        Err(error) => {
            tracing::warn!(%error, "requested key rotation failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({
                    "error": "STORE:UNAVAILABLE",
                    "message": "the key store is unavailable; try again",
                })),
            )
                .into_response()
        }
    }
}
