//! The rules of DOMAIN.md as messages cite them (`(R9)`), and where a reader finds them.

/// Where the rules a message cites (`(R9)`, `R31`) are explained, or `None` when it cites
/// none: `note: R9, R12 are explained in docs/rules.md`.
pub fn note(text: &str) -> Option<String> {
    let mut cited: Vec<u32> = Vec::new();
    let bytes = text.as_bytes();
    for (i, _) in text.match_indices('R') {
        let starts_word = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
        let digits = bytes[i + 1..].iter().take_while(|b| b.is_ascii_digit()).count();
        let ends_word = bytes.get(i + 1 + digits).is_none_or(|b| !b.is_ascii_alphanumeric());
        if !(starts_word && ends_word && (1..=2).contains(&digits)) {
            continue;
        }
        let rule: u32 = text[i + 1..i + 1 + digits].parse().expect("digits");
        if (1..=50).contains(&rule) && !cited.contains(&rule) {
            cited.push(rule);
        }
    }
    if cited.is_empty() {
        return None;
    }
    cited.sort_unstable();
    let names: Vec<String> = cited.iter().map(|rule| format!("R{rule}")).collect();
    let verb = if names.len() == 1 { "is" } else { "are" };
    Some(format!("note: {} {verb} explained in docs/rules.md", names.join(", ")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_message_citing_rules_gets_a_note_pointing_at_docs_rules_md() {
        let note = super::note("web03: 10.2.3.2 is taken (R9); see R31 and (R9, docs), not R99 or HR9 or R3x");
        assert_eq!(note.as_deref(), Some("note: R9, R31 are explained in docs/rules.md"));
        assert_eq!(super::note("R50").as_deref(), Some("note: R50 is explained in docs/rules.md"));
        assert_eq!(super::note("no rule here, ROUTER 12"), None);
    }
}
