//! DNS updates after failover (R50): the `DnsUpdater` trait, a recording updater that
//! serves dry runs and tests (records in memory, nothing sent), and `Rfc2136`, which sends
//! TSIG-signed dynamic updates to the zone's authoritative server.

pub mod rfc2136;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

pub use rfc2136::{DnsServer, Rfc2136, TsigAlgorithm, TsigKey};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DnsError {
    #[error("DNS update of {name} failed: {message}")]
    Update { name: String, message: String },
    #[error("{name} resolves to {found}, not {expected}")]
    Mismatch { name: String, expected: Ipv4Addr, found: String },
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
    /// The exchange failed for another reason (malformed answer, I/O error...).
    #[error("DNS exchange with {server} for {name} failed: {detail}")]
    Protocol { server: SocketAddr, name: String, detail: String },
}

#[async_trait]
pub trait DnsUpdater: Send + Sync {
    /// Replaces the A record set of `name` with `ip`.
    async fn point(&self, name: &str, ip: Ipv4Addr) -> Result<(), DnsError>;
    /// The A records of `name` as the authoritative server answers now.
    async fn lookup(&self, name: &str) -> Result<Vec<Ipv4Addr>, DnsError>;
}

/// Keeps records in memory: what a dry run "would" have set, readable back by verify.
#[derive(Debug, Default)]
pub struct RecordingDns {
    records: Mutex<BTreeMap<String, Vec<Ipv4Addr>>>,
}

impl RecordingDns {
    pub fn records(&self) -> BTreeMap<String, Vec<Ipv4Addr>> {
        self.records.lock().expect("dns lock").clone()
    }
}

#[async_trait]
impl DnsUpdater for RecordingDns {
    async fn point(&self, name: &str, ip: Ipv4Addr) -> Result<(), DnsError> {
        self.records.lock().expect("dns lock").insert(name.to_ascii_lowercase(), vec![ip]);
        Ok(())
    }

    async fn lookup(&self, name: &str) -> Result<Vec<Ipv4Addr>, DnsError> {
        Ok(self.records.lock().expect("dns lock").get(&name.to_ascii_lowercase()).cloned().unwrap_or_default())
    }
}
