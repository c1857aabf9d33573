//! Real virtual machines for the libvirt fabric's tests: two (or more) libvirt "sites"
//! with QEMU/TCG guests, all inside a network namespace the test makes. Needs root and the
//! packages `scripts/install-realvm.sh` installs; without them `RealSites::start` panics
//! saying what is missing (the tests fail, they are never skipped).
//!
//! ```text
//! let sites = RealSites::start(&["a", "b"]);
//! let guest = sites.define_guest("a", "web1", "52:54:00:77:01:01", "net-a");
//! sites.start_guest(&guest);
//! let counter = sites.wait_counter(&guest.ip, 5, Duration::from_secs(40));
//! sites.shutdown_guest(&guest);
//! let last = assert_contiguous(&read_sequence(&guest.disk));
//! ```
//!
//! # Why a network namespace
//! Guests need bridges, taps, addresses and a DHCP server, and none of that may appear in
//! the machine's own network namespace. A holder process (`unshare --net -- sleep`) owns a
//! fresh namespace (`netns_pid`); every site's libvirtd runs joined to it, so the bridges,
//! taps, dnsmasq and QEMU live there, and the test reaches guests only through commands
//! run inside it (`netns_command`, `http_get`, `wait_counter`). When the holder and
//! everything in the namespace have ended, the namespace is gone.
//!
//! # Layout
//! - `ROOT` = a temporary folder `/tmp/drplan-realvm-XXXX` (0755: QEMU runs as
//!   `libvirt-qemu`). Site `S` has `ROOT/S/{run,lib,etc,log,cache}`, bound over
//!   `/run/libvirt`, `/var/lib/libvirt`, `/etc/libvirt`, `/var/log/libvirt` and
//!   `/var/cache/libvirt` in the site's own mount namespace, where its `virtlogd` and
//!   `libvirtd` run (pid files in `run/`; libvirtd's output in `log/libvirtd.out`; QEMU's
//!   per-domain log in `log/qemu/NAME.log`). `etc/` is a copy of `/etc/libvirt` without
//!   the host's domains and networks, and `qemu.conf` has `cgroup_controllers = [ ]` (two
//!   daemons share the cgroup tree). `cache/` is a copy of QEMU's capabilities, probed once
//!   per machine into `target/realvm-guest/libvirt-cache` (a site starts in ~0.2 s).
//! - `dir(S)` = `ROOT/S/images`: the site's copies of the guest kernel and initramfs, the
//!   guests' qcow2 disks (`NAME.qcow2`) and serial consoles (`NAME.console.log`).
//! - URI of site S: `uri(S)` = `qemu+unix:///system?socket=ROOT/S/run/libvirt-sock`
//!   (usable from the test's own namespaces: it is a file path).
//! - Sites apart (`start_apart`): each site is a host of its own. `ROOT/S/host` is a tmpfs
//!   mounted in the site's mount namespace only (its points: `storage(S)` =
//!   `ROOT/S/host/replicas`), and an sshd runs there on 127.0.0.1I:22 (I = 10 + the
//!   site's index), letting in the test's key. drplan gets `site_uri(S)` =
//!   `qemu+ssh://root@127.0.0.1I/system?command=ROOT/ssh/ssh`, the wrapper keeping the
//!   sites' host keys in `ROOT/ssh/known_hosts`; `on_host(S, script)` runs a command as
//!   that host sees its files.
//!
//! # Network
//! The i-th site (from 1) has libvirt network `net-S` on bridge `virbr-S`, 10.77.i.0/24,
//! gateway 10.77.i.1, `<forward mode='open'/>` (no firewall rules; forwarding is on in the
//! namespace, so guests of different sites can reach each other), no DNS, DHCP range
//! .100-.199. Sites "a" and "b": `net-a` 10.77.1.0/24 and `net-b` 10.77.2.0/24.
//! `define_guest` reserves the next address from .10 (`reserve_ip`: `virsh net-update NET
//! add ip-dhcp-host … --live --config`) and names the guest's tap `vt-S-N` (two daemons
//! in one namespace would race for `vnetN`). A replica the fabric defines needs its own
//! reservation (`reserve_ip`) and its own `<target dev=…/>`.
//!
//! # The guest
//! Built once per machine (`target/realvm-guest/HASH/initrd.gz`, under a lock): the
//! installed Debian kernel booted directly (`console=ttyS0 … site=S` on its command line)
//! with a busybox initramfs whose init is `guest-init.sh`. Domain: `type='qemu'` (TCG;
//! KVM guests hang here), 256 MiB, 1 vCPU, the qcow2 disk as virtio `vda`, a virtio NIC,
//! the qemu-guest-agent channel, the serial console to `dir(S)/NAME.console.log`
//! (`consoles()` shows them in failure messages). It boots in ~8 s to an answering HTTP
//! port. In the guest:
//! - DHCP on eth0 (udhcpc): the address is the network's reservation for its MAC.
//! - qemu-ga runs (`virsh qemu-agent-command`, `domifaddr --source agent` work); its
//!   shutdown runs `/sbin/shutdown`, which syncs and powers off. Its fsfreeze hook
//!   (`fsfreeze-hook.sh`) is the application quiescing: `virsh domfsfreeze` pauses the
//!   sequence writer between two records until `domfsthaw`, logged in `/freezes`. The ACPI power button
//!   powers off too: `virsh shutdown` takes ~1.5 s.
//! - The sequence writer, on the raw disk (no filesystem): record N (`seq=N time=T
//!   site=S`, padded to 512 bytes) in sector N+1, the latest also in sector 0, each synced,
//!   about every 100 ms. At boot it resumes after sector 0's record, so a guest booted
//!   from a replica continues its source's sequence (its records say the new `site=`).
//! - busybox httpd on port 80: `/counter` (the last record written), `/site` (from the
//!   kernel command line), `/resumed` (the first number this boot writes), `/ip`.
//! - `read_sequence(disk)` reads a disk offline (`qemu-img convert`); `assert_contiguous`
//!   checks it is 0, 1, 2, … and gives the last: a replica without a gap, the data loss
//!   (last counter read − last on the replica).

mod cli;
mod consistency;
mod crash;
mod dns_follows;
mod failback_resume;
mod failover;
mod group;
mod guest;
mod harness;
mod harness_smoke;
mod hosts;
mod learning;
mod left_behind;
mod resume;
mod service;
mod site;
mod unplanned;
mod way_back;

pub use guest::{Record, assert_contiguous, read_latest, read_records, read_sequence};
pub use harness::{Cpus, GuestHandle, RealSites, alive, missing, processes_in_netns, require};
