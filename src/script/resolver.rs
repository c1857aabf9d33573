//! Where `import "name" as x;` finds modules: first the stdlib shipped inside the
//! binary (`stdlib/*.rhai`, embedded, so an installed drplan works from any folder),
//! then `<name>.rhai` in the plan's own folder. Nothing else: no absolute paths, no
//! `..`, nothing that resolves (through a link) outside that folder.
//!
//! Modules are compiled and evaluated once per plan and kept, so the plan's actions
//! (which run later, on other engines) see the very modules the plan imported.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::ThreadId;

use rhai::{AST, Engine, EvalAltResult, Module, ModuleResolver, Position, Scope, Shared};

/// The source name of stdlib modules in positions: `<stdlib>/dns.rhai:12:5`.
pub(crate) const STDLIB_PREFIX: &str = "<stdlib>/";

/// The embedded stdlib: import name and text.
pub(crate) const STDLIB: &[(&str, &str)] = &[("dns", include_str!("../../stdlib/dns.rhai"))];

/// A compiled, evaluated module.
#[derive(Clone)]
pub(crate) struct Loaded {
    pub ast: Arc<AST>,
    pub module: Shared<Module>,
}

/// The modules of one plan: its folder, and what it has imported so far.
pub(crate) struct PlanModules {
    /// The plan's folder as the operator named it, for positions (`plans/contoso`).
    dir: PathBuf,
    /// The same folder resolved, to check that imports stay inside it.
    canonical_dir: Option<PathBuf>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// By stdlib name or by canonical path.
    loaded: HashMap<String, Loaded>,
    /// Modules being evaluated, per thread: importing one of them again is a cycle.
    loading: Vec<(ThreadId, String)>,
}

impl PlanModules {
    pub fn new(plan_file: &Path) -> Self {
        let dir = plan_file.parent().map(Path::to_path_buf).unwrap_or_default();
        let lookup = if dir.as_os_str().is_empty() { Path::new(".") } else { &dir };
        let canonical_dir = lookup.canonicalize().ok();
        PlanModules { dir, canonical_dir, state: Mutex::new(State::default()) }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every module loaded so far, for finding where a closure was written.
    pub fn loaded(&self) -> Vec<Loaded> {
        self.state().loaded.values().cloned().collect()
    }

    /// The shared handle of a module this plan loaded, found by identity.
    pub fn shared(&self, module: &Module) -> Option<Shared<Module>> {
        self.state().loaded.values().find(|l| std::ptr::eq(&*l.module, module)).map(|l| l.module.clone())
    }

    /// Where `name` is: (cache key, source name for positions, text).
    fn locate(&self, name: &str) -> Result<(String, String, String), String> {
        if let Some((_, text)) = STDLIB.iter().find(|(n, _)| *n == name) {
            return Ok((format!("{STDLIB_PREFIX}{name}"), format!("{STDLIB_PREFIX}{name}.rhai"), text.to_string()));
        }
        let stdlib = STDLIB.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ");
        let how = format!(
            "import a stdlib module ({stdlib}) or a .rhai file of the plan's folder by its name, e.g. `import \"helpers\" as helpers;`"
        );
        let relative = Path::new(name);
        if name.is_empty() || relative.is_absolute() || name.starts_with(['/', '\\']) || name.contains(':') {
            return Err(format!("cannot import {name:?}: only modules of the plan's folder can be imported; {how}"));
        }
        if relative.components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir)) {
            return Err(format!("cannot import {name:?}: the path leaves the plan's folder; {how}"));
        }
        let file = if name.ends_with(".rhai") { name.to_string() } else { format!("{name}.rhai") };
        let shown = self.dir.join(&file);
        let outside = || format!("cannot import {name:?}: {} resolves outside the plan's folder", shown.display());
        let dir = self.canonical_dir.as_ref().ok_or_else(outside)?;
        let canonical = dir.join(&file).canonicalize().map_err(|_| {
            format!("no module {name:?}: it is not in the stdlib ({stdlib}) and {} does not exist", shown.display())
        })?;
        if !canonical.starts_with(dir) {
            return Err(outside());
        }
        let text = crate::store::text_file::read(&canonical, crate::store::text_file::SCRIPT)
            .map_err(|e| format!("cannot read {}: {e}", shown.display()))?;
        Ok((canonical.display().to_string(), shown.display().to_string(), text))
    }

    /// Compiles and evaluates a module with the importing engine (its limits, its host).
    fn load(&self, engine: &Engine, source: &str, text: &str, pos: Position) -> Result<Loaded, Box<EvalAltResult>> {
        let in_module = |err: Box<EvalAltResult>| Box::new(EvalAltResult::ErrorInModule(source.into(), err, pos));
        let mut ast = engine.compile(text).map_err(|e| in_module(Box::new(EvalAltResult::ErrorParsing(*e.0, e.1))))?;
        ast.set_source(source);
        let mut module = Module::eval_ast_as_new(Scope::new(), &ast, engine).map_err(in_module)?;
        module.set_id(source);
        module.build_index();
        Ok(Loaded { ast: Arc::new(ast), module: module.into() })
    }
}

/// The resolver an engine owns: a handle on the plan's modules.
pub(crate) struct Resolver(pub Arc<PlanModules>);

impl ModuleResolver for Resolver {
    fn resolve(
        &self,
        engine: &Engine,
        _source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<Shared<Module>, Box<EvalAltResult>> {
        let refuse = |message: String| Box::new(EvalAltResult::ErrorRuntime(message.into(), pos));
        let (key, source, text) = self.0.locate(path).map_err(refuse)?;
        let me = std::thread::current().id();
        {
            let mut state = self.0.state();
            if let Some(loaded) = state.loaded.get(&key) {
                return Ok(loaded.module.clone());
            }
            if state.loading.iter().any(|(thread, k)| *thread == me && *k == key) {
                return Err(refuse(format!("cannot import {path:?}: it imports itself (an import cycle)")));
            }
            state.loading.push((me, key.clone()));
        }
        let result = self.0.load(engine, &source, &text, pos);
        let mut state = self.0.state();
        state.loading.retain(|(thread, k)| !(*thread == me && *k == key));
        let loaded = result?;
        state.loaded.insert(key, loaded.clone());
        Ok(loaded.module)
    }
}
