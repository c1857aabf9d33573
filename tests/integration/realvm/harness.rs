//! `RealSites`: a network namespace, one private libvirtd per site in it, one DHCP network
//! per site, and the test guests; everything torn down on drop. See `mod.rs` for the layout.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::guest::{self, DomainSpec, GuestImage};

/// What to do when something the real-VM tests need is missing.
pub const INSTALL: &str = "run scripts/install-realvm.sh as root (QEMU, libvirt, dnsmasq, the Debian kernel, \
                           busybox-static, qemu-guest-agent)";

/// How long a site's libvirtd may take to answer (it re-probes QEMU, ~8 s, when the copied
/// capabilities cache does not fit).
const DAEMON_READY: Duration = Duration::from_secs(60);
/// Longest wait for a guest to power off after `virsh shutdown`.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(30);
/// Longest single virsh command.
const VIRSH_TIMEOUT: &str = "60";
/// How long the namespace's holder sleeps: a test process killed without running the
/// drops leaves it (and anything in the namespace) for at most this long.
const HOLDER_SECONDS: &str = "3600";

/// Two (or more) libvirt sites with real QEMU/TCG guests, inside a network namespace of
/// their own. Dropping it destroys every guest and network, stops the daemons and the
/// namespace, and removes the files.
pub struct RealSites {
    // Dropped in this order, after `Drop::drop` destroyed the guests and networks: the
    // daemons, the namespace, the files.
    sites: Vec<Site>,
    netns: Netns,
    root: TempDir,
    image: GuestImage,
    /// The next host number (last byte of the address) to hand out, per network.
    next_host: Mutex<HashMap<String, u8>>,
    /// The guests `define_guest` made, for diagnostics.
    guests: Mutex<Vec<GuestHandle>>,
    /// `Some` when each site is a host of its own, reached over ssh (`start_apart`).
    ssh: Option<SshClient>,
    /// The machine's CPUs, shared with other tests' guests or held alone (last: released
    /// once everything above is gone).
    _cpus: fs::File,
}

/// How the test reaches sites that are hosts of their own: one key, and an ssh that uses
/// it, keeps the hosts' keys in `ROOT/ssh/known_hosts`, not the machine's, and shares
/// one connection per host between commands (as docs/libvirt.md advises for virsh).
struct SshClient {
    /// `ROOT/ssh/ssh`: `ssh -F ROOT/ssh/config "$@"`, the `command` of the sites' URIs.
    command: PathBuf,
    /// The public key each site's sshd lets in.
    public_key: PathBuf,
}

/// Whether the test's guests share the machine's CPUs with other tests' guests.
#[derive(Clone, Copy, PartialEq)]
pub enum Cpus {
    Shared,
    /// For a test that measures durations: TCG guests booting side by side slow each
    /// other down by half or more.
    Alone,
}

/// One site: its libvirtd, its folders and its network.
struct Site {
    name: String,
    /// The network's third address byte: 10.77.INDEX.0/24.
    index: u8,
    /// `ROOT/NAME`: the daemon's folders (run, lib, etc, log, cache) and `images`.
    base: PathBuf,
    network: String,
    daemon: Daemon,
    kernel: PathBuf,
    initrd: PathBuf,
    taps: Mutex<u32>,
}

/// A guest `RealSites::define_guest` defined (not started).
#[derive(Clone, Debug)]
pub struct GuestHandle {
    pub site: String,
    /// The libvirt domain's name.
    pub name: String,
    pub mac: String,
    /// Its DHCP reservation on `network`.
    pub ip: String,
    pub network: String,
    /// The qcow2 data disk, in the site's `dir`.
    pub disk: PathBuf,
    /// The serial console's log, in the site's `dir`.
    pub console: PathBuf,
    /// The tap device's name in the namespace.
    pub tap: String,
}

impl RealSites {
    /// Starts the namespace and one libvirt site per name (lowercase letters and digits,
    /// at most 8; site `sites[i]` gets network `net-NAME` on bridge `virbr-NAME`,
    /// 10.77.(i+1).0/24). Panics, saying what is missing, when this machine cannot run
    /// them (not root, a program or the guest kernel missing).
    pub fn start(sites: &[&str]) -> RealSites {
        RealSites::start_with(sites, Cpus::Shared)
    }

    /// [`RealSites::start`], with the CPUs shared or held alone (waiting for the others).
    pub fn start_with(sites: &[&str], cpus: Cpus) -> RealSites {
        RealSites::start_all(sites, cpus, false)
    }

    /// [`RealSites::start`], each site a host of its own that shares no storage with the
    /// others: its files (`storage(S)`) are on a file system only its libvirtd and its
    /// sshd see (a tmpfs mounted in its mount namespace), and drplan reaches it as it
    /// would another machine, over ssh (`site_uri(S)`: `qemu+ssh://root@127.0.0.1I/system`,
    /// the sshd listening in the namespace).
    pub fn start_apart(sites: &[&str]) -> RealSites {
        RealSites::start_all(sites, Cpus::Shared, true)
    }

    fn start_all(sites: &[&str], cpus: Cpus, apart: bool) -> RealSites {
        preflight();
        let lock = target_dir().join("realvm-guest").join("cpus.lock");
        let _ = fs::create_dir_all(lock.parent().unwrap());
        let cpus = match cpus {
            Cpus::Shared => shared_lock_file(&lock),
            Cpus::Alone => lock_file(&lock),
        };
        let image = guest::image();
        let cache = capabilities_cache();
        let root = tempfile::Builder::new().prefix("drplan-realvm-").tempdir().expect("temporary directory");
        // QEMU runs as libvirt-qemu: it must reach the images below.
        chmod(root.path(), 0o755);
        let mut real = RealSites {
            netns: Netns::start(),
            root,
            sites: Vec::new(),
            image,
            next_host: Mutex::new(HashMap::new()),
            guests: Mutex::new(Vec::new()),
            ssh: None,
            _cpus: cpus,
        };
        if apart {
            real.ssh = Some(SshClient::new(&real.root.path().join("ssh")));
        }
        // Each site is pushed once started, so a panic on the way tears down those before it.
        for (i, name) in sites.iter().enumerate() {
            let valid = !name.is_empty()
                && name.len() <= 8
                && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
            assert!(valid, "site name {name:?}: use at most 8 lowercase letters and digits");
            let site = real.start_site(name, i as u8 + 1, &cache);
            real.sites.push(site);
        }
        real
    }

    fn start_site(&self, name: &str, index: u8, cache: &Path) -> Site {
        let base = self.root.path().join(name);
        let images = base.join("images");
        fs::create_dir_all(&images).expect("create the site's folders");
        chmod(&base, 0o755);
        chmod(&images, 0o755);
        // Copies per site: libvirt's DAC driver chowns the kernel and initrd while a guest
        // runs, and two daemons must not do that to one file.
        let kernel = images.join("vmlinuz");
        let initrd = images.join("initrd.gz");
        fs::copy(&self.image.kernel, &kernel).expect("copy the guest kernel");
        fs::copy(&self.image.initrd, &initrd).expect("copy the guest initramfs");
        let host = self.ssh.as_ref().map(|ssh| SshHost::new(&base, &ssh_address(index), &ssh.public_key));
        let daemon = Daemon::start(&base, self.netns.pid, cache, host.as_ref());
        let network = format!("net-{name}");
        let site = Site { name: name.to_string(), index, base, network, daemon, kernel, initrd, taps: Mutex::new(0) };
        let xml = network_xml(&site.network, name, index);
        let file = site.base.join(format!("{}.xml", site.network));
        fs::write(&file, xml).expect("write the network XML");
        site.daemon.virsh(&["net-define", &file.to_string_lossy()]);
        site.daemon.virsh(&["net-start", &site.network]);
        site
    }

    fn site(&self, name: &str) -> &Site {
        self.sites.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("no site {name:?}"))
    }

    /// The URI of `site`'s libvirtd: `qemu+unix:///system?socket=DIR/run/libvirt-sock`.
    pub fn uri(&self, site: &str) -> String {
        self.site(site).daemon.uri()
    }

    /// The URI drplan is given for `site`: `uri(S)`, or for sites apart
    /// `qemu+ssh://root@ADDRESS/system?command=ROOT/ssh/ssh` (its sshd, in the namespace).
    pub fn site_uri(&self, site: &str) -> String {
        match &self.ssh {
            None => self.uri(site),
            Some(ssh) => format!(
                "qemu+ssh://root@{}/system?command={}",
                ssh_address(self.site(site).index),
                ssh.command.display()
            ),
        }
    }

    /// Where drplan keeps the points of the VMs protected to `site`: `dir(S)/replicas`, or
    /// for sites apart `ROOT/S/host/replicas`, seen only on that site's host.
    pub fn storage(&self, site: &str) -> PathBuf {
        if self.ssh.is_some() {
            return self.site(site).base.join("host").join("replicas");
        }
        let storage = self.dir(site).join("replicas");
        fs::create_dir_all(&storage).expect("create the site's storage");
        storage
    }

    /// `sh -c SCRIPT` on `site`'s host: in its mount namespace (where its own files are),
    /// as its sshd runs it. Its stdout; panics if it fails.
    pub fn on_host(&self, site: &str, script: &str) -> String {
        let pid = fs::read_to_string(self.site(site).base.join("run/libvirtd.pid")).expect("libvirtd's pid");
        let output =
            run(Command::new("nsenter").args(["-t", pid.trim(), "--mount", "--", "sh", "-ec", script]), script);
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Cuts `site` off: its libvirtd no longer answers at its URI (its socket moved
    /// aside; it and its guests run on), as a site that went dark. `reconnect` undoes it.
    pub fn cut_off(&self, site: &str) {
        let run = self.site(site).base.join("run");
        fs::rename(run.join("libvirt-sock"), run.join("libvirt-sock.cut")).expect("move the socket aside");
    }

    /// `site` answers at its URI again.
    pub fn reconnect(&self, site: &str) {
        let run = self.site(site).base.join("run");
        fs::rename(run.join("libvirt-sock.cut"), run.join("libvirt-sock")).expect("move the socket back");
    }

    /// A folder of `site` for images (disks, consoles), readable by QEMU.
    pub fn dir(&self, site: &str) -> PathBuf {
        self.site(site).base.join("images")
    }

    /// The name of `site`'s libvirt network (`net-SITE`).
    pub fn network(&self, site: &str) -> String {
        self.site(site).network.clone()
    }

    /// The pid of the process holding the network namespace.
    pub fn netns_pid(&self) -> u32 {
        self.netns.pid
    }

    /// The namespace's identity, `net:[INODE]` (as `/proc/PID/ns/net` reads).
    pub fn netns_id(&self) -> String {
        self.netns.id.clone()
    }

    /// `nsenter --net=/proc/PID/ns/net PROGRAM`: a command that runs inside the namespace,
    /// to add arguments to.
    pub fn netns_command(&self, program: &str) -> Command {
        self.netns.command(program)
    }

    /// `virsh -c URI ARGS` at `site`: its stdout. Panics with virsh's stderr if it fails.
    pub fn virsh(&self, site: &str, args: &[&str]) -> String {
        self.site(site).daemon.virsh(args)
    }

    /// `virsh -c URI ARGS` at `site`: its stdout, or its stderr if it fails.
    pub fn try_virsh(&self, site: &str, args: &[&str]) -> Result<String, String> {
        self.site(site).daemon.try_virsh(args)
    }

    /// Reserves the next free address of `network` (at `site`) for `mac` as host `name`
    /// (`virsh net-update … add ip-dhcp-host`, live and in the config). The address.
    pub fn reserve_ip(&self, site: &str, network: &str, name: &str, mac: &str) -> String {
        let index =
            self.sites.iter().find(|s| s.network == network).unwrap_or_else(|| panic!("no network {network:?}")).index;
        let host = {
            let mut next = self.next_host.lock().unwrap();
            let host = next.entry(network.to_string()).or_insert(10);
            assert!(*host < 100, "network {network} has no reservation left (10-99)");
            *host += 1;
            *host - 1
        };
        let ip = format!("10.77.{index}.{host}");
        let entry = format!("<host mac='{mac}' name='{name}' ip='{ip}'/>");
        self.virsh(site, &["net-update", network, "add", "ip-dhcp-host", &entry, "--live", "--config"]);
        ip
    }

    /// Defines (does not start) guest `name` at `site` on `network` with a fresh 64 MiB
    /// qcow2 data disk (`dir(site)/NAME.qcow2`, zeroed: its sequence starts at 0), a DHCP
    /// reservation for `mac` and a tap of its own.
    pub fn define_guest(&self, site: &str, name: &str, mac: &str, network: &str) -> GuestHandle {
        let disk = self.dir(site).join(format!("{name}.qcow2"));
        run(
            Command::new("qemu-img").args(["create", "-q", "-f", "qcow2"]).arg(&disk).arg("64M"),
            "create a guest disk (qemu-img create)",
        );
        self.define_guest_on(site, name, mac, network, &disk)
    }

    /// Like `define_guest`, on an existing data disk (a replica: the guest continues the
    /// sequence the disk holds, with `site=SITE` in its records).
    pub fn define_guest_on(&self, site: &str, name: &str, mac: &str, network: &str, disk: &Path) -> GuestHandle {
        let ip = self.reserve_ip(site, network, name, mac);
        let the_site = self.site(site);
        let tap = {
            let mut taps = the_site.taps.lock().unwrap();
            *taps += 1;
            format!("vt-{site}-{taps}")
        };
        assert!(tap.len() <= 15, "tap name {tap} is too long");
        let console = self.dir(site).join(format!("{name}.console.log"));
        let xml = guest::domain_xml(&DomainSpec {
            name,
            site,
            kernel: &the_site.kernel,
            initrd: &the_site.initrd,
            disk,
            network,
            mac,
            tap: &tap,
            console_log: &console,
        });
        let file = the_site.base.join(format!("{name}.xml"));
        fs::write(&file, xml).expect("write the domain XML");
        self.virsh(site, &["define", &file.to_string_lossy()]);
        let guest = GuestHandle {
            site: site.to_string(),
            name: name.to_string(),
            mac: mac.to_string(),
            ip,
            network: network.to_string(),
            disk: disk.to_path_buf(),
            console,
            tap,
        };
        self.guests.lock().unwrap().push(guest.clone());
        guest
    }

    /// `virsh start`.
    pub fn start_guest(&self, guest: &GuestHandle) {
        self.virsh(&guest.site, &["start", &guest.name]);
    }

    /// `virsh destroy` (pulls the plug).
    pub fn destroy_guest(&self, guest: &GuestHandle) {
        self.virsh(&guest.site, &["destroy", &guest.name]);
    }

    /// `virsh domstate`: "running", "shut off", ….
    pub fn domstate(&self, guest: &GuestHandle) -> String {
        self.virsh(&guest.site, &["domstate", &guest.name]).trim().to_string()
    }

    /// `virsh shutdown` and waits (at most 30 s) until the guest is shut off: how long
    /// that took.
    pub fn shutdown_guest(&self, guest: &GuestHandle) -> Duration {
        let started = Instant::now();
        self.virsh(&guest.site, &["shutdown", &guest.name]);
        while started.elapsed() < SHUTDOWN_WAIT {
            if self.domstate(guest) == "shut off" {
                return started.elapsed();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{} did not shut down within {SHUTDOWN_WAIT:?}\n{}", guest.name, self.consoles());
    }

    /// `http://IP/PATH`'s body, fetched inside the namespace (curl, 3 s at most; the
    /// host's static busybox wget crashes here);
    /// `None` if it fails.
    pub fn http_get(&self, ip: &str, path: &str) -> Option<String> {
        self.try_http_get(ip, path).ok()
    }

    /// `http://IP/PATH`'s body, or why it could not be fetched (see `http_get`).
    pub fn try_http_get(&self, ip: &str, path: &str) -> Result<String, String> {
        let output = self
            .netns_command("timeout")
            .args(["-s", "KILL", "3", "curl", "-sS", "-f", "--max-time", "2", "--noproxy", "*"])
            .arg(format!("http://{ip}/{}", path.trim_start_matches('/')))
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run nsenter: {e}"))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(format!("curl: {} ({})", String::from_utf8_lossy(&output.stderr).trim(), output.status))
        }
    }

    /// Polls the guest at `ip` (`/counter`) until its counter is at least `min`, for at
    /// most `timeout`: the counter read. Panics, with the guests' consoles, if it is not.
    pub fn wait_counter(&self, ip: &str, min: u64, timeout: Duration) -> u64 {
        let started = Instant::now();
        let mut last = Err("not asked".to_string());
        // Each try takes at most ~3 s: a bounded number of tries.
        while started.elapsed() < timeout {
            last = self.try_http_get(ip, "counter");
            if let Ok(counter) = last.as_deref().map(str::trim).map(str::parse::<u64>)
                && counter.as_ref().is_ok_and(|&c| c >= min)
            {
                return counter.unwrap();
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "the guest at {ip} did not count to {min} within {timeout:?} (last read: {last:?})\n{}",
            self.consoles()
        );
    }

    /// The serial console of `guest` so far.
    pub fn console(&self, guest: &GuestHandle) -> String {
        fs::read_to_string(&guest.console).unwrap_or_default()
    }

    /// Every defined guest's console (its last lines) and QEMU log, for failure messages.
    pub fn consoles(&self) -> String {
        let mut text = String::new();
        for guest in self.guests.lock().unwrap().iter() {
            let console = self.console(guest);
            let tail: Vec<&str> = console.lines().rev().take(40).collect();
            let qemu_log = self.site(&guest.site).base.join("log/qemu").join(format!("{}.log", guest.name));
            let qemu_log = fs::read_to_string(qemu_log).unwrap_or_default();
            let qemu_tail: Vec<&str> = qemu_log.lines().rev().take(10).collect();
            text += &format!(
                "--- console of {} (site {}, {}):\n{}\n--- QEMU log:\n{}\n",
                guest.name,
                guest.site,
                guest.ip,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
                qemu_tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        text
    }

    /// The processes this harness keeps running now (each site's libvirtd, virtlogd and
    /// dnsmasq, QEMU per running guest), as (what, pid): all gone once it is dropped.
    pub fn processes(&self) -> Vec<(String, u32)> {
        let mut found = vec![("holder".to_string(), self.netns.pid)];
        for site in &self.sites {
            let run = site.base.join("run");
            found.push((format!("libvirtd {}", site.name), site.daemon.child.id()));
            let pid_files = [
                (format!("virtlogd {}", site.name), run.join("virtlogd.pid")),
                (format!("dnsmasq {}", site.network), run.join("network").join(format!("{}.pid", site.network))),
            ];
            let qemu = fs::read_dir(run.join("qemu")).into_iter().flatten().filter_map(|e| {
                let path = e.ok()?.path();
                let name = path.file_name()?.to_str()?.strip_suffix(".pid")?.to_string();
                Some((format!("qemu {name}"), path))
            });
            for (what, file) in pid_files.into_iter().chain(qemu) {
                if let Some(pid) = fs::read_to_string(&file).ok().and_then(|s| s.trim().parse().ok()) {
                    found.push((what, pid));
                }
            }
        }
        found
    }

    /// Destroys the guests and networks; dropping the fields then stops the daemons and
    /// the namespace.
    fn stop(&mut self) {
        // Guests and networks first: QEMU and dnsmasq outlive a killed libvirtd.
        for site in &self.sites {
            if let Ok(running) = site.daemon.try_virsh(&["list", "--name"]) {
                for name in running.lines().map(str::trim).filter(|n| !n.is_empty()) {
                    if let Err(e) = site.daemon.try_virsh(&["destroy", name]) {
                        eprintln!("realvm: cannot destroy {name} at {}: {e}", site.name);
                    }
                }
            }
            // The site's own network, and any a test added (a drill's test network).
            let active = site.daemon.try_virsh(&["net-list", "--name"]).unwrap_or_default();
            for network in active.lines().map(str::trim).filter(|n| !n.is_empty()) {
                if let Err(e) = site.daemon.try_virsh(&["net-destroy", network]) {
                    eprintln!("realvm: cannot stop network {network} at {}: {e}", site.name);
                }
            }
        }
    }
}

impl Drop for RealSites {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `<forward mode='open'/>`: no firewall rules, and the host side routes between the
/// sites' bridges (forwarding is on in the namespace). No DNS; DHCP reservations are added
/// per guest.
fn network_xml(network: &str, site: &str, index: u8) -> String {
    format!(
        "<network>
  <name>{network}</name>
  <forward mode='open'/>
  <bridge name='virbr-{site}' stp='off' delay='0'/>
  <dns enable='no'/>
  <ip address='10.77.{index}.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='10.77.{index}.100' end='10.77.{index}.199'/>
    </dhcp>
  </ip>
</network>
"
    )
}

/// The network namespace: a process (`unshare --net -- sleep`) holds it.
struct Netns {
    holder: Child,
    pid: u32,
    id: String,
}

impl Netns {
    fn start() -> Netns {
        let mut holder = Command::new("unshare")
            .args(["--net", "--", "sleep", HOLDER_SECONDS])
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run unshare: {e}; {INSTALL}"));
        let pid = holder.id();
        let own = netns_of(std::process::id()).expect("this process's network namespace");
        // unshare execs sleep once it has unshared: bounded wait for the new namespace.
        let started = Instant::now();
        let id = loop {
            if let Some(status) = holder.try_wait().expect("the holder's status") {
                let mut stderr = String::new();
                let _ = std::io::Read::read_to_string(&mut holder.stderr.take().unwrap(), &mut stderr);
                panic!("`unshare --net` failed ({status}): {stderr}; the real-VM tests must run as root");
            }
            match netns_of(pid) {
                Some(id) if id != own => break id,
                _ if started.elapsed() > Duration::from_secs(5) => {
                    let _ = holder.kill();
                    let _ = holder.wait();
                    panic!("`unshare --net` made no network namespace within 5 s");
                }
                _ => std::thread::sleep(Duration::from_millis(5)),
            }
        };
        let netns = Netns { holder, pid, id };
        // Loopback up; forwarding on between the sites' bridges (this namespace's own setting).
        run(
            netns.command("sh").args(["-ec", "ip link set lo up; echo 1 > /proc/sys/net/ipv4/ip_forward"]),
            "set up the network namespace",
        );
        netns
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new("nsenter");
        command.arg(format!("--net=/proc/{}/ns/net", self.pid)).arg(program);
        command
    }

    /// Kills whatever still runs in the namespace, then the holder: the namespace is gone.
    fn stop(&mut self) {
        if self.holder.try_wait().ok().flatten().is_some() {
            return;
        }
        let left = processes_in_netns(&self.id);
        let strays: Vec<_> = left.iter().filter(|(pid, _)| *pid != self.pid).collect();
        if !strays.is_empty() {
            eprintln!("realvm: killing what is left in the namespace: {strays:?}");
            for (pid, _) in strays {
                signal(*pid, "KILL");
            }
        }
        let _ = self.holder.kill();
        let _ = self.holder.wait();
        wait_until("the namespace's processes to end", Duration::from_secs(5), || {
            processes_in_netns(&self.id).is_empty()
        });
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A site's libvirtd (and virtlogd) in its own mount namespace, joined to the network
/// namespace, with `/run/libvirt`, `/var/lib/libvirt`, `/etc/libvirt`, `/var/log/libvirt`
/// and `/var/cache/libvirt` bound to the site's folders.
struct Daemon {
    /// libvirtd itself: nsenter, unshare and sh exec one another.
    child: Child,
    base: PathBuf,
    stopped: bool,
}

/// The address of the i-th site's sshd in the namespace: 127.0.0.1I.
fn ssh_address(index: u8) -> String {
    format!("127.0.0.{}", 10 + index)
}

impl SshClient {
    fn new(dir: &Path) -> SshClient {
        fs::create_dir_all(dir).expect("create the ssh folder");
        let key = dir.join("id");
        run(
            Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", "drplan-realvm", "-f"]).arg(&key),
            "make the test's ssh key (ssh-keygen)",
        );
        let d = dir.display();
        fs::write(
            dir.join("config"),
            format!(
                "IdentityFile {d}/id\nIdentitiesOnly yes\nUserKnownHostsFile {d}/known_hosts\n\
                 StrictHostKeyChecking accept-new\nBatchMode yes\nConnectTimeout 10\nLogLevel ERROR\n\
                 ControlMaster auto\nControlPath {d}/cm-%C\nControlPersist 30\n"
            ),
        )
        .expect("write the ssh config");
        let command = dir.join("ssh");
        fs::write(&command, format!("#!/bin/sh\nexec ssh -F '{d}/config' \"$@\"\n")).expect("write the ssh wrapper");
        chmod(&command, 0o755);
        SshClient { command, public_key: dir.join("id.pub") }
    }
}

/// What makes a site a host of its own: its sshd's address and configuration.
struct SshHost {
    config: PathBuf,
}

impl SshHost {
    /// An sshd for the site at `BASE/ssh`, listening on `address`:22, letting in
    /// `public_key` as root.
    fn new(base: &Path, address: &str, public_key: &Path) -> SshHost {
        let dir = base.join("ssh");
        fs::create_dir_all(&dir).expect("create the site's ssh folder");
        fs::create_dir_all(base.join("host")).expect("create the site's host folder");
        let host_key = dir.join("host_key");
        run(
            Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&host_key),
            "make the site's host key (ssh-keygen)",
        );
        let b = base.display();
        let config = dir.join("sshd_config");
        fs::write(
            &config,
            format!(
                "ListenAddress {address}:22\nHostKey {}\nPidFile {b}/run/sshd.pid\n\
                 AuthorizedKeysFile {}\nPermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\n",
                host_key.display(),
                public_key.display()
            ),
        )
        .expect("write sshd_config");
        SshHost { config }
    }
}

impl Daemon {
    fn start(base: &Path, netns_pid: u32, cache: &Path, host: Option<&SshHost>) -> Daemon {
        for sub in ["run", "lib", "log", "cg"] {
            fs::create_dir_all(base.join(sub)).expect("create the daemon's folders");
        }
        run(Command::new("cp").arg("-a").arg("/etc/libvirt").arg(base.join("etc")), "copy /etc/libvirt");
        run(Command::new("cp").arg("-a").arg(cache).arg(base.join("cache")), "copy the capabilities cache");
        // The copy would bring the host's domains and networks along.
        for dir in ["etc/qemu", "etc/qemu/networks", "etc/qemu/networks/autostart", "etc/qemu/autostart"] {
            for entry in fs::read_dir(base.join(dir)).into_iter().flatten().flatten() {
                if entry.path().is_file() || entry.path().is_symlink() {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        // Two daemons share the cgroup tree: no cgroups, or a replica named like its source
        // collides with it.
        let qemu_conf = base.join("etc/qemu.conf");
        let mut conf = fs::read_to_string(&qemu_conf).unwrap_or_default();
        conf += "\n# drplan real-VM test site\ncgroup_controllers = [ ]\n";
        fs::write(&qemu_conf, conf).expect("write qemu.conf");
        let b = base.display();
        // A host of its own: its files on a tmpfs only this mount namespace sees, and an
        // sshd (in it) to reach them and libvirtd.
        let host = host.map_or(String::new(), |host| {
            format!(
                "mount -t tmpfs -o size=2g,mode=0755 drplan-host '{b}/host'
mkdir -p /run/sshd
{} -f '{}' -E '{b}/log/sshd.log'
",
                find_program("sshd").display(),
                host.config.display()
            )
        });
        let script = format!(
            "{host}mkdir -p /run/libvirt
mount --bind '{b}/run' /run/libvirt
mount --bind '{b}/lib' /var/lib/libvirt
mount --bind '{b}/etc' /etc/libvirt
mount --bind '{b}/log' /var/log/libvirt
mount --bind '{b}/cache' /var/cache/libvirt
# /sys as this network namespace sees it, cgroups kept
mount --rbind /sys/fs/cgroup '{b}/cg'
mount -t sysfs sysfs /sys
mount --move '{b}/cg' /sys/fs/cgroup
virtlogd -d -p /run/libvirt/virtlogd.pid
exec libvirtd -p /run/libvirt/libvirtd.pid
"
        );
        let out = fs::File::create(base.join("log/libvirtd.out")).expect("create libvirtd.out");
        let child = Command::new("nsenter")
            .arg(format!("--net=/proc/{netns_pid}/ns/net"))
            .args(["unshare", "--mount", "--propagation", "private", "--", "sh", "-ec", &script])
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run nsenter: {e}; {INSTALL}"));
        let mut daemon = Daemon { child, base: base.to_path_buf(), stopped: false };
        let started = Instant::now();
        loop {
            if let Some(status) = daemon.child.try_wait().expect("libvirtd's status") {
                panic!("libvirtd exited ({status}):\n{}", daemon.log());
            }
            if daemon.try_virsh(&["version"]).is_ok() {
                break;
            }
            if started.elapsed() > DAEMON_READY {
                panic!("libvirtd did not answer within {DAEMON_READY:?}:\n{}", daemon.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        daemon
    }

    fn uri(&self) -> String {
        format!("qemu+unix:///system?socket={}/run/libvirt-sock", self.base.display())
    }

    fn log(&self) -> String {
        fs::read_to_string(self.base.join("log/libvirtd.out")).unwrap_or_default()
    }

    fn try_virsh(&self, args: &[&str]) -> Result<String, String> {
        let output = Command::new("timeout")
            .args(["-k", "5", VIRSH_TIMEOUT, "virsh", "-q", "-c", &self.uri()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run virsh: {e}; {INSTALL}"))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(format!("{} ({})", String::from_utf8_lossy(&output.stderr).trim(), output.status))
        }
    }

    fn virsh(&self, args: &[&str]) -> String {
        self.try_virsh(args).unwrap_or_else(|e| panic!("virsh {} failed: {e}", args.join(" ")))
    }

    /// SIGTERM to libvirtd and virtlogd, SIGKILL after 5 s.
    fn stop(&mut self) {
        if std::mem::replace(&mut self.stopped, true) {
            return;
        }
        let pid_of = |file: &str| fs::read_to_string(self.base.join("run").join(file)).ok()?.trim().parse().ok();
        let (virtlogd, sshd): (Option<u32>, Option<u32>) = (pid_of("virtlogd.pid"), pid_of("sshd.pid"));
        if let Some(pid) = sshd {
            signal(pid, "TERM");
        }
        if self.child.try_wait().ok().flatten().is_none() {
            signal(self.child.id(), "TERM");
            let started = Instant::now();
            while self.child.try_wait().ok().flatten().is_none() && started.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Some(pid) = virtlogd {
            signal(pid, "TERM");
            if !wait_until("virtlogd to end", Duration::from_secs(5), || !alive(pid)) {
                signal(pid, "KILL");
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Panics, naming everything that is missing, unless this machine can run real VMs.
fn preflight() {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    require(&missing(root, |program| which(program).is_some()));
}

/// Panics, naming `missing` and what to run, unless it is empty.
pub fn require(missing: &[String]) {
    assert!(missing.is_empty(), "the real-VM tests cannot run here; missing: {}. {INSTALL}", missing.join(", "));
}

/// What the real-VM tests need and this machine lacks, running as root or not, with the
/// programs `have` finds.
pub fn missing(root: bool, have: impl Fn(&str) -> bool) -> Vec<String> {
    let mut missing = Vec::new();
    if !root {
        missing.push("root (run the real-VM tests as root: they make namespaces and run libvirtd)".to_string());
    }
    let programs = [
        "unshare",
        "nsenter",
        "ip",
        "timeout",
        "curl",
        "libvirtd",
        "virtlogd",
        "virsh",
        "qemu-system-x86_64",
        "qemu-img",
        "dnsmasq",
        "busybox",
        "qemu-ga",
        "cpio",
        "gzip",
        "ldd",
        "ssh",
        "ssh-keygen",
        "sshd",
    ];
    missing.extend(programs.iter().filter(|p| !have(p)).map(|p| format!("program `{p}`")));
    for file in ["/dev/net/tun", "/usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so"] {
        if !Path::new(file).exists() {
            missing.push(file.to_string());
        }
    }
    let kernel = fs::read_dir("/boot").into_iter().flatten().flatten().any(|e| {
        e.file_name()
            .to_str()
            .and_then(|n| n.strip_prefix("vmlinuz-"))
            .is_some_and(|v| Path::new("/lib/modules").join(v).join("modules.dep").is_file())
    });
    if !kernel {
        missing.push("a guest kernel (/boot/vmlinuz-* with /lib/modules/*)".to_string());
    }
    missing
}

/// A copy of libvirt's QEMU capabilities cache in `target/realvm-guest/libvirt-cache`, made
/// once: from `/var/cache/libvirt` when it holds one, else by starting a throwaway libvirtd
/// (in a throwaway namespace) that probes QEMU (~8 s). With it a site starts in ~0.2 s.
fn capabilities_cache() -> PathBuf {
    static CACHE: OnceLock<PathBuf> = OnceLock::new();
    CACHE
        .get_or_init(|| {
            let base = target_dir().join("realvm-guest");
            fs::create_dir_all(&base).expect("create target/realvm-guest");
            let cache = base.join("libvirt-cache");
            let _lock = lock_file(&base.join("cache.lock"));
            if has_capabilities(&cache) {
                return cache;
            }
            let _ = fs::remove_dir_all(&cache);
            if has_capabilities(Path::new("/var/cache/libvirt")) {
                run(Command::new("cp").arg("-a").arg("/var/cache/libvirt").arg(&cache), "copy /var/cache/libvirt");
                return cache;
            }
            let started = Instant::now();
            let scratch = tempfile::Builder::new().prefix("drplan-realvm-probe-").tempdir().expect("temporary dir");
            let empty = scratch.path().join("empty-cache");
            fs::create_dir_all(&empty).expect("create a folder");
            let netns = Netns::start();
            let daemon = Daemon::start(&scratch.path().join("probe"), netns.pid, &empty, None);
            daemon.virsh(&["domcapabilities", "--virttype", "qemu"]);
            drop(daemon);
            drop(netns);
            let probed = scratch.path().join("probe/cache");
            assert!(has_capabilities(&probed), "libvirtd wrote no QEMU capabilities cache");
            run(Command::new("cp").arg("-a").arg(&probed).arg(&cache), "keep the capabilities cache");
            eprintln!("realvm: probed QEMU's capabilities in {:.1?}", started.elapsed());
            cache
        })
        .clone()
}

fn has_capabilities(cache: &Path) -> bool {
    fs::read_dir(cache.join("qemu/capabilities"))
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| e.path().extension().is_some_and(|x| x == "xml"))
}

/// The target directory this test binary was built in (`target/debug/deps/integration-…`).
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// `path`, opened and locked (exclusive) until the file is dropped.
pub fn lock_file(path: &Path) -> fs::File {
    open_locked(path, fs::File::lock)
}

/// `path`, opened and locked shared (with other shared holders) until dropped.
fn shared_lock_file(path: &Path) -> fs::File {
    open_locked(path, fs::File::lock_shared)
}

fn open_locked(path: &Path, lock: fn(&fs::File) -> std::io::Result<()>) -> fs::File {
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    lock(&file).unwrap_or_else(|e| panic!("cannot lock {}: {e}", path.display()));
    file
}

/// Runs `command` to its end; its output. Panics with its stderr, saying it tried to `what`,
/// if it fails.
pub fn run(command: &mut Command, what: &str) -> Output {
    let output = command.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("cannot {what}: {e}; {INSTALL}"));
    assert!(
        output.status.success(),
        "cannot {what} ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// `name` in PATH or the sbin folders; panics with what to install if it is not there.
pub fn find_program(name: &str) -> PathBuf {
    which(name).unwrap_or_else(|| panic!("`{name}` was not found: {INSTALL}"))
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", path.display()));
}

/// `kill -SIGNAL PID`, whatever happens.
fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).stderr(Stdio::null()).status();
}

/// `/proc/PID/ns/net`: `net:[INODE]`.
fn netns_of(pid: u32) -> Option<String> {
    fs::read_link(format!("/proc/{pid}/ns/net")).ok().map(|p| p.to_string_lossy().into_owned())
}

/// Whether `pid` is a live process (not gone, not a zombie).
pub fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "PID (COMM) STATE …": COMM may hold spaces and parentheses.
        Ok(stat) => stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()) != Some("Z"),
        Err(_) => false,
    }
}

/// The live processes in the network namespace `id` (`net:[INODE]`), as (pid, command name).
pub fn processes_in_netns(id: &str) -> Vec<(u32, String)> {
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| netns_of(pid).as_deref() == Some(id) && alive(pid))
        .map(|pid| (pid, fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_string()))
        .collect()
}

/// Polls `done` every 20 ms for at most `within`; whether it became true. Says so on stderr
/// if not, naming `what` it waited for.
fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < within {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let done = done();
    if !done {
        eprintln!("realvm: waited {within:?} in vain for {what}");
    }
    done
}
