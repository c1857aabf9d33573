//! Rhai closures as plan actions, and the `ctx` they receive.
//!
//! A closure is kept with the compiled script that defines it and the modules it could
//! see when it was given to the plan. When the engine runs it, it runs on a blocking
//! thread (never on the async workers), in a fresh sandboxed engine whose host state
//! carries the run's services, the runtime handle captured before leaving it, and a
//! cancel flag raised if the engine drops the action's future. In a dry run, whose
//! services complete every call at once, it runs on the engine's own thread instead.

use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use rhai::{AST, CallFnOptions, Dynamic, FnPtr, ImmutableString, Map, Module, NativeCallContext, Scope, Shared};

use crate::plan::{Action, ActionContext, ActionError, EventView, SourcePos, VmBoard, VmView};
use crate::script::error::ScriptError;
use crate::script::host::{
    Cancel, CancelOnDrop, Host, PlanShared, RhaiResult, Run, doc_fn, doc_getter, host, ip_or_unit, position,
    str_or_unit, string_array, string_map, text_or_unit,
};
use crate::script::resolver::Resolver;
use crate::script::sandbox::{self, ACTION_LIMITS, Watch};
use crate::script::threads;

/// What an action is called with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// pre/post: `|ctx|`.
    Step,
    /// post_each: `|vm, ctx|`.
    EachVm,
    /// hooks: `|ev, ctx|`.
    Hook,
}

impl Shape {
    fn parameters(self) -> &'static [&'static str] {
        match self {
            Shape::Step => &["ctx"],
            Shape::EachVm => &["vm", "ctx"],
            Shape::Hook => &["ev", "ctx"],
        }
    }
}

/// A Rhai closure (or a function of the plan) run as a plan action.
pub(crate) struct ScriptAction(Arc<Closure>);

struct Closure {
    f: FnPtr,
    /// The compiled script that defines the function: the plan or a module of its folder.
    lib: Arc<AST>,
    /// The modules imported where the closure was given to the plan, by alias.
    imports: Vec<(ImmutableString, Shared<Module>)>,
    plan: Arc<PlanShared>,
    at: SourcePos,
    label: String,
    shape: Shape,
    /// How many of the shape's parameters the closure declares (`|vm|` takes 1 of 2).
    declared: usize,
}

/// Makes an action of `f`, checking now that it can take the shape's arguments.
pub(crate) fn make(ctx: &NativeCallContext, f: &FnPtr, shape: Shape, label: String) -> RhaiResult<Arc<dyn Action>> {
    let host = host(ctx)?;
    let plan = host.plan.clone();
    let name = f.fn_name().to_string();
    let curried = f.curry().len();
    let offered = shape.parameters();
    let libraries = std::iter::once(plan.main.clone()).chain(plan.modules.loaded().into_iter().map(|l| l.ast));
    let (lib, arities) = libraries
        .map(|ast| {
            let arities: Vec<usize> = ast.iter_functions().filter(|f| f.name == name).map(|f| f.params.len()).collect();
            (ast, arities)
        })
        .find(|(_, arities)| !arities.is_empty())
        .ok_or_else(|| {
            format!("{label}: expected a closure (e.g. `|{}| ...`) or a function of the plan", offered.join(", "))
        })?;
    // The largest arity that fits: captured variables come first, then the offered arguments.
    let declared = arities
        .iter()
        .filter(|&&n| n >= curried && n - curried <= offered.len())
        .map(|&n| n - curried)
        .max()
        .ok_or_else(|| {
            let takes = arities.iter().map(|n| n.saturating_sub(curried).to_string()).collect::<Vec<_>>().join(" or ");
            format!("{label}: the closure is called with ({}) but takes {takes} parameters", offered.join(", "))
        })?;
    let mut imports: Vec<(ImmutableString, Shared<Module>)> = Vec::new();
    for (alias, module) in ctx.iter_imports() {
        // The most recent import of an alias shadows the older ones.
        if !imports.iter().any(|(a, _)| a == alias) {
            let shared = plan.modules.shared(module).unwrap_or_else(|| Shared::new(module.clone()));
            imports.push((alias.into(), shared));
        }
    }
    let at = position(ctx, &host);
    Ok(Arc::new(ScriptAction(Arc::new(Closure { f: f.clone(), lib, imports, plan, at, label, shape, declared }))))
}

#[async_trait]
impl Action for ScriptAction {
    fn at(&self) -> &SourcePos {
        &self.0.at
    }

    fn label(&self) -> String {
        self.0.label.clone()
    }

    async fn run(&self, ctx: ActionContext) -> Result<(), ActionError> {
        let closure = self.0.clone();
        let cancel = Cancel::default();
        let ran = if ctx.services.completes_at_once() && threads::has_deep_stack() {
            // A dry run's: nothing to wait for, so no reason to leave the engine's thread.
            threads::run_here(|| closure.invoke(Arc::new(ctx), None, cancel))
        } else {
            let handle = tokio::runtime::Handle::current();
            let _stop_if_dropped = CancelOnDrop(cancel.clone());
            threads::run(move || closure.invoke(Arc::new(ctx), Some(handle), cancel)).await
        };
        ran.unwrap_or_else(|thread| Err(ActionError { message: thread, at: Some(self.0.at.clone()) }))
    }
}

impl Closure {
    fn invoke(
        &self,
        ctx: Arc<ActionContext>,
        handle: Option<tokio::runtime::Handle>,
        cancel: Cancel,
    ) -> Result<(), ActionError> {
        let watch = Watch::new(ACTION_LIMITS.deadline, cancel.flag());
        let args = self.arguments(&ctx);
        let run = Run { ctx, handle, cancel, watch: watch.clone() };
        let host = Host { plan: self.plan.clone(), run: Some(Arc::new(run)), hooks: None };
        let mut engine = sandbox::engine(ACTION_LIMITS, watch, Dynamic::from(Arc::new(host)));
        engine.set_module_resolver(Resolver(self.plan.modules.clone()));
        for (alias, module) in &self.imports {
            engine.register_static_module(alias.as_str(), module.clone());
        }
        let options = CallFnOptions::new().eval_ast(false).rewind_scope(true);
        engine
            .call_fn_with_options::<Dynamic>(options, &mut Scope::new(), &self.lib, self.f.fn_name(), args)
            .map(drop)
            .map_err(|err| {
                let source: Arc<str> = self.lib.source().map_or_else(|| self.plan.file.clone(), Arc::from);
                let mut error = ScriptError::from_rhai(&err, &source, ACTION_LIMITS);
                // A limit (operations, call depth, time) stops the script between
                // statements, where Rhai has no position: the action's own is the place.
                if error.at.line == 0 {
                    error.at = self.at.clone();
                }
                error.into()
            })
    }

    /// The call's arguments: the closure's captured values, then those the shape offers,
    /// in order, as many as the closure declares. An argument it does not take is not
    /// built: a VM's map costs more than the rest of a small action's call.
    fn arguments(&self, ctx: &Arc<ActionContext>) -> Vec<Dynamic> {
        type Make = fn(&Arc<ActionContext>) -> Dynamic;
        let script_ctx: Make = |ctx| Dynamic::from(ScriptCtx(ctx.clone()));
        let (first, second): (Make, Option<Make>) = match self.shape {
            Shape::Step => (script_ctx, None),
            Shape::EachVm => (|ctx| this_vm(ctx), Some(script_ctx)),
            Shape::Hook => (|ctx| this_event(ctx), Some(script_ctx)),
        };
        let curry = self.f.curry();
        let mut args = Vec::with_capacity(curry.len() + self.declared);
        args.extend(curry.iter().cloned());
        args.extend(std::iter::once(first).chain(second).take(self.declared).map(|make| make(ctx)));
        args
    }
}

/// The action's `ctx`, Rhai type `Ctx`.
#[derive(Clone)]
pub(crate) struct ScriptCtx(Arc<ActionContext>);

/// A field of a VM map: its key and how it reads from the VM.
type VmField = (&'static str, fn(&VmView) -> Dynamic);

/// What a VM map holds, one line per key.
const VM_FIELDS: [VmField; 11] = [
    ("name", |vm| vm.name.as_str().into()),
    ("group", |vm| vm.group.as_str().into()),
    ("ip", |vm| ip_or_unit(vm.ip)),
    ("source_ip", |vm| ip_or_unit(vm.source_ip)),
    ("replica_name", |vm| vm.replica_name.as_str().into()),
    ("site", |vm| str_or_unit(vm.site.as_deref())),
    ("host", |vm| str_or_unit(vm.host.as_deref())),
    ("network", |vm| str_or_unit(vm.network.as_deref())),
    ("dns", |vm| string_array(&vm.dns)),
    ("tags", |vm| string_map(&vm.tags)),
    ("state", |vm| vm.state.as_str().into()),
];

/// The keys of a VM map with `()` for values, and the fields in the map's key order.
/// A per-VM action gets a fresh map each call: cloning this one (a single node) and
/// writing its values in order costs less than inserting eleven keys one by one.
static VM_MAP: LazyLock<(Map, Vec<VmField>)> = LazyLock::new(|| {
    let mut fields = VM_FIELDS.to_vec();
    fields.sort_by_key(|(key, _)| *key);
    (fields.iter().map(|(key, _)| ((*key).into(), Dynamic::UNIT)).collect(), fields)
});

/// A VM as scripts see it.
pub(crate) fn vm_map(vm: &VmView) -> Map {
    let (keys, fields) = &*VM_MAP;
    let mut map = keys.clone();
    for (value, (_, read)) in map.values_mut().zip(fields) {
        *value = read(vm);
    }
    map
}

fn event_map(event: &EventView) -> Map {
    let mut map = Map::new();
    map.insert("kind".into(), event.kind.clone().into());
    map.insert("group".into(), text_or_unit(event.group.as_ref()));
    map.insert("vm".into(), text_or_unit(event.vm.as_ref()));
    map.insert("error".into(), text_or_unit(event.error.as_ref()));
    map
}

fn this_vm(ctx: &ActionContext) -> Dynamic {
    ctx.vm.as_ref().and_then(|name| ctx.vms.get(name)).map_or(Dynamic::UNIT, |vm| vm_map(&vm).into())
}

fn this_event(ctx: &ActionContext) -> Dynamic {
    ctx.event.as_ref().map_or(Dynamic::UNIT, |e| event_map(e).into())
}

fn all_vms(vms: &VmBoard) -> Map {
    vms.snapshot().iter().map(|(name, vm)| (name.into(), vm_map(vm).into())).collect()
}

/// A property of `ctx`: name, type, doc, value.
type Getter = (&'static str, &'static str, &'static str, fn(&ActionContext) -> Dynamic);

pub(super) fn register(module: &mut Module) {
    module.set_custom_type_with_comments::<ScriptCtx>("Ctx", &["/// What an action sees when it runs."]);
    let getters: [Getter; 12] = [
        ("kind", "String", "The failover kind: \"test\", \"planned\" or \"unplanned\".", |c| c.kind.to_string().into()),
        (
            "direction",
            "String",
            "\"failover\" on the way to the recovery site, \"failback\" on the way home (R37).",
            |c| c.direction.name().into(),
        ),
        ("source", "String", "The site the run moves the VMs from (the plan's target in a failback).", |c| {
            c.source.clone().into()
        }),
        ("target", "String", "The site the run moves the VMs to (the plan's source in a failback).", |c| {
            c.target.clone().into()
        }),
        ("dry_run", "bool", "True in a dry run, where services record calls instead of acting.", |c| c.dry_run.into()),
        ("plan", "String", "The plan's name.", |c| c.plan.clone().into()),
        ("group", "?", "The group whose action this is, or () for plan actions and hooks.", |c| {
            text_or_unit(c.group.as_ref())
        }),
        ("vm", "?", "The VM (a map) of a per-VM action, else ().", this_vm),
        (
            "vms",
            "Map",
            "Every VM of the plan, by name: name, group, ip, source_ip, replica_name, site, host, network, dns, tags, state.",
            |c| all_vms(&c.vms).into(),
        ),
        ("test_network", "?", "The isolated network of a test failover (R30), or ().", |c| {
            text_or_unit(c.test_network.as_ref())
        }),
        ("run_id", "String", "The run's id.", |c| c.run_id.clone().into()),
        ("event", "?", "For hooks: the event (kind, group, vm, error), else ().", this_event),
    ];
    for (name, returns, doc, get) in getters {
        doc_getter(name, &["ctx: Ctx", returns], doc).set_into_module(module, move |c: &mut ScriptCtx| get(&c.0));
    }
    doc_fn(
        "vm",
        &["ctx: Ctx", "name: String", "Map"],
        "A VM of the plan by name (a map, see `ctx.vms`); an error if the plan has no such VM.",
    )
    .set_into_module(module, |c: &mut ScriptCtx, name: &str| -> RhaiResult<Map> {
        let vm = c.0.vms.get(name).ok_or_else(|| {
            let known = c.0.vms.names().join(", ");
            format!("ctx.vm: {name:?} is not a VM of this plan (its VMs: {known})")
        })?;
        Ok(vm_map(&vm))
    });
}
