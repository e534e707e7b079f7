//! Millisecond timestamps as the ISO-8601 strings clients see, and the rounding rules.
//!
//! Clients get whole seconds: expiries are rounded down and block ends rounded up, so a
//! client that trusts the displayed times never acts too late or retries too early.

/// Rounds down to the whole second.
pub fn floor_to_second(ms: u64) -> u64 {
    ms - ms % 1000
}

/// Rounds up to the whole second (saturating at the last whole second that fits).
pub fn ceil_to_second(ms: u64) -> u64 {
    ms.div_ceil(1000)
        .checked_mul(1000)
        .unwrap_or_else(|| floor_to_second(ms))
}

/// Formats ms since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC): the times in
/// answers and the server's log lines. Digits are written straight into the text (the
/// answer to every create and verify carries one or two of these); a year past 9999,
/// which only a clock moved far ahead reaches, takes as many digits as it needs.
pub fn iso8601_ms(ms: u64) -> String {
    let days = ms / 86_400_000;
    let ms_of_day = ms % 86_400_000;
    let (year, month, day) = civil_from_days(days);
    let (hour, minute, second, milli) = (
        ms_of_day / 3_600_000,
        ms_of_day / 60_000 % 60,
        ms_of_day / 1000 % 60,
        ms_of_day % 1000,
    );
    if year > 9999 {
        return format!("{year}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{milli:03}Z");
    }
    let mut text = *b"0000-00-00T00:00:00.000Z";
    for (range, value) in [
        (0..4, year),
        (5..7, month),
        (8..10, day),
        (11..13, hour),
        (14..16, minute),
        (17..19, second),
        (20..23, milli),
    ] {
        let mut value = value;
        for digit in text[range].iter_mut().rev() {
            *digit = b'0' + (value % 10) as u8;
            value /= 10;
        }
    }
    text.iter().map(|&b| char::from(b)).collect()
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day).
///
/// Howard Hinnant's `civil_from_days`, specialised to non-negative day counts so it runs on
/// unsigned integers: shift the epoch to 0000-03-01 so leap days fall at the end of each
/// 400-year era, then peel off eras, years of the era and days of the year.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Inverse of `civil_from_days` (Hinnant's `days_from_civil`), test-only.
    fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
        let year = if month <= 2 { year - 1 } else { year };
        let era = year / 400;
        let year_of_era = year - era * 400;
        let month_from_march = if month > 2 { month - 3 } else { month + 9 };
        let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
        let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
        era * 146_097 + day_of_era - 719_468
    }

    fn parse(iso: &str) -> Option<u64> {
        let num = |range: std::ops::Range<usize>| iso.get(range)?.parse::<u64>().ok();
        let year_len = iso.find('-')?;
        let rest = year_len;
        let year = num(0..year_len)?;
        let month = num(rest + 1..rest + 3)?;
        let day = num(rest + 4..rest + 6)?;
        let hour = num(rest + 7..rest + 9)?;
        let minute = num(rest + 10..rest + 12)?;
        let second = num(rest + 13..rest + 15)?;
        let milli = num(rest + 16..rest + 19)?;
        Some(
            days_from_civil(year, month, day) * 86_400_000
                + hour * 3_600_000
                + minute * 60_000
                + second * 1000
                + milli,
        )
    }

    #[test]
    fn known_values() {
        assert_eq!(iso8601_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso8601_ms(1_709_251_199_999), "2024-02-29T23:59:59.999Z");
        assert_eq!(iso8601_ms(1_795_731_253_000), "2026-11-26T22:14:13.000Z");
        assert_eq!(iso8601_ms(4_102_444_800_000), "2100-01-01T00:00:00.000Z");
        assert_eq!(iso8601_ms(253_402_300_799_999), "9999-12-31T23:59:59.999Z");
        assert_eq!(iso8601_ms(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(iso8601_ms(1_796_299_199_999), "2026-12-03T11:59:59.999Z");
        // Beyond year 9999 the year grows more digits.
        assert_eq!(iso8601_ms(253_402_300_800_000), "10000-01-01T00:00:00.000Z");
        assert!(iso8601_ms(u64::MAX).ends_with('Z'));
    }

    #[test]
    fn rounding() {
        assert_eq!(floor_to_second(1_999), 1_000);
        assert_eq!(floor_to_second(2_000), 2_000);
        assert_eq!(ceil_to_second(1_001), 2_000);
        assert_eq!(ceil_to_second(2_000), 2_000);
        assert_eq!(ceil_to_second(0), 0);
        assert_eq!(ceil_to_second(u64::MAX), floor_to_second(u64::MAX));
    }

    proptest! {
        #[test]
        fn roundtrips_through_parsing(ms in 0u64..253_402_300_800_000) {
            let iso = iso8601_ms(ms);
            prop_assert_eq!(iso.len(), 24);
            prop_assert_eq!(parse(&iso), Some(ms));
        }

        #[test]
        fn is_monotonic(a in any::<u64>(), b in any::<u64>()) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(floor_to_second(lo) <= floor_to_second(hi));
            prop_assert!(ceil_to_second(lo) <= ceil_to_second(hi));
            prop_assert!(ceil_to_second(a) >= floor_to_second(a));
        }

        #[test]
        fn never_panics(ms in any::<u64>()) {
            let _ = iso8601_ms(ms);
        }
    }
}
