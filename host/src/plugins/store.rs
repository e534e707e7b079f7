//! The per-call state of a plugin instance: its WASI context, its memory cap, its
//! log output, its `wasi:config` values and its outbound HTTP policy.
//!
//! A fresh [`PluginState`] (and `Store`) is made for every hook call, so nothing a
//! plugin does survives into the next request. The WASI context grants what a
//! `wasm32-wasip2` program needs to run — clocks, random, stdout/stderr — and nothing
//! else: no preopened directories, no environment, no arguments, no sockets. It is
//! built on the call's first WASI import, so a component that imports none (the
//! default plugins, built for `wasm32-unknown-unknown`) never pays for it. What a
//! manifest grants comes on top: its own `[config]` values (never another plugin's,
//! never the host's environment) and `wasi:http` requests to allow-listed destinations
//! (see [`super::outbound`]); without a manifest both are empty.
//!
//! The memory cap holds for the whole call: every linear memory and table of every
//! core instance the component creates (a component may have several) counts against
//! one budget, from its initial size at instantiation to each later growth. What a
//! plugin makes the host keep for it (WASI resources: header sets, streams, requests)
//! lives in host memory, outside that budget, so it has bounds of its own: at most
//! [`MAX_RESOURCES`] resources at once and [`MAX_FIELDS_BYTES`] per header set, and at
//! most a few outbound requests in flight ([`super::outbound::MAX_IN_FLIGHT`]). Stdout and
//! stderr are kept up to a bound and cut with a marker ([`super::output`]); every line
//! that reaches the log is escaped and bounded ([`super::text`]).

use super::epoch::Ticking;
use super::manifest::Manifest;
use super::outbound::OutboundHooks;
use super::output::BoundedOutput;
use super::text::loggable;
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime::ResourceLimiter;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_config::{WasiConfig, WasiConfigVariables};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// At most this much of a call's stdout and stderr each is kept for the log.
const OUTPUT_CAPACITY: usize = 16 * 1024;
/// At most this many log lines are taken from one call (each at most
/// [`super::text::MAX_LOGGED_BYTES`]).
const MAX_LOG_LINES: u32 = 64;
/// At most this many WASI resources live at once in one call (wasmtime's own bound is a
/// million); one more traps the call. A sender making a few requests needs a few dozen.
pub const MAX_RESOURCES: usize = 512;
/// At most this many bytes of names and values in one `wasi:http` header set a plugin
/// builds (wasmtime's default is 128 KiB); a response's head is capped by the outbound
/// client instead (64 KiB).
pub const MAX_FIELDS_BYTES: usize = 32 * 1024;

/// What one table element costs against the memory cap (a pointer, as wasmtime
/// stores it).
const TABLE_ELEMENT_BYTES: usize = std::mem::size_of::<usize>();

pub struct PluginState {
    plugin: Arc<str>,
    /// Built on first use ([`WasiView::ctx`]).
    wasi: Option<WasiCtx>,
    http: WasiHttpCtx,
    outbound: OutboundHooks,
    config: Arc<WasiConfigVariables>,
    table: ResourceTable,
    limits: CallLimits,
    stdout: BoundedOutput,
    stderr: BoundedOutput,
    log_lines: u32,
    /// Log lines dropped past [`MAX_LOG_LINES`].
    log_lines_dropped: u32,
    /// Keeps the epoch advancing, so the call's deadline is enforced, while the store
    /// that owns this state lives.
    _ticking: Ticking,
}

impl PluginState {
    /// State for one call of `plugin`, configured by its manifest, that must end by
    /// `deadline`.
    pub fn new(
        plugin: Arc<str>,
        manifest: &Manifest,
        memory_cap: usize,
        deadline: tokio::time::Instant,
        ticking: Ticking,
    ) -> PluginState {
        PluginState {
            _ticking: ticking,
            outbound: OutboundHooks::new(plugin.clone(), manifest.outbound.clone(), deadline),
            plugin,
            wasi: None,
            http: {
                let mut http = WasiHttpCtx::new();
                http.set_field_size_limit(MAX_FIELDS_BYTES);
                http
            },
            config: manifest.config.clone(),
            table: {
                let mut table = ResourceTable::new();
                table.set_max_capacity(MAX_RESOURCES);
                table
            },
            limits: CallLimits::new(memory_cap),
            stdout: BoundedOutput::new(OUTPUT_CAPACITY),
            stderr: BoundedOutput::new(OUTPUT_CAPACITY),
            log_lines: 0,
            log_lines_dropped: 0,
        }
    }

    pub fn limiter(&mut self) -> &mut dyn ResourceLimiter {
        &mut self.limits
    }

    /// Whether the call was stopped because it asked for more memory than its cap.
    pub fn memory_exceeded(&self) -> bool {
        self.limits.memory_exceeded
    }

    /// Writes one plugin log line into the host's log, tagged with the plugin's name,
    /// escaped and bounded.
    pub fn plugin_log(&mut self, level: tracing::Level, message: &str) {
        if self.log_lines >= MAX_LOG_LINES {
            self.log_lines_dropped = self.log_lines_dropped.saturating_add(1);
            return;
        }
        self.log_lines += 1;
        self.emit(level, Escaped(message.trim_end()));
    }

    /// Logs a line of this plugin ([`crate::logging::plugin`]). The message is formatted
    /// only if the log filter keeps the line, so a plugin's line is escaped ([`Escaped`])
    /// only then.
    fn emit(&self, level: tracing::Level, message: impl std::fmt::Display) {
        crate::logging::plugin(level, &self.plugin, message);
    }

    /// Moves what the plugin wrote to stdout (info) and stderr (warn) into the log, and
    /// says what was cut: output past its bound, lines past [`MAX_LOG_LINES`].
    pub fn flush_output(&mut self) {
        for (pipe, level, name) in [
            (self.stdout.clone(), tracing::Level::INFO, "stdout"),
            (self.stderr.clone(), tracing::Level::WARN, "stderr"),
        ] {
            let (bytes, dropped) = pipe.take();
            for line in String::from_utf8_lossy(&bytes).lines() {
                if !line.trim().is_empty() {
                    self.plugin_log(level, line);
                }
            }
            if dropped > 0 {
                self.emit(
                    tracing::Level::WARN,
                    format_args!("… [output cut: {dropped} bytes dropped from {name}]"),
                );
            }
        }
        if self.log_lines_dropped > 0 {
            let dropped = std::mem::take(&mut self.log_lines_dropped);
            self.emit(
                tracing::Level::WARN,
                format_args!("… [log cut: {dropped} lines dropped]"),
            );
        }
    }
}

/// A plugin's text, shown escaped and bounded ([`loggable`]) when it is formatted.
struct Escaped<'a>(&'a str);

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&loggable(self.0))
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let (stdout, stderr) = (&self.stdout, &self.stderr);
        let ctx = self.wasi.get_or_insert_with(|| {
            WasiCtx::builder()
                .stdout(stdout.clone())
                .stderr(stderr.clone())
                .allow_tcp(false)
                .allow_udp(false)
                .allow_ip_name_lookup(false)
                .build()
        });
        WasiCtxView {
            ctx,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for PluginState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

impl PluginState {
    /// The plugin's own `[config]` values, for `wasi:config/store`.
    pub fn config(&mut self) -> WasiConfig<'_> {
        WasiConfig::from(&*self.config)
    }
}

/// Enforces the per-call memory cap across every memory and table of the call, and
/// remembers whether it was hit, so the log can say "memory cap exceeded" rather than
/// a bare trap.
///
/// wasmtime asks before each allocation: at instantiation with `current = 0` and the
/// initial size, and at every growth. What it asks for is added to the call's total;
/// a request past the cap fails the call. A growth within the cap but beyond a memory's
/// or table's own maximum is refused (the guest sees `-1`) without counting, as wasmtime
/// would refuse it anyway. A growth approved here that the OS then fails stays counted, which
/// only makes the cap stricter.
struct CallLimits {
    cap: usize,
    used: usize,
    memory_exceeded: bool,
}

impl CallLimits {
    fn new(cap: usize) -> CallLimits {
        CallLimits {
            cap,
            used: 0,
            memory_exceeded: false,
        }
    }

    /// Accounts for `bytes` more, or fails the call past the cap. A growth within the cap
    /// but beyond the memory's or table's own `maximum` is refused without counting.
    fn take_unless_beyond(
        &mut self,
        bytes: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = match self.used.checked_add(bytes) {
            Some(total) if total <= self.cap => total,
            _ => {
                self.memory_exceeded = true;
                return Err(wasmtime::format_err!(
                    "memory cap of {} bytes per call exceeded",
                    self.cap
                ));
            }
        };
        if maximum.is_some_and(|max| desired > max) {
            return Ok(false);
        }
        self.used = total;
        Ok(true)
    }
}

impl ResourceLimiter for CallLimits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.take_unless_beyond(desired.saturating_sub(current), desired, maximum)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let bytes = desired
            .saturating_sub(current)
            .saturating_mul(TABLE_ELEMENT_BYTES);
        self.take_unless_beyond(bytes, desired, maximum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1024 * 1024;

    #[test]
    fn the_cap_holds_across_memories() {
        let mut limits = CallLimits::new(16 * MIB);
        // Eight memories of 3 MiB each: each alone is far under the cap, the sum is not.
        for _ in 0..5 {
            assert!(limits.memory_growing(0, 3 * MIB, None).unwrap());
        }
        assert!(limits.memory_growing(0, 3 * MIB, None).is_err());
        assert!(limits.memory_exceeded);
    }

    #[test]
    fn growth_counts_the_difference_and_tables_count_too() {
        let mut limits = CallLimits::new(4 * MIB);
        assert!(limits.memory_growing(0, MIB, None).unwrap());
        assert!(limits.memory_growing(MIB, 3 * MIB, None).unwrap());
        assert_eq!(limits.used, 3 * MIB);
        let elements = MIB / TABLE_ELEMENT_BYTES;
        assert!(limits.table_growing(0, elements, None).unwrap());
        assert!(!limits.memory_exceeded);
        assert!(limits.table_growing(elements, elements + 1, None).is_err());
        assert!(limits.memory_exceeded);
    }

    #[test]
    fn growth_past_a_declared_maximum_is_refused_without_counting() {
        let mut limits = CallLimits::new(4 * MIB);
        assert!(!limits.memory_growing(0, 2 * MIB, Some(MIB)).unwrap());
        assert!(!limits.table_growing(0, 20, Some(10)).unwrap());
        assert_eq!(limits.used, 0);
        assert!(!limits.memory_exceeded);
        // Past the cap as well: the cap is what the call fails on.
        assert!(limits.memory_growing(0, 8 * MIB, Some(6 * MIB)).is_err());
        assert!(limits.memory_exceeded);
    }
}
