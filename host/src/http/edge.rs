//! The HTTP edge: accepting connections and reading requests so that slow, many or odd
//! clients cannot wedge the server.
//!
//! [`serve`] drives hyper's HTTP/1 connections itself (axum's `serve` exposes no header
//! timeout): a client must send its headers within `header_read_timeout` (hyper starts
//! that timer whenever it waits for a request, so it also closes idle keep-alive
//! connections); its body must arrive within `body_read_timeout` ([`TimedBody`]); at most
//! a write to the client may stay blocked for `write_timeout` at most ([`WriteTimeout`]:
//! a client that pipelines requests and never reads the answers would otherwise hold its
//! connection forever); a request line and headers may take [`MAX_HEAD`] bytes; at most
//! `max_connections` are open, further clients wait in the listen backlog and the
//! moment is logged (once a minute at most); one client address (an IPv6 /64) may hold
//! `max_connections_per_client` of them, trusted proxies excepted, and its further
//! connections are closed at once; on shutdown the listener closes and in-flight requests get
//! `shutdown_grace` to finish.
//!
//! A connection's two places (under `max_connections` and under its client's cap) are a
//! [`ConnectionSlot`] that every request carries: an OTP call that outlives its
//! connection (the client hung up; the call runs to its end) holds them until it ends,
//! so hanging up cannot start more calls than the caps allow, and shutdown waits for
//! such calls too.
//!
//! Oversized bodies are drained by the handlers' body reader (`otp::read_body`) and
//! panics answered by the router's catch-panic layer; this module owns the connections.

use super::client::ClientAddresses;
use crate::limits::Network;
use crate::logging::LogThrottle;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::Router;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower_service::Service;

/// hyper's read buffer, which bounds a request line and its headers: more answers 431
/// with an empty body. One read may take the buffer past this before the head is
/// parsed, so heads up to twice as large can pass; hyper's default is about 400 KiB,
/// which `max_connections` clients could each hold.
const MAX_HEAD: usize = 32 * 1024;

/// The limits of the edge, from the configuration.
#[derive(Clone, Copy, Debug)]
pub struct EdgeLimits {
    /// Time to send a request's headers, and the keep-alive idle limit (hyper starts the
    /// header timer whenever it waits for the next request).
    pub header_read_timeout: Duration,
    /// Time to send a request's body, from the end of its headers.
    pub body_read_timeout: Duration,
    /// Time a write to the client may stay blocked (a client that stops reading).
    pub write_timeout: Duration,
    pub max_connections: usize,
    /// Open connections from one client address (an IPv6 client's /64) at most; further
    /// ones are closed at once. Peers that are trusted proxies are exempt.
    pub max_connections_per_client: usize,
    /// How long in-flight requests may take to finish on shutdown.
    pub shutdown_grace: Duration,
}

/// Open connections per client network, for `max_connections_per_client`.
struct PerClient {
    open: std::sync::Mutex<std::collections::HashMap<Network, usize>>,
    max: usize,
    /// Whose peers are trusted proxies (many clients behind one address): exempt.
    proxies: Arc<ClientAddresses>,
}

impl PerClient {
    /// A place for one more connection from `peer`, or `None` when its network (an
    /// IPv4 address or an IPv6 /64, as the abuse controls count them) has its most.
    fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<ClientConnection> {
        if self.proxies.is_trusted_proxy(peer) {
            return Some(ClientConnection { counted: None });
        }
        let key = Network::of(peer);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(key).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(ClientConnection {
            counted: Some((self.clone(), key)),
        })
    }
}

/// A connection's places under `max_connections` and its client's cap, freed when the
/// connection and every request call that outlived it are over. Requests carry it as an
/// extension.
#[derive(Clone)]
pub struct ConnectionSlot {
    _places: Arc<(OwnedSemaphorePermit, ClientConnection)>,
}

/// One admitted connection; dropping it frees its place.
struct ClientConnection {
    counted: Option<(Arc<PerClient>, Network)>,
}

impl Drop for ClientConnection {
    fn drop(&mut self) {
        if let Some((clients, key)) = self.counted.take() {
            let mut open = clients.open.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = open.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    open.remove(&key);
                }
            }
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then drains. Handlers can
/// extract `ConnectInfo<SocketAddr>`. Peers that `proxies` trusts are exempt from the
/// cap per client.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: EdgeLimits,
    proxies: Arc<ClientAddresses>,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let clients = Arc::new(PerClient {
        open: Default::default(),
        max: limits.max_connections_per_client,
        proxies,
    });
    let full = LogThrottle::new(Duration::from_secs(60));
    let client_full = LogThrottle::new(Duration::from_secs(60));
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_HEAD);
    tokio::pin!(shutdown);
    loop {
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if let Some(times) = full.count() {
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        times,
                        "connection limit reached; new clients wait until one closes"
                    );
                }
                tokio::select! {
                    permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
                    () = &mut shutdown => break,
                }
            }
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(admitted) = clients.admit(peer.ip()) else {
            // One client holding thousands of idle connections would keep everyone
            // else in the backlog: its extra ones are closed at once.
            drop(stream);
            if let Some(times) = client_full.count() {
                tracing::warn!(
                    max_connections_per_client = limits.max_connections_per_client,
                    times,
                    "a client reached its connection limit; its further connections are closed"
                );
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let body_timeout = limits.body_read_timeout;
        let slot = ConnectionSlot {
            _places: Arc::new((permit, admitted)),
        };
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let mut request = request.map(|body| TimedBody::wrap(body, body_timeout));
            request.extensions_mut().insert(ConnectInfo(peer));
            request.extensions_mut().insert(slot.clone());
            let mut router = router.clone();
            async move { router.call(request).await }
        });
        let stream = WriteTimeout::new(stream, limits.write_timeout);
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let open = graceful.count();
    let grace_ends = tokio::time::Instant::now() + limits.shutdown_grace;
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep_until(grace_ends) => {
            tracing::warn!(open, "shutdown grace elapsed; closing the remaining connections");
            return;
        }
    }
    // Calls whose clients hung up still hold their connection's place: wait for them
    // (all places back) within what is left of the grace.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout_at(grace_ends, permits.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace elapsed; ending calls whose clients hung up");
    }
}

/// A request body that fails once `timeout` has passed since the headers arrived.
pub struct TimedBody {
    inner: Incoming,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl TimedBody {
    fn wrap(inner: Incoming, timeout: Duration) -> Body {
        // Bodiless requests (most GETs) need no timer.
        let deadline = (!inner.is_end_stream()).then(|| Box::pin(tokio::time::sleep(timeout)));
        Body::new(TimedBody { inner, deadline })
    }
}

/// The body did not arrive within `body_read_timeout`.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyTimeout;

impl HttpBody for TimedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if let Some(deadline) = &mut this.deadline {
            if deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Some(Err(BodyTimeout.into())));
            }
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A connection whose writes fail once one has been blocked for `timeout`: hyper stops
/// reading a connection whose answers cannot be written, so without this a client that
/// never reads would hold its connection (and its slot) forever.
struct WriteTimeout<S> {
    inner: S,
    timeout: Duration,
    /// Armed while a write is blocked.
    blocked: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> WriteTimeout<S> {
    fn new(inner: S, timeout: Duration) -> WriteTimeout<S> {
        WriteTimeout {
            inner,
            timeout,
            blocked: None,
        }
    }

    /// Passes a finished write through (disarming the timer); for a blocked one, arms
    /// the timer and fails the write once it has run out.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        match poll {
            Poll::Ready(result) => {
                self.blocked = None;
                Poll::Ready(result)
            }
            Poll::Pending => {
                let timeout = self.timeout;
                let timer = self
                    .blocked
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if timer.as_mut().poll(cx).is_ready() {
                    Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the client stopped reading",
                    )))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for WriteTimeout<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for WriteTimeout<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.watch(cx, poll)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_flush(cx);
        this.watch(cx, poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn connections_are_counted_per_address_or_ipv6_64_and_proxies_are_exempt() {
        let clients = Arc::new(PerClient {
            open: Default::default(),
            max: 2,
            proxies: Arc::new(ClientAddresses::new(
                vec!["10.0.0.0/8".parse().unwrap()],
                crate::limits::ForwardedHeader::XForwardedFor,
            )),
        });
        let a = clients.admit(ip("192.0.2.1")).unwrap();
        // The same address written as IPv4-mapped IPv6 is the same client.
        let b = clients.admit(ip("::ffff:192.0.2.1")).unwrap();
        assert!(clients.admit(ip("192.0.2.1")).is_none());
        assert!(clients.admit(ip("192.0.2.2")).is_some(), "another address");
        // Addresses of one /64 are one client; another /64 is not.
        let v6 = [
            clients.admit(ip("2001:db8:1:2::1")).unwrap(),
            clients.admit(ip("2001:db8:1:2:ffff::9")).unwrap(),
        ];
        assert!(clients.admit(ip("2001:db8:1:2::77")).is_none());
        assert!(clients.admit(ip("2001:db8:1:3::1")).is_some());
        // A trusted proxy carries many clients: never refused.
        let mut proxied: Vec<_> = (0..10).map(|_| clients.admit(ip("10.1.2.3"))).collect();
        proxied.extend((0..10).map(|_| clients.admit(ip("::ffff:10.1.2.3"))));
        assert!(proxied.iter().all(Option::is_some));
        // Closing frees the place, and forgotten addresses leave nothing behind.
        drop(a);
        assert!(clients.admit(ip("192.0.2.1")).is_some());
        drop((b, v6, proxied));
        assert!(clients.open.lock().unwrap().is_empty());
    }
}
