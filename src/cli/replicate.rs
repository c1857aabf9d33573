//! `drplan replicate`: the replication service of libvirt sites. For each protected VM,
//! the initial full copy (R4), then an incremental copy at its policy's copy frequency
//! (R1), each a recovery point kept for the retention window (R2). It runs in the
//! foreground until interrupted (docs/libvirt.md has a systemd unit), or makes one pass
//! with `--once`. It takes no lock on the state directory: commands run beside it, and a
//! failover takes its VMs from it one by one.
//!
//! Health changes (R15) are events for the global hook scripts of the site file's
//! folder (`drplan.toml`): `on("replication.unhealthy", |ev| ...)`, with `ev.vm` and the
//! reason in `ev.error`; also `replication.healthy` and `replication.initial-copy-done`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::args::Global;
use super::context::{load_inventory, site_path};
use super::error::CliError;
use crate::fabric::libvirt::LibvirtFabric;
use crate::fabric::libvirt::replication::{Cycle, ServiceEvent};
use crate::fabric::{Fabric, ReplicationStatus};
use crate::model::{FailoverKind, Timestamp};
use crate::plan::Hook;
use crate::plan::action::{ActionContext, Direction, EventView, Services, VmBoard, VmOperation};
use crate::script::{ScriptOptions, load_folder_hooks};

pub fn replicate(global: &Global, once: bool) -> Result<String, CliError> {
    let site = site_path(global, None)?;
    let inventory = Arc::new(load_inventory(&site)?);
    if !LibvirtFabric::serves(&inventory) {
        return Err(CliError::Usage(
            "drplan replicate copies real VMs between libvirt sites; this site file's sites are simulated, whose replication is modelled (drplan status shows it)".into(),
        ));
    }
    let folder = site.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let hooks = Arc::new(load_folder_hooks(folder, inventory.clone(), &ScriptOptions::default())?);
    let fabric = Arc::new(LibvirtFabric::open(inventory, &global.state(None))?);
    let runtime = super::runs::runtime()?;
    let (events, mut received) = tokio::sync::mpsc::unbounded_channel::<(String, &'static str, String)>();
    let hook_runner = runtime.spawn({
        let (fabric, hooks) = (fabric.clone(), hooks.clone());
        async move {
            while let Some((vm, event, detail)) = received.recv().await {
                run_hooks(&fabric, &hooks, &vm, event, &detail).await;
            }
        }
    });
    let (mut failures, mut cycles) = (0, 0);
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let served = runtime.block_on(fabric.serve(once, stop, |event| match event {
        ServiceEvent::Cycle { vm, outcome: Ok(Cycle::Skipped(why)) } => tracing::debug!(vm, "{why}"),
        ServiceEvent::Cycle { vm, outcome: Ok(cycle) } => {
            cycles += 1;
            eprintln!("{vm}: {cycle}");
        }
        ServiceEvent::Cycle { vm, outcome: Err(e) } => {
            failures += 1;
            eprintln!("{vm}: replication failed: {e}");
        }
        ServiceEvent::Health { vm, change, detail } => {
            let event = change.event();
            eprintln!("{vm}: {event}{}", if detail.is_empty() { String::new() } else { format!(": {detail}") });
            let _ = events.send((vm.to_string(), event, detail));
        }
    }));
    drop(events);
    // The hooks of the last events run before the service exits.
    let _ = runtime.block_on(hook_runner);
    served?;
    if failures > 0 {
        return Err(CliError::SomeFailed { failed: failures, total: failures + cycles });
    }
    Ok(if once { format!("{cycles} copy cycle(s) done\n") } else { String::new() })
}

/// Runs the hooks that select `event`, in order; a failing hook is reported, and the
/// service goes on.
async fn run_hooks(fabric: &Arc<LibvirtFabric>, hooks: &[Hook], vm: &str, event: &str, detail: &str) {
    let selected: Vec<&Hook> = hooks.iter().filter(|h| h.selects(event)).collect();
    if selected.is_empty() {
        return;
    }
    let inventory = fabric.inventory();
    let source = inventory.vm(vm).map(|v| v.site.clone()).unwrap_or_default();
    let target =
        inventory.vm(vm).and_then(|v| inventory.recovery_site_of(v)).map(|s| s.name.clone()).unwrap_or_default();
    let context = ActionContext {
        run_id: "replicate".into(),
        plan: "replicate".into(),
        kind: FailoverKind::Planned,
        source,
        target,
        direction: Direction::Failover,
        dry_run: false,
        group: None,
        vm: Some(vm.into()),
        vms: Arc::new(VmBoard::new(BTreeMap::new())),
        test_network: None,
        event: Some(EventView {
            kind: event.into(),
            group: None,
            vm: Some(vm.into()),
            error: (!detail.is_empty()).then(|| detail.into()),
        }),
        services: Arc::new(ServiceWorld { fabric: fabric.clone() }),
    };
    for hook in selected {
        if let Err(e) = hook.action.run(context.clone()).await {
            eprintln!("{vm}: the hook on {event} at {} failed: {e}", hook.action.at());
        }
    }
}

/// What a hook of the replication service may do: log, read replication status, wait,
/// probe a port. Failover primitives and DNS belong to runs, not to the service.
struct ServiceWorld {
    fabric: Arc<LibvirtFabric>,
}

fn not_here(what: &str) -> String {
    format!("{what} is not available to replication hooks: it belongs to a run of a plan")
}

#[async_trait]
impl Services for ServiceWorld {
    fn now(&self) -> Timestamp {
        self.fabric.now()
    }

    fn log(&self, message: &str) {
        eprintln!("{message}");
        tracing::info!(target: "drplan::hooks", "{message}");
    }

    async fn dns_point(&self, _name: &str, _ip: Ipv4Addr) -> Result<(), String> {
        Err(not_here("dns::point"))
    }

    async fn dns_verify(&self, _name: &str, _ip: Ipv4Addr) -> Result<(), String> {
        Err(not_here("dns::verify"))
    }

    async fn dns_cname(&self, _name: &str, _target: &str) -> Result<(), String> {
        Err(not_here("dns::cname"))
    }

    async fn dns_verify_cname(&self, _name: &str, _target: &str) -> Result<(), String> {
        Err(not_here("dns::verify_cname"))
    }

    async fn replication_status(&self, vm: &str) -> Result<ReplicationStatus, String> {
        self.fabric.replication_status(vm, self.fabric.now()).await.map_err(|e| e.to_string())
    }

    async fn operate(&self, _vm: &str, operation: VmOperation) -> Result<String, String> {
        Err(not_here(&operation.name()))
    }

    async fn wait(&self, duration: Duration) -> Result<(), String> {
        tokio::time::sleep(duration).await;
        Ok(())
    }

    async fn wait_port(&self, ip: Ipv4Addr, port: u16, timeout: Duration) -> Result<(), String> {
        match self.fabric.wait_port(ip, port, timeout).await {
            Some(answered) => answered.map(drop),
            None => Err(not_here("wait_port")),
        }
    }
}
