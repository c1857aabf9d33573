//! Value parsers: each error says what is wrong and what is allowed.

use std::net::Ipv4Addr;

use chrono::{DateTime, Utc};

use crate::model::duration::parse_duration;
use crate::model::names::list;
use crate::model::recovery::{Timestamp, delta};
use crate::model::site::Pairing;

pub(super) const DEFAULT_START: &str = "2026-01-05T08:00:00Z";

/// One of a fixed set of words.
pub(super) fn one_of<T: Copy>(text: &str, what: &str, options: &[(&str, T)]) -> Result<T, String> {
    options.iter().find(|(word, _)| *word == text).map(|(_, value)| *value).ok_or_else(|| {
        let words: Vec<&str> = options.iter().map(|(word, _)| *word).collect();
        let (last, rest) = words.split_last().expect("options are never empty");
        format!("unknown {what} {text:?}: use {} or {last}", rest.join(", "))
    })
}

pub(super) fn parse_ipv4(text: &str) -> Result<Ipv4Addr, String> {
    text.parse().map_err(|_| format!("{text:?} is not an IPv4 address, e.g. \"10.1.1.10\""))
}

pub(super) fn rfc3339(text: &str) -> Result<Timestamp, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| format!("bad time {text:?}: write an RFC 3339 time, e.g. \"{DEFAULT_START}\""))
}

/// A site time: RFC 3339, or a signed offset from the simulation start (`-3d`, `+2h`, `0`).
pub(super) fn site_time(text: &str, start: Timestamp) -> Result<Timestamp, String> {
    if let Ok(time) = rfc3339(text) {
        return Ok(time);
    }
    let (sign, magnitude) = match text.split_at_checked(1) {
        Some(("-", rest)) => (-1, rest),
        Some(("+", rest)) => (1, rest),
        _ if text == "0" => (1, text),
        _ => {
            return Err(format!(
                "bad site time {text:?}: write an RFC 3339 time (\"{DEFAULT_START}\") or a signed offset from simulation.start (\"-3d\", \"+2h\", \"0\")"
            ));
        }
    };
    let offset = delta(parse_duration(magnitude)?);
    let time = if sign < 0 { start.checked_sub_signed(offset) } else { start.checked_add_signed(offset) };
    time.ok_or_else(|| format!("site time {text:?} is too far from the simulation start"))
}

/// Work hours `"08-18"`: UTC hours, start before end.
pub(super) fn parse_hours(text: &str) -> Result<(u32, u32), String> {
    text.split_once('-')
        .and_then(|(start, end)| Some((start.trim().parse().ok()?, end.trim().parse().ok()?)))
        .ok_or_else(|| format!("bad work hours {text:?}: write start-end hours of the day in UTC, e.g. \"08-18\""))
}

/// Names for a message, the first few only: an inventory may hold thousands of VMs.
pub(super) fn list_pairings(pairings: &[Pairing]) -> String {
    list(pairings.iter().map(|p| format!("{} -> {}", p.source, p.target)))
}
