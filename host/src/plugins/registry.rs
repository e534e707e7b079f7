//! Which plugins are loaded and which one serves each hook.
//!
//! The registry keeps the set of loaded plugins (one per `*.wasm` file in the plugins
//! folder, named after the file) and the hook bindings derived from it in one
//! immutable [`RegistryState`] behind an `ArcSwap`. A reload builds a new state and
//! swaps it in atomically; calls in flight keep the `Arc` of the plugin they started
//! with. A file that fails to load leaves the previous version of that plugin serving.

use super::hooks::{CodeDelivery, Credential, Hook, HookError, PluginResponse, RequestContext};
use super::runtime::{LoadedPlugin, PluginRuntime};
use arc_swap::ArcSwap;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A snapshot of the loaded plugins and the hook bindings.
#[derive(Default)]
pub struct RegistryState {
    pub plugins: BTreeMap<String, Arc<LoadedPlugin>>,
    pub bound: BTreeMap<Hook, Arc<LoadedPlugin>>,
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
            state: ArcSwap::from_pointee(RegistryState::default()),
            reload: tokio::sync::Mutex::new(()),
        }
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
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            if plugin_name(&path).is_some() {
                paths.push(path);
            }
        }
        paths.sort();
        let _serial = self.reload.lock().await;
        let current = self.state.load_full();
        let mut plugins = current.plugins.clone();
        let mut load_errors = current.load_errors.clone();
        for path in paths {
            self.load_into(&path, &mut plugins, &mut load_errors).await;
        }
        self.publish(plugins, load_errors, &BTreeMap::new());
        Ok(())
    }

    /// Brings the registry in line with one file: loads it if it exists, unloads the
    /// plugin if it is gone. Files that are not `NAME.wasm` (hidden or temporary
    /// files, for example) are ignored.
    pub async fn reload_file(&self, path: &Path) {
        if plugin_name(path).is_none() {
            return;
        }
        let _serial = self.reload.lock().await;
        let current = self.state.load_full();
        let mut plugins = current.plugins.clone();
        let mut load_errors = current.load_errors.clone();
        if self.load_into(path, &mut plugins, &mut load_errors).await {
            self.publish(plugins, load_errors, &current.bound);
        }
    }

    /// Loads, replaces or removes the plugin of one file in `plugins`. Returns whether
    /// anything changed.
    async fn load_into(
        &self,
        path: &Path,
        plugins: &mut BTreeMap<String, Arc<LoadedPlugin>>,
        load_errors: &mut BTreeMap<String, String>,
    ) -> bool {
        let Some(name) = plugin_name(path) else {
            return false;
        };
        match tokio::fs::read(path).await {
            Ok(bytes) => {
                if plugins
                    .get(&name)
                    .is_some_and(|p| p.version == version_of(&bytes))
                {
                    return load_errors.remove(&name).is_some();
                }
                let runtime = self.runtime.clone();
                let plugin_name = name.clone();
                let loaded =
                    tokio::task::spawn_blocking(move || runtime.load(&plugin_name, &bytes)).await;
                match loaded {
                    Ok(Ok(plugin)) => {
                        tracing::info!(
                            plugin = %name,
                            version = %plugin.version,
                            hooks = ?plugin.hooks.iter().map(|h| h.name()).collect::<Vec<_>>(),
                            "plugin loaded"
                        );
                        plugins.insert(name.clone(), Arc::new(plugin));
                        load_errors.remove(&name);
                    }
                    Ok(Err(error)) => {
                        tracing::error!(
                            file = %path.display(),
                            %error,
                            "plugin rejected; the previous version (if any) keeps serving"
                        );
                        load_errors.insert(name, error.to_string());
                    }
                    Err(join) => {
                        tracing::error!(file = %path.display(), error = %join, "plugin load crashed");
                        load_errors.insert(name, "load crashed".to_string());
                    }
                }
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if plugins.remove(&name).is_some() {
                    tracing::info!(plugin = %name, "plugin removed");
                }
                load_errors.remove(&name);
                true
            }
            Err(error) => {
                tracing::error!(file = %path.display(), %error, "cannot read plugin file");
                false
            }
        }
    }

    /// Binds the hooks for a new set of plugins and swaps the new state in.
    fn publish(
        &self,
        plugins: BTreeMap<String, Arc<LoadedPlugin>>,
        load_errors: BTreeMap<String, String>,
        previous: &BTreeMap<Hook, Arc<LoadedPlugin>>,
    ) {
        let (bound, problems) = resolve(&plugins, &self.preferences, previous);
        for problem in &problems {
            tracing::warn!("{problem}");
        }
        self.warn_if_development_only(&bound);
        self.state.store(Arc::new(RegistryState {
            plugins,
            bound,
            problems,
            load_errors,
        }));
    }

    fn warn_if_development_only(&self, bound: &BTreeMap<Hook, Arc<LoadedPlugin>>) {
        if !self.production {
            return;
        }
        if let Some(sender) = bound.get(&Hook::Sending) {
            if &*sender.name == "dev-sender" {
                tracing::warn!(
                    "PRODUCTION MODE WITH THE dev-sender PLUGIN BOUND: codes are written to the \
                     log instead of being delivered. Remove dev-sender.wasm and install a real sender."
                );
            }
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
        let plugin = self.bound(Hook::Sending)?;
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
    if path.extension()? != "wasm" {
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

/// Decides which plugin serves each hook.
///
/// One candidate is bound. With several, the configured preference decides; without
/// one, the previous binding stays (if that plugin is still loaded) and the ambiguity
/// is reported. A configured plugin that is missing leaves the hook unbound.
fn resolve(
    plugins: &BTreeMap<String, Arc<LoadedPlugin>>,
    preferences: &BTreeMap<Hook, String>,
    previous: &BTreeMap<Hook, Arc<LoadedPlugin>>,
) -> (BTreeMap<Hook, Arc<LoadedPlugin>>, Vec<String>) {
    let mut bound = BTreeMap::new();
    let mut problems = Vec::new();
    for hook in Hook::ALL {
        let candidates: Vec<&Arc<LoadedPlugin>> = plugins
            .values()
            .filter(|p| p.hooks.contains(&hook))
            .collect();
        if let Some(wanted) = preferences.get(&hook) {
            match candidates.iter().find(|p| &*p.name == wanted) {
                Some(p) => {
                    bound.insert(hook, (*p).clone());
                }
                None => problems.push(format!(
                    "hook {hook}: the configured plugin {wanted:?} is not loaded or does not export it"
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
    (bound, problems)
}
