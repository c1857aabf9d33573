//! Names in messages: short lists and "did you mean" suggestions, so that an operator
//! who mistypes a VM, a site or a policy is told what exists.

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
}
