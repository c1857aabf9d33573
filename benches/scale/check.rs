//! Figure 1: `drplan check` + `drplan dry-run` of the generated plan — read and parse the
//! site, compile the plan, open the simulation, validate, preflight and dry-run on an
//! unpaced scratch copy — wall
//! time and peak memory, against the baseline of reading and parsing the site file alone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::fixture::{self, DRY_RUN_PARALLEL, Fixture, median, ms, parse_text, secs};
use crate::report::{Line, Report};

/// The baseline: read and parse the site file.
fn site_parse(fixture: &Fixture) -> Duration {
    let started = Instant::now();
    let text = std::fs::read_to_string(&fixture.site).expect("site file");
    let inventory = parse_text(&text, &fixture.site);
    let elapsed = started.elapsed();
    drop(inventory);
    elapsed
}

/// Read + parse + check + dry run, as the two commands do: (check, dry run).
fn check_and_dry_run(fixture: &Fixture) -> (Duration, Duration) {
    let started = Instant::now();
    let text = std::fs::read_to_string(&fixture.site).expect("site file");
    let inventory = Arc::new(parse_text(&text, &fixture.site));
    drop(text);
    let checked = fixture::check(inventory, &fixture.plan);
    let checked_at = started.elapsed();
    let (outcome, _) = fixture::dry_run(checked, DRY_RUN_PARALLEL);
    drop(outcome);
    (checked_at, started.elapsed() - checked_at)
}

pub fn measure(fixture: &Fixture, reps: usize, report: &mut Report) {
    let parse = fixture::median_of(reps, || site_parse(fixture));
    let resettable = fixture::reset_peak();
    let (mut checks, mut dries, mut peaks) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..reps {
        fixture::reset_peak();
        let (c, d) = check_and_dry_run(fixture);
        checks.push(c);
        dries.push(d);
        peaks.extend(fixture::peak_mib());
    }
    let (check, dry) = (median(checks), median(dries));
    let total = check + dry;
    let peak = peaks.into_iter().reduce(f64::max);
    // The issues' targets: 10,000 VMs under 1 s and 300 MB; 100,000 under 5 s and 1 GB.
    let (target_s, target_mb) = if fixture.vms > 10_000 { (5.0, 1000.0) } else { (1.0, 300.0) };
    let target_mb = Some(target_mb);

    report.line(Line::info("baseline: read + parse the site file", format!("{:.1} ms", ms(parse))));
    report.line(
        Line::info("check (read + parse + compile + simulation + validate)", format!("{:.1} ms", ms(check)))
            .ratio(ms(check) / ms(parse), "the site parse"),
    );
    report.line(Line::info(format!("preflight + dry run alone (--parallel {DRY_RUN_PARALLEL})"), secs(dry)));
    report.line(
        Line::figure("check", "check + dry-run", secs(total))
            .target(format!("< {target_s} s"), total.as_secs_f64() < target_s)
            .ratio(ms(total) / ms(parse), "the site parse"),
    );
    let peak_line = match (peak, target_mb) {
        (Some(mb), Some(t)) => Line::figure("memory", "peak memory of check + dry-run", format!("{mb:.0} MiB"))
            .target(format!("< {t} MB"), mb * 1.048_576 < t),
        (Some(mb), None) => Line::figure("memory", "peak memory of check + dry-run", format!("{mb:.0} MiB")),
        (None, _) => Line::info("peak memory", "/proc/self/status unreadable"),
    };
    report.line(peak_line);
    if !resettable {
        report.line(Line::info("note", "VmHWM could not be reset: the peak is the whole process's, an upper bound"));
    }
    report.column("site_parse_ms", ms(parse));
    report.column("check_ms", ms(check));
    report.column("dry_run_ms", ms(dry));
    report.column("check_dry_run_ms", ms(total));
    report.column("check_dry_run_ratio", ms(total) / ms(parse));
    report.column("check_dry_run_us_per_vm", fixture::us_per(total, fixture.vms));
    report.column("peak_mib", peak.unwrap_or(f64::NAN));
}
