//! DNS updates (R50) against a real BIND 9 on loopback, each figure against a baseline
//! measured in the same run: ONE `nsupdate` session making the same updates.
//!
//! - The 90-VM three-tier DNS job: 30 database, 30 application and 30 web VMs, each
//!   pointed at its replica's address and verified with a query, as `plan.update_dns()`
//!   does. The tiers run in order, each with at most `--parallel` VMs at a time (8, 30,
//!   100), and also as one group of 90, where `--parallel 100` means 90 at once. The job
//!   must not get slower as `--parallel` grows; the slowest single call shows a stall.
//! - 500 replaces of distinct names through `Rfc2136` (awaited one after the other, then
//!   from 16 concurrent tasks), and the time from `point` to a `lookup` that reads the new
//!   address back.
//!
//! `cargo bench --bench dns` (needs `named` and `nsupdate`: apt-get install bind9 bind9-dnsutils)

// Shared with the DNS integration tests; some of its items only they use.
#[allow(dead_code)]
#[path = "../tests/integration/bind.rs"]
mod bind;

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use drplan::fabric::dns::{DnsUpdater, Rfc2136};
use tokio::sync::Semaphore;

const UPDATES: usize = 500;
/// The job's tiers, in plan order, and how many VMs each has.
const TIERS: [&str; 3] = ["db", "app", "web"];
const PER_TIER: usize = 30;
const PARALLEL: [usize; 3] = [8, 30, 100];
const JOB_ROUNDS: usize = 5;
const TASKS: usize = 16;
const ROUNDS: usize = 3;
const TTL: u32 = 300;

fn name(i: usize) -> String {
    format!("bench{i:03}.contoso.test")
}

/// A distinct address per name and round, so every replace changes the record.
fn ip(round: usize, i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 100 + round as u8, (i / 250) as u8, (i % 250) as u8 + 1)
}

/// The 500 replaces through drplan, from `tasks` tasks each awaiting its updates in turn.
fn drplan(runtime: &tokio::runtime::Runtime, dns: &Arc<Rfc2136>, round: usize, tasks: usize) -> f64 {
    let started = Instant::now();
    runtime.block_on(async {
        let mut all = tokio::task::JoinSet::new();
        for task in 0..tasks {
            let dns = dns.clone();
            all.spawn(async move {
                for i in (task..UPDATES).step_by(tasks) {
                    dns.point(&name(i), ip(round, i)).await.unwrap();
                }
            });
        }
        while let Some(done) = all.join_next().await {
            done.unwrap();
        }
    });
    UPDATES as f64 / started.elapsed().as_secs_f64()
}

/// The same 500 replaces as one nsupdate session: one process, one `send` per name.
fn nsupdate(server: &bind::Bind, round: usize, with_zone: bool) -> f64 {
    let mut script =
        format!("server 127.0.0.1 {}\nkey hmac-sha256:{} {}\n", server.port, bind::KEY_NAME, server.secret);
    if with_zone {
        script.push_str("zone contoso.test.\n");
    }
    for i in 0..UPDATES {
        let (name, ip) = (name(i), ip(round, i));
        script.push_str(&format!("update delete {name} A\nupdate add {name} {TTL} A {ip}\nsend\n"));
    }
    let started = Instant::now();
    run_nsupdate(&script);
    UPDATES as f64 / started.elapsed().as_secs_f64()
}

/// The DNS name of the job's `i`th VM of `tier` (counted from 0).
fn vm_name(tier: usize, i: usize) -> String {
    format!("{}{:05}.contoso.test", TIERS[tier], i + 1)
}

/// The address of that VM's replica in `round`: every round changes every record.
fn vm_ip(round: usize, tier: usize, i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 200 + (round % 50) as u8, tier as u8, i as u8 + 1)
}

/// How the job's VMs are grouped: the three tiers in order, or one group of all 90.
#[derive(Clone, Copy)]
enum Grouping {
    Tiers,
    OneGroup,
}

/// What one run of the job took: the whole job, and its slowest single call.
struct JobTime {
    total: Duration,
    slowest_call: Duration,
}

/// The DNS job of a 90-VM failover: each VM's name pointed at its replica's address and
/// verified by a query, at most `parallel` VMs at a time within a group, groups in order.
fn job(
    runtime: &tokio::runtime::Runtime,
    dns: &Arc<Rfc2136>,
    round: usize,
    parallel: usize,
    grouping: Grouping,
) -> JobTime {
    let groups: Vec<Vec<(usize, usize)>> = match grouping {
        Grouping::Tiers => (0..TIERS.len()).map(|tier| (0..PER_TIER).map(|i| (tier, i)).collect()).collect(),
        Grouping::OneGroup => vec![(0..TIERS.len()).flat_map(|tier| (0..PER_TIER).map(move |i| (tier, i))).collect()],
    };
    let started = Instant::now();
    let slowest = runtime.block_on(async {
        let mut slowest = Duration::ZERO;
        for group in groups {
            let slots = Arc::new(Semaphore::new(parallel));
            let mut vms = tokio::task::JoinSet::new();
            for (tier, i) in group {
                let (dns, slots) = (dns.clone(), slots.clone());
                vms.spawn(async move {
                    let _slot = slots.acquire_owned().await.unwrap();
                    let (name, ip) = (vm_name(tier, i), vm_ip(round, tier, i));
                    let mut slowest = Duration::ZERO;
                    let call = Instant::now();
                    dns.point(&name, ip).await.unwrap();
                    slowest = slowest.max(call.elapsed());
                    let call = Instant::now();
                    assert_eq!(dns.lookup(&name).await.unwrap(), vec![ip], "{name} verified");
                    slowest.max(call.elapsed())
                });
            }
            while let Some(done) = vms.join_next().await {
                slowest = slowest.max(done.unwrap());
            }
        }
        slowest
    });
    JobTime { total: started.elapsed(), slowest_call: slowest }
}

/// The job's 90 updates as one nsupdate session (one process, a `zone` line, one `send`
/// per name: nsupdate sends them one at a time over one connection), and how long it took.
fn nsupdate_job(server: &bind::Bind, round: usize) -> Duration {
    let mut script = format!(
        "server 127.0.0.1 {}\nkey hmac-sha256:{} {}\nzone contoso.test.\n",
        server.port,
        bind::KEY_NAME,
        server.secret
    );
    for tier in 0..TIERS.len() {
        for i in 0..PER_TIER {
            let (name, ip) = (vm_name(tier, i), vm_ip(round, tier, i));
            script.push_str(&format!("update delete {name} A\nupdate add {name} {TTL} A {ip}\nsend\n"));
        }
    }
    let started = Instant::now();
    run_nsupdate(&script);
    started.elapsed()
}

fn run_nsupdate(script: &str) {
    let program = bind::find_program("nsupdate");
    let mut child = Command::new(program).stdin(Stdio::piped()).stdout(Stdio::null()).spawn().expect("run nsupdate");
    child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "nsupdate failed: {status}");
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The 90-VM job at each `--parallel`, against one nsupdate session, medians of rounds
/// that alternate between them.
fn job_section(server: &bind::Bind, runtime: &tokio::runtime::Runtime, dns: &Arc<Rfc2136>) {
    let mut round = 0;
    // Create the names first, so every timed round replaces existing records.
    job(runtime, dns, round, 30, Grouping::OneGroup);
    let cases: Vec<(Grouping, usize)> = [Grouping::Tiers, Grouping::OneGroup]
        .into_iter()
        .flat_map(|grouping| PARALLEL.map(|parallel| (grouping, parallel)))
        .collect();
    let mut baseline = vec![];
    let mut times: Vec<Vec<JobTime>> = cases.iter().map(|_| vec![]).collect();
    for _ in 0..JOB_ROUNDS {
        round += 1;
        baseline.push(ms(nsupdate_job(server, round)));
        for (case, &(grouping, parallel)) in cases.iter().enumerate() {
            round += 1;
            times[case].push(job(runtime, dns, round, parallel, grouping));
        }
    }
    let baseline = median(baseline);
    println!(
        "dns job: {} VMs in three tiers of {PER_TIER}, each `point` + a verifying `lookup` (TSIG hmac-sha256), BIND 9 on loopback; medians of {JOB_ROUNDS} rounds",
        TIERS.len() * PER_TIER
    );
    println!("  baseline, one nsupdate session making the 90 updates (no verifying queries): {baseline:>7.1} ms");
    for (case, &(grouping, parallel)) in cases.iter().enumerate() {
        let grouped = match grouping {
            Grouping::Tiers => "tiers in order",
            Grouping::OneGroup => "one group of 90",
        };
        let total = median(times[case].iter().map(|t| ms(t.total)).collect());
        let slowest = times[case].iter().map(|t| ms(t.slowest_call)).fold(0.0, f64::max);
        println!(
            "  drplan, {grouped:<15} --parallel {parallel:<3}: {total:>7.1} ms (drplan/nsupdate {:.2}x; slowest call of all rounds {slowest:.1} ms)",
            total / baseline
        );
    }
    println!(
        "  TCP connections drplan opened for all {} jobs: {}",
        JOB_ROUNDS * cases.len() + 1,
        dns.connections_opened()
    );
}

fn check(runtime: &tokio::runtime::Runtime, dns: &Rfc2136, round: usize) {
    for i in [0, UPDATES / 2, UPDATES - 1] {
        assert_eq!(
            runtime.block_on(dns.lookup(&name(i))).unwrap(),
            vec![ip(round, i)],
            "{} after round {round}",
            name(i)
        );
    }
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn main() {
    let server = bind::Bind::start();
    let dns = Arc::new(Rfc2136::new(vec![server.server(TTL)]));
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();

    job_section(&server, &runtime, &dns);
    println!();

    // Create the names first, so every timed phase replaces existing records.
    drplan(&runtime, &dns, 0, TASKS);

    let (mut baseline, mut baseline_zone, mut sequential, mut concurrent) = (vec![], vec![], vec![], vec![]);
    let mut round = 0;
    for _ in 0..ROUNDS {
        round += 1;
        baseline.push(nsupdate(&server, round, false));
        check(&runtime, &dns, round);
        round += 1;
        baseline_zone.push(nsupdate(&server, round, true));
        check(&runtime, &dns, round);
        round += 1;
        sequential.push(drplan(&runtime, &dns, round, 1));
        check(&runtime, &dns, round);
        round += 1;
        concurrent.push(drplan(&runtime, &dns, round, TASKS));
        check(&runtime, &dns, round);
    }
    let (baseline, baseline_zone) = (median(baseline), median(baseline_zone));
    let (sequential, concurrent) = (median(sequential), median(concurrent));

    println!(
        "dns: {UPDATES} replaces (delete the A set + add one A, TSIG hmac-sha256) of distinct names, BIND 9 on loopback"
    );
    println!("  medians of {ROUNDS} rounds");
    let line = |label: &str, rate: f64, note: String| println!("  {label:<54} {rate:>7.0} updates/s{note}");
    line("baseline, one nsupdate session:", baseline, String::new());
    line(
        "nsupdate with a `zone` line (no SOA lookup per send):",
        baseline_zone,
        format!(" ({:.2}x the baseline)", baseline_zone / baseline),
    );
    line(
        "drplan Rfc2136, sequential, each awaited:",
        sequential,
        format!(" (drplan/nsupdate {:.2}x)", sequential / baseline),
    );
    line(
        &format!("drplan Rfc2136, {TASKS} concurrent tasks:"),
        concurrent,
        format!(" (drplan/nsupdate {:.2}x)", concurrent / baseline),
    );

    // From point to a lookup that reads the new address back, for one record.
    let mut point = vec![];
    let mut verified = vec![];
    for sample in 0..20u8 {
        let new = Ipv4Addr::new(10, 2, 3, sample + 1);
        let started = Instant::now();
        runtime.block_on(async {
            dns.point("web01.contoso.test", new).await.unwrap();
            point.push(started.elapsed());
            while dns.lookup("web01.contoso.test").await.unwrap() != vec![new] {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        verified.push(started.elapsed());
    }
    let ms = |d: Vec<Duration>| median(d.into_iter().map(|d| d.as_secs_f64() * 1000.0).collect());
    println!(
        "  point -> verified lookup of web01.contoso.test: {:.2} ms (point alone {:.2} ms), median of 20",
        ms(verified),
        ms(point)
    );
}
