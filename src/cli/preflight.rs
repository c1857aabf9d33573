//! `drplan preflight PLAN`: is the world ready for a run of this plan, right now? Read
//! only: the plan's check, every VM as the run's preflight would check it, and the DNS
//! servers and keys the run would use. Real runs do the same before they exist (DESIGN.md,
//! "Preflight, then act"), so a run that would fail its preflight leaves nothing behind.

use std::path::Path;
use std::sync::Arc;

use super::args::{Format, Global, Kind};
use super::context::{Access, Findings, Overrides, load_inventory, load_plan_for_run, open_fabric, site_path};
use super::dns::{DnsUse, changed_dns_names, readiness};
use super::error::CliError;
use super::plans::{looking_runtime, looking_spec, new_run_preflight};
use crate::fabric::readiness::ReadinessCheck;
use crate::fabric::{FabricError, Preflight, Replica};
use crate::model::{FailoverKind, Inventory, PointChoice};
use crate::plan::Plan;
use crate::plan::validate::{ResolvedPlan, Severity, Validation};
use crate::report::preflight::PreflightReport;

/// Whether a real run looks at the outside world before it starts: `--no-preflight`
/// skips it (the checks of the plan and of every VM always run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutsideWorld {
    Check,
    Skip,
}

pub fn preflight(
    global: &Global,
    path: &Path,
    (kind, point): (Kind, PointChoice),
    overrides: &Overrides,
    format: Format,
) -> Result<String, CliError> {
    let kind = FailoverKind::from(kind);
    let inventory = Arc::new(load_inventory(&site_path(global, Some(path))?)?);
    let opened = open_fabric(inventory.clone(), Access::Look(&global.state(Some(path))))?;
    let (plan, validation) =
        load_plan_for_run(path, &inventory, &opened.fabric.protection(), Some(kind), overrides, Findings::Skip)?;
    let fabric = opened.to_preflight()?;
    drop(opened); // releases the state directory, unless the fabric asked is the site's own
    let runtime = looking_runtime()?;
    let spec = looking_spec(kind, point, 1);
    let checked = runtime.block_on(new_run_preflight(&*fabric, &plan, &validation, &spec))?;
    let dns = runtime.block_on(dns_checks(path, kind, &plan, &validation.resolved, &inventory));
    let header = (plan.name.clone(), kind, plan.source.clone(), plan.target.clone(), point);
    let report = PreflightReport::new(
        header,
        fabric.now(),
        plan_checks(&validation),
        vm_checks(kind, point, &validation.resolved, &checked),
        dns,
    );
    let text = match format {
        Format::Human => report.human(global.width()),
        Format::Json => report.json(),
    };
    if report.ready {
        return Ok(text);
    }
    // The command fails below; an output nobody reads adds no failure to it.
    let _ = super::print_output(&text);
    Err(CliError::NotReady { problems: report.problems() })
}

/// The DNS lines of a run's preflight: each server and key the run would use.
pub(super) async fn dns_checks(
    path: &Path,
    kind: FailoverKind,
    plan: &Plan,
    resolved: &ResolvedPlan,
    inventory: &Inventory,
) -> Vec<ReadinessCheck> {
    let names = changed_dns_names(plan, resolved, inventory);
    readiness(path, kind, DnsUse::when(!names.is_empty()), &names).await
}

/// A real run's look at the outside world before it exists: every problem on stderr, and
/// a refusal if there is one.
pub(super) fn refuse_unready(checks: &[ReadinessCheck]) -> Result<(), CliError> {
    let problems: Vec<&ReadinessCheck> = checks.iter().filter(|c| !c.is_ready()).collect();
    for problem in &problems {
        eprintln!("error: preflight: {}: {}", problem.subject, problem.message);
    }
    match problems.len() {
        0 => Ok(()),
        problems => Err(CliError::NotReady { problems }),
    }
}

/// The plan's check as lines: each error and warning, or that it is sound.
fn plan_checks(validation: &Validation) -> Vec<ReadinessCheck> {
    if validation.findings.is_empty() {
        return vec![ReadinessCheck::ok("check", "the plan is sound: no error, no warning")];
    }
    let line = |f: &crate::plan::Finding| {
        let rule = f.rule.map(|rule| format!(" ({rule}, docs/rules.md)")).unwrap_or_default();
        format!("{}: {}{rule}", f.at, f.message)
    };
    validation
        .findings
        .iter()
        .map(|f| match f.severity {
            Severity::Error => ReadinessCheck::problem(f.subject.clone(), line(f)),
            Severity::Warning => ReadinessCheck::warning(f.subject.clone(), line(f)),
        })
        .collect()
}

/// One line per VM of the plan: why the run would refuse it, or where it would land.
fn vm_checks(
    kind: FailoverKind,
    point: PointChoice,
    resolved: &ResolvedPlan,
    checked: &Preflight,
) -> Vec<ReadinessCheck> {
    let refusal = |vm: &str| checked.refusals.iter().find(|r| r.vm() == Some(vm));
    let mut lines: Vec<ReadinessCheck> = resolved
        .groups
        .iter()
        .flat_map(|group| &group.vms)
        .map(|vm| match (refusal(vm), checked.placements.get(vm)) {
            (Some(refused), _) => ReadinessCheck::problem(vm.clone(), refused.to_string()),
            (None, Some(replica)) => ReadinessCheck::ok(vm.clone(), landing(kind, point, replica)),
            (None, None) => ReadinessCheck::ok(vm.clone(), "ready"),
        })
        .collect();
    // A refusal about no one VM (the fabric as a whole) is a line of its own.
    lines.extend(
        checked
            .refusals
            .iter()
            .filter(|r| r.vm().is_none())
            .map(|r: &FabricError| ReadinessCheck::problem("fabric", r.to_string())),
    );
    lines
}

/// Where a VM's replica would land, and from which point.
fn landing(kind: FailoverKind, point: PointChoice, replica: &Replica) -> String {
    let from = match kind {
        FailoverKind::Planned => "shuts down, syncs to the end (R31)".to_string(),
        _ => format!("recovery point {point} exists (R33)"),
    };
    let addresses: Vec<String> = replica
        .nics
        .iter()
        .map(|nic| match (&nic.ip, &nic.network) {
            (Some(ip), Some(network)) => format!("{ip} on {network}"),
            (None, Some(network)) => format!("no address on {network}"),
            (_, None) => "not connected (R10)".to_string(),
        })
        .collect();
    format!(
        "{from}; lands on {}/{} (storage {}) with {}",
        replica.site,
        replica.host,
        replica.storage,
        if addresses.is_empty() { "no NIC".to_string() } else { addresses.join(", ") }
    )
}
