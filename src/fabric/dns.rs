//! DNS updates after failover (R50): the `DnsUpdater` trait and a recording updater
//! that serves dry runs and tests, keeping records in memory and sending nothing.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Mutex;

use async_trait::async_trait;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DnsError {
    #[error("DNS update of {name} failed: {message}")]
    Update { name: String, message: String },
    #[error("{name} resolves to {found}, not {expected}")]
    Mismatch { name: String, expected: Ipv4Addr, found: String },
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
