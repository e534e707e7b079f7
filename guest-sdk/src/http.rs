//! A small blocking HTTP client over `wasi:http/outgoing-handler`.
//!
//! The server sends a plugin's request only to destinations its manifest allows (deny by
//! default), with its timeouts and a cap on the response body; a refused request fails
//! here with [`HttpError::Denied`] or [`HttpError::Prohibited`] and never leaves the
//! machine. Natively (in `cargo test`) there is no host and every request fails with
//! [`HttpError::Unsupported`].
//!
//! ```no_run
//! use otp_plugin_sdk::http::{Request, Method};
//!
//! let response = Request::new(Method::Post, "https://hooks.example.com/otp")
//!     .header("content-type", "application/json")
//!     .body(r#"{"hello":"world"}"#)
//!     .send();
//! match response {
//!     Ok(r) if r.status < 300 => {}
//!     Ok(r) => eprintln!("refused with {}", r.status),
//!     Err(e) => eprintln!("failed: {e}"),
//! }
//! ```

use std::fmt;
use std::time::Duration;

/// The request method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`
    Get,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `PATCH`
    Patch,
    /// `DELETE`
    Delete,
}

/// A request to build and [`send`](Request::send).
#[derive(Debug, Clone)]
pub struct Request {
    method: Method,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    timeout: Option<Duration>,
    max_response_bytes: usize,
}

/// A response, its body read completely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header names (lower case) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of a header (names compare case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The manifest does not allow this destination (`HTTP-request-denied`).
    Denied,
    /// The host resolves to a loopback, private or other special address that the
    /// manifest does not name explicitly (`destination-IP-prohibited`).
    Prohibited,
    /// A connect, first-byte or overall timeout.
    Timeout(String),
    /// The name did not resolve, the connection was refused or broke, TLS failed.
    Connection(String),
    /// The response body is larger than allowed.
    TooLarge,
    /// The request itself is malformed (URL, header).
    InvalidRequest(String),
    /// There is no host to send through (native builds).
    Unsupported,
    /// Anything else the host reported.
    Other(String),
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Denied => f.write_str("destination not allowed by the plugin's manifest"),
            HttpError::Prohibited => f.write_str(
                "destination address is private or special and not named in the manifest",
            ),
            HttpError::Timeout(what) => write!(f, "timed out: {what}"),
            HttpError::Connection(what) => write!(f, "connection failed: {what}"),
            HttpError::TooLarge => f.write_str("response body too large"),
            HttpError::InvalidRequest(what) => write!(f, "invalid request: {what}"),
            HttpError::Unsupported => f.write_str("no wasi:http host"),
            HttpError::Other(what) => f.write_str(what),
        }
    }
}

impl std::error::Error for HttpError {}

/// The parts of an absolute `http(s)` URL that wasi:http takes separately.
#[derive(Debug, PartialEq, Eq)]
struct UrlParts<'a> {
    https: bool,
    authority: &'a str,
    path_with_query: &'a str,
}

fn split_url(url: &str) -> Result<UrlParts<'_>, HttpError> {
    let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err(HttpError::InvalidRequest(
            "the URL must start with http:// or https://".into(),
        ));
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if authority.is_empty() {
        return Err(HttpError::InvalidRequest("the URL has no host".into()));
    }
    let path = match path {
        "" => "/",
        p if p.starts_with('?') => p,
        p => p,
    };
    // A fragment is never sent.
    let path = path.split('#').next().unwrap_or("/");
    Ok(UrlParts {
        https,
        authority,
        path_with_query: path,
    })
}

impl Request {
    /// A request with no headers and an empty body; at most 1 MiB of response is read.
    pub fn new(method: Method, url: impl Into<String>) -> Request {
        Request {
            method,
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout: None,
            max_response_bytes: 1024 * 1024,
        }
    }

    /// Appends a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Request {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Replaces the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into();
        self
    }

    /// Asks for connect and first-byte timeouts of `timeout` each. The server's limits
    /// (manifest, hook deadline) still apply: this can only shorten them.
    pub fn timeout(mut self, timeout: Duration) -> Request {
        self.timeout = Some(timeout);
        self
    }

    /// Stops reading a response body beyond `bytes` (with [`HttpError::TooLarge`]).
    pub fn max_response_bytes(mut self, bytes: usize) -> Request {
        self.max_response_bytes = bytes;
        self
    }

    /// The method.
    pub fn method(&self) -> Method {
        self.method
    }

    /// The URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The headers, in order.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// Sends the request and reads the whole response.
    pub fn send(&self) -> Result<Response, HttpError> {
        let parts = split_url(&self.url)?;
        #[cfg(target_arch = "wasm32")]
        {
            wasi_impl::send(self, &parts)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let _ = parts;
            Err(HttpError::Unsupported)
        }
    }
}

#[cfg(target_arch = "wasm32")]
mod wasi_impl {
    use super::{HttpError, Method, Request, Response, UrlParts};
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{
        ErrorCode, Fields, IncomingBody, Method as WasiMethod, OutgoingBody, OutgoingRequest,
        RequestOptions, Scheme,
    };
    use wasip2::io::streams::StreamError;

    pub(super) fn send(request: &Request, parts: &UrlParts<'_>) -> Result<Response, HttpError> {
        let headers = Fields::new();
        for (name, value) in &request.headers {
            headers
                .append(name, value.as_bytes())
                .map_err(|e| HttpError::InvalidRequest(format!("header {name:?}: {e:?}")))?;
        }
        let outgoing = OutgoingRequest::new(headers);
        let method = match request.method {
            Method::Get => WasiMethod::Get,
            Method::Post => WasiMethod::Post,
            Method::Put => WasiMethod::Put,
            Method::Patch => WasiMethod::Patch,
            Method::Delete => WasiMethod::Delete,
        };
        let invalid = |what: &str| HttpError::InvalidRequest(what.to_string());
        outgoing
            .set_method(&method)
            .map_err(|_| invalid("method"))?;
        let scheme = if parts.https {
            Scheme::Https
        } else {
            Scheme::Http
        };
        outgoing
            .set_scheme(Some(&scheme))
            .map_err(|_| invalid("scheme"))?;
        outgoing
            .set_authority(Some(parts.authority))
            .map_err(|_| invalid("host"))?;
        outgoing
            .set_path_with_query(Some(parts.path_with_query))
            .map_err(|_| invalid("path"))?;
        let body = outgoing.body().map_err(|_| invalid("body"))?;

        let options = RequestOptions::new();
        if let Some(t) = request.timeout {
            let ns = t.as_nanos().min(u64::MAX as u128) as u64;
            let _ = options.set_connect_timeout(Some(ns));
            let _ = options.set_first_byte_timeout(Some(ns));
        }
        // Hand the request over first, then stream the body: the host reads it while it
        // connects, so a body larger than its buffer cannot deadlock.
        let future = outgoing_handler::handle(outgoing, Some(options)).map_err(from_code)?;
        {
            let stream = body.write().map_err(|_| invalid("body"))?;
            for chunk in request.body.chunks(4096) {
                // A refused request closes the body; its error comes from the response.
                if stream.blocking_write_and_flush(chunk).is_err() {
                    break;
                }
            }
        }
        let _ = OutgoingBody::finish(body, None);

        future.subscribe().block();
        let response = match future.get() {
            Some(Ok(Ok(response))) => response,
            Some(Ok(Err(code))) => return Err(from_code(code)),
            Some(Err(())) | None => return Err(HttpError::Other("response already taken".into())),
        };
        let status = response.status();
        let headers = response
            .headers()
            .entries()
            .into_iter()
            .map(|(n, v)| (n, String::from_utf8_lossy(&v).into_owned()))
            .collect();
        let incoming = response
            .consume()
            .map_err(|_| HttpError::Other("response body unavailable".into()))?;
        let mut bytes = Vec::new();
        {
            let stream = incoming
                .stream()
                .map_err(|_| HttpError::Other("response body unavailable".into()))?;
            loop {
                match stream.blocking_read(64 * 1024) {
                    Ok(chunk) => {
                        if bytes.len() + chunk.len() > request.max_response_bytes {
                            return Err(HttpError::TooLarge);
                        }
                        bytes.extend_from_slice(&chunk);
                    }
                    Err(StreamError::Closed) => break,
                    Err(StreamError::LastOperationFailed(e)) => {
                        let code = wasip2::http::types::http_error_code(&e);
                        return Err(code.map_or_else(
                            || HttpError::Connection(e.to_debug_string()),
                            from_code,
                        ));
                    }
                }
            }
        }
        let _ = IncomingBody::finish(incoming);
        Ok(Response {
            status,
            headers,
            body: bytes,
        })
    }

    fn from_code(code: ErrorCode) -> HttpError {
        match code {
            ErrorCode::HttpRequestDenied => HttpError::Denied,
            ErrorCode::DestinationIpProhibited => HttpError::Prohibited,
            ErrorCode::HttpResponseBodySize(_) => HttpError::TooLarge,
            ErrorCode::DnsTimeout
            | ErrorCode::ConnectionTimeout
            | ErrorCode::ConnectionReadTimeout
            | ErrorCode::ConnectionWriteTimeout
            | ErrorCode::HttpResponseTimeout => HttpError::Timeout(format!("{code:?}")),
            ErrorCode::DnsError(_)
            | ErrorCode::DestinationNotFound
            | ErrorCode::DestinationUnavailable
            | ErrorCode::DestinationIpUnroutable
            | ErrorCode::ConnectionRefused
            | ErrorCode::ConnectionTerminated
            | ErrorCode::ConnectionLimitReached
            | ErrorCode::TlsProtocolError
            | ErrorCode::TlsCertificateError
            | ErrorCode::TlsAlertReceived(_)
            | ErrorCode::HttpResponseIncomplete
            | ErrorCode::HttpProtocolError => HttpError::Connection(format!("{code:?}")),
            ErrorCode::HttpRequestUriInvalid
            | ErrorCode::HttpRequestMethodInvalid
            | ErrorCode::HttpRequestUriTooLong
            | ErrorCode::HttpRequestHeaderSize(_)
            | ErrorCode::HttpRequestHeaderSectionSize(_) => {
                HttpError::InvalidRequest(format!("{code:?}"))
            }
            other => HttpError::Other(format!("{other:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_wasi_parts() {
        assert_eq!(
            split_url("https://h.example.com:8443/a/b?c=d#frag").unwrap(),
            UrlParts {
                https: true,
                authority: "h.example.com:8443",
                path_with_query: "/a/b?c=d"
            }
        );
        assert_eq!(
            split_url("http://127.0.0.1:9").unwrap().path_with_query,
            "/"
        );
        assert_eq!(split_url("http://h?x=1").unwrap().path_with_query, "?x=1");
        assert!(matches!(
            split_url("ftp://h/"),
            Err(HttpError::InvalidRequest(_))
        ));
        assert!(matches!(
            split_url("https:///x"),
            Err(HttpError::InvalidRequest(_))
        ));
    }

    #[test]
    fn natively_nothing_is_sent() {
        let r = Request::new(Method::Post, "https://example.com/")
            .body("x")
            .send();
        assert_eq!(r, Err(HttpError::Unsupported));
        let r = Response {
            status: 200,
            headers: vec![("Content-Type".into(), "text/plain".into())],
            body: vec![],
        };
        assert_eq!(r.header("content-type"), Some("text/plain"));
    }
}
