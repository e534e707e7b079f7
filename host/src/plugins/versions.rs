//! The plugin contract versions this host speaks, side by side.
//!
//! Like Zed's extension host, every released version of the `otp:plugin` WIT package
//! has a module of its own ([`super::v0_1_0`], [`super::v0_2_0`]) with its generated
//! bindings and conversions, and this module puts them behind one enum. A component's
//! version is read from its export names (`otp:plugin/sending@0.1.0`); the linker
//! offers every version's imports, so one plugins folder may mix versions and a plugin
//! built for 0.1.0 keeps working unchanged. A new version adds a module and a variant
//! here; nothing else in the runtime changes.

use super::hooks::{
    AuditEvent, CodeDelivery, Credential, Hook, HookError, PluginResponse, RequestContext,
};
use super::store::PluginState;
use super::{v0_1_0, v0_2_0};
use std::fmt;
use wasmtime::component::{Component, InstancePre, Linker};
use wasmtime::{Engine, Store};

/// The package prefix of every export name of every version.
const PACKAGE: &str = "otp:plugin/";

/// A released version of the plugin contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ContractVersion {
    V0_1_0,
    V0_2_0,
}

impl ContractVersion {
    /// Every version this host supports, oldest first.
    pub const ALL: [ContractVersion; 2] = [ContractVersion::V0_1_0, ContractVersion::V0_2_0];

    pub fn as_str(self) -> &'static str {
        match self {
            ContractVersion::V0_1_0 => v0_1_0::VERSION,
            ContractVersion::V0_2_0 => v0_2_0::VERSION,
        }
    }

    /// The hooks this version defines.
    pub fn hooks(self) -> &'static [Hook] {
        match self {
            ContractVersion::V0_1_0 => &v0_1_0::HOOKS,
            ContractVersion::V0_2_0 => &v0_2_0::HOOKS,
        }
    }

    /// The component export name that provides `hook` in this version.
    pub fn export_name(self, hook: Hook) -> String {
        format!("{PACKAGE}{}@{}", hook.name(), self.as_str())
    }
}

impl fmt::Display for ContractVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a component's exports do not name one contract version's hooks.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error(
        "exports no otp:plugin hook of a supported version ({supported}) (exports: {exports})"
    )]
    NoHooks { supported: String, exports: String },
    #[error("exports hooks of several contract versions ({0}); build it for one version")]
    MixedVersions(String),
}

/// The contract version of a component and the hooks it exports, judged by export
/// names only (types are checked when the [`Bindings`] are built).
pub fn detect(
    engine: &Engine,
    component: &Component,
) -> Result<(ContractVersion, Vec<Hook>), DetectError> {
    let ty = component.component_type();
    let found: Vec<(ContractVersion, Vec<Hook>)> = ContractVersion::ALL
        .into_iter()
        .map(|version| {
            let hooks = version
                .hooks()
                .iter()
                .copied()
                .filter(|hook| ty.get_export(engine, &version.export_name(*hook)).is_some())
                .collect::<Vec<_>>();
            (version, hooks)
        })
        .filter(|(_, hooks)| !hooks.is_empty())
        .collect();
    match found.as_slice() {
        [] => {
            let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
            Err(DetectError::NoHooks {
                supported: ContractVersion::ALL.map(|v| v.as_str()).join(", "),
                exports: if exports.is_empty() {
                    "none".to_string()
                } else {
                    exports.join(", ")
                },
            })
        }
        [(version, hooks)] => Ok((*version, hooks.clone())),
        several => Err(DetectError::MixedVersions(
            several
                .iter()
                .map(|(v, _)| v.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        )),
    }
}

/// Whether an export name belongs to some version of our package but is not one of the
/// hooks `version` defines (for `plugins check`'s notes).
pub fn is_unknown_hook_export(name: &str, version: ContractVersion) -> bool {
    name.starts_with(PACKAGE)
        && !version
            .hooks()
            .iter()
            .any(|hook| version.export_name(*hook) == name)
}

/// Adds the imports of every supported version to a linker.
pub fn add_to_linker(linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
    v0_1_0::add_to_linker(linker)?;
    v0_2_0::add_to_linker(linker)
}

pub(super) fn not_served(hook: Hook) -> wasmtime::Error {
    wasmtime::format_err!("this plugin does not serve the {hook} hook")
}

/// Pre-linked, type-checked entry points of one component, in its contract version.
pub enum Bindings {
    V0_1_0(v0_1_0::Bindings),
    V0_2_0(v0_2_0::Bindings),
}

impl Bindings {
    /// Links `component` and checks each of its hooks against its world. An error
    /// names the hook whose types do not match or the import the host cannot satisfy.
    pub fn new(
        linker: &Linker<PluginState>,
        component: &Component,
        version: ContractVersion,
        hooks: &[Hook],
    ) -> anyhow::Result<Bindings> {
        let pre: InstancePre<PluginState> = linker
            .instantiate_pre(component)
            .map_err(|e| anyhow::anyhow!("cannot link: {e:#}"))?;
        let mut bindings = match version {
            ContractVersion::V0_1_0 => Bindings::V0_1_0(v0_1_0::Bindings::default()),
            ContractVersion::V0_2_0 => Bindings::V0_2_0(v0_2_0::Bindings::default()),
        };
        for hook in hooks {
            let checked = match &mut bindings {
                Bindings::V0_1_0(b) => b.bind(*hook, &pre),
                Bindings::V0_2_0(b) => b.bind(*hook, &pre),
            };
            checked.map_err(|e| {
                anyhow::anyhow!(
                    "export {} does not match the WIT: {e:#}",
                    version.export_name(*hook)
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
        match self {
            Bindings::V0_1_0(b) => b.validate(store, body, context).await,
            Bindings::V0_2_0(b) => b.validate(store, body, context).await,
        }
    }

    pub async fn send(
        &self,
        store: &mut Store<PluginState>,
        delivery: &CodeDelivery,
        context: &RequestContext,
    ) -> wasmtime::Result<Result<(), HookError>> {
        match self {
            Bindings::V0_1_0(b) => b.send(store, delivery, context).await,
            Bindings::V0_2_0(b) => b.send(store, delivery, context).await,
        }
    }

    pub async fn complete(
        &self,
        store: &mut Store<PluginState>,
        credential: &Credential,
        context: &RequestContext,
    ) -> wasmtime::Result<Result<PluginResponse, String>> {
        match self {
            Bindings::V0_1_0(b) => b.complete(store, credential, context).await,
            Bindings::V0_2_0(b) => b.complete(store, credential, context).await,
        }
    }

    pub async fn deliver(
        &self,
        store: &mut Store<PluginState>,
        batch: &[AuditEvent],
    ) -> wasmtime::Result<Result<(), String>> {
        match self {
            Bindings::V0_1_0(_) => Err(not_served(Hook::Events)),
            Bindings::V0_2_0(b) => b.deliver(store, batch).await,
        }
    }
}
