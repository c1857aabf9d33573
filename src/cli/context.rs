//! What every command starts from: the site file, found and parsed, and the state
//! directory with the simulated fabric opened on it.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::args::Global;
use super::error::CliError;
use crate::fabric::sim::SimFabric;
use crate::model::Inventory;
use crate::model::site_file::parse_site;
use crate::store::{StateDir, StoreError};

/// DESIGN.md: `--site`, else `site.toml` beside the plan, else in the current directory.
pub fn site_path(global: &Global, plan: Option<&Path>) -> Result<PathBuf, CliError> {
    if let Some(site) = &global.site {
        return Ok(site.clone());
    }
    let beside = plan.and_then(Path::parent).map(|dir| dir.join("site.toml"));
    let candidate = beside.unwrap_or_else(|| PathBuf::from("site.toml"));
    if candidate.exists() {
        Ok(candidate)
    } else {
        Err(CliError::NoSiteFile(format!("{} does not exist; pass --site FILE", candidate.display())))
    }
}

pub fn load_inventory(path: &Path) -> Result<Inventory, CliError> {
    let text = std::fs::read_to_string(path).map_err(|source| CliError::Read { path: path.into(), source })?;
    Ok(parse_site(&text, path)?)
}

/// An open simulation: holds the state directory's lock until dropped (unless it is a
/// read-only look at a simulation another command is running).
pub struct Session {
    pub fabric: SimFabric,
    _state: Option<StateDir>,
}

impl Session {
    pub fn open(global: &Global, plan: Option<&Path>) -> Result<Session, CliError> {
        let inventory = Arc::new(load_inventory(&site_path(global, plan)?)?);
        let state = StateDir::open(&global.state)?;
        let fabric = SimFabric::open(inventory, &state)?;
        tracing::debug!(state = %global.state.display(), "simulation opened");
        Ok(Session { fabric, _state: Some(state) })
    }

    /// For commands that only look: while a run holds the lock, they see its last
    /// committed state instead of waiting.
    pub fn open_to_look(global: &Global, plan: Option<&Path>) -> Result<Session, CliError> {
        match Self::open(global, plan) {
            Err(CliError::Store(StoreError::InUse { .. })) => {
                let inventory = Arc::new(load_inventory(&site_path(global, plan)?)?);
                let fabric = SimFabric::open_read_only(inventory, &global.state)?;
                eprintln!("note: a drplan run is in progress; this is its last saved state");
                Ok(Session { fabric, _state: None })
            }
            other => other,
        }
    }
}

/// DESIGN.md: commands that change the recovery site ask on a terminal, accept `--yes`,
/// and refuse without either.
pub fn confirm(global: &Global, question: &str) -> Result<(), CliError> {
    if global.yes {
        return Ok(());
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(CliError::NeedsConfirmation);
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer).map_err(|e| CliError::Usage(e.to_string()))?;
    match answer.trim() {
        "y" | "Y" | "yes" => Ok(()),
        _ => Err(CliError::Declined),
    }
}

/// A fresh idempotency key for one operation the operator asked for.
pub fn call_key(operation: &str, vm: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("cli/{}-{nanos}/{operation}/{vm}", std::process::id())
}
