//! The script layer: recovery plans written in Rhai. A plan file is evaluated in a
//! sandboxed engine; its value is a plan built through the host API (`api/`), whose
//! closures become plan actions. Modules come from the embedded stdlib (`stdlib/`) or the
//! plan's own folder (`resolver`). The folder's `drplan.toml` may list hook scripts whose
//! hooks every plan of the folder gets (`global_hooks`). Every error points at the
//! script's file:line:column. Each script is also read for what it shows as written
//! (`reading`): where a group's members are named, and what the plan's checks need to
//! see inside its actions.

mod api;
mod error;
mod global_hooks;
mod host;
mod reading;
mod resolver;
mod sandbox;
mod threads;

pub use threads::{SCRIPT_STACK_SIZE, on_script_stack};

#[cfg(test)]
mod tests;

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use rhai::{Dynamic, OptimizationLevel, Scope};

use self::api::plan::PlanBuilder;
use self::host::{HookSink, Host, PlanShared};
use self::reading::Reading;
use self::resolver::{PlanModules, Resolver, STDLIB};
use self::sandbox::{Limits, Watch};
use crate::model::Inventory;
use crate::plan::{Plan, SourcePos};
use crate::store::text_file;

pub use self::error::{ScriptError, ScriptErrorKind};
pub use self::sandbox::{
    ACTION_DEADLINE, MAX_ARRAY_SIZE, MAX_CALL_LEVELS, MAX_EXPR_DEPTH, MAX_FN_EXPR_DEPTH, MAX_MAP_SIZE, MAX_MODULES,
    MAX_OPERATIONS, MAX_STRING_SIZE, PLAN_DEADLINE,
};

/// Limits of evaluating a plan file (the sandbox's fixed limits are in `sandbox`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptOptions {
    /// Wall clock for evaluating the plan.
    pub deadline: Duration,
    pub max_operations: u64,
}

impl Default for ScriptOptions {
    fn default() -> Self {
        ScriptOptions { deadline: PLAN_DEADLINE, max_operations: MAX_OPERATIONS }
    }
}

/// Reads, compiles and evaluates a plan file. Its value must be the plan built with
/// `recovery_plan(...)`; the plan's closures become actions the engine can run later.
/// Then the global hooks of the plan's folder (its `drplan.toml`, see `global_hooks`)
/// are loaded and appended after the plan's own hooks. What the scripts show as written
/// and the zones of the folder's DNS servers go to `plan.written`, for the checks.
pub fn load_plan(path: &Path, inventory: Arc<Inventory>, options: &ScriptOptions) -> Result<Plan, ScriptError> {
    let file: Arc<str> = path.display().to_string().into();
    let whole_file = SourcePos::new(file.clone(), 0, 0);
    let text = text_file::read(path, text_file::SCRIPT)
        .map_err(|e| ScriptError::new(whole_file, ScriptErrorKind::Io, format!("cannot read the plan: {e}")))?;
    let limits = Limits { max_operations: options.max_operations, deadline: options.deadline };
    let modules = Arc::new(PlanModules::new(path));
    threads::with_deep_stack(|| {
        let (mut plan, reading) = evaluate(file, &text, inventory.clone(), modules.clone(), limits)?;
        let folder = global_hooks::load(path, inventory, modules, limits)?;
        plan.hooks.extend(folder.hooks);
        for reading in std::iter::once(&reading).chain(&folder.readings) {
            plan.written.waits.extend_from_slice(&reading.waits);
            plan.written.dns_names.extend_from_slice(&reading.dns_names);
        }
        plan.written.dns = folder.dns;
        Ok(plan)
    })
}

/// The global hooks of a folder's `drplan.toml` alone, without a plan: what the
/// replication service runs on health events (`on("replication.unhealthy", ...)`).
/// None when the folder has no `drplan.toml`.
pub fn load_folder_hooks(
    folder: &Path,
    inventory: Arc<Inventory>,
    options: &ScriptOptions,
) -> Result<Vec<crate::plan::Hook>, ScriptError> {
    let limits = Limits { max_operations: options.max_operations, deadline: options.deadline };
    // The folder's hooks resolve imports as a plan of the folder would.
    let as_if_plan = folder.join(crate::plan::config::CONFIG_FILE);
    let modules = Arc::new(PlanModules::new(&as_if_plan));
    threads::with_deep_stack(|| Ok(global_hooks::load(&as_if_plan, inventory, modules, limits)?.hooks))
}

fn evaluate(
    file: Arc<str>,
    text: &str,
    inventory: Arc<Inventory>,
    modules: Arc<PlanModules>,
    limits: Limits,
) -> Result<(Plan, Arc<Reading>), ScriptError> {
    let (value, type_name, reading) = run_script(file.clone(), text, inventory, modules, limits, None)?;
    match value.try_cast::<PlanBuilder>() {
        Some(builder) => Ok((builder.finish(), reading)),
        None => {
            let last_line = text.lines().count();
            Err(ScriptError::new(
                SourcePos::new(file, last_line, 0),
                ScriptErrorKind::NotAPlan,
                format!(
                    "the script's value is {}, not a plan: the script must end with the plan value, e.g. `plan`",
                    host::kind_of(&type_name)
                ),
            ))
        }
    }
}

/// Compiles and evaluates one script of a plan — the plan file, or a hook script when
/// `hooks` collects what its `on(...)` calls register — in its own sandboxed engine with
/// its own deadline. Returns its value, the script's name of the value's type, and what
/// the script shows as written.
fn run_script(
    file: Arc<str>,
    text: &str,
    inventory: Arc<Inventory>,
    modules: Arc<PlanModules>,
    limits: Limits,
    hooks: Option<HookSink>,
) -> Result<(Dynamic, String, Arc<Reading>), ScriptError> {
    let watch = Watch::new(limits.deadline, Arc::new(AtomicBool::new(false)));
    let mut compiler = sandbox::engine(limits, watch.clone(), Dynamic::UNIT);
    // Read as parsed, then optimized as usual: the optimizer folds `["sql01", "sql02"]`
    // into one constant, and the positions of its items with it.
    compiler.set_optimization_level(OptimizationLevel::None);
    let parsed = compiler.compile(text).map_err(|e| ScriptError::syntax(&e, &file))?;
    let reading = Arc::new(Reading::new(file.clone(), &parsed));
    let mut ast = compiler.optimize_ast(&Scope::new(), parsed, OptimizationLevel::Simple);
    ast.set_source(file.as_ref());
    let script = Arc::new(PlanShared {
        file: file.clone(),
        main: Arc::new(ast),
        modules: modules.clone(),
        inventory,
        reading: reading.clone(),
    });
    let host = Host { plan: script.clone(), run: None, hooks };
    let mut engine = sandbox::engine(limits, watch, Dynamic::from(Arc::new(host)));
    engine.set_module_resolver(Resolver(modules));
    let value = engine.eval_ast::<Dynamic>(&script.main).map_err(|e| {
        let mut error = ScriptError::from_rhai(&e, &file, limits);
        error.explain_data_race(&e, &reading);
        error
    })?;
    let type_name = engine.map_type_name(value.type_name()).to_string();
    Ok((value, type_name, reading))
}

/// The `.d.rhai` definitions of the whole host API and the stdlib modules, for editor
/// completion (`drplan defs`).
pub fn definitions() -> String {
    let mut out = String::from(
        "// drplan: definitions of the Rhai API of recovery plans, for editor completion.\n\
         // Generated by `drplan defs`; Rhai's standard functions come first, then drplan's\n\
         // host API (module static), then the stdlib modules (`import \"dns\" as dns;`).\n",
    );
    let engine = sandbox::definitions_engine();
    for (name, text) in engine.definitions().iter_files() {
        let _ = write!(out, "\n// ---- {name} ----\n{text}\n");
    }
    for (name, source) in STDLIB {
        let _ = write!(out, "\n// ---- {name}.d.rhai ----\nmodule {name};\n");
        // Rhai drops script functions' doc comments from modules, so these are written from the AST.
        let Ok(ast) = engine.compile(source) else { continue };
        let mut functions: Vec<_> = ast.iter_functions().filter(|f| f.access == rhai::FnAccess::Public).collect();
        functions.sort_by(|a, b| (a.name, a.params.len()).cmp(&(b.name, b.params.len())));
        for f in functions {
            let params = f.params.iter().map(|p| format!("{p}: ?")).collect::<Vec<_>>().join(", ");
            let _ = write!(out, "\n{}\nfn {}({params}) -> ?;\n", f.comments.join("\n"), f.name);
        }
    }
    out
}
