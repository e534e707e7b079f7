//! The fraud guard: per destination group, sends that never led to a successful
//! verification, over the last hour and the last day, against thresholds that grow
//! with the group's verified traffic.
//!
//! SMS pumping shows as many codes sent to one group (`sms:+44`) that nobody ever
//! enters. Each send adds one to the group's *sent* counters; each successful
//! verification of a credential whose code was sent adds one to its *verified*
//! counters (the store remembers, per credential key, the group of its pending send).
//! Unverified = sent − verified. The thresholds:
//! - daily: `max(daily_floor, verified_ratio × verified in the last day)`;
//! - hourly: `max(hourly_floor, daily / 6)`.
//!
//! A send that would take either count over its threshold *trips* the guard: in
//! `record` mode it still goes out (a warning line, a counter); in `deny` mode it is
//! refused with 429 until the counts fall, which only refuses sends to that group.
//!
//! Counts use two-bucket sliding windows (the current fixed window plus the previous
//! one weighted by how much of it still overlaps the last hour/day): O(1) state per
//! group and window, exact enough for a threshold, and the same arithmetic in Lua.

pub const HOUR_MS: u64 = 3_600_000;
pub const DAY_MS: u64 = 24 * HOUR_MS;

/// `record` (log and count) or `deny` (refuse while tripped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FraudMode {
    Record,
    Deny,
}

/// The guard's thresholds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FraudThresholds {
    pub hourly_floor: u64,
    pub daily_floor: u64,
    pub verified_ratio: f64,
}

impl FraudThresholds {
    /// `(hourly, daily)` thresholds for a group with `verified_day` recent verifications.
    pub fn limits(&self, verified_day: f64) -> (f64, f64) {
        let daily = (self.daily_floor as f64).max(self.verified_ratio * verified_day);
        let hourly = (self.hourly_floor as f64).max(daily / 6.0);
        (hourly, daily)
    }

    /// Whether one more unverified send would exceed a threshold, given the windowed
    /// counts; `Some(until the window that tripped moves on)` if so. That is only a
    /// bound from below: [`FraudThresholds::retry_after`] says when to come back.
    pub fn trips(&self, counts: &GroupCounts, now: u64) -> Option<u64> {
        let (hourly, daily) = self.limits(counts.verified_day);
        let unverified_hour = (counts.sent_hour - counts.verified_hour).max(0.0);
        let unverified_day = (counts.sent_day - counts.verified_day).max(0.0);
        if unverified_day + 1.0 > daily {
            Some(DAY_MS - now % DAY_MS)
        } else if unverified_hour + 1.0 > hourly {
            Some(HOUR_MS - now % HOUR_MS)
        } else {
            None
        }
    }

    /// How long until one more send to a tripped group would pass, if nothing else is
    /// sent or verified meanwhile. The sliding windows let the previous window's sends go
    /// gradually, so the next window boundary alone comes too early: a client told to
    /// come back then would be refused again. Verified sends fade too, and with them the
    /// thresholds, so a group can pass and trip again later: this finds the *first*
    /// passing moment, scanning forward (by the minute for two hours, where an hourly
    /// trip ends, then by ten minutes up to two days, after which every count is gone)
    /// and bisecting the step it passes in, to the second.
    pub fn retry_after(&self, windows: &GroupWindows, now: u64) -> u64 {
        let passes = |wait: u64| {
            self.trips(&windows.counts(now + wait), now + wait)
                .is_none()
        };
        let steps = (1..=120u64)
            .map(|m| m * 60_000)
            .chain((13..=288u64).map(|t| t * 600_000));
        let mut tripped = 0;
        let mut first_pass = None;
        if !passes(0) {
            for wait in steps {
                if passes(wait) {
                    first_pass = Some(wait);
                    break;
                }
                tripped = wait;
            }
        }
        let Some(mut passed) = first_pass else {
            // Not tripped now, or never passing (a floor below one send): the boundary.
            return self.trips(&windows.counts(now), now).unwrap_or(1).max(1);
        };
        while passed - tripped > 1000 {
            let middle = tripped + (passed - tripped) / 2;
            if passes(middle) {
                passed = middle;
            } else {
                tripped = middle;
            }
        }
        passed
    }
}

/// A group's windowed counts at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct GroupCounts {
    pub sent_hour: f64,
    pub sent_day: f64,
    pub verified_hour: f64,
    pub verified_day: f64,
}

/// One two-bucket sliding window counter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WindowCounter {
    /// Index of the current fixed window (`now / window`).
    index: u64,
    current: u32,
    previous: u32,
}

impl WindowCounter {
    fn roll(&mut self, now: u64, window: u64) {
        let index = now / window;
        if index == self.index {
            return;
        }
        self.previous = if index == self.index + 1 {
            self.current
        } else {
            0
        };
        self.current = 0;
        self.index = index;
    }

    pub fn add(&mut self, now: u64, window: u64) {
        self.roll(now, window);
        self.current = self.current.saturating_add(1);
    }

    /// The count over the last `window` milliseconds, estimated.
    pub fn estimate(&self, now: u64, window: u64) -> f64 {
        let mut at = *self;
        at.roll(now, window);
        estimate(at.current, at.previous, now, window)
    }
}

/// `current + previous × (the previous window's share of the last `window`)`, the one
/// formula both stores use.
pub fn estimate(current: u32, previous: u32, now: u64, window: u64) -> f64 {
    let elapsed = (now % window) as f64 / window as f64;
    f64::from(current) + f64::from(previous) * (1.0 - elapsed)
}

/// A group's four counters (memory store).
#[derive(Clone, Copy, Debug, Default)]
pub struct GroupWindows {
    sent_hour: WindowCounter,
    sent_day: WindowCounter,
    verified_hour: WindowCounter,
    verified_day: WindowCounter,
}

impl GroupWindows {
    /// The windows as of `now` from their counts: per window (hourly, then daily) the
    /// current window's sends and verifications and the previous window's.
    pub fn at(now: u64, hour: [u32; 4], day: [u32; 4]) -> GroupWindows {
        let window = |length: u64, current: u32, previous: u32| WindowCounter {
            index: now / length,
            current,
            previous,
        };
        let [hs, hv, hsp, hvp] = hour;
        let [ds, dv, dsp, dvp] = day;
        GroupWindows {
            sent_hour: window(HOUR_MS, hs, hsp),
            sent_day: window(DAY_MS, ds, dsp),
            verified_hour: window(HOUR_MS, hv, hvp),
            verified_day: window(DAY_MS, dv, dvp),
        }
    }

    pub fn counts(&self, now: u64) -> GroupCounts {
        GroupCounts {
            sent_hour: self.sent_hour.estimate(now, HOUR_MS),
            sent_day: self.sent_day.estimate(now, DAY_MS),
            verified_hour: self.verified_hour.estimate(now, HOUR_MS),
            verified_day: self.verified_day.estimate(now, DAY_MS),
        }
    }

    pub fn sent(&mut self, now: u64) {
        self.sent_hour.add(now, HOUR_MS);
        self.sent_day.add(now, DAY_MS);
    }

    pub fn verified(&mut self, now: u64) {
        self.verified_hour.add(now, HOUR_MS);
        self.verified_day.add(now, DAY_MS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULTS: FraudThresholds = FraudThresholds {
        hourly_floor: 3,
        daily_floor: 20,
        verified_ratio: 0.2,
    };

    #[test]
    fn window_counter_slides() {
        let mut c = WindowCounter::default();
        let start = 10 * HOUR_MS;
        for _ in 0..4 {
            c.add(start, HOUR_MS);
        }
        assert_eq!(c.estimate(start, HOUR_MS), 4.0);
        // Half-way through the next hour, half of the previous hour still counts.
        assert_eq!(c.estimate(start + HOUR_MS + HOUR_MS / 2, HOUR_MS), 2.0);
        // Two windows on, nothing is left.
        assert_eq!(c.estimate(start + 2 * HOUR_MS, HOUR_MS), 0.0);
        c.add(start + 5 * HOUR_MS, HOUR_MS);
        assert_eq!(c.estimate(start + 5 * HOUR_MS, HOUR_MS), 1.0);
    }

    #[test]
    fn unverified_sends_trip_at_the_floor_and_verified_traffic_raises_it() {
        let now = 100 * DAY_MS;
        let mut group = GroupWindows::default();
        for _ in 0..3 {
            assert_eq!(DEFAULTS.trips(&group.counts(now), now), None);
            group.sent(now);
        }
        // The fourth unverified send within the hour trips the hourly floor of 3.
        assert_eq!(DEFAULTS.trips(&group.counts(now), now), Some(HOUR_MS));
        // Verified sends do not count as unverified.
        let mut busy = GroupWindows::default();
        for _ in 0..10 {
            busy.sent(now);
            busy.verified(now);
        }
        assert_eq!(DEFAULTS.trips(&busy.counts(now), now), None);
        // A group with a lot of verified traffic gets higher thresholds.
        assert_eq!(DEFAULTS.limits(1000.0), (200.0 / 6.0, 200.0));
        assert_eq!(DEFAULTS.limits(10.0), (20.0 / 6.0, 20.0));
    }

    #[test]
    fn a_tripped_group_is_told_to_come_back_when_a_send_would_pass() {
        // Four unverified sends at the end of an hour trip the hourly floor of 3.
        let now = 100 * DAY_MS + HOUR_MS - 1_000;
        let mut group = GroupWindows::default();
        for _ in 0..4 {
            group.sent(now);
        }
        assert_eq!(DEFAULTS.trips(&group.counts(now), now), Some(1_000));
        // At the boundary all four still count (the previous hour wholly overlaps the
        // last hour): coming back then would be refused again.
        let boundary = now + 1_000;
        assert!(DEFAULTS.trips(&group.counts(boundary), boundary).is_some());
        let retry = DEFAULTS.retry_after(&group, now);
        let back = now + retry;
        assert_eq!(DEFAULTS.trips(&group.counts(back), back), None);
        let early = back - 1_000;
        assert!(DEFAULTS.trips(&group.counts(early), early).is_some());
        // The hourly threshold is max(3, 20 / 6): 4 × (1 − elapsed) + 1 ≤ 20 / 6 from
        // 25 minutes into the next hour.
        assert!(
            (1_500_000..=1_502_000).contains(&(retry - 1_000)),
            "{retry}"
        );
        // The same windows, as a store reads them back, give the same answer.
        let read = GroupWindows::at(now, [4, 0, 0, 0], [4, 0, 0, 0]);
        assert_eq!(DEFAULTS.retry_after(&read, now), retry);
    }

    #[test]
    fn the_first_moment_a_send_passes_is_found_even_if_it_trips_again_later() {
        // 02:50, a busy group: 1199 sent and 1000 verified today (daily threshold 200,
        // hourly 200 / 6), 40 unverified in this hour: the hourly threshold trips. Once
        // the hour's sends fade a send passes, about 22 minutes on; a day later, with the
        // verified sends faded and the thresholds with them, it would trip again.
        let now = 100 * DAY_MS + 2 * HOUR_MS + 50 * 60_000;
        let windows = GroupWindows::at(now, [40, 0, 0, 0], [1199, 1000, 0, 0]);
        assert!(DEFAULTS.trips(&windows.counts(now), now).is_some());
        let later = now + DAY_MS;
        assert!(DEFAULTS.trips(&windows.counts(later), later).is_some());
        let retry = DEFAULTS.retry_after(&windows, now);
        assert!((20 * 60_000..25 * 60_000).contains(&retry), "{retry}");
        let back = now + retry;
        assert_eq!(DEFAULTS.trips(&windows.counts(back), back), None);
        let early = back - 1_000;
        assert!(DEFAULTS.trips(&windows.counts(early), early).is_some());
    }

    #[test]
    fn the_daily_threshold_trips_even_when_spread_over_hours() {
        let day = 50 * DAY_MS;
        let mut group = GroupWindows::default();
        // 3 unverified sends every other hour: the hourly floor never trips...
        let mut tripped_at = None;
        for hour in 0..8u64 {
            let now = day + hour * 2 * HOUR_MS;
            for _ in 0..3 {
                if let Some(retry) = DEFAULTS.trips(&group.counts(now), now) {
                    tripped_at.get_or_insert((hour, retry));
                } else {
                    group.sent(now);
                }
            }
        }
        // ...but the day reaches 20 in the seventh busy hour.
        let (hour, retry) = tripped_at.expect("the daily threshold trips");
        assert_eq!(hour, 6);
        assert!(retry > HOUR_MS, "waits for the day window: {retry}");
    }
}
