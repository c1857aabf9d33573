//! The `Services` an action gets: the world as the engine lets scripts touch it. Every
//! call is published as an event, so a dry run lists exactly what each action would do;
//! in a dry run nothing leaves the process (DNS goes to a recording updater).
//!
//! Each invocation of an action keeps its own modelled time: it starts at the time the
//! engine runs it from, and waits and fabric calls move it on. The engine reads it back
//! when the action returns, so a script's time is causal like the rest of the run.

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::event::{Draft, EventKind, Scope};
use super::executor::RunState;
use super::keys;
use crate::fabric::dns::DnsMode;
use crate::fabric::{Call, ReplicationStatus};
use crate::model::{FailoverKind, HumanDuration, Timestamp};
use crate::plan::{Services, VmOperation};

pub struct StepServices {
    run: Arc<RunState>,
    scope: Scope,
    /// The step's key: fabric calls its script makes get idempotency keys built on it,
    /// so a resumed run that runs the step again replays them instead of acting twice.
    step: String,
    calls: std::sync::atomic::AtomicU32,
    /// The action's modelled time: where it has got.
    at: Mutex<Timestamp>,
}

impl StepServices {
    /// Services for one invocation of an action that starts at `at`.
    pub fn new(run: Arc<RunState>, scope: Scope, step: String, at: Timestamp) -> Self {
        StepServices { run, scope, step, calls: Default::default(), at: Mutex::new(at) }
    }

    /// The action got as far as `t`.
    fn reached(&self, t: Timestamp) {
        let mut at = self.at.lock().expect("action clock lock");
        *at = (*at).max(t);
    }

    /// What a real run's DNS step says when the configuration only records DNS changes
    /// (`[dns] mode = "record"`): every report shows that nothing was sent.
    fn dns_note(&self) -> &'static str {
        if !self.run.spec.dry_run && self.run.dns.mode() == DnsMode::Record { " (record mode: not sent)" } else { "" }
    }

    fn call(&self, what: String) {
        self.run.publish(EventKind::Call, &self.scope, Draft { step: Some(what), ..Draft::default() }, self.now());
    }
}

#[async_trait]
impl Services for StepServices {
    fn now(&self) -> Timestamp {
        *self.at.lock().expect("action clock lock")
    }

    fn log(&self, message: &str) {
        let line = Draft { step: Some(message.into()), ..Draft::default() };
        self.run.publish(EventKind::Log, &self.scope, line, self.now());
    }

    async fn dns_point(&self, name: &str, ip: Ipv4Addr) -> Result<(), String> {
        self.call(format!("dns.point {name} A {ip}{}", self.dns_note()));
        self.run.dns.point(name, ip).await.map_err(|e| e.to_string())
    }

    async fn dns_verify(&self, name: &str, ip: Ipv4Addr) -> Result<(), String> {
        self.call(format!("dns.verify {name} A {ip}{}", self.dns_note()));
        self.run.dns.verify(name, ip).await.map_err(|e| e.to_string())
    }

    async fn dns_cname(&self, name: &str, target: &str) -> Result<(), String> {
        self.call(format!("dns.cname {name} -> {target}{}", self.dns_note()));
        self.run.dns.point_cname(name, target).await.map_err(|e| e.to_string())
    }

    async fn dns_verify_cname(&self, name: &str, target: &str) -> Result<(), String> {
        self.call(format!("dns.verify-cname {name} -> {target}{}", self.dns_note()));
        self.run.dns.verify_cname(name, target).await.map_err(|e| e.to_string())
    }

    async fn replication_status(&self, vm: &str) -> Result<ReplicationStatus, String> {
        self.run.fabric.replication_status(vm, self.now()).await.map_err(|e| e.to_string())
    }

    async fn operate(&self, vm: &str, operation: VmOperation) -> Result<String, String> {
        let name = operation.name();
        self.call(format!("vm.{name} {vm}"));
        let n = self.calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let call = Call::new(keys::script_call(&self.run.spec.run_id, &self.step, vm, &name, n), self.now());
        let fabric = &self.run.fabric;
        let done = |job: crate::model::Job| format!("{} (job {})", job.detail, job.id);
        let landed = |o: crate::fabric::FailoverOutcome| {
            let ip = o.replica.ip().map_or("not connected".to_string(), |ip| ip.to_string());
            format!("{ip} on {}; {}", o.replica.site, o.data_loss_text())
        };
        let result = match operation {
            VmOperation::Failover { kind, point } => {
                let request = crate::fabric::FailoverRequest {
                    test_network: (kind == crate::model::FailoverKind::Test).then(|| self.run.test_network()).flatten(),
                    ..crate::fabric::FailoverRequest::new(kind, point)
                };
                fabric.failover(&call, vm, &request).await.map(landed)
            }
            VmOperation::ChangePoint(point) => fabric.change_recovery_point(&call, vm, point).await.map(landed),
            VmOperation::Commit => fabric.commit(&call, vm).await.map(done),
            VmOperation::Cancel => fabric.cancel(&call, vm).await.map(done),
            VmOperation::Cleanup(notes) => fabric.cleanup_test(&call, vm, &notes).await.map(done),
            VmOperation::Reprotect => fabric.reprotect(&call, vm).await.map(done),
            VmOperation::Failback => fabric.failback(&call, vm, FailoverKind::Planned).await.map(landed),
            VmOperation::Shutdown => fabric.shutdown(&call, vm).await.map(done),
            VmOperation::Start => fabric.start(&call, vm).await.map(done),
        };
        self.reached(call.ended());
        result.map_err(|e| e.to_string())
    }

    /// A dry run's services: the simulation unpaced, DNS recorded. Its engine waits on
    /// nothing else, and nothing stops it from outside (no cancel, no progress display).
    fn completes_at_once(&self) -> bool {
        self.run.spec.dry_run && self.run.fabric.completes_at_once() && self.run.dns.mode() == DnsMode::Record
    }

    async fn wait(&self, duration: Duration) -> Result<(), String> {
        self.call(format!("wait {}", HumanDuration(duration)));
        let end = self.run.fabric.wait(self.now(), duration).await;
        self.reached(end);
        Ok(())
    }

    async fn wait_port(&self, ip: Ipv4Addr, port: u16, timeout: Duration) -> Result<(), String> {
        self.call(format!("wait_port {ip}:{port} (up to {})", HumanDuration(timeout)));
        if let Some(answered) = self.run.fabric.wait_port(ip, port, timeout).await {
            let answered = answered?;
            self.reached(answered);
            return Ok(());
        }
        // The simulated fabric has no sockets: a port answers once a VM of this run is up
        // at the address and the site file says it serves the port; otherwise the whole
        // timeout passes first, as it would waiting on a real one. A dry run and a run
        // answer alike.
        if self.run.is_served(ip, port) {
            return Ok(());
        }
        let end = self.run.fabric.wait(self.now(), timeout).await;
        self.reached(end);
        Err(format!(
            "nothing answered at {ip}:{port} within {}: no VM of this run that is up there serves port {port} (the site file's services)",
            HumanDuration(timeout)
        ))
    }
}
