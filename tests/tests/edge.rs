//! The HTTP edge against the real binary over raw connections: a client that trickles
//! its headers or its body is cut off at the configured timeout instead of holding a
//! connection forever, connections beyond `max_connections` wait (logged) until
//! one closes, a huge head is refused, and one client address holds
//! `max_connections_per_client` connections at most.

use otp_server_blackbox::{Server, StatusCode};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn address(server: &Server) -> String {
    server.base.trim_start_matches("http://").to_string()
}

/// Writes `head`, then one more header line every 200 ms (for at most `limit`), until
/// the server closes the connection; returns how long that took (`None`: never closed).
async fn trickle(address: &str, head: &str, line: &str, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let stream = TcpStream::connect(address).await.expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    let closed = tokio::spawn(async move {
        let mut buf = [0u8; 1024];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return Instant::now(),
                Ok(_) => {} // an answer (408 or 400) before the close
            }
        }
    });
    writer.write_all(head.as_bytes()).await.expect("head");
    while started.elapsed() < limit {
        if closed.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        if writer.write_all(line.as_bytes()).await.is_err() {
            break;
        }
    }
    let at = tokio::time::timeout(Duration::from_secs(2), closed)
        .await
        .ok()?;
    Some(at.expect("the reader") - started)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trickling_its_headers_is_cut_off() {
    let server = Server::builder()
        .default_plugins()
        .env("OTP_HEADER_READ_TIMEOUT_MS", "1000")
        .start();
    let took = trickle(
        &address(&server),
        "POST /api/otp/create HTTP/1.1\r\nhost: test\r\n",
        "x-slow: 1\r\n",
        Duration::from_secs(15),
    )
    .await
    .expect("the connection was never closed");
    assert!(took < Duration::from_secs(10), "closed after {took:?}");
    // Everyone else is served.
    assert_eq!(server.get("/health").await.status.as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trickling_its_body_is_cut_off() {
    let server = Server::builder()
        .default_plugins()
        .env("OTP_BODY_READ_TIMEOUT_MS", "1000")
        .start();
    let took = trickle(
        &address(&server),
        "POST /api/otp/create HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
         content-length: 100000\r\n\r\n\"",
        "a",
        Duration::from_secs(15),
    )
    .await
    .expect("the connection was never closed");
    assert!(took < Duration::from_secs(10), "closed after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let server = Server::builder()
        .default_plugins()
        .env("OTP_MAX_CONNECTIONS", "2")
        // Idle keep-alive connections (the harness's own, if its pool kept one) close
        // after this, so the test cannot depend on the order slots free up in.
        .env("OTP_HEADER_READ_TIMEOUT_MS", "3000")
        .start();
    let address = address(&server);
    let first = TcpStream::connect(&address).await.unwrap();
    let _second = TcpStream::connect(&address).await.unwrap();
    // The third is accepted by the kernel but not served while two are open.
    let mut third = TcpStream::connect(&address).await.unwrap();
    third
        .write_all(b"GET /health HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let early =
        tokio::time::timeout(Duration::from_millis(700), third.read_to_end(&mut answer)).await;
    assert!(early.is_err(), "served beyond the cap: {answer:?}");
    assert!(server
        .wait_for_log("connection limit reached", Duration::from_secs(5))
        .is_some());
    drop(first);
    tokio::time::timeout(Duration::from_secs(10), third.read_to_end(&mut answer))
        .await
        .expect("served once a connection closed")
        .unwrap();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_its_answers_is_cut_off() {
    let server = Server::builder()
        .default_plugins()
        .env("OTP_MAX_CONNECTIONS", "1")
        .env("OTP_WRITE_TIMEOUT_MS", "1000")
        // Idle keep-alive connections (the harness's own, if its pool kept one) close
        // after this, so the test cannot depend on the order slots free up in.
        .env("OTP_HEADER_READ_TIMEOUT_MS", "3000")
        .start();
    let address = address(&server);
    // Pipelined requests, whose answers are never read: the server's writes block once
    // the socket buffers are full, and it stops reading our requests.
    let hog = TcpStream::connect(&address).await.unwrap();
    let (_reader, mut writer) = hog.into_split();
    let requests = b"GET /health HTTP/1.1\r\nhost: test\r\n\r\n".repeat(200_000);
    let writing = tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(30), writer.write_all(&requests)).await;
        writer
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    // With one connection allowed, someone else is served once the hog is cut off.
    let started = Instant::now();
    let mut other = TcpStream::connect(&address).await.unwrap();
    other
        .write_all(b"GET /health HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), other.read_to_end(&mut answer))
        .await
        .expect("served once the client that stopped reading was cut off")
        .unwrap();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(20));
    drop(writing);
}

#[tokio::test]
async fn a_huge_head_answers_431_and_the_server_goes_on() {
    let server = Server::with_defaults();
    for (cookie_bytes, expected) in [(20_000, "HTTP/1.1 200"), (200_000, "HTTP/1.1 431")] {
        let mut stream = TcpStream::connect(address(&server)).await.unwrap();
        let head = format!(
            "GET /health HTTP/1.1\r\nhost: test\r\ncookie: big={}\r\nconnection: close\r\n\r\n",
            "x".repeat(cookie_bytes)
        );
        // The server may answer and close before it has read all of an oversized head.
        let _ = stream.write_all(head.as_bytes()).await;
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with(expected), "{cookie_bytes} bytes: {text}");
    }
    assert_eq!(server.get("/health").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_cannot_hold_more_than_its_connections() {
    let server = Server::builder()
        .default_plugins()
        .env("OTP_MAX_CONNECTIONS_PER_CLIENT", "4")
        .start();
    let address = address(&server);
    // Four keep-alive connections, each answered once so the server has taken them.
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut stream = TcpStream::connect(&address).await.unwrap();
        stream
            .write_all(b"GET /health HTTP/1.1\r\nhost: t\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        while !answer.ends_with(b"OK") {
            let mut buf = [0u8; 512];
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed early");
            answer.extend_from_slice(&buf[..n]);
        }
        held.push(stream);
    }
    // A fifth from the same address is closed at once, unanswered.
    let mut fifth = TcpStream::connect(&address).await.unwrap();
    let _ = fifth
        .write_all(b"GET /health HTTP/1.1\r\nhost: t\r\n\r\n")
        .await;
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), fifth.read(&mut buf))
        .await
        .expect("closed, not left waiting");
    assert!(matches!(read, Ok(0) | Err(_)), "answered: {read:?}");
    assert!(server
        .wait_for_log("reached its connection limit", Duration::from_secs(5))
        .is_some());
    // One closes: its place is free again.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut stream = TcpStream::connect(&address).await.unwrap();
        let _ = stream
            .write_all(b"GET /health HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
            .await;
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        if answer.starts_with(b"HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "the freed place was never given");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
