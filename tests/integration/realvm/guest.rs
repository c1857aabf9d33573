//! The test guest: a busybox initramfs booted directly with the installed Debian kernel
//! (built once per machine and cached), its domain XML, and reading its data disk offline.

use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::harness::{INSTALL, lock_file, run, target_dir};

/// PID 1 of the guest.
pub const INIT: &str = include_str!("guest-init.sh");
/// busybox udhcpc's hook: sets the leased address.
const UDHCPC_SCRIPT: &str = include_str!("udhcpc.script");
/// `/sbin/shutdown`, which qemu-ga runs for `virsh shutdown`.
const SHUTDOWN: &str = include_str!("shutdown.sh");
/// qemu-ga's fsfreeze hook: the sequence writer pauses while the guest is frozen (R3).
const FSFREEZE_HOOK: &str = include_str!("fsfreeze-hook.sh");

/// The kernel modules the init loads, in its order (each after those it needs).
const MODULES: &[&str] = &[
    "virtio_ring",
    "virtio",
    "virtio_pci_legacy_dev",
    "virtio_pci_modern_dev",
    "virtio_pci",
    "virtio_blk",
    "failover",
    "net_failover",
    "virtio_net",
    "virtio_console",
    "evdev",
    "button",
];

/// The kernel and initramfs every test guest boots.
#[derive(Clone, Debug)]
pub struct GuestImage {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

/// The guest image, built on first use and cached in `target/realvm-guest/KEY/` (KEY hashes
/// the init, its scripts and the kernel version), under a lock so that parallel tests (and
/// test processes) build it once.
pub fn image() -> GuestImage {
    static IMAGE: std::sync::OnceLock<GuestImage> = std::sync::OnceLock::new();
    IMAGE.get_or_init(build_image).clone()
}

fn build_image() -> GuestImage {
    let (kernel, version) = find_kernel();
    let mut hasher = DefaultHasher::new();
    (INIT, UDHCPC_SCRIPT, SHUTDOWN, FSFREEZE_HOOK, MODULES, &version).hash(&mut hasher);
    let base = target_dir().join("realvm-guest");
    fs::create_dir_all(&base).expect("create target/realvm-guest");
    let dir = base.join(format!("{:016x}", hasher.finish()));
    let initrd = dir.join("initrd.gz");
    let _lock = lock_file(&base.join("build.lock"));
    if !initrd.is_file() {
        let started = std::time::Instant::now();
        let building = base.join("building");
        let _ = fs::remove_dir_all(&building);
        pack_initramfs(&building, &version);
        fs::rename(&building, &dir).unwrap_or_else(|e| panic!("cannot rename {}: {e}", building.display()));
        eprintln!("realvm: built the guest image in {:.1?}", started.elapsed());
    }
    GuestImage { kernel, initrd }
}

/// The newest `/boot/vmlinuz-VERSION` whose modules are installed, and VERSION.
fn find_kernel() -> (PathBuf, String) {
    let mut versions: Vec<String> = fs::read_dir("/boot")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().to_str()?.strip_prefix("vmlinuz-").map(String::from))
                .filter(|v| Path::new("/lib/modules").join(v).join("modules.dep").is_file())
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    let version =
        versions.pop().unwrap_or_else(|| panic!("no /boot/vmlinuz-* with its modules in /lib/modules: {INSTALL}"));
    (PathBuf::from(format!("/boot/vmlinuz-{version}")), version)
}

/// Builds `dir/initrd.gz`: busybox, qemu-ga and their libraries, the modules, the scripts.
fn pack_initramfs(dir: &Path, version: &str) {
    let root = dir.join("root");
    for sub in ["bin", "sbin", "etc/udhcpc", "etc/qemu", "proc", "sys", "dev", "mod", "www", "tmp", "var/run"] {
        fs::create_dir_all(root.join(sub)).expect("create an initramfs folder");
    }
    let busybox = super::harness::find_program("busybox");
    let qemu_ga = super::harness::find_program("qemu-ga");
    copy(&busybox, &root.join("bin/busybox"));
    copy(&qemu_ga, &root.join("sbin/qemu-ga"));
    // Dynamically linked programs get their libraries at the same paths (no ld.so.cache needed).
    for program in [&busybox, &qemu_ga] {
        for library in shared_libraries(program) {
            copy(&library, &root.join(library.strip_prefix("/").unwrap()));
        }
    }
    let modules_dir = Path::new("/lib/modules").join(version);
    let dep = fs::read_to_string(modules_dir.join("modules.dep")).expect("read modules.dep");
    for module in MODULES {
        let file = format!("/{module}.ko");
        let path =
            dep.lines().filter_map(|line| line.split(':').next()).find(|path| path.ends_with(&file)).unwrap_or_else(
                || panic!("module {module}.ko (uncompressed) not in {}/modules.dep", modules_dir.display()),
            );
        copy(&modules_dir.join(path), &root.join("mod").join(format!("{module}.ko")));
    }
    write_executable(&root.join("init"), INIT);
    write_executable(&root.join("etc/udhcpc/default.script"), UDHCPC_SCRIPT);
    write_executable(&root.join("sbin/shutdown"), SHUTDOWN);
    write_executable(&root.join("etc/qemu/fsfreeze-hook"), FSFREEZE_HOOK);
    run(
        Command::new("sh")
            .arg("-ec")
            .arg("cd root && find . | cpio -o -H newc --quiet | gzip -1 > ../initrd.gz")
            .current_dir(dir),
        "pack the guest initramfs (cpio, gzip)",
    );
    fs::remove_dir_all(&root).expect("remove the initramfs tree");
}

/// The libraries `ldd` lists for `program` (none for a static one).
fn shared_libraries(program: &Path) -> Vec<PathBuf> {
    let output = Command::new("ldd").arg(program).output().expect("run ldd");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or "/lib64/ld-linux-x86-64.so.2 (0x…)"
            let path = line.split("=>").last()?.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

fn copy(from: &Path, to: &Path) {
    fs::create_dir_all(to.parent().unwrap()).expect("create a folder");
    fs::copy(from, to).unwrap_or_else(|e| panic!("cannot copy {} to {}: {e}", from.display(), to.display()));
}

fn write_executable(path: &Path, text: &str) {
    fs::write(path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).expect("chmod 755");
}

/// What a test guest's domain is made of.
pub struct DomainSpec<'a> {
    pub name: &'a str,
    /// `site=` on the kernel command line: what the guest serves as `/site` and writes
    /// in its records.
    pub site: &'a str,
    pub kernel: &'a Path,
    pub initrd: &'a Path,
    pub disk: &'a Path,
    pub network: &'a str,
    pub mac: &'a str,
    /// The tap device's name (at most 15 characters): two libvirt daemons in one network
    /// namespace would otherwise race for the same `vnetN`.
    pub tap: &'a str,
    pub console_log: &'a Path,
}

/// The domain XML of a test guest: TCG (`type='qemu'`; KVM guests hang here), 256 MiB, one
/// vCPU, direct kernel boot, the qcow2 data disk as virtio `vda`, one virtio NIC on a
/// libvirt network without option ROM, the guest-agent channel, the serial console to a
/// file, no graphics, and every way of stopping destroys the domain.
pub fn domain_xml(spec: &DomainSpec) -> String {
    let DomainSpec { name, site, kernel, initrd, disk, network, mac, tap, console_log } = spec;
    let (kernel, initrd, disk, console_log) =
        (kernel.display(), initrd.display(), disk.display(), console_log.display());
    format!(
        "<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{kernel}</kernel>
    <initrd>{initrd}</initrd>
    <cmdline>console=ttyS0 panic=-1 loglevel=3 site={site}</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='{disk}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='network'>
      <source network='{network}'/>
      <mac address='{mac}'/>
      <target dev='{tap}'/>
      <model type='virtio'/>
      <rom enabled='no'/>
    </interface>
    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
    <serial type='file'><source path='{console_log}'/><target port='0'/></serial>
    <memballoon model='none'/>
  </devices>
</domain>
"
    )
}

/// One record the guest wrote: `seq=N time=T site=S`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    /// Seconds since the epoch, by the guest's clock.
    pub time: u64,
    pub site: String,
}

impl Record {
    fn parse(sector: &[u8]) -> Option<Record> {
        let text = std::str::from_utf8(sector).ok()?;
        let mut words = text.split_whitespace();
        let seq = words.next()?.strip_prefix("seq=")?.parse().ok()?;
        let time = words.next()?.strip_prefix("time=")?.parse().ok()?;
        let site = words.next()?.strip_prefix("site=")?.to_string();
        Some(Record { seq, time, site })
    }
}

/// The records of a guest's data disk (qcow2 or raw, read offline: not while a guest
/// runs on it), from sector 1 on, in sector order, up to the first sector without one.
/// Sector N+1 holds record N.
pub fn read_records(disk: &Path) -> Vec<Record> {
    let raw = tempfile::NamedTempFile::new().expect("temporary file");
    run(
        Command::new("qemu-img").arg("convert").arg("-O").arg("raw").arg(disk).arg(raw.path()),
        &format!("read {} (qemu-img convert)", disk.display()),
    );
    let bytes = fs::read(raw.path()).expect("read the raw copy");
    bytes.chunks(512).skip(1).map_while(Record::parse).collect()
}

/// The sequence numbers on a guest's data disk, in sector order (see `read_records`).
pub fn read_sequence(disk: &Path) -> Vec<u64> {
    read_records(disk).iter().map(|r| r.seq).collect()
}

/// The latest record (sector 0) of a guest's data disk; `None` on a fresh disk.
pub fn read_latest(disk: &Path) -> Option<Record> {
    let raw = tempfile::NamedTempFile::new().expect("temporary file");
    run(
        Command::new("qemu-img")
            .args(["dd", "-O", "raw", "bs=512", "count=1"])
            .arg(format!("if={}", disk.display()))
            .arg(format!("of={}", raw.path().display())),
        &format!("read sector 0 of {} (qemu-img dd)", disk.display()),
    );
    Record::parse(&fs::read(raw.path()).expect("read sector 0"))
}

/// Checks that `sequence` is 0, 1, 2, … with no gap nor repeat, and returns its last
/// number. Panics (showing where it breaks) otherwise, or when it is empty.
pub fn assert_contiguous(sequence: &[u64]) -> u64 {
    assert!(!sequence.is_empty(), "the disk holds no record");
    if let Some(at) = sequence.iter().enumerate().position(|(i, &seq)| seq != i as u64) {
        let from = at.saturating_sub(3);
        panic!(
            "the sequence breaks at sector {}: expected {at}, found {}; around it: {:?}",
            at + 1,
            sequence[at],
            &sequence[from..(at + 3).min(sequence.len())]
        );
    }
    *sequence.last().unwrap()
}
