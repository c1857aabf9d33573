//! Failover of every kind on real domains (R30-R35), and what follows one: change of
//! point, commit, cancel, cleanup of a drill; protect; the plan's preflight.
//!
//! A failover boots the replica from a throwaway overlay on the chosen point, defined at
//! the target from the source's definition (R7 name, R10 networks, R11 storage). Every
//! step asks libvirt first, so a step repeated after a crash finds its work done: a
//! domain is never defined or started twice.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use chrono::{SubsecRound, Utc};

use super::domain::{DomainState, ReplicaSpec, nic_macs, parse_domain, replica_xml, seen_address};
use super::hypervisor::{Hypervisor, HypervisorError};
use super::record::{Booting, ReplicaRecord, StoredPoint, VmRecord};
use super::way_back::boot_checkpoint;
use super::{LibvirtFabric, failed};
use crate::fabric::{
    FabricError, FabricResult, FailoverOutcome, FailoverRequest, Intent, Preflight, PreflightRequest, Replica,
    ReplicaNic, SourceShutdown,
};
use crate::model::network::{Attachment, mapped_network};
use crate::model::{Consistency, FailoverKind, Job, Operation, Phase, PointChoice, Side, Site, Subnet, Timestamp, Vm};

/// How long a failover waits for the replica's address to show (DHCP lease or agent)
/// when no reservation fixed it in advance.
const ADDRESS_WAIT: Duration = Duration::from_secs(60);

/// How long a failover waits for a replica whose start another attempt began (its virsh
/// outlived a crash) to run.
const START_WAIT: Duration = Duration::from_secs(60);

/// R33: the point a choice picks among `points` (oldest first), as of `as_of`. A custom
/// time picks the last point at or before it to the second: points are shown to the
/// second (`drplan points`), and the time shown must pick the point shown, not the one
/// before it (nor none).
fn choose(points: &[StoredPoint], choice: PointChoice, as_of: Option<Timestamp>) -> Option<&StoredPoint> {
    let mut usable = points.iter().filter(|p| as_of.is_none_or(|t| p.time <= t));
    match choice {
        PointChoice::Latest | PointChoice::LatestProcessed => usable.next_back(),
        PointChoice::LatestAppConsistent => usable.rfind(|p| p.consistency == Consistency::App),
        PointChoice::At(t) => usable.rfind(|p| p.time.trunc_subsecs(0) <= t),
    }
}

fn no_point(vm: &str, choice: PointChoice, points: &[StoredPoint]) -> FabricError {
    let why = if points.is_empty() {
        "there are no recovery points yet (R4: run drplan replicate until the initial copy is done)".to_string()
    } else {
        format!("{} points are kept, none fits", points.len())
    };
    FabricError::NoRecoveryPoint { vm: vm.into(), choice: choice.to_string(), why }
}

impl LibvirtFabric {
    /// R1-R6: checks the domain can be replicated (it exists, its disks are qcow2 files,
    /// the exclusions name data disks) and starts protection; the service copies.
    pub(super) async fn enable_protection(&self, vm: &str, policy: &str, excluded: &[String]) -> FabricResult<String> {
        let inventory_vm = self.vm(vm)?;
        if self.inventory.policy(policy).is_none() {
            let known: Vec<&str> = self.inventory.policies.iter().map(|p| p.name.as_str()).collect();
            return Err(FabricError::UnknownPolicy { policy: policy.into(), known: known.join(", ") });
        }
        let (_, source) = self.side(inventory_vm, Side::Original)?;
        self.chain(inventory_vm, Side::Original)?;
        let definition = source.domain_xml(vm).await.map_err(failed(vm, "protect"))?;
        let info =
            parse_domain(&definition).map_err(|e| FabricError::Disk { vm: vm.into(), message: e.to_string() })?;
        if let Some(unknown) = excluded.iter().find(|d| !info.disks.iter().any(|disk| &&disk.target == d)) {
            let message = format!("no disk {unknown:?}; its disks are {} (R6)", disk_names(&info.disks));
            return Err(FabricError::Disk { vm: vm.into(), message });
        }
        let replicated: Vec<_> = info.disks.iter().filter(|d| !excluded.contains(&d.target)).collect();
        if replicated.first().is_none_or(|d| excluded.contains(&d.target))
            || info.disks.first().is_some_and(|d| excluded.contains(&d.target))
        {
            let message = "the first disk is the OS disk, which is always replicated (R6)".to_string();
            return Err(FabricError::Disk { vm: vm.into(), message });
        }
        if let Some(raw) = replicated.iter().find(|d| d.format != "qcow2") {
            let message = format!(
                "disk {} is {}; incremental replication needs qcow2 images (persistent dirty bitmaps): convert it with qemu-img convert -O qcow2",
                raw.target, raw.format
            );
            return Err(FabricError::Disk { vm: vm.into(), message });
        }
        let disks: Vec<String> = replicated.iter().map(|d| d.target.clone()).collect();
        let now = Utc::now();
        self.update(vm, |record| {
            record.protection.check(vm, Operation::Protect)?;
            record.protection.protect(policy, excluded.to_vec(), now, super::FOREVER);
            record.disks = disks.clone();
            record.definition = definition.clone();
            Ok(())
        })?;
        Ok(format!(
            "protection enabled under {policy}; the initial copy of {} runs in drplan replicate",
            disks.join(", ")
        ))
    }

    /// Where each NIC of the replica plugs in at `target` (R10), by the source NIC's
    /// network; a drill's NICs all go to the test network, or nowhere (R30).
    fn replica_nics(
        &self,
        vm: &Vm,
        source: &Site,
        target: &Site,
        definition: &str,
        test_network: Option<&str>,
        kind: FailoverKind,
    ) -> FabricResult<Vec<(Option<Attachment>, ReplicaNic)>> {
        let info =
            parse_domain(definition).map_err(|e| FabricError::Disk { vm: vm.name.clone(), message: e.to_string() })?;
        let mut nics = Vec::new();
        for (i, nic) in info.nics.iter().enumerate() {
            let source_network = source.networks.iter().find(|n| n.attachment.is_some() && n.attachment == nic.source);
            let site_nic = vm.nics.get(i);
            let target_network = if kind == FailoverKind::Test {
                test_network.and_then(|name| target.network(name))
            } else {
                source_network
                    .and_then(|n| mapped_network(&self.inventory.network_mappings, &source.name, &n.name, &target.name))
                    .and_then(|name| target.network(name))
            };
            let subnet = target_network.and_then(|n| n.subnet_for(site_nic.map_or("", |s| s.subnet.as_str())));
            let ip = replica_ip(kind, site_nic.and_then(|s| s.target_ip), subnet);
            nics.push((
                target_network.and_then(|n| n.attachment.clone()),
                ReplicaNic {
                    network: target_network.map(|n| n.name.clone()),
                    subnet: subnet.map(|s| s.name.clone()),
                    ip,
                    addressing: ip.map(|_| crate::model::Addressing::Static),
                },
            ));
        }
        Ok(nics)
    }

    /// R30-R33: one VM's failover, from taking it from the replication service to its
    /// replica running at the target; `operation` says which (R37: a failback is a
    /// planned failover home).
    pub(super) async fn fail_over(
        &self,
        key: &str,
        vm: &str,
        request: &FailoverRequest,
        operation: Operation,
    ) -> FabricResult<FailoverOutcome> {
        let kind = request.kind;
        let what = if operation == Operation::Failback { operation.to_string() } else { format!("{kind} failover") };
        let started = Utc::now();
        let inventory_vm = self.vm(vm)?;
        // A run killed after its failover finished, before it could note so, retries it
        // when resumed: libvirt and the record say it is done, so it is, once.
        if let Some(done) = self.record(vm)?.failover_done_by_run_of(key, kind) {
            tracing::info!(vm, key, "the failover this run began had finished: not doing it again");
            return Ok(done);
        }
        let record = self
            .take(vm, &what, operation, |record| {
                record.protection.begin_failover(kind, started);
            })
            .await?;
        let outcome = self.fail_over_held(inventory_vm, record, request, started).await;
        let detail = outcome.as_ref().map(|o| format!("{} running at {}", o.replica.name, o.replica.site));
        let job = self.job(&what, vm, started, detail)?;
        match outcome {
            Ok(mut outcome) => {
                outcome.job = job;
                let done = outcome.clone();
                let network = request.test_network.clone();
                // The outcome is kept with the state it made, in one transaction.
                self.release(vm, |record| {
                    let point = done.point;
                    record.protection.finish_failover(kind, point, done.finished, done.data_loss, network, true);
                    record.final_copy_after = None;
                    record.landed = None;
                    if kind != FailoverKind::Test {
                        record.reprotect = None;
                    }
                    record.last_failover = Some((key.to_string(), done));
                })?;
                Ok(outcome)
            }
            Err(e) => {
                let error = e.to_string();
                self.release(vm, |record| record.protection.fail_failover(kind, error))?;
                Err(e)
            }
        }
    }

    async fn fail_over_held(
        &self,
        vm: &Vm,
        record: VmRecord,
        request: &FailoverRequest,
        started: Timestamp,
    ) -> FabricResult<FailoverOutcome> {
        let kind = request.kind;
        let name = vm.name.as_str();
        let active = record.protection.active;
        let (source_site, _) = self.side(vm, active)?;
        let (domain, source) = self.serving(vm, &record)?;
        let (target_site, target) = self.side(vm, active.other())?;
        // R37, R38: from the recovery site, a failover goes home, to the VM's own domain.
        let home = active == Side::Recovery && kind != FailoverKind::Test;
        let mut record = record;
        // R31: the source shuts down first, then its last changes are copied: nothing is lost.
        // R32: an unplanned failover may try, and goes on whatever happens.
        let source_shutdown = match kind {
            FailoverKind::Test => SourceShutdown::Skipped,
            FailoverKind::Planned => {
                let (copied, timings) = self.shut_down_and_copy(vm, &domain, source, record).await?;
                record = copied;
                if let Some((shutdown, final_sync)) = timings {
                    self.update(name, |r| {
                        r.measured.shutdown = Some(shutdown);
                        r.measured.final_sync = Some(final_sync);
                        Ok(())
                    })?;
                }
                SourceShutdown::Done
            }
            FailoverKind::Unplanned if request.shut_down_source => {
                match source.shutdown(&domain, self.inventory.shutdown_timeout).await {
                    Ok(()) => SourceShutdown::Done,
                    Err(e) => SourceShutdown::Failed { error: e.to_string() },
                }
            }
            FailoverKind::Unplanned => SourceShutdown::Skipped,
        };
        let shut_down = Utc::now();
        let choice = if kind == FailoverKind::Planned { PointChoice::Latest } else { request.point };
        let as_of = if kind == FailoverKind::Planned { None } else { request.points_as_of };
        let point =
            choose(&record.points, choice, as_of).cloned().ok_or_else(|| no_point(name, choice, &record.points))?;
        // R31: a planned failover's replica tracks its writes from its first instruction,
        // for a delta reprotect.
        let track = kind == FailoverKind::Planned;
        let (replica, tracked) = if home {
            self.land_home(vm, &record, target_site, target, &point, track).await?
        } else {
            let test_network = request.test_network.as_deref();
            let (replica, tracked) = self
                .boot_replica(vm, &record, source_site, target_site, target, &point, kind, test_network, track)
                .await?;
            (Some(replica), tracked)
        };
        let delta_base = match tracked {
            true => Some(self.passive_disks(vm, &record, home, &point)?),
            false => None,
        };
        if home {
            self.leave_recovery_site(vm, &record, source, kind).await?;
        }
        let finished = Utc::now();
        let data_loss = match kind {
            FailoverKind::Planned => Duration::ZERO,
            _ => (started - point.time).to_std().unwrap_or_default(),
        };
        let downtime = match source_shutdown {
            SourceShutdown::Done => (finished - shut_down).to_std().ok(),
            _ => None,
        };
        let landed = match &replica {
            Some(replica) => replica.replica.clone(),
            None => self.home_replica(vm, target_site, target).await,
        };
        // Its boot is measured up to the first port that answers at its addresses
        // (`wait_port`); until then, up to running. A boot that marked no start of its
        // own (home) counts from the shutdown.
        let ips: Vec<_> = landed.nics.iter().filter_map(|n| n.ip).collect();
        self.update(name, |r| {
            let began = r.booting.as_ref().map(|b| b.began).filter(|b| *b >= shut_down).unwrap_or(shut_down);
            r.measured.processing = (began - shut_down).to_std().ok();
            r.measured.boot = (finished - began).to_std().ok();
            r.measured.at = Some(finished);
            r.booting = Some(Booting { began, ips });
            Ok(())
        })?;
        self.update(name, |r| {
            match (kind, home) {
                (FailoverKind::Test, _) => r.test_replica = replica.clone(),
                (_, false) => r.replica = replica.clone(),
                // The points of the way back are void once one was written home (the
                // ones below it read through the VM's own disk).
                (_, true) => {
                    r.replica = None;
                    r.points.clear();
                    r.checkpoint = None;
                }
            }
            if kind != FailoverKind::Test {
                r.delta_base = delta_base.clone();
            }
            Ok(())
        })?;
        Ok(FailoverOutcome {
            vm: name.into(),
            kind,
            job: placeholder_job(name, started),
            point: point.point(),
            data_loss,
            replica: landed,
            source_shutdown,
            downtime,
            started,
            finished,
        })
    }

    /// R31: the source shut down, then its last changes copied: the VM's record with the
    /// final copy as its latest point. A failover resumed after a crash (or retried after
    /// a failure) picks up where the last attempt stopped: a final copy already made is
    /// not made again; one cut off is made again, its paused source stopped first.
    /// `domain` is the source: the VM's own, or its replica on the way back (R37). With
    /// the shutdown's and the copy's durations when both ran in this attempt.
    async fn shut_down_and_copy(
        &self,
        vm: &Vm,
        domain: &str,
        source: &Hypervisor,
        record: VmRecord,
    ) -> FabricResult<(VmRecord, Option<(Duration, Duration)>)> {
        let name = vm.name.as_str();
        let latest = record.points.last().map_or(0, |p| p.seq);
        let stop = failed(name, "planned failover: final copy");
        if let Some(after) = record.final_copy_after {
            // Copied: the source may still run paused if the last attempt stopped before
            // stopping it.
            if latest > after {
                source.destroy(domain).await.map_err(stop)?;
                return Ok((record, None));
            }
            // Cut off before its point was recorded: the source, if it runs, runs paused
            // for that copy, and nothing ran in it since the shutdown.
            // (The checkpoint its backup began goes with the copy made again.)
            if source.state(domain).await.map_err(&stop)? == Some(DomainState::Paused) {
                source.destroy(domain).await.map_err(stop)?;
            }
        }
        let began = std::time::Instant::now();
        source
            .shutdown(domain, self.inventory.shutdown_timeout)
            .await
            .map_err(failed(name, "planned failover: shutdown of the source"))?;
        let shutdown = began.elapsed();
        let copied = self.final_copy(vm, domain, source).await?;
        Ok((copied, Some((shutdown, began.elapsed() - shutdown))))
    }

    /// R31: the last changes of a source that is shut off: QEMU starts with the guest's
    /// CPUs stopped (nothing writes), one incremental copy, then off again.
    async fn final_copy(&self, vm: &Vm, domain: &str, source: &Hypervisor) -> FabricResult<VmRecord> {
        let name = vm.name.as_str();
        self.update(name, |record| {
            record.final_copy_after = Some(record.points.last().map_or(0, |p| p.seq));
            Ok(())
        })?;
        source.start(domain, true).await.map_err(failed(name, "planned failover: final copy"))?;
        let copied = self.copy_cycle(vm, true).await;
        let stopped = source.destroy(domain).await.map_err(failed(name, "planned failover: final copy"));
        copied?;
        stopped?;
        self.record(name)
    }

    /// Defines (once) and starts (once) the replica domain on an overlay of `point`;
    /// `track`: with a checkpoint before its first instruction (whether it has one).
    #[allow(clippy::too_many_arguments)]
    async fn boot_replica(
        &self,
        vm: &Vm,
        record: &VmRecord,
        source_site: &Site,
        target_site: &Site,
        target: &Hypervisor,
        point: &StoredPoint,
        kind: FailoverKind,
        test_network: Option<&str>,
        track: bool,
    ) -> FabricResult<(ReplicaRecord, bool)> {
        let name = vm.name.as_str();
        let domain = match kind {
            FailoverKind::Test => format!("{}-test", vm.replica_name()),
            _ => vm.replica_name().to_string(),
        };
        let chain = self.chain(vm, record.protection.active)?;
        let state = target.state(&domain).await.map_err(failed(name, "failover"))?;
        let mut nics = self.replica_nics(vm, source_site, target_site, &record.definition, test_network, kind)?;
        if state.is_none() {
            let mut disks = HashMap::new();
            for disk in &record.disks {
                let overlay = chain
                    .overlay(point.seq, &domain, disk)
                    .await
                    .map_err(failed(name, "failover: the replica's disk"))?;
                disks.insert(disk.clone(), overlay);
            }
            let spec = ReplicaSpec {
                name: domain.clone(),
                disks,
                nics: nics.iter().map(|(attachment, _)| attachment.clone()).collect(),
                tap_prefix: tap_prefix(&domain),
                cmdline_site: Some(target_site.name.clone()),
            };
            let xml = replica_xml(&record.definition, &spec).map_err(failed(name, "failover"))?;
            // R9: the address the site file gives the replica, through a reservation for its MAC.
            let info = parse_domain(&xml).map_err(|e| FabricError::Disk { vm: name.into(), message: e.to_string() })?;
            for ((attachment, nic), domain_nic) in nics.iter_mut().zip(&info.nics) {
                if let (Some(Attachment::LibvirtNetwork(network)), Some(ip)) = (attachment, nic.ip) {
                    let reserved = target.reserve_address(network, &domain_nic.mac, &domain, ip).await;
                    match reserved {
                        // R9: a drill keeps its target IP only when it is free in the test
                        // network; else DHCP gives it one there.
                        Err(e) if kind == FailoverKind::Test => {
                            tracing::info!(domain, %ip, error = %e, "the target IP is not free in the test network");
                            nic.ip = None;
                            nic.addressing = None;
                        }
                        reserved => reserved.map_err(failed(name, "failover: DHCP reservation (R9)"))?,
                    }
                }
            }
            // A define that fails because the domain exists now was made by an attempt
            // cut off by a crash whose virsh outlived it: that definition is this one.
            if let Err(e) = target.define(&xml).await
                && target.state(&domain).await.map_err(failed(name, "failover"))?.is_none()
            {
                return Err(failed(name, "failover: defining the replica")(e));
            }
        }
        // Its boot is measured from here (what came before is processing).
        self.update(name, |r| {
            r.booting = Some(Booting { began: Utc::now(), ips: Vec::new() });
            Ok(())
        })?;
        let checkpoint = boot_checkpoint(point.seq);
        let track = track.then_some((checkpoint.as_str(), record.disks.as_slice()));
        let tracked = self.boot(name, target, &domain, track).await?;
        let mut replica = Replica {
            name: domain.clone(),
            site: target_site.name.clone(),
            host: target_site.hosts.first().cloned().unwrap_or_default(),
            storage: chain.dir().to_string_lossy().into_owned(),
            nics: nics.into_iter().map(|(_, nic)| nic).collect(),
        };
        if replica.nics.iter().any(|n| n.network.is_some() && n.ip.is_none()) {
            let macs = nic_macs(&record.definition);
            replica.nics = self.wait_for_addresses(target, &domain, replica.nics, &macs).await;
        }
        Ok((ReplicaRecord { domain, replica, seq: point.seq }, tracked))
    }

    /// Starts `domain` once (a start an attempt cut off by a crash began is waited for,
    /// never made twice). `track`: a checkpoint of these disks is taken while its CPUs
    /// are still stopped, so every write it ever makes is tracked (R31: what a delta
    /// reprotect copies); then it runs. Whether it has that checkpoint.
    pub(super) async fn boot(
        &self,
        vm: &str,
        hypervisor: &Hypervisor,
        domain: &str,
        track: Option<(&str, &[String])>,
    ) -> FabricResult<bool> {
        let what = format!("failover: starting {domain}");
        let fail = failed(vm, &what);
        let state = hypervisor.state(domain).await.map_err(&fail)?;
        if state == Some(DomainState::Running) {
            let Some((checkpoint, _)) = track else { return Ok(false) };
            return Ok(hypervisor.checkpoints(domain).await.map_err(&fail)?.iter().any(|c| c == checkpoint));
        }
        if state != Some(DomainState::Paused)
            && let Err(e) = hypervisor.start(domain, track.is_some()).await
        {
            if !e.to_string().contains("already active") {
                return Err(fail(e));
            }
            self.wait_started(hypervisor, domain).await.map_err(&fail)?;
        }
        if let Some((checkpoint, disks)) = track {
            hypervisor.create_checkpoint(domain, checkpoint, disks).await.map_err(&fail)?;
        }
        if hypervisor.state(domain).await.map_err(&fail)? == Some(DomainState::Paused) {
            hypervisor.resume(domain).await.map_err(&fail)?;
        }
        Ok(track.is_some())
    }

    /// Waits (bounded) for a domain whose start is under way to run (or to stand paused,
    /// as a tracked start leaves it).
    async fn wait_started(&self, hypervisor: &Hypervisor, domain: &str) -> Result<(), HypervisorError> {
        let started = std::time::Instant::now();
        loop {
            let state = hypervisor.state(domain).await?;
            if matches!(state, Some(DomainState::Running | DomainState::Paused)) {
                return Ok(());
            }
            if started.elapsed() >= START_WAIT {
                return Err(HypervisorError::NotRunning {
                    domain: domain.into(),
                    state: format!("{state:?}"),
                    seconds: START_WAIT.as_secs(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Reads back the addresses a replica got where no reservation decided them (DHCP
    /// without one, the guest's own configuration), bounded in time.
    pub(super) async fn wait_for_addresses(
        &self,
        hypervisor: &Hypervisor,
        domain: &str,
        mut nics: Vec<ReplicaNic>,
        macs: &[String],
    ) -> Vec<ReplicaNic> {
        let started = std::time::Instant::now();
        while started.elapsed() < ADDRESS_WAIT {
            if let Ok(found) = hypervisor.addresses(domain).await
                && !found.is_empty()
            {
                fill_addresses(&mut nics, macs, &found);
                return nics;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        tracing::warn!(domain, "no address showed for the replica within {} s", ADDRESS_WAIT.as_secs());
        nics
    }

    /// The addresses of a replica now: what it was given, or what libvirt sees. `definition`:
    /// the source's, whose NICs' MACs the replica keeps.
    pub(super) async fn discovered(&self, replica: &Replica, definition: &str) -> Vec<ReplicaNic> {
        let mut nics = replica.nics.clone();
        if nics.iter().any(|n| n.ip.is_none())
            && let Ok(hypervisor) = self.hypervisor(&replica.site)
            && let Ok(found) = hypervisor.addresses(&replica.name).await
        {
            fill_addresses(&mut nics, &nic_macs(definition), &found);
        }
        nics
    }

    /// R34: the replica restarts on another point.
    pub(super) async fn change_point(&self, vm: &str, choice: PointChoice) -> FabricResult<FailoverOutcome> {
        let started = Utc::now();
        let inventory_vm = self.vm(vm)?;
        let record = self.take(vm, "change of recovery point", Operation::ChangeRecoveryPoint, |_| {}).await?;
        let outcome = async {
            let Phase::FailedOver { kind, .. } = record.protection.phase else { unreachable!("checked by take") };
            let replica = record
                .replica
                .clone()
                .ok_or_else(|| FabricError::Refused { message: format!("{vm} has no replica"), vm: Some(vm.into()) })?;
            let point =
                choose(&record.points, choice, None).cloned().ok_or_else(|| no_point(vm, choice, &record.points))?;
            let (target_site, target) = self.side(inventory_vm, record.protection.active)?;
            let (source_site, _) = self.side(inventory_vm, record.protection.active.other())?;
            target.remove(&replica.domain).await.map_err(failed(vm, "change of recovery point"))?;
            // The chain is the one the replica came from: its active side has flipped.
            let mut from_source = record.clone();
            from_source.protection.active = record.protection.active.other();
            if record.protection.active == Side::Original {
                let message = format!(
                    "{vm} failed over home, onto its own disk: the points of the way back are gone; \
                     commit, then reprotect"
                );
                return Err(FabricError::NotOffered { vm: vm.into(), message });
            }
            let (replica, _) = self
                .boot_replica(inventory_vm, &from_source, source_site, target_site, target, &point, kind, None, false)
                .await?;
            Ok((kind, point, replica))
        }
        .await;
        let (kind, point, replica) = match outcome {
            Ok(done) => done,
            Err(e) => {
                self.release(vm, |_| {})?;
                return Err(e);
            }
        };
        let data_loss = if kind == FailoverKind::Planned {
            Duration::ZERO
        } else {
            (started - point.time).to_std().unwrap_or_default()
        };
        self.release(vm, |record| {
            record.protection.change_point(point.point(), data_loss);
            record.replica = Some(replica.clone());
        })?;
        let job = self.job(
            "change recovery point",
            vm,
            started,
            Ok(format!("replica on point {}", crate::model::format_time(point.time))),
        )?;
        Ok(FailoverOutcome {
            vm: vm.into(),
            kind,
            job,
            point: point.point(),
            data_loss,
            replica: replica.replica,
            source_shutdown: SourceShutdown::Skipped,
            downtime: None,
            started,
            finished: Utc::now(),
        })
    }

    /// R34: final. The points after the one in use go; the replica keeps its chain.
    pub(super) async fn commit_failover(&self, vm: &str) -> FabricResult<Job> {
        let started = Utc::now();
        let inventory_vm = self.vm(vm)?;
        let record = self.take(vm, "commit", Operation::Commit, |_| {}).await?;
        let in_use = record.replica.as_ref().map(|r| r.seq).unwrap_or(0);
        let chain = self.chain(inventory_vm, record.protection.active.other())?;
        let keep: Vec<u64> = record.points.iter().map(|p| p.seq).filter(|s| *s <= in_use).collect();
        let overlays: Vec<_> =
            record.replica.iter().flat_map(|r| record.disks.iter().map(|d| chain.overlay_file(&r.domain, d))).collect();
        chain.remove_files_except(&keep, &overlays).await;
        self.release(vm, |record| {
            let now = Utc::now();
            record.protection.commit(now);
            record.points.clear();
            record.checkpoint = None;
            record.measured.commit = (now - started).to_std().ok();
        })?;
        self.job("commit", vm, started, Ok("failover committed; the recovery points are deleted".into()))
    }

    /// R35: stops the failover; the replica, if one was defined, is removed; the VM needs
    /// reprotect.
    pub(super) async fn cancel_failover(&self, vm: &str) -> FabricResult<Job> {
        let started = Utc::now();
        let inventory_vm = self.vm(vm)?;
        let record = self.take(vm, "cancel", Operation::Cancel, |_| {}).await?;
        // The replica a failover from home made goes; one serving the VM while it
        // fails back (R37) is production, and stays.
        let made_here = record.protection.active == Side::Original;
        if let Some(replica) = record.replica.as_ref().filter(|_| made_here)
            && let Ok(hypervisor) = self.hypervisor(&replica.replica.site)
        {
            hypervisor.remove(&replica.domain).await.map_err(failed(vm, "cancel"))?;
        }
        let _ = inventory_vm;
        self.release(vm, |record| {
            record.protection.cancel();
            if made_here {
                record.replica = None;
            }
            record.final_copy_after = None;
            record.landed = None;
        })?;
        self.job("cancel", vm, started, Ok("failover cancelled; the VM needs reprotect (R35)".into()))
    }

    /// R30: removes everything the drill made: its domain and its overlay.
    pub(super) async fn clean_up_test(&self, vm: &str, notes: &str) -> FabricResult<Job> {
        let started = Utc::now();
        let inventory_vm = self.vm(vm)?;
        let record = self.take(vm, "cleanup", Operation::Cleanup, |_| {}).await?;
        if let Some(test) = &record.test_replica {
            let hypervisor = self.hypervisor(&test.replica.site)?;
            hypervisor.remove(&test.domain).await.map_err(failed(vm, "cleanup"))?;
            let chain = self.chain(inventory_vm, record.protection.active)?;
            for disk in &record.disks {
                let _ = chain.remove(&chain.overlay_file(&test.domain, disk)).await;
            }
        }
        self.release(vm, |record| {
            record.protection.cleanup();
            record.test_replica = None;
        })?;
        let detail = if notes.is_empty() {
            "test failover cleaned up".to_string()
        } else {
            format!("test failover cleaned up: {notes}")
        };
        self.job("cleanup", vm, started, Ok(detail))
    }

    /// The whole plan against the world, read-only: each VM's state allows the run, its
    /// sites answer, the networks its replica needs exist at the target, a point fits.
    pub(super) async fn check_plan(&self, request: &PreflightRequest) -> FabricResult<Preflight> {
        let mut preflight = Preflight::default();
        let mut reachable: HashMap<String, Result<(), String>> = HashMap::new();
        for site in self.inventory.sites.iter().filter(|s| s.libvirt.is_some()) {
            let answer = self.hypervisor(&site.name)?.version().await.map(drop).map_err(|e| e.to_string());
            reachable.insert(site.name.clone(), answer);
        }
        for name in &request.vms {
            if let Err(refusal) = self.check_vm(name, &request.intent, &reachable).await {
                preflight.refusals.push(refusal);
            }
        }
        Ok(preflight)
    }

    async fn check_vm(
        &self,
        name: &str,
        intent: &Intent,
        reachable: &HashMap<String, Result<(), String>>,
    ) -> FabricResult<()> {
        let vm = self.vm(name)?;
        let record = self.record(name)?;
        let operation = match intent {
            Intent::Failover(request) => Operation::for_failover(request.kind),
            Intent::Failback => Operation::Failback,
            Intent::ChangePoint(_) => Operation::ChangeRecoveryPoint,
            Intent::Other(operation) => *operation,
        };
        record.protection.check(name, operation)?;
        let active = record.protection.active;
        let (target_site, target) = self.side(vm, active.other())?;
        if let Some(Err(why)) = reachable.get(&target_site.name) {
            let message =
                format!("{name}: the target site {:?} does not answer at {}: {why}", target_site.name, target.uri());
            return Err(FabricError::Refused { message, vm: Some(name.into()) });
        }
        if let Intent::Failover(request) = intent {
            if request.kind != FailoverKind::Planned && choose(&record.points, request.point, None).is_none() {
                return Err(no_point(name, request.point, &record.points));
            }
            if request.kind == FailoverKind::Test
                && let Some(network) = &request.test_network
                && target_site.network(network).is_none()
            {
                return Err(FabricError::UnknownTestNetwork {
                    vm: name.into(),
                    network: network.clone(),
                    site: target_site.name.clone(),
                });
            }
            let (source_site, _) = self.side(vm, active)?;
            let nics = self.replica_nics(
                vm,
                source_site,
                target_site,
                &record.definition,
                request.test_network.as_deref(),
                request.kind,
            )?;
            for (attachment, _) in &nics {
                if let Some(Attachment::LibvirtNetwork(network)) = attachment
                    && !target.network_exists(network).await.map_err(failed(name, "preflight"))?
                {
                    let message = format!(
                        "{name}: libvirt network {network:?} does not exist at site {:?} (R10)",
                        target_site.name
                    );
                    return Err(FabricError::Refused { message, vm: Some(name.into()) });
                }
            }
        }
        Ok(())
    }
}

/// R9: the address drplan gives a replica's NIC: the site file's target IP, which a drill
/// keeps only where it fits the test network's subnet (else DHCP decides there).
fn replica_ip(kind: FailoverKind, target_ip: Option<Ipv4Addr>, subnet: Option<&Subnet>) -> Option<Ipv4Addr> {
    match kind {
        FailoverKind::Test => target_ip.filter(|ip| subnet.is_some_and(|s| s.cidr.contains(*ip))),
        _ => target_ip,
    }
}

/// Gives each NIC without an address the one libvirt saw for it, noting that DHCP or the
/// guest chose it rather than drplan (R9).
fn fill_addresses(nics: &mut [ReplicaNic], macs: &[String], found: &[(String, std::net::Ipv4Addr)]) {
    for (i, nic) in nics.iter_mut().enumerate() {
        if nic.ip.is_some() {
            continue;
        }
        if let Some(ip) = seen_address(macs, i, found) {
            nic.ip = Some(ip);
            nic.addressing = Some(crate::model::Addressing::Dhcp);
        }
    }
}

/// libvirt tap names are at most 15 characters: a short, stable name per replica.
fn tap_prefix(domain: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    domain.hash(&mut hasher);
    format!("dr{:08x}n", hasher.finish() as u32)
}

fn disk_names(disks: &[super::domain::DomainDisk]) -> String {
    disks.iter().map(|d| d.target.as_str()).collect::<Vec<_>>().join(", ")
}

/// The outcome's job before the job is recorded (the caller puts the real one in).
fn placeholder_job(vm: &str, started: Timestamp) -> Job {
    Job {
        id: 0,
        operation: String::new(),
        vm: vm.into(),
        status: crate::model::JobStatus::Running,
        started,
        finished: None,
        detail: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(seq: u64, secs: i64, consistency: Consistency) -> StoredPoint {
        let time = chrono::DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap();
        StoredPoint { seq, time, consistency, full: seq == 1 }
    }

    #[test]
    fn r33_each_choice_picks_its_point() {
        let points =
            [point(1, 0, Consistency::Crash), point(2, 30, Consistency::App), point(3, 60, Consistency::Crash)];
        assert_eq!(choose(&points, PointChoice::Latest, None).unwrap().seq, 3);
        assert_eq!(choose(&points, PointChoice::LatestAppConsistent, None).unwrap().seq, 2);
        assert_eq!(
            choose(&points, PointChoice::At(points[1].time + chrono::TimeDelta::seconds(10)), None).unwrap().seq,
            2
        );
        assert_eq!(
            choose(&points, PointChoice::Latest, Some(points[1].time)).unwrap().seq,
            2,
            "R12: as of the group's start"
        );
        assert!(choose(&[], PointChoice::Latest, None).is_none());
    }

    #[test]
    fn r33_a_point_is_chosen_by_the_second_it_is_shown_at() {
        let mut points = [point(1, 0, Consistency::Crash), point(2, 3, Consistency::Crash)];
        points[0].time += chrono::TimeDelta::milliseconds(960);
        points[1].time += chrono::TimeDelta::milliseconds(40);
        let shown = |p: &StoredPoint| crate::model::format_time(p.time).parse::<PointChoice>().unwrap();
        assert_eq!(choose(&points, shown(&points[0]), None).unwrap().seq, 1);
        assert_eq!(choose(&points, shown(&points[1]), None).unwrap().seq, 2);
        let before = PointChoice::At(points[0].time - chrono::TimeDelta::seconds(1));
        assert!(choose(&points, before, None).is_none());
    }

    #[test]
    fn r9_addresses_libvirt_saw_are_given_to_the_nic_with_their_mac_whatever_the_order() {
        let nic = |ip: Option<std::net::Ipv4Addr>| ReplicaNic {
            network: Some("net".into()),
            subnet: None,
            ip,
            addressing: ip.map(|_| crate::model::Addressing::Static),
        };
        let given = std::net::Ipv4Addr::new(10, 0, 0, 9);
        let mut nics = vec![nic(None), nic(None), nic(Some(given))];
        let macs = ["52:54:00:00:00:01".to_string(), "52:54:00:00:00:02".into(), "52:54:00:00:00:03".into()];
        let found = [
            ("52:54:00:00:00:03".to_string(), std::net::Ipv4Addr::new(10, 0, 0, 3)),
            ("52:54:00:00:00:02".to_string(), std::net::Ipv4Addr::new(10, 0, 0, 2)),
            ("52:54:00:00:00:01".to_string(), std::net::Ipv4Addr::new(10, 0, 0, 1)),
        ];
        fill_addresses(&mut nics, &macs, &found);
        let ips: Vec<_> = nics.iter().map(|n| n.ip.unwrap().octets()[3]).collect();
        assert_eq!(ips, [1, 2, 9], "by MAC, and an address drplan gave is kept");
        assert_eq!(nics[0].addressing, Some(crate::model::Addressing::Dhcp));
        assert_eq!(nics[2].addressing, Some(crate::model::Addressing::Static));

        let mut unseen = vec![nic(None)];
        fill_addresses(&mut unseen, &["52:54:00:00:00:09".to_string()], &found);
        assert_eq!(unseen[0].ip, None, "a MAC libvirt did not list gets no other NIC's address");
    }

    #[test]
    fn r9_a_drill_keeps_the_target_ip_only_where_it_fits_the_test_subnet() {
        let subnet = |cidr: &str| Subnet { name: "lan".into(), cidr: cidr.parse().unwrap(), reserved: Vec::new() };
        let target = Some(Ipv4Addr::new(10, 20, 1, 20));
        let (mirror, bubble) = (subnet("10.20.1.0/24"), subnet("10.99.1.0/24"));
        assert_eq!(replica_ip(FailoverKind::Test, target, Some(&mirror)), target);
        assert_eq!(replica_ip(FailoverKind::Test, target, Some(&bubble)), None, "DHCP gives one in the bubble");
        assert_eq!(replica_ip(FailoverKind::Test, target, None), None);
        assert_eq!(replica_ip(FailoverKind::Planned, target, Some(&bubble)), target);
        assert_eq!(replica_ip(FailoverKind::Unplanned, None, Some(&mirror)), None);
    }

    #[test]
    fn tap_names_fit_libvirts_limit() {
        let prefix = tap_prefix("a-very-long-replica-domain-name-test");
        assert!(prefix.len() + 2 <= 15, "{prefix}");
        assert_ne!(tap_prefix("app01"), tap_prefix("app01-test"));
    }
}
