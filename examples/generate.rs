//! Generates a large site file and recovery plan, for scale tests and benchmarks.
//!
//! ```text
//! cargo run --release --example generate -- --vms 100000 --groups 100 --out /tmp/gen100k
//! cargo run --release --example generate -- --vms 1000 --groups 10 --out /tmp/gen1k --seed 7 --faults
//! ```
//!
//! Writes `OUT/site.toml` and `OUT/plan.rhai` (creating `OUT`) and prints one line saying
//! what it wrote. The same arguments always give the same files, byte for byte. What the
//! files hold is described in `generate/generator.rs`, the core this command line wraps
//! (the scale benchmark includes that core too).

// Not `mod generator;`: an example's root resolves modules beside it, where cargo would
// take `generator.rs` for an example of its own.
#[path = "generate/generator.rs"]
mod generator;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;

use generator::{MAX_GROUPS, Spec, VMS_PER_HOST};

#[derive(Debug, Parser)]
#[command(about = "Generates a large drplan site file and plan for scale tests and benchmarks")]
struct Args {
    /// How many VMs.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=9_999_999))]
    vms: u64,
    /// How many tiers: subnets, and groups in the plan (1 to 100).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=MAX_GROUPS as u64))]
    groups: u64,
    /// The directory to write site.toml and plan.rhai to; created if missing.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Seed of the pseudo-random choices; the same seed gives the same files.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Inject a boot-failure fault into about 0.1% of the VMs (at least one).
    #[arg(long)]
    faults: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let started = Instant::now();
    let spec = Spec {
        vms: args.vms as usize,
        groups: args.groups as usize,
        out: args.out.clone(),
        seed: args.seed,
        faults: args.faults,
    };
    match generator::write(&spec) {
        Ok(s) => {
            println!(
                "wrote {} ({} VMs in {} tiers, 2x{} hosts, {} replication groups of {} VMs, {} static target IPs, \
                 {} faults; {}) and {} ({} groups; {}) in {:.2}s",
                args.out.join("site.toml").display(),
                args.vms,
                args.groups,
                (args.vms as usize).div_ceil(VMS_PER_HOST).max(2),
                s.replication_groups,
                s.grouped_vms,
                s.static_vms,
                s.faults,
                human_bytes(s.site_bytes),
                args.out.join("plan.rhai").display(),
                args.groups,
                human_bytes(s.plan_bytes),
                started.elapsed().as_secs_f64(),
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("generate: {e}");
            ExitCode::FAILURE
        }
    }
}

fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}
