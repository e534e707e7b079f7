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
//! only those; the others serve every channel no channel-specific sender claims. The
//! configuration may instead name an ordered **failover chain** of senders, for every
//! channel (`[hooks] sending = ["twilio-sms", "backup-sms"]`) or per channel
//! (`[hooks.sending-by-channel] sms = [...]`). A send tries the chain in order: a sender
//! that answers *unavailable* or fails (trap, deadline, memory) hands the code to the
//! next; *undeliverable* (the destination cannot receive codes) and busy call slots end
//! the chain, since no other sender would do better. The whole chain shares one send
//! deadline ([`PluginRuntime::send_budget`]); each attempt also stops at its own, and a
//! sender is not tried with less than [`MIN_FAILOVER_BUDGET`] left. A chain that ends
//! without a delivery answers with the first *unavailable* if there was one.
//!
//! The registry is what the service calls hooks through ([`Hooks`]), and the sink the
//! audit pipeline delivers to ([`EventSink`]); it reports loads and rejections as
//! `plugin.loaded` / `plugin.rejected` audit events.

use super::hooks::{
    CodeDelivery, Credential, FinalAction, Hook, HookError, Hooks, PluginResponse, RequestContext,
    SendFailure, Sent,
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

/// Senders in the order they are tried; never empty where the registry keeps one.
pub type SenderChain = Arc<[Arc<LoadedPlugin>]>;

/// The least time left of a chain's send deadline for which the next sender is tried:
/// less would cut its provider call short before it could answer.
const MIN_FAILOVER_BUDGET: std::time::Duration = std::time::Duration::from_millis(100);

/// What the configuration chose: the plugin of a hook that several plugins export, and
/// the senders' failover chains.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HookChoices {
    /// Hook → plugin name, for every hook but `sending`.
    pub plugins: BTreeMap<Hook, String>,
    /// The senders of every channel without a chain of its own, in order; empty when the
    /// configuration names none.
    pub senders: Vec<String>,
    /// Channel → its senders, in order.
    pub channel_senders: BTreeMap<String, Vec<String>>,
}

/// A snapshot of the loaded plugins and the hook bindings.
#[derive(Default)]
pub struct RegistryState {
    pub plugins: BTreeMap<String, Arc<LoadedPlugin>>,
    /// The plugin serving each hook but `sending`.
    pub bound: BTreeMap<Hook, Arc<LoadedPlugin>>,
    /// The senders of every channel without senders of its own.
    pub senders: Option<SenderChain>,
    /// Channel → its senders: the chain the configuration names for it, or the sender
    /// whose manifest lists it. `None` when the configuration names a chain none of whose
    /// senders serves now (the channel is then unserved, never handed to another sender).
    pub channels: BTreeMap<String, Option<SenderChain>>,
    /// Binding problems (ambiguities, a configured plugin that is missing).
    pub problems: Vec<String>,
    /// The last load error per file name, for files that are not serving their
    /// latest content.
    pub load_errors: BTreeMap<String, String>,
}

pub struct PluginRegistry {
    runtime: Arc<PluginRuntime>,
    dir: PathBuf,
    /// What the configuration chose: plugins for hooks several export, sender chains.
    choices: HookChoices,
    /// Whether to warn about development-only plugins.
    production: bool,
    /// Resolves `${NAME}` in manifests: `OTP_PLUGIN_*` and the variables the
    /// configuration lists in `plugin_env`.
    env: PluginEnv,
    /// Where `plugin.loaded` / `plugin.rejected` go.
    audit: Option<Arc<AuditLog>>,
    state: ArcSwap<RegistryState>,
    /// Reloads are serialized so two reloads of one plugin cannot interleave.
    reload: tokio::sync::Mutex<()>,
}

impl PluginRegistry {
    pub fn new(
        runtime: Arc<PluginRuntime>,
        dir: PathBuf,
        choices: HookChoices,
        production: bool,
    ) -> PluginRegistry {
        PluginRegistry {
            runtime,
            dir,
            choices,
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
        let mut events = Vec::new();
        for name in names {
            self.load_into(&name, &mut plugins, &mut load_errors, &mut events)
                .await;
        }
        self.publish(plugins, load_errors, &RegistryState::default());
        self.audit(events);
        Ok(())
    }

    /// Brings plugin `name` in line with its files `NAME.wasm` and `NAME.toml`: loads or
    /// replaces it, or unloads it if the `.wasm` is gone.
    pub(crate) async fn reload(&self, name: &str) {
        let _serial = self.reload.lock().await;
        let current = self.state.load_full();
        let mut plugins = current.plugins.clone();
        let mut load_errors = current.load_errors.clone();
        let mut events = Vec::new();
        if self
            .load_into(name, &mut plugins, &mut load_errors, &mut events)
            .await
        {
            self.publish(plugins, load_errors, &current);
        }
        self.audit(events);
    }

    /// Loads, replaces or removes plugin `name` in `plugins` from `NAME.wasm` and
    /// `NAME.toml`, adding its audit event to `events` (emitted once the new state is
    /// published: at start-up the events plugin is bound only then). Returns whether
    /// anything changed.
    async fn load_into(
        &self,
        name: &str,
        plugins: &mut BTreeMap<String, Arc<LoadedPlugin>>,
        load_errors: &mut BTreeMap<String, String>,
        events: &mut Vec<PluginEvent>,
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
                events.push(PluginEvent {
                    kind: "plugin.loaded",
                    plugin: name.to_string(),
                    data: serde_json::json!({
                        "version": plugin.version,
                        "contract": plugin.contract.as_str(),
                        "hooks": plugin.hooks.iter().map(|h| h.name()).collect::<Vec<_>>(),
                    }),
                });
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
                events.push(PluginEvent {
                    kind: "plugin.rejected",
                    plugin: name.to_string(),
                    data: serde_json::json!({ "reason": error.to_string() }),
                });
                load_errors.insert(name.to_string(), error.to_string());
            }
        }
        true
    }

    fn audit(&self, events: Vec<PluginEvent>) {
        if let Some(audit) = &self.audit {
            for event in events {
                audit.emit(event.kind, Subject::Plain(&event.plugin), || event.data);
            }
        }
    }

    /// Binds the hooks for a new set of plugins and swaps the new state in.
    fn publish(
        &self,
        plugins: BTreeMap<String, Arc<LoadedPlugin>>,
        load_errors: BTreeMap<String, String>,
        previous: &RegistryState,
    ) {
        let Resolved {
            bound,
            senders,
            channels,
            problems,
        } = resolve(&plugins, &self.choices, previous);
        for problem in &problems {
            tracing::warn!("{problem}");
        }
        let chains = senders.iter().chain(channels.values().flatten());
        for chain in chains.clone().filter(|chain| chain.len() > 1) {
            let names: Vec<&str> = chain.iter().map(|p| &*p.name).collect();
            tracing::info!(chain = ?names, "senders fail over in this order");
        }
        if self.production
            && chains
                .flat_map(|c| c.iter())
                .any(|s| &*s.name == "dev-sender")
        {
            tracing::warn!(
                "PRODUCTION MODE WITH THE dev-sender PLUGIN BOUND: codes are written to the \
                 log instead of being delivered. Remove dev-sender.wasm and install a real sender."
            );
        }
        if let Some(audit) = &self.audit {
            audit.set_sink_bound(bound.contains_key(&Hook::Events));
        }
        self.state.store(Arc::new(RegistryState {
            plugins,
            bound,
            senders,
            channels,
            problems,
            load_errors,
        }));
    }

    fn bound(&self, hook: Hook) -> Result<Arc<LoadedPlugin>, HookError> {
        self.state
            .load()
            .bound
            .get(&hook)
            .cloned()
            .ok_or(HookError::Unbound(hook))
    }

    /// The senders of a channel: its own, else those of every channel.
    fn senders_for(&self, channel: &str) -> Result<SenderChain, HookError> {
        let state = self.state.load();
        match state.channels.get(channel) {
            Some(chain) => chain.clone(),
            None => state.senders.clone(),
        }
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
    ) -> Result<Sent, SendFailure> {
        let chain = self.senders_for(&delivery.channel)?;
        let until = std::time::Instant::now() + self.runtime.send_budget(&chain[0]);
        // A sender's "unavailable" is what the client hears when the chain ends without a
        // delivery (503 SEND:UNAVAILABLE: try again), rather than a later sender's trap.
        let mut unavailable = None;
        // Whether a sender trapped or timed out: it may have handed the code on first.
        let mut maybe_sent = false;
        let mut senders = chain.iter().peekable();
        while let Some(sender) = senders.next() {
            let budget = until.saturating_duration_since(std::time::Instant::now());
            let error = match self.runtime.send(sender, delivery, context, budget).await {
                Ok(()) => {
                    return Ok(Sent {
                        sender: sender.name.clone(),
                    })
                }
                Err(error) => error,
            };
            maybe_sent |= matches!(error, HookError::Failed { .. });
            let fail = |error: HookError| SendFailure { error, maybe_sent };
            let left = until.saturating_duration_since(std::time::Instant::now());
            let next = senders.peek().filter(|_| left >= MIN_FAILOVER_BUDGET);
            let error = match (error, next) {
                (error @ (HookError::Unavailable(_) | HookError::Failed { .. }), Some(next)) => {
                    tracing::warn!(
                        plugin = %sender.name,
                        channel = %delivery.channel,
                        next = %next.name,
                        %error,
                        "sender did not deliver; failing over to the next sender"
                    );
                    error
                }
                (error, _) => return Err(fail(chain_answer(error, unavailable))),
            };
            if unavailable.is_none() && matches!(error, HookError::Unavailable(_)) {
                unavailable = Some(error);
            }
        }
        unreachable!("a chain is never empty and its last sender returns")
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

/// A `plugin.loaded` / `plugin.rejected` audit event, held until the state it describes
/// is published.
struct PluginEvent {
    kind: &'static str,
    plugin: String,
    data: serde_json::Value,
}

/// The bindings [`resolve`] decides.
struct Resolved {
    bound: BTreeMap<Hook, Arc<LoadedPlugin>>,
    senders: Option<SenderChain>,
    channels: BTreeMap<String, Option<SenderChain>>,
    problems: Vec<String>,
}

/// Decides which plugin serves each hook, and which senders each channel.
///
/// Senders: a channel the configuration names a chain for gets the members of that chain
/// that are loaded, export `sending` and serve the channel (a member that does not is
/// reported and skipped; none at all leaves the channel unserved). A sender whose
/// manifest lists `channels` serves those (two claiming one channel are an ambiguity: the
/// previous one stays, if still loaded). Every other channel gets the configured chain
/// `hooks.sending` (from the senders without `channels`), or the one sender without
/// `channels`.
///
/// Other hooks: the plugins serving the hook are the candidates: one is bound; with
/// several, the configured choice decides; without one, the previous binding stays (if
/// that plugin is still loaded) and the ambiguity is reported. A configured plugin that
/// is missing leaves the hook unbound.
fn resolve(
    plugins: &BTreeMap<String, Arc<LoadedPlugin>>,
    choices: &HookChoices,
    previous: &RegistryState,
) -> Resolved {
    let mut problems = Vec::new();
    let senders: Vec<&Arc<LoadedPlugin>> = plugins
        .values()
        .filter(|p| p.hooks.contains(&Hook::Sending))
        .collect();

    let mut channels = BTreeMap::new();
    for (channel, names) in &choices.channel_senders {
        let label = format!("hooks.sending-by-channel.{channel}");
        let chain = chain_of(&senders, names, Some(channel), &label, &mut problems);
        if chain.is_none() {
            problems.push(format!(
                "channel {channel}: none of the senders {label} names serves it; its codes are not sent"
            ));
        }
        channels.insert(channel.clone(), chain);
    }
    let mut claims: BTreeMap<&str, Vec<&Arc<LoadedPlugin>>> = BTreeMap::new();
    for plugin in &senders {
        for channel in plugin.manifest.channels.iter().flatten() {
            if !choices.channel_senders.contains_key(channel) {
                claims.entry(channel.as_str()).or_default().push(plugin);
            }
        }
    }
    for (channel, claimants) in claims {
        match claimants.as_slice() {
            [only] => {
                channels.insert(channel.to_string(), Some(Arc::from([(*only).clone()])));
            }
            several => {
                let names: Vec<&str> = several.iter().map(|p| &*p.name).collect();
                let kept = previous
                    .channels
                    .get(channel)
                    .and_then(Option::as_ref)
                    .and_then(|prev| several.iter().find(|p| p.name == prev[0].name));
                let outcome = match kept {
                    Some(p) => {
                        channels.insert(channel.to_string(), Some(Arc::from([(*p).clone()])));
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

    let every_channel: Vec<&Arc<LoadedPlugin>> = senders
        .iter()
        .copied()
        .filter(|p| p.manifest.channels.is_none())
        .collect();
    let default_senders = if choices.senders.is_empty() {
        pick(
            Hook::Sending,
            &every_channel,
            previous.senders.as_ref().map(|chain| &chain[0]),
            &mut problems,
        )
        .map(|p| Arc::from([p]))
    } else {
        let chain = chain_of(
            &senders,
            &choices.senders,
            None,
            "hooks.sending",
            &mut problems,
        );
        if chain.is_none() {
            problems.push(
                "hook sending: none of the senders hooks.sending names is loaded; \
                 channels without senders of their own are not served"
                    .to_string(),
            );
        }
        chain
    };

    let mut bound = BTreeMap::new();
    for hook in Hook::ALL.into_iter().filter(|h| *h != Hook::Sending) {
        // A sender restricted to some channels competes for no other hook.
        let candidates: Vec<&Arc<LoadedPlugin>> = plugins
            .values()
            .filter(|p| p.hooks.contains(&hook) && p.manifest.channels.is_none())
            .collect();
        let chosen = match choices.plugins.get(&hook) {
            Some(wanted) => {
                let found = candidates.iter().find(|p| &*p.name == wanted);
                if found.is_none() {
                    problems.push(format!(
                        "hook {hook}: the configured plugin {wanted:?} is not loaded or does not export it"
                    ));
                }
                found.map(|p| (*p).clone())
            }
            None => pick(hook, &candidates, previous.bound.get(&hook), &mut problems),
        };
        if let Some(plugin) = chosen {
            bound.insert(hook, plugin);
        }
    }
    Resolved {
        bound,
        senders: default_senders,
        channels,
        problems,
    }
}

/// The one candidate for `hook`; with several, the previously bound one if it is among
/// them (and the ambiguity reported either way).
fn pick(
    hook: Hook,
    candidates: &[&Arc<LoadedPlugin>],
    previous: Option<&Arc<LoadedPlugin>>,
    problems: &mut Vec<String>,
) -> Option<Arc<LoadedPlugin>> {
    match candidates {
        [] => None,
        [only] => Some((*only).clone()),
        several => {
            let names: Vec<&str> = several.iter().map(|p| &*p.name).collect();
            let kept = previous.and_then(|prev| several.iter().find(|p| p.name == prev.name));
            let outcome = match kept {
                Some(p) => format!("keeping {} — name one", p.name),
                None => "name one".to_string(),
            };
            problems.push(format!(
                "hook {hook}: exported by {}; {outcome} in the configuration (hooks.{hook})",
                names.join(", ")
            ));
            kept.map(|p| (*p).clone())
        }
    }
}

/// What a send chain that ends on `error` answers, `unavailable` being the first
/// *unavailable* of its senders: *undeliverable* is a verdict on the destination and
/// stands; any other end (a failure, busy call slots) answers the first *unavailable*
/// if there was one, since that sender's provider is what the client should hear of.
fn chain_answer(error: HookError, unavailable: Option<HookError>) -> HookError {
    match error {
        HookError::Undeliverable(_) => error,
        error => unavailable.unwrap_or(error),
    }
}

/// The senders `names` lists that are loaded and serve `channel` (or, for `None`, every
/// channel), in order; a listed sender that does not is reported. `None` when none does.
fn chain_of(
    senders: &[&Arc<LoadedPlugin>],
    names: &[String],
    channel: Option<&str>,
    label: &str,
    problems: &mut Vec<String>,
) -> Option<SenderChain> {
    let mut chain = Vec::with_capacity(names.len());
    for name in names {
        let sender = senders.iter().find(|p| &*p.name == name);
        match (sender, channel) {
            (Some(sender), Some(channel)) if sender.manifest.serves_channel(channel) => {
                chain.push((*sender).clone())
            }
            (Some(sender), None) if sender.manifest.channels.is_none() => {
                chain.push((*sender).clone())
            }
            (Some(_), Some(channel)) => problems.push(format!(
                "{label}: sender {name:?} does not serve channel {channel} (its manifest's channels); skipped"
            )),
            (Some(_), None) => problems.push(format!(
                "{label}: sender {name:?} serves only the channels its manifest lists; name it under hooks.sending-by-channel; skipped"
            )),
            (None, _) => problems.push(format!(
                "{label}: sender {name:?} is not loaded or does not export the sending hook; skipped"
            )),
        }
    }
    (!chain.is_empty()).then(|| SenderChain::from(chain))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_answers_its_first_unavailable_unless_the_destination_is_undeliverable() {
        let unavailable = || Some(HookError::Unavailable("provider down".into()));
        let ends = || {
            [
                HookError::Failed {
                    plugin: "b".into(),
                    reason: "trap".into(),
                },
                HookError::Busy(Hook::Sending),
            ]
        };
        for (end, alone) in ends().into_iter().zip(ends()) {
            let said = end.to_string();
            let answer = chain_answer(end, unavailable());
            assert!(
                matches!(answer, HookError::Unavailable(_)),
                "{said}: {answer}"
            );
            assert_eq!(chain_answer(alone, None).to_string(), said);
        }
        let undeliverable = HookError::Undeliverable("no such number".into());
        let answer = chain_answer(undeliverable, unavailable());
        assert!(matches!(answer, HookError::Undeliverable(_)), "{answer}");
    }
}
