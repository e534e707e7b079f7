//! `/health` (the process is up) and `/ready` (it can serve OTP requests). The public
//! `/ready` answers only `{"ready": true|false}`; the details — every hook and which
//! plugin version serves it, senders per channel and their failover order, problems and rejected files, the
//! store, the abuse controls' state, the audit counters — are [`readiness`], served on
//! the admin listener.

use super::AppState;
use crate::plugins::{Hook, SenderChain};
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
/// the abuse controls can decide; else 503 `{"ready": false}`. The answer is reused
/// for [`READY_FOR`]: the public route needs no token, and each fresh answer pings the
/// store.
pub async fn ready(State(app): State<AppState>) -> Response {
    let cached = *app.ready_cache.lock();
    let ready = match cached {
        Some((at, ready)) if at.elapsed() < READY_FOR => ready,
        _ => {
            let (ready, _) = readiness(&app).await;
            *app.ready_cache.lock() = Some((std::time::Instant::now(), ready));
            ready
        }
    };
    (status(ready), Json(serde_json::json!({ "ready": ready }))).into_response()
}

/// How long the public `/ready` reuses an answer.
pub const READY_FOR: std::time::Duration = std::time::Duration::from_secs(1);

/// The public `/ready`'s last answer and when it was made.
pub type ReadyCache = parking_lot::Mutex<Option<(std::time::Instant, bool)>>;

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
    let serving = |plugin: &crate::plugins::LoadedPlugin| {
        serde_json::json!({
            "plugin": &*plugin.name,
            "version": plugin.version,
            "contract": plugin.contract.as_str(),
        })
    };
    // A sender entry names the first sender and, for a failover chain, all in order.
    let senders = |chain: &SenderChain| {
        let mut entry = serving(&chain[0]);
        entry["chain"] = chain.iter().map(|p| &*p.name).collect();
        entry
    };
    let mut hooks: serde_json::Map<String, serde_json::Value> = registry
        .bound
        .iter()
        .map(|(hook, plugin)| (hook.name().to_string(), serving(plugin)))
        .collect();
    if let Some(chain) = &registry.senders {
        hooks.insert(Hook::Sending.name().to_string(), senders(chain));
    }
    let channels: serde_json::Map<String, serde_json::Value> = registry
        .channels
        .iter()
        .map(|(channel, chain)| {
            let entry = chain.as_ref().map_or(serde_json::Value::Null, senders);
            (channel.clone(), entry)
        })
        .collect();
    // Senders serving only some channels make the sending hook available (for those).
    let sending = registry.senders.is_some() || registry.channels.values().any(Option::is_some);
    let missing: Vec<&str> = Hook::REQUIRED
        .into_iter()
        .filter(|h| match h {
            Hook::Sending => !sending,
            _ => !registry.bound.contains_key(h),
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
    // A channel whose configured senders are all missing cannot be served: not ready.
    let unserved = registry.channels.values().any(Option::is_none);
    let ready = missing.is_empty() && !unserved && store == "ok" && limits.ready().await;
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
