//! `/health` (the process is up) and `/ready` (it can serve OTP requests). The public
//! `/ready` answers only `{"ready": true|false}`; the details — every hook and which
//! plugin version serves it, senders per channel, problems and rejected files, the
//! store, the abuse controls' state, the audit counters — are [`readiness`], served on
//! the admin listener.

use super::AppState;
use crate::plugins::Hook;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::sync::atomic::Ordering;

/// Always 200 `OK`, whatever the method: load balancers probe with GET or HEAD.
pub async fn health() -> &'static str {
    "OK"
}

/// 200 `{"ready": true}` when every hook has a plugin, the session store answers and
/// the abuse controls can decide; else 503 `{"ready": false}`.
pub async fn ready(State(app): State<AppState>) -> Response {
    let (ready, _) = readiness(&app).await;
    (status(ready), Json(serde_json::json!({ "ready": ready }))).into_response()
}

/// 200 when ready, else 503.
pub fn status(ready: bool) -> StatusCode {
    if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

/// Whether the server is ready, and the details an operator needs to see why (or why
/// not): binding problems and rejected files are listed either way.
pub async fn readiness(app: &AppState) -> (bool, serde_json::Value) {
    let registry = app.registry.snapshot();
    let hooks: serde_json::Map<String, serde_json::Value> = registry
        .bound
        .iter()
        .map(|(hook, plugin)| {
            (
                hook.name().to_string(),
                serde_json::json!({
                    "plugin": &*plugin.name,
                    "version": plugin.version,
                    "contract": plugin.contract.as_str(),
                }),
            )
        })
        .collect();
    let channels: serde_json::Map<String, serde_json::Value> = registry
        .channels
        .iter()
        .map(|(channel, plugin)| {
            (
                channel.clone(),
                serde_json::json!({
                    "plugin": &*plugin.name,
                    "version": plugin.version,
                    "contract": plugin.contract.as_str(),
                }),
            )
        })
        .collect();
    // Senders serving only some channels make the sending hook available (for those).
    let missing: Vec<&str> = Hook::REQUIRED
        .into_iter()
        .filter(|h| {
            !registry.bound.contains_key(h) && (*h != Hook::Sending || registry.channels.is_empty())
        })
        .map(|h| h.name())
        .collect();
    let plugins: serde_json::Map<String, serde_json::Value> = registry
        .plugins
        .values()
        .map(|p| {
            (
                p.name.to_string(),
                serde_json::json!({
                    "version": p.version,
                    "contract": p.contract.as_str(),
                    "hooks": p.hooks.iter().map(|h| h.name()).collect::<Vec<_>>(),
                    "manifest": (!p.manifest.digest.is_empty()).then_some(&p.manifest.digest),
                    "channels": p.manifest.channels,
                    "outbound": p.manifest.outbound.allow.rules().iter().map(|r| r.as_str()).collect::<Vec<_>>(),
                }),
            )
        })
        .collect();
    let store = match app.service.store_ready().await {
        Ok(()) => "ok",
        Err(_) => "unavailable",
    };
    let limits = app.service.limits();
    let ready = missing.is_empty() && store == "ok" && limits.ready().await;
    let counts = app.audit.counts();
    let body = serde_json::json!({
        "ready": ready,
        "store": store,
        "limits": limits.status().await,
        "hooks": hooks,
        "channels": channels,
        "missing": missing,
        "plugins": plugins,
        "problems": registry.problems,
        "rejected": registry.load_errors,
        "events": {
            "delivered": counts.delivered.load(Ordering::Relaxed),
            "dropped": counts.dropped.load(Ordering::Relaxed),
            "failed": counts.failed.load(Ordering::Relaxed),
        },
    });
    (ready, body)
}
