//! Human durations in config: `90s`, `30m`, `1h30m`, `2d`, and the
//! workbench's time input: `+2h`, `-1d`, `+30m` or an RFC 3339 time.
//!
//! Every parser here returns an error for any input: no overflow, no
//! slicing inside a character, no panic.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

/// The longest input the time parsers read; longer text is refused before
/// it is looked at.
const MAX_INPUT: usize = 64;

/// The longest duration config may name: 100 years. Anything a timer,
/// soak or timeout adds to a clock stays far inside the calendar.
pub const MAX_DURATION_SECS: u64 = 36_500 * 86_400;

/// Parses a duration made of `<number><unit>` parts, units `s`, `m`, `h`, `d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let expected = "expected a duration like `90s`, `30m`, `1h30m` or `2d`";
    if s.is_empty() {
        return Err(format!("empty duration: {expected}"));
    }
    if s.len() > MAX_INPUT {
        return Err(format!(
            "a duration of {} bytes is too long; {expected}",
            s.len()
        ));
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(format!("`{s}`: unknown unit `{c}`; {expected}")),
        };
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("`{s}`: a unit needs a number before it; {expected}"))?;
        digits.clear();
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .filter(|v| *v <= MAX_DURATION_SECS)
            .ok_or_else(|| format!("`{s}` is too long a duration; at most 36500d"))?;
    }
    if !digits.is_empty() {
        return Err(format!(
            "`{s}`: the number `{digits}` has no unit; {expected}"
        ));
    }
    Ok(Duration::from_secs(total))
}

/// A time relative to `now` (`+2h`, `-1d`, `+30m`) or an RFC 3339 time
/// (`2026-12-24T18:00:00Z`). An offset too large for the calendar, a
/// unit that is not `m`, `h` or `d`, or any other text is an error.
pub fn parse_when(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let t = text.trim();
    if t.len() > MAX_INPUT {
        return Err(format!(
            "a time of {} bytes is too long; write 2026-12-24T18:00:00Z or +2h",
            t.len()
        ));
    }
    if let Some((sign, rest)) = t
        .strip_prefix('+')
        .map(|r| (1, r))
        .or_else(|| t.strip_prefix('-').map(|r| (-1, r)))
    {
        let mut chars = rest.chars();
        let unit = chars.next_back();
        let number = chars.as_str();
        let n: i64 = number
            .parse()
            .ok()
            .filter(|_| number.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| format!("`{t}`: write +2h, -1d or +30m"))?;
        let per_unit: i64 = match unit {
            Some('m') => 60,
            Some('h') => 3600,
            Some('d') => 86_400,
            _ => return Err(format!("`{t}`: the unit is m, h or d")),
        };
        let too_far = || format!("`{t}` is too far from now; the calendar ends before that");
        let secs = n
            .checked_mul(per_unit)
            .and_then(|s| s.checked_mul(sign))
            .ok_or_else(too_far)?;
        let d = TimeDelta::try_seconds(secs).ok_or_else(too_far)?;
        // Within the years RFC 3339 can write (1 to 9999): whatever reads
        // the time later (a calendar, a freeze window's next period) has
        // thousands of years of room before the end of the calendar.
        return now
            .checked_add_signed(d)
            .filter(|t| (1..=9999).contains(&chrono::Datelike::year(t)))
            .ok_or_else(too_far);
    }
    DateTime::parse_from_rfc3339(t)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|_| format!("`{t}` is not a time; write 2026-12-24T18:00:00Z or +2h"))
}

/// Whole seconds in the notation `parse_duration` reads: `1m20s`, `2h`,
/// `1d3h`, `0s`.
pub fn format_duration(d: Duration) -> String {
    let mut left = d.as_secs();
    if left == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, secs) in [('d', 86_400), ('h', 3600), ('m', 60), ('s', 1)] {
        if left >= secs {
            out.push_str(&format!("{}{unit}", left / secs));
            left %= secs;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_what_it_parses() {
        for (secs, text) in [(0, "0s"), (80, "1m20s"), (7200, "2h"), (97_205, "1d3h5s")] {
            assert_eq!(format_duration(Duration::from_secs(secs)), text);
            assert_eq!(parse_duration(text).unwrap().as_secs(), secs);
        }
    }

    #[test]
    fn parses_and_rejects() {
        assert_eq!(parse_duration("90s").unwrap().as_secs(), 90);
        assert_eq!(parse_duration("1h30m").unwrap().as_secs(), 5400);
        assert_eq!(parse_duration("2d").unwrap().as_secs(), 172_800);
        assert_eq!(
            parse_duration("36500d").unwrap().as_secs(),
            MAX_DURATION_SECS
        );
        for bad in [
            "",
            "10",
            "h",
            "5w",
            "1.5h",
            "2é",
            "99999999999999d",
            "36501d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    fn now() -> DateTime<Utc> {
        "2026-12-04T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn when_reads_offsets_and_times() {
        let now = now();
        assert_eq!(parse_when("+2h", now).unwrap(), now + TimeDelta::hours(2));
        assert_eq!(parse_when(" -1d ", now).unwrap(), now - TimeDelta::days(1));
        assert_eq!(
            parse_when("+30m", now).unwrap(),
            now + TimeDelta::minutes(30)
        );
        assert_eq!(
            parse_when("2026-12-24T18:00:00Z", now)
                .unwrap()
                .to_rfc3339(),
            "2026-12-24T18:00:00+00:00"
        );
    }

    /// The inputs that ended the workbench: a unit cut inside a
    /// character, and offsets past the end of the calendar.
    #[test]
    fn when_refuses_what_used_to_panic() {
        let now = now();
        for bad in [
            "+2é",
            "-2é",
            "+é",
            "+99999999999999d",
            "-99999999999999d",
            "+9999999999h",
            "-9999999999h",
            "+9223372036854775807m",
            "+94000000d",
            "-800000d",
            "-9223372036854775808m",
            "+-5h",
            "++5h",
            "+",
            "-",
            "+h",
            "soon",
        ] {
            assert!(parse_when(bad, now).is_err(), "{bad}");
        }
        assert!(parse_when(&"+1".repeat(100), now).is_err());
    }
}
