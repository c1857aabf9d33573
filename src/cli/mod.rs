//! The command line: parses arguments, runs the command on a tokio runtime, prints its
//! output and maps errors to exit codes (0 success, 1 failure, 2 bad usage).

mod args;
mod context;
mod cycle;
mod diagnostics;
pub mod dns;
mod error;
mod inspect;
mod plans;
mod preflight;
mod progress;
mod protection;
mod replicate;
mod runs;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

pub use args::Cli;
use args::Command;
pub use error::CliError;

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.global.verbose);
    match run(&cli) {
        Ok(output) => match print_output(&output).map_err(CliError::Output) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(e.exit_code())
            }
        },
        Err(e) => {
            eprintln!("{}", e.report());
            ExitCode::from(e.exit_code())
        }
    }
}

/// Writes a command's output to stdout. A reader that stopped reading (`drplan runs |
/// head -1`) is no failure: it took what it wanted, and the command did its work. (`print!`
/// would panic there: Rust ignores SIGPIPE, so the write fails with EPIPE instead.)
pub(crate) fn print_output(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    read_or_left(out.write_all(text.as_bytes()).and_then(|()| out.flush()))
}

/// Writes a run's report to stdout as it is made, as [`print_output`] writes text: a plan
/// of 100,000 VMs makes a report of hundreds of megabytes, not to be held in memory too.
pub(crate) fn print_report(
    report: &crate::report::run::RunReport,
    format: args::Format,
    width: crate::report::table::Width,
) -> Result<(), CliError> {
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let written = match format {
        args::Format::Human => report.write_human(&mut out, width),
        args::Format::Json => report.write_json(&mut out),
    };
    read_or_left(written.and_then(|()| out.flush())).map_err(CliError::Output)
}

/// A write to a reader that stopped reading is no failure.
fn read_or_left(written: std::io::Result<()>) -> std::io::Result<()> {
    match written {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        done => done,
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "drplan=debug",
        _ => "drplan=trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colours only for a person: a service's log file or journald gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).init();
}

/// Runs an async command on a runtime of its own.
fn block_on<F: std::future::Future<Output = Result<String, CliError>>>(command: F) -> Result<String, CliError> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(CliError::Runtime)?;
    runtime.block_on(command)
}

fn approvals(approve_manual: bool) -> runs::Approvals {
    if approve_manual { runs::Approvals::Rehearsal } else { runs::Approvals::ByPeople }
}

fn outside_world(no_preflight: bool) -> preflight::OutsideWorld {
    if no_preflight { preflight::OutsideWorld::Skip } else { preflight::OutsideWorld::Check }
}

/// R31: a planned failover always syncs to the end; a point choice would be ignored, so
/// it is refused instead.
fn point_for(
    kind: args::Kind,
    point: Option<crate::model::PointChoice>,
) -> Result<crate::model::PointChoice, CliError> {
    match (kind, point) {
        (args::Kind::Planned, Some(point)) => Err(CliError::Usage(format!(
            "--point {point}: a planned failover always uses the final sync, with no data lost (R31); choose a point with --kind unplanned (or test)"
        ))),
        (_, point) => Ok(point.unwrap_or_default()),
    }
}

fn run(cli: &Cli) -> Result<String, CliError> {
    let global = &cli.global;
    match &cli.command {
        Command::Check { plan, kind, point } => plans::check(global, plan, *kind, *point),
        Command::DryRun { plan, kind, run, svg } => {
            let (kind, direction) = kind.split();
            if direction == crate::plan::Direction::Failback && !run.scope.vms.is_empty() {
                return Err(CliError::Usage(
                    "--vm goes with a failover: a failback brings the whole plan home (R37), as `drplan failback` does"
                        .into(),
                ));
            }
            let point = point_for(kind, run.point)?;
            let overrides = run.overrides(kind).map_err(CliError::Usage)?;
            plans::dry_run(global, plan, (kind, direction, point), run, &overrides, svg.as_deref())
        }
        Command::Preflight { plan, kind, point, scope, format } => {
            let point = point_for(*kind, *point)?;
            let overrides = scope.overrides(*kind).map_err(CliError::Usage)?;
            preflight::preflight(global, plan, (*kind, point), &overrides, *format)
        }
        Command::Defs => Ok(plans::defs()),
        Command::Failover { plan, kind, run, approve_manual, no_preflight } => {
            let request = runs::RunRequest {
                kind: (*kind).into(),
                point: point_for(*kind, run.point)?,
                parallel: run.parallel,
                format: run.format,
                direction: crate::plan::Direction::Failover,
                approvals: approvals(*approve_manual),
                shut_down_source: !run.no_shutdown,
                overrides: run.overrides(*kind).map_err(CliError::Usage)?,
                outside: outside_world(*no_preflight),
            };
            runs::failover(global, plan, request)
        }
        Command::Failback { plan, parallel, format, approve_manual, no_preflight } => cycle::failback(
            global,
            plan,
            (*parallel, *format),
            approvals(*approve_manual),
            outside_world(*no_preflight),
        ),
        Command::Commit { plan } => cycle::each_vm(global, plan, cycle::PlanStep::Commit, cycle::Confirm::Ask),
        Command::Reprotect { plan } => cycle::each_vm(global, plan, cycle::PlanStep::Reprotect, cycle::Confirm::Ask),
        Command::Cleanup { plan, notes } => {
            cycle::each_vm(global, plan, cycle::PlanStep::Cleanup(notes), cycle::Confirm::NotNeeded)
        }
        Command::ChangePoint { plan, point } => {
            cycle::each_vm(global, plan, cycle::PlanStep::ChangePoint(*point), cycle::Confirm::Ask)
        }
        Command::Resume { run, format, kind, approve_manual } => {
            runs::resume(global, run, *format, kind.map(Into::into), approvals(*approve_manual))
        }
        Command::Runs { format } => runs::runs(global, *format),
        Command::Show { run, format, svg } => runs::show(global, run, *format, svg.as_ref()),
        Command::Approve { run } => runs::approve(global, run),
        Command::Cancel { run, force } => runs::cancel(global, run, *force),
        Command::Status { vms, format } => block_on(inspect::status(global, vms, *format)),
        Command::Points { vm } => block_on(inspect::points(global, vm)),
        Command::Replicate { once } => replicate::replicate(global, *once),
        Command::Jobs { format } => block_on(inspect::jobs(global, *format)),
        Command::Advance { by } => inspect::advance(global, *by),
        Command::Protect { vms, policy, exclude_disks } => {
            block_on(protection::protect(global, vms, policy, exclude_disks))
        }
        Command::Unprotect { vms, delete_replica } => block_on(protection::unprotect(global, vms, *delete_replica)),
    }
}
