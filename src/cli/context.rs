//! What every command starts from: the site file, found and parsed, and the state
//! directory with the simulated fabric opened on it.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::args::Global;
use super::error::CliError;
use crate::fabric::sim::SimFabric;
use crate::fabric::{Call, Fabric};
use std::collections::BTreeMap;

use crate::model::site_file::parse_site_bytes;
use crate::model::{FailoverKind, Inventory, ProtectionState};
use crate::plan::Plan;
use crate::plan::validate::{Severity, Validation, validate};
use crate::script::{ScriptOptions, load_plan};
use crate::store::{CLI_KEY_PREFIX, StateDir, text_file};

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
    let bytes = text_file::read_bytes(path, text_file::SITE_FILE)
        .map_err(|source| CliError::Read { path: path.into(), source })?;
    Ok(parse_site_bytes(&bytes, path)?)
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
        let dir = global.state(plan);
        let state = StateDir::open(&dir)?;
        let fabric = SimFabric::open(inventory, &state)?;
        tracing::debug!(state = %dir.display(), "simulation opened");
        Ok(Session { fabric, _state: Some(state) })
    }

    /// For commands that only look: they never take the lock (a command starting at that
    /// instant would find the directory in use), and see the last committed state.
    pub fn open_to_look(global: &Global, plan: Option<&Path>) -> Result<Session, CliError> {
        let inventory = Arc::new(load_inventory(&site_path(global, plan)?)?);
        Ok(Session { fabric: look_at_simulation(&global.state(plan), inventory)?, _state: None })
    }
}

/// The simulation as it stands, read-only and without the lock: the last committed state
/// in the state directory, or, before there is one, the site file's starting state.
pub fn look_at_simulation(state: &Path, inventory: Arc<crate::model::Inventory>) -> Result<SimFabric, CliError> {
    if !state.join("sim.db").exists() {
        return Ok(SimFabric::in_memory(inventory)?);
    }
    if StateDir::in_use(state) {
        eprintln!("note: a drplan run is in progress; this is its last saved state");
    }
    Ok(SimFabric::open_read_only(inventory, state)?)
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

/// One operation the operator asked for, now: a fresh idempotency key, made at the
/// fabric's clock.
pub fn call(fabric: &dyn Fabric, operation: &str, vm: &str) -> Call {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    Call::new(format!("{CLI_KEY_PREFIX}{}-{nanos}/{operation}/{vm}", std::process::id()), fabric.now())
}

/// What a run changes of its plan from the command line. Kept with the run, so that a
/// resume runs what the run ran.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Overrides {
    /// R22: only these VMs, each with its own steps; empty: the whole plan.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vms: Vec<String>,
    /// R30: the isolated network a drill runs in, instead of the plan's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_network: Option<String>,
}

/// Whether a plan's static findings stop the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Findings {
    /// Printed, and any error refuses: a new failover, a dry run, a check.
    Enforce,
    /// Not checked: a resumed run's or a failback's VMs are (partly) failed over, so the
    /// failover checks do not apply; the preflight checks what does.
    Skip,
}

/// A plan loaded and validated against `protection` as the command line asks: its test
/// network chosen (R30), narrowed to some of its VMs (R22). Findings about VMs left out
/// do not count.
pub fn load_plan_for_run(
    path: &Path,
    inventory: &Arc<Inventory>,
    protection: &BTreeMap<String, ProtectionState>,
    kind: Option<FailoverKind>,
    overrides: &Overrides,
    findings: Findings,
) -> Result<(Arc<Plan>, Validation), CliError> {
    let mut plan = load_plan(path, inventory.clone(), &ScriptOptions::default())?;
    if let Some(network) = &overrides.test_network {
        plan.test_network = Some(network.clone());
    }
    let mut validation = validate(&plan, inventory, protection, kind);
    if !overrides.vms.is_empty() {
        let (narrowed, resolved) = plan.narrowed(&validation.resolved, &overrides.vms).map_err(CliError::Usage)?;
        let others: Vec<&String> = validation.resolved.groups.iter().flat_map(|g| &g.vms).collect();
        validation.findings.retain(|f| overrides.vms.contains(&f.subject) || !others.contains(&&f.subject));
        validation.resolved = resolved;
        plan = narrowed;
    }
    if findings == Findings::Enforce {
        eprint!("{}", super::diagnostics::findings(&validation.findings));
        let errors = validation.findings.iter().filter(|f| f.severity == Severity::Error).count();
        if errors > 0 {
            return Err(CliError::InvalidPlan { errors });
        }
    }
    Ok((Arc::new(plan), validation))
}
