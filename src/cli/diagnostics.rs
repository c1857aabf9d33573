//! Diagnostics on stderr that point into the plan's files: findings and script errors,
//! each with the line it points at and a caret. The layers that make them keep positions,
//! not text, so the files are read here, each once.

use std::collections::HashMap;
use std::sync::Arc;

use crate::model::snippet::Source;
use crate::plan::Finding;
use crate::script::ScriptError;

/// Every finding, each followed by a blank line, as rustc separates its diagnostics.
pub fn findings(findings: &[Finding]) -> String {
    let mut files = Files::default();
    let mut out = String::new();
    for finding in findings {
        let text = files.text(&finding.at.file);
        out.push_str(&finding.render(text.map(Source::new).as_ref()));
        out.push_str("\n\n");
    }
    out
}

pub fn script_error(error: &ScriptError) -> String {
    let text = Files::default().text(&error.at.file).map(str::to_string);
    error.render(text.as_deref().map(Source::new).as_ref())
}

/// The files read so far; `None` for one that cannot be read (a stdlib module, a file
/// gone since), whose diagnostics are shown without their line.
#[derive(Default)]
struct Files(HashMap<Arc<str>, Option<String>>);

impl Files {
    fn text(&mut self, file: &Arc<str>) -> Option<&str> {
        self.0.entry(file.clone()).or_insert_with(|| std::fs::read_to_string(&**file).ok()).as_deref()
    }
}
