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

use super::hooks::{CodeDelivery, Credential, Hook, HookError, PluginResponse, RequestContext};
use super::manifest::{Manifest, PluginEnv};
use super::runtime::{LoadedPlugin, PluginRuntime};
use arc_swap::ArcSwap;
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
        let bytes = match tokio::fs::read(&path).await {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if plugins.remove(name).is_some() {
                    tracing::info!(plugin = %name, "plugin removed");
                }
                load_errors.remove(name);
                return true;
            }
            Err(error) => {
                tracing::error!(file = %path.display(), %error, "cannot read plugin file");
                return false;
            }
        };
        let manifest_path = self.dir.join(format!("{name}.toml"));
        let manifest = match self.read_manifest(&manifest_path).await {
            Ok(manifest) => manifest,
            Err(error) => {
                tracing::error!(
                    file = %manifest_path.display(),
                    %error,
                    "plugin manifest rejected; the previous version (if any) keeps serving"
                );
                load_errors.insert(name.to_string(), format!("{name}.toml: {error}"));
                return true;
            }
        };
        let previous = plugins.get(name).cloned();
        let version = version_of(&bytes);
        if previous
            .as_ref()
            .is_some_and(|p| p.version == version && p.manifest.digest == manifest.digest)
        {
            return load_errors.remove(name).is_some();
        }
        let compiled = match previous.filter(|p| p.version == version) {
            Some(same_code) => Ok(same_code),
            None => {
                let runtime = self.runtime.clone();
                let plugin_name = name.to_string();
                match tokio::task::spawn_blocking(move || runtime.load(&plugin_name, &bytes)).await
                {
                    Ok(loaded) => loaded.map(Arc::new),
                    Err(join) => {
                        tracing::error!(file = %path.display(), error = %join, "plugin load crashed");
                        load_errors.insert(name.to_string(), "load crashed".to_string());
                        return true;
                    }
                }
            }
        };
        let plugin = compiled.and_then(|c| c.with_manifest(manifest).map_err(Into::into));
        match plugin {
            Ok(plugin) => {
                tracing::info!(
                    plugin = %name,
                    version = %plugin.version,
                    manifest = %plugin.manifest.digest,
                    hooks = ?plugin.hooks.iter().map(|h| h.name()).collect::<Vec<_>>(),
                    outbound = ?plugin.manifest.outbound.allow.rules().iter().map(|r| r.as_str()).collect::<Vec<_>>(),
                    config_keys = ?plugin.manifest.config_keys(),
                    "plugin loaded"
                );
                plugins.insert(name.to_string(), Arc::new(plugin));
                load_errors.remove(name);
            }
            Err(error) => {
                tracing::error!(
                    file = %path.display(),
                    %error,
                    "plugin rejected; the previous version (if any) keeps serving"
                );
                load_errors.insert(name.to_string(), error.to_string());
            }
        }
        true
    }

    /// `NAME.toml`, or the empty manifest when there is none.
    async fn read_manifest(&self, path: &Path) -> Result<Manifest, super::manifest::ManifestError> {
        use super::manifest::ManifestError;
        let text = match tokio::fs::read_to_string(path).await {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Manifest::default()),
            Err(e) => return Err(ManifestError::Read(e.to_string())),
        };
        Manifest::parse(&text, &self.env, self.runtime.max_memory_bytes())
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

    pub async fn validate(
        &self,
        body: &str,
        context: &RequestContext,
    ) -> Result<Credential, HookError> {
        let plugin = self.bound(Hook::CredentialValidation)?;
        self.runtime.validate(&plugin, body, context).await
    }

    pub async fn send(
        &self,
        delivery: &CodeDelivery,
        context: &RequestContext,
    ) -> Result<(), HookError> {
        let plugin = self.sender_for(&delivery.channel)?;
        self.runtime.send(&plugin, delivery, context).await
    }

    pub async fn complete(
        &self,
        credential: &Credential,
        context: &RequestContext,
    ) -> Result<PluginResponse, HookError> {
        let plugin = self.bound(Hook::FinalAction)?;
        self.runtime.complete(&plugin, credential, context).await
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

fn version_of(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(bytes)[..6])
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
