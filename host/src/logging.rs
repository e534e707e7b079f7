//! Where log lines go: stderr, written in batches by a thread of their own — the `tracing`
//! log ([`init`]) and the access log ([`access`]).
//!
//! With the access log on, every request writes a line. Writing each line to stderr as it
//! is made costs the request a `write` system call under a lock (and, when stderr is a
//! pipe whose reader is slow, a wait). Here a line is appended to a shared buffer instead,
//! and a writer thread hands the buffer to stderr a few milliseconds after a batch's first
//! line (at once when it passes [`FLUSH_AT`]): one system call per batch, and none on the
//! request path but waking the writer for a batch's first line (an idle server's writer
//! sleeps). A line never waits: when the buffer already holds [`MAX_BUFFERED`] bytes
//! (stderr blocked) lines are dropped and counted, and the count is written once stderr
//! drains.
//! [`flush`] writes what is buffered, for the last lines before the process exits.
//! [`LogThrottle`] keeps a warning that a flood can trigger (connections over a cap,
//! refused admin tokens) to one line per interval, with a count.
//!
//! Lines are stamped by [`MillisecondTime`]: RFC 3339 UTC with milliseconds, formatted once
//! per millisecond and thread rather than once per line.
//!
//! The access log is one line per request, so it is written by [`access`] directly rather
//! than through `tracing`'s formatter (which costs a request several times more): the same
//! layout as a `tracing` line of target `otp_server::access` inside the `request` span, in
//! text or JSON after `log_format`, and only when the log filter enables that target at
//! `info`. A plugin's log lines (the dev sender writes one per code) are written directly
//! in the text format too ([`plugin`]), inside whatever spans are current.

use crate::clock::{Clock, SystemClock};
use crate::config::LogFormat;
use std::cell::RefCell;
use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::MakeWriter;

/// How long the writer gathers lines after a batch's first before writing them.
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

impl Pending {
    /// Nothing to write: the writer sleeps until this changes.
    fn is_empty(&self) -> bool {
        self.bytes.is_empty() && self.dropped == 0
    }
}

struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
    /// Held while a batch is written, so [`flush`] returns after it is out.
    writing: Mutex<()>,
}

impl Shared {
    /// Adds a whole line to what is pending, or counts it as dropped when the buffer is
    /// full; never waits for stderr.
    fn append(&self, line: &[u8]) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        // The writer sleeps until there is something to write (a line, or a count of
        // dropped ones), then gathers for up to [`INTERVAL`] or until [`FLUSH_AT`].
        let first = pending.is_empty();
        let full = if pending.bytes.len() + line.len() > MAX_BUFFERED {
            pending.dropped += 1;
            false
        } else {
            pending.bytes.extend_from_slice(line);
            pending.bytes.len() >= FLUSH_AT
        };
        if first || full {
            self.wake.notify_one();
        }
    }

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
        BatchedStderr(SHARED.get_or_init(start_writer).clone())
    }
}

/// The shared buffer, and the thread that writes it out.
fn start_writer() -> Arc<Shared> {
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
                // Nothing to write: no timed wake-ups while the server is idle.
                let pending = worker
                    .wake
                    .wait_while(pending, |p| p.is_empty())
                    .unwrap_or_else(|e| e.into_inner());
                let _ = worker
                    .wake
                    .wait_timeout_while(pending, INTERVAL, |p| p.bytes.len() < FLUSH_AT)
                    .unwrap_or_else(|e| e.into_inner());
            }
            worker.write_pending();
        })
        .expect("starting the log writer thread");
    shared
}

impl Write for BatchedStderr {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        self.0.append(line);
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

/// Sends `tracing` output to stderr in batches, filtered by `filter` (an `EnvFilter`
/// directive: `OTP_LOG` / `log`), as text or one JSON object per line; span fields such as
/// `request_id` are on every line either way. Call once, before anything logs.
pub fn init(filter: &str, format: LogFormat) {
    // The configuration refused a filter that does not parse.
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(BatchedStderr::get())
        .with_timer(MillisecondTime)
        .with_ansi(false);
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    if installed.is_ok() {
        let _ = FORMAT.set(format);
    }
}

/// The format of the subscriber [`init`] installed; unset while another (or none) is.
static FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// One request, as the access log records it. Never the cookie, the body or the raw path.
pub struct AccessLine<'a> {
    pub method: &'a str,
    /// The route template (`/api/otp/create`), or `unmatched`.
    pub route: &'a str,
    pub status: u16,
    pub duration: Duration,
    pub request_id: &'a str,
    /// The trace id of a valid `traceparent`.
    pub trace_id: Option<&'a str>,
}

thread_local! {
    static LINE: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Writes the access-log line of a request, if the log filter enables target
/// `otp_server::access` at `info`.
pub fn access(line: &AccessLine<'_>) {
    // Asked as the event it stands for, fields included: a filter directive on field
    // names applies to events only.
    if !tracing::enabled!(
        kind: tracing::metadata::Kind::EVENT,
        target: "otp_server::access",
        tracing::Level::INFO,
        { message, method, route, status, duration_us }
    ) {
        return;
    }
    let format = FORMAT.get().copied().unwrap_or(LogFormat::Text);
    LINE.with(|buffer| {
        let mut text = buffer.borrow_mut();
        text.clear();
        with_timestamp(|time| format_access(&mut text, line, format, time));
        let shared = SHARED.get_or_init(start_writer);
        shared.append(text.as_bytes());
    });
}

/// Logs a line of `plugin` at `level`, if the log filter keeps it: written directly in the
/// text format ([`plugin_line`]: `tracing`'s formatter cost a create about 2 µs for the
/// dev sender's line), through `tracing` otherwise ([`plugin_event`]). `message` is
/// formatted only if the line is kept.
pub fn plugin(level: tracing::Level, plugin: &str, message: impl std::fmt::Display) {
    use tracing::metadata::Kind;
    use tracing::{enabled, Level};
    // Asked as the event of `plugin_event`, fields included: a filter directive on field
    // names (`[{plugin}]=debug`) applies to events only.
    let enabled = match level {
        Level::TRACE => {
            enabled!(kind: Kind::EVENT, target: "plugin", Level::TRACE, { message, plugin })
        }
        Level::DEBUG => {
            enabled!(kind: Kind::EVENT, target: "plugin", Level::DEBUG, { message, plugin })
        }
        Level::INFO => {
            enabled!(kind: Kind::EVENT, target: "plugin", Level::INFO, { message, plugin })
        }
        Level::WARN => {
            enabled!(kind: Kind::EVENT, target: "plugin", Level::WARN, { message, plugin })
        }
        Level::ERROR => {
            enabled!(kind: Kind::EVENT, target: "plugin", Level::ERROR, { message, plugin })
        }
    };
    if enabled && !plugin_line(level, plugin, &message) {
        plugin_event(level, plugin, &message);
    }
}

/// A plugin's log line as a `tracing` event.
fn plugin_event(level: tracing::Level, plugin: &str, message: &dyn std::fmt::Display) {
    use tracing::Level;
    match level {
        Level::TRACE => tracing::trace!(target: "plugin", plugin, "{message}"),
        Level::DEBUG => tracing::debug!(target: "plugin", plugin, "{message}"),
        Level::INFO => tracing::info!(target: "plugin", plugin, "{message}"),
        Level::WARN => tracing::warn!(target: "plugin", plugin, "{message}"),
        Level::ERROR => tracing::error!(target: "plugin", plugin, "{message}"),
    }
}

/// Writes a plugin's log line, laid out as `tracing` lays out [`plugin_event`]'s event in
/// the text format inside the current spans; the caller has checked that the log filter
/// enables it. Returns `false`, having written nothing, when the line must go through
/// `tracing` instead: the JSON format, or a current span that the subscriber of [`init`]
/// does not hold.
fn plugin_line(level: tracing::Level, plugin: &str, message: &dyn std::fmt::Display) -> bool {
    if FORMAT.get() != Some(&LogFormat::Text) {
        return false;
    }
    LINE.with(|buffer| {
        // Busy only if formatting `message` logged a plugin line itself: let `tracing` have it.
        let Ok(mut text) = buffer.try_borrow_mut() else {
            return false;
        };
        text.clear();
        if !with_timestamp(|time| format_plugin(&mut text, level, plugin, message, time)) {
            return false;
        }
        SHARED.get_or_init(start_writer).append(text.as_bytes());
        true
    })
}

/// The line of [`plugin_line`], newline included, or `false` if the current span is not
/// in a [`tracing_subscriber::Registry`].
fn format_plugin(
    out: &mut String,
    level: tracing::Level,
    plugin: &str,
    message: &dyn std::fmt::Display,
    time: &str,
) -> bool {
    use std::fmt::Write as _;
    use tracing_subscriber::fmt::format::DefaultFields;
    use tracing_subscriber::fmt::FormattedFields;
    use tracing_subscriber::registry::LookupSpan;
    out.push_str(time);
    out.push_str(match level {
        tracing::Level::TRACE => " TRACE ",
        tracing::Level::DEBUG => " DEBUG ",
        tracing::Level::INFO => "  INFO ",
        tracing::Level::WARN => "  WARN ",
        tracing::Level::ERROR => " ERROR ",
    });
    // The spans as `tracing` writes them: `name{fields}:` from the root, then a space.
    let spans = tracing::Span::current().with_subscriber(|(id, dispatch)| {
        let Some(span) = dispatch
            .downcast_ref::<tracing_subscriber::Registry>()
            .and_then(|registry| registry.span(id))
        else {
            return false;
        };
        for span in span.scope().from_root() {
            out.push_str(span.name());
            if let Some(fields) = span.extensions().get::<FormattedFields<DefaultFields>>() {
                if !fields.is_empty() {
                    out.push('{');
                    out.push_str(fields);
                    out.push('}');
                }
            }
            out.push(':');
        }
        out.push(' ');
        true
    });
    if spans == Some(false) {
        return false;
    }
    let _ = writeln!(out, "plugin: {message} plugin={plugin:?}");
    true
}

/// Runs `f` with the current time as RFC 3339 text (the format of the times in answers),
/// formatted once per millisecond and thread.
fn with_timestamp<R>(f: impl FnOnce(&str) -> R) -> R {
    let now = SystemClock.now_ms();
    STAMP.with(|stamp| {
        let mut stamp = stamp.borrow_mut();
        if stamp.0 != now {
            *stamp = (now, crate::protocol::iso8601_ms(now));
        }
        f(&stamp.1)
    })
}

/// The access-log line, newline included, laid out as `tracing` lays out an event of
/// target `otp_server::access` with message `request` inside the `request` span.
fn format_access(out: &mut String, line: &AccessLine<'_>, format: LogFormat, time: &str) {
    use std::fmt::Write as _;
    let duration_us = line.duration.as_micros() as u64;
    match format {
        LogFormat::Text => {
            // Pieces pushed one by one: `core::fmt` would cost the request more than the
            // rest of the line together.
            for piece in [time, "  INFO request{request_id=", line.request_id] {
                out.push_str(piece);
            }
            if let Some(trace) = line.trace_id {
                out.push_str(" trace_id=");
                out.push_str(trace);
            }
            for piece in [
                "}: otp_server::access: request method=",
                line.method,
                " route=",
                line.route,
                " status=",
            ] {
                out.push_str(piece);
            }
            push_decimal(out, u64::from(line.status));
            out.push_str(" duration_us=");
            push_decimal(out, duration_us);
            out.push('\n');
        }
        LogFormat::Json => {
            let mut span = serde_json::json!({ "request_id": line.request_id, "name": "request" });
            if let Some(trace) = line.trace_id {
                span["trace_id"] = trace.into();
            }
            let event = serde_json::json!({
                "timestamp": time,
                "level": "INFO",
                "fields": {
                    "message": "request",
                    "method": line.method,
                    "route": line.route,
                    "status": line.status,
                    "duration_us": duration_us,
                },
                "target": "otp_server::access",
                "span": span,
                "spans": [span],
            });
            let _ = writeln!(out, "{event}");
        }
    }
}

/// Appends `n` in decimal.
fn push_decimal(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[at..] {
        out.push(char::from(d));
    }
}

/// Log timestamps: RFC 3339 UTC with milliseconds, the text cached per thread for the
/// millisecond it names (at many lines a second, most lines reuse it).
pub struct MillisecondTime;

thread_local! {
    static STAMP: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

impl FormatTime for MillisecondTime {
    fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
        with_timestamp(|time| w.write_str(time))
    }
}

/// Writes every buffered line now (before the process exits).
pub fn flush() {
    if let Some(shared) = SHARED.get() {
        shared.write_pending();
    }
}

/// Counts events of one kind and says, at most once per interval, how many happened
/// since it last said, so a flood of them cannot flood the log as well (a connection
/// flood, a guessed admin token). Shared freely: it is two atomics.
pub struct LogThrottle {
    interval_ms: u64,
    since_said: std::sync::atomic::AtomicU64,
    /// When it last said, in ms since [`monotonic_ms`]'s start, plus one (0: never).
    said_at: std::sync::atomic::AtomicU64,
}

impl LogThrottle {
    pub const fn new(interval: Duration) -> LogThrottle {
        LogThrottle {
            interval_ms: interval.as_millis() as u64,
            since_said: std::sync::atomic::AtomicU64::new(0),
            said_at: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Counts one event; `Some(count)` when it is time to log them.
    pub fn count(&self) -> Option<u64> {
        self.count_at(monotonic_ms())
    }

    fn count_at(&self, now_ms: u64) -> Option<u64> {
        use std::sync::atomic::Ordering::Relaxed;
        let counted = self.since_said.fetch_add(1, Relaxed) + 1;
        let last = self.said_at.load(Relaxed);
        let now = now_ms.saturating_add(1);
        if last != 0 && now < last.saturating_add(self.interval_ms) {
            return None;
        }
        // One caller says; the others' events count towards the next time.
        self.said_at
            .compare_exchange(last, now, Relaxed, Relaxed)
            .ok()?;
        self.since_said.fetch_sub(counted, Relaxed);
        Some(counted)
    }
}

/// Milliseconds on a monotonic clock that starts at the first call.
fn monotonic_ms() -> u64 {
    static START: OnceLock<std::time::Instant> = OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_logged_once_an_interval_with_its_count() {
        let once = LogThrottle::new(Duration::from_secs(60));
        assert_eq!(once.count_at(1_000), Some(1));
        for _ in 0..99 {
            assert_eq!(once.count_at(1_000), None);
        }
        assert_eq!(once.count_at(62_000), Some(100));
    }

    #[test]
    fn access_lines_are_laid_out_like_tracing_lines() {
        let line = AccessLine {
            method: "POST",
            route: "/api/otp/create",
            status: 200,
            duration: Duration::from_micros(1234),
            request_id: "abc\"def",
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736"),
        };
        let mut text = String::new();
        format_access(
            &mut text,
            &line,
            LogFormat::Text,
            "2026-12-03T11:59:59.999Z",
        );
        assert_eq!(
            text,
            "2026-12-03T11:59:59.999Z  INFO request{request_id=abc\"def trace_id=4bf92f3577b34da6a3ce929d0e0e4736}: \
             otp_server::access: request method=POST route=/api/otp/create status=200 duration_us=1234\n"
        );
        let mut json = String::new();
        format_access(
            &mut json,
            &line,
            LogFormat::Json,
            "2026-12-03T11:59:59.999Z",
        );
        assert!(json.ends_with('\n') && json.matches('\n').count() == 1);
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["fields"]["status"], 200);
        assert_eq!(value["fields"]["route"], "/api/otp/create");
        assert_eq!(
            value["span"]["request_id"], "abc\"def",
            "escaped, not broken"
        );
        assert_eq!(value["target"], "otp_server::access");
        for n in [0, 7, 10, 403, 18_446_744_073_709_551_615] {
            let mut text = String::new();
            push_decimal(&mut text, n);
            assert_eq!(text, n.to_string());
        }
    }

    /// The direct plugin line against `tracing`'s own, for every level, outside any span,
    /// in the `request` span and in a span inside it.
    #[test]
    fn plugin_lines_are_laid_out_like_tracing_lines() {
        use tracing::Level;

        #[derive(Clone, Default)]
        struct Capture(Arc<Mutex<Vec<u8>>>);
        impl Write for Capture {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        impl<'a> MakeWriter<'a> for Capture {
            type Writer = Capture;
            fn make_writer(&'a self) -> Capture {
                self.clone()
            }
        }
        struct FixedTime;
        impl FormatTime for FixedTime {
            fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
                w.write_str(TIME)
            }
        }
        const TIME: &str = "2026-12-03T11:59:59.999Z";

        let capture = Capture::default();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
            .with_writer(capture.clone())
            .with_timer(FixedTime)
            .with_ansi(false)
            .finish();
        // As the plugin runtime hands it over: control characters already escaped.
        let message = r#"OTP for "bob" \ via … \u{1b}[31m\u{85}\n"#;
        let mut ours = String::new();
        let both = |ours: &mut String| {
            for level in [
                Level::TRACE,
                Level::DEBUG,
                Level::INFO,
                Level::WARN,
                Level::ERROR,
            ] {
                plugin_event(level, "dev-sender", &message);
                assert!(format_plugin(ours, level, "dev-sender", &message, TIME));
            }
        };
        tracing::subscriber::with_default(subscriber, || {
            both(&mut ours);
            let request = tracing::info_span!(
                "request",
                request_id = %"abc\"def",
                trace_id = %"4bf92f3577b34da6a3ce929d0e0e4736"
            );
            let _request = request.enter();
            both(&mut ours);
            let call = tracing::info_span!("call");
            let _call = call.enter();
            both(&mut ours);
        });
        let theirs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
        assert_eq!(ours.lines().count(), 15, "{ours}");
        assert!(ours.contains("}:call: plugin: "), "{ours}");
        assert_eq!(ours, theirs);
    }

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
