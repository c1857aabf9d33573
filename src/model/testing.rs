//! Fixtures shared by the unit tests of every layer.

/// Two on-premises sites, primary -> secondary, as most tests need them. Tests append
/// what they are about — `[[policies]]`, `[[sizes]]`, `[[replication_groups]]`,
/// `[[vms]]`, a `[simulation]`, or [`SQL_CLUSTER`] — with [`two_sites`]: arrays of tables
/// and new tables append cleanly to a TOML document.
///
/// - primary (hosts hv-p01, hv-p02): network prod, subnets db 10.1.1.0/24 and web
///   10.1.3.0/24; network backup, subnet backup 10.1.9.0/24, mapped nowhere.
/// - secondary (hosts hv-s01, hv-s02): network prod-dr, subnets db 10.2.1.0/24 (10.2.1.5
///   reserved) and web 10.2.3.0/24; the isolated test network test-bubble, whose db subnet
///   reuses prod-dr's range (a drill may reuse target IPs, R9) and whose web subnet is
///   192.168.103.0/24.
/// - primary/prod maps to secondary/prod-dr (R10).
///
/// No `[simulation]`: the defaults hold unless a test appends one.
pub(crate) const TWO_SITES: &str = r#"
[[sites]]
name = "primary"
kind = "onprem"
hosts = ["hv-p01", "hv-p02"]
networks = [
  { name = "prod", subnets = [{ name = "db", cidr = "10.1.1.0/24" }, { name = "web", cidr = "10.1.3.0/24" }] },
  { name = "backup", subnets = [{ name = "backup", cidr = "10.1.9.0/24" }] },
]

[[sites]]
name = "secondary"
kind = "onprem"
hosts = ["hv-s01", "hv-s02"]
networks = [
  { name = "prod-dr", subnets = [
    { name = "db", cidr = "10.2.1.0/24", reserved = ["10.2.1.5"] },
    { name = "web", cidr = "10.2.3.0/24" },
  ] },
  { name = "test-bubble", isolated = true, subnets = [
    { name = "db", cidr = "10.2.1.0/24" },
    { name = "web", cidr = "192.168.103.0/24" },
  ] },
]

[[pairings]]
source = "primary"
target = "secondary"

[[network_mappings]]
source = "primary/prod"
target = "secondary/prod-dr"
"#;

/// To append after [`TWO_SITES`]: the gold policy (24h retention) and a SQL cluster on
/// primary protected with it since two days before the simulation starts: sql01 and
/// sql02 (Windows, prod/db, target IPs in prod-dr), in replication group sql-cluster,
/// which lists them in the reverse of their order in the file.
pub(crate) const SQL_CLUSTER: &str = r#"
[[policies]]
name = "gold"
retention = "24h"

[[replication_groups]]
name = "sql-cluster"
vms = ["sql02", "sql01"]

[[vms]]
name = "sql01"
site = "primary"
host = "hv-p01"
os = "windows"
tags = { tier = "db" }
dns = ["sql01.contoso.test", "sql.contoso.test"]
disks = [{ name = "os", size_gb = 100, os = true }]
nics = [{ network = "prod", subnet = "db", ip = "10.1.1.10", target_ip = "10.2.1.10" }]
protection = { policy = "gold", since = "-2d" }

[[vms]]
name = "sql02"
site = "primary"
host = "hv-p01"
os = "windows"
tags = { tier = "db" }
disks = [{ name = "os", size_gb = 100, os = true }]
nics = [{ network = "prod", subnet = "db", ip = "10.1.1.11", target_ip = "10.2.1.11" }]
protection = { policy = "gold", since = "-2d" }
"#;

/// [`TWO_SITES`] followed by `extra`.
pub(crate) fn two_sites(extra: &str) -> String {
    format!("{TWO_SITES}{extra}")
}
