//! A plugin call's stdout or stderr: the first bytes are kept for the log, the rest is
//! counted and dropped — never an error.
//!
//! wasmtime-wasi's `MemoryOutputPipe` fails a write that does not fit, which traps the
//! call: a validator that echoes a large body would fail the request just for being
//! chatty. [`BoundedOutput`] instead accepts every write, keeps up to its capacity and
//! counts the rest, so the call goes on and the log can say how much was cut.

use bytes::Bytes;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// How much a guest may write in one go; the stream is always ready for that much.
const WRITE_PERMIT: usize = 64 * 1024;

/// An output stream that keeps its first `capacity` bytes. Clones share the buffer.
#[derive(Clone)]
pub struct BoundedOutput {
    capacity: usize,
    inner: Arc<Mutex<Captured>>,
}

#[derive(Default)]
struct Captured {
    kept: Vec<u8>,
    dropped: u64,
}

impl BoundedOutput {
    pub fn new(capacity: usize) -> BoundedOutput {
        BoundedOutput {
            capacity,
            inner: Arc::default(),
        }
    }

    /// Keeps what fits, counts the rest.
    fn accept(&self, bytes: &[u8]) {
        let mut captured = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let room = self.capacity.saturating_sub(captured.kept.len());
        let kept = bytes.len().min(room);
        captured.kept.extend_from_slice(&bytes[..kept]);
        captured.dropped += (bytes.len() - kept) as u64;
    }

    /// The kept bytes and how many were dropped, leaving the stream empty.
    pub fn take(&self) -> (Vec<u8>, u64) {
        let mut captured = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let dropped = std::mem::take(&mut captured.dropped);
        (std::mem::take(&mut captured.kept), dropped)
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for BoundedOutput {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.accept(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(WRITE_PERMIT)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for BoundedOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for BoundedOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.accept(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for BoundedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for BoundedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_first_bytes_and_counts_the_rest() {
        let out = BoundedOutput::new(8);
        let mut stream = out.p2_stream();
        for chunk in [&b"hello "[..], b"world", b"!!!"] {
            assert!(stream.check_write().unwrap() > 0, "always ready");
            stream.write(Bytes::copy_from_slice(chunk)).unwrap();
        }
        stream.flush().unwrap();
        assert_eq!(out.take(), (b"hello wo".to_vec(), 6));
        assert_eq!(out.take(), (Vec::new(), 0), "taking empties it");
    }

    #[tokio::test]
    async fn the_async_side_accepts_everything_too() {
        use tokio::io::AsyncWriteExt;
        let out = BoundedOutput::new(4);
        let mut w = Pin::from(out.async_stream());
        w.write_all(b"abcdefgh").await.unwrap();
        assert_eq!(out.take(), (b"abcd".to_vec(), 4));
    }
}
