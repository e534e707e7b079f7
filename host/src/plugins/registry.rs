//! Which plugins are loaded and which one serves each hook.
//!
//! The registry keeps the set of loaded plugins (one per `*.wasm` file in the plugins
//! folder, named after the file, with its `NAME.toml` manifest if there is one) and the
//! hook bindings derived from it in one immutable [`RegistryState`] behind an
//! `ArcSwap`. A reload builds a new state and swaps it in atomically; calls in flight
//! keep the `Arc` of the plugin they started with. A file that fails to load — the
//! component or its manifest — leaves the previous version of that plugin serving.
//!
//! Senders may be routed by channel: a sender whose manifest lists `channels` serves
//! only those; the others serve every channel no channel-specific sender claims.
//!
//! The registry is what the service calls hooks through ([`Hooks`]), and the sink the
//! audit pipeline delivers to ([`EventSink`]); it reports loads and rejections as
//! `plugin.loaded` / `plugin.rejected` audit events.

use super::hooks::{
    CodeDelivery, Credential, FinalAction, Hook, HookError, Hooks, PluginResponse, RequestContext,
};
use super::load::{load_plugin, PluginFileError};
use super::manifest::PluginEnv;
use super::runtime::{CallSlot, LoadedPlugin, PluginRuntime};
use crate::events::{AuditEvent, AuditLog, EventSink, Subject};
use arc_swap::ArcSwap;
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A snapshot of the loaded plugins and the hook bindings.
#[derive(Default)]
pub struct RegistryState {
    pub plugins: BTreeMap<String, Arc<LoadedPlugin>>,
    /// The plugin serving each hook; for `sending`, the sender of every channel that no
    /// channel-specific sender claims.
    pub bound: BTreeMap<Hook, Arc<LoadedPlugin>>,
    /// Channel → the sender whose manifest lists that channel.
    pub channels: BTreeMap<String, Arc<LoadedPlugin>>,
    /// Binding problems (ambiguities, a configured plugin that is missing).
    pub problems: Vec<String>,
    /// The last load error per file name, for files that are not serving their
    /// latest content.
    pub load_errors: BTreeMap<String, String>,
}

pub struct PluginRegistry {
    runtime: Arc<PluginRuntime>,
    dir: PathBuf,
    /// Hook → plugin name chosen by configuration when several plugins export a hook.
    preferences: BTreeMap<Hook, String>,
    /// Whether to warn about development-only plugins.
    production: bool,
    /// Resolves `${NAME}` in manifests: `OTP_PLUGIN_*` and the variables the
    /// configuration lists in `plugin_env`.
    env: PluginEnv,
    /// Where `plugin.loaded` / `plugin.rejected` go.
    audit: Option<Arc<AuditLog>>,
    state: ArcSwap<RegistryState>,
    /// Reloads are serialized so two events for one file cannot interleave.
    reload: tokio::sync::Mutex<()>,
}

impl PluginRegistry {
    pub fn new(
        runtime: Arc<PluginRuntime>,
        dir: PathBuf,
        preferences: BTreeMap<Hook, String>,
        production: bool,
    ) -> PluginRegistry {
        PluginRegistry {
            runtime,
            dir,
            preferences,
            production,
            env: PluginEnv::default(),
            audit: None,
            state: ArcSwap::from_pointee(RegistryState::default()),
            reload: tokio::sync::Mutex::new(()),
        }
    }

    /// Resolves manifest references with `env` (by default: only `OTP_PLUGIN_*` of the
    /// process environment).
    pub fn with_env(mut self, env: PluginEnv) -> PluginRegistry {
        self.env = env;
        self
    }

    /// Reports plugin loads and rejections to `audit`, and tells it whether an events
    /// plugin is bound.
    pub fn with_audit(mut self, audit: Arc<AuditLog>) -> PluginRegistry {
        self.audit = Some(audit);
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn runtime(&self) -> &PluginRuntime {
        &self.runtime
    }

    pub fn snapshot(&self) -> Arc<RegistryState> {
        self.state.load_full()
    }

    /// Loads every plugin file in the folder (at start-up) and binds the hooks once
    /// all are loaded, so an ambiguity at start-up leaves the hook unbound rather than
    /// bound to whichever file happened to load first.
    pub async fn load_all(&self) -> std::io::Result<()> {
        let mut names = std::collections::BTreeSet::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            if let Some(name) = plugin_name(&path) {
                names.insert(name);
            }
        }
        let _serial = self.reload.lock().await;
        let current = self.state.load_full();
        let mut plugins = current.plugins.clone();
        let mut load_errors = current.load_errors.clone();
        for name in names {
            self.load_into(&name, &mut plugins, &mut load_errors).await;
        }
        self.publish(plugins, load_errors, &RegistryState::default());
        Ok(())
    }

    /// Brings the registry in line with one file: `NAME.wasm` or its manifest
    /// `NAME.toml` reloads plugin `NAME` (unloading it if the `.wasm` is gone). Other
    /// files (hidden or temporary ones, for example) are ignored.
    pub async fn reload_file(&self, path: &Path) {
        let Some(name) = plugin_name_of_file(path) else {
            return;
        };
        let _serial = self.reload.lock().await;
        let current = self.state.load_full();
        let mut plugins = current.plugins.clone();
        let mut load_errors = current.load_errors.clone();
        if self.load_into(&name, &mut plugins, &mut load_errors).await {
            self.publish(plugins, load_errors, &current);
        }
    }

    /// Loads, replaces or removes plugin `name` in `plugins` from `NAME.wasm` and
    /// `NAME.toml`. Returns whether anything changed.
    async fn load_into(
        &self,
        name: &str,
        plugins: &mut BTreeMap<String, Arc<LoadedPlugin>>,
        load_errors: &mut BTreeMap<String, String>,
    ) -> bool {
        let path = self.dir.join(format!("{name}.wasm"));
        let previous = plugins.get(name).cloned();
        let (runtime, env, plugin_name, file) = (
            self.runtime.clone(),
            self.env.clone(),
            name.to_string(),
            path.clone(),
        );
        let reuse = previous.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            load_plugin(&runtime, &plugin_name, &file, &env, reuse.as_deref())
        })
        .await;
        let loaded = match loaded {
            Ok(loaded) => loaded,
            Err(join) => {
                tracing::error!(file = %path.display(), error = %join, "plugin load crashed");
                load_errors.insert(name.to_string(), "load crashed".to_string());
                return true;
            }
        };
        match loaded {
            Ok(plugin) => {
                if previous.as_ref().is_some_and(|p| {
                    p.version == plugin.version && p.manifest.digest == plugin.manifest.digest
                }) {
                    return load_errors.remove(name).is_some();
                }
                tracing::info!(
                    plugin = %name,
                    contract = %plugin.contract,
                    version = %plugin.version,
                    manifest = %plugin.manifest.digest,
                    hooks = ?plugin.hooks.iter().map(|h| h.name()).collect::<Vec<_>>(),
                    outbound = ?plugin.manifest.outbound.allow.rules().iter().map(|r| r.as_str()).collect::<Vec<_>>(),
                    config_keys = ?plugin.manifest.config_keys(),
                    "plugin loaded"
                );
                crate::metrics::plugin_reload("ok");
                self.audit(
                    "plugin.loaded",
                    name,
                    serde_json::json!({
                        "version": plugin.version,
                        "contract": plugin.contract.as_str(),
                        "hooks": plugin.hooks.iter().map(|h| h.name()).collect::<Vec<_>>(),
                    }),
                );
                plugins.insert(name.to_string(), Arc::new(plugin));
                load_errors.remove(name);
            }
            Err(PluginFileError::Missing(_)) => {
                if plugins.remove(name).is_some() {
                    tracing::info!(plugin = %name, "plugin removed");
                }
                load_errors.remove(name);
            }
            Err(PluginFileError::Read { path, message }) => {
                tracing::error!(file = %path.display(), error = %message, "cannot read plugin file");
                return false;
            }
            Err(error) => {
                let what = match &error {
                    PluginFileError::Manifest { .. } => "plugin manifest rejected",
                    _ => "plugin rejected",
                };
                tracing::error!(
                    file = %path.display(),
                    %error,
                    "{what}; the previous version (if any) keeps serving"
                );
                crate::metrics::plugin_reload("rejected");
                self.audit(
                    "plugin.rejected",
                    name,
                    serde_json::json!({ "reason": error.to_string() }),
                );
                load_errors.insert(name.to_string(), error.to_string());
            }
        }
        true
    }

    fn audit(&self, kind: &str, plugin: &str, data: serde_json::Value) {
        if let Some(audit) = &self.audit {
            audit.emit(kind, Subject::Plain(plugin), || data);
        }
    }

    /// Binds the hooks for a new set of plugins and swaps the new state in.
    fn publish(
        &self,
        plugins: BTreeMap<String, Arc<LoadedPlugin>>,
        load_errors: BTreeMap<String, String>,
        previous: &RegistryState,
    ) {
        let (bound, channels, problems) = resolve(&plugins, &self.preferences, previous);
        for problem in &problems {
            tracing::warn!("{problem}");
        }
        self.warn_if_development_only(&bound, &channels);
        if let Some(audit) = &self.audit {
            audit.set_sink_bound(bound.contains_key(&Hook::Events));
        }
        self.state.store(Arc::new(RegistryState {
            plugins,
            bound,
            channels,
            problems,
            load_errors,
        }));
    }

    fn warn_if_development_only(
        &self,
        bound: &BTreeMap<Hook, Arc<LoadedPlugin>>,
        channels: &BTreeMap<String, Arc<LoadedPlugin>>,
    ) {
        let mut senders = bound
            .get(&Hook::Sending)
            .into_iter()
            .chain(channels.values());
        if self.production && senders.any(|s| &*s.name == "dev-sender") {
            tracing::warn!(
                "PRODUCTION MODE WITH THE dev-sender PLUGIN BOUND: codes are written to the \
                 log instead of being delivered. Remove dev-sender.wasm and install a real sender."
            );
        }
    }

    fn bound(&self, hook: Hook) -> Result<Arc<LoadedPlugin>, HookError> {
        self.state
            .load()
            .bound
            .get(&hook)
            .cloned()
            .ok_or(HookError::Unbound(hook))
    }

    /// The sender of a channel: the one whose manifest lists it, else the sender of
    /// every channel.
    fn sender_for(&self, channel: &str) -> Result<Arc<LoadedPlugin>, HookError> {
        let state = self.state.load();
        state
            .channels
            .get(channel)
            .or_else(|| state.bound.get(&Hook::Sending))
            .cloned()
            .ok_or(HookError::Unbound(Hook::Sending))
    }
}

#[async_trait]
impl Hooks for PluginRegistry {
    async fn validate(
        &self,
        body: &str,
        context: &RequestContext,
    ) -> Result<Credential, HookError> {
        let plugin = self.bound(Hook::CredentialValidation)?;
        self.runtime.validate(&plugin, body, context).await
    }

    async fn send(
        &self,
        delivery: &CodeDelivery,
        context: &RequestContext,
    ) -> Result<(), HookError> {
        let plugin = self.sender_for(&delivery.channel)?;
        self.runtime.send(&plugin, delivery, context).await
    }

    async fn reserve_final_action(&self) -> Result<Box<dyn FinalAction>, HookError> {
        let plugin = self.bound(Hook::FinalAction)?;
        let slot = self.runtime.reserve(&plugin, Hook::FinalAction).await?;
        Ok(Box::new(ReservedFinalAction {
            runtime: self.runtime.clone(),
            plugin,
            slot,
        }))
    }
}

/// A final action with its plugin and call slot already taken.
struct ReservedFinalAction {
    runtime: Arc<PluginRuntime>,
    plugin: Arc<LoadedPlugin>,
    slot: CallSlot,
}

#[async_trait]
impl FinalAction for ReservedFinalAction {
    async fn complete(
        self: Box<Self>,
        credential: &Credential,
        context: &RequestContext,
    ) -> Result<PluginResponse, HookError> {
        let ReservedFinalAction {
            runtime,
            plugin,
            slot,
        } = *self;
        runtime.complete(&plugin, slot, credential, context).await
    }
}

#[async_trait]
impl EventSink for PluginRegistry {
    async fn deliver(&self, batch: &[AuditEvent]) -> Result<bool, String> {
        let Ok(plugin) = self.bound(Hook::Events) else {
            return Ok(false);
        };
        self.runtime
            .deliver(&plugin, batch)
            .await
            .map(|()| true)
            .map_err(|e| e.to_string())
    }
}

/// `NAME` for a path `DIR/NAME.wasm`; `None` for anything else, including hidden files
/// (so "write `.NAME.wasm.tmp`, then rename" never exposes a half-written file).
pub fn plugin_name(path: &Path) -> Option<String> {
    name_with_extension(path, "wasm")
}

/// `NAME` for `DIR/NAME.wasm` or its manifest `DIR/NAME.toml`.
pub fn plugin_name_of_file(path: &Path) -> Option<String> {
    name_with_extension(path, "wasm").or_else(|| name_with_extension(path, "toml"))
}

fn name_with_extension(path: &Path, extension: &str) -> Option<String> {
    if path.extension()? != extension {
        return None;
    }
    let stem = path.file_stem()?.to_str()?;
    if stem.is_empty() || stem.starts_with('.') {
        return None;
    }
    Some(stem.to_string())
}

/// Decides which plugin serves each hook, and which sender each channel.
///
/// Senders whose manifest lists `channels` serve those channels only; two claiming the
/// same channel are an ambiguity (the previous one stays, if still loaded). For each
/// hook, the plugins serving it without such a restriction are the candidates: one is
/// bound; with several, the configured preference decides; without one, the previous
/// binding stays (if that plugin is still loaded) and the ambiguity is reported. A
/// configured plugin that is missing leaves the hook unbound.
type Bindings = (
    BTreeMap<Hook, Arc<LoadedPlugin>>,
    BTreeMap<String, Arc<LoadedPlugin>>,
    Vec<String>,
);

fn resolve(
    plugins: &BTreeMap<String, Arc<LoadedPlugin>>,
    preferences: &BTreeMap<Hook, String>,
    previous: &RegistryState,
) -> Bindings {
    let mut bound = BTreeMap::new();
    let mut problems = Vec::new();

    let mut claims: BTreeMap<&str, Vec<&Arc<LoadedPlugin>>> = BTreeMap::new();
    for plugin in plugins
        .values()
        .filter(|p| p.hooks.contains(&Hook::Sending))
    {
        for channel in plugin.manifest.channels.iter().flatten() {
            claims.entry(channel.as_str()).or_default().push(plugin);
        }
    }
    let mut channels = BTreeMap::new();
    for (channel, claimants) in claims {
        match claimants.as_slice() {
            [only] => {
                channels.insert(channel.to_string(), (*only).clone());
            }
            several => {
                let names: Vec<&str> = several.iter().map(|p| &*p.name).collect();
                let kept = previous
                    .channels
                    .get(channel)
                    .and_then(|prev| several.iter().find(|p| p.name == prev.name));
                let outcome = match kept {
                    Some(p) => {
                        channels.insert(channel.to_string(), (*p).clone());
                        format!("keeping {}", p.name)
                    }
                    None => "no sender serves it".to_string(),
                };
                problems.push(format!(
                    "channel {channel}: listed in the manifests of {}; {outcome} — list it in one manifest only",
                    names.join(", ")
                ));
            }
        }
    }

    for hook in Hook::ALL {
        let candidates: Vec<&Arc<LoadedPlugin>> = plugins
            .values()
            .filter(|p| p.hooks.contains(&hook) && p.manifest.channels.is_none())
            .collect();
        if let Some(wanted) = preferences.get(&hook) {
            match candidates.iter().find(|p| &*p.name == wanted) {
                Some(p) => {
                    bound.insert(hook, (*p).clone());
                }
                None => problems.push(format!(
                    "hook {hook}: the configured plugin {wanted:?} is not loaded, does not export it, or serves only some channels"
                )),
            }
            continue;
        }
        match candidates.as_slice() {
            [] => {}
            [only] => {
                bound.insert(hook, (*only).clone());
            }
            several => {
                let names: Vec<&str> = several.iter().map(|p| &*p.name).collect();
                let kept = previous
                    .bound
                    .get(&hook)
                    .and_then(|prev| several.iter().find(|p| p.name == prev.name));
                match kept {
                    Some(p) => {
                        bound.insert(hook, (*p).clone());
                        problems.push(format!(
                            "hook {hook}: exported by {}; keeping {} — name one in the configuration (hooks.{hook})",
                            names.join(", "),
                            p.name
                        ));
                    }
                    None => problems.push(format!(
                        "hook {hook}: exported by {}; name one in the configuration (hooks.{hook})",
                        names.join(", ")
                    )),
                }
            }
        }
    }
    (bound, channels, problems)
}
