//! Building the plan: `recovery_plan(...)`, groups and their members, pre/post
//! actions, manual steps, hooks and failure policies. Pure data collection: builders are
//! handles on one shared draft, so method chains and variables all edit the same plan,
//! and each call records where it was written: a member where its VM's name or selector
//! is written, an action with where it uses replicas' addresses (`reading`).
//!
//! A call given a bad argument (an unknown option, a bad duration, a member that is not a
//! VM) is not the end of the script: the call notes the mistake in the plan and goes on
//! without what it asked for, so that `check` reports every mistake at once, with the
//! rest of the plan's findings. Only a plan without its sites cannot go on.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rhai::{Array, Dynamic, EvalAltResult, FnPtr, INT, Map, Module, NativeCallContext};

use super::actions::{self, Shape};
use crate::model::parse_duration;
use crate::plan::{
    AddressUse, FailurePolicy, Group, Manual, Member, Mistake, OnFailure, Plan, Selector, SourcePos, Step, UsedVms,
};
use crate::script::host::{RhaiResult, doc_fn, host, kind_of, position};
use crate::script::reading::UsedVm;

/// How long a manual step waits for the operator by default.
const MANUAL_TIMEOUT: Duration = Duration::from_secs(3600);

/// The plan as the script builds it.
pub(crate) struct Draft {
    plan: Plan,
    /// Policies are kept partial until the end, so a group that sets only `retry` takes
    /// `on_failure` from the plan even when the plan sets it later in the script.
    policy: PolicyDraft,
    group_policies: Vec<PolicyDraft>,
}

#[derive(Debug, Clone, Copy, Default)]
struct PolicyDraft {
    retry: Option<(u32, Duration)>,
    on_failure: Option<OnFailure>,
}

impl PolicyDraft {
    fn over(self, base: FailurePolicy) -> FailurePolicy {
        let (retries, backoff) = self.retry.unwrap_or((base.retries, base.backoff));
        FailurePolicy { retries, backoff, on_failure: self.on_failure.unwrap_or(base.on_failure) }
    }

    fn is_set(self) -> bool {
        self.retry.is_some() || self.on_failure.is_some()
    }
}

/// `recovery_plan(...)`'s value, Rhai type `Plan`.
#[derive(Clone)]
pub(crate) struct PlanBuilder(Arc<Mutex<Draft>>);

/// `plan.group(...)`'s value, Rhai type `Group`.
#[derive(Clone)]
pub(crate) struct GroupBuilder {
    draft: Arc<Mutex<Draft>>,
    index: usize,
}

/// `vms_tagged(...)` and `replication_group(...)`'s value, Rhai type `Selector`.
#[derive(Debug, Clone)]
pub(crate) struct SelectorValue(pub Selector);

impl PlanBuilder {
    /// The plan as built so far, with its policies resolved.
    pub fn finish(&self) -> Plan {
        let draft = lock(&self.0);
        let mut plan = draft.plan.clone();
        plan.policy = draft.policy.over(FailurePolicy::default());
        for (group, policy) in plan.groups.iter_mut().zip(&draft.group_policies) {
            group.policy = policy.is_set().then(|| policy.over(plan.policy));
        }
        plan
    }
}

fn lock(draft: &Mutex<Draft>) -> MutexGuard<'_, Draft> {
    draft.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Draft {
    /// A mistake of the call at `at`: reported with the plan's findings.
    fn mistake(&mut self, at: &SourcePos, subject: &str, message: impl Into<String>) {
        let mistake = Mistake { at: at.clone(), subject: subject.to_string(), message: message.into() };
        self.plan.written.mistakes.push(mistake);
    }
}

/// The text of an error a host function raised.
fn message_of(err: &EvalAltResult) -> String {
    match err {
        EvalAltResult::ErrorRuntime(value, _) => value.to_string(),
        other => other.to_string(),
    }
}

/// Where `f`, an action of the group `group` (or of the plan) of `shape`, uses replicas'
/// addresses, as its script shows it: `vm.ip` and `dns::point_vm(vm)` in `post_each`
/// (each VM of the group), `ctx.vm("sql01").ip` anywhere (that VM).
fn address_uses(ctx: &NativeCallContext, f: &FnPtr, shape: Shape, group: Option<usize>) -> Vec<AddressUse> {
    let Ok(host) = host(ctx) else { return Vec::new() };
    let Some((params, uses)) = host.plan.reading.uses_of(f.fn_name()) else { return Vec::new() };
    // Captured variables come first, then the offered arguments: `vm` of `|vm, ctx|`.
    let each_vm = params.get(f.curry().len()).filter(|_| shape == Shape::EachVm);
    uses.iter()
        .filter_map(|usage| {
            let vms = match (&usage.vm, group) {
                (UsedVm::Named(name), _) => UsedVms::Named(name.clone()),
                (UsedVm::Variable(v), Some(group)) if Some(v) == each_vm => UsedVms::EachOfGroup(group),
                (UsedVm::Variable(_), _) => return None,
            };
            Some(AddressUse { vms, what: usage.what.clone(), at: usage.at.clone(), updates_dns: usage.updates_dns })
        })
        .collect()
}

/// What the plan and a group have in common: pre/post actions, manual steps, a policy.
trait Builder: Clone + Send + Sync + 'static {
    const TYPE: &'static str;
    fn draft(&self) -> &Arc<Mutex<Draft>>;
    fn group(&self) -> Option<usize>;

    /// "plan contoso" or "group database", for labels and messages.
    fn describe(&self, draft: &Draft) -> String {
        match self.group() {
            Some(i) => format!("group {}", draft.plan.groups[i].name),
            None => format!("plan {}", draft.plan.name),
        }
    }

    fn add_action(&self, ctx: &NativeCallContext, f: FnPtr, post: bool) -> RhaiResult<Self> {
        let which = if post { "post" } else { "pre" };
        let label = format!("{which} action of {}", self.describe(&lock(self.draft())));
        let made = actions::make(ctx, &f, Shape::Step, label);
        let mut draft = lock(self.draft());
        let step = match made {
            Ok(action) => Step::Action(action),
            Err(e) => {
                draft.mistake(&position(ctx, &*host(ctx)?), which, message_of(&e));
                return Ok(self.clone());
            }
        };
        draft.plan.written.address_uses.extend(address_uses(ctx, &f, Shape::Step, self.group()));
        let steps = match (self.group(), post) {
            (Some(i), false) => &mut draft.plan.groups[i].pre,
            (Some(i), true) => &mut draft.plan.groups[i].post,
            (None, false) => &mut draft.plan.pre,
            (None, true) => &mut draft.plan.post,
        };
        steps.push(step);
        Ok(self.clone())
    }

    fn add_manual(&self, ctx: &NativeCallContext, text: &str, options: Map) -> RhaiResult<Self> {
        let mut options = Options::new("manual", options, &["timeout", "estimate"]);
        let manual = Manual {
            text: text.to_string(),
            timeout: options.duration("timeout").unwrap_or(MANUAL_TIMEOUT),
            estimate: options.duration("estimate").unwrap_or(Duration::ZERO),
            at: position(ctx, &*host(ctx)?),
        };
        let mut draft = lock(self.draft());
        for problem in options.problems {
            draft.mistake(&manual.at, "manual", problem);
        }
        let group = self.group().or_else(|| draft.plan.groups.len().checked_sub(1));
        // The plan's manual steps pause after the groups added so far.
        let steps = match group {
            Some(i) => &mut draft.plan.groups[i].post,
            None => &mut draft.plan.pre,
        };
        steps.push(Step::Manual(manual));
        Ok(self.clone())
    }

    /// Applies `edit`, what the call at `ctx` asked for, to the plan's or the group's
    /// policy; or notes the mistake that stands in its way.
    fn edit_policy(
        &self,
        ctx: &NativeCallContext,
        edit: Result<impl FnOnce(&mut PolicyDraft), String>,
    ) -> RhaiResult<Self> {
        let at = position(ctx, &*host(ctx)?);
        let mut draft = lock(self.draft());
        let edit = match edit {
            Ok(edit) => edit,
            Err(problem) => {
                draft.mistake(&at, ctx.fn_name(), problem);
                return Ok(self.clone());
            }
        };
        match self.group() {
            Some(i) => edit(&mut draft.group_policies[i]),
            None => edit(&mut draft.policy),
        }
        if ctx.fn_name() == "retry" {
            draft.plan.written.retries.push((self.group(), at));
        }
        Ok(self.clone())
    }
}

impl Builder for PlanBuilder {
    const TYPE: &'static str = "Plan";
    fn draft(&self) -> &Arc<Mutex<Draft>> {
        &self.0
    }
    fn group(&self) -> Option<usize> {
        None
    }
}

impl Builder for GroupBuilder {
    const TYPE: &'static str = "Group";
    fn draft(&self) -> &Arc<Mutex<Draft>> {
        &self.draft
    }
    fn group(&self) -> Option<usize> {
        Some(self.index)
    }
}

/// An options map (`#{ timeout: "30m" }`): unknown keys are mistakes, so typos are found.
struct Options {
    what: &'static str,
    map: Map,
    /// What is wrong with the options, each a mistake of the call: it goes on without them.
    problems: Vec<String>,
}

impl Options {
    fn new(what: &'static str, map: Map, allowed: &[&str]) -> Self {
        let problems = map
            .keys()
            .filter(|k| !allowed.contains(&k.as_str()))
            .map(|key| format!("{what}: unknown option {:?} (the options are: {})", key.as_str(), allowed.join(", ")))
            .collect();
        Options { what, map, problems }
    }

    fn string(&mut self, key: &str) -> Option<String> {
        let value = self.map.get(key)?.clone();
        value
            .into_string()
            .map_err(|t| {
                self.problems.push(format!("{}: option {key} must be a string, not {}", self.what, kind_of(t)))
            })
            .ok()
    }

    /// An option the call cannot go on without.
    fn required(&mut self, key: &str) -> RhaiResult<String> {
        let noted = self.problems.len();
        match self.string(key) {
            Some(value) => Ok(value),
            // Not a string: what `string` noted; else missing.
            None if self.problems.len() > noted => Err(self.problems.remove(noted).into()),
            None => Err(format!("{}: option {key} is required", self.what).into()),
        }
    }

    fn duration(&mut self, key: &str) -> Option<Duration> {
        let text = self.string(key)?;
        parse_duration(&text).map_err(|e| self.problems.push(format!("{} {key}: {e}", self.what))).ok()
    }
}

fn recovery_plan(ctx: NativeCallContext, name: &str, options: Map) -> RhaiResult<PlanBuilder> {
    let host = host(&ctx)?;
    if host.hooks.is_some() {
        return Err(format!(
            "recovery_plan({name:?}, ...) cannot be called in a hook script: the scripts drplan.toml lists \
             ([hooks] scripts) only register hooks, with on(event, |ev, ctx| ...), for every plan of the folder; \
             a plan is the .rhai file given to drplan check, dry-run or failover"
        )
        .into());
    }
    let mut options = Options::new("recovery_plan", options, &["source", "target", "rto", "test_network"]);
    let at = position(&ctx, &host);
    let (source, target): (String, String) = (options.required("source")?, options.required("target")?);
    let plan = Plan {
        rto: options.duration("rto"),
        test_network: options.string("test_network"),
        ..Plan::new(name, (&source, &target), at.clone())
    };
    let mut draft = Draft { plan, policy: PolicyDraft::default(), group_policies: Vec::new() };
    for problem in options.problems {
        draft.mistake(&at, "recovery_plan", problem);
    }
    Ok(PlanBuilder(Arc::new(Mutex::new(draft))))
}

/// A group, each member at its VM's name or selector as written in the script when it
/// can be seen there, else at the call.
fn add_group(ctx: NativeCallContext, plan: &mut PlanBuilder, name: &str, members: Dynamic) -> RhaiResult<GroupBuilder> {
    let host = host(&ctx)?;
    let at = position(&ctx, &host);
    let items: Array = if members.is_array() { members.into_array()? } else { vec![members] };
    let count = items.len();
    let in_script = at.file == host.plan.file;
    let mut draft = lock(&plan.0);
    let mut written = Vec::with_capacity(count);
    for (i, item) in items.into_iter().enumerate() {
        let member_at = in_script.then(|| host.plan.reading.member_at(ctx.call_position(), i, count)).flatten();
        let member_at = member_at.unwrap_or_else(|| at.clone());
        match selector_of("group", item) {
            Ok(selector) => written.push(Member { selector, at: member_at }),
            Err(problem) => draft.mistake(&member_at, name, problem),
        }
    }
    let members = written;
    draft.plan.groups.push(Group::new(name, at, members));
    draft.group_policies.push(PolicyDraft::default());
    Ok(GroupBuilder { draft: plan.0.clone(), index: draft.plan.groups.len() - 1 })
}

fn selector_of(what: &str, item: Dynamic) -> Result<Selector, String> {
    let type_name = item.type_name();
    if item.is_string() {
        return item.into_string().map(Selector::Vm).map_err(|t| format!("{what}: a VM name, not {}", kind_of(t)));
    }
    item.try_cast::<SelectorValue>().map(|s| s.0).ok_or_else(|| {
        format!(
            "{what}: a member is a VM name (a string) or a selector (vms_tagged(..), replication_group(..)), not {}",
            kind_of(type_name)
        )
    })
}

/// VM names (a name or an array of names), and what is not one.
fn names_of(what: &str, value: Dynamic) -> (Vec<String>, Vec<String>) {
    let items: Array = if value.is_array() { value.into_array().unwrap_or_default() } else { vec![value] };
    let (mut names, mut problems) = (Vec::new(), Vec::new());
    for item in items {
        match item.into_string() {
            Ok(name) => names.push(name),
            Err(t) => problems.push(format!("{what}: expected VM names (strings), not {}", kind_of(t))),
        }
    }
    (names, problems)
}

fn on_failure_of(text: &str) -> Result<OnFailure, String> {
    match text {
        "stop" => Ok(OnFailure::Stop),
        "continue" => Ok(OnFailure::Continue),
        other => Err(format!("on_failure: expected \"stop\" or \"continue\", not {other:?}")),
    }
}

/// The most retries a plan or group may ask for: retries serve passing trouble, and each
/// doubles the wait before the next (up to the longest duration).
pub(crate) const MAX_RETRIES: u32 = 100;

fn retries_of(retries: INT) -> Result<u32, String> {
    match u32::try_from(retries) {
        Ok(n) if n <= MAX_RETRIES => Ok(n),
        _ => Err(format!("retry: the number of retries must be 0 to {MAX_RETRIES}, not {retries}")),
    }
}

fn register_common<B: Builder>(module: &mut Module) {
    let t = B::TYPE;
    let this = format!("self: {t}");
    let scope = if t == "Plan" { "the plan, before its first group / after its last" } else { "the group" };
    doc_fn("pre", &[&this, "action: FnPtr", t], &format!("Runs `action` (a closure `|ctx| ...`) before {scope}."))
        .set_into_module(module, |ctx: NativeCallContext, b: &mut B, f: FnPtr| b.add_action(&ctx, f, false));
    doc_fn("post", &[&this, "action: FnPtr", t], &format!("Runs `action` (a closure `|ctx| ...`) after {scope}."))
        .set_into_module(module, |ctx: NativeCallContext, b: &mut B, f: FnPtr| b.add_action(&ctx, f, true));
    let manual_doc = if t == "Plan" {
        "A manual step: the run pauses until an operator marks it done (R21).\n\
         It comes after the groups added so far (before the first group when there is none).\n\
         Options: `timeout` (default \"1h\"), `estimate` (what a dry run predicts, default \"0s\")."
    } else {
        "A manual step after the group's VMs are up: the run pauses until an operator marks it done (R21).\n\
         Options: `timeout` (default \"1h\"), `estimate` (what a dry run predicts, default \"0s\")."
    };
    doc_fn("manual", &[&this, "text: String", "options: Map", t], manual_doc)
        .set_into_module(module, |ctx: NativeCallContext, b: &mut B, text: &str, options: Map| {
            b.add_manual(&ctx, text, options)
        });
    doc_fn("manual", &[&this, "text: String", t], manual_doc)
        .set_into_module(module, |ctx: NativeCallContext, b: &mut B, text: &str| b.add_manual(&ctx, text, Map::new()));
    doc_fn(
        "retry",
        &[&this, "retries: int", "backoff: String", t],
        "Retries a failed VM failover or action `retries` times, waiting `backoff` (\"30s\") before the\n\
         first retry and twice as long before each next one.",
    )
    .set_into_module(module, |ctx: NativeCallContext, b: &mut B, retries: INT, backoff: &str| -> RhaiResult<B> {
        let backoff = parse_duration(backoff).map_err(|e| format!("retry: {e}"));
        let retry = retries_of(retries).and_then(|retries| Ok((retries, backoff?)));
        b.edit_policy(&ctx, retry.map(|retry| move |p: &mut PolicyDraft| p.retry = Some(retry)))
    });
    doc_fn(
        "on_failure",
        &[&this, "what: String", t],
        "What a failure does once retries are spent: \"stop\" the plan after this group, or \"continue\".",
    )
    .set_into_module(module, |ctx: NativeCallContext, b: &mut B, what: &str| -> RhaiResult<B> {
        let on_failure = on_failure_of(what);
        b.edit_policy(&ctx, on_failure.map(|on_failure| move |p: &mut PolicyDraft| p.on_failure = Some(on_failure)))
    });
}

pub(super) fn register(module: &mut Module) {
    module.set_custom_type_with_comments::<PlanBuilder>("Plan", &["/// A recovery plan being built."]);
    module.set_custom_type_with_comments::<GroupBuilder>("Group", &["/// A group of a plan: VMs started together."]);
    module.set_custom_type_with_comments::<SelectorValue>("Selector", &["/// VMs named by a rule, for a group."]);

    doc_fn(
        "recovery_plan",
        &["name: String", "options: Map", "Plan"],
        "Starts a recovery plan failing VMs over from `source` to `target` (R20).\n\
         Options: `source`, `target` (site names, required), `rto` (e.g. \"30m\"),\n\
         `test_network` (the isolated network of test failovers, R30).\n\
         The script must end with the plan's value: `plan`.",
    )
    .set_into_module(module, recovery_plan);
    doc_fn(
        "group",
        &["self: Plan", "name: String", "members: ?", "Group"],
        "Adds a group, started after the previous group's VMs are all up (R20).\n\
         `members`: an array of VM names and selectors, or one selector\n\
         (`vms_tagged(\"tier\", \"app\")`, `replication_group(\"sql\")`).",
    )
    .set_into_module(module, add_group);
    register_common::<PlanBuilder>(module);
    register_common::<GroupBuilder>(module);

    doc_fn(
        "on",
        &["self: Plan", "event: String", "action: FnPtr", "Plan"],
        "Runs `action` (`|ev| ...` or `|ev, ctx| ...`) whenever `event` happens: an event kind\n\
         (\"vm.failed\") or a prefix with a wildcard (\"vm.*\"). `ev` has kind, group, vm, error.",
    )
    .set_into_module(
        module,
        |ctx: NativeCallContext, plan: &mut PlanBuilder, event: &str, f: FnPtr| -> RhaiResult<PlanBuilder> {
            let hook = super::hooks::make(&ctx, event, f, format!("hook on {event}"));
            let mut draft = lock(&plan.0);
            match hook {
                Ok(hook) => draft.plan.hooks.push(hook),
                Err(e) => draft.mistake(&position(&ctx, &*host(&ctx)?), "on", message_of(&e)),
            }
            Ok(plan.clone())
        },
    );
    doc_fn(
        "update_dns",
        &["self: Plan", "Plan"],
        "R50: as each VM comes up, points its DNS names (from the site file) at the replica's\n\
         address and verifies the authoritative server answers with it. In a test failover\n\
         only the test zone is touched.",
    )
    .set_into_module(module, |plan: &mut PlanBuilder| -> PlanBuilder {
        lock(&plan.0).plan.update_dns = true;
        plan.clone()
    });
    doc_fn(
        "post_each",
        &["self: Group", "action: FnPtr", "Group"],
        "Runs `action` (`|vm, ctx| ...`) for each VM of the group as soon as that VM is up.",
    )
    .set_into_module(
        module,
        |ctx: NativeCallContext, group: &mut GroupBuilder, f: FnPtr| -> RhaiResult<GroupBuilder> {
            let label = format!("post_each action of {}", group.describe(&lock(&group.draft)));
            let made = actions::make(&ctx, &f, Shape::EachVm, label);
            let mut draft = lock(&group.draft);
            match made {
                Ok(action) => {
                    draft.plan.groups[group.index].post_each.push(action);
                    let uses = address_uses(&ctx, &f, Shape::EachVm, Some(group.index));
                    draft.plan.written.address_uses.extend(uses);
                }
                Err(e) => draft.mistake(&position(&ctx, &*host(&ctx)?), "post_each", message_of(&e)),
            }
            Ok(group.clone())
        },
    );
    doc_fn(
        "optional",
        &["self: Group", "vms: ?", "Group"],
        "VMs (a name or an array of names) whose failure does not stop the plan.",
    )
    .set_into_module(
        module,
        |ctx: NativeCallContext, group: &mut GroupBuilder, vms: Dynamic| -> RhaiResult<GroupBuilder> {
            let (names, problems) = names_of("optional", vms);
            let mut draft = lock(&group.draft);
            for problem in problems {
                draft.mistake(&position(&ctx, &*host(&ctx)?), "optional", problem);
            }
            draft.plan.groups[group.index].optional.extend(names);
            Ok(group.clone())
        },
    );
}
