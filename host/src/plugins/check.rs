//! `otp-server plugins check FILE.wasm`: tells a plugin author which hooks a file
//! provides, what it imports, and why the server would reject it — before the file
//! goes into the plugins folder. A manifest `FILE.toml` beside it is checked too, by
//! the server's own rules: `${VAR}` references resolve from the current environment,
//! only for the variables the configuration makes available to plugins
//! (`OTP_PLUGIN_*` and `plugin_env`); values are never printed.

use super::manifest::PluginEnv;
use super::runtime::{LoadError, PluginRuntime, RuntimeOptions};
use super::v0_1_0;
use std::fmt::Write;
use std::path::Path;

/// The outcome of checking one file: a human-readable report and whether the server
/// would accept the file.
pub struct CheckReport {
    pub accepted: bool,
    pub text: String,
}

pub fn check_file(path: &Path, env: &PluginEnv) -> anyhow::Result<CheckReport> {
    let bytes =
        std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let runtime = PluginRuntime::new(RuntimeOptions {
        max_concurrent_calls: 1,
        ..RuntimeOptions::default()
    })?;
    let name = super::registry::plugin_name(path).unwrap_or_else(|| "plugin".to_string());
    let mut text = String::new();
    let _ = writeln!(text, "file: {}", path.display());
    let loaded = runtime.load(&name, &bytes).and_then(|plugin| {
        let manifest_path = path.with_extension("toml");
        match std::fs::read_to_string(&manifest_path) {
            Ok(source) => {
                let manifest =
                    super::manifest::Manifest::parse(&source, env, runtime.max_memory_bytes())?;
                let _ = writeln!(
                    text,
                    "manifest: {} (outbound: {}; config keys: {})",
                    manifest_path.display(),
                    none_if_empty(
                        manifest
                            .outbound
                            .allow
                            .rules()
                            .iter()
                            .map(|r| r.as_str())
                            .collect()
                    ),
                    none_if_empty(manifest.config_keys()),
                );
                Ok(plugin.with_manifest(manifest)?)
            }
            Err(_) => Ok(plugin),
        }
    });
    let accepted = match loaded {
        Ok(plugin) => {
            let _ = writeln!(text, "version: {}", plugin.version);
            let hooks: Vec<&str> = plugin.hooks.iter().map(|h| h.name()).collect();
            let _ = writeln!(text, "hooks: {}", hooks.join(", "));
            list(&mut text, "imports", &plugin.imports);
            list(&mut text, "exports", &plugin.exports);
            let unknown: Vec<&String> = plugin
                .exports
                .iter()
                .filter(|e| {
                    v0_1_0::is_our_package(e)
                        && !plugin.hooks.iter().any(|h| v0_1_0::export_name(*h) == **e)
                })
                .collect();
            for e in unknown {
                let _ = writeln!(text, "note: export {e} is not a hook this server knows");
            }
            let _ = writeln!(text, "result: accepted");
            true
        }
        Err(error) => {
            if let LoadError::NoHooks(_) = &error {
                let _ = writeln!(
                    text,
                    "hint: export at least one of {}",
                    super::Hook::ALL.map(v0_1_0::export_name).join(", ")
                );
            }
            let _ = writeln!(text, "result: rejected: {error}");
            false
        }
    };
    Ok(CheckReport { accepted, text })
}

fn none_if_empty(items: Vec<&str>) -> String {
    if items.is_empty() {
        "none".to_string()
    } else {
        items.join(", ")
    }
}

fn list(text: &mut String, title: &str, items: &[String]) {
    if items.is_empty() {
        let _ = writeln!(text, "{title}: none");
    } else {
        let _ = writeln!(text, "{title}:");
        for item in items {
            let _ = writeln!(text, "  {item}");
        }
    }
}
