//! Hot reload: watches the plugins folder and reloads a plugin when its `.wasm` file
//! or its `.toml` manifest appears, changes or goes.
//!
//! Events are debounced, and a file is only read once its size and modification time
//! have stopped changing, so a file being copied in does not replace a working plugin
//! with half a component. The safest way to install a plugin is still to write it
//! elsewhere (or under a hidden name) and rename it into the folder.

use super::registry::{plugin_name_of_file, PluginRegistry};
use notify::{RecursiveMode, Watcher};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Quiet time after the last event before acting on a burst of events.
const DEBOUNCE: Duration = Duration::from_millis(150);
/// How often a file is checked while waiting for it to settle.
const SETTLE_POLL: Duration = Duration::from_millis(60);
/// Give up waiting for a file that keeps changing after this long (and load it anyway:
/// a broken file is rejected and the previous version keeps serving).
const SETTLE_MAX: Duration = Duration::from_secs(5);

/// Keeps the watcher alive; dropping it stops hot reload.
pub struct PluginWatcher {
    _watcher: notify::RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PluginWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PluginWatcher {
    pub fn start(registry: Arc<PluginRegistry>) -> notify::Result<PluginWatcher> {
        let (tx, rx) = mpsc::unbounded_channel::<PathBuf>();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
                Ok(event) => {
                    for path in event.paths {
                        let _ = tx.send(path);
                    }
                }
                Err(error) => tracing::warn!(%error, "plugin folder watch error"),
            })?;
        watcher.watch(registry.dir(), RecursiveMode::NonRecursive)?;
        let task = tokio::spawn(run(registry, rx));
        Ok(PluginWatcher {
            _watcher: watcher,
            task,
        })
    }
}

async fn run(registry: Arc<PluginRegistry>, mut events: mpsc::UnboundedReceiver<PathBuf>) {
    while let Some(first) = events.recv().await {
        let mut paths = BTreeSet::from([first]);
        loop {
            match tokio::time::timeout(DEBOUNCE, events.recv()).await {
                Ok(Some(path)) => {
                    paths.insert(path);
                }
                Ok(None) => return,
                Err(_quiet) => break,
            }
        }
        for path in paths {
            if plugin_name_of_file(&path).is_none() {
                continue;
            }
            wait_until_settled(&path).await;
            registry.reload_file(&path).await;
        }
    }
}

/// Waits until two looks at the file, [`SETTLE_POLL`] apart, agree on its size and
/// modification time (or the file is gone).
async fn wait_until_settled(path: &Path) {
    let look = |p: &Path| {
        std::fs::metadata(p)
            .ok()
            .map(|m| (m.len(), m.modified().ok()))
    };
    let started = tokio::time::Instant::now();
    let mut last = look(path);
    loop {
        if last.is_none() || started.elapsed() > SETTLE_MAX {
            return;
        }
        tokio::time::sleep(SETTLE_POLL).await;
        let now = look(path);
        if now == last {
            return;
        }
        last = now;
    }
}
