//! `plan.update_dns()` (R50): the step the engine runs for each VM as soon as it is up,
//! pointing the VM's DNS names at its replica's address and verifying the answer. It is
//! an action like any other, so retries, events, the journal and resume apply.

use async_trait::async_trait;

use crate::plan::{Action, ActionContext, ActionError, SourcePos};

pub struct AutoDns {
    pub at: SourcePos,
}

#[async_trait]
impl Action for AutoDns {
    fn at(&self) -> &SourcePos {
        &self.at
    }

    fn label(&self) -> String {
        "update DNS (plan.update_dns)".into()
    }

    async fn run(&self, ctx: ActionContext) -> Result<(), ActionError> {
        let fail = |message: String| ActionError { message, at: Some(self.at.clone()) };
        let name = ctx.vm.as_deref().ok_or_else(|| fail("update_dns runs for a VM".into()))?;
        let vm = ctx.vms.get(name).ok_or_else(|| fail(format!("{name} is not in the plan")))?;
        if vm.dns.is_empty() {
            return Ok(());
        }
        let ip = vm.ip.ok_or_else(|| {
            fail(format!(
                "{name} has no address on the recovery site (not connected, R10): its DNS names cannot follow"
            ))
        })?;
        for record in &vm.dns {
            ctx.services.dns_point(record, ip).await.map_err(&fail)?;
            ctx.services.dns_verify(record, ip).await.map_err(&fail)?;
        }
        Ok(())
    }
}
