//! The per-call state of a plugin instance: its WASI context, its memory cap, its
//! log output, its `wasi:config` values and its outbound HTTP policy.
//!
//! A fresh [`PluginState`] (and `Store`) is made for every hook call, so nothing a
//! plugin does survives into the next request. The WASI context grants what a
//! `wasm32-wasip2` program needs to run — clocks, random, stdout/stderr — and nothing
//! else: no preopened directories, no environment, no arguments, no sockets. What a
//! manifest grants comes on top: its own `[config]` values (never another plugin's,
//! never the host's environment) and `wasi:http` requests to allow-listed destinations
//! (see [`super::outbound`]); without a manifest both are empty.

use super::manifest::Manifest;
use super::outbound::OutboundHooks;
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime::ResourceLimiter;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_config::{WasiConfig, WasiConfigVariables};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// At most this much of a call's stdout and stderr each is kept for the log.
const OUTPUT_CAPACITY: usize = 16 * 1024;
/// Log lines longer than this are cut, so one plugin cannot flood the log.
const MAX_LOG_LINE: usize = 2048;
/// At most this many log lines are taken from one call.
const MAX_LOG_LINES: u32 = 64;

pub struct PluginState {
    plugin: Arc<str>,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    outbound: OutboundHooks,
    config: Arc<WasiConfigVariables>,
    table: ResourceTable,
    limits: CallLimits,
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
    log_lines: u32,
}

impl PluginState {
    /// State for one call of `plugin`, configured by its manifest, that must end by
    /// `deadline`.
    pub fn new(
        plugin: Arc<str>,
        manifest: &Manifest,
        memory_cap: usize,
        deadline: tokio::time::Instant,
    ) -> PluginState {
        let stdout = MemoryOutputPipe::new(OUTPUT_CAPACITY);
        let stderr = MemoryOutputPipe::new(OUTPUT_CAPACITY);
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        PluginState {
            outbound: OutboundHooks::new(plugin.clone(), manifest.outbound.clone(), deadline),
            plugin,
            wasi,
            http: WasiHttpCtx::new(),
            config: manifest.config.clone(),
            table: ResourceTable::new(),
            limits: CallLimits {
                memory_cap,
                memory_exceeded: false,
            },
            stdout,
            stderr,
            log_lines: 0,
        }
    }

    pub fn limiter(&mut self) -> &mut dyn ResourceLimiter {
        &mut self.limits
    }

    /// Whether the call was stopped because it asked for more memory than its cap.
    pub fn memory_exceeded(&self) -> bool {
        self.limits.memory_exceeded
    }

    /// Writes one plugin log line into the host's log, tagged with the plugin's name.
    pub fn plugin_log(&mut self, level: tracing::Level, message: &str) {
        if self.log_lines >= MAX_LOG_LINES {
            return;
        }
        self.log_lines += 1;
        let message = truncate(message.trim_end(), MAX_LOG_LINE);
        let plugin = &*self.plugin;
        match level {
            tracing::Level::TRACE => tracing::trace!(target: "plugin", plugin, "{message}"),
            tracing::Level::DEBUG => tracing::debug!(target: "plugin", plugin, "{message}"),
            tracing::Level::INFO => tracing::info!(target: "plugin", plugin, "{message}"),
            tracing::Level::WARN => tracing::warn!(target: "plugin", plugin, "{message}"),
            tracing::Level::ERROR => tracing::error!(target: "plugin", plugin, "{message}"),
        }
    }

    /// Moves what the plugin wrote to stdout (info) and stderr (warn) into the log.
    pub fn flush_output(&mut self) {
        for (pipe, level) in [
            (self.stdout.clone(), tracing::Level::INFO),
            (self.stderr.clone(), tracing::Level::WARN),
        ] {
            let bytes = pipe.contents();
            for line in String::from_utf8_lossy(&bytes).lines() {
                if !line.trim().is_empty() {
                    self.plugin_log(level, line);
                }
            }
        }
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
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

/// Enforces the per-call memory cap and remembers whether it was hit, so the log can
/// say "memory cap exceeded" rather than a bare trap.
struct CallLimits {
    memory_cap: usize,
    memory_exceeded: bool,
}

impl ResourceLimiter for CallLimits {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_cap {
            self.memory_exceeded = true;
            return Err(wasmtime::format_err!(
                "memory cap of {} bytes exceeded",
                self.memory_cap
            ));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}
