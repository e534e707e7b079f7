//! What every request leaves behind for the operator: a request id, a log span and an
//! access-log line — all in one middleware.
//!
//! The request id is the `x-request-id` a trusted proxy sent (`trusted_proxies`, the
//! same list that decides whose forwarding header names the client;
//! printable ASCII, at most 128 bytes), else 16 random bytes in hex. It is put in the
//! request's extensions ([`RequestId`], for the plugins' request context and audit
//! events), on a `request` span (so every log line of the request carries it), and in
//! the answer's `x-request-id` header. A valid W3C `traceparent` is kept: its trace id
//! goes on the span and the header is echoed on the answer, so a caller's trace carries on.
//! The access-log line names the method, the route template (never the raw path, which
//! could hold anything), the status, the duration and — through the span — the request id;
//! never the cookie or the body. The same route template, status and duration are
//! recorded in [`crate::metrics`] (`otp_http_requests_total`,
//! `otp_http_request_duration_seconds`) when metrics are on.

use super::AppState;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use std::net::SocketAddr;
use std::time::Instant;
use tracing::Instrument;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// The id of the request being served (in the request's extensions).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestId(pub String);

pub async fn observe(State(app): State<AppState>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let given = request
        .headers()
        .get(&REQUEST_ID)
        .filter(|_| peer.is_some_and(|p| app.clients.is_trusted_proxy(p)))
        .and_then(|v| acceptable_id(v.as_bytes()));
    let id = given.unwrap_or_else(crate::os_random::hex_id);
    let traceparent = request
        .headers()
        .get(&TRACEPARENT)
        .filter(|v| trace_id(v.as_bytes()).is_some())
        .cloned();
    let trace = traceparent
        .as_ref()
        .and_then(|v| trace_id(v.as_bytes()))
        .unwrap_or_default();
    // What the access-log line and the metrics need, taken only when they are on.
    let measured = crate::metrics::enabled();
    let access = (app.access_log || measured).then(|| {
        let route = route_template(request.extensions().get::<MatchedPath>());
        (request.method().clone(), route)
    });
    request.extensions_mut().insert(RequestId(id.clone()));
    let span = if trace.is_empty() {
        tracing::info_span!("request", request_id = %id)
    } else {
        tracing::info_span!("request", request_id = %id, trace_id = %trace)
    };
    let mut response = next.run(request).instrument(span).await;
    if let Some((method, route)) = access {
        let elapsed = started.elapsed();
        let status = response.status().as_u16();
        if app.access_log {
            crate::logging::access(&crate::logging::AccessLine {
                method: method.as_str(),
                route,
                status,
                duration: elapsed,
                request_id: &id,
                trace_id: (!trace.is_empty()).then_some(trace.as_str()),
            });
        }
        if measured {
            crate::metrics::http_request(route, status, elapsed);
        }
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    if let Some(value) = traceparent {
        response.headers_mut().insert(TRACEPARENT, value);
    }
    response
}

/// The route template of a request as a `&'static str` (no allocation per request):
/// every template the routers declare, `unmatched` for none.
fn route_template(matched: Option<&MatchedPath>) -> &'static str {
    const TEMPLATES: [&str; 9] = [
        "/health",
        "/ready",
        "/api/otp/create",
        "/api/otp/resend",
        "/api/otp/verify",
        "/test/clock",
        "/test/panic",
        "/metrics",
        "/admin/keys/rotate",
    ];
    matched
        .and_then(|m| TEMPLATES.into_iter().find(|t| *t == m.as_str()))
        .unwrap_or("unmatched")
}

/// A proxy's request id, if it is 1–128 printable ASCII characters.
fn acceptable_id(value: &[u8]) -> Option<String> {
    let ok = (1..=128).contains(&value.len()) && value.iter().all(|b| (0x21..=0x7e).contains(b));
    ok.then(|| String::from_utf8_lossy(value).into_owned())
}

/// The trace id of a valid version-00 `traceparent` (`00-TRACE-PARENT-FLAGS`, lowercase
/// hex, neither id all zeros).
fn trace_id(value: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(value).ok()?;
    let mut parts = text.split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let valid = parts.next().is_none()
        && version == "00"
        && hex(trace, 32)
        && hex(parent, 16)
        && hex(flags, 2)
        && trace.bytes().any(|b| b != b'0')
        && parent.bytes().any(|b| b != b'0');
    valid.then(|| trace.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_is_checked() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            trace_id(good.as_bytes()).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        for bad in [
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "00-4bf92f-00f067aa0ba902b7-01",
            "",
        ] {
            assert_eq!(trace_id(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn proxy_ids_are_bounded_printable_ascii() {
        assert_eq!(acceptable_id(b"abc-123").as_deref(), Some("abc-123"));
        assert_eq!(acceptable_id(b""), None);
        assert_eq!(acceptable_id(b"has space"), None);
        assert_eq!(acceptable_id(&[b'a'; 129]), None);
        assert_eq!(acceptable_id("é".as_bytes()), None);
        let a = crate::os_random::hex_id();
        assert_eq!(a.len(), 32);
        assert_ne!(a, crate::os_random::hex_id());
    }
}
