//! Where something was written: a position in a plan script, so that every finding and
//! every failure can point the operator at file:line:column.

use std::fmt;
use std::sync::Arc;

use serde::{Serialize, Serializer};

use crate::model::snippet::Location;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourcePos {
    /// The file as the operator named it (e.g. `plans/contoso/failover.rhai`).
    pub file: Arc<str>,
    /// 1-based; 0 when unknown.
    pub line: usize,
    pub column: usize,
}

impl SourcePos {
    pub fn new(file: impl Into<Arc<str>>, line: usize, column: usize) -> Self {
        SourcePos { file: file.into(), line, column }
    }
}

impl SourcePos {
    /// As diagnostics show it: `file:line:column`, or less when unknown.
    pub fn location(&self) -> Location<'_> {
        Location { file: &self.file, line: self.line, column: self.column }
    }
}

impl fmt::Display for SourcePos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.location().fmt(f)
    }
}

impl Serialize for SourcePos {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
