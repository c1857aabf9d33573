//! Broken site files through the real binary: each gets a clear error naming the file,
//! line and field, exit code 1, and no panic.

use crate::util::{CONTOSO_SITE, Workdir};

fn contoso() -> String {
    std::fs::read_to_string(CONTOSO_SITE).unwrap()
}

/// Runs `status` on a site file and returns the error text, checking the exit code and
/// that the error names the file and `line`.
fn error_of(site: &str, line: usize) -> String {
    let work = Workdir::with_site(site);
    let run = work.run(&["status"]).fails(1);
    let located = format!("{}:{line}:", work.site.display());
    assert!(run.stderr.contains(&located), "expected {located} in:\n{}", run.stderr);
    run.stderr
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("{needle:?} not found")) + 1
}

#[test]
fn bad_toml_syntax() {
    let site = contoso().replacen("name = \"primary\"", "name = \"primary", 1);
    let line = line_of(&site, "name = \"primary");
    error_of(&site, line);
}

#[test]
fn r10_unknown_network_in_a_nic() {
    let site = contoso().replacen("network = \"prod\", subnet = \"db\"", "network = \"prod-x\", subnet = \"db\"", 1);
    let err = error_of(&site, line_of(&site, "prod-x"));
    assert!(err.contains("unknown network \"prod-x\""), "{err}");
    assert!(err.contains(".nics[0].network"), "the field is named: {err}");
}

#[test]
fn r6_two_os_disks() {
    let site = contoso().replacen("{ name = \"data\", size_gb", "{ name = \"data\", os = true, size_gb", 1);
    let err = error_of(&site, line_of(&site, "os = true, size_gb"));
    assert!(err.contains("exactly one OS disk"), "{err}");
}

#[test]
fn r3_app_consistent_frequency_not_below_retention() {
    let site = contoso().replacen("app_consistent = \"4h\"", "app_consistent = \"12h\"", 1).replacen(
        "retention = \"24h\"",
        "retention = \"12h\"",
        1,
    );
    let err = error_of(&site, line_of(&site, "app_consistent = \"12h\""));
    assert!(err.contains("must be less than the retention window"), "{err}");
}

#[test]
fn r1_thirty_seconds_to_premium_storage() {
    let site =
        contoso().replacen("copy_frequency = \"5m\"", "copy_frequency = \"30s\"\ntarget_storage = \"premium\"", 1);
    let err = error_of(&site, line_of(&site, "target_storage = \"premium\""));
    assert!(err.contains("30s copy frequency is not offered when the target storage is premium"), "{err}");
}

#[test]
fn a_broken_site_file_leaves_existing_state_untouched() {
    let work = Workdir::contoso();
    work.run(&["protect", "report01", "--policy", "silver", "--yes"]).ok();
    let before = std::fs::read(work.state().join("sim.db")).unwrap();
    let broken = Workdir::with_site("[[sites]\n");
    work.drplan(["status"]).site_file(&broken.site).fails(1);
    assert_eq!(std::fs::read(work.state().join("sim.db")).unwrap(), before);
    let status = work.run(&["status", "report01"]).ok();
    assert!(status.stdout.contains("initial replication"), "{}", status.stdout);
}
