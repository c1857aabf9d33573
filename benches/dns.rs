//! DNS updates (R50) against a real BIND 9 on loopback: 500 replaces of distinct names
//! through `Rfc2136` (awaited one after the other, then from 16 concurrent tasks), against
//! a baseline measured in the same run: ONE `nsupdate` session making the same 500
//! replaces. Also the time from `point` to a `lookup` that reads the new address back.
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

const UPDATES: usize = 500;
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
    let program = bind::find_program("nsupdate");
    let started = Instant::now();
    let mut child = Command::new(program).stdin(Stdio::piped()).stdout(Stdio::null()).spawn().expect("run nsupdate");
    child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
    let status = child.wait().unwrap();
    let rate = UPDATES as f64 / started.elapsed().as_secs_f64();
    assert!(status.success(), "nsupdate failed: {status}");
    rate
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
