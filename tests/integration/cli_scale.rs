//! Generated plans of hundreds of VMs with a Rhai action per VM, through the binary:
//! what the small example plan cannot show. Scripts run on other threads while a dry
//! run's clock is paused; if a script let that clock move, the same plan would print
//! different timelines from one dry run to the next. And the plan must run for real,
//! journal and all, on the unpaced simulation in which operations take no real time.

// The generator behind `cargo run --example generate` and the scale benchmark.
#[allow(dead_code)]
#[path = "../../examples/generate/generator.rs"]
mod generator;

use crate::util::{RECORD_DNS, Workdir};

/// A working folder with a generated site of `vms` VMs and its plan, `extra` prepended
/// to the site file; its DNS changes are recorded, not sent.
fn generated(vms: usize, groups: usize, extra: &str) -> Workdir {
    let work = Workdir::empty();
    let spec = generator::Spec { vms, groups, out: work.path().into(), seed: 3, faults: false };
    generator::write(&spec).unwrap_or_else(|e| panic!("generator: {e}"));
    work.site_edit(|text| format!("{extra}{text}")).file("drplan.toml", RECORD_DNS)
}

#[test]
fn dry_runs_of_a_large_plan_with_script_actions_print_the_same_bytes() {
    let work = generated(400, 4, "");
    let first = work.run(&["dry-run", "plan.rhai", "--parallel", "16"]).ok().stdout;
    assert!(first.contains("dns.point"), "the per-VM actions made no DNS calls:\n{first}");
    for _ in 0..2 {
        let again = work.run(&["dry-run", "plan.rhai", "--parallel", "16"]).ok().stdout;
        assert!(again == first, "a second dry run printed something else");
    }
}

#[test]
fn a_large_plan_runs_for_real_on_an_unpaced_simulation() {
    let work = generated(300, 3, "[simulation]\npace = false\n");
    work.run(&["failover", "plan.rhai", "--kind", "planned", "--yes"]).ok();
    let status = work.run(&["status", "--format", "json"]).ok().json();
    let vms = status["vms"].as_array().unwrap();
    assert_eq!(vms.len(), 300);
    for vm in vms {
        assert!(vm["state"].as_str().unwrap().starts_with("failed over (planned"), "{vm}");
    }
}

#[test]
fn a_large_report_goes_to_a_reader_that_stopped_reading_without_an_error() {
    let work = generated(400, 4, "");
    for format in ["human", "json"] {
        // As `drplan dry-run plan.rhai | head -1`: the report is written as it is made,
        // and the reader is gone before its first line.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let run = work.drplan(["dry-run", "plan.rhai", "--format", format]).stdout(writer).run().ok();
        assert_eq!(run.stderr, "", "{format}");
    }
}
