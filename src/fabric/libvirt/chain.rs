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
    /// copy cut off by a crash, or a removed replica, left behind.
    pub fn remove_files_except(&self, keep: &[u64], overlays: &[PathBuf]) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let kept = match name.strip_prefix("point-").and_then(|rest| rest.get(..8)?.parse::<u64>().ok()) {
                Some(seq) => keep.contains(&seq),
                None => overlays.contains(&path) || !name.ends_with(".qcow2"),
            };
            if !kept {
                tracing::debug!(file = %path.display(), "removing a replica file no point uses");
                let _ = std::fs::remove_file(&path);
            }
        }
    }
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
}
