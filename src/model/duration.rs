//! Human durations as operators write them in site files and plans: `30s`, `5m`,
//! `1h30m`, `2d`, `250ms`, `4m0.5s`; and the inverse, for reports, where seconds carry
//! their milliseconds as a fraction (`4m0.938s`, read as easily as it is written).
//!
//! No duration is longer than [`MAX_DURATION`], ten years: longer than any wait,
//! timeout, retention or boot a datacenter has, and short enough that modelled time can
//! add thousands of them to a date without leaving the calendar's range.

use std::fmt;
use std::time::Duration;

/// The longest duration: 3650 days, ten years (see the module's doc).
pub const MAX_DURATION: Duration = Duration::from_secs(3650 * 86_400);

/// Parses `"90s"`, `"5m"`, `"1h30m"`, `"2d"`, `"250ms"`, `"1.5s"` (seconds may have up to
/// three decimals). A bare `0` is zero. Longer than [`MAX_DURATION`] is an error.
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
        // Seconds may carry milliseconds as a fraction, as reports show them.
        let mut fraction_ms = 0;
        if let Some(after) = rest.strip_prefix('.') {
            let decimals = after.find(|c: char| !c.is_ascii_digit()).unwrap_or(after.len());
            if decimals == 0
                || decimals > 3
                || !after[decimals..].starts_with('s')
                || after[decimals..].starts_with("ms")
            {
                return Err(format!(
                    "bad duration {text:?}: only seconds take a fraction, of up to 3 decimals (e.g. 1.5s)"
                ));
            }
            fraction_ms = after[..decimals].parse::<u64>().expect("digits") * 10u64.pow(3 - decimals as u32);
            rest = &after[decimals..];
        }
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
            .and_then(|ms| ms.checked_add(fraction_ms))
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

/// Displays a duration the way [`parse_duration`] reads it, largest units first, the
/// milliseconds as a fraction of a second: `1h2m`, `4m0.938s`, `0.25s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000)] {
            if ms >= size {
                write!(f, "{}{unit}", ms / size)?;
                ms %= size;
            }
        }
        let (seconds, millis) = (ms / 1000, ms % 1000);
        match (seconds, millis) {
            (0, 0) => Ok(()),
            (seconds, 0) => write!(f, "{seconds}s"),
            (seconds, millis) => {
                let fraction = format!("{millis:03}");
                write!(f, "{seconds}.{}s", fraction.trim_end_matches('0'))
            }
        }
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
        for text in ["1h30m", "0.25s", "2d", "5m", "1d2h3m4.005s", "4m0.938s", "13m52.46s"] {
            let parsed = parse_duration(text).unwrap();
            assert_eq!(HumanDuration(parsed).to_string(), text);
        }
        assert_eq!(HumanDuration(Duration::ZERO).to_string(), "0s");
        assert_eq!(parse_duration("250ms").unwrap(), parse_duration("0.25s").unwrap(), "both read");
    }

    #[test]
    fn only_seconds_take_a_fraction_of_up_to_three_decimals() {
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        for text in ["1.5m", "1.2345s", "1.s", "2.5ms"] {
            let err = parse_duration(text).unwrap_err();
            assert!(err.contains("only seconds take a fraction"), "{text}: {err}");
        }
    }
}
