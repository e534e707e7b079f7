//! Everything specific to version 0.1.0 of the `otp:plugin` WIT package.
//!
//! The generated bindings, the host side of the `log` import, role detection from a
//! component's exports, and the conversions between the generated types and the
//! host's own [`hooks`](super::hooks) types all live here. A future
//! `otp:plugin@0.2.0` gets a sibling module of its own; the rest of the runtime
//! only sees [`Bindings`] and the host types.

use super::hooks::{
    CodeDelivery, Credential, Hook, HookError, PluginResponse, RequestContext, SendKind,
};
use super::store::PluginState;
use wasmtime::component::{Component, HasSelf, InstancePre, Linker};
use wasmtime::{Engine, Store};

mod validator {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "credential-validator",
        exports: { default: async },
    });
}

mod sender {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "sender",
        exports: { default: async },
        with: {
            "otp:plugin/types": super::validator::otp::plugin::types,
            "otp:plugin/log": super::validator::otp::plugin::log,
        },
    });
}

mod finalizer {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "finalizer",
        exports: { default: async },
        with: {
            "otp:plugin/types": super::validator::otp::plugin::types,
            "otp:plugin/log": super::validator::otp::plugin::log,
        },
    });
}

use validator::otp::plugin::{log as wit_log, types as wit_types};

/// The package prefix of every export name of this version.
const PACKAGE: &str = "otp:plugin/";
const VERSION: &str = "@0.1.0";

/// The component export name that provides `hook` in this version.
pub fn export_name(hook: Hook) -> String {
    format!("{PACKAGE}{}{VERSION}", hook.name())
}

/// The hooks a component exports, judged by export names only (types are checked
/// when the [`Bindings`] are built).
pub fn exported_hooks(engine: &Engine, component: &Component) -> Vec<Hook> {
    let ty = component.component_type();
    Hook::ALL
        .into_iter()
        .filter(|hook| ty.get_export(engine, &export_name(*hook)).is_some())
        .collect()
}

/// Whether an export name belongs to any version of our package (used to tell
/// "exports a hook of an unsupported version" from "exports nothing we know").
pub fn is_our_package(name: &str) -> bool {
    name.starts_with(PACKAGE)
}

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
pub struct Bindings {
    validator: Option<validator::CredentialValidatorPre<PluginState>>,
    sender: Option<sender::SenderPre<PluginState>>,
    finalizer: Option<finalizer::FinalizerPre<PluginState>>,
}

impl Bindings {
    /// Links `component` and checks each exported hook against its world. An error
    /// names the hook whose types do not match or the import the host cannot satisfy.
    pub fn new(
        linker: &Linker<PluginState>,
        component: &Component,
        hooks: &[Hook],
    ) -> anyhow::Result<Bindings> {
        let pre: InstancePre<PluginState> = linker
            .instantiate_pre(component)
            .map_err(|e| anyhow::anyhow!("cannot link: {e:#}"))?;
        let mut bindings = Bindings {
            validator: None,
            sender: None,
            finalizer: None,
        };
        for hook in hooks {
            let checked = match hook {
                Hook::CredentialValidation => validator::CredentialValidatorPre::new(pre.clone())
                    .map(|p| bindings.validator = Some(p)),
                Hook::Sending => {
                    sender::SenderPre::new(pre.clone()).map(|p| bindings.sender = Some(p))
                }
                Hook::FinalAction => {
                    finalizer::FinalizerPre::new(pre.clone()).map(|p| bindings.finalizer = Some(p))
                }
            };
            checked.map_err(|e| {
                anyhow::anyhow!(
                    "export {} does not match the WIT: {e:#}",
                    export_name(*hook)
                )
            })?;
        }
        Ok(bindings)
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
        let ctx = to_wit_context(context);
        let answer = instance
            .otp_plugin_credential_validation()
            .call_validate(&mut *store, body, &ctx)
            .await?;
        Ok(answer
            .map(|c| Credential {
                id: c.id,
                channel: c.channel,
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
            credential_id: delivery.credential_id.clone(),
            channel: delivery.channel.clone(),
            code: delivery.code.clone(),
            expires_at: delivery.expires_at_ms,
            kind: match delivery.kind {
                SendKind::First => wit::SendKind::First,
                SendKind::Resend => wit::SendKind::Resend,
            },
        };
        let ctx = to_wit_context(context);
        let answer = instance
            .otp_plugin_sending()
            .call_send(&mut *store, &message, &ctx)
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
        let ctx = to_wit_context(context);
        let answer = instance
            .otp_plugin_final_action()
            .call_complete(&mut *store, &credential.id, &credential.channel, &ctx)
            .await?;
        Ok(answer.map(|r| PluginResponse {
            status: r.status,
            headers: r.headers,
            body: r.body,
        }))
    }
}

fn not_served(hook: Hook) -> wasmtime::Error {
    wasmtime::format_err!("this plugin does not serve the {hook} hook")
}

fn to_wit_context(context: &RequestContext) -> wit_types::RequestContext {
    wit_types::RequestContext {
        client_ip: context.client_ip.clone(),
        user_agent: context.user_agent.clone(),
        accept_language: context.accept_language.clone(),
    }
}
