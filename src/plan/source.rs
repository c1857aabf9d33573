//! Where something was written: a position in a plan script, so that every finding and
//! every failure can point the operator at file:line:column; and what a plan's files
//! show beyond the plan's data (`Written`), for the checks that need it.

use std::fmt;
use std::sync::Arc;

use serde::{Serialize, Serializer};

use crate::model::snippet::Location;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourcePos {
    /// The file as the operator named it (e.g. `plans/contoso/failover.rhai`).
    pub file: Arc<str>,
    /// 1-based; 0 when unknown.
    pub line: usize,
    pub column: usize,
}

impl SourcePos {
    pub fn new(file: impl Into<Arc<str>>, line: usize, column: usize) -> Self {
        SourcePos { file: file.into(), line, column }
    }
}

impl SourcePos {
    /// As diagnostics show it: `file:line:column`, or less when unknown.
    pub fn location(&self) -> Location<'_> {
        Location { file: &self.file, line: self.line, column: self.column }
    }
}

impl fmt::Display for SourcePos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.location().fmt(f)
    }
}

impl Serialize for SourcePos {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// What a plan's files show beyond the plan's data, for the checks that need it
/// (`validate`): read by the script layer from the text of the plan's scripts where it
/// can see it (a literal argument, not a value computed while the plan runs), and from
/// the folder's `drplan.toml`. The engine does not use it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    /// Calls in actions that block the run for a duration written as a literal.
    pub waits: Vec<WrittenWait>,
    /// DNS names written as literals in calls that update or check DNS (R50).
    pub dns_names: Vec<WrittenName>,
    /// Where actions need a replica's address.
    pub address_uses: Vec<AddressUse>,
    /// Where `retry(...)` was called: on the plan (`None`) or on a group (its index).
    pub retries: Vec<(Option<usize>, SourcePos)>,
    /// What the folder's `drplan.toml` says about DNS, which R50's check holds the
    /// plan's DNS names to.
    pub dns: DnsSetting,
    /// Mistakes in calls that built the plan (a bad option, a bad duration): the script
    /// went on without what the call asked for, and they are errors of the plan, reported
    /// with validation's findings so that the operator sees every one at once.
    pub mistakes: Vec<Mistake>,
}

/// `wait("1000d")`: a call that blocks for a written duration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenWait {
    /// The function: `wait`, or `wait_port` (which may wait its whole timeout).
    pub call: String,
    /// The duration as written, parsed by the check.
    pub duration: String,
    pub at: SourcePos,
}

/// `dns::point("www.contoso.test", ip)`: a DNS name a call updates or checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenName {
    /// The function, as written (`dns::point`, `dns_cname`).
    pub call: String,
    pub name: String,
    /// Where the name is written.
    pub at: SourcePos,
}

/// An action needs the address of a plan's VMs: `wait_port(vm.ip, ...)` in `post_each`,
/// `ctx.vm("sql01").ip`, `dns::point_vm(vm)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressUse {
    pub vms: UsedVms,
    /// What uses it, as written: `vm.ip`, `dns::point_vm(vm)`.
    pub what: String,
    pub at: SourcePos,
    /// The use points the VM's DNS names (from the site file) at the address (R50).
    pub updates_dns: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsedVms {
    /// Each VM of the group of this index: a `post_each` action's `vm`.
    EachOfGroup(usize),
    /// One VM, by name.
    Named(String),
}

/// A mistake in a call that built the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mistake {
    pub at: SourcePos,
    /// What it is about: the function called (`retry`), or what the call names.
    pub subject: String,
    pub message: String,
}

/// What the folder's `drplan.toml` says about DNS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum DnsSetting {
    /// No `[dns]`: a real run that changes DNS is refused.
    #[default]
    Missing,
    /// `mode = "record"`: changes are recorded and nothing is sent, so no zone needs a server.
    Recorded,
    /// The zones the `[dns]` servers serve (lowercase, without final dots).
    Served(Vec<String>),
}
