//! DNS updates after failover (R50): the `DnsUpdater` trait, a recording updater that
//! serves dry runs, record mode and tests (records in memory, nothing sent), and
//! `Rfc2136`, which sends TSIG-signed dynamic updates to the zone's authoritative server
//! over one kept connection per server (`connection.rs`).
//!
//! Also: reading TSIG key files (`key_file.rs`), and the read-only readiness checks a
//! preflight runs against the servers (`readiness.rs`).

mod connection;
pub mod key_file;
pub mod readiness;
pub mod rfc2136;
pub mod test_zone;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

pub use crate::fabric::readiness::{CheckStatus, ReadinessCheck};
pub use key_file::{KeySecret, key_secret};
pub use rfc2136::{DnsServer, Rfc2136, TsigAlgorithm, TsigKey};
pub use test_zone::TestZone;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DnsError {
    #[error("DNS update of {name} failed: {message}")]
    Update { name: String, message: String },
    /// Verifying found other addresses: `name` is the record actually queried (in a
    /// drill, the test zone's), `found` the addresses joined, or "nothing".
    #[error("{name} resolves to {found}, not {expected}")]
    Mismatch { name: String, expected: Ipv4Addr, found: String },
    /// Verifying a CNAME found another target, or none.
    #[error("{}", cname_mismatch(name, expected, found.as_deref()))]
    CnameMismatch { name: String, expected: String, found: Option<String> },
    /// No configured server's zone contains the name.
    #[error("no DNS server is configured for {name}: it is in none of the zones {zones}; add a server for its zone")]
    UnknownZone { name: String, zones: String },
    /// The server did not accept the TSIG signature (NOTAUTH with BADSIG/BADKEY/BADTIME), or
    /// its answer could not be authenticated with our key.
    #[error("authentication failed at {server} for {name}: check the TSIG key name and secret ({detail})")]
    AuthFailed { server: SocketAddr, name: String, detail: String },
    /// REFUSED: the server knows the key but its policy does not let it update the zone.
    #[error("{server} refused the update of {name}: is the key allowed to update the zone?")]
    Refused { server: SocketAddr, name: String },
    /// A prerequisite failed (RFC 2136 §2.4): the record no longer holds what we expected.
    #[error(
        "{name} was changed by someone else: {server} reports it no longer holds exactly {expected}; read it again and retry"
    )]
    Changed { server: SocketAddr, name: String, expected: String },
    /// Any other error response code (`what` is "update" or "A query"...); `reason` starts
    /// with the code's mnemonic (SERVFAIL, NOTZONE...) and says what it means.
    #[error("{server} answered the {what} of {name} with {reason}")]
    Rejected { server: SocketAddr, name: String, what: String, reason: String },
    /// Nothing listens at the address, or no route leads to it.
    #[error("DNS server {server} is unreachable (for {name}): {detail}")]
    Unreachable { server: SocketAddr, name: String, detail: String },
    #[error("DNS server {server} did not answer within {after:?} (for {name})")]
    Timeout { server: SocketAddr, name: String, after: Duration },
    /// The name, the zone or the key of the configuration cannot be used.
    #[error("invalid DNS configuration for {name}: {detail}")]
    Invalid { name: String, detail: String },
    /// A CNAME cannot stand beside other data (RFC 1034 §3.6.2): `name` holds records that
    /// keep it from becoming a CNAME. Nothing was changed.
    #[error("{name} cannot become a CNAME: {detail}")]
    CnameConflict { name: String, detail: String },
    /// The exchange failed for another reason (malformed answer, I/O error...).
    #[error("DNS exchange with {server} for {name} failed: {detail}")]
    Protocol { server: SocketAddr, name: String, detail: String },
}

fn cname_mismatch(name: &str, expected: &str, found: Option<&str>) -> String {
    match found {
        Some(found) => format!("{name} is a CNAME to {found}, not {expected}"),
        None => format!("{name} has no CNAME (expected one to {expected})"),
    }
}

/// How a real run's DNS changes are made: `drplan.toml`'s `[dns] mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DnsMode {
    /// Sent to the zones' servers, and verified by asking them.
    #[default]
    Update,
    /// Recorded in the run only: nothing is sent, and verifying reads the records back.
    Record,
}

impl std::fmt::Display for DnsMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DnsMode::Update => "update",
            DnsMode::Record => "record",
        })
    }
}

#[async_trait]
pub trait DnsUpdater: Send + Sync {
    /// Replaces the A record set of `name` with `ip`.
    async fn point(&self, name: &str, ip: Ipv4Addr) -> Result<(), DnsError>;
    /// The A records of `name` as the authoritative server answers now.
    async fn lookup(&self, name: &str) -> Result<Vec<Ipv4Addr>, DnsError>;
    /// Replaces the CNAME of `name` (if any) with one to `target`, atomically. A name that
    /// holds address records cannot become a CNAME: that is `DnsError::CnameConflict`, and
    /// nothing changes.
    async fn point_cname(&self, name: &str, target: &str) -> Result<(), DnsError>;
    /// The target of `name`'s CNAME as the authoritative server answers now; `None` when it
    /// has none.
    async fn lookup_cname(&self, name: &str) -> Result<Option<String>, DnsError>;

    /// Checks that `name` resolves to `ip` alone. The error names the record queried,
    /// which an updater that renames (a drill's test zone) knows and its caller does not.
    async fn verify(&self, name: &str, ip: Ipv4Addr) -> Result<(), DnsError> {
        let found = self.lookup(name).await?;
        if found == [ip] {
            return Ok(());
        }
        let found = if found.is_empty() {
            "nothing".to_string()
        } else {
            found.iter().map(Ipv4Addr::to_string).collect::<Vec<_>>().join(", ")
        };
        Err(DnsError::Mismatch { name: name.into(), expected: ip, found })
    }

    /// Checks that `name` is a CNAME to `target` (case and final dot aside); the error
    /// names the record queried.
    async fn verify_cname(&self, name: &str, target: &str) -> Result<(), DnsError> {
        match self.lookup_cname(name).await? {
            Some(found) if same_name(&found, target) => Ok(()),
            found => Err(DnsError::CnameMismatch { name: name.into(), expected: target.into(), found }),
        }
    }

    /// Whether the changes are sent, or only recorded (record mode, and dry runs).
    fn mode(&self) -> DnsMode {
        DnsMode::Update
    }
}

/// Whether `name` lies in `zone`: is it or is below it (both lowercase, without final dots).
pub fn in_zone(name: &str, zone: &str) -> bool {
    name == zone || name.ends_with(&format!(".{zone}"))
}

/// An updater that refuses every call, saying why: what a real run gets when its DNS
/// cannot be changed as configured (no `[dns]` section; a drill with no test zone, R30),
/// so that a change nobody foresaw fails its step instead of being recorded as done.
#[derive(Debug, Clone)]
pub struct Refusing {
    why: String,
}

impl Refusing {
    pub fn new(why: impl Into<String>) -> Self {
        Refusing { why: why.into() }
    }

    fn refuse(&self, name: &str) -> DnsError {
        DnsError::Invalid { name: name.into(), detail: self.why.clone() }
    }
}

#[async_trait]
impl DnsUpdater for Refusing {
    async fn point(&self, name: &str, _ip: Ipv4Addr) -> Result<(), DnsError> {
        Err(self.refuse(name))
    }

    async fn lookup(&self, name: &str) -> Result<Vec<Ipv4Addr>, DnsError> {
        Err(self.refuse(name))
    }

    async fn point_cname(&self, name: &str, _target: &str) -> Result<(), DnsError> {
        Err(self.refuse(name))
    }

    async fn lookup_cname(&self, name: &str) -> Result<Option<String>, DnsError> {
        Err(self.refuse(name))
    }
}

/// Whether two DNS names are the same: case aside, and whether written fully qualified
/// ("lb-dr.contoso.test.") or not.
pub fn same_name(a: &str, b: &str) -> bool {
    a.strip_suffix('.').unwrap_or(a).eq_ignore_ascii_case(b.strip_suffix('.').unwrap_or(b))
}

/// Keeps records in memory: what a dry run "would" have set, readable back by verify.
/// Like a server, it refuses a CNAME at a name it holds A records for.
#[derive(Debug, Default)]
pub struct RecordingDns {
    records: Mutex<BTreeMap<String, Vec<Ipv4Addr>>>,
    /// CNAMEs by (lowercase) name: the target as it was given.
    cnames: Mutex<BTreeMap<String, String>>,
}

impl RecordingDns {
    pub fn records(&self) -> BTreeMap<String, Vec<Ipv4Addr>> {
        self.records.lock().expect("dns lock").clone()
    }

    pub fn cnames(&self) -> BTreeMap<String, String> {
        self.cnames.lock().expect("dns lock").clone()
    }
}

#[async_trait]
impl DnsUpdater for RecordingDns {
    async fn point(&self, name: &str, ip: Ipv4Addr) -> Result<(), DnsError> {
        self.records.lock().expect("dns lock").insert(key(name), vec![ip]);
        Ok(())
    }

    async fn lookup(&self, name: &str) -> Result<Vec<Ipv4Addr>, DnsError> {
        Ok(self.records.lock().expect("dns lock").get(&key(name)).cloned().unwrap_or_default())
    }

    async fn point_cname(&self, name: &str, target: &str) -> Result<(), DnsError> {
        let name_key = key(name);
        if let Some(ips) = self.records.lock().expect("dns lock").get(&name_key).filter(|ips| !ips.is_empty()) {
            return Err(DnsError::CnameConflict { name: name.into(), detail: address_conflict(ips) });
        }
        self.cnames.lock().expect("dns lock").insert(name_key, target.to_string());
        Ok(())
    }

    async fn lookup_cname(&self, name: &str) -> Result<Option<String>, DnsError> {
        Ok(self.cnames.lock().expect("dns lock").get(&key(name)).cloned())
    }

    fn mode(&self) -> DnsMode {
        DnsMode::Record
    }
}

/// How the recorder files a name: lowercase, without the final dot (as a server, it holds
/// "WWW.contoso.test." and "www.contoso.test" as one name).
fn key(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// Why a name with these A records cannot become a CNAME, and what to do.
fn address_conflict(ips: &[Ipv4Addr]) -> String {
    let ips = ips.iter().map(Ipv4Addr::to_string).collect::<Vec<_>>().join(", ");
    format!(
        "it has A records ({ips}), and a CNAME cannot stand beside other data: delete them first, or update them instead of adding a CNAME"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_recorder_keeps_cnames_and_reads_them_back() {
        let dns = RecordingDns::default();
        assert_eq!(dns.lookup_cname("www.contoso.test").await.unwrap(), None);
        dns.point_cname("www.contoso.test", "lb-primary.contoso.test").await.unwrap();
        dns.point_cname("WWW.Contoso.Test.", "lb-dr.contoso.test.").await.unwrap();
        assert_eq!(dns.cnames(), BTreeMap::from([("www.contoso.test".into(), "lb-dr.contoso.test.".into())]));
        assert_eq!(dns.lookup_cname("www.contoso.test.").await.unwrap().as_deref(), Some("lb-dr.contoso.test."));
        assert!(dns.records().is_empty(), "a CNAME is not an A record");
        assert!(dns.lookup("www.contoso.test").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn the_recorder_refuses_a_cname_beside_a_records() {
        let dns = RecordingDns::default();
        dns.point("web01.contoso.test", Ipv4Addr::new(10, 2, 3, 21)).await.unwrap();
        let error = dns.point_cname("Web01.contoso.test.", "lb-dr.contoso.test").await.unwrap_err();
        assert!(matches!(error, DnsError::CnameConflict { .. }), "{error:?}");
        assert_eq!(
            error.to_string(),
            "Web01.contoso.test. cannot become a CNAME: it has A records (10.2.3.21), and a CNAME cannot stand beside other data: delete them first, or update them instead of adding a CNAME"
        );
        assert!(dns.cnames().is_empty(), "nothing recorded");
    }

    #[tokio::test]
    async fn verifying_names_the_record_and_what_it_holds() {
        let dns = RecordingDns::default();
        let ip = Ipv4Addr::new(10, 2, 3, 21);
        let nothing = dns.verify("web01.contoso.test", ip).await.unwrap_err();
        assert_eq!(nothing.to_string(), "web01.contoso.test resolves to nothing, not 10.2.3.21");
        dns.point("web01.contoso.test", Ipv4Addr::new(10, 1, 3, 21)).await.unwrap();
        let other = dns.verify("web01.contoso.test", ip).await.unwrap_err();
        assert_eq!(other.to_string(), "web01.contoso.test resolves to 10.1.3.21, not 10.2.3.21");
        dns.point("web01.contoso.test", ip).await.unwrap();
        dns.verify("WEB01.contoso.test.", ip).await.unwrap();

        let none = dns.verify_cname("www.contoso.test", "lb-dr.contoso.test").await.unwrap_err();
        assert_eq!(none.to_string(), "www.contoso.test has no CNAME (expected one to lb-dr.contoso.test)");
        dns.point_cname("www.contoso.test", "lb-primary.contoso.test.").await.unwrap();
        let other = dns.verify_cname("www.contoso.test", "lb-dr.contoso.test").await.unwrap_err();
        assert_eq!(
            other.to_string(),
            "www.contoso.test is a CNAME to lb-primary.contoso.test., not lb-dr.contoso.test"
        );
        dns.verify_cname("www.contoso.test", "LB-PRIMARY.contoso.test").await.unwrap();
    }

    #[tokio::test]
    async fn a_refusing_updater_refuses_every_call_naming_the_record() {
        let dns = Refusing::new("no [dns] section");
        let ip = Ipv4Addr::new(10, 2, 3, 21);
        for error in [
            dns.point("web01.contoso.test", ip).await.unwrap_err(),
            dns.lookup("web01.contoso.test").await.unwrap_err(),
            dns.verify("web01.contoso.test", ip).await.unwrap_err(),
            dns.point_cname("web01.contoso.test", "lb.contoso.test").await.unwrap_err(),
            dns.lookup_cname("web01.contoso.test").await.unwrap_err(),
        ] {
            assert_eq!(error.to_string(), "invalid DNS configuration for web01.contoso.test: no [dns] section");
        }
    }

    #[test]
    fn names_are_the_same_whatever_their_case_and_final_dot() {
        assert!(same_name("lb-dr.contoso.test.", "LB-DR.Contoso.test"));
        assert!(same_name("lb-dr.contoso.test", "lb-dr.contoso.test"));
        assert!(!same_name("lb-dr.contoso.test", "lb-dr.contoso.test.."));
        assert!(!same_name("lb-dr.contoso.test", "lb-primary.contoso.test"));
    }
}
