//! Human durations as operators write them in site files and plans: `30s`, `5m`,
//! `1h30m`, `2d`, `250ms`; and the inverse, for reports.
//!
//! No duration is longer than [`MAX_DURATION`], ten years: longer than any wait,
//! timeout, retention or boot a datacenter has, and short enough that modelled time can
//! add thousands of them to a date without leaving the calendar's range.

use std::fmt;
use std::time::Duration;

/// The longest duration: 3650 days, ten years (see the module's doc).
pub const MAX_DURATION: Duration = Duration::from_secs(3650 * 86_400);

/// Parses `"90s"`, `"5m"`, `"1h30m"`, `"2d"`, `"250ms"`. A bare `0` is zero. Longer than
/// [`MAX_DURATION`] is an error.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err("empty duration: write e.g. 30s, 5m, 1h30m, 2d".into());
    }
    let mut total_ms: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("bad duration {text:?}: expected a number at {rest:?}"));
        }
        let number: u64 = rest[..digits].parse().map_err(|_| too_long(text))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit_ms = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => return Err(format!("bad duration {text:?}: missing unit (ms, s, m, h, d)")),
            other => {
                return Err(format!("bad duration {text:?}: unknown unit {other:?} (ms, s, m, h, d)"));
            }
        };
        rest = &rest[unit_len..];
        total_ms = number
            .checked_mul(unit_ms)
            .and_then(|ms| total_ms.checked_add(ms))
            .filter(|&ms| ms <= MAX_DURATION.as_millis() as u64)
            .ok_or_else(|| too_long(text))?;
    }
    Ok(Duration::from_millis(total_ms))
}

fn too_long(text: &str) -> String {
    format!(
        "bad duration {text:?}: longer than {} (10 years), the longest a duration may be",
        HumanDuration(MAX_DURATION)
    )
}

/// Displays a duration the way [`parse_duration`] reads it, largest units first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)] {
            if ms >= size {
                write!(f, "{}{unit}", ms / size)?;
                ms %= size;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_compound_durations() {
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172_800));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
    }

    #[test]
    fn rejects_missing_or_unknown_units() {
        assert!(parse_duration("5").unwrap_err().contains("missing unit"));
        assert!(parse_duration("5y").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("m").unwrap_err().contains("expected a number"));
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn a_duration_longer_than_ten_years_is_refused_naming_the_limit() {
        assert_eq!(parse_duration("3650d").unwrap(), MAX_DURATION);
        for text in ["3650d1ms", "1000000000d", "99999999999999999999999s", "87601h"] {
            let err = parse_duration(text).unwrap_err();
            assert!(err.contains("longer than 3650d (10 years)"), "{text}: {err}");
        }
    }

    #[test]
    fn displays_what_it_parses() {
        for text in ["1h30m", "250ms", "2d", "5m", "1d2h3m4s5ms"] {
            let parsed = parse_duration(text).unwrap();
            assert_eq!(HumanDuration(parsed).to_string(), text);
        }
        assert_eq!(HumanDuration(Duration::ZERO).to_string(), "0s");
    }
}
