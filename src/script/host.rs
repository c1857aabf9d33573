//! What host functions reach through the engine's tag: the plan being loaded (its
//! file, modules and inventory) and, inside an action, the run (its context, services,
//! runtime handle and cancellation). Also the small helpers every API file shares:
//! positions, duration and address arguments, documented registrations.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rhai::{AST, Dynamic, EvalAltResult, FuncRegistration, NativeCallContext};
use tokio::sync::Notify;

use super::reading::Reading;
use super::resolver::PlanModules;
use super::sandbox::{STOPPED_CANCELLED, Watch};
use crate::model::{Inventory, parse_duration};
use crate::plan::{ActionContext, Hook, Services, SourcePos};

pub(crate) type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

/// One script of a plan, as loaded — the plan file or one of its folder's hook scripts
/// (`drplan.toml`): shared by its evaluation and every action it made.
pub(crate) struct PlanShared {
    /// The script file as the operator named it.
    pub file: Arc<str>,
    pub main: Arc<AST>,
    pub modules: Arc<PlanModules>,
    pub inventory: Arc<Inventory>,
    /// What `main` shows as written.
    pub reading: Arc<Reading>,
}

/// The engine's tag.
pub(crate) struct Host {
    pub plan: Arc<PlanShared>,
    /// Set while an action runs; `None` while the plan file is evaluated.
    pub run: Option<Arc<Run>>,
    /// Set while a hook script is evaluated: where its `on(...)` calls put their hooks.
    pub hooks: Option<HookSink>,
}

/// The hooks a hook script registers, in order.
pub(crate) type HookSink = Arc<Mutex<Vec<Hook>>>;

/// One invocation of an action.
pub(crate) struct Run {
    pub ctx: Arc<ActionContext>,
    /// The runtime the engine runs on, captured before the script left it; `None` when
    /// the script runs on the engine's own thread, whose services complete every call at
    /// once (`Services::completes_at_once`).
    pub handle: Option<tokio::runtime::Handle>,
    pub cancel: Cancel,
    pub watch: Arc<Watch>,
}

impl Run {
    pub fn services(&self) -> &dyn Services {
        &*self.ctx.services
    }

    /// Waits for a service call, stopping early when the action is cancelled. The time it
    /// takes is not script time, so it does not count against the action's deadline.
    pub fn block_on<T>(&self, what: &str, call: impl Future<Output = Result<T, String>>) -> RhaiResult<T> {
        let started = Instant::now();
        let mut call = std::pin::pin!(call);
        let outcome = match &self.handle {
            Some(handle) => {
                // Many calls complete at their first poll (a recorded DNS update, an
                // operation of the simulation): try that, in the runtime's context, before
                // paying for blocking on the runtime with the cancel beside.
                let at_once = {
                    let _in_runtime = handle.enter();
                    poll_once(call.as_mut())
                };
                at_once.map(Some).unwrap_or_else(|| {
                    handle.block_on(async {
                        tokio::select! {
                            result = call => Some(result),
                            () = self.cancel.cancelled() => None,
                        }
                    })
                })
            }
            // On the engine's thread nothing else runs until the script returns, so the
            // call must complete at its first poll, as these services promise; nor can a
            // cancel arrive meanwhile.
            None => Some(poll_once(call.as_mut()).unwrap_or_else(|| {
                Err("the call waited, but the run's services promised it would not (a bug in drplan)".into())
            })),
        };
        self.watch.exclude(started.elapsed());
        match outcome {
            Some(Ok(value)) => Ok(value),
            Some(Err(e)) => Err(format!("{what}: {e}").into()),
            None => Err(Box::new(EvalAltResult::ErrorTerminated(STOPPED_CANCELLED.into(), rhai::Position::NONE))),
        }
    }
}

/// Polls `call` once: its output if it completed. A call that did not may be polled on
/// (it registers the waker of each poll).
fn poll_once<T>(call: std::pin::Pin<&mut impl Future<Output = T>>) -> Option<T> {
    match call.poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
        std::task::Poll::Ready(output) => Some(output),
        std::task::Poll::Pending => None,
    }
}

/// Cancellation of one action: a flag for the progress callback and a notification for
/// the host call the script may be blocked in.
#[derive(Clone, Default)]
pub(crate) struct Cancel {
    flag: Arc<AtomicBool>,
    notify: Arc<Notify>,
}

impl Cancel {
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.flag.clone()
    }

    pub fn cancel(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    pub async fn cancelled(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Registered before the flag is read, so a cancel in between is not lost.
            notified.as_mut().enable();
            if self.flag.load(Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }
}

/// Cancels when dropped: the engine dropping an action's future stops its script.
pub(crate) struct CancelOnDrop(pub Cancel);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

pub(crate) fn host(ctx: &NativeCallContext) -> RhaiResult<Arc<Host>> {
    ctx.tag()
        .and_then(|tag| tag.read_lock::<Arc<Host>>().map(|h| h.clone()))
        .ok_or_else(|| format!("{}: not available here (no plan is being loaded or run)", ctx.fn_name()).into())
}

/// The run of the action calling `ctx`'s function; an error outside actions.
pub(crate) fn running(ctx: &NativeCallContext) -> RhaiResult<Arc<Run>> {
    host(ctx)?.run.clone().ok_or_else(|| {
        format!(
            "{}() can only be called inside an action (a closure given to pre, post, post_each or on), \
             when the plan runs, not while it is built",
            ctx.fn_name()
        )
        .into()
    })
}

/// Where the call of `ctx` was written.
pub(crate) fn position(ctx: &NativeCallContext, host: &Host) -> SourcePos {
    let file = match ctx.call_source() {
        Some(source) if !source.is_empty() => Arc::from(source),
        _ => host.plan.file.clone(),
    };
    super::error::pos_in(&file, ctx.call_position())
}

/// A duration argument ("30s", "5m", "1h30m").
pub(crate) fn duration_arg(what: &str, text: &str) -> RhaiResult<Duration> {
    parse_duration(text).map_err(|e| format!("{what}: {e}").into())
}

/// An IPv4 address argument, as text; `()` means the VM has no address yet.
pub(crate) fn ipv4_arg(what: &str, ip: &Dynamic) -> RhaiResult<Ipv4Addr> {
    if ip.is_unit() {
        return Err(format!("{what}: the VM has no address yet (is it up, and connected to a network? R10)").into());
    }
    let text =
        ip.clone().into_string().map_err(|t| format!("{what}: the address must be a string, not {}", kind_of(t)))?;
    text.parse().map_err(|_| format!("{what}: {text:?} is not an IPv4 address (e.g. \"10.2.1.10\")").into())
}

/// A Rhai value's type as messages name it: `()`, Rhai's unit, reads "nothing".
pub(crate) fn kind_of(type_name: &str) -> &str {
    if type_name == "()" { "nothing (no value)" } else { type_name }
}

/// `Some(value)` as its text, `None` as `()`: how scripts see optional fields.
pub(crate) fn text_or_unit(value: Option<impl ToString>) -> Dynamic {
    value.map_or(Dynamic::UNIT, |v| v.to_string().into())
}

// The helpers below make each Rhai string straight from the borrowed text: one
// allocation per string, where going through an owned `String` costs two and a free.
// Actions build VM maps per call, so this shows in a large plan's run.

/// [`text_or_unit`] of a text.
pub(crate) fn str_or_unit(value: Option<&str>) -> Dynamic {
    value.map_or(Dynamic::UNIT, |text| text.into())
}

/// [`text_or_unit`] of an address, written without a `String` in between.
pub(crate) fn ip_or_unit(ip: Option<Ipv4Addr>) -> Dynamic {
    ip.map_or(Dynamic::UNIT, |ip| {
        let mut text = rhai::Identifier::new_const();
        // An address is at most 15 bytes: the text stays inline, and writing it cannot fail.
        let _ = write!(text, "{ip}");
        rhai::ImmutableString::from(text).into()
    })
}

pub(crate) fn string_array(items: &[String]) -> Dynamic {
    items.iter().map(|item| item.as_str().into()).collect::<rhai::Array>().into()
}

pub(crate) fn string_map(map: &BTreeMap<String, String>) -> Dynamic {
    // Inserted in order rather than collected: collecting sorts the entries in a vector
    // first, though they come sorted.
    let mut out = rhai::Map::new();
    for (key, value) in map {
        out.insert(key.into(), value.as_str().into());
    }
    out.into()
}

/// A registration with parameter names and types (the last entry is the return type)
/// and doc lines, so that `drplan defs` is useful for completion.
pub(crate) fn doc_fn(name: &str, params: &[&str], doc: &str) -> FuncRegistration {
    let comments = doc.lines().map(|line| format!("/// {line}").trim_end().to_string()).collect::<Vec<_>>().join("\n");
    FuncRegistration::new(name).in_global_namespace().with_params_info(params).with_comments([comments])
}

/// Same, for a property getter (`ctx.kind`).
pub(crate) fn doc_getter(name: &str, params: &[&str], doc: &str) -> FuncRegistration {
    FuncRegistration::new_getter(name)
        .in_global_namespace()
        .with_params_info(params)
        .with_comments([format!("/// {doc}")])
}
