//! The WebAssembly runtime: one wasmtime `Engine`, compiling plugins, and running
//! one hook call under its deadline, memory cap and concurrency budget.
//!
//! The engine uses the pooling allocator (instantiation is a few microseconds) and
//! epoch interruption: while any call's store lives, a thread advances the epoch every
//! [`TICK`](super::epoch::TICK) ([`super::epoch`]); each call yields to the async runtime
//! at every tick and is interrupted once its deadline has passed. A trap, a timeout or a
//! memory blow-up fails only that call.
//!
//! Each hook has a budget of call slots of its own, so a flood of sends waiting on a
//! slow provider cannot take the slots a final action needs. A call takes its slot
//! before it starts ([`PluginRuntime::reserve`]); the verify path reserves the final
//! action's slot before it spends the session id. The allocator's pool of linear
//! memories and tables is shared by all hooks, so each hook also owns a share of it
//! ([`PoolShare`]), and a call takes what its component defines from its hook's share
//! with its slot: components with many memories can exhaust their own hook's share,
//! never another's.

use super::epoch::EpochTicker;
use super::hooks::{
    AuditEvent, CodeDelivery, Credential, Hook, HookError, PluginResponse, RequestContext,
};
use super::manifest::{Manifest, ManifestError};
use super::store::PluginState;
use super::text::loggable;
use super::versions::{self, Bindings, ContractVersion, DetectError};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};
use wasmtime::component::{Component, Linker};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap,
    UpdateDeadline,
};

/// Extra time the host allows past a deadline before abandoning a call that is
/// waiting on the host (the epoch only interrupts running guest code).
const GRACE: Duration = Duration::from_millis(50);
/// The least time a call is started with after waiting for its slot (or half its
/// deadline, when that is shorter).
const MIN_CALL: Duration = Duration::from_millis(5);
/// Bytes of each linear memory kept mapped between instances (see `PluginRuntime::new`).
const KEEP_RESIDENT: usize = 2 * 1024 * 1024;
/// Linear memories, tables and core instances one component may have (the pool's
/// limits per component).
const MAX_MEMORIES: u32 = 8;
const MAX_TABLES: u32 = 16;
const MAX_CORE_INSTANCES: u32 = 64;
/// The pool's memories and tables per call slot of a hook: most components have one or
/// two of each, so a hook's calls rarely wait for its share rather than its slots.
const MEMORIES_PER_SLOT: u32 = 4;
const TABLES_PER_SLOT: u32 = 8;

/// Deadline and memory cap for calls to one hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HookLimits {
    pub deadline: Duration,
    pub memory_bytes: usize,
}

/// Limits per hook plus the engine's sizing.
#[derive(Clone, Debug)]
pub struct RuntimeOptions {
    pub validate: HookLimits,
    pub send: HookLimits,
    pub final_action: HookLimits,
    pub events: HookLimits,
    /// How many calls of each hook may run at once; further calls wait for a slot (at
    /// most until their deadline). The audit sink always runs one call at a time.
    pub validate_slots: u32,
    pub send_slots: u32,
    pub final_slots: u32,
    /// Where compiled plugins are cached across restarts; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
}

impl RuntimeOptions {
    pub fn limits(&self, hook: Hook) -> HookLimits {
        match hook {
            Hook::CredentialValidation => self.validate,
            Hook::Sending => self.send,
            Hook::FinalAction => self.final_action,
            Hook::Events => self.events,
        }
    }

    /// The concurrency budget of a hook.
    pub fn slots(&self, hook: Hook) -> u32 {
        match hook {
            Hook::CredentialValidation => self.validate_slots,
            Hook::Sending => self.send_slots,
            Hook::FinalAction => self.final_slots,
            Hook::Events => 1,
        }
        .max(1)
    }
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        const MIB: usize = 1024 * 1024;
        RuntimeOptions {
            validate: HookLimits {
                deadline: Duration::from_millis(100),
                memory_bytes: 64 * MIB,
            },
            send: HookLimits {
                deadline: Duration::from_secs(10),
                memory_bytes: 64 * MIB,
            },
            final_action: HookLimits {
                deadline: Duration::from_secs(1),
                memory_bytes: 64 * MIB,
            },
            events: HookLimits {
                deadline: Duration::from_secs(5),
                memory_bytes: 64 * MIB,
            },
            validate_slots: 256,
            send_slots: 256,
            final_slots: 256,
            cache_dir: None,
        }
    }
}

/// Why a file could not become a plugin.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("not a valid WebAssembly component: {0}")]
    Compile(String),
    #[error("{0}")]
    Contract(#[from] DetectError),
    #[error("{0}")]
    Link(String),
    #[error(
        "a memory of the component starts at {needs} bytes, over the {hook} hook's memory cap \
         of {cap} bytes: every call would fail (raise the cap, or bind the plugin to other hooks)"
    )]
    OverMemoryCap { hook: Hook, needs: u64, cap: usize },
}

/// A compiled, linked and type-checked plugin with its manifest. Immutable: a reload
/// makes a new one (a manifest-only change reuses the compiled code), and calls in
/// flight keep the `Arc` of the version they started with.
pub struct LoadedPlugin {
    pub name: Arc<str>,
    /// The contract version the component was built for.
    pub contract: ContractVersion,
    /// The first 12 hex digits of the file's SHA-256: changes whenever the file does.
    pub version: String,
    /// The hooks this plugin is bound to: its exports, narrowed by its manifest.
    pub hooks: Vec<Hook>,
    /// Every hook the component exports.
    pub exported: Vec<Hook>,
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    /// `NAME.toml`, or the empty manifest (no network, no config) without one.
    pub manifest: Arc<Manifest>,
    bindings: Arc<Bindings>,
    pool_needs: PoolNeeds,
}

impl LoadedPlugin {
    /// The same compiled plugin under another manifest. Errors when the manifest does
    /// not fit the plugin (it names a hook the plugin does not export, for example).
    pub fn with_manifest(&self, manifest: Manifest) -> Result<LoadedPlugin, ManifestError> {
        let hooks = manifest.bound_hooks(&self.exported)?;
        Ok(LoadedPlugin {
            name: self.name.clone(),
            contract: self.contract,
            version: self.version.clone(),
            hooks,
            exported: self.exported.clone(),
            imports: self.imports.clone(),
            exports: self.exports.clone(),
            manifest: Arc::new(manifest),
            bindings: self.bindings.clone(),
            pool_needs: self.pool_needs,
        })
    }
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.name)
            .field("contract", &self.contract)
            .field("version", &self.version)
            .field("hooks", &self.hooks)
            .finish_non_exhaustive()
    }
}

pub struct PluginRuntime {
    engine: Engine,
    linker: Linker<PluginState>,
    options: RuntimeOptions,
    max_memory: usize,
    /// Call slots and pool shares per hook, indexed like [`Hook::ALL`].
    shares: [PoolShare; 4],
    ticker: EpochTicker,
}

impl PluginRuntime {
    pub fn new(options: RuntimeOptions) -> anyhow::Result<PluginRuntime> {
        let max_memory = Hook::ALL
            .iter()
            .map(|hook| options.limits(*hook).memory_bytes)
            .max()
            .unwrap_or(0);
        let calls: u32 = Hook::ALL.iter().map(|hook| options.slots(*hook)).sum();
        let shares = Hook::ALL.map(|hook| PoolShare::new(options.slots(hook)));
        let mut pool = PoolingAllocationConfig::default();
        // A component holds a few core instances, memories and tables (more for
        // componentize-py or StarlingMonkey output). Memories and tables are the pool's
        // address space (4 GiB and more of reservation per memory: the most each call may
        // define would not fit), so the pool holds the hooks' shares of them; core
        // instances are only counted, so it holds the most every call may take.
        pool.total_component_instances(calls)
            .total_core_instances(calls.saturating_mul(MAX_CORE_INSTANCES))
            .total_memories(
                shares
                    .iter()
                    .fold(0, |n, s| n.saturating_add(s.memories_total)),
            )
            .total_tables(
                shares
                    .iter()
                    .fold(0, |n, s| n.saturating_add(s.tables_total)),
            )
            .total_stacks(calls)
            .max_memories_per_component(MAX_MEMORIES)
            .max_tables_per_component(MAX_TABLES)
            .max_core_instances_per_component(MAX_CORE_INSTANCES)
            .max_memory_size(max_memory)
            // Reset a finished instance's memory with memset, guided by PAGEMAP_SCAN where
            // the kernel has it, instead of madvise: under load every madvise is a TLB
            // shootdown across cores, and those dominated the cost of a hook call.
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(64 * 1024)
            .pagemap_scan(wasmtime::Enabled::Auto);

        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        if let Some(dir) = &options.cache_dir {
            let mut cache = wasmtime::CacheConfig::new();
            cache.with_directory(dir);
            config.cache(Some(wasmtime::Cache::new(cache).map_err(|e| {
                anyhow::anyhow!("wasmtime cache at {}: {e}", dir.display())
            })?));
        }
        let engine = Engine::new(&config).map_err(anyhow::Error::from)?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(anyhow::Error::from)?;
        // wasi:http and wasi:config are linked for every plugin, so a component that
        // imports them always loads; what it gets is decided per plugin at call time
        // (deny-all and no values without a manifest).
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(anyhow::Error::from)?;
        wasmtime_wasi_config::add_to_linker(&mut linker, PluginState::config)
            .map_err(anyhow::Error::from)?;
        versions::add_to_linker(&mut linker).map_err(anyhow::Error::from)?;

        let ticker = EpochTicker::start({
            let engine = engine.clone();
            move || engine.increment_epoch()
        });
        Ok(PluginRuntime {
            engine,
            linker,
            shares,
            max_memory,
            options,
            ticker,
        })
    }

    pub fn options(&self) -> &RuntimeOptions {
        &self.options
    }

    /// The largest memory cap the engine was sized for: a manifest may not ask for more.
    pub fn max_memory_bytes(&self) -> usize {
        self.max_memory
    }

    /// The time a failover chain of senders shares, from its first attempt to the answer:
    /// the server's send deadline, or the first sender's own deadline if its manifest
    /// gives it a longer one (so a chain of one keeps exactly its own deadline).
    pub fn send_budget(&self, first: &LoadedPlugin) -> Duration {
        let hook = Hook::Sending;
        self.options
            .limits(hook)
            .deadline
            .max(self.limits(first, hook).deadline)
    }

    /// Refuses a plugin that no call of a hook it is bound to could instantiate: one of
    /// its memories alone starts over that hook's memory cap (the server's, or its
    /// manifest's). Loading checks only the largest cap of all hooks.
    pub fn check_fits(&self, plugin: &LoadedPlugin) -> Result<(), LoadError> {
        let needs = plugin.pool_needs.largest_memory_bytes;
        for &hook in &plugin.hooks {
            let cap = self.limits(plugin, hook).memory_bytes;
            if needs > cap as u64 {
                return Err(LoadError::OverMemoryCap { hook, needs, cap });
            }
        }
        Ok(())
    }

    /// A plugin's limits for a hook: the server's, overridden by its manifest.
    pub fn limits(&self, plugin: &LoadedPlugin, hook: Hook) -> HookLimits {
        let base = self.options.limits(hook);
        match plugin.manifest.limits.get(&hook) {
            None => base,
            Some(o) => HookLimits {
                deadline: o.deadline.unwrap_or(base.deadline),
                memory_bytes: o.memory_bytes.unwrap_or(base.memory_bytes),
            },
        }
    }

    /// Compiles and checks a component. CPU-heavy: call it off the async runtime.
    pub fn load(&self, name: &str, bytes: &[u8]) -> Result<LoadedPlugin, LoadError> {
        let component = Component::from_binary(&self.engine, bytes)
            .map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        let ty = component.component_type();
        let imports: Vec<String> = ty
            .imports(&self.engine)
            .map(|(n, _)| n.to_string())
            .collect();
        let exports: Vec<String> = ty
            .exports(&self.engine)
            .map(|(n, _)| n.to_string())
            .collect();
        let (contract, hooks) = versions::detect(&self.engine, &component)?;
        let bindings = Bindings::new(&self.linker, &component, contract, &hooks)
            .map_err(|e| LoadError::Link(format!("{e:#}")))?;
        Ok(LoadedPlugin {
            name: Arc::from(name),
            contract,
            version: super::load::version_of(bytes),
            exported: hooks.clone(),
            hooks,
            imports,
            exports,
            manifest: Arc::new(Manifest::default()),
            bindings: Arc::new(bindings),
            pool_needs: PoolNeeds::of(&component),
        })
    }

    /// How many calls of `hook` are running now.
    pub fn slots_in_use(&self, hook: Hook) -> u32 {
        let free = self.shares[hook_index(hook)].calls.available_permits() as u32;
        self.options.slots(hook).saturating_sub(free)
    }

    /// Takes a call slot of `hook` for `plugin`, waiting for one while all are busy but
    /// not past the call's own deadline.
    pub async fn reserve(&self, plugin: &LoadedPlugin, hook: Hook) -> Result<CallSlot, HookError> {
        let end = Instant::now() + self.limits(plugin, hook).deadline;
        self.reserve_by(plugin, hook, end).await
    }

    /// Takes a call slot of `hook` and what `plugin` needs of the hook's pool share,
    /// waiting while they are taken but not past `end`.
    async fn reserve_by(
        &self,
        plugin: &LoadedPlugin,
        hook: Hook,
        end: Instant,
    ) -> Result<CallSlot, HookError> {
        let share = &self.shares[hook_index(hook)];
        let needs = plugin.pool_needs;
        Ok(CallSlot {
            hook,
            _call: permits(&share.calls, 1, end, hook).await?,
            _memories: permits(&share.memories, needs.memories, end, hook).await?,
            _tables: permits(&share.tables, needs.tables, end, hook).await?,
        })
    }

    /// Takes a call slot of `hook` by `end`, and gives the call what is left until then:
    /// waiting for a slot counts against the call's deadline. A slot that comes with less
    /// than [`MIN_CALL`] left (or half the deadline) is as good as none (busy): a call
    /// started that late could only be cut short, and for a sender that would read as
    /// "may have sent".
    async fn slot_by(
        &self,
        plugin: &LoadedPlugin,
        hook: Hook,
        limits: HookLimits,
        end: Instant,
    ) -> Result<(CallSlot, HookLimits), HookError> {
        let slot = self.reserve_by(plugin, hook, end).await?;
        let deadline = end.saturating_duration_since(Instant::now());
        if deadline < MIN_CALL.min(limits.deadline / 2) {
            return Err(HookError::Busy(hook));
        }
        Ok((slot, HookLimits { deadline, ..limits }))
    }

    pub async fn validate(
        &self,
        plugin: &LoadedPlugin,
        body: &str,
        context: &RequestContext,
    ) -> Result<Credential, HookError> {
        let hook = Hook::CredentialValidation;
        let started = Instant::now();
        let result = async {
            let limits = self.limits(plugin, hook);
            let (slot, limits) = self
                .slot_by(plugin, hook, limits, started + limits.deadline)
                .await?;
            let mut store = self.store(plugin, &slot, limits);
            let call = Box::pin(plugin.bindings.validate(&mut store, body, context));
            let outcome = within(limits.deadline + GRACE, call).await;
            finish(plugin, hook, &mut store, outcome)?.map_err(loggable_reason)
        }
        .await;
        measured(plugin, hook, started, result)
    }

    /// Runs one sender under its own deadline, cut to `budget`: what is left of the send
    /// deadline its failover chain shares (see [`PluginRuntime::send_budget`]). Waiting for
    /// a call slot counts against both.
    pub async fn send(
        &self,
        plugin: &LoadedPlugin,
        delivery: &CodeDelivery,
        context: &RequestContext,
        budget: Duration,
    ) -> Result<(), HookError> {
        let hook = Hook::Sending;
        let started = Instant::now();
        let limits = self.limits(plugin, hook);
        let end = started + limits.deadline.min(budget);
        let result = async {
            let (slot, limits) = self.slot_by(plugin, hook, limits, end).await?;
            let mut store = self.store(plugin, &slot, limits);
            let call = Box::pin(plugin.bindings.send(&mut store, delivery, context));
            let outcome = within(limits.deadline + GRACE, call).await;
            finish(plugin, hook, &mut store, outcome)?.map_err(loggable_reason)
        }
        .await;
        measured(plugin, hook, started, result)
    }

    /// Runs the final action in a slot taken beforehand with [`PluginRuntime::reserve`].
    pub async fn complete(
        &self,
        plugin: &LoadedPlugin,
        slot: CallSlot,
        credential: &Credential,
        context: &RequestContext,
    ) -> Result<PluginResponse, HookError> {
        let hook = Hook::FinalAction;
        debug_assert_eq!(slot.hook, hook);
        let started = Instant::now();
        let result = self.complete_in(plugin, &slot, credential, context).await;
        measured(plugin, hook, started, result)
    }

    async fn complete_in(
        &self,
        plugin: &LoadedPlugin,
        slot: &CallSlot,
        credential: &Credential,
        context: &RequestContext,
    ) -> Result<PluginResponse, HookError> {
        let hook = Hook::FinalAction;
        let limits = self.limits(plugin, hook);
        let mut store = self.store(plugin, slot, limits);
        let call = Box::pin(plugin.bindings.complete(&mut store, credential, context));
        let outcome = within(limits.deadline + GRACE, call).await;
        let failed = |reason: String| {
            tracing::warn!(plugin = %plugin.name, %hook, %reason, "plugin call failed");
            HookError::Failed {
                plugin: plugin.name.to_string(),
                reason,
            }
        };
        match finish(plugin, hook, &mut store, outcome)? {
            Err(message) => Err(failed(format!(
                "final action returned an error: {}",
                loggable(&message)
            ))),
            Ok(response) if !FINAL_STATUSES.contains(&response.status) => Err(failed(format!(
                "final action answered status {}, outside {}..={}",
                response.status,
                FINAL_STATUSES.start(),
                FINAL_STATUSES.end()
            ))),
            Ok(response) => Ok(response),
        }
    }

    /// Hands a batch of audit events to an events plugin.
    pub async fn deliver(
        &self,
        plugin: &LoadedPlugin,
        batch: &[AuditEvent],
    ) -> Result<(), HookError> {
        let hook = Hook::Events;
        let started = Instant::now();
        let result = async {
            let limits = self.limits(plugin, hook);
            let (slot, limits) = self
                .slot_by(plugin, hook, limits, started + limits.deadline)
                .await?;
            let mut store = self.store(plugin, &slot, limits);
            let call = Box::pin(plugin.bindings.deliver(&mut store, batch));
            let outcome = within(limits.deadline + GRACE, call).await;
            finish(plugin, hook, &mut store, outcome)?.map_err(|reason| HookError::Failed {
                plugin: plugin.name.to_string(),
                reason: format!("event sink returned an error: {}", loggable(&reason)),
            })
        }
        .await;
        measured(plugin, hook, started, result)
    }

    /// A fresh store with `limits` (its deadline counted from now), for a call holding
    /// `_slot`.
    fn store(
        &self,
        plugin: &LoadedPlugin,
        _slot: &CallSlot,
        limits: HookLimits,
    ) -> Store<PluginState> {
        let deadline = Instant::now() + limits.deadline;
        let mut store = Store::new(
            &self.engine,
            PluginState::new(
                plugin.name.clone(),
                &plugin.manifest,
                limits.memory_bytes,
                deadline.into(),
                self.ticker.ticking(),
            ),
        );
        store.limiter(|state| state.limiter());
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Ok(UpdateDeadline::Interrupt)
            } else {
                // Yield at every tick so a busy plugin never holds an async worker thread.
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store
    }
}

/// A taken call slot of one hook, with the memories and tables of the pool its call
/// may define; dropping it frees them.
pub struct CallSlot {
    hook: Hook,
    _call: OwnedSemaphorePermit,
    _memories: OwnedSemaphorePermit,
    _tables: OwnedSemaphorePermit,
}

/// A hook's call slots and its share of the pool's memories and tables.
struct PoolShare {
    calls: Arc<Semaphore>,
    memories: Arc<Semaphore>,
    memories_total: u32,
    tables: Arc<Semaphore>,
    tables_total: u32,
}

impl PoolShare {
    /// The share of a hook with `slots` call slots: a few memories and tables per slot,
    /// and never less than one component may define, so any component can run.
    fn new(slots: u32) -> PoolShare {
        let memories_total = slots.saturating_mul(MEMORIES_PER_SLOT).max(MAX_MEMORIES);
        let tables_total = slots.saturating_mul(TABLES_PER_SLOT).max(MAX_TABLES);
        let semaphore = |n: u32| Arc::new(Semaphore::new(n as usize));
        PoolShare {
            calls: semaphore(slots),
            memories: semaphore(memories_total),
            memories_total,
            tables: semaphore(tables_total),
            tables_total,
        }
    }
}

/// A WebAssembly page: the unit of memory sizes.
const WASM_PAGE_BYTES: u64 = 64 * 1024;

/// What one call of a component takes from the pool: its memories and tables, as its
/// core modules define them (the most allowed when that cannot be known), and the
/// initial size of its largest memory (0 when unknown).
#[derive(Clone, Copy, Debug)]
struct PoolNeeds {
    memories: u32,
    tables: u32,
    largest_memory_bytes: u64,
}

impl PoolNeeds {
    fn of(component: &Component) -> PoolNeeds {
        match component.resources_required() {
            Some(r) => PoolNeeds {
                memories: r.num_memories.min(MAX_MEMORIES),
                tables: r.num_tables.min(MAX_TABLES),
                largest_memory_bytes: r
                    .max_initial_memory_size
                    .unwrap_or(0)
                    .saturating_mul(WASM_PAGE_BYTES),
            },
            None => PoolNeeds {
                memories: MAX_MEMORIES,
                tables: MAX_TABLES,
                largest_memory_bytes: 0,
            },
        }
    }
}

/// `n` permits of `semaphore`, waiting for them until `end` (the hook is busy after
/// that). Free permits are taken without setting up a timer.
async fn permits(
    semaphore: &Arc<Semaphore>,
    n: u32,
    end: Instant,
    hook: Hook,
) -> Result<OwnedSemaphorePermit, HookError> {
    match semaphore.clone().try_acquire_many_owned(n) {
        Ok(permit) => Ok(permit),
        Err(TryAcquireError::NoPermits) => {
            tokio::time::timeout_at(end.into(), semaphore.clone().acquire_many_owned(n))
                .await
                .map_err(|_| HookError::Busy(hook))?
                .map_err(|_| HookError::Busy(hook))
        }
        Err(TryAcquireError::Closed) => Err(HookError::Busy(hook)),
    }
}

fn hook_index(hook: Hook) -> usize {
    Hook::ALL
        .iter()
        .position(|h| *h == hook)
        .expect("Hook::ALL lists every hook")
}

/// Runs `call` until `limit` from now. Almost every hook call finishes in its first
/// poll (guest code runs to completion unless it waits on the host or reaches an
/// epoch tick), so the timer is only set up when the call actually has to wait: a
/// tokio timer costs shared-state atomics on every request otherwise.
///
/// The call comes boxed: a hook call's future is over 1 KB, and unboxed it made the
/// futures around it (this one, the runtime's, the registry's) over 4 KB, copied
/// whole each time one is made and moved into the next.
async fn within<F: std::future::Future>(
    limit: Duration,
    mut call: Pin<Box<F>>,
) -> Result<F::Output, tokio::time::error::Elapsed> {
    let started = tokio::time::Instant::now();
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(call.as_mut().poll(cx))).await;
    if let std::task::Poll::Ready(output) = first {
        return Ok(output);
    }
    tokio::time::timeout_at(started + limit, call).await
}

/// Records a finished call (`otp_plugin_calls_total`, `otp_plugin_call_duration_seconds`).
fn measured<T>(
    plugin: &LoadedPlugin,
    hook: Hook,
    started: Instant,
    result: Result<T, HookError>,
) -> Result<T, HookError> {
    if crate::metrics::enabled() {
        let outcome = match &result {
            Ok(_) => "ok",
            Err(HookError::Rejected(_)) => "rejected",
            Err(HookError::Undeliverable(_)) => "undeliverable",
            Err(HookError::Unavailable(_)) => "unavailable",
            Err(HookError::Failed { .. }) => "failed",
            Err(HookError::Unbound(_)) => "unbound",
            Err(HookError::Busy(_)) => "busy",
        };
        crate::metrics::plugin_call(&plugin.name, hook.name(), outcome, started.elapsed());
    }
    result
}

/// The statuses a final action may answer.
pub const FINAL_STATUSES: std::ops::RangeInclusive<u16> = 200..=599;

/// A plugin's reason for rejecting a credential or failing a send, made safe to log.
fn loggable_reason(error: HookError) -> HookError {
    match error {
        HookError::Rejected(reason) => HookError::Rejected(loggable(&reason)),
        HookError::Undeliverable(reason) => HookError::Undeliverable(loggable(&reason)),
        HookError::Unavailable(reason) => HookError::Unavailable(loggable(&reason)),
        other => other,
    }
}

/// Turns the outcome of a call into the hook's result, logging failures with the
/// plugin's name and the reason (escaped and bounded: a trap message can carry a
/// plugin's own text, function names in its backtrace for one).
fn finish<R>(
    plugin: &LoadedPlugin,
    hook: Hook,
    store: &mut Store<PluginState>,
    outcome: Result<wasmtime::Result<R>, tokio::time::error::Elapsed>,
) -> Result<R, HookError> {
    store.data_mut().flush_output();
    let reason = match outcome {
        Ok(Ok(value)) => return Ok(value),
        Err(_) => "deadline exceeded".to_string(),
        Ok(Err(error)) => {
            if store.data().memory_exceeded() {
                "memory cap exceeded".to_string()
            } else if matches!(error.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
                "deadline exceeded".to_string()
            } else {
                loggable(&format!("{error:#}"))
            }
        }
    };
    tracing::warn!(plugin = %plugin.name, %hook, %reason, "plugin call failed");
    Err(HookError::Failed {
        plugin: plugin.name.to_string(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::within;
    use std::time::Duration;

    #[tokio::test]
    async fn within_returns_a_ready_call_without_waiting() {
        assert_eq!(
            within(Duration::ZERO, Box::pin(async { 7 })).await.ok(),
            Some(7)
        );
    }

    #[tokio::test]
    async fn within_lets_a_waiting_call_finish_inside_the_limit() {
        let call = async {
            tokio::task::yield_now().await;
            8
        };
        assert_eq!(
            within(Duration::from_secs(5), Box::pin(call)).await.ok(),
            Some(8)
        );
    }

    #[tokio::test]
    async fn within_stops_a_call_that_waits_past_the_limit() {
        let call = std::future::pending::<()>();
        assert!(within(Duration::from_millis(20), Box::pin(call))
            .await
            .is_err());
    }
}
