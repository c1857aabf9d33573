//! What every command starts from: the site file, found and parsed, and the state
//! directory with the site file's fabric opened on it ([`open_fabric`]: the simulation
//! today, the one place a real fabric is chosen).

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::args::Global;
use super::error::CliError;
use crate::fabric::libvirt::LibvirtFabric;
use crate::fabric::sim::SimFabric;
use crate::fabric::{Call, Fabric};
use std::collections::BTreeMap;

use crate::model::site_file::parse_site_bytes;
use crate::model::{FailoverKind, HumanDuration, Inventory, MeasuredDurations, ProtectionState};
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

/// The disk size a dry run of real sites models for a VM: its copy times are estimates.
const REHEARSAL_DISK_GB: u64 = 20;

/// How a command uses the fabric of its site file.
#[derive(Debug, Clone, Copy)]
pub enum Access<'a> {
    /// To act: the state directory is open, and locked by this process.
    Act(&'a StateDir),
    /// To look: the last committed state in this directory, without taking its lock (a
    /// command starting at that instant would find the directory in use).
    Look(&'a Path),
}

/// The fabric of a site file, opened: what every command runs on. Commands call it
/// through the [`Fabric`] trait; what only a simulation can do (move its clock, copy
/// itself for a dry run) asks for [`Opened::simulation`] and refuses real sites.
pub struct Opened {
    pub inventory: Arc<Inventory>,
    pub fabric: Arc<dyn Fabric>,
    /// The same fabric as a simulation, when the site file's sites are simulated.
    simulation: Option<Arc<SimFabric>>,
}

impl Opened {
    fn simulated(inventory: Arc<Inventory>, simulation: SimFabric) -> Opened {
        let simulation = Arc::new(simulation);
        Opened { inventory, fabric: simulation.clone(), simulation: Some(simulation) }
    }

    /// A fabric of real VMs.
    fn real(inventory: Arc<Inventory>, fabric: Arc<dyn Fabric>) -> Opened {
        debug_assert!(!fabric.is_simulated(), "a simulation opens with Opened::simulated");
        Opened { inventory, fabric, simulation: None }
    }

    /// The simulation, for `what` only a simulation can do; a usage error for real sites.
    pub fn simulation(&self, what: &str) -> Result<&SimFabric, CliError> {
        self.simulation
            .as_deref()
            .ok_or_else(|| CliError::Usage(format!("{what}: this site file's sites are real (libvirt), not simulated")))
    }

    /// What a dry run runs on: a copy of the simulation that saves nothing and spends no
    /// real time, so nothing real is ever touched. For real sites, a simulation of the
    /// same inventory as the site file starts it (DESIGN.md: "The dry run of a libvirt
    /// site runs on the simulation"), each VM in the phase the real one is in (failed
    /// over, committed, replicating back, failing back...), with the durations the site
    /// measured in past runs and drills where it has them.
    pub fn rehearsal(&self) -> Result<Rehearsal, CliError> {
        Ok(match &self.simulation {
            Some(simulation) => Rehearsal { fabric: simulation.scratch_copy()?, durations: None },
            None => {
                // Each VM as the real one stands now, in whatever phase: what the real run
                // would meet.
                let found = self.fabric.protection();
                let measured = self.fabric.measured_durations();
                let inventory = self.inventory.rehearsal(self.fabric.now(), &found, REHEARSAL_DISK_GB, &measured);
                let fabric = SimFabric::in_memory(Arc::new(inventory))?.scratch_copy()?;
                Rehearsal { fabric, durations: Some(durations_note(&measured, self.inventory.vms.len())) }
            }
        })
    }

    /// What a read-only preflight asks (`drplan preflight`, `drplan check --kind`): a
    /// scratch copy of the simulation, so that nothing a check does can reach its state;
    /// real sites answer themselves, since a preflight changes nothing.
    pub fn to_preflight(&self) -> Result<Arc<dyn Fabric>, CliError> {
        Ok(match &self.simulation {
            Some(simulation) => Arc::new(simulation.scratch_copy()?),
            None => self.fabric.clone(),
        })
    }
}

/// What a dry run runs on, and for real sites where its durations come from.
pub struct Rehearsal {
    pub fabric: SimFabric,
    /// For the report: measured or estimated, for which VMs.
    pub durations: Option<String>,
}

/// Says which VMs a rehearsal of real sites models by what was measured (with the
/// figures) and that the others are the site file's estimates.
fn durations_note(measured: &BTreeMap<String, MeasuredDurations>, vms: usize) -> String {
    const SHOWN: usize = 4;
    if measured.is_empty() {
        return "the site file's estimates (no run or drill has measured this site yet)".into();
    }
    let shown: Vec<String> = measured
        .iter()
        .take(SHOWN)
        .map(|(vm, m)| {
            let figures = [
                ("shutdown", m.shutdown),
                ("final sync", m.final_sync),
                ("processing", m.processing),
                ("boot", m.boot),
                ("commit", m.commit),
            ];
            let parts: Vec<String> =
                figures.into_iter().filter_map(|(what, d)| Some(format!("{what} {}", HumanDuration(d?)))).collect();
            format!("{vm} ({})", parts.join(", "))
        })
        .collect();
    let more = match measured.len().saturating_sub(SHOWN) {
        0 => String::new(),
        n => format!(" and {n} more"),
    };
    let complete = |m: &MeasuredDurations| {
        m.boot.is_some() && m.shutdown.is_some() && m.final_sync.is_some() && m.processing.is_some()
    };
    let rest = match measured.len() == vms && measured.values().all(complete) {
        true => String::new(),
        false => "; the site file's estimates for the rest".into(),
    };
    format!("measured in this site's past runs and drills for {}{more}{rest}", shown.join(", "))
}

/// Opens the fabric of the site file `inventory` was read from, on the state directory,
/// to act or to look: the one place that chooses which fabric a command runs on.
pub fn open_fabric(inventory: Arc<Inventory>, access: Access<'_>) -> Result<Opened, CliError> {
    if LibvirtFabric::serves(&inventory) {
        // Its state is shared with the replication service: looking opens it too.
        let dir = match access {
            Access::Act(state) => state.path().to_path_buf(),
            Access::Look(state) => state.to_path_buf(),
        };
        let fabric = Arc::new(LibvirtFabric::open(inventory.clone(), &dir)?);
        return Ok(Opened::real(inventory, fabric));
    }
    let simulation = match access {
        Access::Act(state) => {
            let simulation = SimFabric::open(inventory.clone(), state)?;
            tracing::debug!(state = %state.path().display(), "simulation opened");
            simulation
        }
        Access::Look(state) => look_at_simulation(state, inventory.clone())?,
    };
    Ok(Opened::simulated(inventory, simulation))
}

/// An open fabric: holds the state directory's lock until dropped (unless it is a
/// read-only look at a fabric another command is running).
pub struct Session {
    pub opened: Opened,
    _state: Option<StateDir>,
}

impl Session {
    pub fn open(global: &Global, plan: Option<&Path>) -> Result<Session, CliError> {
        let inventory = Arc::new(load_inventory(&site_path(global, plan)?)?);
        let state = StateDir::open(&global.state(plan))?;
        let opened = open_fabric(inventory, Access::Act(&state))?;
        Ok(Session { opened, _state: Some(state) })
    }

    /// For commands that only look: they never take the lock (a command starting at that
    /// instant would find the directory in use), and see the last committed state.
    pub fn open_to_look(global: &Global, plan: Option<&Path>) -> Result<Session, CliError> {
        let inventory = Arc::new(load_inventory(&site_path(global, plan)?)?);
        let opened = open_fabric(inventory, Access::Look(&global.state(plan)))?;
        Ok(Session { opened, _state: None })
    }

    pub fn fabric(&self) -> &dyn Fabric {
        &*self.opened.fabric
    }
}

/// The simulation as it stands, read-only and without the lock: the last committed state
/// in the state directory, or, before there is one, the site file's starting state.
fn look_at_simulation(state: &Path, inventory: Arc<Inventory>) -> Result<SimFabric, CliError> {
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
