//! Making a plugin from its files: `NAME.wasm` and, beside it, the optional manifest
//! `NAME.toml`. This is the one path both the server's registry and
//! `otp-server plugins check` load plugins through, so the two can never disagree
//! about what a file (or an unreadable manifest) means.

use super::manifest::{Manifest, ManifestError, PluginEnv};
use super::runtime::{LoadError, LoadedPlugin, PluginRuntime};
use std::path::{Path, PathBuf};

/// Why a plugin's files could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PluginFileError {
    /// `NAME.wasm` does not exist (the plugin was removed).
    #[error("{0} does not exist")]
    Missing(PathBuf),
    #[error("cannot read {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("{file}: {error}")]
    Manifest { file: String, error: ManifestError },
    #[error("{0}")]
    Load(#[from] LoadError),
}

/// The manifest path of a plugin file: `DIR/NAME.toml` for `DIR/NAME.wasm`.
pub fn manifest_path(wasm: &Path) -> PathBuf {
    wasm.with_extension("toml")
}

/// Reads, compiles and checks the plugin `name` at `wasm` with its manifest. When
/// `previous` is the same code (same digest), its compiled form is reused and only the
/// manifest is applied again. Compiling is CPU-heavy: call it off the async runtime.
pub fn load_plugin(
    runtime: &PluginRuntime,
    name: &str,
    wasm: &Path,
    env: &PluginEnv,
    previous: Option<&LoadedPlugin>,
) -> Result<LoadedPlugin, PluginFileError> {
    let bytes = match std::fs::read(wasm) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(PluginFileError::Missing(wasm.to_path_buf()))
        }
        Err(e) => {
            return Err(PluginFileError::Read {
                path: wasm.to_path_buf(),
                message: e.to_string(),
            })
        }
    };
    let restricted = previous.is_some_and(|p| p.manifest.restricts_binding());
    let manifest = read_manifest(runtime, wasm, env, restricted)?;
    let version = version_of(&bytes);
    let plugin = match previous.filter(|p| p.version == version) {
        Some(same_code) => apply(same_code, manifest, wasm)?,
        None => apply(&runtime.load(name, &bytes)?, manifest, wasm)?,
    };
    runtime.check_fits(&plugin)?;
    Ok(plugin)
}

fn apply(
    compiled: &LoadedPlugin,
    manifest: Manifest,
    wasm: &Path,
) -> Result<LoadedPlugin, PluginFileError> {
    compiled
        .with_manifest(manifest)
        .map_err(|error| manifest_error(wasm, error))
}

/// `NAME.toml`, or the empty manifest when there is none. A manifest that exists but
/// cannot be read is an error, never "no manifest": that would drop its restrictions.
/// So is a manifest that went away from a plugin whose running manifest restricts its
/// `hooks` or `channels` (`restricted`): the restriction would go with it, so the
/// running version keeps serving until the operator writes a manifest without one or
/// removes the plugin. (Other fields only grant: without them a plugin can do less.)
fn read_manifest(
    runtime: &PluginRuntime,
    wasm: &Path,
    env: &PluginEnv,
    restricted: bool,
) -> Result<Manifest, PluginFileError> {
    let path = manifest_path(wasm);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && restricted => {
            return Err(manifest_error(wasm, ManifestError::Removed))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Manifest::default()),
        Err(e) => return Err(manifest_error(wasm, ManifestError::Read(e.to_string()))),
    };
    Manifest::parse(&text, env, runtime.max_memory_bytes()).map_err(|e| manifest_error(wasm, e))
}

fn manifest_error(wasm: &Path, error: ManifestError) -> PluginFileError {
    let file = manifest_path(wasm)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    PluginFileError::Manifest { file, error }
}

/// The first 12 hex digits of a file's SHA-256: a plugin's version.
pub fn version_of(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(bytes)[..6])
}
