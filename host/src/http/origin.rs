//! Which pages may call the OTP endpoints with the user's cookie.
//!
//! The session cookie is `SameSite=Strict`, so a browser sends it with no request
//! that another *site* starts. A sibling subdomain is the same site, though: a page on
//! `evil.example.com` could post a form to `api.example.com/api/otp/verify` and spend
//! the user's attempts, or to `/resend` and send them codes. So every `POST` to `/api/`
//! must come from the server's own origin or from the one configured `cors_origin`:
//! - `Sec-Fetch-Site` (sent by every current browser) decides first: `same-origin` and
//!   `none` (the user's own action) pass; `same-site` and `cross-site` pass only with an
//!   `Origin` equal to `cors_origin`;
//! - without it (an older browser), an `Origin` must be `cors_origin` or name the
//!   request's own `Host` (or, from a trusted proxy, its `X-Forwarded-Host`);
//! - a request with neither header is not a browser's (curl, a backend): it carries
//!   the cookie only if its sender holds it, and passes.
//!
//! A refused request answers 403 `REQUEST:CROSS_SITE` and changes nothing.

use super::error::{ApiError, ErrorCode};
use super::AppState;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use std::net::SocketAddr;

/// Refuses a `POST` to `/api/` that a page of another origin started.
pub async fn same_origin(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if request.method() == Method::POST && request.uri().path().starts_with("/api/") {
        // A trusted proxy that rewrites `Host` says the one the browser used here.
        let forwarded_host = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .filter(|peer| state.clients.is_trusted_proxy(peer.0.ip()))
            .and_then(|_| request.headers().get("x-forwarded-host"));
        if allowed(
            request.headers(),
            state.cors_origin.as_ref(),
            forwarded_host,
        ) {
            return next.run(request).await;
        }
        tracing::info!("refused a request started by a page of another origin");
        return super::error_response(ApiError::new(ErrorCode::CrossSite), state.mode);
    }
    next.run(request).await
}

/// Whether a browser request with these headers comes from a page this server serves
/// or trusts (`cors_origin`). `forwarded_host` is a trusted proxy's `X-Forwarded-Host`.
fn allowed(
    headers: &HeaderMap,
    cors_origin: Option<&HeaderValue>,
    forwarded_host: Option<&HeaderValue>,
) -> bool {
    let origin = headers.get(header::ORIGIN);
    let trusted = origin.is_some() && origin == cors_origin;
    match headers.get("sec-fetch-site").map(HeaderValue::as_bytes) {
        Some(b"same-origin" | b"none") => true,
        Some(_) => trusted,
        None => match origin {
            None => true,
            Some(origin) => {
                trusted
                    || names_host(origin, headers.get(header::HOST))
                    || names_host(origin, forwarded_host)
            }
        },
    }
}

/// Whether `origin` (`scheme://host[:port]`) names `host` (`host[:port]`, or a proxy's
/// comma-separated list of them).
fn names_host(origin: &HeaderValue, host: Option<&HeaderValue>) -> bool {
    let (Ok(origin), Some(Ok(hosts))) = (origin.to_str(), host.map(HeaderValue::to_str)) else {
        return false;
    };
    let Some((_, authority)) = origin.split_once("://") else {
        return false;
    };
    hosts
        .split(',')
        .map(str::trim)
        .any(|host| !host.is_empty() && authority.eq_ignore_ascii_case(host))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    header::HeaderName::from_static(k),
                    HeaderValue::from_static(v),
                )
            })
            .collect()
    }

    #[test]
    fn fetch_metadata_decides_for_current_browsers() {
        let app = HeaderValue::from_static("https://app.example.com");
        let cors = Some(&app);
        for site in ["same-origin", "none"] {
            assert!(allowed(&headers(&[("sec-fetch-site", site)]), None, None));
        }
        // A sibling subdomain is the same site: only the configured origin passes.
        let sibling = [
            ("sec-fetch-site", "same-site"),
            ("origin", "https://evil.example.com"),
        ];
        assert!(!allowed(&headers(&sibling), cors, None));
        assert!(!allowed(&headers(&sibling), None, None));
        let app_page = [
            ("sec-fetch-site", "same-site"),
            ("origin", "https://app.example.com"),
        ];
        assert!(allowed(&headers(&app_page), cors, None));
        assert!(!allowed(&headers(&app_page), None, None));
        let elsewhere = [
            ("sec-fetch-site", "cross-site"),
            ("origin", "https://elsewhere.test"),
        ];
        assert!(!allowed(&headers(&elsewhere), cors, None));
        // An unknown value counts as another site.
        assert!(!allowed(
            &headers(&[("sec-fetch-site", "nearby")]),
            None,
            None
        ));
    }

    #[test]
    fn without_fetch_metadata_the_origin_must_be_the_host_or_the_configured_one() {
        let app = HeaderValue::from_static("https://app.example.com");
        let own = [
            ("origin", "https://api.example.com"),
            ("host", "api.example.com"),
        ];
        assert!(allowed(&headers(&own), None, None));
        let own_port = [
            ("origin", "http://127.0.0.1:8080"),
            ("host", "127.0.0.1:8080"),
        ];
        assert!(allowed(&headers(&own_port), None, None));
        let other_port = [
            ("origin", "http://127.0.0.1:9090"),
            ("host", "127.0.0.1:8080"),
        ];
        assert!(!allowed(&headers(&other_port), None, None));
        let sibling = [
            ("origin", "https://evil.example.com"),
            ("host", "api.example.com"),
        ];
        assert!(!allowed(&headers(&sibling), None, None));
        let app_page = [
            ("origin", "https://app.example.com"),
            ("host", "api.example.com"),
        ];
        assert!(allowed(&headers(&app_page), Some(&app), None));
        // Sandboxed frames and data: documents send "null".
        let null = [("origin", "null"), ("host", "api.example.com")];
        assert!(!allowed(&headers(&null), None, None));
        assert!(!allowed(
            &headers(&[("origin", "https://x.test")]),
            None,
            None
        ));
        // Behind a trusted proxy that rewrote Host, its X-Forwarded-Host counts.
        let proxied = [
            ("origin", "https://api.example.com"),
            ("host", "127.0.0.1:8080"),
        ];
        let forwarded = HeaderValue::from_static("api.example.com");
        assert!(!allowed(&headers(&proxied), None, None));
        assert!(allowed(&headers(&proxied), None, Some(&forwarded)));
        let chain = HeaderValue::from_static("api.example.com, internal:8080");
        assert!(allowed(&headers(&proxied), None, Some(&chain)));
        let elsewhere = HeaderValue::from_static("evil.example.com");
        assert!(!allowed(&headers(&proxied), None, Some(&elsewhere)));
        // Not a browser: nothing to check.
        assert!(allowed(
            &headers(&[("host", "api.example.com")]),
            None,
            None
        ));
        assert!(allowed(&HeaderMap::new(), None, None));
    }
}
