//! The way back on real VMs: reprotect (R36) and the failover home that a failback is
//! (R37, R38).
//!
//! Reprotect turns replication around: the cycles of `drplan replicate` (the same code
//! as forward) copy from the domain serving the VM to a chain at the passive side. After
//! a planned failover (R31) that chain starts from what the passive side already holds:
//! its disk stopped at the shutdown instant, and the active domain took a checkpoint
//! before its first instruction ran, so the first copy is incremental since that
//! checkpoint and moves only the changes since. After an unplanned one (R32) the passive
//! side may have diverged, and the first copy is full.
//!
//! Home, the VM's own domain boots with its own definition (its networks, MACs and so
//! addresses): the chosen point is first written into its own disks (only the changed
//! clusters when the chain is rooted on them), recorded, and only then is the domain
//! started, once; a failover resumed after a crash never writes a disk its domain may
//! have run on.

use std::collections::BTreeMap;

use chrono::Utc;

use super::domain::{DomainState, parse_domain};
use super::hypervisor::Hypervisor;
use super::record::{DeltaBase, LeftBehind, Reprotect, StoredPoint, VmRecord};
use super::{FOREVER, LibvirtFabric, failed};
use crate::fabric::{FabricError, FabricResult, Replica, ReplicaNic};
use crate::model::{Addressing, Consistency, FailoverKind, Job, Operation, Side, Site, Vm};

/// The checkpoint a domain booted on point `seq` takes before it runs (R31).
pub(super) fn boot_checkpoint(seq: u64) -> String {
    format!("drplan-boot-{seq}")
}

impl LibvirtFabric {
    /// R36: replication from the active site back to the other; the next cycle of the
    /// service makes the copy (delta after a planned failover, else full).
    pub(super) async fn reprotect_vm(&self, vm: &str) -> FabricResult<Job> {
        let started = Utc::now();
        let inventory_vm = self.vm(vm)?;
        let record = self.take(vm, "reprotect", Operation::Reprotect, |_| {}).await?;
        let prepared = self.prepare_reprotect(inventory_vm, &record).await;
        let (points, reprotect) = match prepared {
            Ok(done) => done,
            Err(e) => {
                self.release(vm, |_| {})?;
                return Err(e);
            }
        };
        let describe = reprotect.describe();
        self.release(vm, |record| {
            record.points = points.clone();
            record.next_seq = points.last().map_or(record.next_seq, |p| p.seq + 1);
            record.checkpoint = record.delta_base.as_ref().filter(|_| reprotect.delta).map(|b| b.checkpoint.clone());
            record.delta_base = None;
            record.reprotect = Some(reprotect.clone());
            record.protection.reprotect(started, FOREVER);
            record.last_cycle = None;
            record.last_error = None;
            record.reported_healthy = None;
        })?;
        let active = self.record(vm)?.protection.active;
        let site = |side| self.inventory.site_on(inventory_vm, side).map_or("?".into(), |s| s.name.clone());
        let policy = self.record(vm)?.protection.replication_policy().unwrap_or("?").to_string();
        let detail =
            format!("replicating {} -> {} under policy {policy}; {describe}", site(active), site(active.other()));
        self.job("reprotect", vm, started, Ok(detail))
    }

    /// The first points of the chain of the reprotect, and how it copies. Delta: one
    /// point, the passive side's disks as they stopped. Full: none.
    async fn prepare_reprotect(&self, vm: &Vm, record: &VmRecord) -> FabricResult<(Vec<StoredPoint>, Reprotect)> {
        let name = vm.name.as_str();
        let (domain, source) = self.serving(vm, record)?;
        let chain = self.chain(vm, record.protection.active)?;
        chain.create_dir().await.map_err(failed(name, "reprotect"))?;
        let checkpoints = source.checkpoints(&domain).await.map_err(failed(name, "reprotect"))?;
        let base = record
            .delta_base
            .as_ref()
            .filter(|base| record.protection.reprotect_is_delta() && checkpoints.contains(&base.checkpoint));
        let Some(base) = base else {
            // Whatever the passive side kept is stale.
            chain.remove_files_except(&[], &[]).await;
            return Ok((Vec::new(), Reprotect { delta: false, since: None, copied: None }));
        };
        let seq = record.next_seq.max(1);
        for disk in &record.disks {
            let own = base.disks.get(disk).ok_or_else(|| FabricError::OperationFailed {
                vm: name.into(),
                what: "reprotect".into(),
                why: format!("the passive side's image of disk {disk} is not known"),
            })?;
            chain.root_on(seq, disk, own).await.map_err(failed(name, "reprotect"))?;
        }
        let point = StoredPoint { seq, time: base.time, consistency: Consistency::Crash, full: true };
        Ok((vec![point], Reprotect { delta: true, since: Some(base.time), copied: None }))
    }

    /// R31: what the passive side holds after a planned failover that landed on `point`:
    /// the VM's own disks (from home) or the replica's overlays (back home).
    pub(super) fn passive_disks(
        &self,
        vm: &Vm,
        record: &VmRecord,
        home: bool,
        point: &StoredPoint,
    ) -> FabricResult<DeltaBase> {
        let name = vm.name.as_str();
        let disks: BTreeMap<String, std::path::PathBuf> = if home {
            let replica = record.replica.as_ref().ok_or_else(|| FabricError::OperationFailed {
                vm: name.into(),
                what: "failback".into(),
                why: "the record names no replica at the recovery site".into(),
            })?;
            let chain = self.chain(vm, Side::Original)?;
            record.disks.iter().map(|d| (d.clone(), chain.overlay_file(&replica.domain, d))).collect()
        } else {
            let info = parse_domain(&record.definition)
                .map_err(|e| FabricError::Disk { vm: name.into(), message: e.to_string() })?;
            info.disks.into_iter().filter(|d| record.disks.contains(&d.target)).map(|d| (d.target, d.file)).collect()
        };
        Ok(DeltaBase { time: point.time, checkpoint: boot_checkpoint(point.seq), disks })
    }

    /// R38: the VM's own domain, its disks first brought to `point` (once), started once;
    /// `track` as [`LibvirtFabric::boot`]. Whether it tracks its writes.
    pub(super) async fn land_home(
        &self,
        vm: &Vm,
        record: &VmRecord,
        site: &Site,
        home: &Hypervisor,
        point: &StoredPoint,
        track: bool,
    ) -> FabricResult<(Option<super::record::ReplicaRecord>, bool)> {
        let name = vm.name.as_str();
        let fail = failed(name, "failover home");
        let refused = |message: String| FabricError::Refused { message, vm: Some(name.into()) };
        let Some(state) = home.state(name).await.map_err(&fail)? else {
            return Err(refused(format!(
                "{name}: its own domain is not defined at site {:?} any more; define it again, then retry (R38)",
                site.name
            )));
        };
        match record.landed {
            Some(seq) if seq == point.seq => {}
            Some(seq) => {
                return Err(refused(format!(
                    "{name}: an attempt cut off wrote point {seq} into its own disks, not this one; retry with that point"
                )));
            }
            None if state != DomainState::ShutOff => {
                return Err(refused(format!(
                    "{name} is not shut off at site {:?} (started outside drplan?): going home writes its disks; shut it down first",
                    site.name
                )));
            }
            None => {
                let info = home.domain_info(name).await.map_err(&fail)?;
                // Their bitmaps would not follow what is written below.
                for checkpoint in home.checkpoints(name).await.map_err(&fail)? {
                    home.forget_checkpoint(name, &checkpoint).await.map_err(&fail)?;
                }
                let chain = self.chain(vm, Side::Recovery)?;
                for disk in &record.disks {
                    let own = info.disks.iter().find(|d| &d.target == disk).ok_or_else(|| FabricError::Disk {
                        vm: name.into(),
                        message: format!("its own domain at site {:?} has no disk {disk} any more", site.name),
                    })?;
                    chain.write_into(point.seq, disk, &own.file).await.map_err(failed(name, "failover home"))?;
                }
                self.update(name, |record| {
                    record.landed = Some(point.seq);
                    Ok(())
                })?;
            }
        }
        let checkpoint = boot_checkpoint(point.seq);
        let track = track.then_some((checkpoint.as_str(), record.disks.as_slice()));
        let tracked = self.boot(name, home, name, track).await?;
        Ok((None, tracked))
    }

    /// Back home, the replica at the recovery site is done with: it is undefined (its
    /// overlay stays: after a planned failover it is what a delta reprotect starts from),
    /// so the next failover defines a fresh one. An unplanned failover home goes on when
    /// the recovery site does not answer (R32); the replica is then recorded as left
    /// behind, and removed once that site answers (`remove_left_behind`).
    pub(super) async fn leave_recovery_site(
        &self,
        vm: &Vm,
        record: &VmRecord,
        recovery: &Hypervisor,
        kind: FailoverKind,
    ) -> FabricResult<()> {
        let Some(replica) = &record.replica else { return Ok(()) };
        match recovery.remove(&replica.domain).await {
            Ok(()) => Ok(()),
            Err(e) if kind == FailoverKind::Unplanned => {
                tracing::warn!(vm = vm.name, domain = replica.domain, error = %e, "the replica at the recovery site could not be removed");
                let left = LeftBehind {
                    site: replica.replica.site.clone(),
                    domain: replica.domain.clone(),
                    error: e.to_string(),
                };
                self.update(&vm.name, |record| {
                    record.left_behind = Some(left);
                    Ok(())
                })
            }
            Err(e) => Err(failed(&vm.name, "failback: removing the replica at the recovery site")(e)),
        }
    }

    /// Removes a replica an unplanned failover home left at a site that did not answer,
    /// if that site answers now; a site still silent keeps it recorded (and `status` says
    /// so). Whatever touches the VM calls this first: taking it for an operation, and
    /// each replication cycle.
    pub(super) async fn remove_left_behind(&self, vm: &str) -> FabricResult<()> {
        let Some(left) = self.record(vm)?.left_behind else { return Ok(()) };
        let hypervisor = self.hypervisor(&left.site)?;
        match hypervisor.remove(&left.domain).await {
            Ok(()) => {
                tracing::info!(vm, domain = left.domain, site = left.site, "removed the replica left behind");
                self.update(vm, |record| {
                    record.left_behind = None;
                    Ok(())
                })
            }
            Err(e) => {
                tracing::debug!(vm, domain = left.domain, error = %e, "the replica left behind is still out of reach");
                Ok(())
            }
        }
    }

    /// The VM at home, as a failover outcome shows it: its own domain on its own
    /// networks, with its own addresses (read back where the site file has none).
    pub(super) async fn home_replica(&self, vm: &Vm, site: &Site, home: &Hypervisor) -> Replica {
        let mut nics: Vec<ReplicaNic> = vm
            .nics
            .iter()
            .map(|nic| ReplicaNic {
                network: Some(nic.network.clone()),
                subnet: Some(nic.subnet.clone()),
                ip: nic.ip,
                addressing: nic.ip.map(|_| Addressing::Static),
            })
            .collect();
        if nics.iter().any(|n| n.ip.is_none()) {
            let macs = home.domain_xml(&vm.name).await.map(|xml| super::domain::nic_macs(&xml)).unwrap_or_default();
            nics = self.wait_for_addresses(home, &vm.name, nics, &macs).await;
        }
        let storage = site.libvirt.as_ref().map(|l| l.storage.to_string_lossy().into_owned()).unwrap_or_default();
        Replica { name: vm.name.clone(), site: site.name.clone(), host: vm.host.clone(), storage, nics }
    }
}
