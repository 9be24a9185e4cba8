//! Human durations in config: `90s`, `30m`, `1h30m`, `2d`.

use std::time::Duration;

/// Parses a duration made of `<number><unit>` parts, units `s`, `m`, `h`, `d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let expected = "expected a duration like `90s`, `30m`, `1h30m` or `2d`";
    if s.is_empty() {
        return Err(format!("empty duration: {expected}"));
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
            .ok_or_else(|| format!("`{s}` is too long a duration"))?;
    }
    if !digits.is_empty() {
        return Err(format!(
            "`{s}`: the number `{digits}` has no unit; {expected}"
        ));
    }
    Ok(Duration::from_secs(total))
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
        for bad in ["", "10", "h", "5w", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
