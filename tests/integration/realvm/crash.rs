//! Replication that survives crashes and a full disk (R2, R4, R15): `drplan replicate`
//! killed with SIGKILL at seeded random moments of its cycles, and the source's QEMU
//! killed, never leave a corrupt or half point (`qemu-img check`, the guest's sequence
//! numbers), and the next cycle goes on by itself; a full target disk is a clear error in
//! `status`, loses no point, and replication resumes when space returns.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::RealSites;
use super::cli::{AppVm, PLAN, committed, point_images, running_guest, site_file};
use crate::util::Workdir;

/// Trials per run; each either kills drplan or (every fifth) the guest's QEMU.
const TRIALS: u64 = 10;

/// The trials' seed: `DRPLAN_CRASH_SEED` to replay a failure, else a fixed one (printed).
fn seed() -> u64 {
    std::env::var("DRPLAN_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_0d15_c0de)
}

/// A small deterministic generator (splitmix64): the same seed, the same moments.
struct Moments(u64);

impl Moments {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n
    }
}

/// Whether images of a copy cut off may still lie beside the points.
#[derive(Clone, Copy, PartialEq)]
enum Leftovers {
    /// Right after a kill: the cut-off copy's image, never listed, until the next cycle.
    Allowed,
    /// After a cycle: every image is a listed point.
    Cleared,
}

/// Every point of `vm` is sound: each listed point's image clean by `qemu-img check`,
/// each holding a contiguous sequence that never goes backwards from one point to the
/// next. The last point's last record. Points are never merged in these tests, so the
/// listed ones are the images with the lowest numbers; a cut-off copy's are above them.
fn assert_points_sound(work: &Workdir, folder: &Path, vm: &str, leftovers: Leftovers, context: &str) -> u64 {
    let listed = work.run(&["points", vm]).ok().stdout;
    let count: usize = listed.split_whitespace().next().unwrap().parse().unwrap_or(0);
    let images = point_images(folder);
    match leftovers {
        Leftovers::Allowed => assert!(images.len() >= count, "a listed point has no image ({context})\n{listed}"),
        Leftovers::Cleared => {
            assert_eq!(images.len(), count, "every image is a listed point and no more ({context})\n{listed}")
        }
    }
    let mut last = 0;
    for (seq, image) in &images[..count] {
        let check = Command::new("qemu-img").args(["check", "-q"]).arg(image).output().expect("run qemu-img check");
        assert!(
            check.status.success(),
            "point {seq} is not clean ({context}): {}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        let held = committed(image);
        assert!(held >= last, "point {seq} holds {held}, before the previous point's {last} ({context})");
        last = held;
    }
    last
}

/// The pid of the QEMU running `domain` at `site`.
fn qemu_pid(sites: &RealSites, domain: &str) -> u32 {
    let what = format!("qemu {domain}");
    sites.processes().into_iter().find(|(w, _)| *w == what).map(|(_, pid)| pid).unwrap_or_else(|| panic!("no {what}"))
}

#[test]
fn r4_r15_replication_killed_at_seeded_moments_never_leaves_a_corrupt_or_half_point() {
    let began = Instant::now();
    let seed = seed();
    eprintln!("crash trials: seed {seed} (DRPLAN_CRASH_SEED={seed} replays them)");
    let sites = RealSites::start(&["a", "b"]);
    let app = running_guest(&sites, "app01", "52:54:00:77:01:51");
    sites.wait_counter(&app.ip, 5, Duration::from_secs(90));
    let work = Workdir::with_site(&site_file(&sites, &[AppVm::new("app01", &app.ip, "10.77.2.50")])).plan(PLAN);
    let folder = sites.dir("b").join("replicas").join("app01");
    work.run(&["protect", "app01", "--policy", "gold", "--yes"]).ok();
    work.run(&["replicate", "--once"]).ok();

    let mut moments = Moments(seed);
    let (mut cut_off, mut full_after_qemu) = (0, 0);
    for trial in 0..TRIALS {
        let kill_qemu = trial % 5 == 4;
        // A cycle of this guest takes 0.4-0.8 s after drplan's start.
        let delay = Duration::from_millis(moments.below(600));
        let mut cycle = work.drplan(["replicate", "--once"]).spawn();
        std::thread::sleep(delay);
        let running = cycle.try_wait().is_none();
        cut_off += usize::from(running);
        let what = if kill_qemu {
            let pid = qemu_pid(&sites, "app01");
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            // The cycle ends by itself, its copy failed or done; the guest is started again.
            let _ = cycle.wait();
            let off = super::cli::poll(Duration::from_secs(30), || sites.domstate(&app) != "running");
            assert!(off, "libvirt never saw its QEMU killed");
            sites.start_guest(&app);
            sites.wait_counter(&app.ip, 1, Duration::from_secs(90));
            "the guest's QEMU"
        } else {
            cycle.kill();
            "drplan replicate"
        };
        let context = format!("trial {trial}: {what} killed after {delay:?}, the cycle running: {running}");
        let before = assert_points_sound(&work, &folder, "app01", Leftovers::Allowed, &format!("{context}, at once"));

        let next = work.run(&["replicate", "--once"]).ok();
        if kill_qemu {
            // QEMU keeps a checkpoint's bitmap in memory until it stops cleanly: killed, it
            // is lost, and the copy after it is full (never an error).
            assert!(next.stderr.contains("full copy"), "the bitmap died with QEMU: {context}\n{}", next.stderr);
            full_after_qemu += 1;
        } else {
            assert!(next.stderr.contains("incremental copy"), "the checkpoint survived: {context}\n{}", next.stderr);
        }
        let after = assert_points_sound(&work, &folder, "app01", Leftovers::Cleared, &context);
        assert!(after >= before, "{context}");
        eprintln!("{context}: next cycle {}", next.stderr.lines().find(|l| l.contains("point")).unwrap_or("?"));
    }
    let status = work.run(&["status", "--wide"]).ok().stdout;
    assert!(!status.contains("failed"), "{status}");
    eprintln!(
        "{TRIALS} trials, {cut_off} cut a cycle off, {full_after_qemu} full copies after QEMU was killed; {:.1} s",
        began.elapsed().as_secs_f64()
    );
    assert!(cut_off >= TRIALS as usize / 2, "most kills must land inside a cycle to test anything");
}

/// A tmpfs of `size` at a fresh folder, mounted before the sites start so that their
/// daemons' mount namespaces see it too; unmounted when dropped.
struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let dir = std::env::temp_dir().join(format!("drplan-small-disk-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0777"), "drplan-small-disk"])
            .arg(&dir)
            .status()
            .expect("run mount");
        assert!(status.success(), "cannot mount a tmpfs at {}", dir.display());
        SmallDisk { dir }
    }

    /// Takes all the free space with a filler file.
    fn take_space(&self) {
        let filler = format!("of={}", self.dir.join("filler").display());
        let _ = Command::new("dd").args(["if=/dev/zero", "bs=64k", &filler]).output();
    }

    fn give_space_back(&self) {
        std::fs::remove_file(self.dir.join("filler")).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        let _ = std::fs::remove_dir(&self.dir);
    }
}

#[test]
fn r15_a_full_target_disk_is_a_clear_error_loses_no_point_and_replication_resumes_when_space_returns() {
    let disk = SmallDisk::mount("96m");
    let sites = RealSites::start(&["a", "b"]);
    let app = running_guest(&sites, "app01", "52:54:00:77:01:52");
    sites.wait_counter(&app.ip, 5, Duration::from_secs(90));
    let site = site_file(&sites, &[AppVm::new("app01", &app.ip, "10.77.2.50")]);
    let storage = sites.dir("b").join("replicas");
    let site =
        site.replace(&format!("storage = \"{}\"", storage.display()), &format!("storage = \"{}\"", disk.dir.display()));
    assert!(site.contains(&disk.dir.display().to_string()), "{site}");
    let work = Workdir::with_site(&site).plan(PLAN);
    let folder = disk.dir.join("app01");
    work.run(&["protect", "app01", "--policy", "gold", "--yes"]).ok();
    work.run(&["replicate", "--once"]).ok();
    let held = assert_points_sound(&work, &folder, "app01", Leftovers::Cleared, "after the full copy");

    disk.take_space();
    sites.wait_counter(&app.ip, held + 10, Duration::from_secs(30));
    let failed = work.run(&["replicate", "--once"]).fails(1);
    assert!(failed.stderr.contains("No space left on device"), "{}", failed.stderr);
    let status = work.run(&["status", "--wide"]).ok().stdout;
    assert!(status.contains("last replication cycle failed") && status.contains("No space left"), "{status}");
    assert_eq!(
        assert_points_sound(&work, &folder, "app01", Leftovers::Allowed, "while the disk is full"),
        held,
        "no point lost"
    );

    disk.give_space_back();
    let back = work.run(&["replicate", "--once"]).ok();
    assert!(back.stderr.contains("point 2: incremental copy"), "{}", back.stderr);
    assert!(assert_points_sound(&work, &folder, "app01", Leftovers::Cleared, "once space returned") > held);
    let status = work.run(&["status", "--wide"]).ok().stdout;
    assert!(!status.contains("failed"), "{status}");
}
