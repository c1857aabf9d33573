//! The libvirt fabric on a real QEMU/TCG guest, each figure against a baseline measured in
//! the same run, on the same machine and the same data:
//!
//! 1. An incremental replication cycle (`drplan replicate --once`), after the guest wrote
//!    `DIRTY_MIB` MiB of random data over its disk (`dd` from `/dev/urandom`, run through
//!    the guest agent's `guest-exec`), against `qemu-img convert` of the very clusters that
//!    cycle copied (its point file read without its backing chain, into a new qcow2). Both
//!    as MiB/s of the changed data the point file holds; the cycle also by its own time as
//!    drplan reports it (the libvirt push backup, the chain's link, the record), without
//!    the command's start, and less its fixed cost (a cycle with almost nothing to copy).
//!    Medians of `ROUNDS` rounds.
//! 2. An unplanned failover of the VM (`drplan failover PLAN --kind unplanned --point
//!    latest-processed --yes`, the source's plug pulled first, the plan's post step
//!    `wait_port`s port 80), from the command's start to the replica answering HTTP on
//!    port 80 and to the command's end, against the boot itself: a copy of the replica's
//!    domain defined by hand on a fresh overlay of the same point, `virsh define` +
//!    `virsh start`, polled the same way until it answers. The replica is destroyed
//!    before the baseline boots, so each boot has the machine to itself; the baseline
//!    boots `BY_HAND_BOOTS` copies, one after the other. Each boot also reports when the
//!    guest was ready by its own clock (its console), the part of the boot inside it.
//!
//! Everything runs in the real-VM test harness (`tests/integration/realvm/`): two libvirt
//! sites in a network namespace of their own, the busybox guest. drplan runs inside that
//! namespace (`nsenter`), like every probe of the guests: no bridge, address or packet
//! leaves it. Needs root and `scripts/install-realvm.sh`; about 70 s. Figures:
//! `docs/perf/libvirt.md`.
//!
//! ```text
//! cargo bench --bench libvirt
//! DRPLAN_BENCH_WRITE=1 cargo bench --bench libvirt   # also write docs/perf/libvirt-latest.md
//! ```

// Shared with the real-VM integration tests; some of their items only the tests use.
#[allow(dead_code)]
#[path = "../tests/integration/realvm/guest.rs"]
mod guest;
#[allow(dead_code)]
#[path = "../tests/integration/realvm/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "../tests/integration/realvm/site.rs"]
mod site;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use harness::{GuestHandle, RealSites, run};

/// The guest's disk (the harness's guests have 64 MiB; this one is bigger, so that a cycle
/// moves enough data for a rate).
const DISK_MIB: u64 = 512;
/// How much the guest writes before each incremental cycle, at `DIRTY_OFFSET_MIB` of its
/// disk (the sequence writer only uses its first MiB).
const DIRTY_MIB: u64 = 256;
const DIRTY_OFFSET_MIB: u64 = 16;
const ROUNDS: usize = 3;
/// The replica's address: the site file's `target_ip`, reserved for its MAC at site b.
const REPLICA_IP: &str = "10.77.2.50";
const MAC: &str = "52:54:00:77:01:20";
/// The baseline boots a copy of the replica this many times, each with its own name, MAC
/// and tap.
const BY_HAND_BOOTS: usize = 2;
/// Longest a single drplan command may take (it is killed after).
const COMMAND_TIMEOUT: &str = "120";
/// Longest wait for a guest to answer on port 80, and for a `guest-exec` to end.
const BOOT_WAIT: Duration = Duration::from_secs(90);
const EXEC_WAIT: Duration = Duration::from_secs(60);

/// An operator's folder: the state, the site file and the plan; drplan runs there, inside
/// the sites' network namespace.
struct Work {
    dir: tempfile::TempDir,
    netns_pid: u32,
}

impl Work {
    /// `drplan ARGS`, inside the namespace, killed after `COMMAND_TIMEOUT` seconds.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net=/proc/{}/ns/net", self.netns_pid))
            .args(["timeout", "-k", "5", COMMAND_TIMEOUT, env!("CARGO_BIN_EXE_drplan"), "--state"])
            .arg(self.dir.path().join("state"))
            .arg("--site")
            .arg(self.dir.path().join("site.toml"))
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        command
    }

    /// Runs `drplan ARGS` to its end; panics with its output unless it succeeds.
    fn drplan(&self, args: &[&str]) -> Output {
        let output = self.command(args).output().expect("run nsenter");
        check(&output, &format!("drplan {}", args.join(" ")));
        output
    }
}

fn check(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Whether the guest at `ip` answers HTTP on port 80, asked from inside the namespace; each
/// try takes at most ~1 s (an address that is not up yet fails its ARP slowly otherwise).
fn answers(sites: &RealSites, ip: &str) -> bool {
    sites
        .netns_command("timeout")
        .args(["-s", "KILL", "2", "curl", "-s", "-o", "/dev/null", "-f", "--noproxy", "*"])
        .args(["--connect-timeout", "0.5", "--max-time", "1"])
        .arg(format!("http://{ip}/site"))
        .stdin(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Polls `ip` every 100 ms until it answers, for at most `BOOT_WAIT`; when it first did,
/// counted from `since`.
fn wait_answer(sites: &RealSites, ip: &str, since: Instant) -> Duration {
    let started = Instant::now();
    while started.elapsed() < BOOT_WAIT {
        if answers(sites, ip) {
            return since.elapsed();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("nothing answered at {ip}:80 within {BOOT_WAIT:?}\n{}", sites.consoles());
}

/// Runs `PATH ARGS` in the guest through its agent (`guest-exec`) and waits (at most
/// `EXEC_WAIT`) for it to exit 0.
fn guest_exec(sites: &RealSites, guest: &GuestHandle, path: &str, args: &[String]) -> Duration {
    let request = serde_json::json!({
        "execute": "guest-exec",
        "arguments": { "path": path, "arg": args, "capture-output": true },
    });
    let answer = sites.virsh(&guest.site, &["qemu-agent-command", &guest.name, &request.to_string()]);
    let answer: serde_json::Value = serde_json::from_str(answer.trim()).expect("guest-exec's answer");
    let pid = answer["return"]["pid"].as_i64().unwrap_or_else(|| panic!("guest-exec: {answer}"));
    let status = serde_json::json!({ "execute": "guest-exec-status", "arguments": { "pid": pid } }).to_string();
    let started = Instant::now();
    while started.elapsed() < EXEC_WAIT {
        let answer = sites.virsh(&guest.site, &["qemu-agent-command", &guest.name, &status]);
        let answer: serde_json::Value = serde_json::from_str(answer.trim()).expect("guest-exec-status's answer");
        if answer["return"]["exited"] == true {
            assert_eq!(answer["return"]["exitcode"], 0, "{path} {args:?} in the guest: {answer}");
            return started.elapsed();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{path} {args:?} did not end within {EXEC_WAIT:?} in the guest");
}

/// `json:{…}` naming a qcow2 file without its backing chain: only the clusters it holds.
fn top_layer(file: &Path) -> String {
    let spec = serde_json::json!({
        "driver": "qcow2",
        "file": { "driver": "file", "filename": file.to_string_lossy() },
        "backing": null,
    });
    format!("json:{spec}")
}

/// The bytes of data `file` itself holds (its allocated clusters, not its backing's).
fn data_bytes(file: &Path) -> u64 {
    let output = run(
        Command::new("qemu-img").args(["map", "--output=json", &top_layer(file)]),
        "map a point file (qemu-img map)",
    );
    let map: serde_json::Value = serde_json::from_slice(&output.stdout).expect("qemu-img map's JSON");
    map.as_array()
        .expect("qemu-img map: a list")
        .iter()
        .filter(|extent| extent["data"] == true)
        .map(|extent| extent["length"].as_u64().unwrap_or(0))
        .sum()
}

/// One incremental round's figures.
struct Round {
    /// How long the guest's `dd` took.
    dirty: Duration,
    changed_mib: f64,
    /// `drplan replicate --once`, start to end.
    command: Duration,
    /// The cycle's own time, as drplan reports it.
    cycle: Duration,
    /// `qemu-img convert` of the point file's own clusters into a new qcow2.
    convert: Duration,
}

/// The seconds in `point N: incremental copy, crash-consistent, 1.23 s`.
fn cycle_time(stderr: &str) -> Duration {
    let line = stderr
        .lines()
        .find(|l| l.contains("incremental copy"))
        .unwrap_or_else(|| panic!("no incremental copy in drplan replicate's output:\n{stderr}"));
    let seconds = line
        .split(", ")
        .find_map(|part| part.trim().strip_suffix(" s")?.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no duration in {line:?}"));
    Duration::from_secs_f64(seconds)
}

fn incremental_round(sites: &RealSites, work: &Work, app: &GuestHandle, chain: &Path, seq: u64) -> Round {
    let args = [
        "if=/dev/urandom".to_string(),
        "of=/dev/vda".to_string(),
        "bs=64k".to_string(),
        format!("seek={}", DIRTY_OFFSET_MIB * 16),
        format!("count={}", DIRTY_MIB * 16),
        "conv=notrunc,fsync".to_string(),
    ];
    let dirty = guest_exec(sites, app, "/bin/dd", &args);

    let started = Instant::now();
    let output = work.drplan(&["replicate", "--once"]);
    let command = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("point {seq}: incremental copy")), "{stderr}");
    let cycle = cycle_time(&stderr);

    let point = chain.join(format!("point-{seq:08}-vda.qcow2"));
    let changed = data_bytes(&point);
    assert!(changed >= DIRTY_MIB << 20, "point {seq} holds {changed} bytes, less than the guest wrote");
    let copy = chain.join("convert-baseline.qcow2");
    let started = Instant::now();
    run(
        Command::new("qemu-img").args(["convert", "-O", "qcow2", &top_layer(&point)]).arg(&copy),
        "copy the point's clusters (qemu-img convert)",
    );
    let convert = started.elapsed();
    assert_eq!(data_bytes(&copy), changed, "the baseline copied the same data");
    fs::remove_file(&copy).expect("remove the baseline's copy");
    Round { dirty, changed_mib: changed as f64 / (1u64 << 20) as f64, command, cycle, convert }
}

/// One boot that was timed: from its start to HTTP on port 80, and the guest's own
/// uptime when it was ready (from its console): the part of the boot inside the guest.
struct Boot {
    answered: Duration,
    guest_ready: f64,
}

/// The failover's figures.
struct Failover {
    drplan: Boot,
    /// From the command's start to its end.
    command: Duration,
    /// The baseline's boots.
    by_hand: Vec<Boot>,
    /// Of which `virsh define` + `virsh start` themselves.
    by_hand_start: Vec<Duration>,
}

/// When the guest booting at `site` on `console` was ready inside, by its own clock
/// (uptime, from its kernel's start): the later of its httpd starting and its DHCP lease.
fn guest_ready(console: &Path, site: &str) -> f64 {
    let text = fs::read_to_string(console).unwrap_or_default();
    let boot = format!("GUEST BOOT site={site}");
    let this_boot = &text[text.rfind(&boot).unwrap_or_else(|| panic!("no {boot} on {}:\n{text}", console.display()))..];
    let uptime = |prefix: &str| {
        this_boot
            .lines()
            .filter(|l| l.starts_with(prefix))
            .find_map(|l| l.rsplit_once("uptime=")?.1.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {prefix:?} line on {}:\n{this_boot}", console.display()))
    };
    uptime("GUEST HTTPD STARTED").max(uptime("GUEST DHCP bound"))
}

fn failover(sites: &RealSites, work: &Work, app: &GuestHandle, chain: &Path, seq: u64) -> Failover {
    // The disaster: site a's VM loses power; the failover's shutdown attempt finds it off.
    sites.destroy_guest(app);
    let started = Instant::now();
    let child = work
        .command(&["failover", "plan.rhai", "--kind", "unplanned", "--point", "latest-processed", "--yes"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run nsenter");
    let answered = wait_answer(sites, REPLICA_IP, started);
    // The command ends within COMMAND_TIMEOUT (`timeout` kills it).
    let output = child.wait_with_output().expect("wait for drplan failover");
    let command = started.elapsed();
    check(&output, "drplan failover --kind unplanned");
    assert_eq!(sites.http_get(REPLICA_IP, "site").as_deref().map(str::trim), Some("b"), "the replica runs at b");
    // The replica keeps its source's serial console file.
    let drplan = Boot { answered, guest_ready: guest_ready(&app.console, "b") };

    // The baseline: the replica's definition, copied by hand onto a fresh overlay of the
    // same point, with its own name, MAC, tap and console.
    let xml = sites.virsh("b", &["dumpxml", "--inactive", "app01"]);
    sites.virsh("b", &["destroy", "app01"]);
    let point = chain.join(format!("point-{seq:08}-vda.qcow2"));
    let (mut by_hand, mut by_hand_start) = (Vec::new(), Vec::new());
    for i in 1..=BY_HAND_BOOTS {
        let copy = Copy {
            name: format!("byhand{i}"),
            mac: format!("52:54:00:77:02:{:02x}", 0x20 + i),
            tap: format!("vt-b-hand{i}"),
            disk: sites.dir("b").join(format!("byhand{i}.qcow2")),
        };
        run(
            Command::new("qemu-img")
                .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
                .arg(&point)
                .arg(&copy.disk),
            "create the baseline's overlay",
        );
        let file = sites.dir("b").join(format!("{}.xml", copy.name));
        fs::write(&file, copy_of_replica(&xml, &chain.join("app01-vda.qcow2"), &copy)).expect("write a domain");
        let ip = sites.reserve_ip("b", &sites.network("b"), &copy.name, &copy.mac);
        let started = Instant::now();
        sites.virsh("b", &["define", &file.to_string_lossy()]);
        sites.virsh("b", &["start", &copy.name]);
        by_hand_start.push(started.elapsed());
        let answered = wait_answer(sites, &ip, started);
        let console = app.console.with_file_name(format!("{}.console.log", copy.name));
        by_hand.push(Boot { answered, guest_ready: guest_ready(&console, "b") });
        sites.virsh("b", &["destroy", &copy.name]);
    }
    Failover { drplan, command, by_hand, by_hand_start }
}

/// What the baseline's copy of the replica changes.
struct Copy {
    name: String,
    mac: String,
    tap: String,
    disk: PathBuf,
}

/// The replica's definition with the name, MAC, tap, disk and console of `copy`, without
/// its uuid.
fn copy_of_replica(xml: &str, replica_disk: &Path, copy: &Copy) -> String {
    fn replace(xml: &mut String, from: &str, to: &str) {
        assert!(xml.contains(from), "the replica's definition has no {from:?}:\n{xml}");
        *xml = xml.replace(from, to);
    }
    let mut xml = xml.to_string();
    replace(&mut xml, "<name>app01</name>", &format!("<name>{}</name>", copy.name));
    replace(&mut xml, MAC, &copy.mac);
    replace(&mut xml, &replica_disk.to_string_lossy(), &copy.disk.to_string_lossy());
    replace(&mut xml, "app01.console.log", &format!("{}.console.log", copy.name));
    let tap = xml
        .split("<target dev='")
        .skip(1)
        .map(|rest| rest.split('\'').next().unwrap_or_default())
        .find(|dev| dev.starts_with("dr"))
        .unwrap_or_else(|| panic!("no tap in the replica's definition:\n{xml}"))
        .to_string();
    replace(&mut xml, &format!("<target dev='{tap}'"), &format!("<target dev='{}'", copy.tap));
    if let (Some(from), Some(to)) = (xml.find("<uuid>"), xml.find("</uuid>")) {
        xml.replace_range(from..to + "</uuid>".len(), "");
    }
    xml
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn mean(samples: Vec<f64>) -> f64 {
    samples.iter().sum::<f64>() / samples.len() as f64
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn main() {
    let bench_started = Instant::now();
    let sites = RealSites::start(&["a", "b"]);
    let disk = sites.dir("a").join("app01.qcow2");
    run(
        Command::new("qemu-img").args(["create", "-q", "-f", "qcow2"]).arg(&disk).arg(format!("{DISK_MIB}M")),
        "create the guest's disk",
    );
    let app = sites.define_guest_on("a", "app01", MAC, &sites.network("a"), &disk);
    sites.start_guest(&app);
    sites.wait_counter(&app.ip, 3, BOOT_WAIT);
    let storage = sites.dir("b").join("replicas");
    fs::create_dir_all(&storage).expect("create the replicas' folder");
    let chain = storage.join("app01");
    let work = Work { dir: tempfile::tempdir().expect("temporary directory"), netns_pid: sites.netns_pid() };
    fs::write(
        work.dir.path().join("site.toml"),
        site::site_file(&sites, &[site::AppVm::new("app01", &app.ip, REPLICA_IP)]),
    )
    .expect("write site.toml");
    fs::write(work.dir.path().join("plan.rhai"), site::PLAN).expect("write plan.rhai");

    work.drplan(&["protect", "app01", "--policy", "gold", "--yes"]);
    let full = work.drplan(&["replicate", "--once"]);
    let full = String::from_utf8_lossy(&full.stderr).into_owned();
    assert!(full.contains("point 1: full copy"), "{full}");

    // A cycle with (almost) nothing to copy: the sequence writer's few clusters. What a
    // cycle costs whatever it copies.
    let idle = Instant::now();
    let idle_output = work.drplan(&["replicate", "--once"]);
    let idle_command = idle.elapsed();
    let idle_stderr = String::from_utf8_lossy(&idle_output.stderr).into_owned();
    assert!(idle_stderr.contains("point 2: incremental copy"), "{idle_stderr}");
    let idle_cycle = cycle_time(&idle_stderr);
    let idle_mib = data_bytes(&chain.join("point-00000002-vda.qcow2")) as f64 / (1u64 << 20) as f64;

    let rounds: Vec<Round> =
        (0..ROUNDS).map(|i| incremental_round(&sites, &work, &app, &chain, i as u64 + 3)).collect();
    let last_seq = ROUNDS as u64 + 2;
    let fail = failover(&sites, &work, &app, &chain, last_seq);
    let took = bench_started.elapsed();

    let changed = median(rounds.iter().map(|r| r.changed_mib).collect());
    let rate = |pick: fn(&Round) -> Duration| median(rounds.iter().map(|r| r.changed_mib / secs(pick(r))).collect());
    let time = |pick: fn(&Round) -> Duration| median(rounds.iter().map(|r| secs(pick(r))).collect());
    let (command_rate, cycle_rate, convert_rate) = (rate(|r| r.command), rate(|r| r.cycle), rate(|r| r.convert));
    let (command_time, cycle_time, convert_time) = (time(|r| r.command), time(|r| r.cycle), time(|r| r.convert));

    let mut table = String::new();
    table += "| figure | time | rate | ratio to the baseline |\n| --- | --- | --- | --- |\n";
    table += &format!(
        "| baseline: `qemu-img convert` of the point's {changed:.1} MiB into a new qcow2 | {convert_time:.2} s | {convert_rate:.1} MiB/s | 1.00x |\n"
    );
    table += &format!(
        "| incremental cycle, drplan's own time (push backup, link, record) | {cycle_time:.2} s | {cycle_rate:.1} MiB/s | {:.2}x |\n",
        cycle_rate / convert_rate
    );
    table += &format!(
        "| incremental cycle, `drplan replicate --once` start to end | {command_time:.2} s | {command_rate:.1} MiB/s | {:.2}x |\n",
        command_rate / convert_rate
    );
    table += &format!(
        "| the same cycle with {idle_mib:.1} MiB to copy (its fixed cost) | {:.2} s (command {:.2} s) | | |\n",
        secs(idle_cycle),
        secs(idle_command)
    );
    let copy_rate = changed / (cycle_time - secs(idle_cycle));
    table += &format!(
        "| incremental cycle's own time less its fixed cost (the copy itself) | {:.2} s | {copy_rate:.1} MiB/s | {:.2}x |\n",
        cycle_time - secs(idle_cycle),
        copy_rate / convert_rate
    );
    let by_hand = mean(fail.by_hand.iter().map(|b| secs(b.answered)).collect());
    let by_hand_start = mean(fail.by_hand_start.iter().map(|d| secs(*d)).collect());
    let by_hand_uptime = mean(fail.by_hand.iter().map(|b| b.guest_ready).collect());
    let answered = secs(fail.drplan.answered);
    table += &format!(
        "| baseline: `virsh define` + `virsh start` of a copy of the replica, to HTTP on port 80 (mean of {BY_HAND_BOOTS}) | {by_hand:.2} s (define + start {by_hand_start:.2} s; guest ready at uptime {by_hand_uptime:.2} s) | | 1.00x |\n"
    );
    table += &format!(
        "| unplanned failover, `drplan failover` start to the replica answering on port 80 | {answered:.2} s (guest ready at uptime {:.2} s) | | {:.2}x ({:+.2} s) |\n",
        fail.drplan.guest_ready,
        answered / by_hand,
        answered - by_hand
    );
    table += &format!(
        "| unplanned failover, `drplan failover` start to end (its `wait_port` saw it) | {:.2} s | | {:.2}x ({:+.2} s) |\n",
        secs(fail.command),
        secs(fail.command) / by_hand,
        secs(fail.command) - by_hand
    );

    println!(
        "libvirt: QEMU/TCG busybox guest, {DISK_MIB} MiB qcow2 disk, two libvirt sites on this host (shared storage); \
         the guest writes {DIRTY_MIB} MiB of random data before each incremental cycle; medians of {ROUNDS} rounds"
    );
    for (i, r) in rounds.iter().enumerate() {
        println!(
            "  round {}: the guest's dd {:.2} s; {:.1} MiB changed; drplan replicate --once {:.2} s (cycle {:.2} s); qemu-img convert {:.2} s",
            i + 1,
            secs(r.dirty),
            r.changed_mib,
            secs(r.command),
            secs(r.cycle),
            secs(r.convert)
        );
    }
    for (i, (boot, start)) in fail.by_hand.iter().zip(&fail.by_hand_start).enumerate() {
        println!(
            "  baseline boot {}: {:.2} s to HTTP (define + start {:.2} s, guest ready at uptime {:.2} s)",
            i + 1,
            secs(boot.answered),
            secs(*start),
            boot.guest_ready
        );
    }
    println!();
    println!("{table}");
    println!("whole bench: {:.1} s", secs(took));
    if std::env::var("DRPLAN_BENCH_WRITE").is_ok_and(|v| v == "1") {
        let path: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/perf/libvirt-latest.md");
        fs::write(&path, &table).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        println!("wrote {}", path.display());
    }
}
