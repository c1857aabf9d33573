//! The simulated fabric against DOMAIN.md's replication and failover rules, on paused
//! tokio time: every test is deterministic and instant.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tempfile::TempDir;

use super::SimFabric;
use crate::fabric::{Call, Fabric, FabricError, FailoverOutcome, FailoverRequest, Health, SourceShutdown};
use crate::model::site_file::parse_site;
use crate::model::testing::two_sites;
use crate::model::{
    Addressing, Consistency, FailoverKind, JobStatus, Operation, Phase, PointChoice, Side, Timestamp, format_time,
};
use crate::store::StateDir;

/// What these tests add to the shared two sites ([`crate::model::testing::TWO_SITES`]): a
/// clock that starts at 09:00 and runs at speed 1000, so that a modelled minute is 60 ms
/// of paused tokio time.
const SIMULATION: &str = r#"
[simulation]
start = "2026-03-02T09:00:00Z"
speed = 1000
"#;

/// Then gold storage mapped to dr-gold (R11), the one-nic size (R8), and the gold policy
/// of these tests: 5m copies, app-consistent points every 4h and a 30m RPO threshold, which
/// the times asserted below follow. (The shared [`crate::model::testing::SQL_CLUSTER`]
/// defines gold with its defaults, and SQL VMs without the storage, data disks and 2m
/// boots these tests time.)
const POLICIES: &str = r#"
[[storage_mappings]]
source = "gold"
target = "dr-gold"

[[policies]]
name = "gold"
copy_frequency = "5m"
retention = "24h"
app_consistent = "4h"
rpo_threshold = "30m"

[[sizes]]
name = "one-nic"
max_nics = 1

[[replication_groups]]
name = "sql"
vms = ["sql01", "sql02"]
"#;

/// A `[[vms]]` entry: `name` on `host` of `site`, then `details`, a key a line.
fn vm_entry(name: &str, site: &str, host: &str, details: &str) -> String {
    format!("\n[[vms]]\nname = \"{name}\"\nsite = \"{site}\"\nhost = \"{host}\"\n{details}")
}

/// A VM on primary protected with gold since two days before the start.
fn protected_vm(name: &str, host: &str, os: &str, details: &str) -> String {
    let protection = "protection = { policy = \"gold\", since = \"-2d\" }\n";
    vm_entry(name, "primary", host, &format!("os = \"{os}\"\n{details}{protection}"))
}

/// A SQL server of replication group sql: Windows on gold storage, booting in 2m, with a
/// 400 GiB data disk and a static target IP in prod-dr/db.
fn sql_vm(name: &str, host: &str, ip: &str, target_ip: &str) -> String {
    let details = format!(
        "storage = \"gold\"\nboot_time = \"2m\"\n\
         disks = [{{ name = \"os\", size_gb = 100, os = true }}, {{ name = \"data\", size_gb = 400 }}]\n\
         nics = [{{ network = \"prod\", subnet = \"db\", ip = \"{ip}\", target_ip = \"{target_ip}\" }}]\n"
    );
    protected_vm(name, host, "windows", &details)
}

/// A Linux VM with a 30 GiB OS disk (booting in the default 60 s) and `nics`.
fn linux_vm(name: &str, host: &str, nics: &str) -> String {
    protected_vm(
        name,
        host,
        "linux",
        &format!("disks = [{{ name = \"os\", size_gb = 30, os = true }}]\nnics = [{nics}]\n"),
    )
}

/// The VMs, all on primary, in this order (which places their replicas on hosts):
/// - sql01 (hv-p01), sql02 (hv-p02): see [`sql_vm`];
/// - web01: two NICs that the one-nic size caps at one, a target IP in prod-dr/web, a 45 s
///   boot;
/// - app01, app02: no target IPs, so their replicas get addresses in prod-dr/web (R9);
/// - bk01: on the backup network, which is mapped nowhere (R10);
/// - fresh01: not protected yet, 200 GiB to copy (R4, R6).
fn vms() -> String {
    let web01 = "size = \"one-nic\"\nboot_time = \"45s\"\n\
                 disks = [{ name = \"os\", size_gb = 30, os = true }]\n\
                 nics = [{ network = \"prod\", subnet = \"web\", ip = \"10.1.3.21\", target_ip = \"10.2.3.21\" },\n\
                 { network = \"prod\", subnet = \"db\", ip = \"10.1.1.21\" }]\n";
    [
        sql_vm("sql01", "hv-p01", "10.1.1.10", "10.2.1.10"),
        sql_vm("sql02", "hv-p02", "10.1.1.11", "10.2.1.11"),
        protected_vm("web01", "hv-p01", "linux", web01),
        linux_vm("app01", "hv-p02", r#"{ network = "prod", subnet = "web", ip = "10.1.3.31" }"#),
        linux_vm("app02", "hv-p02", r#"{ network = "prod", subnet = "web", ip = "10.1.3.32" }"#),
        linux_vm("bk01", "hv-p01", r#"{ network = "backup", subnet = "backup", ip = "10.1.9.5" }"#),
        vm_entry(
            "fresh01",
            "primary",
            "hv-p01",
            "os = \"linux\"\n\
             disks = [{ name = \"os\", size_gb = 100, os = true }, { name = \"data\", size_gb = 100 }]\n\
             nics = [{ network = \"prod\", subnet = \"web\" }]\n",
        ),
    ]
    .concat()
}

/// The site file of these tests, `simulation` first and `extra` (faults, usually) last.
fn site_with(simulation: &str, extra: &str) -> String {
    two_sites(&format!("{simulation}{POLICIES}{}{extra}", vms()))
}

/// A VMware site protected to a cloud region (R7, R31): other sites than the shared two.
/// Its two Windows VMs differ in name only: reporting-server01 breaks the cloud's rules.
fn cloud_site() -> String {
    let sites = r#"
[[sites]]
name = "branch"
kind = "onprem"
platform = "vmware"
hosts = ["esx01"]
networks = [{ name = "lan", subnets = [{ name = "default", cidr = "10.5.0.0/24" }] }]

[[sites]]
name = "cloud-east"
kind = "cloud"
hosts = ["region"]
networks = [{ name = "vnet", subnets = [{ name = "default", cidr = "10.6.0.0/24" }] }]

[[pairings]]
source = "branch"
target = "cloud-east"

[[network_mappings]]
source = "branch/lan"
target = "cloud-east/vnet"

[[policies]]
name = "std"
retention = "24h"
"#;
    let windows = "os = \"windows\"\n\
                   disks = [{ name = \"os\", size_gb = 10, os = true }]\n\
                   nics = [{ network = \"lan\", subnet = \"default\" }]\n\
                   protection = { policy = \"std\", since = \"-1d\" }\n";
    let vm = |name| vm_entry(name, "branch", "esx01", windows);
    format!("{sites}{}{}", vm("reporting-server01"), vm("files01"))
}

struct Sim {
    fabric: Arc<SimFabric>,
    dir: TempDir,
    site: String,
    _state: StateDir,
}

fn open_site(site: &str) -> Sim {
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::open(dir.path()).unwrap();
    let inventory = parse_site(site, "site.toml".as_ref()).unwrap_or_else(|e| panic!("{e}"));
    let fabric = Arc::new(SimFabric::open(Arc::new(inventory), &state).unwrap());
    Sim { fabric, dir, site: site.into(), _state: state }
}

/// The test site plus extra TOML (faults, usually).
fn sim(extra: &str) -> Sim {
    open_site(&site_with(SIMULATION, extra))
}

impl Sim {
    /// Drops the fabric and opens the state directory again, as the next command would.
    fn reopen(self) -> Sim {
        let Sim { fabric, dir, site, _state } = self;
        drop(fabric);
        drop(_state);
        let state = StateDir::open(dir.path()).unwrap();
        let inventory = parse_site(&site, "site.toml".as_ref()).unwrap();
        let fabric = Arc::new(SimFabric::open(Arc::new(inventory), &state).unwrap());
        Sim { fabric, dir, site, _state: state }
    }
}

fn key() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("test/{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A call with a fresh key, made now.
fn call(fabric: &SimFabric) -> Call {
    keyed(fabric, &key())
}

/// A call with `key`, made now.
fn keyed(fabric: &SimFabric, key: &str) -> Call {
    Call::new(key, fabric.now())
}

fn t(text: &str) -> Timestamp {
    DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
}

fn request(kind: FailoverKind, point: PointChoice) -> FailoverRequest {
    FailoverRequest { shut_down_source: false, ..FailoverRequest::new(kind, point) }
}

async fn failover(sim: &Sim, vm: &str, kind: FailoverKind, point: PointChoice) -> Result<FailoverOutcome, FabricError> {
    sim.fabric.failover(&call(&sim.fabric), vm, &request(kind, point)).await
}

/// An unplanned failover that first tries to shut the source down (R32).
async fn unplanned_with_shutdown(sim: &Sim, vm: &str) -> Result<FailoverOutcome, FabricError> {
    let mut req = request(FailoverKind::Unplanned, PointChoice::LatestProcessed);
    req.shut_down_source = true;
    sim.fabric.failover(&call(&sim.fabric), vm, &req).await
}

async fn phase_allows(sim: &Sim, vm: &str) -> Vec<Operation> {
    sim.fabric.replication_status(vm, sim.fabric.now()).await.unwrap().allowed
}

/// How long fresh01's 200 GiB take at 102,400 Kbps, its host's bandwidth shared by the
/// VMs the host replicates (R15, per host).
fn fresh01_full_copy(sim: &Sim) -> u64 {
    let vm = sim.fabric.inventory().vm("fresh01").unwrap();
    16_384 * u64::from(sim.fabric.inventory().host_share(vm))
}

#[tokio::test(start_paused = true)]
async fn r4_initial_replication_takes_time_from_disk_size_and_bandwidth() {
    let sim = sim("");
    let copy = fresh01_full_copy(&sim);
    let done = t("2026-03-02T09:00:00Z") + chrono::TimeDelta::seconds(copy as i64);
    let job = sim.fabric.protect(&call(&sim.fabric), "fresh01", "gold", &[]).await.unwrap();
    assert!(job.detail.contains(&format!("initial replication until {}", format_time(done))), "{}", job.detail);
    let status = sim.fabric.replication_status("fresh01", sim.fabric.now()).await.unwrap();
    assert_eq!(status.health, Health::InitialReplication);
    assert_eq!(status.initial_progress, Some(0));
    sim.fabric.advance(Duration::from_secs(copy / 2)).unwrap();
    assert_eq!(sim.fabric.replication_status("fresh01", sim.fabric.now()).await.unwrap().initial_progress, Some(50));
    sim.fabric.advance(Duration::from_secs(copy / 2)).unwrap();
    let status = sim.fabric.replication_status("fresh01", sim.fabric.now()).await.unwrap();
    assert_eq!(status.state, "protected");
    assert_eq!(status.latest_point, None, "the first point comes on the next 5m tick");
    sim.fabric.advance(Duration::from_secs(300)).unwrap();
    let status = sim.fabric.replication_status("fresh01", sim.fabric.now()).await.unwrap();
    let point = status.latest_point.unwrap().time;
    assert!(point > done && point <= done + chrono::TimeDelta::minutes(5), "the first 5m tick after the copy: {point}");
}

#[tokio::test(start_paused = true)]
async fn r15_the_vms_of_a_host_share_its_throttled_bandwidth() {
    let one_thread = sim("\n[throttle]\nthreads = 1\n");
    let sim = sim("");
    let inventory = sim.fabric.inventory();
    let fresh01 = inventory.vm("fresh01").unwrap();
    // Its host, hv-p01, replicates three VMs already: fresh01 makes four.
    assert_eq!(inventory.host_share(fresh01), 4);
    assert_eq!(fresh01_full_copy(&sim), 4 * 16_384, "a quarter of 102,400 Kbps for 200 GiB");
    // Upload threads per VM (seed 002): with fewer than four, a VM uses less of its share.
    let job = one_thread.fabric.protect(&call(&one_thread.fabric), "fresh01", "gold", &[]).await.unwrap();
    let done = t("2026-03-02T09:00:00Z") + chrono::TimeDelta::seconds(4 * 4 * 16_384);
    assert!(job.detail.contains(&format_time(done)), "{}", job.detail);
}

#[tokio::test(start_paused = true)]
async fn r4_offline_initial_replication_takes_the_transfer_time() {
    let sim = sim(r#"
[[policies]]
name = "offline"
retention = "24h"
initial_replication = "offline"
export_path = "/export"
import_path = "/import"
offline_transfer = "36h"
"#);
    let job = sim.fabric.protect(&call(&sim.fabric), "fresh01", "offline", &[]).await.unwrap();
    assert!(job.detail.contains("until 2026-03-03T21:00:00Z"), "{}", job.detail);
}

#[tokio::test(start_paused = true)]
async fn r5_failover_refused_while_initial_replication_runs() {
    let sim = sim("");
    sim.fabric.protect(&call(&sim.fabric), "fresh01", "gold", &[]).await.unwrap();
    let err = failover(&sim, "fresh01", FailoverKind::Unplanned, PointChoice::Latest).await.unwrap_err();
    assert!(err.to_string().contains("R5"), "{err}");
    sim.fabric.advance(Duration::from_secs(fresh01_full_copy(&sim))).unwrap();
    let err = failover(&sim, "fresh01", FailoverKind::Test, PointChoice::LatestProcessed).await.unwrap_err();
    assert!(err.to_string().contains("the first comes on the first 5m tick"), "{err}");
    sim.fabric.advance(Duration::from_secs(300)).unwrap();
    failover(&sim, "fresh01", FailoverKind::Test, PointChoice::LatestProcessed).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn r6_excluded_data_disks_are_not_copied_and_the_os_disk_cannot_be_excluded() {
    let sim = sim("");
    let err = sim.fabric.protect(&call(&sim.fabric), "fresh01", "gold", &["os".into()]).await.unwrap_err();
    assert!(matches!(err, FabricError::Disk { .. }), "{err}");
    assert!(err.to_string().contains("OS disk"), "{err}");
    // Half the bytes: half the time.
    let job = sim.fabric.protect(&call(&sim.fabric), "fresh01", "gold", &["data".into()]).await.unwrap();
    let done = t("2026-03-02T09:00:00Z") + chrono::TimeDelta::seconds(fresh01_full_copy(&sim) as i64 / 2);
    assert!(job.detail.contains(&format!("until {}", format_time(done))), "{}", job.detail);
    // The disk set is fixed while protected.
    let err = sim.fabric.protect(&call(&sim.fabric), "fresh01", "gold", &[]).await.unwrap_err();
    assert!(err.to_string().contains("cannot protect fresh01"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn r2_points_inside_retention_are_kept_and_older_ones_pruned() {
    let sim = sim("");
    let points = sim.fabric.recovery_points("web01", sim.fabric.now()).await.unwrap();
    assert_eq!(points.len(), 24 * 12 + 1);
    assert_eq!(points[0].time, t("2026-03-01T09:00:00Z"));
    sim.fabric.advance(Duration::from_secs(3 * 3600)).unwrap();
    let points = sim.fabric.recovery_points("web01", sim.fabric.now()).await.unwrap();
    assert_eq!(points.len(), 24 * 12 + 1);
    assert_eq!(points[0].time, t("2026-03-01T12:00:00Z"));
    assert_eq!(points.last().unwrap().time, t("2026-03-02T12:00:00Z"));
}

#[tokio::test(start_paused = true)]
async fn r3_app_consistent_points_come_at_the_policy_frequency() {
    let sim = sim("");
    let status = sim.fabric.replication_status("web01", sim.fabric.now()).await.unwrap();
    assert_eq!(status.latest_app_consistent.unwrap().time, t("2026-03-02T08:00:00Z"));
    let app: Vec<_> = sim
        .fabric
        .recovery_points("web01", sim.fabric.now())
        .await
        .unwrap()
        .into_iter()
        .filter(|p| p.consistency == Consistency::App)
        .collect();
    assert_eq!(app.len(), 6, "every 4 hours over 24 hours: {app:?}");
}

#[tokio::test(start_paused = true)]
async fn r12_replication_group_fails_over_to_a_common_point() {
    let sim = sim("[[faults]]\nkind = \"replication-stall\"\nvm = \"sql02\"\nat = \"-1h\"\n");
    assert_eq!(
        sim.fabric.recovery_points("sql01", sim.fabric.now()).await.unwrap(),
        sim.fabric.recovery_points("sql02", sim.fabric.now()).await.unwrap()
    );
    let (a, b) = tokio::join!(
        failover(&sim, "sql01", FailoverKind::Unplanned, PointChoice::LatestProcessed),
        failover(&sim, "sql02", FailoverKind::Unplanned, PointChoice::LatestProcessed),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.point, b.point);
    assert_eq!(a.point.time, t("2026-03-02T08:00:00Z"), "sql02 stalled at 08:00");
    assert_eq!(a.data_loss, Duration::from_secs(3600));
}

#[tokio::test(start_paused = true)]
async fn r15_rpo_above_threshold_is_unhealthy() {
    let sim = sim("[[faults]]\nkind = \"replication-stall\"\nvm = \"web01\"\nat = \"-20m\"\n");
    let status = sim.fabric.replication_status("web01", sim.fabric.now()).await.unwrap();
    assert_eq!(status.rpo, Some(Duration::from_secs(20 * 60)));
    assert_eq!(status.health, Health::Healthy);
    sim.fabric.advance(Duration::from_secs(11 * 60)).unwrap();
    let status = sim.fabric.replication_status("web01", sim.fabric.now()).await.unwrap();
    assert_eq!(
        status.health,
        Health::Unhealthy { rpo: Duration::from_secs(31 * 60), threshold: Duration::from_secs(30 * 60) }
    );
    assert_eq!(
        sim.fabric.replication_status("app01", sim.fabric.now()).await.unwrap().rpo,
        Some(Duration::from_secs(60))
    );
}

#[tokio::test(start_paused = true)]
async fn r14_unprotect_keeps_or_deletes_the_replica() {
    let sim = sim("");
    let kept = sim.fabric.unprotect(&call(&sim.fabric), "web01", false).await.unwrap();
    assert_eq!(kept.detail, "protection disabled; replica kept");
    let deleted = sim.fabric.unprotect(&call(&sim.fabric), "app01", true).await.unwrap();
    assert_eq!(deleted.detail, "protection disabled; replica deleted");
    let status = sim.fabric.replication_status("web01", sim.fabric.now()).await.unwrap();
    assert_eq!(status.state, "unprotected");
    assert_eq!(status.health, Health::NotReplicating);
    assert!(sim.fabric.recovery_points("web01", sim.fabric.now()).await.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn r30_test_failover_runs_in_the_isolated_network_and_leaves_production_alone() {
    let sim = sim("");
    let mut req = request(FailoverKind::Test, PointChoice::LatestProcessed);
    req.test_network = Some("test-bubble".into());
    let out = sim.fabric.failover(&call(&sim.fabric), "web01", &req).await.unwrap();
    assert_eq!(out.source_shutdown, SourceShutdown::Skipped);
    assert_eq!(out.downtime, None);
    let nic = &out.replica.nics[0];
    assert_eq!(nic.network.as_deref(), Some("test-bubble"));
    // The target IP does not fit the test subnet, so the replica gets one there (R9).
    assert_eq!(nic.ip, Some("192.168.103.2".parse().unwrap()));
    let status = sim.fabric.replication_status("web01", sim.fabric.now()).await.unwrap();
    assert_eq!(status.active, Side::Original);
    assert_eq!(status.health, Health::Healthy, "production replication keeps running");
    sim.fabric.advance(Duration::from_secs(3600)).unwrap();
    let status = sim.fabric.replication_status("web01", sim.fabric.now()).await.unwrap();
    assert_eq!(status.latest_point.unwrap().time, t("2026-03-02T10:00:00Z"));
    let again = sim.fabric.failover(&call(&sim.fabric), "web01", &req).await.unwrap_err();
    assert!(again.to_string().contains("Next: cleanup"), "{again}");
    let cleanup = sim.fabric.cleanup_test(&call(&sim.fabric), "web01", "drill ok, app answered").await.unwrap();
    assert_eq!(cleanup.detail, "test replica deleted; notes: drill ok, app answered");
    assert!(sim.fabric.replication_status("web01", sim.fabric.now()).await.unwrap().test_failover.is_none());
}

#[tokio::test(start_paused = true)]
async fn r30_test_failover_without_network_or_into_unknown_network() {
    let sim = sim("");
    let out = failover(&sim, "app01", FailoverKind::Test, PointChoice::LatestProcessed).await.unwrap();
    assert_eq!(out.replica.nics[0].network, None, "no network at all");
    let mut req = request(FailoverKind::Test, PointChoice::LatestProcessed);
    req.test_network = Some("nowhere".into());
    let err = sim.fabric.failover(&call(&sim.fabric), "web01", &req).await.unwrap_err();
    assert!(matches!(err, FabricError::UnknownTestNetwork { .. }), "{err}");
    let err = sim.fabric.cleanup_test(&call(&sim.fabric), "web01", "").await.unwrap_err();
    assert!(err.to_string().contains("no test failover to clean up"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn r31_planned_failover_shuts_source_down_first_and_loses_nothing() {
    let sim = sim("");
    let out = failover(&sim, "web01", FailoverKind::Planned, PointChoice::Latest).await.unwrap();
    assert_eq!(out.source_shutdown, SourceShutdown::Done);
    assert_eq!(out.data_loss, Duration::ZERO);
    // The point is the moment the source finished shutting down (30 s).
    assert_eq!(out.point.time, t("2026-03-02T09:00:30Z"));
    assert_eq!(out.point.consistency, Consistency::App);
    assert!(out.downtime.unwrap() >= Duration::from_secs(75));
    let status = sim.fabric.replication_status("web01", sim.fabric.now()).await.unwrap();
    assert_eq!(status.active_site, "secondary");
    assert!(status.state.starts_with("failed over (planned"), "{}", status.state);
    let jobs = sim.fabric.jobs().await.unwrap();
    assert_eq!(jobs.last().unwrap().status, JobStatus::Succeeded);
}

#[tokio::test(start_paused = true)]
async fn r31_planned_failover_to_cloud_not_offered_for_vmware_sources() {
    let sim = open_site(&cloud_site());
    let err = failover(&sim, "files01", FailoverKind::Planned, PointChoice::Latest).await.unwrap_err();
    assert!(matches!(err, FabricError::NotOffered { .. }), "{err}");
    failover(&sim, "files01", FailoverKind::Unplanned, PointChoice::LatestProcessed).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn r7_replica_name_breaking_cloud_rules_is_refused_before_failover() {
    let sim = open_site(&cloud_site());
    let err = failover(&sim, "reporting-server01", FailoverKind::Test, PointChoice::Latest).await.unwrap_err();
    assert!(matches!(err, FabricError::ReplicaName { .. }), "{err}");
    assert!(err.to_string().contains("1 to 15"), "{err}");
    assert_eq!(sim.fabric.replication_status("reporting-server01", sim.fabric.now()).await.unwrap().state, "protected");
}

#[tokio::test(start_paused = true)]
async fn r32_unplanned_failover_goes_on_when_source_shutdown_fails_and_loses_changes() {
    let sim = sim("[[faults]]\nkind = \"shutdown-failure\"\nvm = \"web01\"\n");
    sim.fabric.advance(Duration::from_secs(180)).unwrap();
    let out = unplanned_with_shutdown(&sim, "web01").await.unwrap();
    assert!(matches!(out.source_shutdown, SourceShutdown::Failed { .. }), "{:?}", out.source_shutdown);
    assert_eq!(out.point.time, t("2026-03-02T09:00:00Z"));
    assert_eq!(out.data_loss, Duration::from_secs(180));
    sim.fabric.commit(&call(&sim.fabric), "web01").await.unwrap();
    // Not protected after an unplanned failover: reprotect is a full copy (30 GiB, 2,457.6 s
    // at the whole bandwidth, three times that on hv-p01, which replicates three VMs: R15)
    // after the 45 s boot and 10 s commit.
    let job = sim.fabric.reprotect(&call(&sim.fabric), "web01").await.unwrap();
    assert!(job.detail.contains("copy done at 2026-03-02T11:06:47Z"), "{}", job.detail);
}

#[tokio::test(start_paused = true)]
async fn r32_a_planned_failover_whose_source_will_not_shut_down_is_retried_as_unplanned_without_cancel() {
    let sim = sim("[[faults]]\nkind = \"shutdown-failure\"\nvm = \"web01\"\n");
    let err = failover(&sim, "web01", FailoverKind::Planned, PointChoice::Latest).await.unwrap_err();
    assert!(err.to_string().contains("refused to shut down"), "{err}");
    let points_before = sim.fabric.recovery_points("web01", sim.fabric.now()).await.unwrap();
    assert!(!points_before.is_empty(), "a failed failover keeps the points");
    // No cancel, no reprotect, no copy: the retry goes on without the source (R32).
    let out = unplanned_with_shutdown(&sim, "web01").await.unwrap();
    assert!(matches!(out.source_shutdown, SourceShutdown::Failed { .. }), "{:?}", out.source_shutdown);
    assert_eq!(out.point, *points_before.last().unwrap());
    // Honest: the source still runs, so what is lost has no end yet.
    assert!(out.source_may_run());
    let text = out.data_loss_text();
    assert!(text.contains("OPEN-ENDED") && text.contains("still running"), "{text}");
    assert!(out.job.detail.contains("OPEN-ENDED"), "{}", out.job.detail);
}

#[tokio::test(start_paused = true)]
async fn r35_a_cancelled_failover_keeps_its_points_and_can_fail_over_unplanned_to_one() {
    let sim = sim("[[faults]]\nkind = \"shutdown-hang\"\nvm = \"web01\"\n");
    let before = sim.fabric.recovery_points("web01", sim.fabric.now()).await.unwrap();
    let fabric = sim.fabric.clone();
    let running = tokio::spawn(async move {
        let request = request(FailoverKind::Unplanned, PointChoice::LatestProcessed);
        let request = FailoverRequest { shut_down_source: true, ..request };
        fabric.failover(&keyed(&fabric, "run/2"), "web01", &request).await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    sim.fabric.cancel(&call(&sim.fabric), "web01").await.unwrap();
    assert!(matches!(running.await.unwrap(), Err(FabricError::Cancelled { .. })));
    let kept = sim.fabric.recovery_points("web01", sim.fabric.now()).await.unwrap();
    assert_eq!(kept, before, "R35 stops replication; it does not delete the points");
    let again = failover(&sim, "web01", FailoverKind::Unplanned, PointChoice::At(before[0].time)).await.unwrap();
    assert_eq!(again.point, before[0]);
    assert_eq!(again.replica.site, "secondary");
}

#[tokio::test(start_paused = true)]
async fn r15_a_replication_stall_stays_in_force_after_failover_no_later_point_is_offered() {
    let sim = sim("[[faults]]\nkind = \"replication-stall\"\nvm = \"web01\"\nat = \"-1h\"\n");
    let stalled = t("2026-03-02T08:00:00Z");
    let out = failover(&sim, "web01", FailoverKind::Unplanned, PointChoice::LatestProcessed).await.unwrap();
    assert!(out.point.time <= stalled, "{:?}", out.point);
    let points = sim.fabric.recovery_points("web01", sim.fabric.now()).await.unwrap();
    assert!(!points.is_empty());
    assert!(points.iter().all(|p| p.time <= stalled), "after the failover too: {points:?}");
    let moved = sim
        .fabric
        .change_recovery_point(&call(&sim.fabric), "web01", PointChoice::At(t("2026-03-02T08:55:00Z")))
        .await
        .unwrap();
    assert!(moved.point.time <= stalled, "a point that never reached the target cannot be picked: {:?}", moved.point);
}

#[tokio::test(start_paused = true)]
async fn r32_a_hung_source_shutdown_is_waited_for_then_abandoned() {
    let sim = sim("[[faults]]\nkind = \"shutdown-hang\"\nvm = \"web01\"\n");
    let out = unplanned_with_shutdown(&sim, "web01").await.unwrap();
    let SourceShutdown::Failed { error } = &out.source_shutdown else { panic!("{:?}", out.source_shutdown) };
    assert!(error.contains("hung; gave up after 5m"), "{error}");
    assert_eq!(out.finished - out.started, chrono::TimeDelta::seconds(5 * 60 + 45));
}

#[tokio::test(start_paused = true)]
async fn r33_latest_gives_lowest_rpo_and_latest_processed_lowest_rto() {
    let sim = sim("");
    sim.fabric.advance(Duration::from_secs(180)).unwrap();
    let (latest, processed) = tokio::join!(
        failover(&sim, "web01", FailoverKind::Unplanned, PointChoice::Latest),
        failover(&sim, "app01", FailoverKind::Unplanned, PointChoice::LatestProcessed),
    );
    let (latest, processed) = (latest.unwrap(), processed.unwrap());
    assert_eq!(latest.data_loss, Duration::ZERO);
    assert_eq!(processed.data_loss, Duration::from_secs(180));
    // A source shut down cleanly bounds the loss at the shutdown.
    let clean = unplanned_with_shutdown(&sim, "sql02").await.unwrap();
    assert_eq!(clean.source_shutdown, SourceShutdown::Done);
    let since_point = (clean.started - clean.point.time).to_std().unwrap();
    assert_eq!(clean.data_loss, since_point + Duration::from_secs(30), "30 s of shutdown");
    let took = |o: &FailoverOutcome| (o.finished - o.started).to_std().unwrap();
    // web01 boots in 45 s, app01 in 60 s, yet latest takes longer: it processes first.
    assert!(took(&latest) > took(&processed), "{:?} vs {:?}", took(&latest), took(&processed));
    let app = failover(&sim, "app02", FailoverKind::Test, PointChoice::LatestAppConsistent).await.unwrap();
    assert_eq!(app.point.time, t("2026-03-02T08:00:00Z"));
    assert_eq!(app.point.consistency, Consistency::App);
    let too_old = PointChoice::At(t("2026-02-28T09:00:00Z"));
    let err = failover(&sim, "sql01", FailoverKind::Unplanned, too_old).await.unwrap_err();
    assert!(err.to_string().contains("retention window"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn r34_point_can_change_until_commit_and_commit_deletes_points() {
    let sim = sim("");
    failover(&sim, "web01", FailoverKind::Unplanned, PointChoice::LatestProcessed).await.unwrap();
    let moved = sim
        .fabric
        .change_recovery_point(&call(&sim.fabric), "web01", PointChoice::At(t("2026-03-02T08:32:00Z")))
        .await
        .unwrap();
    assert_eq!(moved.point.time, t("2026-03-02T08:30:00Z"));
    assert_eq!(moved.data_loss, Duration::from_secs(30 * 60));
    assert!(!sim.fabric.recovery_points("web01", sim.fabric.now()).await.unwrap().is_empty());
    sim.fabric.commit(&call(&sim.fabric), "web01").await.unwrap();
    assert!(sim.fabric.recovery_points("web01", sim.fabric.now()).await.unwrap().is_empty());
    let err =
        sim.fabric.change_recovery_point(&call(&sim.fabric), "web01", PointChoice::LatestProcessed).await.unwrap_err();
    assert!(err.to_string().contains("committed"), "{err}");
    let err = sim.fabric.commit(&call(&sim.fabric), "web01").await.unwrap_err();
    assert!(err.to_string().contains("Next: reprotect"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn r35_replication_stops_when_failover_begins() {
    let sim = sim("");
    let before = sim.fabric.replication_status("web01", sim.fabric.now()).await.unwrap().latest_point;
    failover(&sim, "web01", FailoverKind::Unplanned, PointChoice::LatestProcessed).await.unwrap();
    sim.fabric.advance(Duration::from_secs(3600)).unwrap();
    let status = sim.fabric.replication_status("web01", sim.fabric.now()).await.unwrap();
    assert_eq!(status.health, Health::NotReplicating);
    assert_eq!(sim.fabric.recovery_points("web01", sim.fabric.now()).await.unwrap().last().copied(), before);
}

#[tokio::test(start_paused = true)]
async fn r35_cancel_stops_a_failover_in_progress_and_needs_reprotect() {
    let sim = sim("[[faults]]\nkind = \"shutdown-hang\"\nvm = \"web01\"\n");
    let fabric = sim.fabric.clone();
    let running = tokio::spawn(async move {
        fabric.failover(&keyed(&fabric, "run/1"), "web01", &request(FailoverKind::Planned, PointChoice::Latest)).await
    });
    // The hang lasts 5 modelled minutes: 300 ms of paused real time at speed 1000.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(phase_allows(&sim, "web01").await, vec![Operation::Cancel]);
    sim.fabric.cancel(&call(&sim.fabric), "web01").await.unwrap();
    let err = running.await.unwrap().unwrap_err();
    assert!(matches!(err, FabricError::Cancelled { .. }), "{err}");
    let status = sim.fabric.replication_status("web01", sim.fabric.now()).await.unwrap();
    assert!(status.state.contains("need of reprotect"), "{}", status.state);
    assert_eq!(status.allowed, vec![Operation::UnplannedFailover, Operation::Reprotect, Operation::Unprotect]);
    let jobs = sim.fabric.jobs().await.unwrap();
    assert_eq!(jobs.iter().map(|j| j.status).collect::<Vec<_>>(), vec![JobStatus::Cancelled, JobStatus::Succeeded]);
    let job = sim.fabric.reprotect(&call(&sim.fabric), "web01").await.unwrap();
    assert!(job.detail.contains("primary -> secondary"), "{}", job.detail);
}

/// Planned failover of web01, commit, reprotect, and the copy back done: web01 runs on
/// the recovery site, protected towards its original site.
async fn reprotected_on_recovery_site() -> Sim {
    let sim = sim("");
    failover(&sim, "web01", FailoverKind::Planned, PointChoice::Latest).await.unwrap();
    sim.fabric.commit(&call(&sim.fabric), "web01").await.unwrap();
    let job = sim.fabric.reprotect(&call(&sim.fabric), "web01").await.unwrap();
    // R31: after a planned failover only the changes since go back: seconds, not hours.
    assert!(job.detail.contains("copy done at 2026-03-02T09:01:"), "{}", job.detail);
    sim.fabric.advance(Duration::from_secs(600)).unwrap();
    sim
}

#[tokio::test(start_paused = true)]
async fn r36_reprotect_replicates_back_while_the_recovery_site_stays_active() {
    let sim = reprotected_on_recovery_site().await;
    let status = sim.fabric.replication_status("web01", sim.fabric.now()).await.unwrap();
    assert_eq!(status.state, "protected on the recovery site");
    assert_eq!(status.active_site, "secondary");
    assert_eq!(status.direction, Some(("secondary".into(), "primary".into())));
    assert_eq!(status.health, Health::Healthy);
    let err = failover(&sim, "web01", FailoverKind::Planned, PointChoice::Latest).await.unwrap_err();
    assert!(err.to_string().contains("going back is a failback"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn r37_failback_needs_reprotect_runs_under_the_fixed_policy_then_reprotects_forward() {
    let sim = sim("");
    failover(&sim, "web01", FailoverKind::Planned, PointChoice::Latest).await.unwrap();
    let err = sim.fabric.failback(&call(&sim.fabric), "web01", FailoverKind::Planned).await.unwrap_err();
    assert!(err.to_string().contains("Next: change recovery point, commit"), "{err}");
    sim.fabric.commit(&call(&sim.fabric), "web01").await.unwrap();
    let err = sim.fabric.failback(&call(&sim.fabric), "web01", FailoverKind::Planned).await.unwrap_err();
    assert!(err.to_string().contains("Next: reprotect"), "failback needs reprotect first: {err}");

    let sim = reprotected_on_recovery_site().await;
    let status = sim.fabric.replication_status("web01", sim.fabric.now()).await.unwrap();
    assert_eq!(status.policy.as_deref(), Some("failback"), "the fixed failback policy");
    sim.fabric.advance(Duration::from_secs(3600)).unwrap();
    let app = sim.fabric.replication_status("web01", sim.fabric.now()).await.unwrap().latest_app_consistent.unwrap();
    assert_eq!(app.time, t("2026-03-02T10:00:00Z"), "app-consistent every hour");
    sim.fabric.failback(&call(&sim.fabric), "web01", FailoverKind::Planned).await.unwrap();
    sim.fabric.commit(&call(&sim.fabric), "web01").await.unwrap();
    let job = sim.fabric.reprotect(&call(&sim.fabric), "web01").await.unwrap();
    assert!(job.detail.contains("primary -> secondary under policy gold"), "{}", job.detail);
    sim.fabric.advance(Duration::from_secs(600)).unwrap();
    let status = sim.fabric.replication_status("web01", sim.fabric.now()).await.unwrap();
    assert_eq!((status.state.as_str(), status.active_site.as_str()), ("protected", "primary"));
}

#[tokio::test(start_paused = true)]
async fn r38_failback_shuts_the_recovery_vm_down_and_boots_the_original_with_downtime() {
    let sim = reprotected_on_recovery_site().await;
    let back = sim.fabric.failback(&call(&sim.fabric), "web01", FailoverKind::Planned).await.unwrap();
    assert_eq!(back.source_shutdown, SourceShutdown::Done, "the recovery-site VM went down first");
    assert_eq!(back.replica.site, "primary");
    assert_eq!(back.replica.host, "hv-p01", "the original VM, on its own host");
    assert_eq!(back.replica.ip(), Some("10.1.3.21".parse().unwrap()));
    // Shutdown 30 s + boot 45 s, plus the last sync.
    assert!(back.downtime.unwrap() >= Duration::from_secs(75), "{:?}", back.downtime);
    assert_eq!(back.data_loss, Duration::ZERO);
    assert_eq!(sim.fabric.addresses("web01", sim.fabric.now()).await.unwrap(), back.replica.nics);
}

#[tokio::test(start_paused = true)]
async fn r8_r9_r11_replica_gets_its_static_ip_capped_nics_and_mapped_storage() {
    let sim = sim("");
    let web = failover(&sim, "web01", FailoverKind::Planned, PointChoice::Latest).await.unwrap();
    assert_eq!(web.replica.nics.len(), 1, "R8: the one-nic size caps two NICs at one");
    assert_eq!(web.replica.nics[0].ip, Some("10.2.3.21".parse().unwrap()));
    assert_eq!(web.replica.nics[0].addressing, Some(Addressing::Static));
    assert_eq!(web.replica.storage, "host default location", "R11: unmapped");
    let sql = failover(&sim, "sql01", FailoverKind::Planned, PointChoice::Latest).await.unwrap();
    assert_eq!(sql.replica.storage, "dr-gold", "R11: gold maps to dr-gold");
    assert_eq!(sql.replica.nics[0].subnet.as_deref(), Some("db"), "R10: same-named subnet");
    assert_eq!(sim.fabric.addresses("sql01", sim.fabric.now()).await.unwrap(), sql.replica.nics);
}

#[tokio::test(start_paused = true)]
async fn r9_concurrent_dhcp_replicas_get_distinct_addresses() {
    let sim = sim("");
    let (a, b) = tokio::join!(
        failover(&sim, "app01", FailoverKind::Unplanned, PointChoice::LatestProcessed),
        failover(&sim, "app02", FailoverKind::Unplanned, PointChoice::LatestProcessed),
    );
    let mut ips = vec![a.unwrap().replica.ip().unwrap(), b.unwrap().replica.ip().unwrap()];
    ips.sort();
    assert_eq!(ips, vec!["10.2.3.2".parse::<std::net::Ipv4Addr>().unwrap(), "10.2.3.3".parse().unwrap()]);
}

#[tokio::test(start_paused = true)]
async fn r9_an_address_given_back_is_handed_out_again_lowest_first() {
    // The drill takes web VMs: in the shared sites' test network, sql01 and sql02 would
    // keep their target IPs (its db subnet has prod-dr's range, R9).
    let sim = sim(&[
        linux_vm("web02", "hv-p01", r#"{ network = "prod", subnet = "web", ip = "10.1.3.22" }"#),
        linux_vm("web03", "hv-p02", r#"{ network = "prod", subnet = "web", ip = "10.1.3.23" }"#),
        "[[faults]]\nkind = \"boot-failure\"\nvm = \"app01\"\n".to_string(),
    ]
    .concat());
    // app01's replica does not boot: the address it was given is free again at once.
    failover(&sim, "app01", FailoverKind::Unplanned, PointChoice::LatestProcessed).await.unwrap_err();
    let app02 = failover(&sim, "app02", FailoverKind::Unplanned, PointChoice::LatestProcessed).await.unwrap();
    assert_eq!(app02.replica.ip(), Some("10.2.3.2".parse().unwrap()));
    let mut drill = request(FailoverKind::Test, PointChoice::LatestProcessed);
    drill.test_network = Some("test-bubble".into());
    let mut ips = Vec::new();
    for vm in ["web01", "web02", "web03"] {
        ips.push(sim.fabric.failover(&call(&sim.fabric), vm, &drill).await.unwrap().replica.ip().unwrap().to_string());
    }
    assert_eq!(ips, ["192.168.103.2", "192.168.103.3", "192.168.103.4"]);
    sim.fabric.cleanup_test(&call(&sim.fabric), "web02", "").await.unwrap();
    sim.fabric.cleanup_test(&call(&sim.fabric), "web01", "").await.unwrap();
    let again = sim.fabric.failover(&call(&sim.fabric), "web02", &drill).await.unwrap();
    assert_eq!(again.replica.ip(), Some("192.168.103.2".parse().unwrap()), "the lowest one given back");
    let sim = sim.reopen();
    let web01 = sim.fabric.failover(&call(&sim.fabric), "web01", &drill).await.unwrap();
    assert_eq!(web01.replica.ip(), Some("192.168.103.3".parse().unwrap()));
}

#[tokio::test(start_paused = true)]
async fn r9_static_ip_not_available_fails_that_vms_failover() {
    // sql01's target IP reserved in prod-dr/db, instead of the one the shared sites reserve.
    let (shared, reserved) = (r#"reserved = ["10.2.1.5"]"#, r#"reserved = ["10.2.1.10"]"#);
    let site = site_with(SIMULATION, "");
    assert!(site.contains(shared), "the shared sites reserve 10.2.1.5");
    let sim = open_site(&site.replace(shared, reserved));
    let err = failover(&sim, "sql01", FailoverKind::Planned, PointChoice::Latest).await.unwrap_err();
    assert!(err.to_string().contains("10.2.1.10 is not available"), "{err}");
    let status = sim.fabric.replication_status("sql01", sim.fabric.now()).await.unwrap();
    assert!(status.state.contains("failed planned failover"), "{}", status.state);
    assert_eq!(status.allowed, vec![Operation::PlannedFailover, Operation::UnplannedFailover, Operation::Cancel]);
    assert_eq!(sim.fabric.jobs().await.unwrap().last().unwrap().status, JobStatus::Failed);
    // The other group member is not held back.
    failover(&sim, "sql02", FailoverKind::Planned, PointChoice::Latest).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn r10_replica_of_an_unmapped_network_is_not_connected() {
    let sim = sim("");
    let out = failover(&sim, "bk01", FailoverKind::Unplanned, PointChoice::LatestProcessed).await.unwrap();
    assert_eq!(out.replica.nics.len(), 1);
    assert_eq!(out.replica.nics[0].network, None);
    assert_eq!(out.replica.ip(), None);
}

#[tokio::test(start_paused = true)]
async fn a_replica_that_does_not_boot_fails_and_can_be_retried_or_cancelled() {
    let sim = sim("[[faults]]\nkind = \"boot-failure\"\nvm = \"app01\"\n");
    let err = failover(&sim, "app01", FailoverKind::Unplanned, PointChoice::LatestProcessed).await.unwrap_err();
    assert!(err.to_string().contains("did not boot"), "{err}");
    let err = failover(&sim, "app01", FailoverKind::Unplanned, PointChoice::LatestProcessed).await.unwrap_err();
    assert!(err.to_string().contains("did not boot"), "a retry is allowed and fails the same way: {err}");
    sim.fabric.cancel(&call(&sim.fabric), "app01").await.unwrap();
    // The address it held is free again.
    let other = failover(&sim, "app02", FailoverKind::Unplanned, PointChoice::LatestProcessed).await.unwrap();
    assert_eq!(other.replica.ip(), Some("10.2.3.2".parse().unwrap()));
}

#[tokio::test(start_paused = true)]
async fn the_same_idempotency_key_does_the_work_once() {
    let sim = sim("");
    let req = request(FailoverKind::Unplanned, PointChoice::LatestProcessed);
    let first = sim.fabric.failover(&keyed(&sim.fabric, "run/7/step/1"), "web01", &req).await.unwrap();
    let second = sim.fabric.failover(&keyed(&sim.fabric, "run/7/step/1"), "web01", &req).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(sim.fabric.jobs().await.unwrap().len(), 1);
    assert_eq!(sim.fabric.call_counts()["run/7/step/1"], 2);
    // A refusal is an outcome too: replayed, not re-evaluated.
    let refused = sim.fabric.commit(&keyed(&sim.fabric, "run/7/step/2"), "sql01").await.unwrap_err();
    assert_eq!(sim.fabric.commit(&keyed(&sim.fabric, "run/7/step/2"), "sql01").await.unwrap_err(), refused);
}

#[tokio::test(start_paused = true)]
async fn state_and_clock_survive_between_commands() {
    let sim = sim("");
    failover(&sim, "web01", FailoverKind::Planned, PointChoice::Latest).await.unwrap();
    sim.fabric.advance(Duration::from_secs(60)).unwrap();
    let (clock, status, jobs) = (
        sim.fabric.now(),
        sim.fabric.replication_status("web01", sim.fabric.now()).await.unwrap(),
        sim.fabric.jobs().await.unwrap(),
    );
    let sim = sim.reopen();
    assert_eq!(sim.fabric.now(), clock);
    assert_eq!(sim.fabric.replication_status("web01", sim.fabric.now()).await.unwrap(), status);
    assert_eq!(sim.fabric.jobs().await.unwrap(), jobs);
    let replay = sim
        .fabric
        .failover(&keyed(&sim.fabric, "run/1"), "web01", &request(FailoverKind::Planned, PointChoice::Latest))
        .await;
    assert!(replay.is_err(), "web01 already failed over");
}

#[tokio::test(start_paused = true)]
async fn power_operations_follow_the_vm_and_its_faults() {
    let sim = sim("[[faults]]\nkind = \"shutdown-failure\"\nvm = \"app01\"\n");
    let job = sim.fabric.shutdown(&call(&sim.fabric), "web01").await.unwrap();
    assert_eq!(job.finished.unwrap() - job.started, chrono::TimeDelta::seconds(30));
    assert_eq!(sim.fabric.shutdown(&call(&sim.fabric), "web01").await.unwrap().detail, "already off");
    sim.fabric.start(&call(&sim.fabric), "web01").await.unwrap();
    let err = sim.fabric.shutdown(&call(&sim.fabric), "app01").await.unwrap_err();
    assert!(err.to_string().contains("refused to shut down"), "{err}");
    assert!(matches!(sim.fabric.start(&call(&sim.fabric), "nope").await, Err(FabricError::UnknownVm { .. })));
}

#[tokio::test(start_paused = true)]
async fn a_scratch_copy_acts_without_touching_the_real_state() {
    let sim = sim("");
    let before = std::fs::read(sim.dir.path().join("sim.db")).unwrap();
    let status = sim.fabric.replication_status("web01", sim.fabric.now()).await.unwrap();
    let scratch = sim.fabric.scratch_copy().unwrap();
    scratch
        .failover(&keyed(&scratch, "dry/1"), "web01", &request(FailoverKind::Planned, PointChoice::Latest))
        .await
        .unwrap();
    assert!(scratch.replication_status("web01", scratch.now()).await.unwrap().state.starts_with("failed over"));
    assert_eq!(sim.fabric.replication_status("web01", sim.fabric.now()).await.unwrap(), status);
    assert!(sim.fabric.jobs().await.unwrap().is_empty());
    assert_eq!(std::fs::read(sim.dir.path().join("sim.db")).unwrap(), before);
}

#[tokio::test(start_paused = true)]
async fn wait_lets_modelled_time_pass_paced_by_the_speed() {
    let sim = sim("");
    let real = tokio::time::Instant::now();
    sim.fabric.wait(sim.fabric.now(), Duration::from_secs(600)).await;
    assert_eq!(sim.fabric.now(), t("2026-03-02T09:10:00Z"));
    assert_eq!(real.elapsed(), Duration::from_millis(600), "speed 1000");
}

#[tokio::test(start_paused = true)]
async fn an_unpaced_simulation_spends_no_real_time_but_all_the_modelled_time() {
    let paced = sim("");
    let unpaced = open_site(&site_with(&format!("{SIMULATION}pace = false\n"), ""));
    let mut took = Vec::new();
    for sim in [&paced, &unpaced] {
        let real = tokio::time::Instant::now();
        let out = failover(sim, "sql01", FailoverKind::Planned, PointChoice::Latest).await.unwrap();
        sim.fabric.commit(&call(&sim.fabric), "sql01").await.unwrap();
        sim.fabric.wait(sim.fabric.now(), Duration::from_secs(600)).await;
        took.push((real.elapsed(), out.finished - out.started, out.downtime, sim.fabric.now()));
    }
    let [(paced_real, modelled, downtime, now), (unpaced_real, unpaced_modelled, unpaced_downtime, unpaced_now)] =
        took[..]
    else {
        unreachable!()
    };
    assert!(paced_real > Duration::ZERO);
    assert_eq!(unpaced_real, Duration::ZERO, "not even a zero sleep: paused time would not move at all");
    assert_eq!((unpaced_modelled, unpaced_downtime, unpaced_now), (modelled, downtime, now));
    // Shutdown 30 s, boot 2 min, a final sync, commit 10 s, then the wait.
    assert!(modelled > chrono::TimeDelta::seconds(150), "{modelled}");
    assert!(now > t("2026-03-02T09:12:40Z"), "{now}");
}

#[tokio::test(start_paused = true)]
async fn a_failover_cut_off_by_a_crash_is_found_interrupted_and_can_be_retried() {
    let sim = sim("");
    let fabric = sim.fabric.clone();
    let running = tokio::spawn(async move {
        fabric
            .failover(&keyed(&fabric, "run/9/web01/1"), "web01", &request(FailoverKind::Planned, PointChoice::Latest))
            .await
    });
    // 30 s of shutdown at speed 1000: cut it off after 10 ms, as a SIGKILL would.
    tokio::time::sleep(Duration::from_millis(10)).await;
    running.abort();
    let sim = sim.reopen();
    let status = sim.fabric.replication_status("web01", sim.fabric.now()).await.unwrap();
    assert!(status.state.contains("interrupted"), "{}", status.state);
    let crate::fabric::CallOutcome::Done { result: Err(err), .. } =
        sim.fabric.call_outcome("run/9/web01/1").await.unwrap()
    else {
        panic!("the cut-off call must be recorded as interrupted")
    };
    assert!(matches!(err, FabricError::Interrupted { .. }), "{err}");
    assert_eq!(sim.fabric.jobs().await.unwrap()[0].status, JobStatus::Failed);
    // The operator resumes: a new attempt fails the VM over.
    let out = sim
        .fabric
        .failover(&keyed(&sim.fabric, "run/9/web01/2"), "web01", &request(FailoverKind::Planned, PointChoice::Latest))
        .await;
    assert_eq!(out.unwrap().replica.site, "secondary");
    assert_eq!(sim.fabric.call_counts()["run/9/web01/1"], 1, "asking is not calling");
}

#[tokio::test(start_paused = true)]
async fn a_finished_call_can_be_looked_up_without_calling_again() {
    let sim = sim("");
    assert_eq!(sim.fabric.call_outcome("nope").await.unwrap(), crate::fabric::CallOutcome::Unknown);
    let out = sim
        .fabric
        .failover(&keyed(&sim.fabric, "k1"), "app01", &request(FailoverKind::Test, PointChoice::LatestProcessed))
        .await
        .unwrap();
    let crate::fabric::CallOutcome::Done { result: Ok(json), .. } = sim.fabric.call_outcome("k1").await.unwrap() else {
        panic!()
    };
    assert_eq!(serde_json::from_value::<FailoverOutcome>(json).unwrap(), out);
    assert_eq!(sim.fabric.call_counts()["k1"], 1);
    // The outcome was saved with the state change: a new process sees both.
    let sim = sim.reopen();
    assert!(sim.fabric.replication_status("app01", sim.fabric.now()).await.unwrap().test_failover.is_some());
    assert!(matches!(
        sim.fabric.call_outcome("k1").await.unwrap(),
        crate::fabric::CallOutcome::Done { result: Ok(_), .. }
    ));
}

#[tokio::test(start_paused = true)]
async fn r22_a_single_vm_fails_over_on_its_own() {
    let sim = sim("");
    let out = failover(&sim, "app01", FailoverKind::Planned, PointChoice::Latest).await.unwrap();
    assert_eq!(out.replica.site, "secondary");
    for other in ["app02", "sql01", "web01"] {
        let status = sim.fabric.replication_status(other, sim.fabric.now()).await.unwrap();
        assert_eq!((status.state.as_str(), status.active_site.as_str()), ("protected", "primary"), "{other}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_rehearsal_of_a_real_site_models_what_the_site_measured_instead_of_its_estimates() {
    let site = site_with(SIMULATION, "");
    let inventory = parse_site(&site, "site.toml".as_ref()).unwrap();
    let measured = crate::model::MeasuredDurations {
        shutdown: Some(Duration::from_millis(1_500)),
        final_sync: Some(Duration::from_millis(700)),
        processing: Some(Duration::from_millis(100)),
        boot: Some(Duration::from_millis(8_200)),
        commit: Some(Duration::from_millis(30)),
        at: None,
    };
    let by_vm = [("web01".to_string(), measured)].into_iter().collect();
    let now = t("2026-03-02T09:00:00Z");
    let found = inventory
        .vms
        .iter()
        .map(|vm| {
            let mut state = crate::model::ProtectionState::unprotected();
            state.protect("gold", vec![], now - chrono::TimeDelta::days(1), now - chrono::TimeDelta::hours(20));
            (vm.name.clone(), state)
        })
        .collect();
    let rehearsal = inventory.rehearsal(now, &found, 20, &by_vm);
    let fabric = Arc::new(SimFabric::in_memory(Arc::new(rehearsal)).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let _state = StateDir::open(dir.path()).unwrap();
    let sim = Sim { fabric, dir, site, _state };
    let took = |o: &FailoverOutcome| (o.finished - o.started).to_std().unwrap();

    let planned = failover(&sim, "web01", FailoverKind::Planned, PointChoice::Latest).await.unwrap();
    assert_eq!(took(&planned), Duration::from_millis(1_500 + 700 + 100 + 8_200), "shutdown, copy, processing, boot");
    let unplanned = failover(&sim, "app01", FailoverKind::Unplanned, PointChoice::Latest).await.unwrap();
    assert!(took(&unplanned) >= Duration::from_secs(60), "app01 measured nothing: R33's modelled processing");
    let job_took = |job: &crate::model::Job| (job.finished.unwrap() - job.started).to_std().unwrap();
    let commit = sim.fabric.commit(&call(&sim.fabric), "web01").await.unwrap();
    assert_eq!(job_took(&commit), Duration::from_millis(30), "R34: the commit web01 measured");
    let commit = sim.fabric.commit(&call(&sim.fabric), "app01").await.unwrap();
    assert_eq!(job_took(&commit), super::operations::COMMIT_TIME, "app01 measured none: the model's");
}

/// What a dry run of real sites runs on, made from `sim` standing for the real sites: the
/// same site file, each VM in the state `sim` reports now, nothing measured.
fn rehearsal_of(sim: &Sim) -> Arc<SimFabric> {
    let inventory = parse_site(&sim.site, "site.toml".as_ref()).unwrap();
    let found = sim.fabric.protection();
    let rehearsal = inventory.rehearsal(sim.fabric.now(), &found, 20, &Default::default());
    Arc::new(SimFabric::in_memory(Arc::new(rehearsal)).unwrap())
}

/// The site of these tests with its VMs in every phase: web01 in a drill, app01 failed
/// over (unplanned) and not committed, app02 failed over (planned), committed and
/// reprotected back, bk01 after a planned failover that did not boot, sql02 after a
/// cancelled one; sql01 protected, fresh01 not.
async fn every_phase() -> Sim {
    let faults = "[[faults]]\nkind = \"boot-failure\"\nvm = \"bk01\"\n\n\
                  [[faults]]\nkind = \"shutdown-hang\"\nvm = \"sql02\"\n";
    let sim = sim(faults);
    let mut drill = request(FailoverKind::Test, PointChoice::LatestProcessed);
    drill.test_network = Some("test-bubble".into());
    sim.fabric.failover(&call(&sim.fabric), "web01", &drill).await.unwrap();
    failover(&sim, "app01", FailoverKind::Unplanned, PointChoice::LatestProcessed).await.unwrap();
    failover(&sim, "app02", FailoverKind::Planned, PointChoice::Latest).await.unwrap();
    sim.fabric.commit(&call(&sim.fabric), "app02").await.unwrap();
    sim.fabric.reprotect(&call(&sim.fabric), "app02").await.unwrap();
    failover(&sim, "bk01", FailoverKind::Planned, PointChoice::Latest).await.unwrap_err();
    let mut cut_off = request(FailoverKind::Unplanned, PointChoice::LatestProcessed);
    cut_off.shut_down_source = true;
    let (sql02, cancel) = (sim.fabric.clone(), sim.fabric.clone());
    let running = tokio::spawn(async move { sql02.failover(&call(&sql02), "sql02", &cut_off).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    cancel.cancel(&call(&cancel), "sql02").await.unwrap();
    running.await.unwrap().unwrap_err();
    // app02's copy back is done, and an hour of points made since.
    sim.fabric.advance(Duration::from_secs(3600)).unwrap();
    sim
}

#[tokio::test(start_paused = true)]
async fn r30_r37_a_rehearsal_finds_every_vm_in_the_phase_the_site_has_it_in() {
    let sim = every_phase().await;
    let rehearsal = rehearsal_of(&sim);
    let now = sim.fabric.now();
    assert_eq!(rehearsal.now(), now);
    let mut phases = Vec::new();
    for vm in sim.fabric.inventory().vms.iter().map(|vm| vm.name.as_str()) {
        let real = sim.fabric.replication_status(vm, now).await.unwrap();
        let modelled = rehearsal.replication_status(vm, now).await.unwrap();
        let seen = |s: &crate::fabric::ReplicationStatus| {
            (s.state.clone(), s.active_site.clone(), s.direction.clone(), s.policy.clone(), s.allowed.clone())
        };
        assert_eq!(seen(&modelled), seen(&real), "{vm}");
        assert_eq!(modelled.test_failover.is_some(), real.test_failover.is_some(), "{vm}");
        phases.push(format!("{vm}: {}", real.state));
    }
    let phases = phases.join("\n");
    for phase in [
        "web01: protected, with a test failover running",
        "app01: failed over (unplanned, point",
        "app02: protected on the recovery site",
        "bk01: after a failed planned failover",
        "sql02: in need of reprotect (unplanned failover cancelled)",
        "fresh01: unprotected",
    ] {
        assert!(phases.contains(phase), "every phase is covered: {phase} in\n{phases}");
    }
    // A VM running at the recovery site answers there, at its replica's addresses.
    for vm in ["app01", "app02"] {
        let real = sim.fabric.addresses(vm, now).await.unwrap();
        assert_eq!(rehearsal.addresses(vm, now).await.unwrap(), real, "{vm}");
        assert!(real[0].ip.unwrap().to_string().starts_with("10.2.3."), "{vm} runs at secondary: {real:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn r37_a_rehearsal_of_vms_found_replicating_back_fails_them_back_as_the_site_does() {
    let sim = every_phase().await;
    let rehearsal = rehearsal_of(&sim);
    // A failover from the original site is what the site refuses, in the same words.
    let refused = |fabric: Arc<SimFabric>| async move {
        let planned = request(FailoverKind::Planned, PointChoice::Latest);
        fabric.failover(&call(&fabric), "app02", &planned).await.unwrap_err().to_string()
    };
    let refusal = refused(sim.fabric.clone()).await;
    assert_eq!(
        refusal,
        "cannot planned failover app02: it is protected on the recovery site; going back is a failback. \
         Next: test failover, failback, unplanned failover, unprotect."
    );
    assert_eq!(refused(rehearsal.clone()).await, refusal);

    // R37, R38: shut down at the recovery site, the last changes synced, home booted.
    let real = sim.fabric.failback(&call(&sim.fabric), "app02", FailoverKind::Planned).await.unwrap();
    let modelled = rehearsal.failback(&call(&rehearsal), "app02", FailoverKind::Planned).await.unwrap();
    let landed = |o: &FailoverOutcome| {
        (o.replica.clone(), o.point, o.data_loss, o.source_shutdown.clone(), o.downtime, o.finished - o.started)
    };
    assert_eq!(landed(&modelled), landed(&real));
    assert_eq!((modelled.replica.site.as_str(), modelled.source_shutdown), ("primary", SourceShutdown::Done));
    assert_eq!(modelled.data_loss, Duration::ZERO, "R31: planned, nothing lost");
    // Then commit and reprotect forward, under the VM's own policy again.
    rehearsal.commit(&call(&rehearsal), "app02").await.unwrap();
    rehearsal.reprotect(&call(&rehearsal), "app02").await.unwrap();
    let status = rehearsal.replication_status("app02", rehearsal.now()).await.unwrap();
    assert_eq!(status.direction, Some(("primary".into(), "secondary".into())));
    assert_eq!(status.policy.as_deref(), Some("gold"));
}

#[tokio::test(start_paused = true)]
async fn r34_a_rehearsal_of_a_vm_found_failed_over_keeps_its_points_until_commit() {
    let sim = every_phase().await;
    let rehearsal = rehearsal_of(&sim);
    let now = rehearsal.now();
    let points = rehearsal.recovery_points("app01", now).await.unwrap();
    assert!(points.len() > 1, "the points of the stream the failover stopped: {points:?}");
    let Phase::FailedOver { point, .. } = &sim.fabric.protection()["app01"].phase else { panic!("app01 failed over") };
    assert_eq!(points.last(), Some(point), "none after the point failed over to");
    let earlier = PointChoice::At(points[points.len() - 2].time);
    let moved = rehearsal.change_recovery_point(&call(&rehearsal), "app01", earlier).await.unwrap();
    assert_eq!(moved.point, points[points.len() - 2]);
    rehearsal.commit(&call(&rehearsal), "app01").await.unwrap();
    assert!(rehearsal.recovery_points("app01", rehearsal.now()).await.unwrap().is_empty(), "R34: deleted");
}

#[tokio::test(start_paused = true)]
async fn r5_a_rehearsal_of_a_vm_found_in_a_copy_with_no_known_end_refuses_its_failover_as_the_site_does() {
    let inventory = parse_site(&site_with(SIMULATION, ""), "site.toml".as_ref()).unwrap();
    let now = t("2026-03-02T09:00:00Z");
    // A real site's initial copy ends when its service's copy does: no modelled end.
    let mut copying = crate::model::ProtectionState::unprotected();
    copying.protect("gold", vec![], now - chrono::TimeDelta::minutes(5), DateTime::<Utc>::MAX_UTC);
    let found = [("app01".to_string(), copying.clone())].into_iter().collect();
    let rehearsal = SimFabric::in_memory(Arc::new(inventory.rehearsal(now, &found, 20, &Default::default()))).unwrap();
    let status = rehearsal.replication_status("app01", now).await.unwrap();
    assert_eq!(status.health, Health::InitialReplication);
    assert_eq!(status.allowed, [Operation::Unprotect]);
    let planned = request(FailoverKind::Planned, PointChoice::Latest);
    let refused = rehearsal.failover(&call(&rehearsal), "app01", &planned).await.unwrap_err().to_string();
    let site_says = copying.check("app01", Operation::PlannedFailover).unwrap_err().to_string();
    assert_eq!(refused, site_says);
    assert!(refused.contains("R5: failover waits for the initial copy"), "{refused}");
    let unprotected = rehearsal.replication_status("app02", now).await.unwrap();
    assert_eq!(unprotected.state, "unprotected", "a VM the site does not protect is not protected here");
}
