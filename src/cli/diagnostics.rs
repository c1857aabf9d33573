//! Diagnostics on stderr that point into the plan's files: findings and script errors,
//! each with the line it points at and a caret. The layers that make them keep positions,
//! not text, so the files are read here, each once.

use crate::model::snippet::Source;
use crate::plan::{Finding, SourcePos};
use crate::script::ScriptError;

/// Every finding, each followed by a blank line, as rustc separates its diagnostics.
/// Findings come sorted by position, so those of one file are together: each file is read
/// and its lines indexed once.
pub fn findings(findings: &[Finding]) -> String {
    let mut out = String::new();
    let rules: Vec<&str> = findings.iter().filter_map(|f| f.rule).collect();
    for same_file in findings.chunk_by(|a, b| a.at.file == b.at.file) {
        let text = read(&same_file[0].at);
        let source = text.as_deref().map(Source::new);
        for finding in same_file {
            out.push_str(&finding.render(source.as_ref()));
            out.push_str("\n\n");
        }
    }
    if let Some(note) = crate::report::rules::note(&rules.join(" ")) {
        out.push_str(&note);
        out.push_str("\n\n");
    }
    out
}

pub fn script_error(error: &ScriptError) -> String {
    let text = read(&error.at);
    error.render(text.as_deref().map(Source::new).as_ref())
}

/// The text of the file `at` points into, when it points at a line and the file can be
/// read: a stdlib module cannot, and its diagnostics are shown without their line.
fn read(at: &SourcePos) -> Option<String> {
    if at.line == 0 {
        return None;
    }
    std::fs::read_to_string(&*at.file).ok()
}
