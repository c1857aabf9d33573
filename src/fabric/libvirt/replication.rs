//! Replication on real VMs (R1-R4, R15): one copy cycle of one VM, and the service that
//! repeats cycles at each policy's copy frequency (`drplan replicate`).
//!
//! A cycle is a push backup of the VM's replicated disks into new files of its chain at
//! the target, with a libvirt checkpoint marking the instant: full the first time (R4),
//! incremental since the previous checkpoint after that. The point is recorded only once
//! its files are complete, so a cycle cut off leaves no half point; retention (R2) then
//! merges the oldest points away, one step at a time, each step recorded first.
//!
//! A cycle copies from whichever domain serves the VM to the other side: the VM's own
//! domain to the recovery site, or after a reprotect (R36) its replica back to the
//! original site, under the failback policy (R37). The first cycle after a reprotect is
//! its copy: a delta one after a planned failover, since the chain then starts with a
//! point the passive side already holds.

use std::time::{Duration, Instant};

use chrono::Utc;

use super::chain::Chain;
use super::record::{Holder, StoredPoint, VmRecord};
use super::{LibvirtFabric, failed};
use crate::fabric::libvirt::hypervisor::BackupTarget;
use crate::fabric::{FabricError, FabricResult};
use crate::model::{Consistency, Phase, Side, Vm};

/// No backup of one VM may take longer: a stuck job is aborted and reported.
const BACKUP_TIMEOUT: Duration = Duration::from_secs(3600);

/// What one cycle did.
#[derive(Debug, Clone, PartialEq)]
pub enum Cycle {
    /// A new point, with the bytes its files took at the target.
    Copied { seq: u64, full: bool, consistency: Consistency, took: Duration, merged: usize, bytes: u64 },
    /// Nothing to do now, and why (not protected, held by a failover...).
    Skipped(String),
}

impl std::fmt::Display for Cycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cycle::Copied { seq, full, consistency, took, merged, bytes } => {
                let copy = if *full { "full copy" } else { "incremental copy" };
                let consistency = match consistency {
                    Consistency::App => "app-consistent",
                    Consistency::Crash => "crash-consistent",
                };
                write!(f, "point {seq}: {copy}, {consistency}, {:.2} s, {bytes} bytes", took.as_secs_f64())?;
                if *merged > 0 {
                    write!(f, "; {merged} old point(s) merged away (R2)")?;
                }
                Ok(())
            }
            Cycle::Skipped(why) => write!(f, "skipped: {why}"),
        }
    }
}

/// One VM's copy, decided and about to begin.
struct PreparedCopy<'a> {
    vm: &'a Vm,
    /// The domain copied: the one serving the VM.
    domain: String,
    source: &'a super::hypervisor::Hypervisor,
    chain: Chain,
    /// Where the backup is written first when the chain is on another host.
    outgoing: Option<Chain>,
    record: VmRecord,
    /// The point the copy is incremental from; `None`: a full copy.
    previous: Option<StoredPoint>,
    seq: u64,
    checkpoint: String,
    targets: Vec<BackupTarget>,
    app_due: bool,
}

/// A VM whose incremental copy libvirt refused: its checkpoint lost its bitmap.
struct BrokenCheckpoint {
    vm: String,
    checkpoint: String,
    error: String,
}

fn checkpoint_name(seq: u64) -> String {
    format!("drplan-{seq}")
}

impl LibvirtFabric {
    /// One cycle of `vm` now, whatever its copy frequency. `for_failover`: the final copy
    /// of a planned failover, which already holds the VM.
    pub async fn copy_cycle(&self, vm: &Vm, for_failover: bool) -> FabricResult<Cycle> {
        let mut outcomes = self.copy_together(&[vm], for_failover).await?;
        outcomes.pop().expect("one outcome per VM").1
    }

    /// One cycle of `vms` at once (R12: a replication group's members get common points:
    /// their backups begin together, stamped with one instant, frozen together when
    /// app-consistent). Each VM's outcome, in order.
    pub async fn copy_together(
        &self,
        vms: &[&Vm],
        for_failover: bool,
    ) -> FabricResult<Vec<(String, FabricResult<Cycle>)>> {
        let mut outcomes: Vec<(String, FabricResult<Cycle>)> = Vec::new();
        let mut held = Vec::new();
        for vm in vms {
            let name = vm.name.as_str();
            if for_failover {
                held.push(*vm);
                continue;
            }
            let taken = self.update(name, |record| {
                if let Some(holder) = record.live_holder() {
                    return Ok(Err(format!("held by {} (process {})", holder.what, holder.pid)));
                }
                if !matches!(record.protection.phase, Phase::InitialReplication { .. } | Phase::Protected { .. }) {
                    return Ok(Err(format!("not replicating ({})", record.protection.describe())));
                }
                record.holder = Some(Holder::here("a replication cycle"));
                Ok(Ok(()))
            })?;
            match taken {
                Ok(()) => held.push(*vm),
                Err(why) => outcomes.push((vm.name.clone(), Ok(Cycle::Skipped(why)))),
            }
        }
        for (vm, outcome) in held.iter().zip(self.copy_held(&held, for_failover).await) {
            let name = vm.name.as_str();
            let error = outcome.as_ref().err().map(ToString::to_string);
            self.update(name, |record| {
                if !for_failover {
                    record.holder = None;
                }
                record.copying = None;
                if error.is_some() {
                    record.last_cycle = Some(Utc::now());
                }
                record.last_error = error;
                Ok(())
            })?;
            outcomes.push((vm.name.clone(), outcome));
        }
        // In the callers' order.
        outcomes.sort_by_key(|(name, _)| vms.iter().position(|vm| &vm.name == name));
        Ok(outcomes)
    }

    /// The copies of VMs already held, begun together. A checkpoint found broken (its
    /// guest's QEMU was killed) is forgotten and the copies begin again, that VM's in
    /// full: the others' begun backups are aborted by the second preparation, so the
    /// members of a group still share one instant (R12).
    async fn copy_held(&self, vms: &[&Vm], for_failover: bool) -> Vec<FabricResult<Cycle>> {
        match self.begin_and_complete(vms, for_failover).await {
            Ok(outcomes) => outcomes,
            Err(broken) => {
                for BrokenCheckpoint { vm, checkpoint, .. } in &broken {
                    tracing::warn!(domain = vm, %checkpoint, "the checkpoint lost its bitmap: copying in full");
                    if let Ok(inventory_vm) = self.vm(vm)
                        && let Ok(record) = self.record(vm)
                        && let Ok((_, source)) = self.side(inventory_vm, record.protection.active)
                        && let Err(e) = source.forget_checkpoint(vm, checkpoint).await
                    {
                        tracing::warn!(domain = vm, %checkpoint, error = %e, "removing the broken checkpoint failed");
                    }
                }
                self.begin_and_complete(vms, for_failover).await.unwrap_or_else(|still| {
                    let why = |vm: &Vm| match still.iter().find(|broken| broken.vm == vm.name) {
                        Some(broken) => {
                            format!("its checkpoint is still broken after it was removed: {}", broken.error)
                        }
                        None => "not copied: the checkpoint of a VM copied with it is broken".to_string(),
                    };
                    vms.iter()
                        .map(|vm| {
                            Err(FabricError::OperationFailed {
                                vm: vm.name.clone(),
                                what: "replication".into(),
                                why: why(vm),
                            })
                        })
                        .collect()
                })
            }
        }
    }

    /// One attempt of [`Self::copy_held`]; `Err`: the VMs (and checkpoints) whose
    /// incremental copy libvirt refused because the checkpoint is broken.
    async fn begin_and_complete(
        &self,
        vms: &[&Vm],
        for_failover: bool,
    ) -> Result<Vec<FabricResult<Cycle>>, Vec<BrokenCheckpoint>> {
        let started = Instant::now();
        let mut prepared = Vec::new();
        for vm in vms {
            prepared.push(self.prepare_copy(vm).await);
        }
        // R3: frozen through the guest agent while the backups begin (app-consistent),
        // all members together (R12); crash-consistent otherwise.
        let app = !for_failover && prepared.iter().flatten().any(|copy| copy.app_due);
        let mut frozen = Vec::new();
        for copy in &prepared {
            frozen.push(match copy {
                Ok(copy) if app => copy.source.freeze(&copy.domain).await,
                _ => false,
            });
        }
        let time = Utc::now();
        let mut begun = Vec::new();
        for copy in &prepared {
            begun.push(match copy {
                Ok(copy) => {
                    let since = copy.previous.as_ref().and(copy.record.checkpoint.as_deref());
                    Some(copy.source.begin_backup(&copy.domain, &copy.targets, since, &copy.checkpoint).await)
                }
                Err(_) => None,
            });
        }
        // Thawed at once, whatever happened: a guest must never stay frozen.
        for (copy, frozen) in prepared.iter().zip(&frozen) {
            if let (Ok(copy), true) = (copy, frozen) {
                copy.source.thaw(&copy.domain).await;
            }
        }
        let broken: Vec<BrokenCheckpoint> = prepared
            .iter()
            .zip(&begun)
            .filter_map(|(copy, begun)| match (copy, begun) {
                (Ok(copy), Some(Err(e))) if e.is_broken_checkpoint() => Some(BrokenCheckpoint {
                    vm: copy.vm.name.clone(),
                    checkpoint: copy.record.checkpoint.clone()?,
                    error: e.to_string(),
                }),
                _ => None,
            })
            .collect();
        if !broken.is_empty() {
            return Err(broken);
        }
        let mut outcomes = Vec::new();
        for ((copy, begun), frozen) in prepared.into_iter().zip(begun).zip(frozen) {
            let consistency = if frozen { Consistency::App } else { Consistency::Crash };
            outcomes.push(match (copy, begun) {
                (Err(e), _) => Err(e),
                (Ok(copy), begun) => {
                    let begun = begun.expect("a prepared copy was begun");
                    self.complete_copy(copy, begun, time, consistency, for_failover, started).await
                }
            });
        }
        Ok(outcomes)
    }

    /// Everything decided before a VM's backup begins: full or incremental, the point's
    /// number, its files, whether an app-consistent point is due.
    async fn prepare_copy<'a>(&'a self, vm: &'a Vm) -> FabricResult<PreparedCopy<'a>> {
        let name = vm.name.as_str();
        self.remove_left_behind(name).await?;
        let record = self.record(name)?;
        let active = record.protection.active;
        let (domain, source) = self.serving(vm, &record)?;
        let chain = self.chain(vm, active)?;
        chain.create_dir().await.map_err(failed(name, "replication"))?;
        let outgoing = self.outgoing(vm, active)?;
        if let Some(outgoing) = &outgoing {
            outgoing.create_dir().await.map_err(failed(name, "replication"))?;
            // What a cycle cut off by a crash left on its way: nothing else is there.
            outgoing.remove_files_except(&[], &[]).await;
        }
        self.finish_merge(vm, &record).await?;
        let record = self.record(name)?;
        // What a cycle cut off by a crash left: files of points never recorded.
        chain.remove_files_after(record.points.last().map_or(0, |p| p.seq)).await;
        let checkpoints = source.checkpoints(&domain).await.map_err(failed(name, "replication"))?;
        let previous = record
            .points
            .last()
            .filter(|_| record.checkpoint.as_ref().is_some_and(|c| checkpoints.contains(c)))
            .cloned();
        let seq = record.next_seq.max(record.points.last().map_or(1, |p| p.seq + 1));
        let checkpoint = checkpoint_name(seq);
        if checkpoints.contains(&checkpoint) {
            // A copy cut off by a crash began this checkpoint and never recorded its point;
            // its backup job may still run. Without this, every later copy would fail on
            // the name.
            tracing::info!(domain, %checkpoint, "removing the checkpoint of a copy that never finished");
            source.abort_job(&domain).await;
            source.forget_checkpoint(&domain, &checkpoint).await.map_err(failed(name, "replication"))?;
        }
        let targets = record
            .disks
            .iter()
            .map(|disk| BackupTarget {
                disk: disk.clone(),
                file: outgoing.as_ref().unwrap_or(&chain).point_file(seq, disk),
            })
            .collect();
        let policy = record.protection.replication_policy().and_then(|p| self.inventory.policy(p));
        let app_due =
            policy.as_ref().is_some_and(|p| {
                !p.app_consistent_every.is_zero()
                    && record.points.iter().rev().find(|p| p.consistency == Consistency::App).is_none_or(|last| {
                        (Utc::now() - last.time).to_std().unwrap_or_default() >= p.app_consistent_every
                    })
            });
        Ok(PreparedCopy { vm, domain, source, chain, outgoing, record, previous, seq, checkpoint, targets, app_due })
    }

    /// Waits for a begun copy, links it onto the previous point and records it.
    async fn complete_copy(
        &self,
        copy: PreparedCopy<'_>,
        begun: Result<(), super::hypervisor::HypervisorError>,
        time: crate::model::Timestamp,
        consistency: Consistency,
        for_failover: bool,
        started: Instant,
    ) -> FabricResult<Cycle> {
        let PreparedCopy { vm, domain, source, chain, outgoing, record, previous, seq, checkpoint, targets, .. } = copy;
        let name = vm.name.as_str();
        let written_to = outgoing.as_ref().unwrap_or(&chain);
        // Between hosts the copy is a backup, then its sending: half of the way each.
        let mut progress =
            Progress { fabric: self, vm: name, parts: if outgoing.is_some() { 2 } else { 1 }, told: None };
        let copied = match begun {
            Ok(()) => source
                .wait_for_job(&domain, BACKUP_TIMEOUT, |done, total| progress.tell(0, done, total))
                .await
                .map_err(failed(name, "replication")),
            Err(e) => Err(failed(name, "replication")(e)),
        };
        let copied = match (copied, &outgoing) {
            (Ok(()), Some(outgoing)) => self.send(vm, outgoing, &chain, &targets, &mut progress).await,
            (copied, _) => copied,
        };
        if let Err(e) = copied {
            for target in &targets {
                let _ = written_to.remove(&target.file).await;
            }
            return Err(e);
        }
        if let Some(previous) = &previous {
            for disk in &record.disks {
                chain.link(seq, previous.seq, disk).await.map_err(failed(name, "replication"))?;
            }
        }
        // What a replica is made from is the VM's own definition, never a replica's.
        let definition = match record.protection.active {
            Side::Original => source.domain_xml(&domain).await.ok(),
            Side::Recovery => None,
        };
        let full = previous.is_none();
        let old_checkpoint = record.checkpoint.clone();
        let (bytes, disk_bytes) = chain.point_usage(seq, &record.disks).await;
        let reprotected = self.update(name, |record| {
            record.points.push(StoredPoint { seq, time, consistency, full });
            record.next_seq = seq + 1;
            record.checkpoint = Some(checkpoint.clone());
            record.last_cycle = Some(Utc::now());
            if let Some(definition) = definition {
                record.definition = definition;
            }
            if let Phase::InitialReplication { .. } = record.protection.phase {
                record.protection.phase = Phase::Protected { since: time };
            }
            // R36: the first copy after a reprotect is the reprotect's.
            let reprotect = record.reprotect.as_mut().filter(|r| r.copied.is_none());
            Ok(reprotect.map(|reprotect| {
                reprotect.copied = Some((bytes, disk_bytes));
                reprotect.describe()
            }))
        })?;
        if let Some(detail) = reprotected {
            self.job("reprotect copy", name, time, Ok(detail))?;
        }
        // One checkpoint at a time: each bitmap slows the guest's writes.
        if let Some(old) = old_checkpoint.filter(|old| old != &checkpoint) {
            let _ = source.delete_checkpoint(&domain, &old).await;
        }
        let merged = if for_failover { 0 } else { self.prune(vm).await? };
        Ok(Cycle::Copied { seq, full, consistency, took: started.elapsed(), merged, bytes })
    }

    /// Sends a backup written at the source's host to the chain on the target's: each
    /// disk's file lands whole under its point's name, or not at all, at the throttle's
    /// bandwidth of the hour (R15).
    async fn send(
        &self,
        vm: &Vm,
        outgoing: &Chain,
        chain: &Chain,
        targets: &[BackupTarget],
        progress: &mut Progress<'_>,
    ) -> FabricResult<()> {
        let hour = chrono::Timelike::hour(&Utc::now());
        let bytes_per_second = self.inventory.throttle.kbps_at(hour) * 1024 / 8;
        let mut total = 0;
        for target in targets {
            total += outgoing.host().len(&target.file).await.unwrap_or(0);
        }
        let mut sent_before = 0;
        for target in targets {
            let to = chain.dir().join(target.file.file_name().unwrap_or_default());
            let mut tell = |sent: u64| progress.tell(1, sent_before + sent, total);
            let sent =
                outgoing.host().copy_to(&target.file, chain.host(), &to, Some(bytes_per_second), &mut tell).await;
            let _ = outgoing.remove(&target.file).await;
            sent_before += sent.map_err(failed(&vm.name, "replication"))?;
        }
        Ok(())
    }

    /// R2: points older than the retention window go, the latest always stays. Not while
    /// a replica boots from the chain.
    async fn prune(&self, vm: &Vm) -> FabricResult<usize> {
        let name = vm.name.as_str();
        let mut merged = 0;
        loop {
            let record = self.record(name)?;
            let Some(policy) = record.protection.replication_policy().and_then(|p| self.inventory.policy(p)) else {
                return Ok(merged);
            };
            if !record.seqs_in_use().is_empty() || record.points.len() < 2 {
                return Ok(merged);
            }
            let horizon = Utc::now() - chrono::TimeDelta::from_std(policy.retention).unwrap_or_default();
            // The oldest point goes when the next one is inside the window too.
            if record.points[1].time > horizon && record.points[0].time > horizon {
                return Ok(merged);
            }
            if record.points[0].time > horizon {
                return Ok(merged);
            }
            let (oldest, next) = (record.points[0].seq, record.points[1].seq);
            self.update(name, |record| {
                record.points.retain(|p| p.seq != oldest);
                record.merging = Some((oldest, next));
                Ok(())
            })?;
            self.finish_merge(vm, &self.record(name)?).await?;
            merged += 1;
        }
    }

    /// Completes a merge recorded but maybe not done (a crash in between): point `oldest`
    /// is already forgotten; its files go into point `next`'s, which then stands alone.
    async fn finish_merge(&self, vm: &Vm, record: &VmRecord) -> FabricResult<()> {
        let Some((oldest, next)) = record.merging else { return Ok(()) };
        let name = vm.name.as_str();
        let chain = self.chain(vm, record.protection.active)?;
        let next_full = record.points.iter().find(|p| p.seq == next).is_some_and(|p| p.full);
        for disk in &record.disks {
            let base = chain.point_file(oldest, disk);
            if !chain.exists(&base).await.map_err(failed(name, "retention (R2)"))? {
                continue; // merged and renamed before a crash
            }
            if next_full {
                chain.remove(&base).await.map_err(failed(name, "retention (R2)"))?;
            } else {
                chain.merge_oldest(oldest, next, disk).await.map_err(failed(name, "retention (R2)"))?;
            }
        }
        self.update(name, |record| {
            record.merging = None;
            if let Some(point) = record.points.iter_mut().find(|p| p.seq == next) {
                point.full = true;
            }
            Ok(())
        })
    }

    /// `drplan replicate`: cycles every protected VM when its copy frequency says (R1),
    /// or each once now (`once`). Returns after one pass when `once`, else runs until
    /// `stop` resolves. `report` hears each cycle and each change of a VM's health (R15).
    pub async fn serve(
        &self,
        once: bool,
        stop: impl std::future::Future<Output = ()>,
        mut report: impl FnMut(ServiceEvent<'_>),
    ) -> FabricResult<()> {
        tokio::pin!(stop);
        loop {
            for unit in self.copy_units() {
                let mut members = Vec::new();
                let mut due = false;
                for vm in unit {
                    let record = self.record(&vm.name)?;
                    if !matches!(record.protection.phase, Phase::InitialReplication { .. } | Phase::Protected { .. }) {
                        continue;
                    }
                    let frequency = record
                        .protection
                        .replication_policy()
                        .and_then(|p| self.inventory.policy(p))
                        .map_or(Duration::from_secs(300), |p| p.copy_frequency.as_duration());
                    let since_last = record.last_cycle.map(|last| (Utc::now() - last).to_std().unwrap_or_default());
                    due |= once || since_last.is_none_or(|elapsed| elapsed >= frequency);
                    members.push((vm, record.points.is_empty()));
                }
                if due && !members.is_empty() {
                    let vms: Vec<&Vm> = members.iter().map(|(vm, _)| *vm).collect();
                    for ((vm, first), (_, outcome)) in members.iter().zip(self.copy_together(&vms, false).await?) {
                        if let (Ok(Cycle::Copied { full: true, .. }), true) = (&outcome, first) {
                            let change = HealthChange::InitialCopyDone;
                            report(ServiceEvent::Health { vm: &vm.name, change, detail: String::new() });
                        }
                        report(ServiceEvent::Cycle { vm: &vm.name, outcome: &outcome });
                    }
                }
                for (vm, _) in &members {
                    self.report_health(vm, &mut report)?;
                }
            }
            if once {
                return Ok(());
            }
            tokio::select! {
                _ = &mut stop => return Ok(()),
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }

    /// What one pass of the service copies together: each replication group's members
    /// (R12), each other VM alone, in the site file's order.
    fn copy_units(&self) -> Vec<Vec<&Vm>> {
        let mut units: Vec<Vec<&Vm>> = Vec::new();
        let mut grouped = std::collections::HashSet::new();
        for vm in &self.inventory.vms {
            match self.inventory.group_of(&vm.name) {
                Some(group) if grouped.insert(group.name.as_str()) => {
                    units.push(group.vms.iter().filter_map(|name| self.inventory.vm(name)).collect());
                }
                Some(_) => {}
                None => units.push(vec![vm]),
            }
        }
        units
    }

    /// Reports a change of the VM's health since the last report (R15).
    fn report_health(&self, vm: &Vm, report: &mut impl FnMut(ServiceEvent<'_>)) -> FabricResult<()> {
        let Some((healthy, detail)) = self.health_now(&vm.name)? else { return Ok(()) };
        let was = self.update(&vm.name, |record| Ok(record.reported_healthy.replace(healthy)))?;
        let change = match (was, healthy) {
            (Some(false), true) => HealthChange::Healthy,
            (Some(true) | None, false) => HealthChange::Unhealthy,
            _ => return Ok(()),
        };
        report(ServiceEvent::Health { vm: &vm.name, change, detail });
        Ok(())
    }

    /// R15: whether the VM's replication is healthy now, and if not why; `None` before
    /// its first point (an initial copy is not unhealthy).
    fn health_now(&self, vm: &str) -> FabricResult<Option<(bool, String)>> {
        let record = self.record(vm)?;
        if let Some(error) = &record.last_error {
            return Ok(Some((false, format!("the last copy failed: {error}"))));
        }
        let Some(latest) = record.points.last() else { return Ok(None) };
        let Some(policy) = record.protection.replication_policy().and_then(|p| self.inventory.policy(p)) else {
            return Ok(None);
        };
        let rpo = (Utc::now() - latest.time).to_std().unwrap_or_default();
        if rpo > policy.rpo_threshold {
            let detail = format!(
                "RPO {} is over the policy's threshold of {}",
                crate::model::HumanDuration(rpo),
                crate::model::HumanDuration(policy.rpo_threshold)
            );
            return Ok(Some((false, detail)));
        }
        Ok(Some((true, String::new())))
    }
}

/// Tells `status` how far a VM's copy is (its record's `copying`), at most once a second.
struct Progress<'a> {
    fabric: &'a LibvirtFabric,
    vm: &'a str,
    /// The copy's parts, each an equal share of the way: the backup, then its sending.
    parts: u64,
    told: Option<Instant>,
}

impl Progress<'_> {
    /// `done` of `total` bytes of part `part` (0 first).
    fn tell(&mut self, part: u64, done: u64, total: u64) {
        if total == 0 || self.told.is_some_and(|told| told.elapsed() < Duration::from_secs(1)) {
            return;
        }
        self.told = Some(Instant::now());
        let percent = ((part * 100 + done.min(total) * 100 / total) / self.parts).min(99) as u8;
        if let Err(e) = self.fabric.update(self.vm, |record| {
            record.copying = Some(percent);
            Ok(())
        }) {
            tracing::warn!(vm = self.vm, error = %e, "recording the copy's progress failed");
        }
    }
}

/// A change of a VM's replication health, as hook scripts see it (`on(kind, ...)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthChange {
    /// R4: the initial full copy is done; the VM can fail over (R5).
    InitialCopyDone,
    /// R15: the RPO went over the policy's threshold, or copies fail.
    Unhealthy,
    /// Healthy again.
    Healthy,
}

impl HealthChange {
    pub fn event(self) -> &'static str {
        match self {
            HealthChange::InitialCopyDone => "replication.initial-copy-done",
            HealthChange::Unhealthy => "replication.unhealthy",
            HealthChange::Healthy => "replication.healthy",
        }
    }
}

/// What the replication service tells its caller.
pub enum ServiceEvent<'a> {
    Cycle { vm: &'a str, outcome: &'a FabricResult<Cycle> },
    Health { vm: &'a str, change: HealthChange, detail: String },
}
