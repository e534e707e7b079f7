//! The plugin's configuration: the `[config]` table of its manifest (`NAME.toml` beside
//! `NAME.wasm`), read through `wasi:config/store`.
//!
//! A plugin sees only its own values — never another plugin's, never the server's
//! environment. Secrets are referenced in the manifest as `"${ENV_VAR}"` and resolved by
//! the server when it loads the manifest, so they reach the plugin as plain values here.
//! Without a manifest there are no values. Natively (e.g. in `cargo test`) there is no
//! host: every lookup finds nothing.
//!
//! ```no_run
//! let url = otp_plugin_sdk::config::require("url").unwrap();
//! let ttl: u64 = otp_plugin_sdk::config::get("ttl").and_then(|v| v.parse().ok()).unwrap_or(3600);
//! ```

/// Bindings for `wasi:config/store@0.2.0-rc.1` (the version wasmtime implements).
#[cfg(target_arch = "wasm32")]
#[allow(missing_docs, clippy::all, unsafe_op_in_unsafe_fn)]
mod bindings {
    wit_bindgen::generate!({
        path: "wit/wasi-config",
        world: "wasi:config/imports@0.2.0-rc.1",
    });
}

/// The value of `key`, if the manifest sets it.
pub fn get(key: &str) -> Option<String> {
    #[cfg(target_arch = "wasm32")]
    {
        bindings::wasi::config::store::get(key).ok().flatten()
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = key;
        None
    }
}

/// The value of `key`, or an error message naming the missing key (fit for a hook's
/// `Err`).
pub fn require(key: &str) -> Result<String, String> {
    get(key).ok_or_else(|| format!("the manifest's [config] has no {key:?}"))
}

/// Every key and value the plugin is configured with.
pub fn get_all() -> Vec<(String, String)> {
    #[cfg(target_arch = "wasm32")]
    {
        bindings::wasi::config::store::get_all().unwrap_or_default()
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn natively_nothing_is_configured() {
        assert_eq!(super::get("url"), None);
        assert!(super::get_all().is_empty());
        assert!(super::require("url").unwrap_err().contains("\"url\""));
    }
}
