//! Where log lines go: stderr, written in batches by a thread of their own.
//!
//! With the access log on, every request writes a line. Writing each line to stderr as it
//! is made costs the request a `write` system call under a lock (and, when stderr is a
//! pipe whose reader is slow, a wait). Here a line is appended to a shared buffer instead,
//! and a writer thread hands the buffer to stderr every few milliseconds (at once when it
//! passes [`FLUSH_AT`]): one system call per batch, none on the request path. A line
//! never waits: when the buffer already holds [`MAX_BUFFERED`] bytes (stderr blocked)
//! lines are dropped and counted, and the count is written once stderr drains.
//! [`flush`] writes what is buffered, for the last lines before the process exits.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;
use tracing_subscriber::fmt::MakeWriter;

/// The writer thread wakes at least this often.
const INTERVAL: Duration = Duration::from_millis(5);
/// A buffer this full is written at once.
const FLUSH_AT: usize = 64 * 1024;
/// Lines beyond this many buffered bytes are dropped.
const MAX_BUFFERED: usize = 8 * 1024 * 1024;

#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    dropped: u64,
}

struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
    /// Held while a batch is written, so [`flush`] returns after it is out.
    writing: Mutex<()>,
}

impl Shared {
    /// Takes what is pending and writes it to stderr.
    fn write_pending(&self) {
        let _writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        let (bytes, dropped) = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            (
                std::mem::take(&mut pending.bytes),
                std::mem::take(&mut pending.dropped),
            )
        };
        let mut stderr = std::io::stderr().lock();
        let _ = stderr.write_all(&bytes);
        if dropped > 0 {
            let _ = writeln!(
                stderr,
                "otp-server: {dropped} log lines dropped: stderr did not keep up"
            );
        }
        let _ = stderr.flush();
    }
}

static SHARED: OnceLock<Arc<Shared>> = OnceLock::new();

/// The process's batched stderr (its writer thread starts on first use).
#[derive(Clone)]
pub struct BatchedStderr(Arc<Shared>);

impl BatchedStderr {
    pub fn get() -> BatchedStderr {
        let shared = SHARED.get_or_init(|| {
            let shared = Arc::new(Shared {
                pending: Mutex::new(Pending::default()),
                wake: Condvar::new(),
                writing: Mutex::new(()),
            });
            let worker = shared.clone();
            std::thread::Builder::new()
                .name("log-writer".into())
                .spawn(move || loop {
                    {
                        let pending = worker.pending.lock().unwrap_or_else(|e| e.into_inner());
                        let _ = worker
                            .wake
                            .wait_timeout_while(pending, INTERVAL, |p| p.bytes.len() < FLUSH_AT)
                            .unwrap_or_else(|e| e.into_inner());
                    }
                    worker.write_pending();
                })
                .expect("starting the log writer thread");
            shared
        });
        BatchedStderr(shared.clone())
    }
}

impl Write for BatchedStderr {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let mut pending = self.0.pending.lock().unwrap_or_else(|e| e.into_inner());
        if pending.bytes.len() + line.len() > MAX_BUFFERED {
            pending.dropped += 1;
        } else {
            pending.bytes.extend_from_slice(line);
            if pending.bytes.len() >= FLUSH_AT {
                self.0.wake.notify_one();
            }
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchedStderr {
    type Writer = BatchedStderr;

    fn make_writer(&'a self) -> BatchedStderr {
        self.clone()
    }
}

/// Writes every buffered line now (before the process exits).
pub fn flush() {
    if let Some(shared) = SHARED.get() {
        shared.write_pending();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_buffered_whole_and_a_full_buffer_drops_instead_of_waiting() {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            writing: Mutex::new(()),
        });
        let mut writer = BatchedStderr(shared.clone());
        writer.write_all(b"one line\n").unwrap();
        writer.write_all(b"another\n").unwrap();
        assert_eq!(shared.pending.lock().unwrap().bytes, b"one line\nanother\n");
        let big = vec![b'x'; MAX_BUFFERED];
        writer.write_all(&big).unwrap();
        let pending = shared.pending.lock().unwrap();
        assert_eq!(pending.dropped, 1);
        assert_eq!(pending.bytes.len(), 17);
    }
}
