//! Write otp-server plugins in Rust.
//!
//! otp-server runs four hooks, each as a WebAssembly component (a *plugin*) that follows
//! the contract in `wit/v0.2.0/plugin.wit` (package `otp:plugin@0.2.0`; plugins built for
//! 0.1.0 keep working in the server, but this SDK builds 0.2.0 ones):
//!
//! | hook | trait | export macro | called on |
//! |---|---|---|---|
//! | credential validation | [`CredentialValidator`] | [`export_credential_validator!`] | `POST /api/otp/create` |
//! | sending | [`Sender`] | [`export_sender!`] | create and resend |
//! | final action | [`FinalAction`] | [`export_final_action!`] | a successful `POST /api/otp/verify` |
//! | audit events | [`EventSink`] | [`export_event_sink!`] | batches of events, off the request path |
//!
//! Implement the trait of each hook your plugin serves and invoke the matching export macro
//! once. The component then exports exactly those hooks — the server detects a plugin's roles
//! from its exports — so one plugin may serve a single hook or several. [`log`] writes
//! levelled lines to the server log, [`config`] reads the plugin's `[config]` values from its
//! manifest, [`http`] sends requests to the destinations its manifest allows, and [`random`]
//! gives secure random bytes.
//!
//! Every call runs on a fresh instance: statics do not survive from one call to the next.
//! A panic traps the instance and the request fails with `PLUGIN:FAILED`.
//!
//! # Example
//!
//! `Cargo.toml`:
//!
//! ```toml
//! [package]
//! name = "lowercase-validator"
//! version = "0.1.0"
//! edition = "2021"
//!
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! otp-plugin-sdk = { path = "../guest-sdk" }
//! ```
//!
//! `src/lib.rs`:
//!
//! ```no_run
//! use otp_plugin_sdk::{
//!     log, Credential, CredentialValidator, Message, RequestContext, SendError, Sender,
//! };
//!
//! struct Plugin;
//!
//! impl CredentialValidator for Plugin {
//!     fn validate(body: &str, _ctx: &RequestContext) -> Result<Credential, String> {
//!         // The body is the raw JSON text of the create request; here a JSON string.
//!         let name = body.trim().trim_matches('"').to_lowercase();
//!         if name.is_empty() {
//!             return Err("empty name".to_string());
//!         }
//!         Ok(Credential::new(name, "default"))
//!     }
//! }
//!
//! impl Sender for Plugin {
//!     fn send(msg: &Message, _ctx: &RequestContext) -> Result<(), SendError> {
//!         if msg.credential_id == "nobody" {
//!             return Err(SendError::Undeliverable("nobody has no mailbox".to_string()));
//!         }
//!         log::info(&format!("would deliver a code to {}", msg.credential_id));
//!         Ok(())
//!     }
//! }
//!
//! otp_plugin_sdk::export_credential_validator!(Plugin);
//! otp_plugin_sdk::export_sender!(Plugin);
//! # fn main() {}
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2`; the `.wasm` file in
//! `target/wasm32-wasip2/release/` is a component ready to drop into the server's plugins
//! folder. A plugin that needs nothing of WASI (no `println!`, `std::env`, clocks or
//! files; [`log`], [`config`], [`http`] and [`random`] work on both) can be built for
//! `wasm32-unknown-unknown` with `wasm-component-ld` as its linker: its component imports
//! no WASI and a call costs 15–28 % less (`plugins/README.md`, "Import nothing you do
//! not use"). On that target the SDK sets the global allocator (feature `allocator`, on
//! by default). Plugins in other languages target the WIT directly: it is the only
//! contract.

#![warn(missing_docs)]

pub mod config;
#[cfg(all(target_arch = "wasm32", target_os = "unknown", feature = "allocator"))]
mod heap;
pub mod http;
pub mod log;
pub mod random;
mod types;

#[doc(hidden)]
#[path = "bindings.rs"]
pub mod __private;

pub use types::{
    AuditEvent, Credential, HttpResponse, Message, RequestContext, SendError, SendKind,
};

/// Hook 1: credential validation, called on `POST /api/otp/create`.
///
/// Export an implementation with [`export_credential_validator!`].
pub trait CredentialValidator {
    /// Validates the raw JSON body of a create request.
    ///
    /// `body` is the request body exactly as received; the server has already checked that it
    /// is well-formed JSON. Return the canonical credential and its delivery channel, or a
    /// reason to reject it: the client then sees 400 `CREDENTIAL:INVALID` and the reason goes
    /// to the server log only.
    fn validate(body: &str, ctx: &RequestContext) -> Result<Credential, String>;
}

/// Hook 2: sending the code, called on create and on resend.
///
/// Export an implementation with [`export_sender!`].
pub trait Sender {
    /// Delivers `msg.code` to `msg.credential_id` over `msg.channel`.
    ///
    /// See [`SendError`] for how each failure is reported to the client.
    fn send(msg: &Message, ctx: &RequestContext) -> Result<(), SendError>;
}

/// Hook 3: the final action, called after a successful `POST /api/otp/verify`.
///
/// Export an implementation with [`export_final_action!`].
pub trait FinalAction {
    /// Builds the HTTP response for a credential that was just verified.
    ///
    /// An `Err` makes the client see 500 `PLUGIN:FAILED`; the message goes to the server log.
    fn complete(
        credential_id: &str,
        channel: &str,
        ctx: &RequestContext,
    ) -> Result<HttpResponse, String>;
}

/// Hook 4: the audit sink, handed batches of events off the request path.
///
/// Export an implementation with [`export_event_sink!`].
pub trait EventSink {
    /// Receives a batch of events, oldest first. An `Err` loses the batch (the server logs
    /// the message and counts the events as failed); the next batch comes after a short
    /// pause that grows while failures continue (up to 5 s).
    fn deliver(batch: &[AuditEvent]) -> Result<(), String>;
}

/// Exports a [`CredentialValidator`] implementation as the component's
/// `otp:plugin/credential-validation@0.2.0` interface.
///
/// Invoke it once, at the root of the plugin crate, with the name of a type in scope:
///
/// ```no_run
/// use otp_plugin_sdk::{Credential, CredentialValidator, RequestContext};
///
/// struct MyValidator;
///
/// impl CredentialValidator for MyValidator {
///     fn validate(body: &str, _ctx: &RequestContext) -> Result<Credential, String> {
///         Ok(Credential::new(body.trim(), "default"))
///     }
/// }
///
/// otp_plugin_sdk::export_credential_validator!(MyValidator);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export_credential_validator {
    ($ty:ident) => {
        $crate::__private::validator::export_world!($ty with_types_in $crate::__private::validator);
    };
}

/// Exports a [`Sender`] implementation as the component's `otp:plugin/sending@0.2.0`
/// interface.
///
/// Invoke it once, at the root of the plugin crate, with the name of a type in scope:
///
/// ```no_run
/// use otp_plugin_sdk::{log, Message, RequestContext, SendError, Sender};
///
/// struct MySender;
///
/// impl Sender for MySender {
///     fn send(msg: &Message, _ctx: &RequestContext) -> Result<(), SendError> {
///         log::info(&format!("a code for {} via {}", msg.credential_id, msg.channel));
///         Ok(())
///     }
/// }
///
/// otp_plugin_sdk::export_sender!(MySender);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export_sender {
    ($ty:ident) => {
        $crate::__private::sender::export_world!($ty with_types_in $crate::__private::sender);
    };
}

/// Exports a [`FinalAction`] implementation as the component's
/// `otp:plugin/final-action@0.2.0` interface.
///
/// Invoke it once, at the root of the plugin crate, with the name of a type in scope:
///
/// ```no_run
/// use otp_plugin_sdk::{FinalAction, HttpResponse, RequestContext};
///
/// struct MyFinalAction;
///
/// impl FinalAction for MyFinalAction {
///     fn complete(id: &str, _channel: &str, _ctx: &RequestContext) -> Result<HttpResponse, String> {
///         Ok(HttpResponse::new(200).header("content-type", "text/plain").body(format!("hello {id}")))
///     }
/// }
///
/// otp_plugin_sdk::export_final_action!(MyFinalAction);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export_final_action {
    ($ty:ident) => {
        $crate::__private::finalizer::export_world!($ty with_types_in $crate::__private::finalizer);
    };
}

/// Exports an [`EventSink`] implementation as the component's `otp:plugin/events@0.2.0`
/// interface.
///
/// Invoke it once, at the root of the plugin crate, with the name of a type in scope:
///
/// ```no_run
/// use otp_plugin_sdk::{log, AuditEvent, EventSink};
///
/// struct MySink;
///
/// impl EventSink for MySink {
///     fn deliver(batch: &[AuditEvent]) -> Result<(), String> {
///         for event in batch {
///             log::info(&format!("{} {}", event.kind, event.data));
///         }
///         Ok(())
///     }
/// }
///
/// otp_plugin_sdk::export_event_sink!(MySink);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export_event_sink {
    ($ty:ident) => {
        $crate::__private::event_sink::export_world!($ty with_types_in $crate::__private::event_sink);
    };
}
