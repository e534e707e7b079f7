//! The HTTP shell: routes, the middleware every answer passes through, and turning
//! service results into responses.
//!
//! Handlers are thin: they read the request (body capped at [`MAX_BODY`]), hand
//! plain values to the [`OtpService`](crate::service::OtpService), and render what it
//! returns. Unknown routes and methods get 404 with an empty body.

pub mod admin;
pub mod client;
pub mod cookie;
mod demo;
pub mod edge;
pub mod error;
mod health;
mod locale;
pub mod observe;
mod origin;
mod otp;
mod test_clock;

use crate::config::Mode;
use crate::plugins::PluginRegistry;
use crate::service::OtpService;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use error::{ApiError, CookieAction, ErrorCode};
use std::sync::Arc;

/// Request bodies larger than this are refused with 413 `BODY:TOO_LARGE`.
pub const MAX_BODY: usize = 100 * 1024;

/// What every handler can reach: one `Arc`, because axum clones the state for every
/// middleware and handler of every request (cloning each field's `Arc` instead made
/// those reference counts a measurable share of a request's CPU).
#[derive(Clone)]
pub struct AppState(Arc<App>);

impl AppState {
    pub fn new(app: App) -> AppState {
        AppState(Arc::new(app))
    }
}

impl std::ops::Deref for AppState {
    type Target = App;

    fn deref(&self) -> &App {
        &self.0
    }
}

/// The parts of the server the HTTP layer reaches.
pub struct App {
    pub service: Arc<OtpService>,
    pub registry: Arc<PluginRegistry>,
    /// The audit pipeline, for its counters in `/ready`.
    pub audit: Arc<crate::events::AuditLog>,
    pub mode: Mode,
    pub cors_origin: Option<HeaderValue>,
    pub test_clock: Option<Arc<crate::clock::OffsetClock>>,
    /// Who the client is: the peer, or what a trusted proxy says.
    pub clients: Arc<client::ClientAddresses>,
    /// One access-log line per request (`access_log`).
    pub access_log: bool,
    /// Serve the demo page (`GET /demo`).
    pub demo: bool,
    /// The public `/ready`'s last answer.
    pub ready_cache: health::ReadyCache,
}

pub fn router(state: AppState) -> Router {
    let mut router = Router::new()
        .route("/health", any(health::health))
        .route("/ready", get(health::ready))
        .route("/api/otp/create", post(otp::create))
        .route("/api/otp/resend", post(otp::resend))
        .route("/api/otp/verify", post(otp::verify));
    if state.test_clock.is_some() {
        router = router
            .route("/test/clock", post(test_clock::advance))
            .route("/test/panic", post(test_clock::panic));
    }
    if state.demo {
        router = router.merge(demo::routes(state.service.settings()));
    }
    router
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        // A panic in a handler answers 500 `SERVER` (and is logged) instead of dropping
        // the connection; the server goes on serving.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            origin::same_origin,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), cors))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            security_headers,
        ))
        // Outermost: the request id, span and access-log line cover everything below,
        // a caught panic's 500 included.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            observe::observe,
        ))
        .with_state(state)
}

async fn not_found() -> StatusCode {
    StatusCode::NOT_FOUND
}

/// The answer to a handler that panicked. The panic's message is logged (it is the
/// server's own text, never a request's), the client gets the documented error.
fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!(panic = %message, "a request handler panicked");
    let error = ApiError::new(ErrorCode::Server);
    (error.code.status(), axum::Json(error.body())).into_response()
}

/// Renders an error answer, with its cookie action.
pub fn error_response(error: ApiError, mode: Mode) -> Response {
    if error.code == ErrorCode::Server {
        tracing::error!(message = %error.message, "internal error");
    }
    let mut response = (error.code.status(), axum::Json(error.body())).into_response();
    apply_cookie(&mut response, &error.cookie, mode);
    if let Some(limited) = &error.rate_limited {
        rate_limit_headers(&mut response, limited);
    }
    response
}

/// `Retry-After` and the draft-ietf-httpapi-ratelimit-headers fields of a 429:
/// `RateLimit-Policy: "NAME";q=QUOTA;w=WINDOW` and `RateLimit: "NAME";r=0;t=SECONDS`.
fn rate_limit_headers(response: &mut Response, limited: &crate::limits::RateLimited) {
    let h = response.headers_mut();
    h.insert(
        header::RETRY_AFTER,
        HeaderValue::from(limited.retry_after_secs),
    );
    let policy = format!(
        "\"{}\";q={};w={}",
        limited.policy, limited.quota, limited.window_secs
    );
    let state = format!("\"{}\";r=0;t={}", limited.policy, limited.retry_after_secs);
    for (name, value) in [("ratelimit-policy", policy), ("ratelimit", state)] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            h.insert(name, value);
        }
    }
}

pub fn apply_cookie(response: &mut Response, action: &CookieAction, mode: Mode) {
    if let Some(value) = cookie::set_cookie_header(action, mode) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// Headers every answer carries. Plugin responses cannot switch them off.
async fn security_headers(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let api = request.uri().path().starts_with("/api/");
    let mut response = next.run(request).await;
    let policy = response
        .extensions()
        .get::<demo::ContentSecurityPolicy>()
        .map_or("default-src 'none'; frame-ancestors 'none'", |p| p.0);
    let h = response.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(policy),
    );
    if api {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    // Only this host: `includeSubDomains` from an API served on a site's own domain
    // would force HTTPS on every sibling host of the site for two years; an operator
    // who wants that sets it where the site's TLS is managed.
    if state.mode == Mode::Production {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=63072000"),
        );
    }
    response
}

/// CORS for the one configured origin, with credentials (the cookie).
async fn cors(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(allowed) = state.cors_origin.clone() else {
        return next.run(request).await;
    };
    let matches = request.headers().get(header::ORIGIN) == Some(&allowed);
    let preflight = request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut response = if matches && preflight {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NO_CONTENT;
        let h = r.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, HEAD, POST"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("content-type"),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        r
    } else {
        next.run(request).await
    };
    let h = response.headers_mut();
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    if matches {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
        // Readable by the page's script: the clock (to correct countdowns for skew)
        // and how long to wait after a refusal.
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("Date, Retry-After"),
        );
    }
    response
}
