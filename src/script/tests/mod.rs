//! Tests of the script layer: the sandbox, plan building, actions. Shared here: a small
//! site, plan files in a temporary folder, and services that record what they are asked.

mod actions;
mod global_hooks;
mod plan;
mod sandbox;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tempfile::TempDir;

use super::{ScriptError, ScriptOptions, load_plan};
use crate::fabric::{Health, ReplicationStatus};
use crate::model::site_file::parse_site;
use crate::model::testing::{SQL_CLUSTER, two_sites};
use crate::model::{Consistency, FailoverKind, HumanDuration, Inventory, RecoveryPoint, Side, Timestamp};
use crate::plan::{ActionContext, EventView, Plan, Services, VmBoard, VmView};

/// What the script tests add to the shared two sites and SQL cluster: a clock and two
/// more protected VMs.
const VMS: &str = r#"
[simulation]
start = "2026-03-02T09:00:00Z"
speed = 1000

[[vms]]
name = "app01"
site = "primary"
host = "hv-p01"
os = "linux"
tags = { tier = "app" }
disks = [{ name = "os", size_gb = 30, os = true }]
nics = [{ network = "prod", subnet = "web", ip = "10.1.3.31" }]
protection = { policy = "gold", since = "-2d" }

[[vms]]
name = "web01"
site = "primary"
host = "hv-p01"
os = "linux"
tags = { tier = "web" }
dns = ["web01.contoso.test", "www.contoso.test"]
disks = [{ name = "os", size_gb = 30, os = true }]
nics = [{ network = "prod", subnet = "web", ip = "10.1.3.21", target_ip = "10.2.3.21" }]
protection = { policy = "gold", since = "-2d" }
"#;

fn inventory() -> Arc<Inventory> {
    Arc::new(
        parse_site(&two_sites(&format!("{SQL_CLUSTER}{VMS}")), Path::new("site.toml")).expect("the test site parses"),
    )
}

/// A folder of plan files.
struct Plans(TempDir);

impl Plans {
    fn new() -> Self {
        Plans(tempfile::tempdir().expect("a temporary folder"))
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.path().join(name);
        std::fs::write(&path, text).expect("the plan is written");
        path
    }

    /// Writes `plan.rhai` and loads it with the default options.
    fn load(&self, text: &str) -> Result<Plan, ScriptError> {
        self.load_with(text, &ScriptOptions::default())
    }

    fn load_with(&self, text: &str, options: &ScriptOptions) -> Result<Plan, ScriptError> {
        load_plan(&self.write("plan.rhai", text), inventory(), options)
    }
}

/// Records every call; `dns_point` and `dns_cname` fail when `refuse_dns`; a wait of a day or more
/// never ends (and records when it is dropped).
#[derive(Default)]
struct FakeServices {
    calls: Mutex<Vec<String>>,
    refuse_dns: bool,
    /// Claims to complete every call at once, as a dry run's services do.
    at_once: bool,
    /// The thread each `log` was called from.
    log_threads: Mutex<Vec<std::thread::ThreadId>>,
}

impl FakeServices {
    fn record(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

struct RecordDrop<'a>(&'a FakeServices);

impl Drop for RecordDrop<'_> {
    fn drop(&mut self) {
        self.0.record("wait dropped".into());
    }
}

fn time(text: &str) -> Timestamp {
    text.parse().expect("an RFC 3339 time")
}

#[async_trait]
impl Services for FakeServices {
    fn now(&self) -> Timestamp {
        time("2026-03-02T09:00:00Z")
    }

    fn log(&self, message: &str) {
        self.record(format!("log {message}"));
        self.log_threads.lock().unwrap().push(std::thread::current().id());
    }

    fn completes_at_once(&self) -> bool {
        self.at_once
    }

    async fn dns_point(&self, name: &str, ip: Ipv4Addr) -> Result<(), String> {
        self.record(format!("dns_point {name} {ip}"));
        if self.refuse_dns { Err("the DNS server refused the update".into()) } else { Ok(()) }
    }

    async fn dns_verify(&self, name: &str, ip: Ipv4Addr) -> Result<(), String> {
        self.record(format!("dns_verify {name} {ip}"));
        Ok(())
    }

    async fn dns_cname(&self, name: &str, target: &str) -> Result<(), String> {
        self.record(format!("dns_cname {name} {target}"));
        if self.refuse_dns { Err("the DNS server refused the update".into()) } else { Ok(()) }
    }

    async fn dns_verify_cname(&self, name: &str, target: &str) -> Result<(), String> {
        self.record(format!("dns_verify_cname {name} {target}"));
        Ok(())
    }

    async fn operate(&self, vm: &str, operation: crate::plan::VmOperation) -> Result<String, String> {
        self.record(format!("operate {vm} {operation:?}"));
        match operation {
            crate::plan::VmOperation::Commit => {
                Err(format!("cannot commit {vm}: it is protected. Next: test failover."))
            }
            _ => Ok(format!("{} done", operation.name())),
        }
    }

    async fn replication_status(&self, vm: &str) -> Result<ReplicationStatus, String> {
        self.record(format!("replication_status {vm}"));
        let point = RecoveryPoint { time: time("2026-03-02T08:55:00Z"), consistency: Consistency::Crash };
        Ok(ReplicationStatus {
            vm: vm.into(),
            state: "protected".into(),
            active_site: "primary".into(),
            active: Side::Original,
            direction: Some(("primary".into(), "secondary".into())),
            policy: Some("gold".into()),
            initial_progress: None,
            latest_point: Some(point),
            latest_app_consistent: None,
            point_count: 12,
            rpo: Some(Duration::from_secs(300)),
            health: Health::Healthy,
            test_failover: None,
            allowed: Vec::new(),
        })
    }

    async fn wait(&self, duration: Duration) -> Result<(), String> {
        self.record(format!("wait {}", HumanDuration(duration)));
        if duration >= Duration::from_secs(86_400) {
            let _dropped = RecordDrop(self);
            std::future::pending::<()>().await;
        }
        // A real timer: the runtime's driver must serve host calls made from the script's thread.
        tokio::time::sleep(Duration::from_millis(1)).await;
        Ok(())
    }

    async fn wait_port(&self, ip: Ipv4Addr, port: u16, timeout: Duration) -> Result<(), String> {
        self.record(format!("wait_port {ip}:{port} {}", HumanDuration(timeout)));
        Ok(())
    }
}

fn vm_view(name: &str, group: &str, ip: Option<&str>, dns: &[&str]) -> VmView {
    VmView {
        name: name.into(),
        group: group.into(),
        source_ip: Some("10.1.3.21".parse().unwrap()),
        ip: ip.map(|ip| ip.parse().unwrap()),
        replica_name: name.into(),
        site: Some("secondary".into()),
        host: Some("hv-s01".into()),
        network: Some("prod-dr".into()),
        dns: dns.iter().map(|d| d.to_string()).collect(),
        tags: BTreeMap::from([("tier".to_string(), "web".to_string())]),
        services: vec![443],
        state: "succeeded".into(),
    }
}

/// The context of an action of group "web" (for `vm`, a per-VM one); web01 is up at
/// 10.2.3.21, web02 has no address yet.
fn action_ctx(services: Arc<FakeServices>, vm: Option<&str>, event: Option<EventView>) -> ActionContext {
    let vms = BTreeMap::from([
        ("web01".to_string(), vm_view("web01", "web", Some("10.2.3.21"), &["web01.contoso.test", "www.contoso.test"])),
        ("web02".to_string(), vm_view("web02", "web", None, &["web02.contoso.test"])),
    ]);
    ActionContext {
        run_id: "run-7".into(),
        plan: "contoso".into(),
        kind: FailoverKind::Planned,
        source: "primary".into(),
        target: "secondary".into(),
        direction: crate::plan::Direction::Failover,
        dry_run: false,
        group: Some("web".into()),
        vm: vm.map(String::from),
        vms: Arc::new(VmBoard::new(vms)),
        test_network: None,
        event,
        services,
    }
}
