//! The Redis limiter store: budgets shared by every instance on one Redis.
//!
//! Each request is one Lua script (one round trip), atomic on the server: [`CHARGE`]
//! checks every budget the request needs and the fraud guard and writes only if all
//! pass; [`SETTLE`] gives reservations back and records a conversion. Scripts read
//! Redis `TIME`, the one clock of all instances (never the instances' own clocks).
//!
//! Key layout (under the store prefix, default `otp:`; `H` = 32 hex digits of a
//! [`LimiterKey`](super::LimiterKey), an HMAC, never a credential or an address):
//! - `PREFIX lim:{lim}:TAG:H` — a budget's TAT in ms (string), expiring when it passes.
//!   `TAG` is the budget kind: `sc`/`sd` sends per credential (10 min / day), `sn` sends
//!   per network, `sg` global sends, `rn` requests per network, `fn` failures per
//!   network, `fc` failures per (credential, network).
//! - `PREFIX lim:{lim}:g:H` — a destination group's fraud-guard windows (hash: per hour
//!   and per day the window index, sent and verified counts of it and of the previous
//!   window), expiring two days after the last send.
//! - `PREFIX lim:{lim}:p:H` — a credential's pending send: the `H` of its group, for a
//!   day, so a successful verification counts for the right group.
//!
//! A charge also carries the request's change of session ids
//! ([`LimiterStore::charge_with`]): [`CHARGE`] makes it after the budgets pass, so a
//! request that is charged and changes its id is one round trip, and a refused one
//! changes no id. It can wherever the script's keys are on one server: on one Redis (or
//! a Sentinel-managed master) always, on a Cluster when the session's id has the
//! limiter's tag, which puts its key in `{lim}`'s slot — as every session begun while
//! the limits are on has ([`IdPlacement::WithLimiter`](crate::store::redis::IdPlacement);
//! a create that brings a cookie of a session begun before keeps that session's tag).
//! For any other id the id store makes the change itself, a second round trip; and so it
//! does, from the first refusal on, behind a plain URL that turns out to refuse scripts
//! across slots (`CROSSSLOT`: a slot-aware proxy in front of a Cluster).
//!
//! Redis Cluster: every limiter key carries the hash tag `{lim}`, so all of them live
//! in one slot and every script's keys are in one slot (a script may only touch one).
//! The price is that one shard serves all limiter traffic, and the sessions begun with
//! the limits on — one small script per request, well within a single node's capacity;
//! spreading budgets over slots would need one round trip per key and lose the
//! all-or-nothing charge. `SETTLE`, and `CHARGE` for a resend, reach the group key named
//! by the pending record, which they cannot declare in advance; it is in the same slot
//! by construction.

use super::fraud::GroupWindows;
use super::keys::LimiterKey;
use super::store::{Check, FraudCheck, LimiterStore, Reason, Refusal, Verdict};
use crate::store::redis::{
    has_limiter_tag, id_key, limiter_tag_shares_slot, RedisConnection, LIMITER_KEY_PREFIX,
};
use crate::store::{IdChange, StoreError};
use async_trait::async_trait;
use std::sync::atomic::{AtomicBool, Ordering};

/// What both scripts start with: `now` from Redis `TIME` (ms), and `windows(g)`, the
/// fraud guard's hourly (`h`) and daily (`d`) windows of group hash `g` as of `now`.
/// Each window keeps its index (`i`), sends (`s`) and verified sends (`v`), and those of
/// the window before (`sp`, `vp`); one that is not the current one is turned over (its
/// counts become the previous window's when it was just before, else they are
/// forgotten). Returns the windows by name, each with `share`, the part of the window
/// before that the sliding window still overlaps, and the fields the turnover changes,
/// for one `HSET` with the script's own counts appended.
macro_rules! prelude {
    () => {
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function windows(g)
  local v = redis.call('HMGET', g, 'hi', 'hs', 'hv', 'hsp', 'hvp', 'di', 'ds', 'dv', 'dsp', 'dvp')
  local out, writes = {}, {}
  for k, w in ipairs({{'h', 3600000}, {'d', 86400000}}) do
    local p, len, o = w[1], w[2], 5 * k - 4
    local idx = math.floor(now / len)
    local s, ver = tonumber(v[o + 1]) or 0, tonumber(v[o + 2]) or 0
    local sp, vp = tonumber(v[o + 3]) or 0, tonumber(v[o + 4]) or 0
    if (tonumber(v[o]) or -1) ~= idx then
      if tonumber(v[o]) == idx - 1 then sp, vp = s, ver else sp, vp = 0, 0 end
      s, ver = 0, 0
      for _, x in ipairs({p .. 'i', idx, p .. 's', 0, p .. 'v', 0, p .. 'sp', sp, p .. 'vp', vp}) do
        writes[#writes + 1] = x
      end
    end
    out[p] = {s = s, v = ver, sp = sp, vp = vp, share = 1 - (now % len) / len}
  end
  return out, writes
end
"
    };
}

/// KEYS: the n budget keys, then (with the fraud guard) the group key and the pending
/// key, then the id keys of the id change (none; the new id; the old and the new id).
/// ARGV: n, then emission and burst per budget, then mode (0 none, 1 record, 2 deny)
/// and, with the fraud guard, hourly floor, daily floor, verified ratio, the group's
/// hex (empty for a resend: the group key is then its prefix, completed with the group
/// the pending key names, and the guard is skipped without one); then the id change
/// (0 none, 1 create, 2 replace, 3 keep: whether the id is live) and its TTL in ms.
/// Returns {0, tripped, 0, changed} when allowed (changed: 1 made, 0 the old id was not
/// live, -1 no change asked), {1, index, retry_ms, -1} when a budget refuses,
/// {2, 0, retry_ms, -1, now, then the group's hourly and daily window counts} when the
/// fraud guard denies (the caller works out when to come back from them).
const CHARGE: &str = concat!(
    prelude!(),
    r"
local n = tonumber(ARGV[1])
local current = {}
if n > 0 then current = redis.call('MGET', unpack(KEYS, 1, n)) end
local tats = {}
local worst, worst_i = -1, 0
for i = 1, n do
  local emission = tonumber(ARGV[2 * i])
  local tolerance = emission * tonumber(ARGV[2 * i + 1])
  local tat = tonumber(current[i]) or 0
  if tat < now then tat = now end
  local ahead = tat + emission - now
  if ahead > tolerance then
    if ahead - tolerance > worst then worst = ahead - tolerance; worst_i = i end
  else
    tats[i] = tat + emission
  end
end
if worst_i > 0 then return {1, worst_i, worst, -1} end
local tripped = 0
local f = 2 * n + 2
local mode = tonumber(ARGV[f])
-- A resend names no group (empty hex): its credential's pending send does, if any.
local g, hex = KEYS[n + 1], ARGV[f + 4]
if mode > 0 and hex == '' then
  hex = redis.call('GET', KEYS[n + 2])
  if hex then g = g .. hex end
end
if mode > 0 and hex then
  local w, writes = windows(g)
  local sent_h, ver_h = w.h.s + w.h.sp * w.h.share, w.h.v + w.h.vp * w.h.share
  local sent_d, ver_d = w.d.s + w.d.sp * w.d.share, w.d.v + w.d.vp * w.d.share
  local daily = math.max(tonumber(ARGV[f + 2]), tonumber(ARGV[f + 3]) * ver_d)
  local hourly = math.max(tonumber(ARGV[f + 1]), daily / 6)
  local retry = 0
  if math.max(sent_d - ver_d, 0) + 1 > daily then
    retry = 86400000 - now % 86400000
  elseif math.max(sent_h - ver_h, 0) + 1 > hourly then
    retry = 3600000 - now % 3600000
  end
  if retry > 0 then
    if mode == 2 then
      return {2, 0, retry, -1, now, w.h.s, w.h.v, w.h.sp, w.h.vp, w.d.s, w.d.v, w.d.sp, w.d.vp}
    end
    tripped = 1
  end
  -- This send, counted in both windows (after any turnover's fields: the last wins).
  for _, x in ipairs({'hs', w.h.s + 1, 'ds', w.d.s + 1}) do writes[#writes + 1] = x end
  redis.call('HSET', g, unpack(writes))
  redis.call('PEXPIRE', g, 2 * 86400000)
  redis.call('SET', KEYS[n + 2], hex, 'PX', 86400000)
end
for i = 1, n do
  redis.call('SET', KEYS[i], tats[i], 'PX', tats[i] - now)
end
local o, k = f + 1, n + 1
if mode > 0 then o, k = f + 5, n + 3 end
local change = tonumber(ARGV[o])
local changed = -1
if change == 1 then
  redis.call('SET', KEYS[k], '1', 'PX', ARGV[o + 1])
  changed = 1
elseif change == 2 then
  changed = 0
  if redis.call('DEL', KEYS[k]) == 1 then
    redis.call('SET', KEYS[k + 1], '1', 'PX', ARGV[o + 1])
    changed = 1
  end
elseif change == 3 then
  changed = redis.call('EXISTS', KEYS[k])
end
return {0, tripped, 0, changed}"
);

/// KEYS: the n budget keys to refund, then (when verified) the pending key. ARGV: n,
/// the emission per budget, then the group key prefix (empty when nothing was verified).
const SETTLE: &str = concat!(
    prelude!(),
    r"
local n = tonumber(ARGV[1])
for i = 1, n do
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  local back = tat - tonumber(ARGV[i + 1])
  if back > now then
    redis.call('SET', KEYS[i], string.format('%.0f', back), 'PX', string.format('%.0f', back - now))
  else
    redis.call('DEL', KEYS[i])
  end
end
local prefix = ARGV[n + 2]
if prefix == '' then return 0 end
local group = redis.call('GET', KEYS[n + 1])
if not group then return 0 end
redis.call('DEL', KEYS[n + 1])
local g = prefix .. group
if redis.call('EXISTS', g) == 0 then return 0 end
local w, writes = windows(g)
for _, x in ipairs({'hv', w.h.v + 1, 'dv', w.d.v + 1}) do writes[#writes + 1] = x end
redis.call('HSET', g, unpack(writes))
return 1"
);

pub struct RedisLimiterStore {
    redis: RedisConnection,
    charge: redis::Script,
    settle: redis::Script,
    /// Whether charges carry the changes of any id: on one server, until it refuses one.
    carries_ids: AtomicBool,
    /// Whether charges carry the changes of ids with the limiter's tag: unless the key
    /// prefix gives them another hash tag, until the server refuses one.
    carries_tagged_ids: AtomicBool,
}

impl RedisLimiterStore {
    pub fn new(redis: RedisConnection) -> RedisLimiterStore {
        RedisLimiterStore {
            carries_ids: AtomicBool::new(redis.is_one_server()),
            carries_tagged_ids: AtomicBool::new(limiter_tag_shares_slot(&redis)),
            redis,
            charge: redis::Script::new(CHARGE),
            settle: redis::Script::new(SETTLE),
        }
    }

    /// A group key without its group: the scripts complete it with the group a pending
    /// record names.
    fn group_prefix(&self) -> String {
        self.redis.key(&format!("{LIMITER_KEY_PREFIX}g:"))
    }

    fn key(&self, tag: &str, key: &LimiterKey) -> String {
        self.redis
            .key(&format!("{LIMITER_KEY_PREFIX}{tag}:{}", key.hex()))
    }

    /// Runs [`CHARGE`], with `change` made in it when allowed. `Err(CrossSlot)` when the
    /// server refused the script unrun because its keys span hash slots.
    async fn run_charge(
        &self,
        checks: &[Check],
        fraud: Option<&FraudCheck>,
        change: Option<IdChange>,
    ) -> Result<Result<(Verdict, Option<bool>), CrossSlot>, StoreError> {
        let mut invocation = self.charge.prepare_invoke();
        invocation.arg(checks.len());
        for check in checks {
            invocation
                .key(self.key(check.kind.tag(), &check.key))
                .arg(check.rate.emission_ms)
                .arg(check.rate.burst);
        }
        match fraud {
            Some(fraud) => {
                // Without a group, the group key's prefix: the script appends the group
                // of the credential's pending send (a key in the same slot).
                let group = match &fraud.group {
                    Some(group) => self.key("g", group),
                    None => self.group_prefix(),
                };
                invocation
                    .key(group)
                    .key(self.key("p", &fraud.credential))
                    .arg(match fraud.mode {
                        super::fraud::FraudMode::Record => 1,
                        super::fraud::FraudMode::Deny => 2,
                    })
                    .arg(fraud.thresholds.hourly_floor)
                    .arg(fraud.thresholds.daily_floor)
                    .arg(fraud.thresholds.verified_ratio)
                    .arg(fraud.group.map(|g| g.hex()).unwrap_or_default());
            }
            None => {
                invocation.arg(0);
            }
        }
        match change {
            None => invocation.arg(0).arg(0),
            Some(IdChange::Create { id, ttl_ms }) => invocation
                .key(id_key(&self.redis, &id))
                .arg(1)
                .arg(ttl_ms.max(1)),
            Some(IdChange::Replace { old, new, ttl_ms }) => invocation
                .key(id_key(&self.redis, &old))
                .key(id_key(&self.redis, &new))
                .arg(2)
                .arg(ttl_ms.max(1)),
            Some(IdChange::Keep { id }) => invocation.key(id_key(&self.redis, &id)).arg(3).arg(0),
        };
        let answer = self
            .redis
            .run(|mut c| async move {
                match invocation.invoke_async(&mut c).await {
                    Err(error) if error.code() == Some("CROSSSLOT") => Ok(Err(CrossSlot)),
                    other => other.map(Ok),
                }
            })
            .await?;
        let answer: Vec<i64> = match answer {
            Ok(answer) => answer,
            Err(CrossSlot) => return Ok(Err(CrossSlot)),
        };
        let &[outcome, detail, retry_after_ms, changed, ref windows @ ..] = answer.as_slice()
        else {
            return Err(StoreError::Unavailable(
                "limiter script: unexpected answer".into(),
            ));
        };
        let retry_after_ms = u64::try_from(retry_after_ms).unwrap_or(0);
        let changed = (changed >= 0).then_some(changed == 1);
        let verdict = match outcome {
            0 => Verdict::Allowed {
                fraud_tripped: detail == 1,
            },
            1 => {
                let check = usize::try_from(detail - 1)
                    .ok()
                    .and_then(|i| checks.get(i))
                    .ok_or_else(|| StoreError::Unavailable("limiter script: bad index".into()))?;
                Verdict::Refused(Refusal {
                    reason: Reason::Budget(check.kind, check.rate),
                    retry_after_ms,
                })
            }
            _ => Verdict::Refused(Refusal {
                reason: Reason::FraudGuard,
                retry_after_ms: fraud
                    .and_then(|fraud| fraud_retry_after(fraud, windows))
                    .unwrap_or(retry_after_ms),
            }),
        };
        Ok(Ok((verdict, changed)))
    }
}

/// When a group the fraud guard denied may come back, from the counts `CHARGE` read
/// (`now`, then per window the current and previous sends and verifications).
fn fraud_retry_after(fraud: &FraudCheck, windows: &[i64]) -> Option<u64> {
    let &[now, hs, hv, hsp, hvp, ds, dv, dsp, dvp] = windows else {
        return None;
    };
    let count = |n: i64| u32::try_from(n.max(0)).unwrap_or(u32::MAX);
    let now = u64::try_from(now).ok()?;
    let windows = GroupWindows::at(
        now,
        [hs, hv, hsp, hvp].map(count),
        [ds, dv, dsp, dvp].map(count),
    );
    Some(fraud.thresholds.retry_after(&windows, now))
}

/// A script refused because its keys are in different hash slots.
struct CrossSlot;

/// A charge without an id change touches `{lim}`'s slot only.
fn one_slot<T>(answer: Result<T, CrossSlot>) -> Result<T, StoreError> {
    answer.map_err(|CrossSlot| StoreError::Unavailable("Redis: limiter keys across slots".into()))
}

#[async_trait]
impl LimiterStore for RedisLimiterStore {
    async fn charge(
        &self,
        checks: &[Check],
        fraud: Option<&FraudCheck>,
    ) -> Result<Verdict, StoreError> {
        Ok(one_slot(self.run_charge(checks, fraud, None).await?)?.0)
    }

    async fn charge_with(
        &self,
        checks: &[Check],
        fraud: Option<&FraudCheck>,
        change: IdChange,
    ) -> Result<(Verdict, Option<bool>), StoreError> {
        // A script may touch keys of one Cluster slot only: `{lim}`'s, and the id's.
        let tagged = match change {
            IdChange::Create { id, .. } | IdChange::Keep { id } => has_limiter_tag(&id),
            IdChange::Replace { old, new, .. } => has_limiter_tag(&old) && has_limiter_tag(&new),
        };
        let carries = match tagged && self.carries_tagged_ids.load(Ordering::Relaxed) {
            true => &self.carries_tagged_ids,
            false => &self.carries_ids,
        };
        if carries.load(Ordering::Relaxed) {
            match self.run_charge(checks, fraud, Some(change)).await? {
                Ok(charged) => return Ok(charged),
                // Refused before it ran, so nothing was charged: charge alone.
                Err(CrossSlot) => {
                    // Ids with the limiter's tag refused: none can ride along.
                    let others = tagged && self.carries_ids.swap(false, Ordering::Relaxed);
                    if carries.swap(false, Ordering::Relaxed) | others {
                        let ids = match tagged {
                            true => "any session",
                            false => "a session begun while the limits were off",
                        };
                        tracing::warn!(
                            "the Redis behind OTP_STORE refuses scripts across hash slots (a \
                             proxy in front of a Cluster, or a key prefix with a hash tag?): \
                             from now on, {ids} has its charge and its id change made in two \
                             calls; name a Cluster's nodes with redis+cluster://"
                        );
                    }
                }
            }
        }
        one_slot(self.run_charge(checks, fraud, None).await?)
    }

    async fn settle(
        &self,
        refunds: &[Check],
        verified: Option<LimiterKey>,
    ) -> Result<(), StoreError> {
        let mut invocation = self.settle.prepare_invoke();
        invocation.arg(refunds.len());
        for check in refunds {
            invocation
                .key(self.key(check.kind.tag(), &check.key))
                .arg(check.rate.emission_ms);
        }
        match verified {
            Some(credential) => {
                invocation
                    .key(self.key("p", &credential))
                    .arg(self.group_prefix());
            }
            None => {
                invocation.arg("");
            }
        }
        self.redis
            .run(|mut c| async move { invocation.invoke_async::<i64>(&mut c).await })
            .await
            .map(|_| ())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.redis.ping().await
    }
}
