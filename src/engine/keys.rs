//! Every key a run writes, in one place. Step keys name a step within the plan
//! (`group/database/post/0`): the journal matches them to know what a resumed run has
//! done. Idempotency keys name one fabric call of one run (`RUN/vm/web01/failover/2`):
//! the fabric does the work once per key. Both are stored, so their shape is a format.

/// A step of the plan's own pre- or post-steps (`plan/pre`, `plan/post`).
pub fn plan_steps(phase: &str) -> String {
    format!("plan/{phase}")
}

/// A group, done once all of it succeeded.
pub fn group(name: &str) -> String {
    format!("group/{name}")
}

/// The steps before or after a group's VMs (`group/database/pre`).
pub fn group_steps(group: &str, phase: &str) -> String {
    format!("group/{group}/{phase}")
}

/// One step of a list of steps.
pub fn step(list: &str, index: usize) -> String {
    format!("{list}/{index}")
}

/// A VM's failover, as a step of the plan.
pub fn vm_failover(vm: &str) -> String {
    format!("vm/{vm}/failover")
}

/// R50: a VM's DNS names following its replica (`plan.update_dns()`).
pub fn vm_dns(vm: &str) -> String {
    format!("vm/{vm}/dns")
}

/// A group's per-VM action for one VM (`post_each`).
pub fn vm_each(vm: &str, index: usize) -> String {
    format!("vm/{vm}/each/{index}")
}

/// R37: a failback's commit or reprotect of one VM (`vm/web01/commit`).
pub fn vm_cycle(vm: &str, operation: &str) -> String {
    format!("vm/{vm}/{operation}")
}

/// A hook's run for one event.
pub fn hook(event: &str, seq: u64) -> String {
    format!("hook/{event}/{seq}")
}

/// The idempotency key of a VM's failover attempt.
pub fn failover_call(run: &str, vm: &str, attempt: u32) -> String {
    format!("{run}/vm/{vm}/failover/{attempt}")
}

/// The idempotency key of a run's one-off call on a VM (`RUN/vm/web01/cancel`).
pub fn vm_call(run: &str, vm: &str, operation: &str) -> String {
    format!("{run}/vm/{vm}/{operation}")
}

/// The idempotency key of the `n`th call a step's script makes on a VM.
pub fn script_call(run: &str, step: &str, vm: &str, operation: &str, n: u32) -> String {
    format!("{run}/{step}/{vm}/{operation}/{n}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_the_shapes_stored_runs_have() {
        assert_eq!(step(&group_steps("database", "post"), 0), "group/database/post/0");
        assert_eq!(failover_call("20260105-080000-1a2b", "web01", 2), "20260105-080000-1a2b/vm/web01/failover/2");
        assert_eq!(vm_call("r1", "web01", "cancel"), "r1/vm/web01/cancel");
    }
}
