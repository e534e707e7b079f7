//! Everything specific to version 0.1.0 of the `otp:plugin` WIT package
//! (`wit/v0.1.0`, frozen: plugins built for it keep working forever).
//!
//! The generated bindings, the host side of this version's `log` import, and the
//! conversions between the generated types and the host's own [`hooks`](super::hooks)
//! types. 0.1.0 knows three hooks; a credential has no destination group and the
//! request context carries neither request id nor locale.

use super::hooks::{
    CodeDelivery, Credential, Hook, HookError, PluginResponse, RequestContext, SendKind,
};
use super::store::PluginState;
use super::versions::not_served;
use wasmtime::component::{HasSelf, InstancePre, Linker};
use wasmtime::Store;

mod validator {
    wasmtime::component::bindgen!({
        path: "../wit/v0.1.0",
        world: "credential-validator",
        exports: { default: async },
        ownership: Borrowing { duplicate_if_necessary: true },
    });
}

mod sender {
    wasmtime::component::bindgen!({
        path: "../wit/v0.1.0",
        world: "sender",
        exports: { default: async },
        ownership: Borrowing { duplicate_if_necessary: true },
        with: {
            "otp:plugin/types": super::validator::otp::plugin::types,
            "otp:plugin/log": super::validator::otp::plugin::log,
        },
    });
}

mod finalizer {
    wasmtime::component::bindgen!({
        path: "../wit/v0.1.0",
        world: "finalizer",
        exports: { default: async },
        ownership: Borrowing { duplicate_if_necessary: true },
        with: {
            "otp:plugin/types": super::validator::otp::plugin::types,
            "otp:plugin/log": super::validator::otp::plugin::log,
        },
    });
}

use validator::otp::plugin::{log as wit_log, types as wit_types};

/// This version, as it appears in export names.
pub const VERSION: &str = "0.1.0";

/// The hooks this version defines.
pub const HOOKS: [Hook; 3] = Hook::REQUIRED;

/// Adds this version's imports to a linker: `log`, and `types` (which has no
/// functions, but components built against it still import it).
pub fn add_to_linker(linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
    wit_types::add_to_linker::<PluginState, HasSelf<PluginState>>(linker, |state| state)?;
    wit_log::add_to_linker::<PluginState, HasSelf<PluginState>>(linker, |state| state)
}

impl wit_types::Host for PluginState {}

impl wit_log::Host for PluginState {
    fn log(&mut self, level: wit_log::Level, message: String) {
        let level = match level {
            wit_log::Level::Trace => tracing::Level::TRACE,
            wit_log::Level::Debug => tracing::Level::DEBUG,
            wit_log::Level::Info => tracing::Level::INFO,
            wit_log::Level::Warn => tracing::Level::WARN,
            wit_log::Level::Error => tracing::Level::ERROR,
        };
        self.plugin_log(level, &message);
    }
}

/// Pre-linked, type-checked entry points of one component, one per hook it serves.
#[derive(Default)]
pub struct Bindings {
    validator: Option<validator::CredentialValidatorPre<PluginState>>,
    sender: Option<sender::SenderPre<PluginState>>,
    finalizer: Option<finalizer::FinalizerPre<PluginState>>,
}

impl Bindings {
    /// Checks one exported hook against its world and keeps its entry point.
    pub fn bind(&mut self, hook: Hook, pre: &InstancePre<PluginState>) -> wasmtime::Result<()> {
        match hook {
            Hook::CredentialValidation => {
                self.validator = Some(validator::CredentialValidatorPre::new(pre.clone())?)
            }
            Hook::Sending => self.sender = Some(sender::SenderPre::new(pre.clone())?),
            Hook::FinalAction => self.finalizer = Some(finalizer::FinalizerPre::new(pre.clone())?),
            Hook::Events => return Err(not_served(Hook::Events)),
        }
        Ok(())
    }

    pub async fn validate(
        &self,
        store: &mut Store<PluginState>,
        body: &str,
        context: &RequestContext,
    ) -> wasmtime::Result<Result<Credential, HookError>> {
        let pre = self
            .validator
            .as_ref()
            .ok_or_else(|| not_served(Hook::CredentialValidation))?;
        let instance = pre.instantiate_async(&mut *store).await?;
        let answer = instance
            .otp_plugin_credential_validation()
            .call_validate(&mut *store, body, to_wit_context(context))
            .await?;
        Ok(answer
            .map(|c| Credential {
                id: c.id,
                channel: c.channel,
                group: None,
            })
            .map_err(HookError::Rejected))
    }

    pub async fn send(
        &self,
        store: &mut Store<PluginState>,
        delivery: &CodeDelivery,
        context: &RequestContext,
    ) -> wasmtime::Result<Result<(), HookError>> {
        use sender::exports::otp::plugin::sending as wit;
        let pre = self
            .sender
            .as_ref()
            .ok_or_else(|| not_served(Hook::Sending))?;
        let instance = pre.instantiate_async(&mut *store).await?;
        let message = wit::Message {
            credential_id: &delivery.credential_id,
            channel: &delivery.channel,
            code: &delivery.code,
            expires_at: delivery.expires_at_ms,
            kind: match delivery.kind {
                SendKind::First => wit::SendKind::First,
                SendKind::Resend => wit::SendKind::Resend,
            },
        };
        let answer = instance
            .otp_plugin_sending()
            .call_send(&mut *store, message, to_wit_context(context))
            .await?;
        Ok(answer.map_err(|e| match e {
            wit::SendError::Undeliverable(m) => HookError::Undeliverable(m),
            wit::SendError::Unavailable(m) => HookError::Unavailable(m),
        }))
    }

    pub async fn complete(
        &self,
        store: &mut Store<PluginState>,
        credential: &Credential,
        context: &RequestContext,
    ) -> wasmtime::Result<Result<PluginResponse, String>> {
        let pre = self
            .finalizer
            .as_ref()
            .ok_or_else(|| not_served(Hook::FinalAction))?;
        let instance = pre.instantiate_async(&mut *store).await?;
        let answer = instance
            .otp_plugin_final_action()
            .call_complete(
                &mut *store,
                &credential.id,
                &credential.channel,
                to_wit_context(context),
            )
            .await?;
        Ok(answer.map(|r| PluginResponse {
            status: r.status,
            headers: r.headers,
            body: r.body,
        }))
    }
}

/// The context as the hooks take it: borrowed, so a call copies each string once,
/// straight into the plugin's memory.
fn to_wit_context(context: &RequestContext) -> wit_types::RequestContext<'_> {
    wit_types::RequestContext {
        client_ip: context.client_ip.as_deref(),
        user_agent: context.user_agent.as_deref(),
        accept_language: context.accept_language.as_deref(),
    }
}
