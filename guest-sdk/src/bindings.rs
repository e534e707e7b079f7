//! Raw bindings generated from `../wit/v0.2.0/plugin.wit`, and the glue that adapts the SDK's traits
//! to them.
//!
//! There is one `generate!` per world on purpose. With `pub_export_macro`, wit-bindgen embeds
//! only the world's *imports* in this crate and moves the description of its exports into the
//! export macro, so a plugin's component type lists exactly the hooks whose macros it invoked.
//! The sender and finalizer bindings reuse the validator's `types` and `log` modules via `with`
//! so that all hooks share one set of generated types and one `log` import.

#![allow(missing_docs, clippy::all, unsafe_op_in_unsafe_fn)]

use crate::{
    AuditEvent, CredentialValidator, EventSink, FinalAction, HttpResponse, Message, RequestContext,
    SendError, SendKind, Sender,
};

/// Bindings for the `credential-validator` world; also the home of the shared `types` and
/// `log` interfaces.
pub mod validator {
    wit_bindgen::generate!({
        path: "../wit/v0.2.0",
        world: "otp:plugin/credential-validator@0.2.0",
        pub_export_macro: true,
        export_macro_name: "export_world",
        default_bindings_module: "otp_plugin_sdk::__private::validator",
    });
}

/// Bindings for the `sender` world.
pub mod sender {
    wit_bindgen::generate!({
        path: "../wit/v0.2.0",
        world: "otp:plugin/sender@0.2.0",
        pub_export_macro: true,
        export_macro_name: "export_world",
        default_bindings_module: "otp_plugin_sdk::__private::sender",
        with: {
            "otp:plugin/types@0.2.0": crate::__private::validator::otp::plugin::types,
            "otp:plugin/log@0.2.0": crate::__private::validator::otp::plugin::log,
        },
    });
}

/// Bindings for the `finalizer` world.
pub mod finalizer {
    wit_bindgen::generate!({
        path: "../wit/v0.2.0",
        world: "otp:plugin/finalizer@0.2.0",
        pub_export_macro: true,
        export_macro_name: "export_world",
        default_bindings_module: "otp_plugin_sdk::__private::finalizer",
        with: {
            "otp:plugin/types@0.2.0": crate::__private::validator::otp::plugin::types,
            "otp:plugin/log@0.2.0": crate::__private::validator::otp::plugin::log,
        },
    });
}

/// Bindings for the `event-sink` world.
pub mod event_sink {
    wit_bindgen::generate!({
        path: "../wit/v0.2.0",
        world: "otp:plugin/event-sink@0.2.0",
        pub_export_macro: true,
        export_macro_name: "export_world",
        default_bindings_module: "otp_plugin_sdk::__private::event_sink",
        with: {
            "otp:plugin/log@0.2.0": crate::__private::validator::otp::plugin::log,
        },
    });
}

use event_sink::exports::otp::plugin::events as wit_events;
use finalizer::exports::otp::plugin::final_action as wit_final;
use sender::exports::otp::plugin::sending as wit_sending;
use validator::exports::otp::plugin::credential_validation as wit_validation;
use validator::otp::plugin::types as wit_types;

impl From<wit_types::RequestContext> for RequestContext {
    fn from(ctx: wit_types::RequestContext) -> Self {
        RequestContext {
            client_ip: ctx.client_ip,
            user_agent: ctx.user_agent,
            accept_language: ctx.accept_language,
            request_id: ctx.request_id,
            locale: ctx.locale,
        }
    }
}

impl<T: CredentialValidator> wit_validation::Guest for T {
    fn validate(
        body: String,
        context: wit_types::RequestContext,
    ) -> Result<wit_types::Credential, String> {
        let credential = <T as CredentialValidator>::validate(&body, &context.into())?;
        Ok(wit_types::Credential {
            id: credential.id,
            channel: credential.channel,
            group: credential.group,
        })
    }
}

impl<T: Sender> wit_sending::Guest for T {
    fn send(
        message: wit_sending::Message,
        context: wit_types::RequestContext,
    ) -> Result<(), wit_sending::SendError> {
        let message = Message {
            credential_id: message.credential_id,
            channel: message.channel,
            code: message.code,
            expires_at: message.expires_at,
            kind: match message.kind {
                wit_sending::SendKind::First => SendKind::First,
                wit_sending::SendKind::Resend => SendKind::Resend,
            },
        };
        <T as Sender>::send(&message, &context.into()).map_err(|err| match err {
            SendError::Undeliverable(reason) => wit_sending::SendError::Undeliverable(reason),
            SendError::Unavailable(reason) => wit_sending::SendError::Unavailable(reason),
        })
    }
}

impl<T: FinalAction> wit_final::Guest for T {
    fn complete(
        credential_id: String,
        channel: String,
        context: wit_types::RequestContext,
    ) -> Result<wit_final::HttpResponse, String> {
        let HttpResponse {
            status,
            headers,
            body,
        } = <T as FinalAction>::complete(&credential_id, &channel, &context.into())?;
        Ok(wit_final::HttpResponse {
            status,
            headers,
            body,
        })
    }
}

impl<T: EventSink> wit_events::Guest for T {
    fn deliver(batch: Vec<wit_events::Event>) -> Result<(), String> {
        let batch: Vec<AuditEvent> = batch
            .into_iter()
            .map(|e| AuditEvent {
                id: e.id,
                kind: e.type_,
                time: e.time,
                source: e.source,
                subject: e.subject,
                data: e.data,
            })
            .collect();
        <T as EventSink>::deliver(&batch)
    }
}
