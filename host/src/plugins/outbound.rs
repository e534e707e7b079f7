//! Outbound HTTP for plugins: the host side of `wasi:http/outgoing-handler`, deny by
//! default.
//!
//! wasmtime-wasi-http turns a plugin's request into an `http::Request` and hands it to
//! [`OutboundHooks::send_request`]; its own sender (which resolves and connects by
//! itself) is compiled out. Here a request is sent only when:
//!
//! 1. its scheme, host and port match the plugin's allow-list (else `HTTP-request-denied`);
//! 2. every address the host resolves to is an ordinary public address, or the
//!    matching rule is an IP literal or opts in with `private = true` (else
//!    `destination-IP-prohibited`) — see [`super::allow`]; a plain host name in the
//!    allow-list never reaches loopback, private or link-local addresses, whatever the
//!    DNS answers;
//! 3. it connects, within the connect timeout, to one of *those checked addresses*: the
//!    name is resolved once, here, so DNS cannot answer differently between check and
//!    connect. TLS still verifies the certificate against the host name.
//!
//! The plugin's own timeouts (`request-options`) can only shorten the manifest's; the
//! whole exchange, response body included, ends before the hook's deadline. Response
//! bodies are capped (`max_response_bytes`), and so is the number of a call's requests
//! in flight at once ([`MAX_IN_FLIGHT`]: each holds a socket until its connection
//! closes), of DNS lookups running at once in the process ([`MAX_LOOKUPS`]: a lookup
//! cannot be cancelled), and the size of a response's head ([`MAX_RESPONSE_HEAD`]).
//! Nothing of the client's HTTP request is
//! forwarded — a plugin only sends what it builds — and hop-by-hop headers are refused
//! when the plugin sets them and stripped before sending. One connection per request:
//! no pooling, so nothing of one plugin call survives into another.
//!
//! The log names the plugin and the destination (scheme, host, port) of refused or
//! failed requests — never the path or query, which can carry tokens.

use super::allow::{is_special, Destination, Host, Scheme, Verdict};
use super::manifest::OutboundPolicy;
use bytes::Bytes;
use http::header::{self, HeaderName};
use http_body::{Body, Frame, SizeHint};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{
    Error, ForbiddenHeaderFilter, RequestOptions, WasiBody, WasiHttpHooks,
    DEFAULT_FORBIDDEN_HEADERS,
};

/// The exchange must end this long before the hook's deadline, so the plugin still has
/// time to turn the timeout into its own error instead of being interrupted.
const DEADLINE_MARGIN: Duration = Duration::from_millis(25);

/// At most this many of one call's requests are in flight at once (sent and not yet
/// over, body included); one more answers `connection-limit-reached`. A sender needs one
/// at a time, perhaps a few; more would only let one call hold many sockets and
/// blocking DNS threads until its deadline.
pub const MAX_IN_FLIGHT: usize = 8;

/// A response's status line and headers may take this many bytes at most (hyper's
/// default is about 400 KiB): they become a header set the plugin can copy.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// At most this many DNS lookups run at once, for all plugins: a slow resolver then
/// holds at most this many of tokio's blocking threads (which compiling plugins also
/// uses), however many requests gave up waiting for it.
const MAX_LOOKUPS: usize = 32;
static LOOKUPS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_LOOKUPS);

/// Hop-by-hop headers (RFC 9110 §7.6.1) beyond wasmtime-wasi-http's forbidden list.
const HOP_BY_HOP: [&str; 2] = ["te", "trailer"];

fn is_forbidden(name: &HeaderName) -> bool {
    DEFAULT_FORBIDDEN_HEADERS.contains(name) || HOP_BY_HOP.contains(&name.as_str())
}

/// The `wasi:http` hooks of one plugin call.
pub struct OutboundHooks {
    plugin: Arc<str>,
    policy: Arc<OutboundPolicy>,
    /// The hook call's deadline.
    deadline: Instant,
    /// The call's requests in flight.
    in_flight: Arc<AtomicUsize>,
}

impl OutboundHooks {
    pub fn new(plugin: Arc<str>, policy: Arc<OutboundPolicy>, deadline: Instant) -> OutboundHooks {
        OutboundHooks {
            plugin,
            policy,
            deadline,
            in_flight: Arc::default(),
        }
    }
}

/// One request in flight, counted until it is dropped: with the exchange when it fails,
/// with the connection's driver when it ran.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn take(count: &Arc<AtomicUsize>) -> Option<InFlight> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_IN_FLIGHT).then_some(n + 1)
            })
            .ok()
            .map(|_| InFlight(count.clone()))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), Error>> + Send>,
                ),
                Error,
            >,
        > + Send,
>;

impl WasiHttpHooks for OutboundHooks {
    fn forbidden_header_filter(&mut self) -> ForbiddenHeaderFilter {
        Arc::new(is_forbidden)
    }

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> SendFuture {
        let plugin = self.plugin.clone();
        let policy = self.policy.clone();
        let deadline = self.deadline;
        let in_flight = InFlight::take(&self.in_flight);
        Box::new(async move {
            let Some(in_flight) = in_flight else {
                tracing::warn!(%plugin, "outbound request refused: {MAX_IN_FLIGHT} of this call's requests already in flight");
                return Err(Error::ConnectionLimitReached);
            };
            let dest = destination(request.uri()).inspect_err(|_| {
                tracing::warn!(%plugin, "outbound request refused: not an absolute http(s) URL");
            })?;
            let special = match policy.allow.check(&dest) {
                Verdict::Allowed { special } => special,
                Verdict::Denied => {
                    tracing::warn!(%plugin, destination = %dest, "outbound request denied: not in the manifest's allow-list");
                    return Err(Error::HttpRequestDenied);
                }
            };
            let timeouts = Timeouts::new(&policy, options, deadline);
            match send(request, &dest, special, &policy, timeouts).await {
                Ok((response, driver)) => {
                    let driver: Box<dyn Future<Output = Result<(), Error>> + Send> =
                        Box::new(async move {
                            let _in_flight = in_flight;
                            Pin::from(driver).await
                        });
                    Ok((response, driver))
                }
                Err(error) => {
                    tracing::warn!(%plugin, destination = %dest, %error, "outbound request failed");
                    Err(error)
                }
            }
        })
    }
}

/// The effective limits of one request.
#[derive(Clone, Copy, Debug)]
struct Timeouts {
    connect: Duration,
    first_byte: Duration,
    between_bytes: Option<Duration>,
    /// When everything, body included, must be over.
    end: Instant,
}

impl Timeouts {
    fn new(
        policy: &OutboundPolicy,
        options: Option<RequestOptions>,
        deadline: Instant,
    ) -> Timeouts {
        let options = options.unwrap_or_default();
        let shorter =
            |mine: Duration, theirs: Option<Duration>| theirs.map_or(mine, |t| t.min(mine));
        let now = Instant::now();
        let end =
            (now + policy.total_timeout).min(deadline.checked_sub(DEADLINE_MARGIN).unwrap_or(now));
        Timeouts {
            connect: shorter(policy.connect_timeout, options.connect_timeout),
            first_byte: shorter(policy.first_byte_timeout, options.first_byte_timeout),
            between_bytes: options.between_bytes_timeout,
            end,
        }
    }
}

/// The scheme, host and port of an absolute request URI.
fn destination(uri: &http::Uri) -> Result<Destination, Error> {
    let scheme = uri
        .scheme_str()
        .and_then(Scheme::parse)
        .ok_or(Error::HttpRequestUriInvalid)?;
    let authority = uri.authority().ok_or(Error::HttpRequestUriInvalid)?;
    // Credentials in the authority are never sent; refuse rather than guess.
    if authority.as_str().contains('@') {
        return Err(Error::HttpRequestUriInvalid);
    }
    let host = Host::parse(authority.host()).ok_or(Error::HttpRequestUriInvalid)?;
    let port = authority.port_u16().unwrap_or(scheme.default_port());
    Ok(Destination { scheme, host, port })
}

/// Resolves, checks every address, connects to a checked one, and exchanges the request.
async fn send(
    mut request: http::Request<WasiBody>,
    dest: &Destination,
    special: bool,
    policy: &OutboundPolicy,
    t: Timeouts,
) -> Result<
    (
        http::Response<WasiBody>,
        Box<dyn Future<Output = Result<(), Error>> + Send>,
    ),
    Error,
> {
    let connect_by = (Instant::now() + t.connect).min(t.end);
    let addresses = tokio::time::timeout_at(connect_by, resolve(dest))
        .await
        .map_err(|_| Error::DnsTimeout)??;
    if !special && addresses.iter().any(|a| is_special(a.ip())) {
        // One special address is enough to refuse: a name that mixes public and private
        // answers is exactly what a rebinding attack looks like.
        return Err(Error::DestinationIpProhibited);
    }
    let stream = tokio::time::timeout_at(connect_by, connect(&addresses))
        .await
        .map_err(|_| Error::ConnectionTimeout)??;

    let io: Box<dyn Stream> = match dest.scheme {
        Scheme::Http => Box::new(stream),
        Scheme::Https => {
            let name = match &dest.host {
                Host::Ip(ip) => rustls_server_name(*ip),
                Host::Name(name) => {
                    tokio_rustls::rustls::pki_types::ServerName::try_from(name.clone())
                        .map_err(|_| Error::HttpRequestUriInvalid)?
                }
            };
            let tls = tokio::time::timeout_at(connect_by, tls_connector().connect(name, stream))
                .await
                .map_err(|_| Error::ConnectionTimeout)?
                .map_err(Error::Tls)?;
            Box::new(tls)
        }
    };
    let (mut sender, conn) = tokio::time::timeout_at(
        connect_by,
        hyper::client::conn::http1::Builder::new()
            .max_header_size(MAX_RESPONSE_HEAD)
            .handshake::<_, WasiBody>(TokioIo::new(io)),
    )
    .await
    .map_err(|_| Error::ConnectionTimeout)??;

    // On the wire: origin-form request target, our Host header, no hop-by-hop headers.
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .to_string();
    *request.uri_mut() = http::Uri::builder()
        .path_and_query(path)
        .build()
        .map_err(|_| Error::HttpRequestUriInvalid)?;
    let headers = request.headers_mut();
    for name in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ] {
        headers.remove(name);
    }
    let host_header = if dest.port == dest.scheme.default_port() {
        dest.host.to_string()
    } else {
        format!("{}:{}", dest.host, dest.port)
    };
    headers.insert(
        header::HOST,
        http::HeaderValue::from_str(&host_header).map_err(|_| Error::HttpRequestUriInvalid)?,
    );
    // One request per connection (no pooling across calls): say so, so the receiver
    // closes rather than keeping an idle connection for a client that will not return.
    headers.insert(header::CONNECTION, http::HeaderValue::from_static("close"));

    let first_byte_by = (Instant::now() + t.first_byte).min(t.end);
    let mut exchange = pin!(tokio::time::timeout_at(
        first_byte_by,
        sender.send_request(request)
    ));
    let mut conn = Some(conn);
    // Drive the connection while waiting for the response head.
    let response = std::future::poll_fn(|cx| {
        if let Poll::Ready(outcome) = exchange.as_mut().poll(cx) {
            return Poll::Ready(outcome);
        }
        if let Some(c) = conn.as_mut() {
            if let Poll::Ready(done) = Pin::new(c).poll(cx) {
                conn = None;
                if let Err(e) = done {
                    return Poll::Ready(Ok(Err(e)));
                }
                return exchange.as_mut().poll(cx);
            }
        }
        Poll::Pending
    })
    .await
    .map_err(|_| Error::HttpResponseTimeout)??;

    if let Some(length) = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if length > policy.max_response_bytes {
            return Err(Error::HttpResponseBodySize(Some(length)));
        }
    }
    let end = t.end;
    let response = response.map(|incoming| {
        http_body_util::BodyExt::boxed_unsync(GuardedBody {
            inner: incoming,
            remaining: policy.max_response_bytes,
            end: Box::pin(tokio::time::sleep_until(end)),
            idle: t
                .between_bytes
                .map(|d| (d, Box::pin(tokio::time::sleep(d)))),
        })
    });
    let driver: Box<dyn Future<Output = Result<(), Error>> + Send> = Box::new(async move {
        let Some(conn) = conn else { return Ok(()) };
        match tokio::time::timeout_at(end, conn).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::Hyper(e)),
            Err(_) => Err(Error::HttpResponseTimeout),
        }
    });
    Ok((response, driver))
}

trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Stream for T {}

async fn resolve(dest: &Destination) -> Result<Vec<SocketAddr>, Error> {
    match &dest.host {
        Host::Ip(ip) => Ok(vec![SocketAddr::new(*ip, dest.port)]),
        Host::Name(name) => {
            // The resolver runs on a blocking thread, which nothing can cancel: the
            // lookup keeps its place among MAX_LOOKUPS until it returns, also when the
            // request that asked for it was given up.
            let place = LOOKUPS.acquire().await.map_err(|_| Error::DnsTimeout)?;
            let (name, port) = (name.clone(), dest.port);
            let found: Vec<SocketAddr> = tokio::task::spawn_blocking(move || {
                let _place = place;
                std::net::ToSocketAddrs::to_socket_addrs(&(name.as_str(), port))
                    .map(Iterator::collect::<Vec<_>>)
            })
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or(Error::DnsError {
                rcode: Some("no address".into()),
                info_code: None,
            })?;
            if found.is_empty() {
                return Err(Error::DnsError {
                    rcode: Some("no address".into()),
                    info_code: None,
                });
            }
            Ok(found)
        }
    }
}

/// Connects to the first of the (already checked) addresses that accepts.
async fn connect(addresses: &[SocketAddr]) -> Result<TcpStream, Error> {
    let mut last = None;
    for address in addresses {
        match TcpStream::connect(address).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.map_or(Error::ConnectionRefused, Error::Connect))
}

fn rustls_server_name(ip: IpAddr) -> tokio_rustls::rustls::pki_types::ServerName<'static> {
    tokio_rustls::rustls::pki_types::ServerName::IpAddress(ip.into())
}

/// One TLS client configuration (the webpki root certificates) for the process.
fn tls_connector() -> tokio_rustls::TlsConnector {
    static CONFIG: OnceLock<Arc<tokio_rustls::rustls::ClientConfig>> = OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        use tokio_rustls::rustls;
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.into(),
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    });
    tokio_rustls::TlsConnector::from(config.clone())
}

/// A response body with a size cap, an overall end and an optional idle timeout.
struct GuardedBody {
    inner: hyper::body::Incoming,
    remaining: u64,
    end: Pin<Box<tokio::time::Sleep>>,
    idle: Option<(Duration, Pin<Box<tokio::time::Sleep>>)>,
}

impl Body for GuardedBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Error::Hyper(e)))),
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    if n > this.remaining {
                        return Poll::Ready(Some(Err(Error::HttpResponseBodySize(None))));
                    }
                    this.remaining -= n;
                }
                if let Some((every, idle)) = this.idle.as_mut() {
                    idle.as_mut().reset(Instant::now() + *every);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                if this.end.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Some(Err(Error::HttpResponseTimeout)));
                }
                if let Some((_, idle)) = this.idle.as_mut() {
                    ready!(idle.as_mut().poll(cx));
                    return Poll::Ready(Some(Err(Error::ConnectionReadTimeout)));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_from_uris() {
        let d = destination(&"https://Hooks.Example.com/x?y".parse().unwrap()).unwrap();
        assert_eq!(d.to_string(), "https://hooks.example.com:443");
        let d = destination(&"http://127.0.0.1:8080/".parse().unwrap()).unwrap();
        assert_eq!(d.to_string(), "http://127.0.0.1:8080");
        let d = destination(&"http://[::1]:9/".parse().unwrap()).unwrap();
        assert_eq!(d.to_string(), "http://[::1]:9");
        assert!(destination(&"/relative".parse().unwrap()).is_err());
        assert!(destination(&"http://user@host/".parse().unwrap()).is_err());
    }

    #[test]
    fn hop_by_hop_headers_are_forbidden() {
        for name in [
            "connection",
            "te",
            "trailer",
            "upgrade",
            "host",
            "transfer-encoding",
        ] {
            assert!(is_forbidden(&HeaderName::from_static(name)), "{name}");
        }
        assert!(!is_forbidden(&header::CONTENT_TYPE));
        assert!(!is_forbidden(&header::AUTHORIZATION));
    }

    fn hooks(allow: &[&str]) -> OutboundHooks {
        hooks_for(super::super::allow::AllowList::parse(allow).unwrap())
    }

    fn hooks_for(allow: super::super::allow::AllowList) -> OutboundHooks {
        let policy = OutboundPolicy {
            allow,
            ..OutboundPolicy::default()
        };
        OutboundHooks::new(
            Arc::from("t"),
            Arc::new(policy),
            Instant::now() + Duration::from_secs(5),
        )
    }

    async fn outcome(hooks: &mut OutboundHooks, url: &str) -> Result<u16, Error> {
        let future = hooks.send_request(empty_request(url), None, Box::new(async { Ok(()) }));
        Pin::from(future).await.map(|(r, _)| r.status().as_u16())
    }

    fn empty_request(url: &str) -> http::Request<WasiBody> {
        let body = http_body_util::BodyExt::boxed_unsync(http_body_util::BodyExt::map_err(
            http_body_util::Empty::<Bytes>::new(),
            |never| match never {},
        ));
        http::Request::get(url).body(body).unwrap()
    }

    #[tokio::test]
    async fn a_call_has_at_most_eight_requests_in_flight() {
        // A server that accepts and never answers: every request stays in flight.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                held.push(socket);
            }
        });
        let url = format!("http://127.0.0.1:{port}/");
        let mut h = hooks(&[&format!("http://127.0.0.1:{port}")]);
        let mut pending = Vec::new();
        for _ in 0..MAX_IN_FLIGHT {
            let future = h.send_request(empty_request(&url), None, Box::new(async { Ok(()) }));
            pending.push(tokio::spawn(Pin::from(future)));
        }
        let refused = h.send_request(empty_request(&url), None, Box::new(async { Ok(()) }));
        let e = Pin::from(refused).await.map(|_| ()).unwrap_err();
        assert!(matches!(e, Error::ConnectionLimitReached), "{e}");
        let deadline = Instant::now() + Duration::from_secs(5);
        while accepted.load(Ordering::SeqCst) < MAX_IN_FLIGHT && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), MAX_IN_FLIGHT);
        // One over (dropped, as when the plugin drops its future): the next one goes.
        let first = pending.remove(0);
        first.abort();
        let _ = first.await;
        let next = h.send_request(empty_request(&url), None, Box::new(async { Ok(()) }));
        let next = tokio::spawn(Pin::from(next));
        while accepted.load(Ordering::SeqCst) < MAX_IN_FLIGHT + 1 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), MAX_IN_FLIGHT + 1);
        assert!(!next.is_finished(), "in flight, not refused");
        next.abort();
        pending.iter().for_each(|p| p.abort());
    }

    #[tokio::test]
    async fn denied_and_prohibited_requests_never_connect() {
        // A listener that counts connections: none may arrive.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = tokio::spawn(async move { listener.accept().await.is_ok() });

        let mut h = hooks(&[]);
        let e = outcome(&mut h, &format!("http://127.0.0.1:{port}/"))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::HttpRequestDenied), "{e}");

        let mut h = hooks(&["http://*:*"]);
        let e = outcome(&mut h, &format!("http://127.0.0.1:{port}/"))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::DestinationIpProhibited), "{e}");
        let e = outcome(&mut h, &format!("http://localhost:{port}/"))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::DestinationIpProhibited), "{e}");

        let mut h = hooks(&["http://127.0.0.1:1"]);
        let e = outcome(&mut h, &format!("http://127.0.0.1:{port}/"))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::HttpRequestDenied), "other port: {e}");

        // A host name resolving to loopback, allowed by name but without the opt-in.
        let mut h = hooks(&["http://localhost:*"]);
        let e = outcome(&mut h, &format!("http://localhost:{port}/"))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::DestinationIpProhibited), "{e}");

        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !accepted.is_finished(),
            "no connection reached the listener"
        );
        accepted.abort();
    }

    #[tokio::test]
    async fn an_ip_literal_or_an_opted_in_name_reaches_loopback() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            for _ in 0..2 {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                s.write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                    .await
                    .unwrap();
            }
        });
        let mut h = hooks(&["http://127.0.0.1:*"]);
        assert_eq!(
            outcome(&mut h, &format!("http://127.0.0.1:{port}/x"))
                .await
                .unwrap(),
            204
        );
        // `localhost` resolves to 127.0.0.1 here (and maybe ::1, which the connect
        // falls back from); its entry opts in.
        let entry = super::super::allow::AllowEntry {
            url: "http://localhost:*".into(),
            private: true,
        };
        let mut h = hooks_for(super::super::allow::AllowList::from_entries(&[entry]).unwrap());
        assert_eq!(
            outcome(&mut h, &format!("http://localhost:{port}/x"))
                .await
                .unwrap(),
            204
        );
    }

    #[tokio::test]
    async fn oversized_and_slow_answers_fail() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            // First connection: a declared body over the cap. Second: a head of 100 KiB.
            // Third: never answers.
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 999999999\r\n\r\n")
                .await
                .unwrap();
            let (mut s, _) = listener.accept().await.unwrap();
            let _ = s.read(&mut buf).await;
            let big = format!(
                "HTTP/1.1 200 OK\r\nx-big: {}\r\n\r\n",
                "a".repeat(100 * 1024)
            );
            let _ = s.write_all(big.as_bytes()).await;
            let (mut slow, _) = listener.accept().await.unwrap();
            let _ = slow.read(&mut buf).await;
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        let policy = OutboundPolicy {
            allow: super::super::allow::AllowList::parse(&["http://127.0.0.1:*"]).unwrap(),
            first_byte_timeout: Duration::from_millis(200),
            ..OutboundPolicy::default()
        };
        let mut h = OutboundHooks::new(
            Arc::from("t"),
            Arc::new(policy),
            Instant::now() + Duration::from_secs(5),
        );
        let e = outcome(&mut h, &format!("http://127.0.0.1:{port}/"))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::HttpResponseBodySize(_)), "{e}");
        let e = outcome(&mut h, &format!("http://127.0.0.1:{port}/"))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Hyper(_)), "a head over 64 KiB: {e}");
        let started = Instant::now();
        let e = outcome(&mut h, &format!("http://127.0.0.1:{port}/"))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::HttpResponseTimeout), "{e}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
