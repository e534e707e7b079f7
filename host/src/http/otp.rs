//! The three OTP endpoints: read and check the request, call the service, render.
//!
//! Input checks that need no session happen here, in the order the API promises:
//! body size first, then the content type and shape of the body (for verify: the code
//! format, before the cookie is even looked at). Each handler takes the request whole
//! and splits it, rather than through axum's `HeaderMap` extractor, which copies every
//! header.
//!
//! The service call itself runs to its end even when the client goes away mid-request
//! ([`to_completion`]): by then it may have retired a session id, charged budgets or
//! handed a code to a sender, and what follows (giving budgets back, restoring a
//! session an unsent code cost, audit events, the final action) must not be skipped
//! because hyper dropped the request's future.

use super::cookie::read_cookie;
use super::edge::ConnectionSlot;
use super::error::{ApiError, ErrorCode};
use super::observe::RequestId;
use super::{apply_cookie, error_response, AppState, MAX_BODY};
use crate::config::Mode;
use crate::plugins::RequestContext;
use crate::service::SessionAnswer;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::extract::{ConnectInfo, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use std::net::SocketAddr;

pub async fn create(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(request_id): Extension<RequestId>,
    slot: Option<Extension<ConnectionSlot>>,
    request: Request,
) -> Response {
    let mode = app.mode;
    let (Parts { headers, .. }, body) = request.into_parts();
    let result = async {
        let bytes = read_body(body).await?;
        if !has_media_type(&headers, is_json) {
            return Err(ApiError::new(ErrorCode::CredentialInvalid).with_message(
                "send the credential as a JSON body with Content-Type: application/json",
            ));
        }
        // A JSON body that is empty is malformed JSON, as the reference server says.
        if bytes.is_empty() {
            return Err(
                ApiError::new(ErrorCode::Generic).with_message("malformed JSON: the body is empty")
            );
        }
        if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
            return Err(
                ApiError::new(ErrorCode::Generic).with_message(format!("malformed JSON: {e}"))
            );
        }
        // serde_json only accepts UTF-8, so this cannot fail after the check above.
        let text =
            String::from_utf8(bytes.to_vec()).map_err(|_| ApiError::new(ErrorCode::Generic))?;
        let cookie = read_cookie(&headers, mode);
        let context = context(&app, &headers, peer, request_id);
        let service = app.service.clone();
        to_completion(slot, async move {
            service.create(cookie.as_deref(), &text, &context).await
        })
        .await
    }
    .await;
    session_response(result, mode)
}

pub async fn resend(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(request_id): Extension<RequestId>,
    slot: Option<Extension<ConnectionSlot>>,
    request: Request,
) -> Response {
    let mode = app.mode;
    let (Parts { headers, .. }, body) = request.into_parts();
    let result = async {
        read_body(body).await?;
        let cookie = read_cookie(&headers, mode);
        let context = context(&app, &headers, peer, request_id);
        let service = app.service.clone();
        to_completion(slot, async move {
            service.resend(cookie.as_deref(), &context).await
        })
        .await
    }
    .await;
    session_response(result, mode)
}

pub async fn verify(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(request_id): Extension<RequestId>,
    slot: Option<Extension<ConnectionSlot>>,
    request: Request,
) -> Response {
    let mode = app.mode;
    let (Parts { headers, .. }, body) = request.into_parts();
    let result = async {
        let bytes = read_body(body).await?;
        let code = submitted_code(&headers, &bytes)?;
        let settings = app.service.settings();
        if !settings.alphabet.is_valid_code(&code, settings.code_length) {
            return Err(invalid_format());
        }
        let cookie = read_cookie(&headers, mode);
        let context = context(&app, &headers, peer, request_id);
        let service = app.service.clone();
        to_completion(slot, async move {
            service.verify(cookie.as_deref(), &code, &context).await
        })
        .await
    }
    .await;
    match result {
        Ok(answer) => {
            let mut response = plugin_response(answer.response);
            apply_cookie(&mut response, &answer.cookie, mode);
            response
        }
        Err(error) => error_response(error, mode),
    }
}

/// Runs a service call on its own task, in the request's span, and waits for it: if
/// the client goes away, hyper drops this future but the call still finishes, holding
/// its connection's `slot` until then (the connection caps count it, and shutdown
/// waits for it). A panic in it surfaces here, as it would have inline (the
/// catch-panic layer answers it).
fn to_completion<T, E>(
    slot: Option<Extension<ConnectionSlot>>,
    call: impl std::future::Future<Output = Result<T, E>> + Send + 'static,
) -> impl std::future::Future<Output = Result<T, ApiError>>
where
    T: Send + 'static,
    E: Into<ApiError> + Send + 'static,
{
    let call = async move {
        let _slot = slot;
        call.await
    };
    // Boxed here, before anything is awaited: the service's future is about 1.7 KB (a
    // create's holds two hook calls), which the task cell would otherwise copy in on
    // spawn and again when it stores the output, and the handler's future (which axum
    // boxes, and the layers around it move) would carry whole.
    let call = Box::pin(tracing::Instrument::in_current_span(call));
    async move {
        match tokio::spawn(call).await {
            Ok(result) => result.map_err(Into::into),
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            // Only a runtime shutting down cancels a task; nobody waits for this answer.
            Err(_) => Err(ApiError::new(ErrorCode::Server)),
        }
    }
}

/// Renders a create or resend: the session state and the new cookie, or the error.
fn session_response(result: Result<SessionAnswer, ApiError>, mode: Mode) -> Response {
    match result {
        Ok(answer) => {
            let mut response = Json(answer.state).into_response();
            apply_cookie(&mut response, &answer.cookie, mode);
            response
        }
        Err(error) => error_response(error, mode),
    }
}

/// Reads the whole body, refusing more than [`MAX_BODY`] bytes whether or not the
/// client sent a `Content-Length` (chunked or not). An oversized body is read to its
/// end and discarded (up to [`MAX_DRAIN`] bytes and [`MAX_DRAIN_TIME`]) before the 413
/// goes out: a server that answers mid-upload and closes makes the client's next write
/// fail, and the client never reads the answer.
async fn read_body(body: Body) -> Result<Bytes, ApiError> {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut bytes = Vec::new();
    let mut too_large = false;
    let mut drained = 0usize;
    let mut drain_until = None;
    loop {
        let frame = match drain_until {
            // Draining has its own deadline, whether or not the client goes on sending.
            Some(until) => match tokio::time::timeout_at(until, body.frame()).await {
                Ok(frame) => frame,
                Err(_) => break,
            },
            None => body.frame().await,
        };
        let Some(frame) = frame else {
            break;
        };
        let Ok(frame) = frame else {
            if too_large {
                // The client stalled or broke off after it sent too much: that is
                // still the answer it gets.
                break;
            }
            return Err(
                ApiError::new(ErrorCode::Generic).with_message("could not read the request body")
            );
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        if too_large {
            // Read and discard the rest, so the client is not cut off mid-upload and
            // reads the 413; past the bounds the connection closes after the answer.
            drained += data.len();
            if drained > MAX_DRAIN {
                break;
            }
        } else if bytes.len() + data.len() > MAX_BODY {
            too_large = true;
            drained = bytes.len() + data.len();
            bytes = Vec::new();
            drain_until = Some(tokio::time::Instant::now() + MAX_DRAIN_TIME);
        } else {
            bytes.extend_from_slice(&data);
        }
    }
    if too_large {
        return Err(ApiError::new(ErrorCode::BodyTooLarge));
    }
    Ok(Bytes::from(bytes))
}

/// How much of an oversized body is read and discarded before the 413 is answered.
const MAX_DRAIN: usize = 4 * 1024 * 1024;
const MAX_DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(5);

fn invalid_format() -> ApiError {
    ApiError::new(ErrorCode::InvalidFormat)
}

/// The `otp` field of a form body; anything else is `OTP:INVALID_FORMAT`.
fn submitted_code(headers: &HeaderMap, body: &[u8]) -> Result<String, ApiError> {
    if !has_media_type(headers, |t| t == "application/x-www-form-urlencoded") {
        return Err(invalid_format().with_message("send the code as a form field otp"));
    }
    let mut codes = form_urlencoded::parse(body).filter(|(k, _)| k == "otp");
    match (codes.next(), codes.next()) {
        (Some((_, code)), None) => Ok(code.into_owned()),
        _ => Err(invalid_format().with_message("send exactly one form field otp")),
    }
}

fn has_media_type(headers: &HeaderMap, accept: impl Fn(&str) -> bool) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .is_some_and(|t| accept(&t))
}

fn is_json(media_type: &str) -> bool {
    media_type == "application/json"
        || (media_type.starts_with("application/") && media_type.ends_with("+json"))
}

fn context(
    app: &AppState,
    headers: &HeaderMap,
    peer: SocketAddr,
    request_id: RequestId,
) -> RequestContext {
    let text = |name: HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(512).collect::<String>())
    };
    let accept_language = text(header::ACCEPT_LANGUAGE);
    RequestContext {
        client_ip: Some(app.clients.resolve(peer.ip(), headers).to_string()),
        user_agent: text(header::USER_AGENT),
        locale: accept_language
            .as_deref()
            .and_then(super::locale::preferred),
        accept_language,
        // Set by the `observe` middleware (a trusted proxy's, or a fresh one).
        request_id: request_id.0,
    }
}

/// The final action's response. Invalid status codes or headers from a plugin are a
/// plugin failure, never a malformed answer; headers that would let a plugin corrupt
/// framing are dropped. Its `Set-Cookie` headers pass (a session token's cookie): the
/// session cookie's deletion is appended after them, so it wins over one of the same
/// name.
fn plugin_response(plugin: crate::plugins::PluginResponse) -> Response {
    // The plugin layer already refuses statuses outside 200..=599 (naming the plugin);
    // this keeps the HTTP layer from ever sending one whatever reaches it.
    let status = match StatusCode::from_u16(plugin.status) {
        Ok(status) if crate::plugins::runtime::FINAL_STATUSES.contains(&plugin.status) => status,
        _ => return failed_final("invalid status code"),
    };
    let mut response = Response::new(Body::from(plugin.body));
    *response.status_mut() = status;
    for (name, value) in plugin.headers {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) else {
            return failed_final("invalid header");
        };
        if is_reserved(&name) {
            continue;
        }
        response.headers_mut().append(name, value);
    }
    response
}

fn is_reserved(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "content-length"
            | "transfer-encoding"
            | "connection"
            | "keep-alive"
            | "upgrade"
            | "trailer"
            | "te"
    )
}

fn failed_final(reason: &str) -> Response {
    tracing::warn!(reason, "final-action plugin returned an invalid response");
    let mut error = ApiError::new(ErrorCode::PluginFailed);
    error.message = format!("the final action returned an {reason}");
    (error.code.status(), Json(error.body())).into_response()
}
