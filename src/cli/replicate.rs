//! `drplan replicate`: the replication service of libvirt sites. For each protected VM,
//! the initial full copy (R4), then an incremental copy at its policy's copy frequency
//! (R1), each a recovery point kept for the retention window (R2). It runs in the
//! foreground until interrupted (a systemd unit in docs/libvirt.md runs it for good), or
//! makes one pass with `--once`. It takes no lock on the state directory: commands run
//! beside it, and a failover takes its VMs from it one by one.

use std::sync::Arc;

use super::args::Global;
use super::context::{load_inventory, site_path};
use super::error::CliError;
use crate::fabric::libvirt::LibvirtFabric;
use crate::fabric::libvirt::replication::Cycle;

pub fn replicate(global: &Global, once: bool) -> Result<String, CliError> {
    let inventory = Arc::new(load_inventory(&site_path(global, None)?)?);
    if !LibvirtFabric::serves(&inventory) {
        return Err(CliError::Usage(
            "drplan replicate copies real VMs between libvirt sites; this site file's sites are simulated, whose replication is modelled (drplan status shows it)".into(),
        ));
    }
    let fabric = LibvirtFabric::open(inventory, &global.state(None))?;
    let runtime = super::runs::runtime()?;
    let mut failures = 0;
    let mut cycles = 0;
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    runtime.block_on(fabric.serve(once, stop, |vm, outcome| match outcome {
        Ok(Cycle::Skipped(why)) => tracing::debug!(vm, "{why}"),
        Ok(cycle) => {
            cycles += 1;
            eprintln!("{vm}: {cycle}");
        }
        Err(e) => {
            failures += 1;
            eprintln!("{vm}: replication failed: {e}");
        }
    }))?;
    if failures > 0 {
        return Err(CliError::SomeFailed { failed: failures, total: failures + cycles });
    }
    Ok(if once { format!("{cycles} copy cycle(s) done\n") } else { String::new() })
}
