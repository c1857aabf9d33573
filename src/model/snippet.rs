//! "This is the line that is wrong": the one renderer of every error that points into a
//! file — site file, `drplan.toml`, plan findings, script errors — so they all read alike:
//! severity first, then `file:line:column`, the message, and the line with a caret under
//! what is wrong:
//!
//! ```text
//! error: site.toml:42:21: vms."web01".nics[0].network: unknown network "prod-x" on site "primary" (its networks: prod)
//!    |
//! 42 | nics = [{ network = "prod-x", subnet = "web" }]
//!    |                     ^^^^^^^^
//! ```
//!
//! Pure: the caller reads the file and passes its text.

use std::fmt;
use std::ops::Range;

use serde::Serialize;

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The plan (or the file) must not be used.
    Error,
    /// Worth a look; the run may go on.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// Where in a file: `file:line:column`, `file:line` when the column is unknown (0), the
/// file alone when the line is.
#[derive(Debug, Clone, Copy)]
pub struct Location<'a> {
    pub file: &'a str,
    /// 1-based; 0 when unknown.
    pub line: usize,
    /// 1-based, in characters; 0 when unknown.
    pub column: usize,
}

impl fmt::Display for Location<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (0, _) => write!(f, "{}", self.file),
            (line, 0) => write!(f, "{}:{line}", self.file),
            (line, column) => write!(f, "{}:{line}:{column}", self.file),
        }
    }
}

/// The line a diagnostic points at, and what of it to underline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snippet {
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    /// The text of `line`, without its line break.
    pub text: String,
    /// How many characters from `column` the caret underlines (at least 1).
    pub width: usize,
}

/// A text with its lines indexed, to turn byte offsets and positions into snippets
/// quickly: a site file may hold 100,000 VMs, and every error needs its line.
pub struct Source<'t> {
    text: &'t str,
    /// The byte offset where each line starts.
    starts: Vec<usize>,
}

impl<'t> Source<'t> {
    pub fn new(text: &'t str) -> Self {
        let starts = std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
        Source { text, starts }
    }

    /// The 1-based line of a byte offset.
    pub fn line_of(&self, offset: usize) -> usize {
        self.starts.partition_point(|&start| start <= offset.min(self.text.len()))
    }

    /// The 1-based line and column (in characters) of a byte offset; an offset inside a
    /// character is that character's.
    pub fn position(&self, offset: usize) -> (usize, usize) {
        let start = self.char_start(offset);
        let line = self.line_of(start);
        (line, self.text[self.starts[line - 1]..start].chars().count() + 1)
    }

    /// The line where a byte span starts, underlined from there to the span's end (or
    /// the line's end, for a span over several lines).
    pub fn snippet(&self, span: Range<usize>) -> Snippet {
        let text = self.text;
        let start = self.char_start(span.start);
        let line = self.line_of(start);
        let (line_start, line_end) = self.bounds(line);
        let end = span.end.clamp(start, line_end);
        let end = (end..=line_end).find(|&i| text.is_char_boundary(i)).unwrap_or(line_end);
        Snippet {
            line,
            column: text[line_start..start].chars().count() + 1,
            text: text[line_start..line_end].trim_end_matches('\r').to_string(),
            width: text[start..end].chars().count().max(1),
        }
    }

    /// Line `line`, column `column` (1-based, in characters), with the token that starts
    /// there underlined: a quoted string to its closing quote, a word, else one
    /// character. `None` when the text has no such line.
    pub fn snippet_at(&self, line: usize, column: usize) -> Option<Snippet> {
        if line == 0 || line > self.starts.len() {
            return None;
        }
        let (line_start, line_end) = self.bounds(line);
        let text = self.text[line_start..line_end].trim_end_matches('\r');
        let column = column.clamp(1, text.chars().count() + 1);
        let rest: Vec<char> = text.chars().skip(column - 1).collect();
        Some(Snippet { line, column, text: text.to_string(), width: token_width(&rest) })
    }

    /// The start of the character at a byte offset, within the text.
    fn char_start(&self, offset: usize) -> usize {
        let mut start = offset.min(self.text.len());
        while !self.text.is_char_boundary(start) {
            start -= 1;
        }
        start
    }

    /// The byte range of a 1-based line, without its `\n`.
    fn bounds(&self, line: usize) -> (usize, usize) {
        let start = self.starts[line - 1];
        let end = self.starts.get(line).map_or(self.text.len(), |next| next - 1);
        (start, end)
    }
}

/// How many characters the token at the start of `rest` spans, at least 1.
fn token_width(rest: &[char]) -> usize {
    match rest.first() {
        Some(&quote @ ('"' | '\'' | '`')) => {
            let mut escaped = false;
            for (i, &c) in rest.iter().enumerate().skip(1) {
                match c {
                    _ if escaped => escaped = false,
                    '\\' if quote != '\'' => escaped = true,
                    c if c == quote => return i + 1,
                    _ => {}
                }
            }
            rest.len()
        }
        Some(c) if is_word(*c) => rest.iter().take_while(|c| is_word(**c)).count(),
        _ => 1,
    }
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// One diagnostic as the operator reads it: the severity, where, what, and the line with
/// a caret when the line is known.
pub struct Diagnostic<'a> {
    pub severity: Severity,
    pub at: Location<'a>,
    pub message: &'a str,
    pub snippet: Option<&'a Snippet>,
}

impl fmt::Display for Diagnostic<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.severity, self.at, self.message)?;
        let Some(snippet) = self.snippet else { return Ok(()) };
        let gutter = " ".repeat(snippet.line.to_string().len());
        // Keep tabs so the caret lines up under a tab-indented value.
        let indent: String =
            snippet.text.chars().take(snippet.column - 1).map(|c| if c == '\t' { '\t' } else { ' ' }).collect();
        write!(
            f,
            "\n{gutter} |\n{} | {}\n{gutter} | {indent}{}",
            snippet.line,
            snippet.text,
            "^".repeat(snippet.width.max(1))
        )
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn render(snippet: &Snippet, message: &str) -> String {
        let at = Location { file: "site.toml", line: snippet.line, column: snippet.column };
        Diagnostic { severity: Severity::Error, at, message, snippet: Some(snippet) }.to_string()
    }

    #[test]
    fn a_span_is_drawn_under_its_line() {
        let text = "[[vms]]\nname = \"web01\"\nnics = [{ network = \"prod-x\", subnet = \"web\" }]\n";
        let start = text.find("\"prod-x\"").unwrap();
        let snippet = Source::new(text).snippet(start..start + 8);
        assert_eq!(
            render(&snippet, "unknown network"),
            "error: site.toml:3:21: unknown network\n  |\n3 | nics = [{ network = \"prod-x\", subnet = \"web\" }]\n  |                     ^^^^^^^^"
        );
    }

    #[test]
    fn without_a_line_only_the_location_is_shown() {
        let at = Location { file: "plan.rhai", line: 0, column: 0 };
        let diagnostic = Diagnostic { severity: Severity::Warning, at, message: "no groups", snippet: None };
        assert_eq!(diagnostic.to_string(), "warning: plan.rhai: no groups");
        assert_eq!(Location { file: "plan.rhai", line: 4, column: 0 }.to_string(), "plan.rhai:4");
    }

    #[test]
    fn the_gutter_fits_the_line_number_and_tabs_keep_the_caret_aligned() {
        let text = format!("{}\tname = 'x'\n", "\n".repeat(99));
        let snippet = Source::new(&text).snippet_at(100, 9).unwrap();
        assert_eq!(render(&snippet, "m"), "error: site.toml:100:9: m\n    |\n100 | \tname = 'x'\n    | \t       ^^^");
    }

    #[test]
    fn a_position_underlines_the_token_there() {
        let source = Source::new("plan.group(\"db\", [\"sql99\"]);\r\nlet x = 1;");
        let at = |line, column| {
            let s = source.snippet_at(line, column).unwrap();
            (s.column, s.width)
        };
        assert_eq!(at(1, 19), (19, 7), "a string to its closing quote");
        assert_eq!(at(1, 6), (6, 5), "a word");
        assert_eq!(at(1, 5), (5, 1), "anything else: one character");
        assert_eq!(at(1, 99), (29, 1), "past the end: after the last character");
        assert_eq!(source.snippet_at(1, 1).unwrap().text, "plan.group(\"db\", [\"sql99\"]);", "no \\r");
        assert_eq!(source.snippet_at(2, 5).unwrap().width, 1);
        assert!(source.snippet_at(3, 1).is_none() && source.snippet_at(0, 1).is_none());
    }

    #[test]
    fn spans_are_cut_at_their_line_and_at_characters() {
        let text = "a = \"é\"\nb = 2\n";
        let source = Source::new(text);
        // A span over two lines is underlined to the end of its first.
        let snippet = source.snippet(4..text.len());
        assert_eq!((snippet.line, snippet.column, snippet.width), (1, 5, 3));
        // An offset inside a character moves back to its start; past the end, to the end.
        assert_eq!(source.snippet(6..7).column, 6);
        let end = source.snippet(999..1000);
        assert_eq!((end.line, end.column, end.width, end.text.as_str()), (3, 1, 1, ""));
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 256,
            rng_seed: proptest::test_runner::RngSeed::Fixed(7),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Any offset of any text (line breaks \n and \r\n, characters of 1 to 4 bytes)
        /// lands on the line and column one counts by hand, and that line and column
        /// lead back to the same place.
        #[test]
        fn offsets_map_to_lines_and_columns_and_back(
            text in "(a|é|中|😀|\t|\"x\"|\n|\r\n){0,40}",
            pick in 0usize..1000,
        ) {
            let source = Source::new(&text);
            let offset = pick % (text.len() + 1);
            let snippet = source.snippet(offset..offset);
            let mut start = offset;
            while !text.is_char_boundary(start) {
                start -= 1;
            }
            let before = &text[..start];
            let line_start = before.rfind('\n').map_or(0, |i| i + 1);
            prop_assert_eq!(snippet.line, before.matches('\n').count() + 1);
            prop_assert_eq!(snippet.column, before[line_start..].chars().count() + 1);
            prop_assert_eq!(source.position(offset), (snippet.line, snippet.column));
            let line_text = text[line_start..].split('\n').next().unwrap().trim_end_matches('\r');
            prop_assert_eq!(snippet.text.as_str(), line_text);
            let again = source.snippet_at(snippet.line, snippet.column).unwrap();
            prop_assert_eq!((again.line, again.text), (snippet.line, snippet.text));
            prop_assert!(again.column <= snippet.column);
        }
    }
}
