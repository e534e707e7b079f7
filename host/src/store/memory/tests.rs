//! MemoryIdStore tests: each operation, expiry driven by `now`, sweeping, and races.

use std::sync::Arc;

use tokio::sync::Barrier;

use super::*;
use crate::clock::ManualClock;

const NOW: u64 = 1_000_000;
const TTL: u64 = 180_000;

#[tokio::test]
async fn create_and_contains() {
    let store = MemoryIdStore::new();
    let id = SessionId::random();
    assert_eq!(store.contains(id, NOW).await, Ok(false));
    assert_eq!(store.create(id, TTL, NOW).await, Ok(()));
    assert_eq!(store.contains(id, NOW).await, Ok(true));
    assert_eq!(store.contains(id, NOW + TTL - 1).await, Ok(true));
    assert_eq!(store.contains(id, NOW + TTL).await, Ok(false));
    assert_eq!(store.len(), 1);
    assert!(!store.is_empty());
}

#[tokio::test]
async fn create_overwrites_and_reuses_expired_ids() {
    let store = MemoryIdStore::new();
    let id = SessionId::random();
    assert_eq!(store.create(id, TTL, NOW).await, Ok(()));
    assert_eq!(store.contains(id, NOW + TTL).await, Ok(false));
    assert_eq!(store.create(id, TTL, NOW + TTL).await, Ok(()));
    assert_eq!(store.contains(id, NOW + TTL + 1).await, Ok(true));
    assert_eq!(store.len(), 1);
}

#[tokio::test]
async fn extend_moves_expiry_of_live_ids_only() {
    let store = MemoryIdStore::new();
    let id = SessionId::random();
    assert_eq!(store.extend(id, TTL, NOW).await, Ok(false));
    store.create(id, TTL, NOW).await.ok();
    assert_eq!(store.extend(id, TTL, NOW + 100_000).await, Ok(true));
    assert_eq!(store.contains(id, NOW + TTL + 50_000).await, Ok(true));
    assert_eq!(store.contains(id, NOW + 100_000 + TTL).await, Ok(false));
    assert_eq!(store.extend(id, TTL, NOW + 100_000 + TTL).await, Ok(false));
}

#[tokio::test]
async fn consume_succeeds_once() {
    let store = MemoryIdStore::new();
    let id = SessionId::random();
    store.create(id, TTL, NOW).await.ok();
    assert_eq!(store.consume(id, NOW + 1).await, Ok(true));
    assert_eq!(store.consume(id, NOW + 2).await, Ok(false));
    assert_eq!(store.contains(id, NOW + 3).await, Ok(false));
    assert!(store.is_empty());
}

#[tokio::test]
async fn expired_ids_cannot_be_consumed_or_replaced() {
    let store = MemoryIdStore::new();
    let a = SessionId::random();
    let b = SessionId::random();
    store.create(a, TTL, NOW).await.ok();
    store.create(b, TTL, NOW).await.ok();
    assert_eq!(store.consume(a, NOW + TTL).await, Ok(false));
    let new = SessionId::random();
    assert_eq!(store.replace(b, new, TTL, NOW + TTL).await, Ok(false));
    assert_eq!(store.contains(new, NOW + TTL).await, Ok(false));
}

#[tokio::test]
async fn replace_retires_old_and_registers_new() {
    let store = MemoryIdStore::new();
    let old = SessionId::random();
    let new = SessionId::random();
    store.create(old, TTL, NOW).await.ok();
    assert_eq!(store.replace(old, new, 2 * TTL, NOW + 10).await, Ok(true));
    assert_eq!(store.contains(old, NOW + 10).await, Ok(false));
    assert_eq!(store.contains(new, NOW + 10 + 2 * TTL - 1).await, Ok(true));
    assert_eq!(store.contains(new, NOW + 10 + 2 * TTL).await, Ok(false));
    // Replaying the old id does nothing.
    let other = SessionId::random();
    assert_eq!(store.replace(old, other, TTL, NOW + 20).await, Ok(false));
    assert_eq!(store.contains(other, NOW + 20).await, Ok(false));
    assert_eq!(store.len(), 1);
}

#[tokio::test]
async fn sweep_removes_only_expired_ids() {
    let store = MemoryIdStore::new();
    for i in 0..1_000u64 {
        store.create(SessionId::random(), i * 10, NOW).await.ok();
    }
    assert_eq!(store.len(), 1_000);
    // Expiries are NOW + 0, NOW + 10, ..., NOW + 9_990; `<= NOW + 5_000` are gone.
    assert_eq!(store.sweep_expired(NOW + 5_000), 501);
    assert_eq!(store.len(), 499);
    assert_eq!(store.sweep_expired(NOW + 5_000), 0);
    assert_eq!(store.sweep_expired(NOW + 10_000), 499);
    assert!(store.is_empty());
}

#[tokio::test]
async fn background_sweeper_walks_all_shards_and_stops_with_the_store() {
    let store = Arc::new(MemoryIdStore::new());
    let clock = Arc::new(ManualClock::new(NOW));
    for _ in 0..500 {
        store.create(SessionId::random(), TTL, NOW).await.ok();
    }
    clock.advance(TTL);
    let sweeper = Arc::clone(&store).spawn_sweeper(clock, Duration::from_millis(1));
    // One shard per tick, so a full pass takes SHARDS ticks; poll rather than sleep a
    // fixed time so a loaded machine cannot make this flaky.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !store.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(store.is_empty(), "{} left", store.len());

    drop(store);
    let stopped = tokio::time::timeout(Duration::from_secs(30), sweeper).await;
    assert!(matches!(stopped, Ok(Ok(()))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_consumers_win_exactly_once() {
    for _ in 0..20 {
        let store = Arc::new(MemoryIdStore::new());
        let id = SessionId::random();
        store.create(id, TTL, NOW).await.ok();
        let barrier = Arc::new(Barrier::new(64));
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let store = Arc::clone(&store);
                let barrier = Arc::clone(&barrier);
                tokio::spawn(async move {
                    barrier.wait().await;
                    store.consume(id, NOW).await
                })
            })
            .collect();
        let mut wins = 0;
        for task in tasks {
            if matches!(task.await, Ok(Ok(true))) {
                wins += 1;
            }
        }
        assert_eq!(wins, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_replacers_win_exactly_once() {
    for _ in 0..20 {
        let store = Arc::new(MemoryIdStore::new());
        let old = SessionId::random();
        store.create(old, TTL, NOW).await.ok();
        let barrier = Arc::new(Barrier::new(64));
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let store = Arc::clone(&store);
                let barrier = Arc::clone(&barrier);
                tokio::spawn(async move {
                    let new = SessionId::random();
                    barrier.wait().await;
                    (new, store.replace(old, new, TTL, NOW).await)
                })
            })
            .collect();
        let mut winners = Vec::new();
        for task in tasks {
            if let Ok((new, Ok(true))) = task.await {
                winners.push(new);
            }
        }
        assert_eq!(winners.len(), 1);
        assert_eq!(store.len(), 1);
        assert_eq!(store.contains(winners[0], NOW).await, Ok(true));
        assert_eq!(store.contains(old, NOW).await, Ok(false));
    }
}

#[test]
fn store_is_object_safe() {
    let store: Arc<dyn IdStore> = Arc::new(MemoryIdStore::new());
    assert!(format!("{:?}", MemoryIdStore::new()).contains("len"));
    drop(store);
}
