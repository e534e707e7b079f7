//! The engine's epoch: the clock that interrupts guest code.
//!
//! Every store gets an epoch deadline one tick ahead, and its callback checks the call's
//! own deadline at each tick (yielding to the async runtime, or interrupting the call once
//! the deadline has passed; see `PluginRuntime::store`). Guest code only notices time when
//! the epoch advances, so the epoch must advance while any store is alive, and need not
//! otherwise. [`EpochTicker`] runs a thread that advances it every [`TICK`] while at least
//! one [`Ticking`] guard exists (each store holds one, from before it runs any code until
//! it is dropped) and sleeps without a timeout otherwise: an idle server does not wake 500
//! times a second for it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::Thread;
use std::time::Duration;

/// How often the epoch advances while a store is alive: the granularity of deadlines and
/// of yielding.
pub const TICK: Duration = Duration::from_millis(2);

/// The thread that advances the epoch; dropping this stops it.
pub struct EpochTicker {
    shared: Arc<Shared>,
    thread: Thread,
}

struct Shared {
    /// [`Ticking`] guards alive.
    active: AtomicUsize,
    stop: AtomicBool,
    /// Whether the thread is (about to be) parked for want of guards.
    idle: AtomicBool,
}

impl EpochTicker {
    /// Starts the thread; `tick` advances the epoch (the engine's `increment_epoch`).
    pub fn start(tick: impl Fn() + Send + 'static) -> EpochTicker {
        let shared = Arc::new(Shared {
            active: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            idle: AtomicBool::new(false),
        });
        let state = shared.clone();
        let thread = std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || loop {
                if state.stop.load(Ordering::SeqCst) {
                    return;
                }
                if state.active.load(Ordering::SeqCst) == 0 {
                    // A guard taken after the load above unparks this thread first, and
                    // then `park` returns at once: no tick is missed.
                    state.idle.store(true, Ordering::SeqCst);
                    std::thread::park();
                    state.idle.store(false, Ordering::SeqCst);
                    continue;
                }
                std::thread::sleep(TICK);
                tick();
            })
            .expect("spawning the epoch thread")
            .thread()
            .clone();
        EpochTicker { shared, thread }
    }

    /// A guard under which the epoch advances; take it before a store runs any code and
    /// keep it until the store is dropped.
    pub fn ticking(&self) -> Ticking {
        debug_assert!(
            !self.shared.stop.load(Ordering::SeqCst),
            "the ticker has stopped"
        );
        if self.shared.active.fetch_add(1, Ordering::SeqCst) == 0 {
            self.thread.unpark();
        }
        Ticking {
            shared: self.shared.clone(),
        }
    }

    #[cfg(test)]
    fn is_idle(&self) -> bool {
        self.shared.idle.load(Ordering::SeqCst)
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.thread.unpark();
    }
}

/// Keeps the epoch advancing while it lives (see [`EpochTicker::ticking`]).
pub struct Ticking {
    shared: Arc<Shared>,
}

impl Drop for Ticking {
    fn drop(&mut self) {
        self.shared.active.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;
    use std::time::Instant;

    /// Waits (up to ten seconds) for `condition`.
    fn eventually(what: &str, condition: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !condition() {
            assert!(Instant::now() < deadline, "never: {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn the_epoch_advances_while_a_guard_lives_and_rests_otherwise() {
        let ticks = Arc::new(AtomicU64::new(0));
        let counter = ticks.clone();
        let ticker = EpochTicker::start(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        let count = || ticks.load(Ordering::SeqCst);

        // No store: the thread parks without ticking.
        eventually("the ticker parks", || ticker.is_idle());
        assert_eq!(count(), 0);

        // A store: ticks, and on with two guards after one of them goes.
        let first = ticker.ticking();
        eventually("ticks with a guard", || count() >= 3);
        let second = ticker.ticking();
        drop(first);
        let now = count();
        eventually("ticks with the second guard", || count() >= now + 3);

        // The last guard gone: the thread parks and the epoch stays where it is.
        drop(second);
        eventually("the ticker parks again", || ticker.is_idle());
        let parked_at = count();
        std::thread::sleep(TICK * 10);
        assert_eq!(count(), parked_at, "ticked while no guard lived");

        // A guard after a rest wakes it.
        let _again = ticker.ticking();
        eventually("ticks again after a rest", || count() >= parked_at + 3);
    }
}
