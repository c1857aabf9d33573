//! `drplan protect` and `drplan unprotect`: enabling and disabling protection of VMs.

use super::context::{Session, call, confirm};
use super::error::CliError;

/// Runs `op` on every VM, reporting each; fails if any failed, after trying all.
async fn each_vm<F, Fut>(vms: &[String], op: F) -> Result<String, CliError>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Result<String, crate::fabric::FabricError>>,
{
    let mut out = String::new();
    let mut failed = 0;
    for vm in vms {
        match op(vm.clone()).await {
            Ok(line) => out.push_str(&format!("{vm}: {line}\n")),
            Err(e) => {
                failed += 1;
                eprintln!("error: {e}");
            }
        }
    }
    super::print_output(&out).map_err(CliError::Output)?;
    if failed > 0 { Err(CliError::SomeFailed { failed, total: vms.len() }) } else { Ok(String::new()) }
}

pub async fn protect(
    global: &super::args::Global,
    vms: &[String],
    policy: &str,
    exclude: &[String],
) -> Result<String, CliError> {
    let session = Session::open(global, None)?;
    confirm(global, &format!("Enable protection of {} with policy {policy}?", vms.join(", ")))?;
    let fabric = session.fabric();
    each_vm(vms, |vm| async move {
        let job = fabric.protect(&call(fabric, "protect", &vm), &vm, policy, exclude).await?;
        Ok(format!("protection enabled ({}; job {})", job.detail, job.id))
    })
    .await
}

pub async fn unprotect(global: &super::args::Global, vms: &[String], delete_replica: bool) -> Result<String, CliError> {
    let session = Session::open(global, None)?;
    let what = if delete_replica { " and delete their replicas" } else { "" };
    confirm(global, &format!("Disable protection of {}{what}?", vms.join(", ")))?;
    let fabric = session.fabric();
    each_vm(vms, |vm| async move {
        let job = fabric.unprotect(&call(fabric, "unprotect", &vm), &vm, delete_replica).await?;
        Ok(format!("{} (job {})", job.detail, job.id))
    })
    .await
}
