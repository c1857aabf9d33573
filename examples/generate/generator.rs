//! The core of the scale generator (`examples/generate.rs`): writes a large site file and
//! recovery plan. The example wraps it in a command line; `benches/scale` includes it
//! with `#[path]` so the benchmark writes its inputs in-process instead of running cargo.
//! The same spec always gives the same files, byte for byte.
//!
//! The site: `primary` replicates to `secondary`, one host per 50 VMs on each (at least
//! 2). `primary/prod` maps to `secondary/prod-dr`; `secondary/test-bubble` is isolated, for
//! test failovers. Each of the `groups` tiers has a subnet of the same name in all three
//! networks: `tierK` is 10.K.0.0/16 on prod, 10.(100+K).0.0/16 on prod-dr, and a slice of
//! 172.16.0.0/12 in the test bubble. VM `k` (0-based; named `vm{k+1:06}`) is in tier
//! `k * groups / vms`, tagged `tier = "tierK"`, `app = "gen"`, with one or two NICs on its
//! tier's subnet. About half the VMs have static target IPs; those are taken from the upper
//! half of the prod-dr subnet, so replicas addressed by DHCP (from the bottom) never take
//! one first. About 10% of the VMs are in replication groups of 2-4 VMs of one tier and
//! one policy. Every VM is protected (gold or silver) since sixty days before the start;
//! disks are at most 120 + 2 x 500 GB, and the VMs of a host share its throttled bandwidth
//! (R15), so even a host's whole first copy has finished by then and each VM can fail over
//! at once. `faults` adds a boot failure to about 0.1% of the VMs (at
//! least one).
//!
//! The plan: one group per tier, in order, each `vms_tagged("tier", "tierK")` with a per-VM
//! post action `dns::point_vm(vm)` (the cost the benchmarks measure), and a `vm.failed`
//! hook.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// What to generate.
pub struct Spec {
    pub vms: usize,
    /// Tiers: subnets, and groups of the plan (1 to `MAX_GROUPS`).
    pub groups: usize,
    /// The directory to write `site.toml` and `plan.rhai` to; created if missing.
    pub out: PathBuf,
    /// Seed of the pseudo-random choices.
    pub seed: u64,
    /// Inject a boot-failure fault into about 0.1% of the VMs.
    pub faults: bool,
}
/// VMs per host on each site.
pub const VMS_PER_HOST: usize = 50;
/// Tier subnets are /16s: 10.K on primary and 10.(100+K) on secondary, so at most 100.
pub const MAX_GROUPS: usize = 100;
/// First and last assignable host offsets in a /16 (0 is the network address, 1 the
/// gateway, 65535 the broadcast address): see `Ipv4Net::assignable`.
const FIRST_HOST: u32 = 2;
const LAST_HOST_16: u32 = 65534;
/// Static target IPs start here, in the upper half of the prod-dr tier subnet; DHCP hands
/// out addresses from the bottom, so it reaches them only past this many NICs.
const STATIC_TARGET_BASE: u32 = 32768;
/// A VM has at most this many NICs.
const MAX_NICS: usize = 2;

/// xorshift64*, seeded through splitmix64 so that every seed (0 included) works.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng(if z == 0 { 0x2545_F491_4F6C_DD1D } else { z })
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..=hi` (the modulo bias is negligible for these small ranges).
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    /// True with probability `num / den`.
    fn chance(&mut self, num: u64, den: u64) -> bool {
        self.next() % den < num
    }
}

/// The address at `offset` in the /16 whose first two octets are `a.b`.
fn ip16(a: usize, b: usize, offset: u32) -> String {
    format!("{a}.{b}.{}.{}", offset >> 8, offset & 0xff)
}

struct Shape {
    vms: usize,
    groups: usize,
    hosts: usize,
    /// The test bubble's subnets: 172.16.0.0/12 split into `2^test_bits` equal parts.
    test_bits: u32,
}

impl Shape {
    fn tier_of(&self, vm: usize) -> usize {
        (vm as u128 * self.groups as u128 / self.vms as u128) as usize
    }

    fn test_prefix(&self) -> u32 {
        12 + self.test_bits
    }

    fn test_cidr(&self, tier: usize) -> String {
        let size = 1u32 << (32 - self.test_prefix());
        let base = (172u32 << 24) | (16 << 16);
        let addr = std::net::Ipv4Addr::from(base + tier as u32 * size);
        format!("{addr}/{}", self.test_prefix())
    }

    /// Checks that every tier has a VM and that its NICs fit its subnets, with the most NICs
    /// a VM can have.
    fn check_capacity(&self) -> Result<(), String> {
        if self.groups > self.vms {
            // Some tier would have no VMs, and its plan group no members.
            return Err(format!("--groups {} is more than --vms {}: every tier needs a VM", self.groups, self.vms));
        }
        let per_tier = (0..self.vms).fold(vec![0usize; self.groups], |mut counts, vm| {
            counts[self.tier_of(vm)] += 1;
            counts
        });
        let largest = per_tier.iter().copied().max().unwrap_or(0);
        let nics = largest * MAX_NICS;
        // DHCP replicas must stay below the static target range, and source addresses
        // must fit the /16.
        let dhcp_room = (STATIC_TARGET_BASE - FIRST_HOST) as usize;
        // A test replica gets a test-bubble address for every NIC.
        let test_room = (1usize << (32 - self.test_prefix())) - 3;
        let room = dhcp_room.min(test_room);
        if nics > room {
            return Err(format!(
                "{} VMs in {} tiers puts up to {largest} VMs (up to {nics} NICs) in one tier, but a tier's \
                 subnets hold {room} NICs: use more --groups or fewer --vms",
                self.vms, self.groups
            ));
        }
        Ok(())
    }
}

/// What was written.
pub struct Summary {
    pub site_bytes: u64,
    pub plan_bytes: u64,
    pub replication_groups: usize,
    pub grouped_vms: usize,
    pub static_vms: usize,
    pub faults: usize,
}

/// Writes `OUT/site.toml` and `OUT/plan.rhai` (creating `OUT`) as `spec` says.
pub fn write(spec: &Spec) -> Result<Summary, String> {
    let (vms, groups) = (spec.vms, spec.groups);
    if vms == 0 || !(1..=MAX_GROUPS).contains(&groups) {
        return Err(format!("need at least one VM and 1 to {MAX_GROUPS} groups, not {vms} VMs in {groups} groups"));
    }
    let shape = Shape {
        vms,
        groups,
        hosts: vms.div_ceil(VMS_PER_HOST).max(2),
        test_bits: usize::BITS - (groups - 1).leading_zeros(),
    };
    shape.check_capacity()?;
    fs::create_dir_all(&spec.out).map_err(|e| format!("cannot create {}: {e}", spec.out.display()))?;
    let site_path = spec.out.join("site.toml");
    let plan_path = spec.out.join("plan.rhai");
    let mut summary =
        write_file(&site_path, |w| write_site(w, &shape, spec)).map_err(|e| format!("{}: {e}", site_path.display()))?;
    write_file(&plan_path, |w| write_plan(w, &shape, spec)).map_err(|e| format!("{}: {e}", plan_path.display()))?;
    summary.site_bytes = fs::metadata(&site_path).map(|m| m.len()).unwrap_or(0);
    summary.plan_bytes = fs::metadata(&plan_path).map(|m| m.len()).unwrap_or(0);
    Ok(summary)
}

fn write_file<T>(path: &Path, body: impl FnOnce(&mut BufWriter<fs::File>) -> io::Result<T>) -> io::Result<T> {
    let mut w = BufWriter::with_capacity(1 << 20, fs::File::create(path)?);
    let value = body(&mut w)?;
    w.flush()?;
    Ok(value)
}

/// The command that writes the same files, for the files' header.
pub fn command_line(spec: &Spec) -> String {
    format!(
        "cargo run --release --example generate -- --vms {} --groups {} --out {} --seed {}{}",
        spec.vms,
        spec.groups,
        spec.out.display(),
        spec.seed,
        if spec.faults { " --faults" } else { "" }
    )
}

/// One VM's random choices, made in a fixed order so a seed always gives the same site.
struct VmDraw {
    gold: bool,
    nics: usize,
    static_target: bool,
    size4: bool,
    os_gb: u64,
    data_gb: Vec<u64>,
    boot_secs: u64,
}

fn write_site(w: &mut impl Write, shape: &Shape, spec: &Spec) -> io::Result<Summary> {
    let mut rng = Rng::new(spec.seed);
    let width = shape.hosts.to_string().len().max(3);
    let host = |side: char, i: usize| format!("hv-{side}{:0width$}", i + 1);

    writeln!(w, "# Generated for scale tests and benchmarks; do not edit. Regenerate with:")?;
    writeln!(w, "#   {}", command_line(spec))?;
    writeln!(w, "# {} VMs in {} tiers; the format is documented in docs/site-file.md.", shape.vms, shape.groups)?;
    writeln!(w)?;

    // Sites, hosts and networks.
    let mut text = String::new();
    for (name, side, nets) in
        [("primary", 'p', &[("prod", false)][..]), ("secondary", 's', &[("prod-dr", false), ("test-bubble", true)][..])]
    {
        writeln!(text, "[[sites]]\nname = \"{name}\"\nkind = \"onprem\"\nplatform = \"hyper-v\"").unwrap();
        text.push_str("hosts = [");
        for i in 0..shape.hosts {
            if i > 0 {
                text.push_str(", ");
            }
            write!(text, "\"{}\"", host(side, i)).unwrap();
        }
        text.push_str("]\n");
        for &(net, isolated) in nets {
            writeln!(text, "\n  [[sites.networks]]\n  name = \"{net}\"").unwrap();
            if isolated {
                writeln!(text, "  isolated = true").unwrap();
            }
            for g in 0..shape.groups {
                let cidr = match net {
                    "prod" => format!("10.{g}.0.0/16"),
                    "prod-dr" => format!("10.{}.0.0/16", 100 + g),
                    _ => shape.test_cidr(g),
                };
                writeln!(text, "\n    [[sites.networks.subnets]]\n    name = \"tier{g}\"\n    cidr = \"{cidr}\"")
                    .unwrap();
            }
        }
        text.push('\n');
    }
    w.write_all(text.as_bytes())?;

    w.write_all(
        br#"[[pairings]]
source = "primary"
target = "secondary"

[[network_mappings]]
source = "primary/prod"
target = "secondary/prod-dr"

[[policies]]
name = "gold"
copy_frequency = "5m"
retention = "24h"
app_consistent = "4h"

[[policies]]
name = "silver"
copy_frequency = "15m"
retention = "72h"

[[sizes]]
name = "standard-2"
max_nics = 2

[[sizes]]
name = "standard-4"
max_nics = 4

"#,
    )?;

    // Replication groups: walk each tier's VMs in order; now and then the next 2-4 VMs of
    // the tier form a group. Starting one with probability 1/28 groups about 10% of VMs.
    let mut group_of: Vec<Option<u32>> = vec![None; shape.vms];
    let mut groups: Vec<(usize, usize)> = Vec::new(); // (first VM, member count)
    let mut vm = 0;
    while vm < shape.vms {
        let tier = shape.tier_of(vm);
        let size = rng.range(2, 4) as usize;
        let fits = vm + size <= shape.vms && shape.tier_of(vm + size - 1) == tier;
        if rng.chance(1, 28) && fits {
            for member in &mut group_of[vm..vm + size] {
                *member = Some(groups.len() as u32);
            }
            groups.push((vm, size));
            vm += size;
        } else {
            vm += 1;
        }
    }
    let group_width = groups.len().to_string().len().max(4);
    for (i, &(first, size)) in groups.iter().enumerate() {
        write!(w, "[[replication_groups]]\nname = \"rg{:0group_width$}\"\nvms = [", i + 1)?;
        for member in first..first + size {
            if member > first {
                w.write_all(b", ")?;
            }
            write!(w, "\"vm{:06}\"", member + 1)?;
        }
        w.write_all(b"]\n\n")?;
    }
    // Members of a group share one policy (R12).
    let group_gold: Vec<bool> = groups.iter().map(|_| rng.chance(1, 2)).collect();

    // VMs. Source addresses count up from the bottom of the tier's prod subnet, static
    // target addresses from the middle of its prod-dr subnet.
    let mut next_source = vec![FIRST_HOST; shape.groups];
    let mut next_target = vec![STATIC_TARGET_BASE; shape.groups];
    let mut static_vms = 0;
    let mut line = String::with_capacity(1024);
    for (vm, group) in group_of.iter().enumerate() {
        let tier = shape.tier_of(vm);
        let draw = VmDraw {
            gold: rng.chance(1, 2),
            nics: rng.range(1, MAX_NICS as u64) as usize,
            static_target: rng.chance(1, 2),
            size4: rng.chance(1, 4),
            os_gb: rng.range(30, 120),
            data_gb: (0..rng.range(0, 2)).map(|_| rng.range(1, 50) * 10).collect(),
            boot_secs: rng.range(30, 180),
        };
        let gold = group.map_or(draw.gold, |g| group_gold[g as usize]);
        let name = format!("vm{:06}", vm + 1);
        line.clear();
        writeln!(line, "[[vms]]\nname = \"{name}\"\nsite = \"primary\"").unwrap();
        writeln!(line, "host = \"{}\"\nos = \"linux\"", host('p', vm % shape.hosts)).unwrap();
        writeln!(line, "size = \"{}\"", if draw.size4 { "standard-4" } else { "standard-2" }).unwrap();
        writeln!(line, "tags = {{ tier = \"tier{tier}\", app = \"gen\" }}").unwrap();
        writeln!(line, "dns = [\"{name}.gen.test\"]").unwrap();
        let boot = match (draw.boot_secs / 60, draw.boot_secs % 60) {
            (0, s) => format!("{s}s"),
            (m, 0) => format!("{m}m"),
            (m, s) => format!("{m}m{s}s"),
        };
        writeln!(line, "boot_time = \"{boot}\"").unwrap();
        write!(line, "disks = [{{ name = \"os\", size_gb = {}, os = true }}", draw.os_gb).unwrap();
        for (i, gb) in draw.data_gb.iter().enumerate() {
            write!(line, ", {{ name = \"data{}\", size_gb = {gb} }}", i + 1).unwrap();
        }
        line.push_str("]\nnics = [");
        for nic in 0..draw.nics {
            if nic > 0 {
                line.push_str(", ");
            }
            let ip = ip16(10, tier, next_source[tier]);
            next_source[tier] += 1;
            write!(line, "{{ network = \"prod\", subnet = \"tier{tier}\", ip = \"{ip}\"").unwrap();
            if draw.static_target {
                let target = ip16(10, 100 + tier, next_target[tier]);
                next_target[tier] += 1;
                write!(line, ", target_ip = \"{target}\"").unwrap();
            }
            line.push_str(" }");
        }
        line.push_str("]\n");
        writeln!(line, "protection = {{ policy = \"{}\", since = \"-60d\" }}\n", if gold { "gold" } else { "silver" })
            .unwrap();
        w.write_all(line.as_bytes())?;
        static_vms += usize::from(draw.static_target);
    }
    debug_assert!(next_source.iter().all(|&n| n <= LAST_HOST_16 + 1));
    debug_assert!(next_target.iter().all(|&n| n <= LAST_HOST_16 + 1));

    // Faults: about one VM in a thousand, at least one, chosen after every other draw.
    let mut faulty = BTreeSet::new();
    if spec.faults {
        let count = (shape.vms / 1000).max(1);
        while faulty.len() < count {
            faulty.insert(rng.range(0, shape.vms as u64 - 1) as usize);
        }
        for vm in &faulty {
            write!(w, "[[faults]]\nkind = \"boot-failure\"\nvm = \"vm{:06}\"\n\n", vm + 1)?;
        }
    }

    Ok(Summary {
        site_bytes: 0,
        plan_bytes: 0,
        replication_groups: groups.len(),
        grouped_vms: groups.iter().map(|&(_, size)| size).sum(),
        static_vms,
        faults: faulty.len(),
    })
}

fn write_plan(w: &mut impl Write, shape: &Shape, spec: &Spec) -> io::Result<()> {
    writeln!(w, "// Generated for scale tests and benchmarks; do not edit. Regenerate with:")?;
    writeln!(w, "//   {}", command_line(spec))?;
    writeln!(w, "// Runs against site.toml beside this file: {} VMs in {} tiers.", shape.vms, shape.groups)?;
    w.write_all(
        br#"
import "dns" as dns;

let plan = recovery_plan("generated", #{
    source: "primary",
    target: "secondary",
    rto: "4h",
    test_network: "test-bubble",
});

"#,
    )?;
    for g in 0..shape.groups {
        writeln!(w, "plan.group(\"tier{g}\", vms_tagged(\"tier\", \"tier{g}\"))")?;
        writeln!(w, "    .post_each(|vm, ctx| dns::point_vm(vm));")?;
        writeln!(w)?;
    }
    w.write_all(
        br#"plan.on("vm.failed", |ev| log(`VM ${ev.vm} failed: ${ev.error}`));

plan
"#,
    )
}
