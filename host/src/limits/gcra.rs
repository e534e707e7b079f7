//! GCRA, the generic cell rate algorithm: a rate limit whose whole state per key is one
//! number, the *theoretical arrival time* (TAT).
//!
//! A budget of `burst` units refilled one unit every `emission_ms` is a TAT that each
//! allowed request pushes `emission_ms` further into the future. A request is allowed
//! while the pushed TAT stays within `burst × emission_ms` of now; the key is "full
//! again" once the TAT lies in the past, so state that reached its TAT can be dropped
//! (that is how entries expire by themselves). The functions here are pure: the stores
//! (memory, and the Lua mirror of [`charge`] in `redis.rs`) apply them under their own
//! atomicity.

/// A budget: `burst` units, one unit back every `emission_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub emission_ms: u64,
    pub burst: u32,
}

impl Rate {
    /// `limit` units per `period_ms`, all of them usable at once.
    pub fn per(limit: u32, period_ms: u64) -> Rate {
        Rate {
            emission_ms: (period_ms / u64::from(limit.max(1))).max(1),
            burst: limit.max(1),
        }
    }

    /// The span in which the whole burst refills: `burst × emission_ms`.
    pub fn window_ms(&self) -> u64 {
        self.emission_ms.saturating_mul(u64::from(self.burst))
    }
}

/// What one charge of one unit decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Allowed: store `tat` (until it passes); `remaining` units are left.
    Allowed { tat: u64, remaining: u32 },
    /// Refused: the next unit is available in `retry_after_ms`. State is unchanged.
    Refused { retry_after_ms: u64 },
}

/// Charges one unit to a key whose stored TAT is `tat` (0 for a key with no state).
pub fn charge(tat: u64, now: u64, rate: Rate) -> Decision {
    let tolerance = rate.window_ms();
    let next = tat.max(now).saturating_add(rate.emission_ms);
    let ahead = next - now;
    if ahead > tolerance {
        Decision::Refused {
            retry_after_ms: ahead - tolerance,
        }
    } else {
        let remaining = (tolerance - ahead) / rate.emission_ms;
        Decision::Allowed {
            tat: next,
            remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
        }
    }
}

/// Gives one unit back (a reservation that turned out not to be used). `None` when the
/// key is then full, so its state can be deleted.
pub fn refund(tat: u64, now: u64, rate: Rate) -> Option<u64> {
    let back = tat.saturating_sub(rate.emission_ms);
    (back > now).then_some(back)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(d: Decision) -> u64 {
        match d {
            Decision::Allowed { tat, .. } => tat,
            Decision::Refused { .. } => panic!("refused"),
        }
    }

    #[test]
    fn a_burst_then_one_unit_per_emission_interval() {
        // 5 per 10 minutes: one unit every 2 minutes, 5 at once.
        let rate = Rate::per(5, 600_000);
        assert_eq!(rate.emission_ms, 120_000);
        let now = 1_000_000;
        let mut tat = 0;
        for left in (0..5).rev() {
            match charge(tat, now, rate) {
                Decision::Allowed { tat: t, remaining } => {
                    assert_eq!(remaining, left);
                    tat = t;
                }
                Decision::Refused { .. } => panic!("refused early"),
            }
        }
        assert_eq!(
            charge(tat, now, rate),
            Decision::Refused {
                retry_after_ms: 120_000
            }
        );
        assert_eq!(
            charge(tat, now + 119_999, rate),
            Decision::Refused { retry_after_ms: 1 }
        );
        tat = allowed(charge(tat, now + 120_000, rate));
        assert!(matches!(
            charge(tat, now + 120_000, rate),
            Decision::Refused { .. }
        ));
        // After the whole window everything is back.
        let mut later = tat;
        for _ in 0..5 {
            later = allowed(charge(later, now + 720_000, rate));
        }
    }

    #[test]
    fn burst_smaller_than_the_period_limit() {
        // 30 per hour with a burst of 10.
        let rate = Rate {
            emission_ms: 120_000,
            burst: 10,
        };
        let mut tat = 0;
        for _ in 0..10 {
            tat = allowed(charge(tat, 0, rate));
        }
        assert!(matches!(charge(tat, 0, rate), Decision::Refused { .. }));
        // Over a whole hour at most burst + 3600/120 = 40 go through.
        let mut tat = 0;
        let mut allowed_count = 0;
        for second in 0..3600u64 {
            if let Decision::Allowed { tat: t, .. } = charge(tat, second * 1000, rate) {
                tat = t;
                allowed_count += 1;
            }
        }
        assert_eq!(allowed_count, 10 + 29);
    }

    #[test]
    fn refund_gives_one_unit_back_and_forgets_full_keys() {
        let rate = Rate::per(2, 2_000);
        let tat = allowed(charge(0, 10_000, rate));
        assert_eq!(refund(tat, 10_000, rate), None);
        let tat = allowed(charge(tat, 10_000, rate));
        assert_eq!(refund(tat, 10_000, rate), Some(11_000));
    }
}
