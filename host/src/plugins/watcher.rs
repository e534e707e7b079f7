//! Hot reload: watches the plugins folder and reloads a plugin when its `.wasm` file
//! or its `.toml` manifest appears, changes or goes.
//!
//! Events are debounced, and a plugin is only reloaded once both its files' sizes and
//! modification times have stopped changing, so a file being copied in does not replace
//! a working plugin with half a component. The safest way to install a plugin is still
//! to write it elsewhere (or under a hidden name) and rename it into the folder. When
//! events may have been lost (the kernel's event queue overflowed, or the watch reported
//! an error), every plugin loaded or refused at its last load, and every plugin file in
//! the folder, is looked at again.

use super::registry::{plugin_name_of_file, PluginRegistry};
use crate::logging::LogThrottle;
use notify::event::{AccessKind, AccessMode, EventKind};
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
/// A burst is acted on after this long even if events keep coming.
const BURST_MAX: Duration = Duration::from_secs(1);

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
        let (tx, rx) = mpsc::unbounded_channel::<Change>();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                for change in changes(event) {
                    let _ = tx.send(change);
                }
            })?;
        watcher.watch(registry.dir(), RecursiveMode::NonRecursive)?;
        let task = tokio::spawn(run(registry, rx));
        Ok(PluginWatcher {
            _watcher: watcher,
            task,
        })
    }
}

/// What the watch reports to the reload task.
#[derive(Debug, PartialEq, Eq)]
enum Change {
    /// Something happened to this file.
    File(PathBuf),
    /// Events may have been lost: look at everything again.
    Rescan,
}

/// The changes one notification stands for.
fn changes(event: notify::Result<notify::Event>) -> Vec<Change> {
    match event {
        // An overflowed queue arrives as an event without paths that asks for a rescan.
        Ok(event) if event.need_rescan() => {
            tracing::warn!("plugin folder events were lost: looking at every plugin again");
            vec![Change::Rescan]
        }
        Ok(event) if !may_change_content(&event.kind) => Vec::new(),
        Ok(event) => event.paths.into_iter().map(Change::File).collect(),
        Err(error) => {
            // A watch that keeps failing says so once a minute, with a count.
            static ERRORS: LogThrottle = LogThrottle::new(Duration::from_secs(60));
            if let Some(count) = ERRORS.count() {
                tracing::warn!(%error, count, "plugin folder watch error: looking at every plugin again");
            }
            vec![Change::Rescan]
        }
    }
}

/// Whether an event of this kind may mean a file's content changed. Opening a file
/// does not (the watch reports opens): the registry's own reads of a plugin's files
/// would otherwise set off a reload, whose reads set off the next, for ever. Closing a
/// file that was open for writing does: a writer has finished.
fn may_change_content(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

async fn run(registry: Arc<PluginRegistry>, mut changes: mpsc::UnboundedReceiver<Change>) {
    while let Some(first) = changes.recv().await {
        let mut burst = Burst::default();
        burst.add(first);
        let ends = tokio::time::Instant::now() + BURST_MAX;
        loop {
            let quiet = (tokio::time::Instant::now() + DEBOUNCE).min(ends);
            match tokio::time::timeout_at(quiet, changes.recv()).await {
                Ok(Some(change)) => burst.add(change),
                Ok(None) => return,
                Err(_quiet_or_long_enough) => break,
            }
        }
        let known = || {
            let state = registry.snapshot();
            let loaded = state.plugins.keys();
            loaded.chain(state.load_errors.keys()).cloned().collect()
        };
        for name in plugins_to_reload(registry.dir(), &burst, known) {
            for extension in ["wasm", "toml"] {
                wait_until_settled(&registry.dir().join(format!("{name}.{extension}"))).await;
            }
            registry.reload(&name).await;
        }
    }
}

/// The changes of one burst: each file once, and whether to rescan.
#[derive(Default)]
struct Burst {
    files: BTreeSet<PathBuf>,
    rescan: bool,
}

impl Burst {
    fn add(&mut self, change: Change) {
        match change {
            Change::File(path) => {
                self.files.insert(path);
            }
            Change::Rescan => self.rescan = true,
        }
    }
}

/// The plugins a burst of changes concerns, by name: those whose `.wasm` file or
/// manifest changed and, after a [`Change::Rescan`], every plugin the registry `known`s
/// (loaded, or refused at its last load) and every plugin file in `dir`. Other files
/// (hidden or temporary ones, for example) concern none.
fn plugins_to_reload(
    dir: &Path,
    burst: &Burst,
    known: impl FnOnce() -> BTreeSet<String>,
) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = burst
        .files
        .iter()
        .filter_map(|path| plugin_name_of_file(path))
        .collect();
    if burst.rescan {
        names.extend(known());
        match std::fs::read_dir(dir) {
            Ok(entries) => {
                names.extend(entries.filter_map(|e| plugin_name_of_file(&e.ok()?.path())))
            }
            Err(error) => tracing::warn!(%error, "cannot list the plugin folder"),
        }
    }
    names
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

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, Flag, ModifyKind, RemoveKind};

    #[test]
    fn lost_events_and_watch_errors_ask_for_a_rescan() {
        let overflow = notify::Event::new(EventKind::Other).set_flag(Flag::Rescan);
        assert_eq!(changes(Ok(overflow)), [Change::Rescan]);
        assert_eq!(
            changes(Err(notify::Error::generic("inotify went away"))),
            [Change::Rescan]
        );
        let created = notify::Event::new(EventKind::Any)
            .add_path("/p/a.wasm".into())
            .add_path("/p/a.toml".into());
        assert_eq!(
            changes(Ok(created)),
            [
                Change::File("/p/a.wasm".into()),
                Change::File("/p/a.toml".into())
            ]
        );
    }

    #[test]
    fn opening_a_file_is_no_change_and_a_finished_write_is() {
        let event = |kind| notify::Event::new(kind).add_path("/p/a.wasm".into());
        let file = || vec![Change::File("/p/a.wasm".into())];
        for kind in [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Open(AccessMode::Read)),
            EventKind::Access(AccessKind::Read),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
        ] {
            assert_eq!(changes(Ok(event(kind))), [], "{kind:?}");
        }
        for kind in [
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            EventKind::Create(CreateKind::File),
            EventKind::Modify(ModifyKind::Any),
            EventKind::Remove(RemoveKind::File),
            EventKind::Any,
        ] {
            assert_eq!(changes(Ok(event(kind))), file(), "{kind:?}");
        }
    }

    fn burst_of<const N: usize>(changes: [Change; N]) -> Burst {
        let mut burst = Burst::default();
        for change in changes {
            burst.add(change);
        }
        burst
    }

    #[test]
    fn a_burst_concerns_its_plugins_and_a_rescan_all_of_them() {
        let dir = crate::test_dir("watcher");
        for file in [
            "a.wasm",
            "b.toml",
            ".c.wasm.tmp",
            "notes.txt",
            "d.wasm",
            "d.toml",
        ] {
            std::fs::write(dir.join(file), b"").unwrap();
        }
        let set = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>();
        let unasked = || -> BTreeSet<String> { panic!("no rescan, so the registry is not asked") };

        // Events name their plugins, once each, whichever of its two files changed;
        // hidden and other files concern none.
        let burst = burst_of([
            Change::File(dir.join("x.wasm")),
            Change::File(dir.join("x.toml")),
            Change::File(dir.join(".y.wasm.tmp")),
            Change::File(dir.join("notes.txt")),
            Change::File(dir.join("x.wasm")),
        ]);
        assert_eq!(plugins_to_reload(&dir, &burst, unasked), set(&["x"]));

        // A rescan adds every plugin the registry knows (one whose files are gone is
        // unloaded by its reload) and every plugin file in the folder.
        let burst = burst_of([
            Change::File(dir.join("x.wasm")),
            Change::Rescan,
            Change::Rescan,
        ]);
        assert_eq!(
            plugins_to_reload(&dir, &burst, || set(&["gone", "a"])),
            set(&["a", "b", "d", "gone", "x"])
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
