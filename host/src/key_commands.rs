//! `otp-server keys …`: what an operator does to the shared key-encryption keys of a
//! running deployment, through the same Redis the instances use.
//!
//! - `keys rotate` makes a fresh KEK current; every instance adopts it at its next
//!   maintenance tick (within a second). Cookies sealed before keep opening until they
//!   expire.
//! - `keys rotate --revoke-current` also revokes the key that was current, in the same
//!   step: every instance drops it at its next tick, and cookies sealed with it answer
//!   `OTP:INVALID_COOKIE` (their users start over). For a key that may have leaked.
//! - `keys rewrap --new-master-key-file F` re-seals every stored KEK under the master
//!   key in `F`, and says which step of the README's procedure comes next: instances
//!   first take the new key as `master_key_previous` (so they open what is re-sealed),
//!   then as `master_key` with the old one as previous, and a second rewrap re-seals
//!   what instances still on the old key wrote meanwhile before the previous key goes.
//!
//! Each command prints what it did. They need a Redis store: an in-memory store lives
//! inside one server process, out of reach of another process. A Redis (or prefix)
//! without keys is refused, not given a first key: it is not the one the instances use.

use crate::clock::{Clock, SystemClock};
use crate::config::{Config, StoreConfig};
use crate::crypto::{MasterKey, MasterKeys};
use crate::store::redis::{RedisConnection, RedisKeyStore, WhenEmpty};
use anyhow::Context;
use std::path::Path;

/// One `keys` command.
pub enum KeyCommand<'a> {
    Rotate { revoke_current: bool },
    Rewrap { new_master_key_file: &'a Path },
}

/// Runs `command` against the store `config` names; returns the report to print.
pub async fn run(config: &Config, command: KeyCommand<'_>) -> anyhow::Result<String> {
    let StoreConfig::Redis {
        url,
        prefix,
        timeout,
        master_key,
        master_key_previous,
    } = &config.store
    else {
        anyhow::bail!(
            "the keys commands work on a shared store: set OTP_STORE to the Redis the instances use \
             (an in-memory store lives inside one server process)"
        );
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let now = SystemClock.now_ms();
    let new_master = match &command {
        KeyCommand::Rewrap {
            new_master_key_file,
        } => {
            let text = std::fs::read_to_string(new_master_key_file)
                .with_context(|| format!("{}", new_master_key_file.display()))?;
            Some(
                MasterKey::from_base64(&text)
                    .with_context(|| format!("{}", new_master_key_file.display()))?,
            )
        }
        KeyCommand::Rotate { .. } => None,
    };
    let redis = RedisConnection::new(url, prefix, *timeout)?;
    let store = RedisKeyStore::connect(
        redis,
        MasterKeys::from_base64(master_key, master_key_previous.as_deref())?,
        now,
        config.otp.session_max_age_ms,
        config.kek_rotation.as_millis() as u64,
        WhenEmpty::Refuse,
    )
    .await
    .context("Redis key store")?;
    match command {
        KeyCommand::Rotate { revoke_current } => {
            let report = store.rotate_now(now, revoke_current).await?;
            let mut text = format!(
                "rotated: the current key-encryption key is now {}",
                report.current
            );
            if let Some(previous) = report.previous {
                text.push_str(&format!(" (was {previous})"));
            }
            text.push_str("; every instance adopts it within a second\n");
            if let Some(revoked) = report.revoked {
                text.push_str(&format!(
                    "revoked: {revoked}; within a second every instance refuses cookies sealed with it \
                     (OTP:INVALID_COOKIE, the user starts over)\n"
                ));
            }
            Ok(text)
        }
        KeyCommand::Rewrap { .. } => {
            let new_master = new_master.context("a new master key")?;
            let report = store.rewrap(&new_master).await?;
            let mut text = format!(
                "rewrap: {} key-encryption key record(s) re-sealed under the new master key; \
                 {} listed but gone (expired or revoked) and dropped from the index",
                report.resealed, report.missing
            );
            if report.refused > 0 {
                text.push_str(&format!(
                    "; {} refused (not authentic under the configured master key) and left as they are",
                    report.refused
                ));
            }
            // Which step of the README's procedure this was, by this configuration.
            let configured = MasterKey::from_base64(master_key)?;
            let previous = master_key_previous
                .as_deref()
                .map(MasterKey::from_base64)
                .transpose()?;
            text.push_str(if configured.same_as(&new_master) {
                "\ndone: once every instance runs with the new key as master_key, drop \
                 master_key_previous (OTP_MASTER_KEY_PREVIOUS)\n"
            } else if previous.is_some_and(|p| p.same_as(&new_master)) {
                "\nnext: give every instance the new key as master_key (OTP_MASTER_KEY) and the old \
                 one as master_key_previous (OTP_MASTER_KEY_PREVIOUS), restart them one by one, then \
                 run this rewrap again with that configuration (it re-seals what instances still on \
                 the old key wrote meanwhile)\n"
            } else {
                "\nwarning: an instance configured like this one (the new key neither its master_key \
                 nor its master_key_previous) cannot open the re-sealed records it has not cached, \
                 and cannot restart: give every instance the new key as master_key now (README: \
                 Replacing the master key)\n"
            });
            Ok(text)
        }
    }
}
