//! Names in messages: short lists, "did you mean" suggestions, and nouns that agree with
//! their numbers, so that an operator who mistypes a VM, a site or a policy is told what
//! exists, in plain English.

use std::borrow::Cow;
use std::fmt;

/// " (did you mean X?)" for the candidate closest to `name`, within 2 edits (Levenshtein,
/// in characters).
pub fn did_you_mean<'n>(name: &str, candidates: impl Iterator<Item = &'n str>) -> String {
    candidates
        .map(|candidate| (strsim::levenshtein(name, candidate), candidate))
        .filter(|(distance, _)| *distance <= 2)
        .min_by_key(|(distance, _)| *distance)
        .map_or_else(String::new, |(_, candidate)| format!(" (did you mean {candidate}?)"))
}

/// Names for a message: at most ten, then how many more.
pub fn list<S: AsRef<str>>(names: impl Iterator<Item = S>) -> String {
    const SHOWN: usize = 10;
    let names: Vec<S> = names.collect();
    let shown = names.iter().take(SHOWN).map(AsRef::as_ref).collect::<Vec<_>>().join(", ");
    match names.len() {
        0 => "none".into(),
        n if n > SHOWN => format!("{shown}, and {} more", n - SHOWN),
        _ => shown,
    }
}

/// A number and a noun that agrees with it, as just's `Count`: `Count::numbered("VM",
/// 10_000)` reads "10,000 VMs", `Count::numbered("policy", 1)` "1 policy".
#[derive(Debug, Clone, Copy)]
pub struct Count<'a> {
    noun: &'a str,
    n: usize,
}

impl<'a> Count<'a> {
    pub fn numbered(noun: &'a str, n: usize) -> Self {
        Count { noun, n }
    }
}

impl fmt::Display for Count<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let noun = if self.n == 1 { Cow::Borrowed(self.noun) } else { plural(self.noun) };
        write!(f, "{} {noun}", Thousands(self.n as u64))
    }
}

/// The plural of a noun of drplan's messages: "VM" → "VMs", "policy" → "policies",
/// "replication group" → "replication groups".
pub fn plural(noun: &str) -> Cow<'_, str> {
    match noun.strip_suffix('y') {
        Some(stem) if !stem.ends_with(['a', 'e', 'i', 'o', 'u']) => format!("{stem}ies").into(),
        _ if noun.ends_with(['s', 'x']) || noun.ends_with("ch") || noun.ends_with("sh") => format!("{noun}es").into(),
        _ => format!("{noun}s").into(),
    }
}

/// A number with thousands separators: 10,000.
#[derive(Debug, Clone, Copy)]
pub struct Thousands(pub u64);

impl fmt::Display for Thousands {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.0.to_string();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                f.write_str(",")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_closest_name_within_two_edits() {
        assert_eq!(did_you_mean("sql1", ["sql01", "web01"].into_iter()), " (did you mean sql01?)");
        assert_eq!(did_you_mean("zzz", ["sql01"].into_iter()), "");
        // A swap is two edits; the closest wins; characters, not bytes, are counted.
        assert_eq!(did_you_mean("slq01", ["sql01"].into_iter()), " (did you mean sql01?)");
        assert_eq!(did_you_mean("web1", ["web01", "web"].into_iter()), " (did you mean web01?)");
        assert_eq!(did_you_mean("sqlé1", ["sql01"].into_iter()), " (did you mean sql01?)");
        assert_eq!(did_you_mean("sql", ["sql01"].into_iter()), " (did you mean sql01?)");
    }

    #[test]
    fn long_lists_are_cut() {
        assert_eq!(list(["a", "b"].iter()), "a, b");
        assert_eq!(list((0..12).map(|i| i.to_string())), "0, 1, 2, 3, 4, 5, 6, 7, 8, 9, and 2 more");
        assert_eq!(list(std::iter::empty::<&str>()), "none");
    }

    #[test]
    fn counts_agree_with_their_numbers() {
        assert_eq!(Count::numbered("VM", 1).to_string(), "1 VM");
        assert_eq!(Count::numbered("VM", 10_000).to_string(), "10,000 VMs");
        assert_eq!(Count::numbered("error", 0).to_string(), "0 errors");
        assert_eq!(Count::numbered("policy", 2).to_string(), "2 policies");
        assert_eq!(Count::numbered("replication group", 1).to_string(), "1 replication group");
        assert_eq!(plural("day"), "days");
        assert_eq!(plural("address"), "addresses");
        assert_eq!(Thousands(999).to_string(), "999");
        assert_eq!(Thousands(1_234_567).to_string(), "1,234,567");
    }
}
