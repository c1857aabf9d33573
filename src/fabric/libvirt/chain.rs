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

use std::path::{Path, PathBuf};

use super::tools::{ToolError, qemu_img};

/// The folder of one VM's chain at the target: `STORAGE/VM/`.
#[derive(Debug, Clone, PartialEq)]
pub struct Chain {
    dir: PathBuf,
}

fn path_arg(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

impl Chain {
    pub fn new(storage: &Path, vm: &str) -> Chain {
        Chain { dir: storage.join(vm) }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn create_dir(&self) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)
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
        qemu_img(&["rebase", "-u", "-f", "qcow2", "-b", &backing, "-F", "qcow2", &file]).await.map(drop)
    }

    /// R2: merges point `oldest` (the chain's base) into point `next`. The caller has
    /// already forgotten `oldest`.
    pub async fn merge_oldest(&self, oldest: u64, next: u64, disk: &str) -> Result<(), ToolError> {
        let base = self.point_file(oldest, disk);
        let top = self.point_file(next, disk);
        // -d: leave `next`'s file as it is; the merged base replaces it below.
        qemu_img(&["commit", "-q", "-d", "-f", "qcow2", &path_arg(&top)]).await?;
        std::fs::rename(&base, &top).map_err(|e| ToolError::Failed {
            command: format!("rename {} {}", base.display(), top.display()),
            stderr: e.to_string(),
        })
    }

    /// A new overlay on point `seq` for a replica to boot from; an old one is replaced.
    pub async fn overlay(&self, seq: u64, replica: &str, disk: &str) -> Result<PathBuf, ToolError> {
        let overlay = self.overlay_file(replica, disk);
        let _ = std::fs::remove_file(&overlay);
        let backing = path_arg(&self.point_file(seq, disk));
        qemu_img(&["create", "-q", "-f", "qcow2", "-b", &backing, "-F", "qcow2", &path_arg(&overlay)]).await?;
        Ok(overlay)
    }

    /// Removes the files of points after `last`: what a copy cut off by a crash left.
    /// Older files are never removed here: a kept point's file may be backed by them.
    pub fn remove_files_after(&self, last: u64) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(seq) = name.strip_prefix("point-").and_then(|rest| rest.get(..8)?.parse::<u64>().ok())
                && seq > last
            {
                tracing::debug!(file = %entry.path().display(), "removing the file of a copy that never finished");
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// Removes the files of points not in `keep`, and overlays not in `overlays`: what a
    /// copy cut off by a crash, or a removed replica, left behind. A file a kept one is
    /// backed by stays, whatever its name (the root of a chain of the way back).
    pub fn remove_files_except(&self, keep: &[u64], overlays: &[PathBuf]) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return };
        let entries: Vec<_> = entries.flatten().collect();
        let mut needed: Vec<PathBuf> = Vec::new();
        for entry in &entries {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let kept = match name.strip_prefix("point-").and_then(|rest| rest.get(..8)?.parse::<u64>().ok()) {
                Some(seq) => keep.contains(&seq),
                None => overlays.contains(&path),
            };
            if kept {
                needed.extend(backing_chain(&path));
            }
        }
        for entry in entries {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let kept = needed.contains(&path) || !name.ends_with(".qcow2");
            if !kept {
                tracing::debug!(file = %path.display(), "removing a replica file no point uses");
                let _ = std::fs::remove_file(&path);
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
            if own.exists() {
                std::fs::rename(own, &point).map_err(|e| ToolError::Failed {
                    command: format!("rename {} {}", own.display(), point.display()),
                    stderr: e.to_string(),
                })?;
            } else if !point.exists() {
                return Err(ToolError::Failed {
                    command: format!("adopt {}", own.display()),
                    stderr: "the image is gone: the reprotect needs a full copy (unprotect, then protect)".into(),
                });
            }
            return Ok(point);
        }
        let _ = std::fs::remove_file(&point);
        let backing = path_arg(own);
        qemu_img(&["create", "-q", "-f", "qcow2", "-b", &backing, "-F", "qcow2", &path_arg(&point)]).await?;
        Ok(point)
    }

    /// R37, R38: writes point `seq`'s image of `disk` into `own`, the VM's own disk at its
    /// original site, which its domain then boots from. A chain rooted on `own` (a delta
    /// reprotect) is committed down into it: only the clusters the way back changed are
    /// written, and the point's own file stays readable (the points below it do not: the
    /// caller forgets them). A chain of full copies is converted into it whole. Both can
    /// be done again after a crash, as long as nothing ran on `own` since.
    pub async fn write_into(&self, seq: u64, disk: &str, own: &Path) -> Result<(), ToolError> {
        let point = path_arg(&self.point_file(seq, disk));
        if backing_chain(&self.point_file(seq, disk)).iter().any(|p| p == own) {
            qemu_img(&["commit", "-q", "-f", "qcow2", "-b", &path_arg(own), &point]).await.map(drop)
        } else {
            qemu_img(&["convert", "-n", "-f", "qcow2", "-O", "qcow2", &point, &path_arg(own)]).await.map(drop)
        }
    }

    /// What the files of point `seq` occupy on disk, and their disks' size: what a copy
    /// moved (a delta copy holds only the clusters that changed) against a whole copy.
    pub fn point_usage(&self, seq: u64, disks: &[String]) -> (u64, u64) {
        use std::os::unix::fs::MetadataExt;
        disks.iter().fold((0, 0), |(used, size), disk| {
            let file = self.point_file(seq, disk);
            let allocated = std::fs::metadata(&file).map(|m| m.blocks() * 512).unwrap_or(0);
            (used + allocated, size + qcow2_header(&file).map_or(0, |h| h.size))
        })
    }
}

/// What drplan reads of a qcow2 image's header: its virtual size and backing file.
struct Qcow2Header {
    size: u64,
    backing: Option<PathBuf>,
}

/// Reads the header of the qcow2 image at `path` (`None`: not a readable qcow2 image).
/// A relative backing file is relative to the image's folder, as QEMU reads it.
fn qcow2_header(path: &Path) -> Option<Qcow2Header> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path).ok()?;
    let mut header = [0u8; 32];
    file.read_exact(&mut header).ok()?;
    if &header[..4] != b"QFI\xfb" {
        return None;
    }
    let offset = u64::from_be_bytes(header[8..16].try_into().ok()?);
    let length = u32::from_be_bytes(header[16..20].try_into().ok()?) as usize;
    let size = u64::from_be_bytes(header[24..32].try_into().ok()?);
    let backing = if offset == 0 || length == 0 || length > 4096 {
        None
    } else {
        let mut name = vec![0u8; length];
        file.seek(SeekFrom::Start(offset)).ok()?;
        file.read_exact(&mut name).ok()?;
        let name = PathBuf::from(String::from_utf8(name).ok()?);
        Some(if name.is_absolute() { name } else { path.parent()?.join(name) })
    };
    Some(Qcow2Header { size, backing })
}

/// `path` and the images it is backed by, top first (bounded: a loop is not followed).
fn backing_chain(path: &Path) -> Vec<PathBuf> {
    let mut chain = vec![path.to_path_buf()];
    while chain.len() < 4096 {
        match chain.last().and_then(|last| qcow2_header(last)).and_then(|h| h.backing) {
            Some(next) if !chain.contains(&next) => chain.push(next),
            _ => break,
        }
    }
    chain
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn point_files_sort_in_point_order_and_name_their_disk() {
        let chain = Chain::new(Path::new("/srv/replicas"), "app01");
        assert_eq!(chain.point_file(7, "vda"), PathBuf::from("/srv/replicas/app01/point-00000007-vda.qcow2"));
        assert!(chain.point_file(9, "vda") < chain.point_file(10, "vda"));
        assert_eq!(chain.overlay_file("app01-test", "vdb"), PathBuf::from("/srv/replicas/app01/app01-test-vdb.qcow2"));
    }

    #[test]
    fn leftovers_are_removed_and_kept_points_stay() {
        let dir = tempfile::tempdir().unwrap();
        let chain = Chain::new(dir.path(), "vm");
        chain.create_dir().unwrap();
        for name in [
            "point-00000001-vda.qcow2",
            "point-00000002-vda.qcow2",
            "point-00000003-vda.qcow2",
            "vm-test-vda.qcow2",
            "notes.txt",
        ] {
            std::fs::write(chain.dir().join(name), b"x").unwrap();
        }
        chain.remove_files_except(&[2], &[]);
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

    #[test]
    fn r36_a_file_a_kept_point_is_backed_by_stays_whatever_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let chain = Chain::new(dir.path(), "vm");
        chain.create_dir().unwrap();
        let own = dir.path().join("own-disk.qcow2");
        qcow2(&own, 64 << 20, None);
        // An old point, the replica overlay adopted as point 5 on it, point 6 on that.
        qcow2(&chain.point_file(2, "vda"), 64 << 20, None);
        qcow2(&chain.point_file(5, "vda"), 64 << 20, Some(&chain.point_file(2, "vda").to_string_lossy()));
        qcow2(&chain.point_file(6, "vda"), 64 << 20, Some("point-00000005-vda.qcow2"));
        qcow2(&chain.point_file(1, "vda"), 64 << 20, None);
        assert_eq!(
            backing_chain(&chain.point_file(6, "vda")),
            [chain.point_file(6, "vda"), chain.point_file(5, "vda"), chain.point_file(2, "vda")],
            "a relative backing file is read from the image's folder"
        );
        chain.remove_files_except(&[6], &[]);
        assert!(chain.point_file(2, "vda").exists() && chain.point_file(5, "vda").exists());
        assert!(!chain.point_file(1, "vda").exists(), "what nothing kept needs goes");
        assert_eq!(chain.point_usage(6, &["vda".to_string()]).1, 64 << 20, "the disk's size is read from the header");
        assert!(own.exists(), "nothing outside the chain's folder is touched");
    }

    #[test]
    fn a_file_that_is_not_qcow2_has_no_backing_chain() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("disk.raw");
        std::fs::write(&raw, [0u8; 512]).unwrap();
        assert_eq!(backing_chain(&raw), vec![raw]);
        assert!(qcow2_header(&dir.path().join("missing")).is_none());
    }
}
