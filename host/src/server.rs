//! Assembling and running the server: logging, the plugin runtime and hot reload,
//! keys and stores with their background tasks, the HTTP listener, and graceful
//! shutdown on SIGTERM or Ctrl-C.

use crate::clock::{Clock, OffsetClock, SystemClock};
use crate::config::{Config, Mode};
use crate::crypto::KeyRing;
use crate::http::{router, AppState};
use crate::plugins::{PluginRegistry, PluginRuntime, PluginWatcher};
use crate::service::OtpService;
use crate::store::{IdStore, MemoryIdStore};
use anyhow::Context;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Logs go to stderr, filtered by `OTP_LOG` / `log` (an `EnvFilter` directive).
pub fn init_tracing(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}

pub async fn run(config: Config) -> anyhow::Result<()> {
    let test_clock = config.test_clock.then(|| Arc::new(OffsetClock::new()));
    let clock: Arc<dyn Clock> = match &test_clock {
        Some(clock) => clock.clone(),
        None => Arc::new(SystemClock),
    };

    std::fs::create_dir_all(&config.plugins_dir)
        .with_context(|| format!("plugins folder {}", config.plugins_dir.display()))?;
    let runtime = Arc::new(PluginRuntime::new(config.runtime.clone())?);
    let registry = Arc::new(PluginRegistry::new(
        runtime,
        config.plugins_dir.clone(),
        config.hook_preferences.clone(),
        config.mode == Mode::Production,
    ));
    let _watcher = PluginWatcher::start(registry.clone())
        .with_context(|| format!("watching {}", config.plugins_dir.display()))?;
    registry
        .load_all()
        .await
        .with_context(|| format!("reading {}", config.plugins_dir.display()))?;

    let now = clock.now_ms();
    let keys = Arc::new(KeyRing::new(now, config.otp.session_max_age_ms));
    let ids = Arc::new(MemoryIdStore::new());
    let _sweeper = ids
        .clone()
        .spawn_sweeper(clock.clone(), Duration::from_secs(1));
    let _rotation = spawn_key_rotation(keys.clone(), clock.clone(), config.kek_rotation);

    let service = Arc::new(OtpService::new(
        config.otp.clone(),
        keys,
        ids as Arc<dyn IdStore>,
        clock,
        registry.clone(),
    ));
    let state = AppState {
        service,
        registry,
        mode: config.mode,
        cors_origin: config
            .cors_origin
            .as_deref()
            .and_then(|o| axum::http::HeaderValue::from_str(o).ok()),
        test_clock,
    };

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let address = listener.local_addr()?;
    tracing::info!(%address, mode = ?config.mode, plugins = %config.plugins_dir.display(), "otp-server listening");
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await?;
    tracing::info!("otp-server stopped");
    Ok(())
}

/// Rotates the key-encryption key on schedule and forgets retired keys once no
/// cookie sealed with them can still be live.
fn spawn_key_rotation(
    keys: Arc<KeyRing>,
    clock: Arc<dyn Clock>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1).min(every));
        loop {
            tick.tick().await;
            let now = clock.now_ms();
            keys.rotate_if_due(now, every.as_millis() as u64);
            keys.prune(now);
        }
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
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
