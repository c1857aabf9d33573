//! Hooks: `plan.on(event, action)` in a plan, and `on(event, action)` in a global hook
//! script — one of the scripts a plan folder's `drplan.toml` lists, loaded for every plan
//! of the folder (see `script::global_hooks`). Both make the same `Hook`: a closure run as
//! an action whenever a matching event happens.

use rhai::{FnPtr, Module, NativeCallContext};

use super::actions::{self, Shape};
use crate::plan::Hook;
use crate::script::host::{RhaiResult, doc_fn, host};

/// A hook on `event` running `f`, checked now (the event is not empty, the closure can
/// take `ev, ctx`); its position is where `ctx`'s function was called.
pub(crate) fn make(ctx: &NativeCallContext, event: &str, f: FnPtr, label: String) -> RhaiResult<Hook> {
    if event.trim().is_empty() {
        return Err(format!("{}: the event is empty; write e.g. \"vm.failed\" or \"vm.*\"", ctx.fn_name()).into());
    }
    let action = actions::make(ctx, &f, Shape::Hook, label)?;
    Ok(Hook { event: event.to_string(), action })
}

/// `on(event, action)` of a hook script.
fn on(ctx: NativeCallContext, event: &str, f: FnPtr) -> RhaiResult<()> {
    let host = host(&ctx)?;
    let Some(sink) = host.hooks.clone() else {
        let why = if host.run.is_some() {
            "hooks are registered while a hook script is loaded, not inside an action"
        } else {
            "it registers a global hook, and only works in a hook script listed in the folder's drplan.toml \
             ([hooks] scripts); in a plan, write plan.on(event, action)"
        };
        return Err(format!("on({event:?}, ...): {why}").into());
    };
    let hook = make(&ctx, event, f, format!("global hook on {event}"))?;
    sink.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(hook);
    Ok(())
}

pub(super) fn register(module: &mut Module) {
    doc_fn(
        "on",
        &["event: String", "action: FnPtr", "()"],
        "In a hook script listed in the plan folder's drplan.toml (`[hooks] scripts`): runs `action`\n\
         (`|ev| ...` or `|ev, ctx| ...`) whenever `event` happens, in every plan of the folder, after\n\
         the plan's own hooks. `event`: an event kind (\"vm.failed\") or a prefix with a wildcard\n\
         (\"vm.*\"). `ev` has kind, group, vm, error. In a plan, use `plan.on(event, action)`.",
    )
    .set_into_module(module, on);
}
