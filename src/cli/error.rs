//! Everything a command can fail with, and the exit code each maps to.

use std::path::PathBuf;

use crate::fabric::FabricError;
use crate::model::names::Count;
use crate::model::site_file::SiteFileErrors;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    SiteFile(#[from] SiteFileErrors),
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("no site file: {0}")]
    NoSiteFile(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Fabric(#[from] FabricError),
    /// Bad usage of the command line (exit 2).
    #[error("{0}")]
    Usage(String),
    /// What was asked cannot be done in the state things are in: no such run, a run
    /// that is not waiting for it (exit 1).
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Script(#[from] crate::script::ScriptError),
    #[error("the plan has {}; see above", Count::numbered("error", *.errors))]
    InvalidPlan { errors: usize },
    #[error("the preflight refused {refused} VM(s), see above; nothing was changed")]
    PreflightRefused { refused: usize },
    #[error("the preflight found {}: nothing was started or changed", Count::numbered("problem", *.problems))]
    NotReady { problems: usize },
    #[error("the run {0}")]
    RunFailed(&'static str),
    #[error("this changes the recovery site; without a terminal to confirm on, pass --yes")]
    NeedsConfirmation,
    #[error("cancelled: nothing was changed")]
    Declined,
    #[error("{failed} of {total} operations failed")]
    SomeFailed { failed: usize, total: usize },
    #[error("cannot write the output: {0}")]
    Output(std::io::Error),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

impl CliError {
    /// What stderr shows: each error with its own severity first; one in a file also with
    /// the line it points at.
    pub fn report(&self) -> String {
        let text = match self {
            CliError::SiteFile(errors) => errors.to_string(),
            CliError::Script(error) => super::diagnostics::script_error(error),
            other => format!("error: {other}"),
        };
        match crate::report::rules::note(&text) {
            Some(note) => format!("{text}\n{note}"),
            None => text,
        }
    }

    /// DESIGN.md: 1 for a failure of the plan, the run or its inputs, 2 for bad usage.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            _ => 1,
        }
    }
}
