//! The in-memory limiter store: one process's budgets, for single-instance servers.
//!
//! Entries live in [`SHARDS`] mutex-guarded hash maps chosen by the key's first byte
//! (keys are HMAC output, so shards fill evenly). A charge locks the few shards its
//! keys fall in, in index order (no deadlock), checks every budget, and only then
//! writes: all or nothing. Every entry has an expiry (a GCRA entry is useless once its
//! TAT has passed; fraud-guard windows after two days; a pending send after a day); a
//! background task sweeps one shard per tick, so the request path never walks the map.
//! The store is bounded: a shard at its share of `max_keys` first drops its expired
//! entries, and if all are live, the eighth of them that expire soonest (the least
//! restrictive) — never arbitrary ones, which could be budgets an attacker wants gone.
//! Freeing an eighth at once keeps a full store at O(1) amortized work per insert: one
//! pass over the shard buys room for the next eighth of it (evicting one entry per insert
//! walked the whole shard on every new key, and a flood of new credentials then cost
//! 0.7 ms of CPU per create). Reaching the bound takes a flood of distinct keys, which
//! the bound's size (a million entries by default) makes costly.
//!
//! An entry is small: a one-byte kind and the 16-byte key, and a TAT or a pending send
//! in 32 bytes (a destination group's windows, one per group, live in a box), 56 bytes a
//! slot; a shard's bound is rounded down to what its table holds without doubling.

use super::fraud::{FraudMode, GroupWindows, DAY_MS};
use super::gcra::{self, Decision};
use super::keys::LimiterKey;
use super::store::{BudgetKind, Check, FraudCheck, LimiterStore, Reason, Refusal, Verdict};
use crate::clock::Clock;
use crate::store::StoreError;
use async_trait::async_trait;
use parking_lot::{Mutex, MutexGuard};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Weak};
use std::time::Duration;

pub const SHARDS: usize = 64;

/// What an entry is about: a budget, or one of the fraud guard's records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum EntryKind {
    Budget(BudgetKind),
    Group,
    Pending,
}

type EntryKey = (EntryKind, LimiterKey);

const GROUP: EntryKind = EntryKind::Group;
const PENDING: EntryKind = EntryKind::Pending;

#[derive(Clone, Debug)]
enum Entry {
    Tat(u64),
    Group(Box<GroupRecord>),
    Pending { group: LimiterKey, expires: u64 },
}

/// A destination group's fraud-guard windows.
#[derive(Clone, Copy, Debug)]
struct GroupRecord {
    windows: GroupWindows,
    expires: u64,
}

impl Entry {
    fn expires(&self) -> u64 {
        match self {
            Entry::Tat(tat) => *tat,
            Entry::Group(record) => record.expires,
            Entry::Pending { expires, .. } => *expires,
        }
    }

    fn group(windows: GroupWindows, now: u64) -> Entry {
        Entry::Group(Box::new(GroupRecord {
            windows,
            expires: now + 2 * DAY_MS,
        }))
    }
}

/// The most entries a hash table of `buckets` buckets (a power of two) holds without
/// growing: seven eighths of them (the standard library's `HashMap`).
fn table_capacity(buckets: usize) -> usize {
    buckets / 8 * 7
}

/// A shard's share of `max_keys`, rounded down to what a table holds when that loses less
/// than a quarter of it: a share just above a table's capacity (a million keys: 15 625 per
/// shard, where 16 384 buckets hold 14 336) would double the table for a few more entries.
fn shard_bound(max_keys: usize) -> usize {
    let share = (max_keys / SHARDS).max(16);
    let mut buckets = 32;
    while table_capacity(buckets * 2) <= share {
        buckets *= 2;
    }
    let rounded = table_capacity(buckets).min(share);
    if rounded * 4 >= share * 3 {
        rounded
    } else {
        share
    }
}

type Shard = HashMap<EntryKey, Entry, BuildHasherDefault<EntryHasher>>;

/// Entries each shard has room for from the start (64 × 1024 × ~100 bytes, resident
/// only as they fill). Allocating every shard at its bound up front would spare a
/// growing store its rehashes but keep ~130 MB resident from start-up (measured), so
/// shards grow from here.
const INITIAL_SHARD_CAPACITY: usize = 1024;

/// The hash of an entry key: FxHash-style mixing, eight bytes at a time. A limiter key
/// is HMAC output under a secret the client does not know, so it cannot be chosen to
/// collide; SipHash's protection against chosen keys would be paid for nothing.
#[derive(Default)]
struct EntryHasher(u64);

impl Hasher for EntryHasher {
    fn write(&mut self, bytes: &[u8]) {
        const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(SEED);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

pub struct MemoryLimiterStore {
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
    clock: Arc<dyn Clock>,
}

impl MemoryLimiterStore {
    pub fn new(clock: Arc<dyn Clock>, max_keys: usize) -> MemoryLimiterStore {
        let per_shard = shard_bound(max_keys);
        if per_shard * SHARDS != max_keys {
            tracing::info!(
                configured = max_keys,
                effective = per_shard * SHARDS,
                "limits: the memory store's key bound is rounded to whole hash tables"
            );
        }
        MemoryLimiterStore {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(HashMap::with_capacity_and_hasher(
                        INITIAL_SHARD_CAPACITY.min(per_shard),
                        BuildHasherDefault::default(),
                    ))
                })
                .collect(),
            per_shard,
            clock,
        }
    }

    /// Sweeps expired entries, one shard per `interval`, until the store is dropped.
    pub fn spawn_sweeper(self: &Arc<Self>, interval: Duration) {
        let store: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut next = 0;
            loop {
                ticker.tick().await;
                let Some(store) = store.upgrade() else {
                    return;
                };
                store.sweep(next);
                next = (next + 1) % SHARDS;
            }
        });
    }

    /// Drops the expired entries of one shard.
    fn sweep(&self, shard: usize) {
        let now = self.clock.now_ms();
        self.shards[shard].lock().retain(|_, e| e.expires() > now);
    }

    fn shard_of(key: &LimiterKey) -> usize {
        usize::from(key.0[0]) % SHARDS
    }

    /// Locks the shards of `keys`, in index order.
    fn lock<'a>(&'a self, keys: impl Iterator<Item = &'a LimiterKey>) -> Locked<'a> {
        let mut indices: Vec<usize> = keys.map(Self::shard_of).collect();
        indices.sort_unstable();
        indices.dedup();
        Locked {
            guards: indices
                .into_iter()
                .map(|i| (i, self.shards[i].lock()))
                .collect(),
            per_shard: self.per_shard,
        }
    }

    /// The group of `credential`'s pending send, if it has one: a resend's group.
    fn pending_group(&self, credential: &LimiterKey, now: u64) -> Option<LimiterKey> {
        let mut locked = self.lock(std::iter::once(credential));
        match locked.get((PENDING, *credential), now) {
            Some(&mut Entry::Pending { group, .. }) => Some(group),
            _ => None,
        }
    }

    /// Entries held now (tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }
}

struct Locked<'a> {
    guards: Vec<(usize, MutexGuard<'a, Shard>)>,
    per_shard: usize,
}

impl Locked<'_> {
    fn shard(&mut self, key: &LimiterKey) -> &mut Shard {
        let index = MemoryLimiterStore::shard_of(key);
        let position = self
            .guards
            .iter()
            .position(|(i, _)| *i == index)
            .expect("the shard was locked");
        &mut self.guards[position].1
    }

    fn get(&mut self, key: EntryKey, now: u64) -> Option<&mut Entry> {
        self.shard(&key.1)
            .get_mut(&key)
            .filter(|e| e.expires() > now)
    }

    fn put(&mut self, key: EntryKey, entry: Entry, now: u64) {
        let per_shard = self.per_shard;
        let shard = self.shard(&key.1);
        // Full, or out of room in its table (removals leave tombstones, and a table that is
        // more than half full grows rather than clean them up): make room in place.
        let full = shard.len() >= per_shard;
        let no_room = shard.capacity() <= shard.len() && shard.len() >= per_shard / 2;
        if (full || no_room) && !shard.contains_key(&key) {
            make_room(shard, per_shard, now);
        }
        shard.insert(key, entry);
    }

    fn remove(&mut self, key: EntryKey) {
        self.shard(&key.1).remove(&key);
    }

    fn tat(&mut self, check: &Check, now: u64) -> u64 {
        match self.get((EntryKind::Budget(check.kind), check.key), now) {
            Some(Entry::Tat(tat)) => *tat,
            _ => 0,
        }
    }
}

/// Frees a shard: drops what has expired, and if that leaves less than an eighth of the
/// bound free, also the live entries that expire soonest (they restrict least) until an
/// eighth is free; then rebuilds the table at the bound's size, without tombstones. A
/// few passes over the shard, paid once per eighth of it.
fn make_room(shard: &mut Shard, per_shard: usize, now: u64) {
    let mut live: Vec<(EntryKey, Entry)> =
        shard.drain().filter(|(_, e)| e.expires() > now).collect();
    let target = per_shard - per_shard / 8;
    if live.len() > target {
        let excess = live.len() - target;
        let mut expiries: Vec<u64> = live.iter().map(|(_, e)| e.expires()).collect();
        let (_, &mut threshold, _) = expiries.select_nth_unstable(excess - 1);
        // Everything before the threshold goes, and of the entries exactly at it, as many
        // as still needed.
        let below = expiries.iter().filter(|&&e| e < threshold).count();
        let mut at_threshold = excess - below;
        live.retain(|(_, e)| {
            let expires = e.expires();
            if expires < threshold {
                false
            } else if expires == threshold && at_threshold > 0 {
                at_threshold -= 1;
                false
            } else {
                true
            }
        });
    }
    *shard = Shard::with_capacity_and_hasher(per_shard, BuildHasherDefault::default());
    shard.extend(live);
}

#[async_trait]
impl LimiterStore for MemoryLimiterStore {
    async fn charge(
        &self,
        checks: &[Check],
        fraud: Option<&FraudCheck>,
    ) -> Result<Verdict, StoreError> {
        let now = self.clock.now_ms();
        let fraud = fraud.and_then(|f| match f.group {
            Some(group) => Some((group, f)),
            None => self
                .pending_group(&f.credential, now)
                .map(|group| (group, f)),
        });
        let fraud_keys = fraud.iter().flat_map(|(group, f)| [group, &f.credential]);
        let mut locked = self.lock(checks.iter().map(|c| &c.key).chain(fraud_keys));
        let mut refused: Option<Refusal> = None;
        let mut tats = Vec::with_capacity(checks.len());
        for check in checks {
            match gcra::charge(locked.tat(check, now), now, check.rate) {
                Decision::Allowed { tat, .. } => tats.push(tat),
                Decision::Refused { retry_after_ms } => {
                    if refused.is_none_or(|r| r.retry_after_ms < retry_after_ms) {
                        refused = Some(Refusal {
                            reason: Reason::Budget(check.kind, check.rate),
                            retry_after_ms,
                        });
                    }
                }
            }
        }
        if let Some(refusal) = refused {
            return Ok(Verdict::Refused(refusal));
        }
        let mut fraud_tripped = false;
        if let Some((group, fraud)) = fraud {
            let mut windows = match locked.get((GROUP, group), now) {
                Some(Entry::Group(record)) => record.windows,
                _ => GroupWindows::default(),
            };
            if fraud.thresholds.trips(&windows.counts(now), now).is_some() {
                if fraud.mode == FraudMode::Deny {
                    return Ok(Verdict::Refused(Refusal {
                        reason: Reason::FraudGuard,
                        retry_after_ms: fraud.thresholds.retry_after(&windows, now),
                    }));
                }
                fraud_tripped = true;
            }
            windows.sent(now);
            locked.put((GROUP, group), Entry::group(windows, now), now);
            locked.put(
                (PENDING, fraud.credential),
                Entry::Pending {
                    group,
                    expires: now + DAY_MS,
                },
                now,
            );
        }
        for (check, tat) in checks.iter().zip(tats) {
            locked.put(
                (EntryKind::Budget(check.kind), check.key),
                Entry::Tat(tat),
                now,
            );
        }
        Ok(Verdict::Allowed { fraud_tripped })
    }

    async fn settle(
        &self,
        refunds: &[Check],
        verified: Option<LimiterKey>,
    ) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        let mut locked = self.lock(refunds.iter().map(|c| &c.key).chain(verified.iter()));
        for check in refunds {
            let key = (EntryKind::Budget(check.kind), check.key);
            match gcra::refund(locked.tat(check, now), now, check.rate) {
                Some(tat) => locked.put(key, Entry::Tat(tat), now),
                None => locked.remove(key),
            }
        }
        let Some(credential) = verified else {
            return Ok(());
        };
        let Some(&mut Entry::Pending { group, .. }) = locked.get((PENDING, credential), now) else {
            return Ok(());
        };
        locked.remove((PENDING, credential));
        drop(locked);
        // The group may live in another shard: a second, short critical section.
        let mut locked = self.lock(std::iter::once(&group));
        if let Some(Entry::Group(record)) = locked.get((GROUP, group), now) {
            // As in Redis, the record still expires two days after its last send.
            record.windows.verified(now);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::fraud::FraudThresholds;
    use super::super::gcra::Rate;
    use super::super::store::BudgetKind;
    use super::*;
    use crate::clock::ManualClock;

    fn key(byte: u8) -> LimiterKey {
        LimiterKey([byte; 16])
    }

    fn store() -> (Arc<ManualClock>, MemoryLimiterStore) {
        let clock = Arc::new(ManualClock::new(1_000_000_000));
        (clock.clone(), MemoryLimiterStore::new(clock, 1 << 20))
    }

    fn check(kind: BudgetKind, byte: u8, limit: u32, period_ms: u64) -> Check {
        Check {
            kind,
            key: key(byte),
            rate: Rate::per(limit, period_ms),
        }
    }

    #[tokio::test]
    async fn all_or_nothing() {
        let (_clock, store) = store();
        let loose = check(BudgetKind::NetworkSends, 1, 10, 60_000);
        let tight = check(BudgetKind::CredentialSends, 200, 1, 60_000);
        assert_eq!(
            store.charge(&[loose, tight], None).await.unwrap(),
            Verdict::Allowed {
                fraud_tripped: false
            }
        );
        // The tight budget refuses, so the loose one is not charged either.
        for _ in 0..20 {
            let verdict = store.charge(&[loose, tight], None).await.unwrap();
            assert!(matches!(
                verdict,
                Verdict::Refused(Refusal {
                    reason: Reason::Budget(BudgetKind::CredentialSends, _),
                    retry_after_ms: 60_000
                })
            ));
        }
        for _ in 0..9 {
            assert!(matches!(
                store.charge(&[loose], None).await.unwrap(),
                Verdict::Allowed { .. }
            ));
        }
        assert!(matches!(
            store.charge(&[loose], None).await.unwrap(),
            Verdict::Refused(_)
        ));
    }

    #[tokio::test]
    async fn budgets_of_one_key_and_different_kinds_are_apart_and_expire() {
        let (clock, store) = store();
        let a = check(BudgetKind::CredentialSends, 7, 1, 10_000);
        let b = check(BudgetKind::CredentialDailySends, 7, 1, 10_000);
        assert!(matches!(
            store.charge(&[a], None).await.unwrap(),
            Verdict::Allowed { .. }
        ));
        assert!(matches!(
            store.charge(&[b], None).await.unwrap(),
            Verdict::Allowed { .. }
        ));
        assert!(matches!(
            store.charge(&[a], None).await.unwrap(),
            Verdict::Refused(_)
        ));
        clock.advance(10_000);
        assert!(matches!(
            store.charge(&[a], None).await.unwrap(),
            Verdict::Allowed { .. }
        ));
        // A refund gives the unit back.
        store.settle(&[a], None).await.unwrap();
        assert!(matches!(
            store.charge(&[a], None).await.unwrap(),
            Verdict::Allowed { .. }
        ));
    }

    #[tokio::test]
    async fn bounded() {
        let clock = Arc::new(ManualClock::new(1_000));
        let store = MemoryLimiterStore::new(clock, 1024);
        for i in 0..10_000u32 {
            let mut bytes = [0u8; 16];
            bytes[..4].copy_from_slice(&i.to_le_bytes());
            let c = Check {
                kind: BudgetKind::NetworkRequests,
                key: LimiterKey(bytes),
                rate: Rate::per(10, 60_000),
            };
            store.charge(&[c], None).await.unwrap();
        }
        assert!(store.len() <= 1024, "{}", store.len());
    }

    #[tokio::test]
    async fn a_full_shard_evicts_the_least_restrictive_entry_never_a_spent_budget() {
        let clock = Arc::new(ManualClock::new(1_000));
        // 16 entries per shard; every key below falls in shard 0.
        let store = MemoryLimiterStore::new(clock, 16 * SHARDS);
        let in_shard_0 = |i: u8| {
            let mut bytes = [0u8; 16];
            bytes[1] = i;
            LimiterKey(bytes)
        };
        let spent = Check {
            kind: BudgetKind::CredentialSends,
            key: in_shard_0(255),
            rate: Rate::per(1, DAY_MS),
        };
        let allowed = |v: Verdict| matches!(v, Verdict::Allowed { .. });
        assert!(allowed(store.charge(&[spent], None).await.unwrap()));
        // A flood of other keys, each restricting for seconds only.
        for i in 0..64 {
            let c = Check {
                kind: BudgetKind::NetworkRequests,
                key: in_shard_0(i),
                rate: Rate::per(10, 60_000),
            };
            store.charge(&[c], None).await.unwrap();
        }
        assert!(store.len() <= 16, "{}", store.len());
        assert!(
            !allowed(store.charge(&[spent], None).await.unwrap()),
            "the flood evicted a spent day budget"
        );
    }

    #[test]
    fn a_shard_bound_never_doubles_its_table() {
        let clock = Arc::new(ManualClock::new(1_000));
        let bound = |max_keys| MemoryLimiterStore::new(clock.clone(), max_keys).per_shard;
        // A million keys: 15 625 per shard would need 32 768 buckets; 16 384 hold 14 336.
        assert_eq!(bound(1_000_000), 14_336);
        assert_eq!(bound(64 * 14_336), 14_336);
        assert_eq!(bound(64 * 16), 16);
        // Rounding down would lose almost half of 1.8 M: the share stays, in its table.
        assert_eq!(bound(1_800_000), 28_125);
    }

    #[tokio::test]
    async fn a_full_shard_frees_an_eighth_at_once() {
        let clock = Arc::new(ManualClock::new(1_000));
        let store = MemoryLimiterStore::new(clock, 64 * SHARDS);
        let bound = store.per_shard as u16;
        let in_shard_0 = |i: u16| {
            let mut bytes = [0u8; 16];
            bytes[1..3].copy_from_slice(&i.to_le_bytes());
            LimiterKey(bytes)
        };
        // Fill shard 0 to its bound: entry i restricts for i + 1 seconds.
        for i in 0..bound {
            let c = Check {
                kind: BudgetKind::NetworkRequests,
                key: in_shard_0(i),
                rate: Rate::per(1, 1_000 * (u64::from(i) + 1)),
            };
            store.charge(&[c], None).await.unwrap();
        }
        assert_eq!(store.len(), usize::from(bound));
        // One more: the eighth that expires soonest goes, the newcomer stays.
        let newcomer = Check {
            kind: BudgetKind::NetworkRequests,
            key: in_shard_0(1000),
            rate: Rate::per(1, 100_000),
        };
        store.charge(&[newcomer], None).await.unwrap();
        let freed = bound / 8;
        assert_eq!(store.len(), usize::from(bound - freed + 1));
        let shard = store.shards[0].lock();
        for i in 0..bound {
            let key = (
                EntryKind::Budget(BudgetKind::NetworkRequests),
                in_shard_0(i),
            );
            assert_eq!(shard.contains_key(&key), i >= freed, "entry {i}");
        }
        assert!(shard.contains_key(&(
            EntryKind::Budget(BudgetKind::NetworkRequests),
            in_shard_0(1000)
        )));
    }

    #[tokio::test]
    async fn churn_never_grows_a_full_shard_past_its_bound() {
        let clock = Arc::new(ManualClock::new(1_000));
        let store = MemoryLimiterStore::new(clock.clone(), 64 * SHARDS);
        let bound = store.per_shard;
        let in_shard_0 = |i: u32| {
            let mut bytes = [0u8; 16];
            bytes[1..5].copy_from_slice(&i.to_le_bytes());
            LimiterKey(bytes)
        };
        // A flood of new keys with mixed lifetimes, the clock moving on and the sweeper
        // removing what expired (leaving tombstones in the table).
        for i in 0..20_000u32 {
            let c = Check {
                kind: BudgetKind::NetworkRequests,
                key: in_shard_0(i),
                rate: Rate::per(1, 1_000 * u64::from(i % 97 + 1)),
            };
            store.charge(&[c], None).await.unwrap();
            if i % 50 == 0 {
                clock.advance(700);
                store.sweep(0);
            }
            let shard = store.shards[0].lock();
            assert!(shard.len() <= bound, "{} entries", shard.len());
            assert!(
                shard.capacity() <= table_capacity(64),
                "the table grew to hold {} after {i} keys",
                shard.capacity()
            );
        }
    }

    #[tokio::test]
    async fn fraud_guard_records_denies_and_counts_conversions() {
        let (_clock, store) = store();
        // Hourly threshold max(2, 6 / 6) = 2 unverified sends.
        let thresholds = FraudThresholds {
            hourly_floor: 2,
            daily_floor: 6,
            verified_ratio: 0.2,
        };
        let fraud = |credential: u8, mode| FraudCheck {
            group: Some(key(99)),
            credential: key(credential),
            thresholds,
            mode,
        };
        for credential in 1..=2 {
            assert_eq!(
                store
                    .charge(&[], Some(&fraud(credential, FraudMode::Deny)))
                    .await
                    .unwrap(),
                Verdict::Allowed {
                    fraud_tripped: false
                }
            );
        }
        assert!(matches!(
            store
                .charge(&[], Some(&fraud(3, FraudMode::Deny)))
                .await
                .unwrap(),
            Verdict::Refused(Refusal {
                reason: Reason::FraudGuard,
                ..
            })
        ));
        assert_eq!(
            store
                .charge(&[], Some(&fraud(3, FraudMode::Record)))
                .await
                .unwrap(),
            Verdict::Allowed {
                fraud_tripped: true
            }
        );
        // Two of the three sends are verified: one unverified is left, so sends resume.
        store.settle(&[], Some(key(1))).await.unwrap();
        store.settle(&[], Some(key(2))).await.unwrap();
        // A second verification of the same credential does not count twice.
        store.settle(&[], Some(key(2))).await.unwrap();
        assert_eq!(
            store
                .charge(&[], Some(&fraud(4, FraudMode::Deny)))
                .await
                .unwrap(),
            Verdict::Allowed {
                fraud_tripped: false
            }
        );
        assert!(matches!(
            store
                .charge(&[], Some(&fraud(5, FraudMode::Deny)))
                .await
                .unwrap(),
            Verdict::Refused(_)
        ));
    }
}
