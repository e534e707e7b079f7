//! The plugin platform: hooks as WebAssembly components.
//!
//! - [`hooks`]: the host's own hook types and the [`Hooks`] trait the service calls,
//!   independent of any WIT version.
//! - [`versions`]: the supported contract versions behind one enum, detected from a
//!   component's exports; [`v0_1_0`] and [`v0_2_0`] hold each version's bindings and
//!   conversions (one module per released WIT version, kept forever).
//! - [`manifest`]: `NAME.toml` — outbound allow-list, config and secrets, hooks and
//!   channels served, limit overrides.
//! - [`allow`]: the allow-list matcher and the special-address classifier.
//! - [`outbound`]: `wasi:http` requests, deny by default (resolve, check, connect).
//! - [`store`]: the per-call state — WASI context, memory cap, log capture, config.
//! - [`output`]: a call's stdout and stderr, kept up to a bound and never an error.
//! - [`text`]: plugin-provided text escaped and bounded before it reaches the log.
//! - [`runtime`]: the engine, compiling plugins, and running a call under limits and
//!   per-hook concurrency budgets.
//! - [`epoch`]: the clock that interrupts guest code, ticking only while a call runs.
//! - [`load`]: making a plugin from `NAME.wasm` and `NAME.toml` — the one loading path
//!   of the server and of `plugins check`.
//! - [`registry`]: the loaded plugins and which one serves each hook.
//! - [`watcher`]: hot reload of the plugins folder.
//! - [`check`]: `otp-server plugins check`, a plugin author's pre-flight.

pub mod allow;
pub mod check;
pub mod epoch;
pub mod hooks;
pub mod load;
pub mod manifest;
pub mod outbound;
pub mod output;
pub mod registry;
pub mod runtime;
pub mod store;
pub mod text;
pub mod v0_1_0;
pub mod v0_2_0;
pub mod versions;
pub mod watcher;

pub use hooks::{
    AuditEvent, CodeDelivery, Credential, FinalAction, Hook, HookError, Hooks, PluginResponse,
    RequestContext, SendFailure, SendKind, Sent,
};
pub use manifest::{Manifest, ManifestError, PluginEnv};
pub use registry::{HookChoices, PluginRegistry, RegistryState, SenderChain};
pub use runtime::{HookLimits, LoadError, LoadedPlugin, PluginRuntime, RuntimeOptions};
pub use versions::ContractVersion;
pub use watcher::PluginWatcher;
