//! What is wrong with a site file, and where.

use std::path::PathBuf;

/// One problem in a site file, located at the value that causes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct SiteFileError {
    pub path: PathBuf,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    /// Where in the document, e.g. `vms."web01".nics[0].network`; empty for a TOML
    /// syntax error, which has no field yet.
    pub field: String,
    pub message: String,
    /// The text of `line`, shown under the message.
    pub source_line: String,
    /// How many characters from `column` the caret underlines (at least 1).
    pub width: usize,
}

impl SiteFileError {
    fn render(&self) -> String {
        let field = if self.field.is_empty() { String::new() } else { format!("{}: ", self.field) };
        let gutter = " ".repeat(self.line.to_string().len());
        // Keep tabs so the caret lines up under a tab-indented value.
        let indent: String =
            self.source_line.chars().take(self.column - 1).map(|c| if c == '\t' { '\t' } else { ' ' }).collect();
        format!(
            "{}:{}:{}: {field}{}\n{gutter} |\n{} | {}\n{gutter} | {indent}{}",
            self.path.display(),
            self.line,
            self.column,
            self.message,
            self.line,
            self.source_line,
            "^".repeat(self.width.max(1)),
        )
    }
}

/// Everything wrong with a site file, in line order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render_all(.0))]
pub struct SiteFileErrors(pub Vec<SiteFileError>);

fn render_all(errors: &[SiteFileError]) -> String {
    let mut text = errors.iter().map(SiteFileError::render).collect::<Vec<_>>().join("\n\n");
    if let [first, _, ..] = errors {
        text.push_str(&format!("\n\n{} errors in {}", errors.len(), first.path.display()));
    }
    text
}
