//! The recovery cycle, one VM at a time, for actions and hooks (R22, R30-R38): fail a VM
//! over, change its point, commit, cancel, clean up, reprotect, fail back, shut down,
//! start. The same checks as the commands apply: a refusal fails the action with the
//! fabric's message, which says what to do instead. A dry run acts on its scratch copy.

use rhai::{Module, NativeCallContext};

use crate::model::{FailoverKind, PointChoice};
use crate::plan::VmOperation;
use crate::script::host::{RhaiResult, doc_fn, running};

fn kind(text: &str) -> RhaiResult<FailoverKind> {
    match text {
        "test" => Ok(FailoverKind::Test),
        "planned" => Ok(FailoverKind::Planned),
        "unplanned" => Ok(FailoverKind::Unplanned),
        other => Err(format!("failover_vm: kind {other:?} is not test, planned or unplanned").into()),
    }
}

fn point(function: &str, text: &str) -> RhaiResult<PointChoice> {
    text.parse().map_err(|e| format!("{function}: {e}").into())
}

fn operate(ctx: &NativeCallContext, function: &str, vm: &str, operation: VmOperation) -> RhaiResult<String> {
    let run = running(ctx)?;
    run.block_on(function, run.services().operate(vm, operation))
}

/// A primitive with no argument but the VM: its name, its doc, the operation it makes.
type Primitive = (&'static str, &'static str, fn() -> VmOperation);

pub(super) fn register(module: &mut Module) {
    doc_fn(
        "failover_vm",
        &["vm: String", "kind: String", "String"],
        "Fails one VM over (R22): kind \"test\", \"planned\" or \"unplanned\", at the latest point.\n\
         Returns where it landed. Inside actions only.",
    )
    .set_into_module(module, |ctx: NativeCallContext, vm: &str, k: &str| -> RhaiResult<String> {
        let operation = VmOperation::Failover { kind: kind(k)?, point: PointChoice::Latest };
        operate(&ctx, "failover_vm", vm, operation)
    });
    doc_fn(
        "failover_vm",
        &["vm: String", "kind: String", "point: String", "String"],
        "Fails one VM over at a chosen point (R33): latest, latest-processed, latest-app-consistent\n\
         or an RFC 3339 time.",
    )
    .set_into_module(module, |ctx: NativeCallContext, vm: &str, k: &str, p: &str| -> RhaiResult<String> {
        let operation = VmOperation::Failover { kind: kind(k)?, point: point("failover_vm", p)? };
        operate(&ctx, "failover_vm", vm, operation)
    });
    doc_fn(
        "change_point_vm",
        &["vm: String", "point: String", "String"],
        "Moves an uncommitted failover of a VM to another recovery point (R34).",
    )
    .set_into_module(module, |ctx: NativeCallContext, vm: &str, p: &str| -> RhaiResult<String> {
        operate(&ctx, "change_point_vm", vm, VmOperation::ChangePoint(point("change_point_vm", p)?))
    });
    doc_fn(
        "cleanup_vm",
        &["vm: String", "notes: String", "String"],
        "Ends a VM's test failover, keeping the notes (R30).",
    )
    .set_into_module(module, |ctx: NativeCallContext, vm: &str, notes: &str| -> RhaiResult<String> {
        operate(&ctx, "cleanup_vm", vm, VmOperation::Cleanup(notes.into()))
    });
    let simple: [Primitive; 6] = [
        ("commit_vm", "Makes a VM's failover final (R34).", || VmOperation::Commit),
        ("cancel_vm", "Stops a VM's failover under way; it will need reprotect (R35).", || VmOperation::Cancel),
        ("reprotect_vm", "Replicates a VM from where it runs back to the other site (R36).", || VmOperation::Reprotect),
        ("failback_vm", "Brings a reprotected VM back to its original site (R37, R38).", || VmOperation::Failback),
        ("shutdown_vm", "Shuts a VM down where it runs.", || VmOperation::Shutdown),
        ("start_vm", "Starts a VM where it runs.", || VmOperation::Start),
    ];
    for (name, doc, make) in simple {
        doc_fn(name, &["vm: String", "String"], doc)
            .set_into_module(module, move |ctx: NativeCallContext, vm: &str| -> RhaiResult<String> {
                operate(&ctx, name, vm, make())
            });
    }
}
