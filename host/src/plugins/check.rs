//! `otp-server plugins check FILE.wasm`: tells a plugin author which hooks a file
//! provides, for which contract version, what it imports, and why the server would
//! reject it — before the file goes into the plugins folder. The file is loaded through
//! the same function the server uses ([`load_plugin`]), so a manifest `FILE.toml` beside
//! it is checked exactly as the server would: `${VAR}` references resolve from the
//! current environment, only for the variables the configuration makes available to
//! plugins (`OTP_PLUGIN_*` and `plugin_env`); values are never printed. Limits are the
//! configuration's too (per-hook memory caps), so a file is accepted here exactly when
//! the server would accept it.

use super::load::{load_plugin, manifest_path, PluginFileError};
use super::manifest::PluginEnv;
use super::runtime::{LoadError, PluginRuntime, RuntimeOptions};
use super::versions::{self, ContractVersion, DetectError};
use std::fmt::Write;
use std::path::Path;

/// The outcome of checking one file: a human-readable report and whether the server
/// would accept the file.
pub struct CheckReport {
    pub accepted: bool,
    pub text: String,
}

/// Checks `path` as a server with `options` (its per-hook limits: a manifest's
/// `memory_mib` and a component's initial memory are judged against them) and `env`
/// would load it.
pub fn check_file(
    path: &Path,
    options: &RuntimeOptions,
    env: &PluginEnv,
) -> anyhow::Result<CheckReport> {
    let runtime = PluginRuntime::new(RuntimeOptions {
        validate_slots: 1,
        send_slots: 1,
        final_slots: 1,
        cache_dir: None,
        ..options.clone()
    })?;
    let name = super::registry::plugin_name(path).unwrap_or_else(|| "plugin".to_string());
    let mut text = String::new();
    let _ = writeln!(text, "file: {}", path.display());
    let accepted = match load_plugin(&runtime, &name, path, env, None) {
        Ok(plugin) => {
            let manifest = &plugin.manifest;
            if !manifest.digest.is_empty() {
                let _ = writeln!(
                    text,
                    "manifest: {} (outbound: {}; config keys: {})",
                    manifest_path(path).display(),
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
            }
            let _ = writeln!(text, "contract: otp:plugin@{}", plugin.contract);
            let _ = writeln!(text, "version: {}", plugin.version);
            let hooks: Vec<&str> = plugin.hooks.iter().map(|h| h.name()).collect();
            let _ = writeln!(text, "hooks: {}", hooks.join(", "));
            list(&mut text, "imports", &plugin.imports);
            list(&mut text, "exports", &plugin.exports);
            for e in plugin
                .exports
                .iter()
                .filter(|e| versions::is_unknown_hook_export(e, plugin.contract))
            {
                let _ = writeln!(text, "note: export {e} is not a hook this server knows");
            }
            let _ = writeln!(text, "result: accepted");
            true
        }
        Err(PluginFileError::Missing(_)) => {
            anyhow::bail!("cannot read {}: no such file", path.display())
        }
        Err(error) => {
            if let PluginFileError::Load(LoadError::Contract(DetectError::NoHooks { .. })) = &error
            {
                let newest = ContractVersion::ALL[ContractVersion::ALL.len() - 1];
                let _ = writeln!(
                    text,
                    "hint: export at least one of {}",
                    newest
                        .hooks()
                        .iter()
                        .map(|h| newest.export_name(*h))
                        .collect::<Vec<_>>()
                        .join(", ")
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
