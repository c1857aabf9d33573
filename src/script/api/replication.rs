//! Replication status (R15) from scripts: where a VM's replication stands, its latest
//! recovery point, RPO and health.

use rhai::{Dynamic, INT, Map, Module, NativeCallContext};

use crate::fabric::{Health, ReplicationStatus};
use crate::model::format_time;
use crate::script::host::{RhaiResult, doc_fn, running, text_or_unit};

fn status_map(status: &ReplicationStatus) -> Map {
    let health = match status.health {
        Health::Healthy => "healthy",
        Health::Unhealthy { .. } => "unhealthy",
        Health::NotReplicating => "not-replicating",
        Health::InitialReplication => "initial-replication",
    };
    let mut map = Map::new();
    map.insert("state".into(), status.state.clone().into());
    map.insert("active_site".into(), status.active_site.clone().into());
    map.insert("policy".into(), text_or_unit(status.policy.as_ref()));
    map.insert("latest_point".into(), text_or_unit(status.latest_point.map(|p| format_time(p.time))));
    let rpo = status.rpo.map(|rpo| INT::try_from(rpo.as_secs()).unwrap_or(INT::MAX));
    map.insert("rpo_seconds".into(), rpo.map_or(Dynamic::UNIT, Dynamic::from));
    map.insert("health".into(), health.into());
    map
}

pub(super) fn register(module: &mut Module) {
    doc_fn(
        "replication_status",
        &["vm: String", "Map"],
        "A VM's replication (R15): state, active_site, policy, latest_point (RFC 3339 or ()),\n\
         rpo_seconds (or ()), health (\"healthy\", \"unhealthy\", \"not-replicating\", \"initial-replication\").",
    )
    .set_into_module(module, |ctx: NativeCallContext, vm: &str| -> RhaiResult<Map> {
        let run = running(&ctx)?;
        let status = run.block_on("replication_status", run.services().replication_status(vm))?;
        Ok(status_map(&status))
    });
}
