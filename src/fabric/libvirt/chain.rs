//! A protected VM's recovery points at the target, as qcow2 image chains: one file per
//! point and disk, each point's file backed by the one before, the oldest a full copy.
//! A failover boots a throwaway overlay on the chosen point's file, so points are never
//! written by a replica; retention (R2) merges the oldest point into the next.
//!
//! Crash safety, step by step: an incremental copy lands in a new file that nothing
//! references until its point is recorded; pruning first forgets the oldest point, then
//! merges it into the next one's file, and replaces the next one's file by the merged
//! image with one `rename` (atomic): at every instant each recorded point reads as it
//! was taken.
//!
//! The way back (R36) may root a chain on a disk that was not copied: after a planned
//! failover the passive side's disk already holds the shutdown instant, so the chain's
//! first point is that disk (the replica's overlay, adopted by a rename) or an empty
//! overlay on it (the VM's own disk, which stays where its domain expects it). Files
//! are therefore removed only when no kept file is backed by them.
//!
//! The files are on the target site's host (`Host`): this machine, or another one
//! reached over ssh; every operation here runs there.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::host::Host;
use super::tools::ToolError;

/// How long writing a point into the VM's own disk waits for another writer of that disk
/// to let go of it (a qemu-img that a killed drplan started) before it fails.
const WRITER_WAIT: Duration = Duration::from_secs(300);

/// The folder of one VM's chain at the target: `STORAGE/VM/` on the target's host.
#[derive(Debug, Clone, PartialEq)]
pub struct Chain {
    host: Host,
    dir: PathBuf,
}

fn path_arg(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

impl Chain {
    pub fn new(host: Host, storage: &Path, vm: &str) -> Chain {
        Chain { host, dir: storage.join(vm) }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn host(&self) -> &Host {
        &self.host
    }

    pub async fn create_dir(&self) -> Result<(), ToolError> {
        self.host.create_dir(&self.dir).await
    }

    /// Removes one file of the chain's host; one not there is fine.
    pub async fn remove(&self, file: &Path) -> Result<(), ToolError> {
        self.host.remove(file).await
    }

    pub async fn exists(&self, file: &Path) -> Result<bool, ToolError> {
        self.host.exists(file).await
    }

    /// The image of point `seq` for disk `disk` (a target name such as `vda`).
    pub fn point_file(&self, seq: u64, disk: &str) -> PathBuf {
        self.dir.join(format!("point-{seq:08}-{disk}.qcow2"))
    }

    /// The disk a replica of `replica` boots from: an overlay over a point.
    pub fn overlay_file(&self, replica: &str, disk: &str) -> PathBuf {
        self.dir.join(format!("{replica}-{disk}.qcow2"))
    }

    /// Links the incremental copy just made for point `seq` onto point `previous`: the copy
    /// holds only the clusters that changed, so it reads as the whole disk once its
    /// backing file is the previous point.
    pub async fn link(&self, seq: u64, previous: u64, disk: &str) -> Result<(), ToolError> {
        let file = path_arg(&self.point_file(seq, disk));
        let backing = path_arg(&self.point_file(previous, disk));
        self.host.qemu_img(&["rebase", "-u", "-f", "qcow2", "-b", &backing, "-F", "qcow2", &file]).await.map(drop)
    }

    /// R2: merges point `oldest` (the chain's base) into point `next`. The caller has
    /// already forgotten `oldest`.
    pub async fn merge_oldest(&self, oldest: u64, next: u64, disk: &str) -> Result<(), ToolError> {
        let base = self.point_file(oldest, disk);
        let top = self.point_file(next, disk);
        // -d: leave `next`'s file as it is; the merged base replaces it below.
        self.host.qemu_img(&["commit", "-q", "-d", "-f", "qcow2", &path_arg(&top)]).await?;
        self.host.rename(&base, &top).await
    }

    /// A new overlay on point `seq` for a replica to boot from; an old one is replaced.
    pub async fn overlay(&self, seq: u64, replica: &str, disk: &str) -> Result<PathBuf, ToolError> {
        let overlay = self.overlay_file(replica, disk);
        self.host.remove(&overlay).await?;
        let backing = self.point_file(seq, disk);
        self.create_overlay(&backing, &overlay).await?;
        Ok(overlay)
    }

    /// Removes the files of points after `last`: what a copy cut off by a crash left.
    /// Older files are never removed here: a kept point's file may be backed by them.
    pub async fn remove_files_after(&self, last: u64) {
        for name in self.host.list(&self.dir).await {
            if point_seq(&name).is_some_and(|seq| seq > last) {
                let file = self.dir.join(&name);
                tracing::debug!(file = %file.display(), "removing the file of a copy that never finished");
                let _ = self.host.remove(&file).await;
            }
        }
    }

    /// Removes the files of points not in `keep`, and overlays not in `overlays`: what a
    /// copy cut off by a crash, or a removed replica, left behind. A file a kept one is
    /// backed by stays, whatever its name (the root of a chain of the way back).
    pub async fn remove_files_except(&self, keep: &[u64], overlays: &[PathBuf]) {
        let names = self.host.list(&self.dir).await;
        let mut needed: Vec<PathBuf> = Vec::new();
        for name in &names {
            let path = self.dir.join(name);
            let kept = match point_seq(name) {
                Some(seq) => keep.contains(&seq) && !name.ends_with(".part"),
                None => overlays.contains(&path),
            };
            if kept {
                needed.extend(self.backing_chain(&path).await);
            }
        }
        for name in names {
            let path = self.dir.join(&name);
            let kept = needed.contains(&path) || !(name.ends_with(".qcow2") || name.ends_with(".part"));
            if !kept {
                tracing::debug!(file = %path.display(), "removing a replica file no point uses");
                let _ = self.host.remove(&path).await;
            }
        }
    }

    /// R36: the first point of a chain of the way back, `seq`, holding what `disk` of the
    /// passive side holds: `own`, an image the passive side keeps at the shutdown instant.
    /// An image of this chain's folder (a replica's overlay nothing runs on any more) is
    /// adopted by a rename; any other (the VM's own disk, which its domain boots from
    /// later) is left where it is, under an empty overlay. Done again after a crash, it
    /// finds the rename done or makes the overlay again.
    pub async fn root_on(&self, seq: u64, disk: &str, own: &Path) -> Result<PathBuf, ToolError> {
        let point = self.point_file(seq, disk);
        if own.parent() == Some(self.dir.as_path()) {
            if self.host.exists(own).await? {
                self.host.rename(own, &point).await?;
            } else if !self.host.exists(&point).await? {
                return Err(ToolError::Failed {
                    command: format!("adopt {}", own.display()),
                    stderr: "the image is gone: the reprotect needs a full copy (unprotect, then protect)".into(),
                });
            }
            return Ok(point);
        }
        self.host.remove(&point).await?;
        self.create_overlay(own, &point).await?;
        Ok(point)
    }

    /// A new, empty qcow2 image `overlay` reading through to `backing`.
    async fn create_overlay(&self, backing: &Path, overlay: &Path) -> Result<(), ToolError> {
        let (backing, overlay) = (path_arg(backing), path_arg(overlay));
        self.host.qemu_img(&["create", "-q", "-f", "qcow2", "-b", &backing, "-F", "qcow2", &overlay]).await.map(drop)
    }

    /// R37, R38: writes point `seq`'s image of `disk` into `own`, the VM's own disk at its
    /// original site, which its domain then boots from. A chain rooted on `own` (a delta
    /// reprotect) is committed down into it: only the clusters the way back changed are
    /// written, and the point's own file stays readable (the points below it do not: the
    /// caller forgets them). A chain of full copies is converted into it whole. Both can
    /// be done again after a crash, as long as nothing ran on `own` since.
    pub async fn write_into(&self, seq: u64, disk: &str, own: &Path) -> Result<(), ToolError> {
        let point = path_arg(&self.point_file(seq, disk));
        let own_arg = path_arg(own);
        let args: &[&str] = if self.backing_chain(&self.point_file(seq, disk)).await.iter().any(|p| p == own) {
            &["commit", "-q", "-f", "qcow2", "-b", &own_arg, &point]
        } else {
            &["convert", "-n", "-f", "qcow2", "-O", "qcow2", &point, &own_arg]
        };
        // A drplan killed in this write leaves its qemu-img writing on: the resume writes
        // the same point again once that one lets go of the image.
        let started = Instant::now();
        loop {
            match self.host.qemu_img(args).await {
                Err(e) if e.stderr().contains("Failed to get \"write\" lock") && started.elapsed() < WRITER_WAIT => {
                    if started.elapsed() < Duration::from_secs(1) {
                        tracing::info!(image = %own.display(), "another writer holds the VM's own disk; waiting for it");
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                written => return written.map(drop),
            }
        }
    }

    /// What the files of point `seq` occupy on disk, and their disks' size: what a copy
    /// moved (a delta copy holds only the clusters that changed) against a whole copy.
    pub async fn point_usage(&self, seq: u64, disks: &[String]) -> (u64, u64) {
        let (mut used, mut size) = (0, 0);
        for disk in disks {
            let file = self.point_file(seq, disk);
            used += self.host.allocated(&file).await.unwrap_or(0);
            size += self.header(&file).await.map_or(0, |h| h.size);
        }
        (used, size)
    }

    /// The header of the qcow2 image at `path` on the chain's host.
    async fn header(&self, path: &Path) -> Option<Qcow2Header> {
        let head = self.host.read_head(path, HEADER_READ).await?;
        match parse_qcow2_header(path, &head)? {
            Parsed::Header(header) => Some(header),
            // The backing file's name lies past the first read: read up to its end.
            Parsed::NeedsBytes(len) => match parse_qcow2_header(path, &self.host.read_head(path, len).await?)? {
                Parsed::Header(header) => Some(header),
                Parsed::NeedsBytes(_) => None,
            },
        }
    }

    /// `path` and the images it is backed by, top first (bounded: a loop is not followed).
    async fn backing_chain(&self, path: &Path) -> Vec<PathBuf> {
        let mut chain = vec![path.to_path_buf()];
        while chain.len() < 4096 {
            let Some(last) = chain.last() else { break };
            match self.header(last).await.and_then(|h| h.backing) {
                Some(next) if !chain.contains(&next) => chain.push(next),
                _ => break,
            }
        }
        chain
    }
}

/// The point a chain file belongs to, from its name (`point-SEQ-…`).
fn point_seq(name: &str) -> Option<u64> {
    name.strip_prefix("point-").and_then(|rest| rest.get(..8)?.parse::<u64>().ok())
}

/// What is read of an image first: the header and, nearly always, its backing file's name.
const HEADER_READ: usize = 4096;

/// What drplan reads of a qcow2 image's header: its virtual size and backing file.
struct Qcow2Header {
    size: u64,
    backing: Option<PathBuf>,
}

enum Parsed {
    Header(Qcow2Header),
    /// The header says more bytes must be read.
    NeedsBytes(usize),
}

/// Parses the start of the qcow2 image at `path` (`None`: not a qcow2 image). A relative
/// backing file is relative to the image's folder, as QEMU reads it.
fn parse_qcow2_header(path: &Path, head: &[u8]) -> Option<Parsed> {
    if head.len() < 32 || &head[..4] != b"QFI\xfb" {
        return None;
    }
    let offset = u64::from_be_bytes(head[8..16].try_into().ok()?) as usize;
    let length = u32::from_be_bytes(head[16..20].try_into().ok()?) as usize;
    let size = u64::from_be_bytes(head[24..32].try_into().ok()?);
    let backing = if offset == 0 || length == 0 || length > 4096 || offset > 1 << 20 {
        None
    } else if head.len() < offset + length {
        return Some(Parsed::NeedsBytes(offset + length));
    } else {
        let name = PathBuf::from(String::from_utf8(head[offset..offset + length].to_vec()).ok()?);
        Some(if name.is_absolute() { name } else { path.parent()?.join(name) })
    };
    Some(Parsed::Header(Qcow2Header { size, backing }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn point_files_sort_in_point_order_and_name_their_disk() {
        let chain = Chain::new(Host::Local, Path::new("/srv/replicas"), "app01");
        assert_eq!(chain.point_file(7, "vda"), PathBuf::from("/srv/replicas/app01/point-00000007-vda.qcow2"));
        assert!(chain.point_file(9, "vda") < chain.point_file(10, "vda"));
        assert_eq!(chain.overlay_file("app01-test", "vdb"), PathBuf::from("/srv/replicas/app01/app01-test-vdb.qcow2"));
    }

    #[tokio::test]
    async fn leftovers_are_removed_and_kept_points_stay() {
        let dir = tempfile::tempdir().unwrap();
        let chain = Chain::new(Host::Local, dir.path(), "vm");
        chain.create_dir().await.unwrap();
        for name in [
            "point-00000001-vda.qcow2",
            "point-00000002-vda.qcow2",
            "point-00000003-vda.qcow2",
            "vm-test-vda.qcow2",
            "point-00000002-vda.qcow2.part",
            "notes.txt",
        ] {
            std::fs::write(chain.dir().join(name), b"x").unwrap();
        }
        chain.remove_files_except(&[2], &[]).await;
        let mut left: Vec<String> = std::fs::read_dir(chain.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["notes.txt", "point-00000002-vda.qcow2"]);
    }

    /// The start of a qcow2 image of `size` bytes backed by `backing`, as QEMU writes it.
    fn qcow2(path: &Path, size: u64, backing: Option<&str>) {
        let mut header = Vec::new();
        header.extend(b"QFI\xfb");
        header.extend(3u32.to_be_bytes());
        let offset: u64 = if backing.is_some() { 112 } else { 0 };
        header.extend(offset.to_be_bytes());
        header.extend((backing.map_or(0, str::len) as u32).to_be_bytes());
        header.extend(16u32.to_be_bytes());
        header.extend(size.to_be_bytes());
        header.resize(112, 0);
        header.extend(backing.unwrap_or_default().as_bytes());
        std::fs::write(path, header).unwrap();
    }

    #[tokio::test]
    async fn r36_a_file_a_kept_point_is_backed_by_stays_whatever_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let chain = Chain::new(Host::Local, dir.path(), "vm");
        chain.create_dir().await.unwrap();
        let own = dir.path().join("own-disk.qcow2");
        qcow2(&own, 64 << 20, None);
        // An old point, the replica overlay adopted as point 5 on it, point 6 on that.
        qcow2(&chain.point_file(2, "vda"), 64 << 20, None);
        qcow2(&chain.point_file(5, "vda"), 64 << 20, Some(&chain.point_file(2, "vda").to_string_lossy()));
        qcow2(&chain.point_file(6, "vda"), 64 << 20, Some("point-00000005-vda.qcow2"));
        qcow2(&chain.point_file(1, "vda"), 64 << 20, None);
        assert_eq!(
            chain.backing_chain(&chain.point_file(6, "vda")).await,
            [chain.point_file(6, "vda"), chain.point_file(5, "vda"), chain.point_file(2, "vda")],
            "a relative backing file is read from the image's folder"
        );
        chain.remove_files_except(&[6], &[]).await;
        assert!(chain.point_file(2, "vda").exists() && chain.point_file(5, "vda").exists());
        assert!(!chain.point_file(1, "vda").exists(), "what nothing kept needs goes");
        assert_eq!(
            chain.point_usage(6, &["vda".to_string()]).await.1,
            64 << 20,
            "the disk's size is read from the header"
        );
        assert!(own.exists(), "nothing outside the chain's folder is touched");
    }

    #[tokio::test]
    async fn a_file_that_is_not_qcow2_has_no_backing_chain() {
        let dir = tempfile::tempdir().unwrap();
        let chain = Chain::new(Host::Local, dir.path(), "vm");
        let raw = dir.path().join("disk.raw");
        std::fs::write(&raw, [0u8; 512]).unwrap();
        assert_eq!(chain.backing_chain(&raw).await, vec![raw]);
        assert!(chain.header(&dir.path().join("missing")).await.is_none());
    }

    /// Needs qemu-img and qemu-io (qemu-utils; scripts/install-realvm.sh installs them).
    #[tokio::test]
    async fn r37_writing_home_waits_for_a_writer_a_killed_drplan_left_on_the_vms_own_disk() {
        let dir = tempfile::tempdir().unwrap();
        let chain = Chain::new(Host::Local, dir.path(), "vm");
        chain.create_dir().await.unwrap();
        let own = dir.path().join("own.qcow2");
        for image in [chain.point_file(1, "vda"), own.clone()] {
            chain.host.qemu_img(&["create", "-q", "-f", "qcow2", &path_arg(&image), "16M"]).await.expect("qemu-utils");
        }
        // qemu-io holds the write lock on the own disk until its input ends.
        let mut writer = std::process::Command::new("qemu-io")
            .args(["-f", "qcow2", &path_arg(&own)])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("qemu-io (qemu-utils)");
        // Opened (and so locked) once the image is among its files; asking QEMU instead
        // could take a lock in the way of qemu-io's.
        let fds = PathBuf::from(format!("/proc/{}/fd", writer.id()));
        let opened = || {
            std::fs::read_dir(&fds)
                .into_iter()
                .flatten()
                .flatten()
                .any(|fd| fd.path().canonicalize().ok() == own.canonicalize().ok())
        };
        let held = Instant::now();
        while !opened() {
            assert!(writer.try_wait().unwrap().is_none(), "qemu-io ended");
            assert!(held.elapsed() < Duration::from_secs(60), "qemu-io never opened the disk");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // It locks the image just after opening it.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(writer.try_wait().unwrap().is_none(), "qemu-io holds the disk");
        let input = writer.stdin.take();
        let release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            drop(input);
        });
        let started = Instant::now();
        chain.write_into(1, "vda", &own).await.expect("written once the other writer let go");
        assert!(started.elapsed() >= Duration::from_millis(1000), "it waited: {:?}", started.elapsed());
        release.await.unwrap();
        writer.wait().unwrap();
    }

    #[test]
    fn a_backing_name_past_the_first_read_asks_for_more() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("top.qcow2");
        qcow2(&image, 1 << 30, Some("base.qcow2"));
        let whole = std::fs::read(&image).unwrap();
        assert!(matches!(parse_qcow2_header(&image, &whole[..64]), Some(Parsed::NeedsBytes(122))));
        let Some(Parsed::Header(header)) = parse_qcow2_header(&image, &whole) else { panic!("a header") };
        assert_eq!((header.size, header.backing), (1 << 30, Some(dir.path().join("base.qcow2"))));
    }
}
