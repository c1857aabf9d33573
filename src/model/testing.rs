//! Fixtures shared by the unit tests of every layer.

/// Two on-premises sites, primary -> secondary, as most tests need them. Tests append
/// what they are about — `[[policies]]`, `[[sizes]]`, `[[replication_groups]]`,
/// `[[vms]]`, a `[simulation]` — with [`two_sites`]: arrays of tables and new tables
/// append cleanly to a TOML document.
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
  [[sites.networks]]
  name = "prod"
    [[sites.networks.subnets]]
    name = "db"
    cidr = "10.1.1.0/24"
    [[sites.networks.subnets]]
    name = "web"
    cidr = "10.1.3.0/24"
  [[sites.networks]]
  name = "backup"
    [[sites.networks.subnets]]
    name = "backup"
    cidr = "10.1.9.0/24"

[[sites]]
name = "secondary"
kind = "onprem"
hosts = ["hv-s01", "hv-s02"]
  [[sites.networks]]
  name = "prod-dr"
    [[sites.networks.subnets]]
    name = "db"
    cidr = "10.2.1.0/24"
    reserved = ["10.2.1.5"]
    [[sites.networks.subnets]]
    name = "web"
    cidr = "10.2.3.0/24"
  [[sites.networks]]
  name = "test-bubble"
  isolated = true
    [[sites.networks.subnets]]
    name = "db"
    cidr = "10.2.1.0/24"
    [[sites.networks.subnets]]
    name = "web"
    cidr = "192.168.103.0/24"

[[pairings]]
source = "primary"
target = "secondary"

[[network_mappings]]
source = "primary/prod"
target = "secondary/prod-dr"
"#;

/// [`TWO_SITES`] followed by `extra`.
pub(crate) fn two_sites(extra: &str) -> String {
    format!("{TWO_SITES}{extra}")
}
