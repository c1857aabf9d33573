//! What makes a plan behave as it does, as one hash: `resume` refuses to continue a run
//! whose plan changed under it (a resumed run must run the plan it started with).

use std::path::{Path, PathBuf};

use crate::plan::config::{CONFIG_FILE, parse_config};

/// A file the fingerprint needs and cannot read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {path}: {source}")]
pub struct Unreadable {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// FNV-1a over what makes the plan's behaviour: the plan file, its folder's
/// `drplan.toml` and the global hook scripts it names. `resume` refuses to continue a run
/// whose plan changed under it. The site file may change (fixing the cause of a failure
/// often means editing it); it is read and checked again.
pub fn fingerprint(plan: &Path) -> Result<String, Unreadable> {
    let read = |path: &Path| std::fs::read(path).map_err(|source| Unreadable { path: path.to_path_buf(), source });
    let mut files = vec![read(plan)?];
    let folder = plan.parent().unwrap_or(Path::new("."));
    let config = folder.join(CONFIG_FILE);
    if config.exists() {
        let text = read(&config)?;
        let parsed = parse_config(&String::from_utf8_lossy(&text), &config);
        for hook in parsed.map(|c| c.hooks).unwrap_or_default() {
            files.push(read(&folder.join(hook)).unwrap_or_default());
        }
        files.push(text);
    }
    let hash = files
        .iter()
        .flat_map(|f| f.iter().chain(&[0u8]))
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3));
    Ok(format!("{hash:016x}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plan folder: a plan, a `drplan.toml` naming one hook script, and a site file.
    fn folder() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        std::fs::create_dir(dir.path().join("hooks")).unwrap();
        write("plan.rhai", "let plan = recovery_plan(\"p\", #{ source: \"a\", target: \"b\" });\nplan\n");
        write(CONFIG_FILE, "[hooks]\nscripts = [\"hooks/notify.rhai\"]\n");
        write("hooks/notify.rhai", "on(\"run.succeeded\", |ev| log(\"done\"));\n");
        write("site.toml", "# the site\n");
        dir
    }

    #[test]
    fn a_changed_hook_script_changes_the_fingerprint_and_the_site_file_does_not_count() {
        let dir = folder();
        let plan = dir.path().join("plan.rhai");
        let first = fingerprint(&plan).unwrap();
        assert_eq!(fingerprint(&plan).unwrap(), first, "the same files, the same fingerprint");

        std::fs::write(dir.path().join("site.toml"), "# the site, fixed\n").unwrap();
        assert_eq!(fingerprint(&plan).unwrap(), first, "the site file may change under a run");

        std::fs::write(dir.path().join("hooks/notify.rhai"), "on(\"run.failed\", |ev| log(\"failed\"));\n").unwrap();
        assert_ne!(fingerprint(&plan).unwrap(), first, "a hook script is part of the plan");
    }

    #[test]
    fn a_missing_plan_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = fingerprint(&dir.path().join("gone.rhai")).unwrap_err();
        assert!(err.path.ends_with("gone.rhai"), "{err}");
    }
}
