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
//!   request's own `Host` (or, from a trusted proxy, any host its `X-Forwarded-Host`
//!   names);
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
        let from_proxy = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .is_some_and(|peer| state.clients.is_trusted_proxy(peer.0.ip()));
        let forwarded_hosts: Vec<&HeaderValue> = if from_proxy {
            request
                .headers()
                .get_all("x-forwarded-host")
                .iter()
                .collect()
        } else {
            Vec::new()
        };
        if allowed(
            request.headers(),
            state.cors_origin.as_ref(),
            &forwarded_hosts,
        ) {
            return next.run(request).await;
        }
        tracing::info!("refused a request started by a page of another origin");
        return super::error_response(ApiError::new(ErrorCode::CrossSite), state.mode);
    }
    next.run(request).await
}

/// Whether a browser request with these headers comes from a page this server serves
/// or trusts (`cors_origin`). `forwarded_hosts` are a trusted proxy's `X-Forwarded-Host`
/// lines (any host they name counts).
fn allowed(
    headers: &HeaderMap,
    cors_origin: Option<&HeaderValue>,
    forwarded_hosts: &[&HeaderValue],
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
                    || forwarded_hosts
                        .iter()
                        .any(|hosts| names_host(origin, Some(hosts)))
            }
        },
    }
}

/// Whether `origin` (`scheme://host[:port]`) names `host` (`host[:port]`, or a proxy's
/// comma-separated list of them; a scheme's default port may be written or not).
fn names_host(origin: &HeaderValue, host: Option<&HeaderValue>) -> bool {
    let (Ok(origin), Some(Ok(hosts))) = (origin.to_str(), host.map(HeaderValue::to_str)) else {
        return false;
    };
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let default_port = match scheme {
        "https" => Some(":443"),
        "http" => Some(":80"),
        _ => None,
    };
    hosts.split(',').map(str::trim).any(|host| {
        let host = default_port
            .and_then(|port| host.strip_suffix(port))
            .unwrap_or(host);
        !host.is_empty() && authority.eq_ignore_ascii_case(host)
    })
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
            assert!(allowed(&headers(&[("sec-fetch-site", site)]), None, &[]));
        }
        // A sibling subdomain is the same site: only the configured origin passes.
        let sibling = [
            ("sec-fetch-site", "same-site"),
            ("origin", "https://evil.example.com"),
        ];
        assert!(!allowed(&headers(&sibling), cors, &[]));
        assert!(!allowed(&headers(&sibling), None, &[]));
        let app_page = [
            ("sec-fetch-site", "same-site"),
            ("origin", "https://app.example.com"),
        ];
        assert!(allowed(&headers(&app_page), cors, &[]));
        assert!(!allowed(&headers(&app_page), None, &[]));
        let elsewhere = [
            ("sec-fetch-site", "cross-site"),
            ("origin", "https://elsewhere.test"),
        ];
        assert!(!allowed(&headers(&elsewhere), cors, &[]));
        // An unknown value counts as another site.
        assert!(!allowed(
            &headers(&[("sec-fetch-site", "nearby")]),
            None,
            &[]
        ));
    }

    #[test]
    fn without_fetch_metadata_the_origin_must_be_the_host_or_the_configured_one() {
        let app = HeaderValue::from_static("https://app.example.com");
        let own = [
            ("origin", "https://api.example.com"),
            ("host", "api.example.com"),
        ];
        assert!(allowed(&headers(&own), None, &[]));
        let own_port = [
            ("origin", "http://127.0.0.1:8080"),
            ("host", "127.0.0.1:8080"),
        ];
        assert!(allowed(&headers(&own_port), None, &[]));
        let other_port = [
            ("origin", "http://127.0.0.1:9090"),
            ("host", "127.0.0.1:8080"),
        ];
        assert!(!allowed(&headers(&other_port), None, &[]));
        let sibling = [
            ("origin", "https://evil.example.com"),
            ("host", "api.example.com"),
        ];
        assert!(!allowed(&headers(&sibling), None, &[]));
        let app_page = [
            ("origin", "https://app.example.com"),
            ("host", "api.example.com"),
        ];
        assert!(allowed(&headers(&app_page), Some(&app), &[]));
        // Sandboxed frames and data: documents send "null".
        let null = [("origin", "null"), ("host", "api.example.com")];
        assert!(!allowed(&headers(&null), None, &[]));
        assert!(!allowed(
            &headers(&[("origin", "https://x.test")]),
            None,
            &[]
        ));
        // Behind a trusted proxy that rewrote Host, its X-Forwarded-Host counts.
        let proxied = [
            ("origin", "https://api.example.com"),
            ("host", "127.0.0.1:8080"),
        ];
        let forwarded = HeaderValue::from_static("api.example.com");
        assert!(!allowed(&headers(&proxied), None, &[]));
        assert!(allowed(&headers(&proxied), None, &[&forwarded]));
        let chain = HeaderValue::from_static("api.example.com, internal:8080");
        assert!(allowed(&headers(&proxied), None, &[&chain]));
        // A second line, and a default port written out, count too.
        let other = HeaderValue::from_static("x");
        assert!(allowed(&headers(&proxied), None, &[&other, &forwarded]));
        let with_port = HeaderValue::from_static("api.example.com:443");
        assert!(allowed(&headers(&proxied), None, &[&with_port]));
        let other_port = HeaderValue::from_static("api.example.com:8443");
        assert!(!allowed(&headers(&proxied), None, &[&other_port]));
        let elsewhere = HeaderValue::from_static("evil.example.com");
        assert!(!allowed(&headers(&proxied), None, &[&elsewhere]));
        // Not a browser: nothing to check.
        assert!(allowed(&headers(&[("host", "api.example.com")]), None, &[]));
        assert!(allowed(&HeaderMap::new(), None, &[]));
    }
}
