//! Names in messages: short lists and "did you mean" suggestions, so that an operator
//! who mistypes a VM, a site or a policy is told what exists.

/// " (did you mean X?)" for the candidate closest to `name`, within 2 edits.
pub fn did_you_mean<'n>(name: &str, candidates: impl Iterator<Item = &'n str>) -> String {
    candidates
        .map(|candidate| (edit_distance(name, candidate), candidate))
        .filter(|(distance, _)| *distance <= 2)
        .min_by_key(|(distance, _)| *distance)
        .map_or_else(String::new, |(_, candidate)| format!(" (did you mean {candidate}?)"))
}

/// Levenshtein distance, in characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == *cb { diagonal } else { 1 + diagonal.min(above).min(row[j]) };
            diagonal = above;
        }
    }
    row[b.len()]
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
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("sql01", "sql01"), 0);
        assert_eq!(edit_distance("slq01", "sql01"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn long_lists_are_cut() {
        assert_eq!(list(["a", "b"].iter()), "a, b");
        assert_eq!(list((0..12).map(|i| i.to_string())), "0, 1, 2, 3, 4, 5, 6, 7, 8, 9, and 2 more");
        assert_eq!(list(std::iter::empty::<&str>()), "none");
    }
}
