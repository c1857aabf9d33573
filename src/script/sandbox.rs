//! The sandbox every plan script runs in: a raw Rhai engine (no file system, no
//! network, no processes, no `eval`) over one shared package of the standard parts plans
//! need plus the host API, with every limit set here, in one place, by name.
//!
//! Scripts are stopped by Rhai's progress callback when they run past a wall-clock
//! deadline or when their cancel flag is raised; time spent blocked in host calls (a
//! fabric wait) does not count against the deadline, only script work does.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use rhai::packages::{
    BasicArrayPackage, BasicBlobPackage, BasicMapPackage, BasicMathPackage, BitFieldPackage, CorePackage, LogicPackage,
    MoreStringPackage, Package,
};
use rhai::{Dynamic, Engine, Module, Shared, def_package};

/// Operations a plan file may run while it is evaluated (`ScriptOptions` default).
pub const MAX_OPERATIONS: u64 = 50_000_000;
/// Wall clock for evaluating a plan file (`ScriptOptions` default).
pub const PLAN_DEADLINE: Duration = Duration::from_secs(1);
/// Wall clock of script work for one action invocation (host calls excluded).
pub const ACTION_DEADLINE: Duration = Duration::from_secs(10);
/// Nested function calls, recursion included.
pub const MAX_CALL_LEVELS: usize = 64;
/// Nesting of expressions at top level and inside functions.
pub const MAX_EXPR_DEPTH: usize = 64;
pub const MAX_FN_EXPR_DEPTH: usize = 64;
/// Bytes in one string.
pub const MAX_STRING_SIZE: usize = 1024 * 1024;
/// Items in one array.
pub const MAX_ARRAY_SIZE: usize = 1_000_000;
/// Entries in one object map.
pub const MAX_MAP_SIZE: usize = 100_000;
/// Modules imported by one evaluation.
pub const MAX_MODULES: usize = 32;
/// The progress callback reads the clock only every this many operations.
const CLOCK_EVERY: u64 = 256;

/// The limits of one action invocation.
pub(crate) const ACTION_LIMITS: Limits = Limits { max_operations: MAX_OPERATIONS, deadline: ACTION_DEADLINE };

/// Termination tokens: what the progress callback stopped a script for.
pub(crate) const STOPPED_DEADLINE: &str = "deadline";
pub(crate) const STOPPED_CANCELLED: &str = "cancelled";

def_package! {
    /// Rhai's standard package without `BasicTimePackage`: plans read time from the
    /// run's clock (modelled in simulations and dry runs), never from the machine's.
    PlanStdPackage(lib):
        CorePackage, BitFieldPackage, LogicPackage, BasicMathPackage, BasicArrayPackage, BasicBlobPackage,
        BasicMapPackage, MoreStringPackage
    {}
}

/// Built once: the standard parts, then the host API (registered later, so it wins
/// where it overrides a standard function such as `sleep`).
static PACKAGES: LazyLock<[Shared<Module>; 2]> =
    LazyLock::new(|| [PlanStdPackage::new().as_shared_module(), super::api::host_module()]);

/// The limits of one evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub max_operations: u64,
    pub deadline: Duration,
}

/// The wall clock and cancel flag the progress callback checks.
#[derive(Debug)]
pub(crate) struct Watch {
    started: Instant,
    deadline: Duration,
    /// Nanoseconds spent blocked in host calls, which the deadline does not count.
    excluded_nanos: AtomicU64,
    cancel: Arc<AtomicBool>,
}

impl Watch {
    pub fn new(deadline: Duration, cancel: Arc<AtomicBool>) -> Arc<Self> {
        Arc::new(Watch { started: Instant::now(), deadline, excluded_nanos: AtomicU64::new(0), cancel })
    }

    /// Time spent blocked outside the script (in a host call) does not count.
    pub fn exclude(&self, blocked: Duration) {
        let nanos = u64::try_from(blocked.as_nanos()).unwrap_or(u64::MAX);
        self.excluded_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    fn overdue(&self) -> bool {
        let excluded = Duration::from_nanos(self.excluded_nanos.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(excluded) > self.deadline
    }

    /// Why the script must stop now, if it must.
    fn verdict(&self) -> Option<Dynamic> {
        if self.is_cancelled() {
            Some(STOPPED_CANCELLED.into())
        } else if self.overdue() {
            Some(STOPPED_DEADLINE.into())
        } else {
            None
        }
    }
}

/// A fresh sandboxed engine (cheap: the packages are shared) with `limits` enforced,
/// `host` as the state host functions read, and `watch` stopping it.
pub(crate) fn engine(limits: Limits, watch: Arc<Watch>, host: Dynamic) -> Engine {
    let mut engine = Engine::new_raw();
    for package in PACKAGES.iter() {
        engine.register_global_module(package.clone());
    }
    engine
        .disable_symbol("eval")
        .set_max_operations(limits.max_operations)
        .set_max_call_levels(MAX_CALL_LEVELS)
        .set_max_expr_depths(MAX_EXPR_DEPTH, MAX_FN_EXPR_DEPTH)
        .set_max_string_size(MAX_STRING_SIZE)
        .set_max_array_size(MAX_ARRAY_SIZE)
        .set_max_map_size(MAX_MAP_SIZE)
        .set_max_modules(MAX_MODULES)
        // A typo in a property name (`vm.ipp`) is an error, not a silent `()`.
        .set_fail_on_invalid_map_property(true)
        .set_default_tag(host)
        .on_progress(move |operations| if operations % CLOCK_EVERY == 0 { watch.verdict() } else { None })
        .on_print(|text| tracing::info!(target: "drplan::script", "{text}"))
        .on_debug(
            |text, source, pos| tracing::debug!(target: "drplan::script", "{}:{pos}: {text}", source.unwrap_or("")),
        );
    engine
}

/// An engine with the whole host API and no limits, for listing definitions.
pub(crate) fn definitions_engine() -> Engine {
    let mut engine = Engine::new_raw();
    engine.register_global_module(PACKAGES[1].clone());
    engine
}
