//! Assembling and running the server: logging, the plugin runtime and hot reload,
//! keys and stores with their background tasks, the public HTTP listener and the admin
//! listener (metrics are on when it is), and graceful shutdown on SIGTERM or Ctrl-C.

use crate::clock::{Clock, OffsetClock, SystemClock};
use crate::config::{Config, Mode, StoreConfig};
use crate::crypto::{KeyStore, MasterKey, MasterKeys, MemoryKeyStore};
use crate::events::{spawn_delivery, AuditLog, Subject};
use crate::http::admin::AdminState;
use crate::http::client::ClientAddresses;
use crate::http::{edge, router, App, AppState};
use crate::limits::measured::MeasuredLimiterStore;
use crate::limits::memory::MemoryLimiterStore;
use crate::limits::redis::RedisLimiterStore;
use crate::limits::LimiterStore;
use crate::limits::{KeyHasher, Limits};
use crate::metrics::Metrics;
use crate::plugins::{PluginRegistry, PluginRuntime, PluginWatcher};
use crate::service::OtpService;
use crate::store::redis::{IdPlacement, RedisConnection, RedisIdStore, RedisKeyStore, WhenEmpty};
use crate::store::{IdStore, MeasuredIdStore, MemoryIdStore};
use anyhow::Context;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub async fn run(config: Config) -> anyhow::Result<()> {
    let test_clock = config.test_clock.then(|| Arc::new(OffsetClock::new()));
    let clock: Arc<dyn Clock> = match &test_clock {
        Some(clock) => clock.clone(),
        None => Arc::new(SystemClock),
    };

    // Metrics are recorded only when the admin listener can serve them (from the start,
    // so the first plugin loads are counted).
    let metrics = config.admin.as_ref().map(|_| Metrics::install());
    std::fs::create_dir_all(&config.plugins_dir)
        .with_context(|| format!("plugins folder {}", config.plugins_dir.display()))?;
    let (audit, audit_queue) = AuditLog::new(
        config.events.clone(),
        audit_subject_key(&config)?,
        clock.clone(),
    );
    let audit = Arc::new(audit);
    let runtime = Arc::new(PluginRuntime::new(config.runtime.clone())?);
    let registry = Arc::new(
        PluginRegistry::new(
            runtime,
            config.plugins_dir.clone(),
            config.hook_choices.clone(),
            config.mode == Mode::Production,
        )
        .with_audit(audit.clone())
        .with_env(config.plugin_env.clone()),
    );
    let delivery = spawn_delivery(audit_queue, registry.clone(), audit.counts().clone());
    let _watcher = PluginWatcher::start(registry.clone())
        .with_context(|| format!("watching {}", config.plugins_dir.display()))?;
    registry
        .load_all()
        .await
        .with_context(|| format!("reading {}", config.plugins_dir.display()))?;

    let (keys, ids) = open_stores(&config, clock.clone()).await?;
    // The shared store's calls are timed and their failures counted; the in-memory one
    // answers in well under a microsecond and cannot fail, so it is not wrapped.
    let ids: Arc<dyn IdStore> = match (metrics, &config.store) {
        (Some(_), StoreConfig::Redis { .. }) => Arc::new(MeasuredIdStore::new(ids)),
        _ => ids,
    };
    let rotation_requested = Arc::new(AtomicBool::new(false));
    let _maintenance = spawn_key_maintenance(
        keys.clone(),
        clock.clone(),
        audit.clone(),
        rotation_requested.clone(),
    );
    let limits = Arc::new(open_limits(&config, clock.clone(), metrics.is_some())?);
    let service = Arc::new(OtpService::new(
        config.otp.clone(),
        keys.clone(),
        ids,
        clock.clone(),
        registry.clone(),
        audit.clone(),
        limits,
    ));
    let clients = Arc::new(ClientAddresses::new(
        config.limits.trusted_proxies.clone(),
        config.limits.client_address_header,
    ));
    let state = AppState::new(App {
        service,
        registry,
        audit,
        mode: config.mode,
        cors_origin: config
            .cors_origin
            .as_deref()
            .and_then(|o| axum::http::HeaderValue::from_str(o).ok()),
        test_clock,
        access_log: config.access_log,
        demo: config.demo,
        ready_cache: Default::default(),
        clients: clients.clone(),
    });

    // One signal stops both listeners; each drains its own connections.
    let signal = shutdown_signal();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let shutdown = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let admin = match (&config.admin, metrics) {
        (Some(admin), Some(metrics)) => {
            let listener = tokio::net::TcpListener::bind(admin.listen)
                .await
                .with_context(|| format!("admin listener: cannot listen on {}", admin.listen))?;
            let address = listener.local_addr()?;
            tracing::info!(%address, token = admin.requires_token(), "admin listener");
            let state = AdminState::new(
                state.clone(),
                keys,
                clock,
                metrics,
                admin,
                rotation_requested,
            );
            Some(tokio::spawn(edge::serve(
                listener,
                crate::http::admin::router(state),
                config.edge,
                Arc::new(ClientAddresses::default()),
                shutdown(stopped.clone()),
            )))
        }
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let address = listener.local_addr()?;
    tracing::info!(%address, mode = ?config.mode, plugins = %config.plugins_dir.display(), "otp-server listening");
    let public = tokio::spawn(edge::serve(
        listener,
        router(state),
        config.edge,
        clients,
        shutdown(stopped),
    ));
    signal.await;
    let _ = stop.send(true);
    let _ = public.await;
    if let Some(admin) = admin {
        let _ = admin.await;
    }
    // The requests are done: what they queued for the audit trail goes out now.
    delivery.finish(EVENTS_FLUSH_GRACE).await;
    tracing::info!("otp-server stopped");
    Ok(())
}

/// How long audit events still queued at shutdown may take to reach the events plugin;
/// what is left then is counted as failed.
const EVENTS_FLUSH_GRACE: Duration = Duration::from_secs(5);

/// The id store and key store the configuration asks for. In Redis mode this waits
/// (up to a minute) for Redis to answer, so instances restarted together with Redis
/// come up by themselves; a wrong master key stops start-up with that message.
async fn open_stores(
    config: &Config,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<(Arc<dyn KeyStore>, Arc<dyn IdStore>)> {
    let retention = config.otp.session_max_age_ms;
    let rotation = config.kek_rotation.as_millis() as u64;
    match &config.store {
        StoreConfig::Memory => {
            let ids = Arc::new(MemoryIdStore::new());
            // The sweeper holds the store weakly and stops by itself when it is dropped,
            // so its handle need not be kept.
            drop(
                ids.clone()
                    .spawn_sweeper(clock.clone(), Duration::from_secs(1)),
            );
            let keys = Arc::new(MemoryKeyStore::new(clock.now_ms(), retention, rotation));
            Ok((keys, ids))
        }
        StoreConfig::Redis {
            url,
            prefix,
            timeout,
            master_key,
            master_key_previous,
        } => {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let redis = RedisConnection::new(url, prefix, *timeout)?;
            let started = std::time::Instant::now();
            let keys = loop {
                match RedisKeyStore::connect(
                    redis.clone(),
                    MasterKeys::from_base64(master_key, master_key_previous.as_deref())?,
                    clock.now_ms(),
                    retention,
                    rotation,
                    WhenEmpty::Create,
                )
                .await
                {
                    Ok(keys) => break keys,
                    Err(crate::store::redis::KeyStoreError::Store(error))
                        if started.elapsed() < Duration::from_secs(60) =>
                    {
                        tracing::warn!(%error, "waiting for Redis");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    // Another holder of the rotation lock (perhaps one that crashed: the
                    // lock expires by itself) kept the shared key from settling.
                    Err(error @ crate::store::redis::KeyStoreError::Busy)
                        if started.elapsed() < Duration::from_secs(60) =>
                    {
                        tracing::warn!(%error, "waiting for the shared key-encryption key");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    Err(error) => anyhow::bail!("Redis key store: {error}"),
                }
            };
            tracing::info!(prefix = %prefix, "session ids and key-encryption keys are shared through Redis");
            // With the limits on, every request reaches the limiter's slot: new sessions
            // go there too, so a Cluster makes a request's charge and id change in one
            // script.
            let placement = match config.limits.enabled {
                true => IdPlacement::WithLimiter,
                false => IdPlacement::Spread,
            };
            Ok((
                Arc::new(keys),
                Arc::new(RedisIdStore::new(redis, placement)),
            ))
        }
    }
}

/// The key that names credentials in audit events: derived from the master key when
/// instances share one (so they name a credential alike), else random per process.
fn audit_subject_key(config: &Config) -> anyhow::Result<[u8; 32]> {
    Ok(match &config.store {
        StoreConfig::Redis { master_key, .. } => {
            MasterKey::from_base64(master_key)?.derive("otp-server audit subject v1")
        }
        StoreConfig::Memory => {
            let mut key = [0u8; 32];
            crate::os_random::fill(&mut key);
            key
        }
    })
}

/// The abuse controls on the store the configuration asks for: in memory (this
/// process's clock and a random key secret) or in Redis (its own connection, Redis
/// `TIME`, and a key secret derived from the master key so all instances agree). With
/// metrics on, the Redis store's calls are timed and counted like the session store's.
fn open_limits(config: &Config, clock: Arc<dyn Clock>, measured: bool) -> anyhow::Result<Limits> {
    let limits = config.limits.clone();
    if !limits.enabled {
        tracing::warn!("abuse controls are OFF ([limits] enabled = false)");
    }
    Ok(match &config.store {
        StoreConfig::Memory => {
            let store = Arc::new(MemoryLimiterStore::new(clock, limits.memory_max_keys));
            store.spawn_sweeper(Duration::from_millis(500));
            Limits::new(limits, KeyHasher::random(), store)
        }
        StoreConfig::Redis {
            url,
            prefix,
            timeout,
            master_key,
            ..
        } => {
            let redis = RedisConnection::new(url, prefix, *timeout)?;
            let secret = MasterKey::from_base64(master_key)?.derive("otp-server limiter keys v1");
            let mut store: Arc<dyn LimiterStore> = Arc::new(RedisLimiterStore::new(redis));
            if measured {
                store = Arc::new(MeasuredLimiterStore::new(store));
            }
            Limits::new(
                limits,
                KeyHasher::new(zeroize::Zeroizing::new(secret)),
                store,
            )
        }
    })
}

/// Rotates key-encryption keys on schedule, adopts rotations done by other instances
/// and forgets keys no live cookie can use. This loop alone announces a change of the
/// current key — here, requested on the admin listener (`requested` is then set), or
/// adopted from another instance — as one `kek.rotated` audit event and one count, so a
/// rotation is never announced twice.
fn spawn_key_maintenance(
    keys: Arc<dyn KeyStore>,
    clock: Arc<dyn Clock>,
    audit: Arc<AuditLog>,
    requested: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut announced = keys.current().id();
        loop {
            tick.tick().await;
            if let Err(error) = keys.maintain(clock.now_ms()).await {
                tracing::warn!(%error, "key maintenance failed; retrying");
            }
            let current = keys.current().id();
            if current != announced {
                let reason = if requested.swap(false, Ordering::Relaxed) {
                    "requested"
                } else {
                    "scheduled or adopted"
                };
                crate::metrics::kek_rotated();
                audit.emit("kek.rotated", Subject::None, || {
                    serde_json::json!({
                        "keyId": current.to_string(),
                        "previous": announced.to_string(),
                        "reason": reason,
                    })
                });
                announced = current;
            }
        }
    })
}

/// Resolves on SIGTERM or Ctrl-C. The handlers are registered when this is called,
/// not when the future is first polled, so a signal sent right after the "listening"
/// line is never missed.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let ctrl_c = tokio::signal::ctrl_c();
    async move {
        #[cfg(unix)]
        let terminate = async move {
            match terminate {
                Some(mut signal) => {
                    signal.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {},
            _ = terminate => {},
        }
        tracing::info!("shutting down");
    }
}
