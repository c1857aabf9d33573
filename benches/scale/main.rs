//! Scale figures of issue 7, each against a baseline measured in the same run (these
//! machines are noisy, so ratios are what compare across runs):
//!
//! 1. `check` + `dry-run` of the generated plan: wall time and peak memory, against
//!    reading and parsing the site file alone (`check.rs`).
//! 2. execution overhead: a real run with the durable journal, operations taking no real
//!    time, against the same fabric calls made with a bare `JoinSet` (`execution.rs`).
//! 3. makespan on the virtual clock = the dry run's prediction = the critical path,
//!    exactly, for every `--parallel` that is not binding (`makespan.rs`).
//! 4. Rhai post action call overhead, against the same body as a native action
//!    (`actions.rs`).
//! 5. the journal: durable events per second against one undurable transaction, and
//!    bytes per VM (`journal.rs`).
//!
//! ```text
//! cargo bench --bench scale                         # 1,000 VMs / 10 groups, 10,000 / 20
//! DRPLAN_BENCH_BIG=1 cargo bench --bench scale      # and 100,000 VMs / 100 groups
//! DRPLAN_BENCH_SIZES=200 cargo bench --bench scale  # only these VM counts (iterating)
//! DRPLAN_BENCH_FIGURES=actions cargo bench --bench scale  # only these figures (iterating)
//! DRPLAN_BENCH_PAIRS=21 cargo bench --bench scale   # pairs of runs for figure 4
//! DRPLAN_BENCH_WRITE=1 cargo bench --bench scale    # also write docs/perf/
//! ```
//!
//! Every size prints one line per figure; the end prints the markdown table of the
//! README's performance section. With `DRPLAN_BENCH_WRITE=1` the bench also writes
//! `docs/perf/scale.csv` (a row per size, fixed units), `docs/perf/scale.svg` (cost per
//! VM against size: flat lines are linear growth) and `docs/perf/latest.md` (the table);
//! without it a casual run leaves the tree clean.

mod actions;
mod chart;
mod check;
mod execution;
mod fixture;
mod journal;
mod makespan;
mod report;

// The scale generator's core, shared with `cargo run --example generate`: the bench
// writes its inputs in-process instead of building and running the example. Some of
// its items only the example uses.
#[allow(dead_code)]
#[path = "../../examples/generate/generator.rs"]
mod generator;

use std::path::Path;

// The allocator the drplan binary ships with (src/main.rs), so that the figures are the
// command's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use fixture::{Fixture, secs};
use report::{Machine, Report, thousands};

fn flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == "1")
}

/// Groups for a size: the issue's pairs, and about as many VMs per group around them.
fn groups_for(vms: usize) -> usize {
    match vms {
        0..=1_000 => 10.min(vms),
        1_001..=10_000 => 20,
        _ => 100,
    }
}

/// (VMs, groups, repetitions; the median is kept).
fn sizes() -> Vec<(usize, usize, usize)> {
    if let Ok(list) = std::env::var("DRPLAN_BENCH_SIZES") {
        return list
            .split(',')
            .map(|s| s.trim().parse::<usize>().expect("DRPLAN_BENCH_SIZES: VM counts separated by commas"))
            .map(|vms| (vms, groups_for(vms), if vms <= 1_000 { 3 } else { 1 }))
            .collect();
    }
    let mut sizes = vec![(1_000, 10, 3), (10_000, 20, 1)];
    if flag("DRPLAN_BENCH_BIG") {
        sizes.push((100_000, 100, 1));
    } else {
        println!("scale: 100,000 VMs skipped (set DRPLAN_BENCH_BIG=1)");
    }
    sizes
}

/// Whether to measure a figure: `DRPLAN_BENCH_FIGURES` names the ones wanted (check,
/// exec, makespan, actions; the journal's figures come with exec), else all are.
fn wanted(figure: &str) -> bool {
    std::env::var("DRPLAN_BENCH_FIGURES").map_or(true, |list| list.split(',').any(|f| f.trim() == figure))
}

fn measure(vms: usize, groups: usize, reps: usize) -> Report {
    let fixture = Fixture::new(vms, groups);
    println!();
    println!(
        "{} VMs in {groups} groups (site {:.1} MiB, generated in {}), median of {reps}:",
        thousands(vms),
        fixture.site_bytes as f64 / (1u64 << 20) as f64,
        secs(fixture.generated_in)
    );
    let mut report = Report::new(vms, groups);
    if wanted("check") {
        check::measure(&fixture, reps, &mut report);
    }
    if wanted("exec") {
        let run = execution::measure(&fixture, reps, &mut report);
        journal::measure(&run, vms, &mut report);
    }
    if wanted("makespan") {
        makespan::measure(&fixture, &mut report);
    }
    if wanted("actions") {
        actions::measure(&fixture, reps, &mut report);
    }
    report
}

fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    println!("wrote {}", path.display());
}

fn main() {
    let machine = Machine::here();
    println!("scale: {}, {} cores, {} RAM; {}", machine.cpu, machine.cores, machine.ram, machine.rustc);
    let reports: Vec<Report> = sizes().into_iter().map(|(vms, groups, reps)| measure(vms, groups, reps)).collect();
    let table = report::markdown(&reports, &machine);
    println!();
    println!("{table}");
    if flag("DRPLAN_BENCH_WRITE") {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/perf");
        std::fs::create_dir_all(&dir).expect("docs/perf");
        write(&dir, "scale.csv", &report::csv(&reports));
        write(&dir, "scale.svg", &chart::svg(&reports, &machine));
        write(&dir, "latest.md", &table);
    }
}
