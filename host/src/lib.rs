//! otp-server: one-time passwords over envelope-encrypted cookie sessions, with hooks
//! that are WebAssembly components.
//!
//! The crate is a functional core with thin shells around it:
//! - [`protocol`]: the OTP session protocol as a pure state machine.
//! - [`crypto`]: sealing session contents into cookies (AES-256-GCM data keys wrapped
//!   by AES-256-KW key-encryption keys).
//! - [`store`]: single-use session ids.
//! - [`plugins`]: the WebAssembly hook platform (wasmtime), with hot reload.
//! - [`events`]: audit events, queued off the request path for the `events` hook.
//! - [`limits`]: abuse controls — send and guess budgets, the fraud guard, their stores.
//! - [`metrics`]: the Prometheus metrics, recorded only while the admin listener is on.
//! - [`service`]: the shell that runs one request through the above.
//! - [`http`]: routes, middleware and the mapping of errors to HTTP.
//! - [`config`], [`server`], [`clock`]: configuration, assembly, time.
//! - [`logging`]: log lines to stderr in batches, off the request path.
//! - [`key_commands`]: `otp-server keys rotate|rewrap`, on the shared key store.
//! - [`os_random`]: per-request random bytes from the OS CSPRNG, fetched in batches.
//! - [`toml_error`]: TOML errors (configuration file, manifests) that never quote a value.

pub mod clock;
pub mod config;
pub mod crypto;
pub mod events;
pub mod http;
pub mod key_commands;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod os_random;
pub mod plugins;
pub mod protocol;
pub mod server;
pub mod service;
pub mod store;
pub mod toml_error;

/// A fresh folder for one unit test's files, under the system's temporary folder; each
/// test removes it when it passes.
#[cfg(test)]
fn test_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("otp-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
