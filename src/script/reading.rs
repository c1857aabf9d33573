//! Reading a compiled script for what it shows as written, before it runs: where each
//! member of a `plan.group(...)` call is written, which closures capture which variables,
//! and, for the plan's checks (`plan::Written`), the literal arguments of calls inside
//! actions: waits, DNS names, uses of a replica's address. Only what is written as a
//! literal can be seen; a value computed while the plan runs is not checked.
//!
//! The AST is read as parsed, before the optimizer folds an array of constants into one
//! value and with it the positions of its items (see `run_script`).

use std::collections::HashMap;
use std::sync::Arc;

use rhai::{AST, ASTNode, Expr, FnCallExpr, Position, Stmt};

use super::error::pos_in;
use crate::plan::{SourcePos, WrittenName, WrittenWait};

/// The stdlib module whose functions update DNS, as imported: `import "dns" as dns;`.
const DNS_MODULE: &str = "dns";
/// Functions of the `dns` module, and host functions, whose first argument is a DNS name
/// they update or check (R50).
const DNS_NAME_CALLS: &[&str] = &["point", "cname", "verify", "verify_cname"];
const HOST_DNS_NAME_CALLS: &[&str] = &["dns_point", "dns_cname", "dns_verify", "dns_verify_cname"];
/// Functions of the `dns` module that take a VM and update (or check) its DNS names.
const DNS_VM_CALLS: &[&str] = &["point_vm", "verify_vm"];

/// What one script shows as written.
#[derive(Debug, Default)]
pub(crate) struct Reading {
    /// The script's name in positions.
    file: Arc<str>,
    /// By the position of a `group(...)` call: where its members are written.
    members: HashMap<Position, Members>,
    /// Calls given a closure that captures variables, in the order written.
    captures: Vec<Capture>,
    pub waits: Vec<WrittenWait>,
    pub dns_names: Vec<WrittenName>,
    /// By function name (closures included): its parameters and what it does with
    /// replicas' addresses.
    functions: HashMap<String, Function>,
}

/// Where the members of one `group(...)` call are written.
#[derive(Debug)]
enum Members {
    /// An array literal: each item.
    Each(Vec<Position>),
    /// A call, such as a selector (`vms_tagged("tier", "web")`): the call.
    All(Position),
    /// Anything else (a variable): where the group is added, the call.
    Unseen,
}

/// A call given a closure that captures variables: `plan.pre(|ctx| plan.name)`.
#[derive(Debug)]
struct Capture {
    /// The function called (`pre`).
    call: String,
    /// The variable the call is made on, when it is one (`plan`).
    receiver: Option<String>,
    /// The captured variables, each where the closure first uses it.
    captured: Vec<(String, Position)>,
}

#[derive(Debug, Default)]
struct Function {
    params: Vec<String>,
    uses: Vec<Use>,
}

/// A use of a replica's address in a function.
#[derive(Debug, Clone)]
pub(crate) struct Use {
    pub vm: UsedVm,
    /// As written: `vm.ip`, `dns::point_vm(vm)`.
    pub what: String,
    pub at: SourcePos,
    /// It points the VM's DNS names at the address.
    pub updates_dns: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UsedVm {
    /// The VM a variable holds: a `post_each` closure's `vm` parameter.
    Variable(String),
    /// A VM named by a literal: `ctx.vm("sql01")`.
    Named(String),
}

impl Reading {
    /// Reads `ast`, the script `file` as parsed.
    pub fn new(file: Arc<str>, ast: &AST) -> Self {
        let mut reading = Reading { file, ..Reading::default() };
        let dns_aliases = dns_aliases(ast);
        let mut uses: Vec<(Position, Use)> = Vec::new();
        ast.walk(&mut |path: &[ASTNode]| {
            if let Some(ASTNode::Expr(expr)) = path.last() {
                reading.expr(expr, path, &dns_aliases, &mut uses);
            }
            true
        });
        // Each use belongs to the innermost function whose body holds it.
        let spans: Vec<(String, Position, Position)> = ast
            .iter_fn_def()
            .map(|f| {
                let params = f.params.iter().map(ToString::to_string).collect();
                reading.functions.insert(f.name.to_string(), Function { params, uses: Vec::new() });
                (f.name.to_string(), f.body.start_position(), f.body.end_position())
            })
            .collect();
        for (pos, usage) in uses {
            let holder = spans
                .iter()
                .filter(|(_, start, end)| *start <= pos && (end.is_none() || pos <= *end))
                .max_by_key(|(_, start, _)| *start);
            if let Some((name, ..)) = holder
                && let Some(function) = reading.functions.get_mut(name)
            {
                function.uses.push(usage);
            }
        }
        reading
    }

    fn at(&self, pos: Position) -> SourcePos {
        pos_in(&self.file, pos)
    }

    fn expr(&mut self, expr: &Expr, path: &[ASTNode], dns: &[String], uses: &mut Vec<(Position, Use)>) {
        match expr {
            Expr::MethodCall(call, pos) => {
                if call.name == "group" && call.args.len() == 2 {
                    self.members.insert(*pos, members(&call.args[1]));
                }
                self.capture(call, receiver(path));
            }
            Expr::FnCall(call, pos) => {
                if call.namespace.is_empty() && call.name == "group" && call.args.len() == 3 {
                    self.members.insert(*pos, members(&call.args[2]));
                }
                let receiver = match call.args.first() {
                    Some(Expr::Variable(v, ..)) => Some(v.1.to_string()),
                    _ => None,
                };
                self.capture(call, receiver);
                self.call(call, dns, uses);
            }
            Expr::Dot(binary, ..) => {
                if let Some(usage) = self.address_use(&binary.lhs, &binary.rhs) {
                    uses.push(usage);
                }
            }
            _ => {}
        }
    }

    /// `f(.., |x| uses(v), ..)`: a closure argument capturing variables.
    fn capture(&mut self, call: &FnCallExpr, receiver: Option<String>) {
        for arg in &call.args {
            let Expr::Stmt(block) = arg else { continue };
            let Some(Stmt::Share(shared)) = block.statements().first() else { continue };
            let captured = shared.iter().map(|(ident, _)| (ident.name.to_string(), ident.pos)).collect();
            self.captures.push(Capture { call: call.name.to_string(), receiver: receiver.clone(), captured });
        }
    }

    /// Waits with a literal duration, DNS names written as literals, and DNS calls on a VM.
    fn call(&mut self, call: &FnCallExpr, dns: &[String], uses: &mut Vec<(Position, Use)>) {
        let name = call.name.as_str();
        let namespace = call.namespace.to_string();
        let of_dns = !namespace.is_empty() && dns.contains(&namespace);
        let literal = |i: usize| match call.args.get(i) {
            Some(Expr::StringConstant(text, pos)) => Some((text.to_string(), *pos)),
            _ => None,
        };
        let label = if namespace.is_empty() { name.to_string() } else { format!("{namespace}::{name}") };
        if namespace.is_empty() {
            let duration = match (name, call.args.len()) {
                ("wait", 1) => literal(0),
                ("wait_port", 3) => literal(2),
                _ => None,
            };
            if let Some((duration, pos)) = duration {
                self.waits.push(WrittenWait { call: label.clone(), duration, at: self.at(pos) });
            }
        }
        if (of_dns && DNS_NAME_CALLS.contains(&name)) || (namespace.is_empty() && HOST_DNS_NAME_CALLS.contains(&name)) {
            if let Some((written, pos)) = literal(0) {
                self.dns_names.push(WrittenName { call: label, name: written, at: self.at(pos) });
            }
        } else if of_dns && DNS_VM_CALLS.contains(&name) {
            let vm = match call.args.first() {
                Some(Expr::Variable(v, _, pos)) if v.2.is_empty() => Some((UsedVm::Variable(v.1.to_string()), *pos)),
                Some(Expr::Dot(binary, ..)) => named_vm(&binary.rhs).or_else(|| named_vm(&binary.lhs)),
                _ => None,
            };
            if let Some((vm, pos)) = vm {
                let what = match &vm {
                    UsedVm::Variable(v) => format!("{label}({v})"),
                    UsedVm::Named(n) => format!("{label}(ctx.vm({n:?}))"),
                };
                uses.push((pos, Use { vm, what, at: self.at(pos), updates_dns: true }));
            }
        }
    }

    /// `vm.ip` (a variable's) or `ctx.vm("sql01").ip` (a named VM's).
    fn address_use(&self, lhs: &Expr, rhs: &Expr) -> Option<(Position, Use)> {
        let ip = match rhs {
            Expr::Property(p, _) => p.2 == "ip",
            Expr::Dot(next, ..) => matches!(&next.lhs, Expr::Property(p, _) if p.2 == "ip"),
            _ => false,
        };
        if !ip {
            return None;
        }
        let (vm, pos, what) = match lhs {
            Expr::Variable(v, _, pos) if v.2.is_empty() => {
                (UsedVm::Variable(v.1.to_string()), *pos, format!("{}.ip", v.1))
            }
            _ => {
                let (vm, pos) = named_vm(lhs)?;
                let UsedVm::Named(name) = &vm else { return None };
                let what = format!("ctx.vm({name:?}).ip");
                (vm, pos, what)
            }
        };
        Some((pos, Use { vm, what, at: self.at(pos), updates_dns: false }))
    }

    /// Where the members of the `group(...)` call at `call` are written: item `i` of
    /// `count` members; `None` when the call is not in this script.
    pub fn member_at(&self, call: Position, i: usize, count: usize) -> Option<SourcePos> {
        match self.members.get(&call)? {
            Members::Each(items) if items.len() == count => Some(self.at(items[i])),
            Members::All(pos) => Some(self.at(*pos)),
            Members::Each(_) | Members::Unseen => None,
        }
    }

    /// The uses of replicas' addresses by the function `name`, with its parameters.
    pub fn uses_of(&self, name: &str) -> Option<(&[String], &[Use])> {
        self.functions.get(name).map(|f| (f.params.as_slice(), f.uses.as_slice()))
    }

    /// Where a closure given to `call` captures the variable the call is made on (the
    /// data race Rhai reports as "argument #1 of function 'pre'"), or else any variable:
    /// the variable and where the closure uses it.
    pub fn captured_in(&self, call: &str) -> Option<(&str, SourcePos)> {
        let of_call = || self.captures.iter().filter(|c| c.call == call);
        let receiver = of_call().find_map(|c| {
            let receiver = c.receiver.as_deref()?;
            c.captured.iter().find(|(name, _)| name == receiver)
        });
        let (name, pos) = receiver.or_else(|| of_call().find_map(|c| c.captured.first()))?;
        Some((name.as_str(), self.at(*pos)))
    }
}

/// The aliases the script imports the stdlib's `dns` module as.
fn dns_aliases(ast: &AST) -> Vec<String> {
    let mut aliases = Vec::new();
    ast.walk(&mut |path: &[ASTNode]| {
        if let Some(ASTNode::Stmt(Stmt::Import(import, _))) = path.last()
            && matches!(&import.0, Expr::StringConstant(module, _) if module == DNS_MODULE)
        {
            aliases.push(import.1.name.to_string());
        }
        true
    });
    aliases
}

fn members(arg: &Expr) -> Members {
    match arg {
        Expr::Array(items, _) => Members::Each(items.iter().map(Expr::start_position).collect()),
        Expr::FnCall(..) | Expr::MethodCall(..) => Members::All(arg.start_position()),
        _ => Members::Unseen,
    }
}

/// The variable a method call's chain starts from: `plan` in `plan.group(..).post(..)`.
fn receiver(path: &[ASTNode]) -> Option<String> {
    let chain = path.iter().rev().skip(1).take_while(|node| matches!(node, ASTNode::Expr(Expr::Dot(..))));
    match chain.last()? {
        ASTNode::Expr(Expr::Dot(binary, ..)) => match &binary.lhs {
            Expr::Variable(v, ..) => Some(v.1.to_string()),
            _ => None,
        },
        _ => None,
    }
}

/// `vm("sql01")` (a method call with a literal name) at the head of `expr`.
fn named_vm(expr: &Expr) -> Option<(UsedVm, Position)> {
    let call = match expr {
        Expr::MethodCall(call, _) => call,
        Expr::Dot(binary, ..) => return named_vm(&binary.lhs),
        _ => return None,
    };
    match (call.name.as_str(), call.args.first()) {
        ("vm", Some(Expr::StringConstant(name, pos))) if call.args.len() == 1 => {
            Some((UsedVm::Named(name.to_string()), *pos))
        }
        _ => None,
    }
}
