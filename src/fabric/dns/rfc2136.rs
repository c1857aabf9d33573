//! `Rfc2136`: the `DnsUpdater` that changes records on a real authoritative server (R50).
//!
//! Each change is one RFC 2136 UPDATE message, so the server applies it atomically: the
//! old address records go and the new one comes in the same transaction, and a replace can
//! carry a prerequisite on the old data (§2.4.2) so it never overwrites someone else's
//! change. Messages are signed with TSIG (RFC 8945) and sent over TCP: one connection per
//! server and key, opened at the first call, kept for the run and shared by concurrent
//! calls, which are pipelined on it (see `connection.rs`). Nothing is retransmitted
//! behind our back over UDP (a retransmitted conditional update could fail its own
//! prerequisite), and a server that is not there is reported at once ("connection
//! refused") rather than after a timeout. `lookup` asks the same
//! authoritative server, never the system resolver, so `verify` reads what the server
//! serves now.
//!
//! Several zones can be configured, each with its server and key: a name goes to the server
//! whose zone is the longest suffix of it. Errors name the server and the record, never the
//! secret.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hickory_net::NetError;
use hickory_proto::op::{DnsResponse, Message, OpCode, Query, ResponseCode, UpdateMessage};
use hickory_proto::rr::rdata::tsig::{TsigAlgorithm as HickoryTsigAlgorithm, TsigError};
use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType, TSigner};

use super::connection::{Link, Resend};
use super::{DnsError, DnsUpdater, same_name};

/// How far apart (seconds) our clock and the server's may be for a signature to be valid.
const TSIG_FUDGE: u16 = 300;

/// The HMAC of a TSIG key, named as BIND's `key` statement and nsupdate spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TsigAlgorithm {
    #[default]
    HmacSha256,
    HmacSha384,
    HmacSha512,
}

impl TsigAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            TsigAlgorithm::HmacSha256 => "hmac-sha256",
            TsigAlgorithm::HmacSha384 => "hmac-sha384",
            TsigAlgorithm::HmacSha512 => "hmac-sha512",
        }
    }

    fn to_hickory(self) -> HickoryTsigAlgorithm {
        match self {
            TsigAlgorithm::HmacSha256 => HickoryTsigAlgorithm::HmacSha256,
            TsigAlgorithm::HmacSha384 => HickoryTsigAlgorithm::HmacSha384,
            TsigAlgorithm::HmacSha512 => HickoryTsigAlgorithm::HmacSha512,
        }
    }
}

impl fmt::Display for TsigAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TsigAlgorithm {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim_end_matches('.').to_ascii_lowercase().as_str() {
            "hmac-sha256" => Ok(TsigAlgorithm::HmacSha256),
            "hmac-sha384" => Ok(TsigAlgorithm::HmacSha384),
            "hmac-sha512" => Ok(TsigAlgorithm::HmacSha512),
            _ => Err(format!("unsupported TSIG algorithm {s:?}: use hmac-sha256, hmac-sha384 or hmac-sha512")),
        }
    }
}

/// A TSIG key as the server knows it: its name, its algorithm and the shared secret.
#[derive(Clone, PartialEq, Eq)]
pub struct TsigKey {
    pub name: String,
    pub algorithm: TsigAlgorithm,
    /// The raw secret (BIND's `secret "..."` is its base64 form).
    pub secret: Vec<u8>,
}

impl TsigKey {
    pub fn new(name: impl Into<String>, algorithm: TsigAlgorithm, secret: Vec<u8>) -> Self {
        TsigKey { name: name.into(), algorithm, secret }
    }

    /// From the base64 secret of a BIND `key` statement or of `tsig-keygen`'s output.
    pub fn from_base64(name: impl Into<String>, algorithm: TsigAlgorithm, secret: &str) -> Result<Self, DnsError> {
        let name = name.into();
        let secret = data_encoding::BASE64.decode(secret.trim().as_bytes()).map_err(|e| DnsError::Invalid {
            name: format!("TSIG key {name}"),
            // The error gives a position and a kind, never the secret's text.
            detail: format!("the secret is not valid base64 ({e})"),
        })?;
        if secret.is_empty() {
            return Err(DnsError::Invalid { name: format!("TSIG key {name}"), detail: "the secret is empty".into() });
        }
        Ok(TsigKey { name, algorithm, secret })
    }
}

impl fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TsigKey")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .field("secret", &"***")
            .finish()
    }
}

/// The authoritative (primary) server of one zone, and how to update it.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsServer {
    pub address: SocketAddr,
    /// The zone's apex, e.g. "contoso.test." (the trailing dot is optional).
    pub zone: String,
    /// `None` sends unsigned updates (for servers that allow updates by address).
    pub key: Option<TsigKey>,
    /// The TTL of the records this updater adds.
    pub ttl: u32,
    /// The bound on one call: connecting, sending and reading the answer.
    pub timeout: Duration,
}

impl DnsServer {
    pub const DEFAULT_TTL: u32 = 300;
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

    pub fn new(address: SocketAddr, zone: impl Into<String>) -> Self {
        DnsServer { address, zone: zone.into(), key: None, ttl: Self::DEFAULT_TTL, timeout: Self::DEFAULT_TIMEOUT }
    }

    pub fn with_key(mut self, key: TsigKey) -> Self {
        self.key = Some(key);
        self
    }

    pub fn with_ttl(mut self, ttl: u32) -> Self {
        self.ttl = ttl;
        self
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// A configured server with its zone and connection ready (or why they cannot be used).
struct Zone {
    server: DnsServer,
    origin: Result<Name, String>,
    /// The connection it shares with the other zones of the same server and key.
    link: Result<Arc<Link>, String>,
}

impl Zone {
    /// `earlier`: the zones configured before this one, whose connection it may share.
    fn new(server: DnsServer, earlier: &[Zone]) -> Self {
        let origin = fqdn(&server.zone);
        let shared = earlier.iter().find(|z| z.server.address == server.address && z.server.key == server.key);
        let link = match shared {
            Some(zone) => zone.link.clone(),
            None => signer(&server).map(|signer| Arc::new(Link::new(server.address, server.timeout, signer))),
        };
        Zone { server, origin, link }
    }
}

/// The signer of `server`'s key, if it has one.
pub(super) fn signer(server: &DnsServer) -> Result<Option<TSigner>, String> {
    let Some(key) = &server.key else { return Ok(None) };
    fqdn(&key.name)
        .and_then(|name| {
            TSigner::new(key.secret.clone(), key.algorithm.to_hickory(), name, TSIG_FUDGE).map_err(|e| e.to_string())
        })
        .map(Some)
        .map_err(|e| format!("TSIG key {:?} of zone {}: {e}", key.name, server.zone))
}

/// Where one name's changes go: the server, its zone, and the name as a DNS name.
struct Route<'s, 'n> {
    zone: &'s Zone,
    origin: &'s Name,
    name: Name,
    /// The name as the caller wrote it, for messages.
    shown: &'n str,
}

/// Sends TSIG-signed RFC 2136 updates to the authoritative server of each name's zone.
pub struct Rfc2136 {
    zones: Vec<Zone>,
}

impl fmt::Debug for Rfc2136 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rfc2136").field("servers", &self.zones.iter().map(|z| &z.server).collect::<Vec<_>>()).finish()
    }
}

impl Rfc2136 {
    /// Never fails: a zone or key that cannot be used is reported by the calls that need it.
    pub fn new(servers: Vec<DnsServer>) -> Self {
        let mut zones: Vec<Zone> = Vec::with_capacity(servers.len());
        for server in servers {
            let zone = Zone::new(server, &zones);
            zones.push(zone);
        }
        Rfc2136 { zones }
    }

    /// How many TCP connections this updater has opened to its servers so far: one per
    /// server and key, unless a server closed one (tests and benchmarks read it).
    pub fn connections_opened(&self) -> u64 {
        let mut links: Vec<&Arc<Link>> = Vec::new();
        for link in self.zones.iter().filter_map(|z| z.link.as_ref().ok()) {
            if !links.iter().any(|seen| Arc::ptr_eq(seen, link)) {
                links.push(link);
            }
        }
        links.iter().map(|link| link.connections_opened()).sum()
    }

    /// The server that handles `name`: the one whose zone is the longest suffix of it (the
    /// first configured among equals).
    pub fn server_for(&self, name: &str) -> Result<&DnsServer, DnsError> {
        self.route(name).map(|route| &route.zone.server)
    }

    /// Replaces the A record set of `name` with the one record `new`, in one UPDATE. With
    /// `old`, the update carries the prerequisite "the A record set holds exactly `old`"
    /// (RFC 2136 §2.4.2): if it holds anything else, nothing changes and the error is
    /// `DnsError::Changed`.
    pub async fn replace(&self, name: &str, old: Option<Ipv4Addr>, new: Ipv4Addr) -> Result<(), DnsError> {
        self.replace_rrset(name, RecordType::A, old.map(|ip| RData::A(A(ip))), RData::A(A(new))).await
    }

    /// Replaces the AAAA record set of `name` with the one record `ip`, in one UPDATE.
    pub async fn point_v6(&self, name: &str, ip: Ipv6Addr) -> Result<(), DnsError> {
        self.replace_rrset(name, RecordType::AAAA, None, RData::AAAA(AAAA(ip))).await
    }

    /// Deletes the address records (A and AAAA) of `name`; its other records stay. Deleting
    /// what does not exist succeeds.
    pub async fn delete(&self, name: &str) -> Result<(), DnsError> {
        let route = self.route(name)?;
        let mut message = update_message(route.origin);
        message.add_update(delete_rrset(route.name.clone(), RecordType::A));
        message.add_update(delete_rrset(route.name.clone(), RecordType::AAAA));
        let response = self.exchange(&route, message, Resend::Idempotent).await?;
        update_outcome(route.zone.server.address, route.shown, route.origin, None, &response)
    }

    /// The AAAA records of `name`, as its authoritative server answers now.
    pub async fn lookup_v6(&self, name: &str) -> Result<Vec<Ipv6Addr>, DnsError> {
        let records = self.query(name, RecordType::AAAA).await?;
        Ok(records.into_iter().filter_map(|r| if let RData::AAAA(AAAA(ip)) = r { Some(ip) } else { None }).collect())
    }

    /// Replaces the CNAME of `name` (if any) with one to `target`, in one UPDATE that carries
    /// the prerequisites "no A record set" and "no AAAA record set" at `name` (RFC 2136
    /// §2.4.3). A server ignores a CNAME added beside other data (§3.4.2.2) and still answers
    /// NOERROR, so these make the update fail instead, changing nothing, and the error says
    /// which addresses are in the way. Other data (TXT, MX, the apex's SOA) cannot be ruled
    /// out by a prerequisite: the CNAME is read back, and an update the server ignored is
    /// reported the same way.
    async fn replace_cname(&self, name: &str, target: &str) -> Result<(), DnsError> {
        let route = self.route(name)?;
        let target_name = fqdn(target).map_err(|detail| DnsError::Invalid {
            name: name.into(),
            detail: format!("the CNAME target {target:?}: {detail}"),
        })?;
        let server = route.zone.server.address;
        let message = cname_update(route.origin, &route.name, target_name, route.zone.server.ttl);
        let response = self.exchange(&route, message, Resend::Idempotent).await?;
        let tsig_error = response.signature().and_then(|tsig| tsig.data.error);
        if response.response_code == ResponseCode::YXRRSet && tsig_error.is_none() {
            return Err(self.address_conflict(name, server).await);
        }
        update_outcome(server, route.shown, route.origin, None, &response)?;
        match self.lookup_cname(name).await? {
            Some(found) if same_name(&found, target) => Ok(()),
            Some(_) => Err(DnsError::Changed { server, name: name.into(), expected: zone_shown(target) }),
            None => Err(DnsError::CnameConflict {
                name: name.into(),
                detail: format!(
                    "{server} accepted the update but did not apply it: the name has other records (TXT, MX...) or is the zone's apex, and a CNAME cannot stand beside other data"
                ),
            }),
        }
    }

    /// The error for a CNAME update that found address records at `name`, naming them.
    async fn address_conflict(&self, name: &str, server: SocketAddr) -> DnsError {
        let v4 = self.lookup(name).await.unwrap_or_default();
        let addresses: Vec<String> = if v4.is_empty() {
            self.lookup_v6(name).await.unwrap_or_default().iter().map(Ipv6Addr::to_string).collect()
        } else {
            v4.iter().map(Ipv4Addr::to_string).collect()
        };
        let held = match (addresses.is_empty(), v4.is_empty()) {
            (true, _) => "address records".to_string(),
            (false, false) => format!("A records ({})", addresses.join(", ")),
            (false, true) => format!("AAAA records ({})", addresses.join(", ")),
        };
        DnsError::CnameConflict {
            name: name.into(),
            detail: format!(
                "{server} holds {held} for it, and a CNAME cannot stand beside other data: delete them first, or update them instead of adding a CNAME"
            ),
        }
    }

    async fn replace_rrset(
        &self,
        name: &str,
        rtype: RecordType,
        old: Option<RData>,
        new: RData,
    ) -> Result<(), DnsError> {
        let route = self.route(name)?;
        let mut message = update_message(route.origin);
        let expected = old.as_ref().map(|data| data.to_string());
        // A replace conditional on the old data must not be sent twice: the second copy
        // would fail the condition the first one changed.
        let resend = if old.is_some() { Resend::Never } else { Resend::Idempotent };
        if let Some(old) = old {
            // §2.4.2 "RRset exists (value dependent)": zone class, TTL 0, the exact set.
            message.add_pre_requisite(Record::from_rdata(route.name.clone(), 0, old));
        }
        message.add_update(delete_rrset(route.name.clone(), rtype));
        message.add_update(Record::from_rdata(route.name.clone(), route.zone.server.ttl, new));
        let response = self.exchange(&route, message, resend).await?;
        update_outcome(route.zone.server.address, route.shown, route.origin, expected.as_deref(), &response)
    }

    /// The records of one type at `name`, asked of its authoritative server.
    async fn query(&self, name: &str, rtype: RecordType) -> Result<Vec<RData>, DnsError> {
        let route = self.route(name)?;
        let mut message = Message::query();
        message.metadata.recursion_desired = false;
        message.add_query(Query::query(route.name.clone(), rtype));
        let response = self.exchange(&route, message, Resend::Idempotent).await?;
        let server = route.zone.server.address;
        match response.response_code {
            ResponseCode::NoError | ResponseCode::NXDomain if response.authoritative => Ok(response
                .answers
                .iter()
                .filter(|r| r.name == route.name && r.record_type() == rtype)
                .map(|r| r.data.clone())
                .collect()),
            ResponseCode::NoError | ResponseCode::NXDomain => Err(DnsError::Rejected {
                server,
                name: route.shown.into(),
                what: format!("{rtype} query"),
                reason: format!(
                    "a non-authoritative answer: it is not authoritative for zone {}; configure the zone's primary server",
                    route.origin
                ),
            }),
            rcode => Err(DnsError::Rejected {
                server,
                name: route.shown.into(),
                what: format!("{rtype} query"),
                reason: format!("{}: is it a server of zone {}?", rcode_name(rcode), route.origin),
            }),
        }
    }

    fn route<'s, 'n>(&'s self, name: &'n str) -> Result<Route<'s, 'n>, DnsError> {
        let fqdn_name = fqdn(name).map_err(|detail| DnsError::Invalid { name: name.into(), detail })?;
        let mut best: Option<(&Zone, &Name)> = None;
        for zone in &self.zones {
            if let Ok(origin) = &zone.origin
                && origin.zone_of(&fqdn_name)
                && best.is_none_or(|(_, chosen)| origin.num_labels() > chosen.num_labels())
            {
                best = Some((zone, origin));
            }
        }
        let Some((zone, origin)) = best else {
            let zones = if self.zones.is_empty() {
                "(none configured)".to_string()
            } else {
                self.zones.iter().map(|z| zone_shown(&z.server.zone)).collect::<Vec<_>>().join(", ")
            };
            return Err(DnsError::UnknownZone { name: name.into(), zones });
        };
        Ok(Route { zone, origin, name: fqdn_name, shown: name })
    }

    /// Sends one message on the server's connection and returns the (verified) answer.
    async fn exchange(&self, route: &Route<'_, '_>, message: Message, resend: Resend) -> Result<DnsResponse, DnsError> {
        let server = &route.zone.server;
        let link = route
            .zone
            .link
            .as_ref()
            .map_err(|detail| DnsError::Invalid { name: route.shown.into(), detail: detail.clone() })?;
        let (timeout, address) = (server.timeout, server.address);
        match tokio::time::timeout(timeout, link.exchange(message, resend)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error)) => Err(net_error(address, route.shown, timeout, &error)),
            Err(_) => Err(DnsError::Timeout { server: address, name: route.shown.into(), after: timeout }),
        }
    }
}

#[async_trait]
impl DnsUpdater for Rfc2136 {
    async fn point(&self, name: &str, ip: Ipv4Addr) -> Result<(), DnsError> {
        self.replace(name, None, ip).await
    }

    async fn lookup(&self, name: &str) -> Result<Vec<Ipv4Addr>, DnsError> {
        let records = self.query(name, RecordType::A).await?;
        Ok(records.into_iter().filter_map(|r| if let RData::A(A(ip)) = r { Some(ip) } else { None }).collect())
    }

    async fn point_cname(&self, name: &str, target: &str) -> Result<(), DnsError> {
        self.replace_cname(name, target).await
    }

    /// The target fully qualified, as the server holds it ("lb-dr.contoso.test.").
    async fn lookup_cname(&self, name: &str) -> Result<Option<String>, DnsError> {
        let records = self.query(name, RecordType::CNAME).await?;
        Ok(records
            .into_iter()
            .find_map(|r| if let RData::CNAME(CNAME(target)) = r { Some(target.to_string()) } else { None }))
    }
}

pub(super) fn fqdn(name: &str) -> Result<Name, String> {
    if name.trim_end_matches('.').is_empty() {
        return Err("the name is empty".into());
    }
    let mut parsed = Name::from_ascii(name).map_err(|e| format!("not a valid DNS name: {e}"))?;
    parsed.set_fqdn(true);
    Ok(parsed)
}

fn zone_shown(zone: &str) -> String {
    if zone.ends_with('.') { zone.to_string() } else { format!("{zone}.") }
}

/// An UPDATE for `origin`: the zone section names the zone (RFC 2136 §2.3).
fn update_message(origin: &Name) -> Message {
    let mut zone = Query::new();
    zone.set_name(origin.clone()).set_query_class(DNSClass::IN).set_query_type(RecordType::SOA);
    let mut message = Message::query();
    message.metadata.op_code = OpCode::Update;
    message.metadata.recursion_desired = false;
    message.add_zone(zone);
    message
}

/// The UPDATE that makes `name` a CNAME to `target`: unless it has address records, its
/// CNAME record set (if any) goes and the new one comes in.
fn cname_update(origin: &Name, name: &Name, target: Name, ttl: u32) -> Message {
    let mut message = update_message(origin);
    for rtype in [RecordType::A, RecordType::AAAA] {
        message.add_pre_requisite(rrset_absent(name.clone(), rtype));
    }
    message.add_update(delete_rrset(name.clone(), RecordType::CNAME));
    message.add_update(Record::from_rdata(name.clone(), ttl, RData::CNAME(CNAME(target))));
    message
}

/// §2.4.3 "RRset does not exist": class NONE, TTL 0, no data.
fn rrset_absent(name: Name, rtype: RecordType) -> Record {
    let mut record = Record::update0(name, 0, rtype);
    record.dns_class = DNSClass::NONE;
    record
}

/// §2.5.2 "Delete an RRset": class ANY, TTL 0, no data.
fn delete_rrset(name: Name, rtype: RecordType) -> Record {
    let mut record = Record::update0(name, 0, rtype);
    record.dns_class = DNSClass::ANY;
    record
}

fn update_outcome(
    server: SocketAddr,
    name: &str,
    zone: &Name,
    expected: Option<&str>,
    response: &DnsResponse,
) -> Result<(), DnsError> {
    let tsig_error = response.signature().and_then(|tsig| tsig.data.error);
    check_update(server, name, zone, expected, response.response_code, tsig_error)
}

/// What an UPDATE's response code (and its TSIG error, if any) means for the caller.
fn check_update(
    server: SocketAddr,
    name: &str,
    zone: &Name,
    expected: Option<&str>,
    rcode: ResponseCode,
    tsig_error: Option<TsigError>,
) -> Result<(), DnsError> {
    let name = name.to_string();
    if let Some(error) = tsig_error {
        let detail = match error {
            TsigError::BadSig => "the server rejected the signature (BADSIG)".to_string(),
            TsigError::BadKey => "the server does not know the key (BADKEY)".to_string(),
            TsigError::BadTime => format!(
                "the server rejected the signature's time (BADTIME): this machine's clock and the server's differ by more than {TSIG_FUDGE} s"
            ),
            TsigError::BadTrunc => "the server rejected a truncated signature (BADTRUNC)".to_string(),
            TsigError::Unknown(code) => format!("TSIG error {code}"),
        };
        return Err(DnsError::AuthFailed { server, name, detail });
    }
    let rejected = |hint: String| DnsError::Rejected {
        server,
        name: name.clone(),
        what: "update".into(),
        reason: format!("{}: {hint}", rcode_name(rcode)),
    };
    match rcode {
        ResponseCode::NoError => Ok(()),
        ResponseCode::Refused => Err(DnsError::Refused { server, name }),
        ResponseCode::BADSIG | ResponseCode::BADKEY | ResponseCode::BADTIME => {
            Err(DnsError::AuthFailed { server, name, detail: format!("the server answered {}", rcode_name(rcode)) })
        }
        ResponseCode::NXRRSet | ResponseCode::YXRRSet | ResponseCode::NXDomain | ResponseCode::YXDomain => {
            match expected {
                Some(expected) => Err(DnsError::Changed { server, name, expected: expected.to_string() }),
                None => Err(rejected("a prerequisite failed that this update did not set".into())),
            }
        }
        ResponseCode::NotAuth => Err(rejected(format!("{server} is not authoritative for zone {zone}"))),
        ResponseCode::NotZone => Err(rejected(format!("the name is not in zone {zone}"))),
        ResponseCode::ServFail => Err(rejected("the server could not apply it; see its log".into())),
        ResponseCode::FormErr => Err(rejected("the server could not parse the update".into())),
        ResponseCode::NotImp => Err(rejected("the server does not implement dynamic updates".into())),
        _ => Err(rejected("the update was not applied".into())),
    }
}

/// A failed exchange, in terms of what the operator can do about it.
fn net_error(server: SocketAddr, name: &str, timeout: Duration, error: &NetError) -> DnsError {
    let name = name.to_string();
    if let NetError::Timeout = error {
        return DnsError::Timeout { server, name, after: timeout };
    }
    if let NetError::Io(io_error) = error {
        return match io_error.kind() {
            io::ErrorKind::TimedOut => DnsError::Timeout { server, name, after: timeout },
            io::ErrorKind::ConnectionRefused => {
                DnsError::Unreachable { server, name, detail: "connection refused: nothing listens there".into() }
            }
            io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable | io::ErrorKind::AddrNotAvailable => {
                DnsError::Unreachable { server, name, detail: format!("no route to it ({io_error})") }
            }
            io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
                DnsError::Protocol { server, name, detail: "the server closed the connection without answering".into() }
            }
            _ => DnsError::Protocol { server, name, detail: io_error.to_string() },
        };
    }
    let text = error.to_string();
    if let Some(detail) = tsig_failure(&text) {
        return DnsError::AuthFailed { server, name, detail: detail.into() };
    }
    DnsError::Protocol { server, name, detail: text }
}

/// Whether hickory failed to authenticate the answer. A server that rejects our signature
/// answers unsigned (RFC 8945 §5.3.2: BADSIG and BADKEY carry an empty MAC), and hickory
/// reports that as a protocol error about "truncated HMACs" instead of the response code
/// (hickory-dns #1981); the other texts are its other TSIG verification failures.
fn tsig_failure(text: &str) -> Option<&'static str> {
    let text = text.to_ascii_lowercase();
    if text.contains("truncated hmac") {
        Some("the server rejected our signature or key name, BADSIG or BADKEY, and answered unsigned")
    } else if text.contains("tsig key wrong key") {
        Some("the server answered with another key")
    } else if text.contains("hmac validation failure") {
        Some("the server's answer does not verify with our secret")
    } else if text.contains("tsig signature record not found") || text.contains("signature is not tsig") {
        Some("the server's answer is not signed")
    } else if text.contains("tsig validation error") {
        Some("the server's signature is outside the allowed time window")
    } else {
        None
    }
}

/// The mnemonic of a response code, as dig and nsupdate print it.
pub(super) fn rcode_name(rcode: ResponseCode) -> String {
    match rcode {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::Refused => "REFUSED".into(),
        ResponseCode::YXDomain => "YXDOMAIN".into(),
        ResponseCode::YXRRSet => "YXRRSET".into(),
        ResponseCode::NXRRSet => "NXRRSET".into(),
        ResponseCode::NotAuth => "NOTAUTH".into(),
        ResponseCode::NotZone => "NOTZONE".into(),
        ResponseCode::BADSIG => "BADSIG".into(),
        ResponseCode::BADKEY => "BADKEY".into(),
        ResponseCode::BADTIME => "BADTIME".into(),
        other => format!("response code {}", u16::from(other)),
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::sync::Arc;

    use hickory_proto::ProtoError;

    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn key(secret: &str) -> TsigKey {
        TsigKey::from_base64("drplan-key", TsigAlgorithm::HmacSha256, secret).unwrap()
    }

    fn zone(name: &str) -> Name {
        fqdn(name).unwrap()
    }

    #[test]
    fn the_longest_zone_suffix_wins() {
        let dns = Rfc2136::new(vec![
            DnsServer::new(addr(1), "contoso.test."),
            DnsServer::new(addr(2), "dr.contoso.test"),
            DnsServer::new(addr(3), "fabrikam.test."),
        ]);
        assert_eq!(dns.server_for("web01.contoso.test").unwrap().address, addr(1));
        assert_eq!(dns.server_for("web01.dr.contoso.test.").unwrap().address, addr(2));
        assert_eq!(dns.server_for("WEB01.DR.Contoso.Test").unwrap().address, addr(2));
        assert_eq!(dns.server_for("dr.contoso.test").unwrap().address, addr(2), "the apex is in its zone");
        assert_eq!(dns.server_for("sql.fabrikam.test").unwrap().address, addr(3));
        // A label boundary, not a string suffix:
        assert!(matches!(dns.server_for("web01.notcontoso.test"), Err(DnsError::UnknownZone { .. })));
    }

    #[test]
    fn the_first_configured_server_wins_among_equal_zones() {
        let dns = Rfc2136::new(vec![DnsServer::new(addr(1), "contoso.test"), DnsServer::new(addr(2), "contoso.test.")]);
        assert_eq!(dns.server_for("web01.contoso.test").unwrap().address, addr(1));
    }

    #[test]
    fn an_unknown_zone_names_the_record_and_lists_the_zones() {
        let dns =
            Rfc2136::new(vec![DnsServer::new(addr(1), "contoso.test."), DnsServer::new(addr(2), "fabrikam.test")]);
        let error = dns.server_for("web01.example.org").unwrap_err();
        assert_eq!(
            error.to_string(),
            "no DNS server is configured for web01.example.org: it is in none of the zones contoso.test., fabrikam.test.; add a server for its zone"
        );
        let none = Rfc2136::new(vec![]).server_for("web01.example.org").unwrap_err();
        assert!(none.to_string().contains("(none configured)"), "{none}");
    }

    #[test]
    fn invalid_names_are_reported() {
        let dns = Rfc2136::new(vec![DnsServer::new(addr(1), "contoso.test.")]);
        assert!(matches!(dns.server_for(""), Err(DnsError::Invalid { .. })));
        assert!(matches!(dns.server_for("."), Err(DnsError::Invalid { .. })));
        assert!(matches!(dns.server_for("a..contoso.test"), Err(DnsError::Invalid { .. })));
    }

    #[test]
    fn the_secret_never_shows_in_debug_output() {
        let key = key("c2VjcmV0LXNlY3JldC1zZWNyZXQ=");
        let shown = format!("{key:?}");
        assert_eq!(shown, r#"TsigKey { name: "drplan-key", algorithm: HmacSha256, secret: "***" }"#);
        let server = DnsServer::new(addr(53), "contoso.test.").with_key(key.clone());
        let dns = Rfc2136::new(vec![server.clone()]);
        for text in [format!("{server:?}"), format!("{dns:?}"), format!("{:#?}", dns)] {
            assert!(!text.contains("c2VjcmV0"), "{text}");
            assert!(!text.contains("115, 101, 99"), "the raw bytes leak: {text}");
            assert!(text.contains("***"), "{text}");
        }
    }

    #[test]
    fn a_bad_base64_secret_is_an_error_that_does_not_echo_it() {
        let error = TsigKey::from_base64("drplan-key", TsigAlgorithm::HmacSha512, "not*base64!").unwrap_err();
        assert!(error.to_string().contains("TSIG key drplan-key"), "{error}");
        assert!(!error.to_string().contains("not*base64!"), "{error}");
        assert!(TsigKey::from_base64("k", TsigAlgorithm::HmacSha256, "").is_err());
        assert_eq!(TsigKey::from_base64("k", TsigAlgorithm::HmacSha512, "AAEC").unwrap().secret, vec![0, 1, 2]);
    }

    #[test]
    fn algorithms_parse_as_bind_spells_them() {
        assert_eq!("hmac-sha256".parse::<TsigAlgorithm>(), Ok(TsigAlgorithm::HmacSha256));
        assert_eq!("HMAC-SHA512.".parse::<TsigAlgorithm>(), Ok(TsigAlgorithm::HmacSha512));
        assert_eq!("hmac-sha384".parse::<TsigAlgorithm>().unwrap().to_string(), "hmac-sha384");
        assert!("hmac-md5".parse::<TsigAlgorithm>().unwrap_err().contains("unsupported"));
        assert_eq!(TsigAlgorithm::default(), TsigAlgorithm::HmacSha256);
    }

    #[test]
    fn a_key_name_that_is_not_a_dns_name_is_reported_at_the_call() {
        let bad = TsigKey::new("bad..key", TsigAlgorithm::HmacSha256, vec![1; 32]);
        let dns = Rfc2136::new(vec![DnsServer::new(addr(1), "contoso.test.").with_key(bad)]);
        let route = dns.route("web01.contoso.test").unwrap();
        let detail = route.zone.link.as_ref().err().unwrap();
        assert!(detail.contains("bad..key") && detail.contains("contoso.test."), "{detail}");
    }

    #[test]
    fn response_codes_map_to_clear_errors() {
        let server = addr(5353);
        let z = zone("contoso.test.");
        let check = |expected, rcode, tsig| check_update(server, "web01.contoso.test", &z, expected, rcode, tsig);
        assert_eq!(check(None, ResponseCode::NoError, None), Ok(()));

        let refused = check(None, ResponseCode::Refused, None).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "127.0.0.1:5353 refused the update of web01.contoso.test: is the key allowed to update the zone?"
        );

        let changed = check(Some("10.1.3.21"), ResponseCode::NXRRSet, None).unwrap_err();
        assert!(matches!(changed, DnsError::Changed { .. }));
        assert!(changed.to_string().contains("changed by someone else"), "{changed}");
        assert!(changed.to_string().contains("127.0.0.1:5353") && changed.to_string().contains("10.1.3.21"));

        for tsig in [TsigError::BadSig, TsigError::BadKey, TsigError::BadTime] {
            let error = check(None, ResponseCode::NotAuth, Some(tsig)).unwrap_err();
            assert!(matches!(error, DnsError::AuthFailed { .. }), "{error}");
            assert!(error.to_string().starts_with("authentication failed at 127.0.0.1:5353 for web01.contoso.test"));
        }
        let not_auth = check(None, ResponseCode::NotAuth, None).unwrap_err();
        assert!(not_auth.to_string().contains("not authoritative for zone contoso.test."), "{not_auth}");
        let not_zone = check(None, ResponseCode::NotZone, None).unwrap_err();
        assert!(not_zone.to_string().contains("NOTZONE"), "{not_zone}");
        let servfail = check(None, ResponseCode::ServFail, None).unwrap_err();
        assert!(servfail.to_string().contains("SERVFAIL") && servfail.to_string().contains("127.0.0.1:5353"));
    }

    #[test]
    fn hickorys_truncated_hmac_error_is_an_authentication_failure() {
        // What hickory 0.26 returns when the server answers BADSIG/BADKEY unsigned (#1981).
        let wart = NetError::from(ProtoError::from(
            "Please file an issue with https://github.com/hickory-dns/hickory-dns to support truncated HMACs with TSIG",
        ));
        let error = net_error(addr(5353), "web01.contoso.test", Duration::from_secs(5), &wart);
        assert!(matches!(error, DnsError::AuthFailed { .. }), "{error:?}");
        let text = error.to_string();
        assert!(text.starts_with(
            "authentication failed at 127.0.0.1:5353 for web01.contoso.test: check the TSIG key name and secret"
        ));
        assert!(!text.contains("file an issue"), "{text}");
    }

    #[test]
    fn transport_failures_name_the_server_and_the_record() {
        let server = addr(5353);
        let after = Duration::from_millis(1500);
        let io = |kind| NetError::Io(Arc::new(io::Error::from(kind)));
        let refused = net_error(server, "web01.contoso.test", after, &io(io::ErrorKind::ConnectionRefused));
        assert_eq!(
            refused.to_string(),
            "DNS server 127.0.0.1:5353 is unreachable (for web01.contoso.test): connection refused: nothing listens there"
        );
        let no_route = net_error(server, "web01.contoso.test", after, &io(io::ErrorKind::HostUnreachable));
        assert!(matches!(no_route, DnsError::Unreachable { .. }));
        let timeout = net_error(server, "web01.contoso.test", after, &NetError::Timeout);
        assert_eq!(
            timeout.to_string(),
            "DNS server 127.0.0.1:5353 did not answer within 1.5s (for web01.contoso.test)"
        );
        let connect_timeout = net_error(server, "web01.contoso.test", after, &io(io::ErrorKind::TimedOut));
        assert!(matches!(connect_timeout, DnsError::Timeout { .. }));
    }

    #[test]
    fn an_update_puts_the_prerequisite_the_delete_and_the_add_in_one_message() {
        let origin = zone("contoso.test.");
        let name = zone("web01.contoso.test");
        let mut message = update_message(&origin);
        message.add_pre_requisite(Record::from_rdata(name.clone(), 0, RData::A(A(Ipv4Addr::new(10, 1, 3, 21)))));
        message.add_update(delete_rrset(name.clone(), RecordType::A));
        message.add_update(Record::from_rdata(name.clone(), 60, RData::A(A(Ipv4Addr::new(10, 2, 3, 21)))));
        let bytes = message.to_vec().unwrap();
        let parsed = Message::from_vec(&bytes).unwrap();
        assert_eq!(parsed.op_code, OpCode::Update);
        assert_eq!(parsed.zones()[0].name(), &origin);
        assert_eq!(parsed.zones()[0].query_type(), RecordType::SOA);
        let prerequisite = &parsed.prerequisites()[0];
        assert_eq!((prerequisite.dns_class, prerequisite.ttl), (DNSClass::IN, 0));
        let [delete, add] = parsed.updates() else { panic!("two updates: {:?}", parsed.updates()) };
        assert_eq!((delete.dns_class, delete.ttl, delete.record_type()), (DNSClass::ANY, 0, RecordType::A));
        assert_eq!((add.dns_class, add.ttl), (DNSClass::IN, 60));
        assert_eq!(add.data, RData::A(A(Ipv4Addr::new(10, 2, 3, 21))));
    }

    #[test]
    fn a_cname_update_rules_out_address_records_then_replaces_the_cname_set() {
        let origin = zone("contoso.test.");
        let name = zone("www.contoso.test");
        let message = cname_update(&origin, &name, zone("lb-dr.contoso.test"), 60);
        let parsed = Message::from_vec(&message.to_vec().unwrap()).unwrap();
        assert_eq!(parsed.op_code, OpCode::Update);
        assert_eq!(parsed.zones()[0].name(), &origin);
        let absent: Vec<_> =
            parsed.prerequisites().iter().map(|r| (r.dns_class, r.ttl, r.record_type(), r.name.clone())).collect();
        assert_eq!(
            absent,
            [(DNSClass::NONE, 0, RecordType::A, name.clone()), (DNSClass::NONE, 0, RecordType::AAAA, name.clone())]
        );
        let [delete, add] = parsed.updates() else { panic!("two updates: {:?}", parsed.updates()) };
        assert_eq!((delete.dns_class, delete.ttl, delete.record_type()), (DNSClass::ANY, 0, RecordType::CNAME));
        assert_eq!((add.dns_class, add.ttl, &add.name), (DNSClass::IN, 60, &name));
        assert_eq!(add.data, RData::CNAME(CNAME(zone("lb-dr.contoso.test."))));
    }

    #[tokio::test]
    async fn a_cname_target_that_is_not_a_dns_name_is_invalid_before_anything_is_sent() {
        // Nothing listens at port 1: had anything been sent, the error would be Unreachable.
        let dns = Rfc2136::new(vec![DnsServer::new(addr(1), "contoso.test.")]);
        let error = dns.point_cname("www.contoso.test", "lb..contoso.test").await.unwrap_err();
        assert!(matches!(error, DnsError::Invalid { .. }), "{error:?}");
        assert!(error.to_string().contains("the CNAME target \"lb..contoso.test\""), "{error}");
    }

    #[tokio::test]
    async fn a_closed_port_is_reported_as_unreachable_at_once() {
        // Bind then drop: the port is (almost certainly) closed now.
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dns = Rfc2136::new(vec![DnsServer::new(addr(port), "contoso.test.").with_timeout(Duration::from_secs(2))]);
        let error = dns.point("web01.contoso.test", Ipv4Addr::new(10, 2, 3, 21)).await.unwrap_err();
        assert!(matches!(error, DnsError::Unreachable { .. }), "{error}");
        assert!(error.to_string().contains(&format!("127.0.0.1:{port}")), "{error}");
    }
}
