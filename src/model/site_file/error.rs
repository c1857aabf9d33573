//! What is wrong with a site file, and where, rendered by the one diagnostic renderer
//! (`model::snippet`).

use std::fmt;
use std::path::PathBuf;

use crate::model::names::Count;
use crate::model::snippet::{Diagnostic, Location, Severity, Snippet};

/// One problem in a site file, located at the value that causes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct SiteFileError {
    pub path: PathBuf,
    /// Where in the document, e.g. `vms."web01".nics[0].network`; empty for a TOML
    /// syntax error, which has no field yet.
    pub field: String,
    pub message: String,
    /// The line, the column and the value underlined.
    pub snippet: Snippet,
}

impl SiteFileError {
    fn render(&self) -> String {
        let file = self.path.display().to_string();
        let at = Location { file: &file, line: self.snippet.line, column: self.snippet.column };
        let message =
            if self.field.is_empty() { self.message.clone() } else { format!("{}: {}", self.field, self.message) };
        Diagnostic { severity: Severity::Error, at, message: &message, snippet: Some(&self.snippet) }.to_string()
    }
}

/// Everything wrong with a site file, in line order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SiteFileErrors(pub Vec<SiteFileError>);

/// Each error with its own severity, then how many there are when there are several.
impl fmt::Display for SiteFileErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n\n")?;
            }
            f.write_str(&error.render())?;
        }
        if let [first, _, ..] = self.0.as_slice() {
            write!(f, "\n\n{} in {}", Count::numbered("error", self.0.len()), first.path.display())?;
        }
        Ok(())
    }
}
