//! The command line: parses arguments, runs the command on a tokio runtime, prints its
//! output and maps errors to exit codes (0 success, 1 failure, 2 bad usage).

mod args;
mod context;
mod cycle;
mod dns;
mod error;
mod inspect;
mod plans;
mod progress;
mod protection;
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
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Writes a command's output to stdout. A reader that stopped reading (`drplan runs |
/// head -1`) is no failure: it took what it wanted, and the command did its work. (`print!`
/// would panic there: Rust ignores SIGPIPE, so the write fails with EPIPE instead.)
pub(crate) fn print_output(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
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
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

fn run(cli: &Cli) -> Result<String, CliError> {
    let global = &cli.global;
    // Commands with a runtime of their own, or none.
    match &cli.command {
        Command::Check { plan } => return plans::check(global, plan),
        Command::DryRun { plan, kind, run } => {
            return plans::dry_run(global, plan, *kind, run.point, run.parallel, run.format);
        }
        Command::Defs => return Ok(plans::defs()),
        Command::Failover { plan, kind, run } => {
            return runs::failover(global, plan, (*kind).into(), run.point, run.parallel, run.format, false);
        }
        Command::Failback { plan, parallel, format } => return cycle::failback(global, plan, *parallel, *format),
        Command::Commit { plan } => return cycle::each_vm(global, plan, cycle::PlanStep::Commit, false),
        Command::Reprotect { plan } => return cycle::each_vm(global, plan, cycle::PlanStep::Reprotect, false),
        Command::Cleanup { plan, notes } => return cycle::each_vm(global, plan, cycle::PlanStep::Cleanup(notes), true),
        Command::ChangePoint { plan, point } => {
            return cycle::each_vm(global, plan, cycle::PlanStep::ChangePoint(*point), false);
        }
        Command::Resume { run, format } => return runs::resume(global, run, *format),
        Command::Runs { format } => return runs::runs(global, *format),
        Command::Show { run, format, svg } => return runs::show(global, run, *format, svg.as_ref()),
        Command::Approve { run } => return runs::approve(global, run),
        Command::Cancel { run, force } => return runs::cancel(global, run, *force),
        _ => {}
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(CliError::Runtime)?;
    runtime.block_on(async {
        match &cli.command {
            Command::Status { vms, format } => inspect::status(global, vms, *format).await,
            Command::Points { vm } => inspect::points(global, vm).await,
            Command::Jobs { format } => inspect::jobs(global, *format).await,
            Command::Advance { by } => inspect::advance(global, *by),
            Command::Protect { vms, policy, exclude_disks } => {
                protection::protect(global, vms, policy, exclude_disks).await
            }
            Command::Unprotect { vms, delete_replica } => protection::unprotect(global, vms, *delete_replica).await,
            _ => unreachable!("handled above"),
        }
    })
}
