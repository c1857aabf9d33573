//! Global hooks: the hook scripts a plan folder's `drplan.toml` lists (`[hooks]
//! scripts`), loaded for every plan of the folder — custom post-failover actions
//! (notifications, audit) that apply to all plans without being written in each.
//!
//! A hook script is Rhai run in the same sandbox as plans, with the same host API and
//! imports (the stdlib, the plan's folder), plus `on(event, closure)`, which registers a
//! hook exactly as `plan.on(...)` does; its value is ignored, and `recovery_plan(...)`
//! is an error in it. Its hooks come after the plan's own, script by script in the order
//! listed, each pointing at where it was written in its hook file.
//!
//! The folder's `drplan.toml` also names the zones its DNS servers serve, which the
//! plan's checks hold its DNS names to (R50); they are read here with the hooks.

use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, PoisonError};

use super::error::{ScriptError, ScriptErrorKind};
use super::host::HookSink;
use super::reading::Reading;
use super::resolver::PlanModules;
use super::run_script;
use super::sandbox::Limits;
use crate::fabric::dns::DnsMode;
use crate::model::Inventory;
use crate::plan::config::{CONFIG_FILE, parse_config};
use crate::plan::{DnsSetting, Hook, SourcePos};
use crate::store::text_file;

/// What a plan gets from its folder's `drplan.toml`.
#[derive(Default)]
pub(super) struct Folder {
    /// The global hooks, in order.
    pub hooks: Vec<Hook>,
    /// What each hook script shows as written.
    pub readings: Vec<Arc<Reading>>,
    /// What `[dns]` says.
    pub dns: DnsSetting,
}

/// The global hooks of the folder of `plan_file`, in order, and its DNS zones; none when
/// the folder has no `drplan.toml`.
pub(super) fn load(
    plan_file: &Path,
    inventory: Arc<Inventory>,
    modules: Arc<PlanModules>,
    limits: Limits,
) -> Result<Folder, ScriptError> {
    let dir = plan_file.parent().unwrap_or(Path::new(""));
    let config_path = dir.join(CONFIG_FILE);
    let text = match text_file::read(&config_path, text_file::PLAN_CONFIG) {
        Ok(text) => text,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Folder::default()),
        Err(e) => {
            let at = SourcePos::new(config_path.display().to_string(), 0, 0);
            return Err(ScriptError::new(
                at,
                ScriptErrorKind::Io,
                format!("cannot read the plan folder's config: {e}"),
            ));
        }
    };
    let config =
        parse_config(&text, &config_path).map_err(|e| ScriptError::new(e.at, ScriptErrorKind::Config, e.message))?;
    let mut folder = Folder {
        dns: match config.dns {
            None => DnsSetting::Missing,
            Some(dns) if dns.mode == DnsMode::Record => DnsSetting::Recorded,
            Some(dns) => DnsSetting::Served(dns.servers.into_iter().map(|server| server.zone).collect()),
        },
        ..Folder::default()
    };
    for (i, (relative, at)) in config.hooks.iter().zip(&config.hooks_at).enumerate() {
        let (file, text) = read_script(dir, relative, at, &format!("hooks.scripts[{i}]"))?;
        let sink = HookSink::default();
        // The script's value is ignored: what counts is what its `on(...)` calls registered.
        let (_value, _type, reading) =
            run_script(file.into(), &text, inventory.clone(), modules.clone(), limits, Some(sink.clone()))?;
        folder.hooks.append(&mut sink.lock().unwrap_or_else(PoisonError::into_inner));
        folder.readings.push(reading);
    }
    Ok(folder)
}

/// Reads a hook script the config lists at `at`: (its name for positions, its text).
/// Like imports, it must resolve inside the plan's folder (a link may not lead out).
fn read_script(dir: &Path, relative: &Path, at: &SourcePos, field: &str) -> Result<(String, String), ScriptError> {
    let fail = |kind, message: String| ScriptError::new(at.clone(), kind, format!("{field}: {message}"));
    let shown = dir.join(relative.components().filter(|c| *c != Component::CurDir).collect::<PathBuf>());
    let outside = || {
        fail(
            ScriptErrorKind::Config,
            format!("{} resolves outside the plan's folder; hook scripts must be inside it", shown.display()),
        )
    };
    let lookup = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    let canonical_dir = lookup.canonicalize().map_err(|_| outside())?;
    let canonical = canonical_dir.join(relative).canonicalize().map_err(|e| match e.kind() {
        ErrorKind::NotFound => {
            fail(ScriptErrorKind::Config, format!("the hook script {} does not exist", shown.display()))
        }
        _ => fail(ScriptErrorKind::Io, format!("cannot read the hook script {}: {e}", shown.display())),
    })?;
    if !canonical.starts_with(&canonical_dir) {
        return Err(outside());
    }
    let text = text_file::read(&canonical, text_file::SCRIPT)
        .map_err(|e| fail(ScriptErrorKind::Io, format!("cannot read the hook script {}: {e}", shown.display())))?;
    Ok((shown.display().to_string(), text))
}
