//! A preflight's checklist (DESIGN.md, "Preflight, then act"): is the world ready for a
//! plan, right now? Each line says what was checked and what was found. The layers that
//! can look make them (the fabric for VMs, DNS for its servers), the CLI shows them, as
//! text or as JSON, without knowing how they were made.

use serde::Serialize;

/// One line of a preflight's checklist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReadinessCheck {
    /// What was checked, short: "server 127.0.0.1:5353 for zone contoso.test".
    pub subject: String,
    pub status: CheckStatus,
    /// What was found, and for a problem what to do about it. Never a secret.
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Ok,
    /// Ready, but worth reading before the run: a warning of the plan's check.
    Warning,
    /// Not ready: the run would be refused, or would fail.
    Problem,
}

impl CheckStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Ok => "ok",
            CheckStatus::Warning => "warning",
            CheckStatus::Problem => "problem",
        }
    }
}

impl ReadinessCheck {
    pub fn ok(subject: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(CheckStatus::Ok, subject, message)
    }

    pub fn warning(subject: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(CheckStatus::Warning, subject, message)
    }

    pub fn problem(subject: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(CheckStatus::Problem, subject, message)
    }

    fn new(status: CheckStatus, subject: impl Into<String>, message: impl Into<String>) -> Self {
        ReadinessCheck { subject: subject.into(), status, message: message.into() }
    }

    /// Whether the run may go: a warning does not stop it.
    pub fn is_ready(&self) -> bool {
        self.status != CheckStatus::Problem
    }
}

impl std::fmt::Display for ReadinessCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {}", self.status.as_str(), self.subject, self.message)
    }
}
