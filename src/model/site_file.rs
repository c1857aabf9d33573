//! The site file: the TOML text that describes a simulated datacenter pair, parsed into
//! a validated [`Inventory`]. Pure: the caller reads the file, the path only labels the
//! errors. Every error points at the offending value (line, column, a caret under it, as
//! rustc does), and all semantic errors are reported at once so an operator fixes the
//! file in one pass. The format is documented in `docs/site-file.md`.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::net::Ipv4Addr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use toml::Spanned;

use super::duration::{HumanDuration, parse_duration};
use super::inventory::{Fault, InitialProtection, Inventory, ReplicationGroup, Simulation};
use super::names::list;
use super::network::{Ipv4Net, Network, NetworkMapping, Subnet};
use super::policy::{
    CopyFrequency, FAILBACK_POLICY_NAME, InitialReplication, PolicyError, ReplicationPolicy, StorageTier, Throttle,
};
use super::recovery::{Timestamp, delta};
use super::site::{Pairing, Platform, Site, SiteKind, check_pairings};
use super::vm::{Disk, Nic, Os, StorageMapping, TargetSize, Vm, check_disks, check_exclusions};

/// One problem in a site file, located at the value that causes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct SiteFileError {
    pub path: PathBuf,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    /// Where in the document, e.g. `vms."web01".nics[0].network`; empty for a TOML
    /// syntax error, which has no field yet.
    pub field: String,
    pub message: String,
    /// The text of `line`, shown under the message.
    pub source_line: String,
    /// How many characters from `column` the caret underlines (at least 1).
    pub width: usize,
}

impl SiteFileError {
    fn render(&self) -> String {
        let field = if self.field.is_empty() { String::new() } else { format!("{}: ", self.field) };
        let gutter = " ".repeat(self.line.to_string().len());
        // Keep tabs so the caret lines up under a tab-indented value.
        let indent: String =
            self.source_line.chars().take(self.column - 1).map(|c| if c == '\t' { '\t' } else { ' ' }).collect();
        format!(
            "{}:{}:{}: {field}{}\n{gutter} |\n{} | {}\n{gutter} | {indent}{}",
            self.path.display(),
            self.line,
            self.column,
            self.message,
            self.line,
            self.source_line,
            "^".repeat(self.width.max(1)),
        )
    }
}

/// Everything wrong with a site file, in line order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render_all(.0))]
pub struct SiteFileErrors(pub Vec<SiteFileError>);

fn render_all(errors: &[SiteFileError]) -> String {
    let mut text = errors.iter().map(SiteFileError::render).collect::<Vec<_>>().join("\n\n");
    if let [first, _, ..] = errors {
        text.push_str(&format!("\n\n{} errors in {}", errors.len(), first.path.display()));
    }
    text
}

/// Parses and validates the text of a site file. `path` is only used in messages.
pub fn parse_site(text: &str, path: &Path) -> Result<Inventory, SiteFileErrors> {
    let mut checker = Checker::new(text, path);
    let doc = match toml::from_str::<SiteFileDoc>(text) {
        Ok(doc) => doc,
        Err(e) => {
            checker.error(e.span().unwrap_or(0..0), String::new(), e.message().trim_end());
            return Err(checker.into_errors());
        }
    };
    let inventory = checker.inventory(&doc);
    if checker.errors.is_empty() { Ok(inventory) } else { Err(checker.into_errors()) }
}

// ---------------------------------------------------------------------------------------
// The document as written. Values that an error may point at are `Spanned`.

type Text = Spanned<String>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SiteFileDoc {
    simulation: Option<SimulationDoc>,
    throttle: Option<ThrottleDoc>,
    #[serde(default)]
    sites: Vec<SiteDoc>,
    #[serde(default)]
    pairings: Vec<PairDoc>,
    #[serde(default)]
    network_mappings: Vec<PairDoc>,
    #[serde(default)]
    storage_mappings: Vec<PairDoc>,
    #[serde(default)]
    policies: Vec<PolicyDoc>,
    #[serde(default)]
    sizes: Vec<SizeDoc>,
    #[serde(default)]
    replication_groups: Vec<GroupDoc>,
    #[serde(default)]
    vms: Vec<VmDoc>,
    #[serde(default)]
    faults: Vec<FaultDoc>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SimulationDoc {
    start: Option<Text>,
    speed: Option<Spanned<i64>>,
    pace: Option<bool>,
    shutdown_timeout: Option<Text>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ThrottleDoc {
    work_hours: Option<Text>,
    work_kbps: Option<Spanned<u64>>,
    off_hours_kbps: Option<Spanned<u64>>,
    threads: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SiteDoc {
    name: Text,
    kind: Text,
    platform: Option<Text>,
    #[serde(default)]
    hosts: Vec<Text>,
    #[serde(default)]
    networks: Vec<NetworkDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NetworkDoc {
    name: Text,
    #[serde(default)]
    isolated: bool,
    #[serde(default)]
    subnets: Vec<SubnetDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubnetDoc {
    name: Text,
    cidr: Text,
    #[serde(default)]
    reserved: Vec<Text>,
}

/// A pairing or a mapping: both are `source = ...`, `target = ...`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PairDoc {
    source: Text,
    target: Text,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyDoc {
    name: Text,
    copy_frequency: Option<Text>,
    retention: Text,
    app_consistent: Option<Text>,
    initial_replication: Option<Text>,
    initial_replication_delay: Option<Text>,
    export_path: Option<Text>,
    import_path: Option<Text>,
    offline_transfer: Option<Text>,
    compression: Option<bool>,
    encryption: Option<bool>,
    target_storage: Option<Text>,
    rpo_threshold: Option<Text>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SizeDoc {
    name: Text,
    max_nics: Spanned<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupDoc {
    name: Text,
    #[serde(default)]
    vms: Vec<Text>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VmDoc {
    name: Text,
    site: Text,
    host: Text,
    os: Text,
    size: Option<Text>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    #[serde(default)]
    dns: Vec<String>,
    boot_time: Option<Text>,
    shutdown_time: Option<Text>,
    change_rate_kbps: Option<u64>,
    storage: Option<String>,
    replica_name: Option<String>,
    disks: Option<Spanned<Vec<DiskDoc>>>,
    #[serde(default)]
    nics: Vec<NicDoc>,
    protection: Option<ProtectionDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DiskDoc {
    name: String,
    size_gb: u64,
    #[serde(default)]
    os: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NicDoc {
    network: Text,
    subnet: Text,
    ip: Option<Text>,
    target_ip: Option<Text>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProtectionDoc {
    policy: Text,
    since: Option<Text>,
    exclude: Option<Spanned<Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultDoc {
    kind: Text,
    vm: Text,
    at: Option<Text>,
}

/// Things the file names and refers to by name.
trait Named {
    fn name(&self) -> &Text;
}

macro_rules! named {
    ($($doc:ty),*) => {
        $(impl Named for $doc {
            fn name(&self) -> &Text {
                &self.name
            }
        })*
    };
}
named!(SiteDoc, NetworkDoc, SubnetDoc, PolicyDoc, SizeDoc, GroupDoc, VmDoc);

/// A host is just its name.
impl Named for Text {
    fn name(&self) -> &Text {
        self
    }
}

/// A list the file refers to by name, indexed: every VM and NIC refers to a site, a host,
/// a network and a subnet, and a site file may list 100,000 VMs on thousands of hosts. A
/// repeated name finds the first (the repeat is reported where it is defined).
struct Catalog<'d, T> {
    items: &'d [T],
    positions: HashMap<&'d str, usize>,
}

impl<'d, T: Named> Catalog<'d, T> {
    fn new(items: &'d [T]) -> Self {
        let mut positions = HashMap::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            positions.entry(item.name().get_ref().as_str()).or_insert(i);
        }
        Catalog { items, positions }
    }

    fn get(&self, name: &str) -> Option<&'d T> {
        self.positions.get(name).map(|&i| &self.items[i])
    }
}

/// Everything the file refers to by name.
struct Names<'d> {
    sites: Catalog<'d, SiteDoc>,
    /// What is named within each site, by the site's name.
    on_site: HashMap<&'d str, SiteNames<'d>>,
    policies: Catalog<'d, PolicyDoc>,
    sizes: Catalog<'d, SizeDoc>,
    vms: Catalog<'d, VmDoc>,
}

struct SiteNames<'d> {
    site: &'d SiteDoc,
    hosts: Catalog<'d, Text>,
    networks: Catalog<'d, NetworkDoc>,
    /// Each network's subnets, by the network's name.
    subnets: HashMap<&'d str, Catalog<'d, SubnetDoc>>,
}

impl<'d> Names<'d> {
    fn new(doc: &'d SiteFileDoc) -> Self {
        let mut on_site = HashMap::new();
        for site in &doc.sites {
            on_site.entry(site.name.get_ref().as_str()).or_insert_with(|| {
                let mut subnets = HashMap::new();
                for network in &site.networks {
                    subnets.entry(network.name.get_ref().as_str()).or_insert_with(|| Catalog::new(&network.subnets));
                }
                SiteNames { site, hosts: Catalog::new(&site.hosts), networks: Catalog::new(&site.networks), subnets }
            });
        }
        Names {
            sites: Catalog::new(&doc.sites),
            on_site,
            policies: Catalog::new(&doc.policies),
            sizes: Catalog::new(&doc.sizes),
            vms: Catalog::new(&doc.vms),
        }
    }

    /// What is named on `site`, a site that `sites` found.
    fn site(&self, site: &SiteDoc) -> &SiteNames<'d> {
        &self.on_site[site.name.get_ref().as_str()]
    }
}

/// Where in the document a value is, e.g. `vms."web01".os`, as errors name it: text, or
/// a closure that makes it, so that checking a VM or a NIC does not format the names of
/// all its fields that turn out fine (a site file may have 100,000 VMs).
trait Field {
    fn name(self) -> String;
}

impl Field for String {
    fn name(self) -> String {
        self
    }
}

impl Field for &str {
    fn name(self) -> String {
        self.to_string()
    }
}

impl<F: FnOnce() -> String> Field for F {
    fn name(self) -> String {
        self()
    }
}

/// What a name refers to, for messages.
#[derive(Clone, Copy)]
struct Kind {
    one: &'static str,
    many: &'static str,
}

const SITE: Kind = Kind { one: "site", many: "sites" };
const HOST: Kind = Kind { one: "host", many: "hosts" };
const NETWORK: Kind = Kind { one: "network", many: "networks" };
const SUBNET: Kind = Kind { one: "subnet", many: "subnets" };
const POLICY: Kind = Kind { one: "policy", many: "policies" };
const SIZE: Kind = Kind { one: "size", many: "sizes" };
const GROUP: Kind = Kind { one: "replication group", many: "replication groups" };
const VM: Kind = Kind { one: "VM", many: "VMs" };

const DEFAULT_START: &str = "2026-01-05T08:00:00Z";
const DEFAULT_SPEED: u32 = 600;
const MAX_SPEED: i64 = 1_000_000;
const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5 * 60);
const DEFAULT_OFFLINE_TRANSFER: Duration = Duration::from_secs(24 * 3600);
const DEFAULT_RPO_THRESHOLD: Duration = Duration::from_secs(30 * 60);
const DEFAULT_BOOT_TIME: Duration = Duration::from_secs(60);
const DEFAULT_SHUTDOWN_TIME: Duration = Duration::from_secs(30);
const DEFAULT_CHANGE_RATE_KBPS: u64 = 256;

#[derive(Clone, Copy)]
enum FaultKind {
    BootFailure,
    ShutdownFailure,
    ShutdownHang,
    ReplicationStall,
}

// ---------------------------------------------------------------------------------------
// Checking: turns the document into the model, collecting every error on the way. A value
// that is wrong is reported once, where it is written; what depends on it is skipped
// rather than reported again.

struct Checker<'t> {
    text: &'t str,
    path: &'t Path,
    /// Byte offset where each line starts, to turn spans into lines quickly.
    line_starts: Vec<usize>,
    errors: Vec<SiteFileError>,
}

impl<'t> Checker<'t> {
    fn new(text: &'t str, path: &'t Path) -> Self {
        let line_starts = std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
        Checker { text, path, line_starts, errors: Vec::new() }
    }

    fn into_errors(mut self) -> SiteFileErrors {
        self.errors.sort_by_key(|e| (e.line, e.column));
        SiteFileErrors(self.errors)
    }

    /// The 1-based line of a byte offset.
    fn line_of(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|&start| start <= offset)
    }

    fn error(&mut self, span: Range<usize>, field: impl Field, message: impl Into<String>) {
        let mut start = span.start.min(self.text.len());
        while !self.text.is_char_boundary(start) {
            start -= 1;
        }
        let line = self.line_of(start);
        let line_start = self.line_starts[line - 1];
        let line_end = self.text[line_start..].find('\n').map_or(self.text.len(), |i| line_start + i);
        let end = span.end.clamp(start, line_end);
        let end = (end..=line_end).find(|&i| self.text.is_char_boundary(i)).unwrap_or(line_end);
        self.errors.push(SiteFileError {
            path: self.path.to_path_buf(),
            line,
            column: self.text[line_start..start].chars().count() + 1,
            field: field.name(),
            message: message.into(),
            source_line: self.text[line_start..line_end].trim_end_matches('\r').to_string(),
            width: self.text[start..end].chars().count().max(1),
        });
    }

    /// Parses a value, or reports why not at the value.
    fn parse<T>(
        &mut self,
        value: &Text,
        field: impl Field,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        parse(value.get_ref()).map_err(|message| self.error(value.span(), field, message)).ok()
    }

    /// Parses an optional value; absent or wrong, it is `default` (wrong is reported).
    fn parse_or<T>(
        &mut self,
        value: Option<&Text>,
        field: impl Field,
        default: T,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> T {
        match value {
            Some(value) => self.parse(value, field, parse).unwrap_or(default),
            None => default,
        }
    }

    /// Finds the item `name` refers to, or reports the unknown name with the names
    /// allowed. `scope` narrows the search for the message, e.g. ` on site "primary"`.
    fn lookup<'d, T: Named>(
        &mut self,
        catalog: &Catalog<'d, T>,
        name: &Text,
        field: impl Field,
        kind: Kind,
        scope: impl Field,
    ) -> Option<&'d T> {
        let found = catalog.get(name.get_ref());
        if found.is_none() {
            let names = list(catalog.items.iter().map(|item| item.name().get_ref().as_str()));
            let scope = scope.name();
            let whose = if scope.is_empty() { "known" } else { "its" };
            let message = format!("unknown {} {:?}{scope} ({whose} {}: {names})", kind.one, name.get_ref(), kind.many);
            self.error(name.span(), field, message);
        }
        found
    }

    /// Remembers where `key` first appeared; when it appears again, reports it here with
    /// `message(line of the first)`.
    fn once<K: Hash + Eq>(
        &mut self,
        seen: &mut HashMap<K, usize>,
        key: K,
        span: Range<usize>,
        field: impl Field,
        message: impl FnOnce(usize) -> String,
    ) {
        match seen.get(&key) {
            Some(&first) => {
                let first_line = self.line_of(first);
                self.error(span, field, message(first_line));
            }
            None => {
                seen.insert(key, span.start);
            }
        }
    }

    /// Names must be unique among `items` (within `scope`): reports each repeat.
    fn unique<T: Named>(&mut self, items: &[T], kind: Kind, scope: &str, field: impl Fn(&T) -> String) {
        let mut seen = HashMap::new();
        for item in items {
            let name = item.name();
            self.once(&mut seen, name.get_ref().as_str(), name.span(), field(item), |line| {
                format!("duplicate {} {:?}{scope}: it is already defined on line {line}", kind.one, name.get_ref())
            });
        }
    }

    fn inventory(&mut self, doc: &SiteFileDoc) -> Inventory {
        let (simulation, shutdown_timeout) =
            self.simulation(doc.simulation.as_ref().unwrap_or(&SimulationDoc::default()));
        let throttle = self.throttle(doc.throttle.as_ref().unwrap_or(&ThrottleDoc::default()));
        let sites = self.sites(&doc.sites);
        let names = Names::new(doc);
        let pairings = self.pairings(doc, &names);
        let network_mappings = self.network_mappings(doc, &names, &pairings);
        let storage_mappings = self.storage_mappings(&doc.storage_mappings);
        let policies = self.policies(&doc.policies);
        let sizes = self.sizes(&doc.sizes);
        let (vms, initial_protection) = self.vms(doc, &names, &pairings, simulation.start);
        let replication_groups = self.groups(doc, &names);
        let faults = self.faults(doc, &names, simulation.start);
        Inventory {
            simulation,
            sites,
            pairings,
            network_mappings,
            storage_mappings,
            policies,
            sizes,
            throttle,
            shutdown_timeout,
            replication_groups,
            vms,
            initial_protection,
            faults,
            index: Default::default(),
        }
    }

    fn simulation(&mut self, doc: &SimulationDoc) -> (Simulation, Duration) {
        let default_start = rfc3339(DEFAULT_START).expect("the default start is RFC 3339");
        let start = self.parse_or(doc.start.as_ref(), "simulation.start", default_start, rfc3339);
        let speed = match &doc.speed {
            Some(speed) if !(1..=MAX_SPEED).contains(speed.get_ref()) => {
                let message = format!(
                    "speed {} is outside 1 to {MAX_SPEED} (modelled milliseconds per real millisecond)",
                    speed.get_ref()
                );
                self.error(speed.span(), "simulation.speed", message);
                DEFAULT_SPEED
            }
            Some(speed) => *speed.get_ref() as u32,
            None => DEFAULT_SPEED,
        };
        let shutdown_timeout = self.parse_or(
            doc.shutdown_timeout.as_ref(),
            "simulation.shutdown_timeout",
            DEFAULT_SHUTDOWN_TIMEOUT,
            parse_duration,
        );
        (Simulation { start, speed, pace: doc.pace.unwrap_or(true) }, shutdown_timeout)
    }

    /// R15.
    fn throttle(&mut self, doc: &ThrottleDoc) -> Throttle {
        let default = Throttle::default();
        let throttle = Throttle {
            work_hours: self.parse_or(doc.work_hours.as_ref(), "throttle.work_hours", default.work_hours, parse_hours),
            work_kbps: doc.work_kbps.as_ref().map_or(default.work_kbps, |v| *v.get_ref()),
            off_hours_kbps: doc.off_hours_kbps.as_ref().map_or(default.off_hours_kbps, |v| *v.get_ref()),
            threads: doc.threads.as_ref().map_or(default.threads, |v| *v.get_ref()),
        };
        // Throttle::validate stops at the first broken limit and does not say which field
        // it is: validating each given field alone against the defaults reports them all,
        // each at its value.
        let probes = [
            (
                "work_hours",
                doc.work_hours.as_ref().map(Spanned::span),
                Throttle { work_hours: throttle.work_hours, ..default.clone() },
            ),
            (
                "work_kbps",
                doc.work_kbps.as_ref().map(Spanned::span),
                Throttle { work_kbps: throttle.work_kbps, ..default.clone() },
            ),
            (
                "off_hours_kbps",
                doc.off_hours_kbps.as_ref().map(Spanned::span),
                Throttle { off_hours_kbps: throttle.off_hours_kbps, ..default.clone() },
            ),
            (
                "threads",
                doc.threads.as_ref().map(Spanned::span),
                Throttle { threads: throttle.threads, ..default.clone() },
            ),
        ];
        for (field, span, probe) in probes {
            if let (Some(span), Err(message)) = (span, probe.validate()) {
                self.error(span, format!("throttle.{field}"), message);
            }
        }
        throttle
    }

    fn sites(&mut self, docs: &[SiteDoc]) -> Vec<Site> {
        self.unique(docs, SITE, "", |site| format!("sites.{:?}.name", site.name.get_ref()));
        docs.iter().map(|doc| self.site(doc)).collect()
    }

    fn site(&mut self, doc: &SiteDoc) -> Site {
        let name = doc.name.get_ref();
        let at = format!("sites.{name:?}");
        let kinds = [("onprem", SiteKind::OnPrem), ("cloud", SiteKind::Cloud)];
        let kind =
            self.parse(&doc.kind, format!("{at}.kind"), |s| one_of(s, "site kind", &kinds)).unwrap_or(SiteKind::OnPrem);
        let platforms = [("hyper-v", Platform::HyperV), ("vmware", Platform::Vmware), ("physical", Platform::Physical)];
        let platform = self.parse_or(doc.platform.as_ref(), format!("{at}.platform"), Platform::default(), |s| {
            one_of(s, "platform", &platforms)
        });
        if doc.hosts.is_empty() {
            let message = format!("site {name:?} needs at least one host, e.g. hosts = [\"hv-01\"]");
            self.error(doc.name.span(), format!("{at}.hosts"), message);
        }
        let on_site = format!(" on site {name:?}");
        self.unique(&doc.hosts, HOST, &on_site, |_| format!("{at}.hosts"));
        self.unique(&doc.networks, NETWORK, &on_site, |n| format!("{at}.networks.{:?}.name", n.name.get_ref()));
        Site {
            name: name.clone(),
            kind,
            platform,
            hosts: doc.hosts.iter().map(|h| h.get_ref().clone()).collect(),
            networks: doc.networks.iter().map(|network| self.network(network, &at)).collect(),
        }
    }

    fn network(&mut self, doc: &NetworkDoc, site_at: &str) -> Network {
        let name = doc.name.get_ref();
        let at = format!("{site_at}.networks.{name:?}");
        if doc.subnets.is_empty() {
            let message = format!(
                "network {name:?} needs at least one subnet ([[sites.networks.subnets]] with a name and a cidr)"
            );
            self.error(doc.name.span(), format!("{at}.subnets"), message);
        }
        self.unique(&doc.subnets, SUBNET, &format!(" in network {name:?}"), |s| {
            format!("{at}.subnets.{:?}.name", s.name.get_ref())
        });
        Network {
            name: name.clone(),
            isolated: doc.isolated,
            subnets: doc.subnets.iter().filter_map(|subnet| self.subnet(subnet, &at)).collect(),
        }
    }

    /// `None` when the CIDR is wrong (reported); the inventory is refused anyway.
    fn subnet(&mut self, doc: &SubnetDoc, network_at: &str) -> Option<Subnet> {
        let name = doc.name.get_ref();
        let at = format!("{network_at}.subnets.{name:?}");
        let cidr = self.parse(&doc.cidr, format!("{at}.cidr"), str::parse::<Ipv4Net>);
        let mut reserved = Vec::new();
        for (i, value) in doc.reserved.iter().enumerate() {
            let field = format!("{at}.reserved[{i}]");
            let Some(ip) = self.parse(value, field.clone(), parse_ipv4) else { continue };
            if let Some(cidr) = cidr
                && !cidr.contains(ip)
            {
                self.error(value.span(), field, format!("reserved address {ip} is outside subnet {name:?} ({cidr})"));
            }
            reserved.push(ip);
        }
        Some(Subnet { name: name.clone(), cidr: cidr?, reserved })
    }

    /// R13: sites exist and each is in one pairing at most.
    fn pairings(&mut self, doc: &SiteFileDoc, names: &Names) -> Vec<Pairing> {
        let mut accepted: Vec<Pairing> = Vec::new();
        for (i, pair) in doc.pairings.iter().enumerate() {
            let at = format!("pairings[{i}]");
            let source = self.lookup(&names.sites, &pair.source, format!("{at}.source"), SITE, "");
            let target = self.lookup(&names.sites, &pair.target, format!("{at}.target"), SITE, "");
            if source.is_none() || target.is_none() {
                continue;
            }
            let pairing = Pairing { source: pair.source.get_ref().clone(), target: pair.target.get_ref().clone() };
            // Checked against the pairings kept so far, so that each extra pairing is
            // reported where it is written, at the site that is already taken.
            let mut candidate = accepted.clone();
            candidate.push(pairing.clone());
            match check_pairings(&candidate) {
                Ok(()) => accepted.push(pairing),
                Err(message) => {
                    let taken = accepted.iter().any(|p| p.source == pairing.source || p.target == pairing.source);
                    let (value, end) = if taken { (&pair.source, "source") } else { (&pair.target, "target") };
                    self.error(value.span(), format!("{at}.{end}"), format!("{message} (R13)"));
                }
            }
        }
        accepted
    }

    /// R10: both ends exist, along a pairing; one mapping per source network and target site.
    fn network_mappings(&mut self, doc: &SiteFileDoc, names: &Names, pairings: &[Pairing]) -> Vec<NetworkMapping> {
        let mut mappings = Vec::new();
        let mut seen = HashMap::new();
        for (i, pair) in doc.network_mappings.iter().enumerate() {
            let at = format!("network_mappings[{i}]");
            let source = self.site_network(names, &pair.source, format!("{at}.source"));
            let target = self.site_network(names, &pair.target, format!("{at}.target"));
            let (Some((source_site, source_network)), Some((target_site, target_network))) = (source, target) else {
                continue;
            };
            if !pairings.iter().any(|p| p.source == source_site && p.target == target_site) {
                let message = format!(
                    "site {source_site:?} is not paired to replicate to site {target_site:?}, so its networks cannot be mapped there (pairings: {})",
                    list_pairings(pairings)
                );
                self.error(pair.target.span(), format!("{at}.target"), message);
            }
            let key = (source_site.to_string(), source_network.to_string(), target_site.to_string());
            self.once(&mut seen, key, pair.source.span(), format!("{at}.source"), |line| {
                format!("network {:?} is already mapped to site {target_site:?} on line {line}; map each source network once", pair.source.get_ref())
            });
            mappings.push(NetworkMapping {
                source_site: source_site.into(),
                source_network: source_network.into(),
                target_site: target_site.into(),
                target_network: target_network.into(),
            });
        }
        mappings
    }

    /// A `"site/network"` reference whose site and network exist.
    fn site_network<'d>(&mut self, names: &Names<'d>, value: &Text, field: String) -> Option<(&'d str, &'d str)> {
        let Some((site, network)) = value.get_ref().split_once('/') else {
            let message = format!("{:?} is not a \"site/network\" reference, e.g. \"primary/prod\"", value.get_ref());
            self.error(value.span(), field, message);
            return None;
        };
        let site = self.lookup(&names.sites, &Spanned::new(value.span(), site.to_string()), field.clone(), SITE, "")?;
        let scope = format!(" on site {:?}", site.name.get_ref());
        let on_site = &names.site(site).networks;
        let network =
            self.lookup(on_site, &Spanned::new(value.span(), network.to_string()), field, NETWORK, scope.as_str())?;
        Some((site.name.get_ref(), network.name.get_ref()))
    }

    /// R11: storage classifications are free names; each source is mapped once.
    fn storage_mappings(&mut self, docs: &[PairDoc]) -> Vec<StorageMapping> {
        let mut seen = HashMap::new();
        for (i, pair) in docs.iter().enumerate() {
            self.once(
                &mut seen,
                pair.source.get_ref(),
                pair.source.span(),
                format!("storage_mappings[{i}].source"),
                |line| {
                    format!(
                        "storage {:?} is already mapped on line {line}; map each classification once",
                        pair.source.get_ref()
                    )
                },
            );
        }
        docs.iter()
            .map(|pair| StorageMapping { source: pair.source.get_ref().clone(), target: pair.target.get_ref().clone() })
            .collect()
    }

    fn policies(&mut self, docs: &[PolicyDoc]) -> Vec<ReplicationPolicy> {
        self.unique(docs, POLICY, "", |p| format!("policies.{:?}.name", p.name.get_ref()));
        docs.iter().map(|doc| self.policy(doc)).collect()
    }

    fn policy(&mut self, doc: &PolicyDoc) -> ReplicationPolicy {
        let name = doc.name.get_ref();
        let at = format!("policies.{name:?}");
        let field = |f: &str| format!("{at}.{f}");
        if name == FAILBACK_POLICY_NAME {
            let message = "the policy name \"failback\" is reserved: failback replication always uses its fixed policy (R37); choose another name";
            self.error(doc.name.span(), field("name"), message);
        }
        let errors_before = self.errors.len();
        let copy_frequency =
            self.parse_or(doc.copy_frequency.as_ref(), field("copy_frequency"), CopyFrequency::default(), |s| {
                let every = parse_duration(s)?;
                CopyFrequency::from_duration(every)
                    .ok_or_else(|| PolicyError::CopyFrequency(HumanDuration(every)).to_string())
            });
        let retention = self.parse(&doc.retention, field("retention"), parse_duration).unwrap_or_default();
        let duration = |me: &mut Self, value: &Option<Text>, f: &str, default: Duration| {
            me.parse_or(value.as_ref(), field(f), default, parse_duration)
        };
        let app_consistent_every = duration(self, &doc.app_consistent, "app_consistent", Duration::ZERO);
        let rpo_threshold = duration(self, &doc.rpo_threshold, "rpo_threshold", DEFAULT_RPO_THRESHOLD);
        let tiers = [("standard", StorageTier::Standard), ("premium", StorageTier::Premium)];
        let target_storage =
            self.parse_or(doc.target_storage.as_ref(), field("target_storage"), StorageTier::default(), |s| {
                one_of(s, "storage tier", &tiers)
            });
        // R1, R3 are checked only when what they read parsed, lest a placeholder be blamed.
        let checkable = self.errors.len() == errors_before;
        let initial_replication_delay =
            duration(self, &doc.initial_replication_delay, "initial_replication_delay", Duration::ZERO);
        let transfer = duration(self, &doc.offline_transfer, "offline_transfer", DEFAULT_OFFLINE_TRANSFER);
        let methods = [("network", false), ("offline", true)];
        let offline = self.parse_or(doc.initial_replication.as_ref(), field("initial_replication"), false, |s| {
            one_of(s, "initial replication method", &methods)
        });
        let offline_fields = [
            ("export_path", &doc.export_path),
            ("import_path", &doc.import_path),
            ("offline_transfer", &doc.offline_transfer),
        ];
        let initial_replication = match (offline, &doc.initial_replication) {
            (true, Some(method)) => {
                // R4: an offline copy needs somewhere to export to and import from.
                let mut path = |f: &str, value: &Option<Text>, what: &str| match value {
                    Some(value) => value.get_ref().clone(),
                    None => {
                        let message = format!("offline initial replication needs {f}, {what}");
                        self.error(method.span(), field(f), message);
                        String::new()
                    }
                };
                InitialReplication::Offline {
                    export_path: path("export_path", &doc.export_path, "where the source exports the disks"),
                    import_path: path("import_path", &doc.import_path, "where the target imports them"),
                    transfer,
                }
            }
            _ => {
                for (f, value) in offline_fields {
                    if let Some(value) = value {
                        let message = format!(
                            "{f} applies only to offline initial replication (initial_replication = \"offline\")"
                        );
                        self.error(value.span(), field(f), message);
                    }
                }
                InitialReplication::Network
            }
        };
        let policy = ReplicationPolicy {
            name: name.clone(),
            copy_frequency,
            retention,
            app_consistent_every,
            initial_replication,
            initial_replication_delay,
            compression: doc.compression.unwrap_or(true),
            encryption_at_rest: doc.encryption.unwrap_or(false),
            target_storage,
            rpo_threshold,
        };
        if checkable && let Err(e) = policy.validate() {
            let (f, value) = match &e {
                PolicyError::CopyFrequency(_) => ("copy_frequency", doc.copy_frequency.as_ref()),
                PolicyError::ThirtySecondsToPremium => ("target_storage", doc.target_storage.as_ref()),
                PolicyError::AppConsistentFrequency(_) | PolicyError::AppConsistentNotBelowRetention { .. } => {
                    ("app_consistent", doc.app_consistent.as_ref())
                }
                PolicyError::RetentionNotHours(_) => ("retention", Some(&doc.retention)),
                PolicyError::ZeroRpoThreshold => ("rpo_threshold", doc.rpo_threshold.as_ref()),
            };
            self.error(value.unwrap_or(&doc.name).span(), field(f), e.to_string());
        }
        policy
    }

    fn sizes(&mut self, docs: &[SizeDoc]) -> Vec<TargetSize> {
        self.unique(docs, SIZE, "", |s| format!("sizes.{:?}.name", s.name.get_ref()));
        docs.iter()
            .map(|doc| {
                let max_nics = *doc.max_nics.get_ref();
                if max_nics == 0 {
                    let message = "max_nics must be at least 1: a replica has at least one NIC slot";
                    self.error(doc.max_nics.span(), format!("sizes.{:?}.max_nics", doc.name.get_ref()), message);
                }
                TargetSize { name: doc.name.get_ref().clone(), max_nics }
            })
            .collect()
    }

    fn vms(
        &mut self,
        doc: &SiteFileDoc,
        names: &Names,
        pairings: &[Pairing],
        start: Timestamp,
    ) -> (Vec<Vm>, Vec<Option<InitialProtection>>) {
        self.unique(&doc.vms, VM, "", |vm| format!("vms.{:?}.name", vm.name.get_ref()));
        // Source addresses already held, per site and subnet: two NICs cannot share one.
        let mut addresses = HashMap::new();
        doc.vms.iter().map(|vm| self.vm(names, vm, pairings, start, &mut addresses)).unzip()
    }

    fn vm<'d>(
        &mut self,
        names: &Names<'d>,
        vm: &'d VmDoc,
        pairings: &[Pairing],
        start: Timestamp,
        addresses: &mut HashMap<(&'d str, &'d str, Ipv4Addr), usize>,
    ) -> (Vm, Option<InitialProtection>) {
        let name = vm.name.get_ref();
        let at = |field: &'static str| move || format!("vms.{name:?}.{field}");
        let site = self.lookup(&names.sites, &vm.site, at("site"), SITE, "").map(|site| names.site(site));
        if let Some(site) = site {
            let scope = || format!(" on site {:?}", site.site.name.get_ref());
            self.lookup(&site.hosts, &vm.host, at("host"), HOST, scope);
        }
        let oses = [("windows", Os::Windows), ("linux", Os::Linux)];
        let os = self.parse(&vm.os, at("os"), |s| one_of(s, "OS", &oses)).unwrap_or(Os::Linux);
        if let Some(size) = &vm.size {
            self.lookup(&names.sizes, size, at("size"), SIZE, "");
        }
        let boot_time = self.parse_or(vm.boot_time.as_ref(), at("boot_time"), DEFAULT_BOOT_TIME, parse_duration);
        let shutdown_time =
            self.parse_or(vm.shutdown_time.as_ref(), at("shutdown_time"), DEFAULT_SHUTDOWN_TIME, parse_duration);

        // R6: exactly one OS disk, unique names.
        let disks: Vec<Disk> = vm
            .disks
            .as_ref()
            .map_or(&[][..], |d| d.get_ref().as_slice())
            .iter()
            .map(|d| Disk { name: d.name.clone(), size_gb: d.size_gb, os_disk: d.os })
            .collect();
        if let Err(e) = check_disks(&disks) {
            let span = vm.disks.as_ref().map_or(vm.name.span(), Spanned::span);
            self.error(span, at("disks"), e.to_string());
        }

        let mut nics = Vec::new();
        for (i, nic) in vm.nics.iter().enumerate() {
            nics.push(self.nic(site, nic, name, i, addresses));
        }

        let protection = vm.protection.as_ref().map(|p| {
            let field = |f: &'static str| move || format!("vms.{name:?}.protection.{f}");
            self.lookup(&names.policies, &p.policy, field("policy"), POLICY, "");
            if let Some(SiteNames { site, .. }) = site
                && !pairings.iter().any(|pairing| &pairing.source == site.name.get_ref())
            {
                let message = format!(
                    "VM {name:?} runs on site {:?}, which is not the source of any pairing, so it cannot be protected (pairings: {})",
                    site.name.get_ref(),
                    list_pairings(pairings)
                );
                self.error(p.policy.span(), field("policy"), message);
            }
            let excluded = p.exclude.as_ref().map_or_else(Vec::new, |e| e.get_ref().clone());
            if let (Some(exclude), Err(e)) = (&p.exclude, check_exclusions(&disks, &excluded)) {
                self.error(exclude.span(), field("exclude"), format!("{e} (R6)"));
            }
            InitialProtection {
                policy: p.policy.get_ref().clone(),
                since: self.parse_or(p.since.as_ref(), field("since"), start, |s| site_time(s, start)),
                excluded_disks: excluded,
            }
        });

        let vm = Vm {
            name: name.clone(),
            site: vm.site.get_ref().clone(),
            host: vm.host.get_ref().clone(),
            os,
            size: vm.size.as_ref().map(|s| s.get_ref().clone()),
            disks,
            nics,
            tags: vm.tags.clone(),
            dns: vm.dns.clone(),
            boot_time,
            shutdown_time,
            change_rate_bytes_per_sec: vm.change_rate_kbps.unwrap_or(DEFAULT_CHANGE_RATE_KBPS) * 1024 / 8,
            storage: vm.storage.clone(),
            replica_name: vm.replica_name.clone(),
        };
        (vm, protection)
    }

    /// A NIC's network and subnet exist on the VM's site and its address is in the subnet,
    /// not reserved and not another NIC's.
    fn nic<'d>(
        &mut self,
        site: Option<&SiteNames<'d>>,
        nic: &NicDoc,
        vm: &str,
        index: usize,
        addresses: &mut HashMap<(&'d str, &'d str, Ipv4Addr), usize>,
    ) -> Nic {
        let at = |field: &'static str| move || format!("vms.{vm:?}.nics[{index}].{field}");
        let ip = nic.ip.as_ref().and_then(|ip| self.parse(ip, at("ip"), parse_ipv4));
        let target_ip = nic.target_ip.as_ref().and_then(|ip| self.parse(ip, at("target_ip"), parse_ipv4));
        let network = site.and_then(|on_site| {
            let scope = || format!(" on site {:?}", on_site.site.name.get_ref());
            self.lookup(&on_site.networks, &nic.network, at("network"), NETWORK, scope)
        });
        let subnet = site.zip(network).and_then(|(on_site, network)| {
            let scope = || format!(" in network {:?}", network.name.get_ref());
            let subnets = &on_site.subnets[network.name.get_ref().as_str()];
            self.lookup(subnets, &nic.subnet, at("subnet"), SUBNET, scope)
        });
        if let (Some(SiteNames { site, .. }), Some(subnet), Some(ip), Some(value)) = (site, subnet, ip, &nic.ip) {
            let field = at("ip");
            // A bad CIDR was reported at the subnet.
            if let Ok(cidr) = subnet.cidr.get_ref().parse::<Ipv4Net>()
                && !cidr.contains(ip)
            {
                let message =
                    format!("ip {ip} is outside subnet {:?} ({cidr}); use an address inside it", subnet.name.get_ref());
                self.error(value.span(), field, message);
            }
            if subnet.reserved.iter().any(|r| r.get_ref().parse() == Ok(ip)) {
                let message = format!(
                    "ip {ip} is reserved in subnet {:?} for a machine drplan does not manage",
                    subnet.name.get_ref()
                );
                self.error(value.span(), field, message);
            }
            let key = (site.name.get_ref().as_str(), subnet.name.get_ref().as_str(), ip);
            self.once(addresses, key, value.span(), field, |line| {
                format!("ip {ip} is already used on line {line}; VM {vm:?} needs an address of its own")
            });
        }
        Nic { network: nic.network.get_ref().clone(), subnet: nic.subnet.get_ref().clone(), ip, target_ip }
    }

    /// R12: members exist, each in one group, all on one site, protected ones under one policy.
    fn groups(&mut self, doc: &SiteFileDoc, names: &Names) -> Vec<ReplicationGroup> {
        self.unique(&doc.replication_groups, GROUP, "", |g| format!("replication_groups.{:?}.name", g.name.get_ref()));
        let mut grouped = HashMap::new();
        for group in &doc.replication_groups {
            let name = group.name.get_ref();
            let at = format!("replication_groups.{name:?}");
            if group.vms.is_empty() {
                let message = format!("replication group {name:?} has no VMs; list its members in vms = [...]");
                self.error(group.name.span(), format!("{at}.vms"), message);
            }
            // The first member on a site, and the first protected one: the others must agree.
            let mut first_site: Option<&VmDoc> = None;
            let mut first_policy: Option<(&VmDoc, &str)> = None;
            for (i, member) in group.vms.iter().enumerate() {
                let field = format!("{at}.vms[{i}]");
                let Some(vm) = self.lookup(&names.vms, member, field.clone(), VM, "") else { continue };
                let vm_name = vm.name.get_ref();
                self.once(&mut grouped, vm_name.as_str(), member.span(), field.clone(), |line| {
                    format!(
                        "VM {vm_name:?} is already in a replication group on line {line}; a VM can be in only one group"
                    )
                });
                match first_site {
                    Some(first) if first.site.get_ref() != vm.site.get_ref() => {
                        let message = format!(
                            "VM {vm_name:?} runs on site {:?} but {:?} of the same group runs on site {:?}; a group's VMs share one site",
                            vm.site.get_ref(),
                            first.name.get_ref(),
                            first.site.get_ref()
                        );
                        self.error(member.span(), field.clone(), message);
                    }
                    Some(_) => {}
                    None => first_site = Some(vm),
                }
                let Some(protection) = &vm.protection else { continue };
                let policy = protection.policy.get_ref().as_str();
                match first_policy {
                    Some((first, first_policy)) if first_policy != policy => {
                        let message = format!(
                            "VM {vm_name:?} is protected with policy {policy:?} but {:?} of the same group with {first_policy:?}; a group's protected VMs share one policy",
                            first.name.get_ref()
                        );
                        self.error(member.span(), field, message);
                    }
                    Some(_) => {}
                    None => first_policy = Some((vm, policy)),
                }
            }
        }
        doc.replication_groups
            .iter()
            .map(|g| ReplicationGroup {
                name: g.name.get_ref().clone(),
                vms: g.vms.iter().map(|v| v.get_ref().clone()).collect(),
            })
            .collect()
    }

    fn faults(&mut self, doc: &SiteFileDoc, names: &Names, start: Timestamp) -> Vec<Fault> {
        let kinds = [
            ("boot-failure", FaultKind::BootFailure),
            ("shutdown-failure", FaultKind::ShutdownFailure),
            ("shutdown-hang", FaultKind::ShutdownHang),
            ("replication-stall", FaultKind::ReplicationStall),
        ];
        let mut faults = Vec::new();
        for (i, fault) in doc.faults.iter().enumerate() {
            let at = format!("faults[{i}]");
            let kind = self.parse(&fault.kind, format!("{at}.kind"), |s| one_of(s, "fault kind", &kinds));
            self.lookup(&names.vms, &fault.vm, format!("{at}.vm"), VM, "");
            let vm = fault.vm.get_ref().clone();
            let fault = match (kind, &fault.at) {
                (None, _) => continue,
                (Some(FaultKind::ReplicationStall), Some(when)) => {
                    let Some(at) = self.parse(when, format!("{at}.at"), |s| site_time(s, start)) else { continue };
                    Fault::ReplicationStall { vm, at }
                }
                (Some(FaultKind::ReplicationStall), None) => {
                    let message = "a replication-stall fault needs at = \"<site time>\", when the stall begins, e.g. at = \"+2h\"";
                    self.error(fault.kind.span(), format!("{at}.at"), message);
                    continue;
                }
                (Some(_), Some(when)) => {
                    let message =
                        format!("at applies only to replication-stall faults, not to {:?}", fault.kind.get_ref());
                    self.error(when.span(), format!("{at}.at"), message);
                    continue;
                }
                (Some(FaultKind::BootFailure), None) => Fault::BootFailure { vm },
                (Some(FaultKind::ShutdownFailure), None) => Fault::ShutdownFailure { vm },
                (Some(FaultKind::ShutdownHang), None) => Fault::ShutdownHang { vm },
            };
            faults.push(fault);
        }
        faults
    }
}

// ---------------------------------------------------------------------------------------
// Value parsers: each error says what is wrong and what is allowed.

/// One of a fixed set of words.
fn one_of<T: Copy>(text: &str, what: &str, options: &[(&str, T)]) -> Result<T, String> {
    options.iter().find(|(word, _)| *word == text).map(|(_, value)| *value).ok_or_else(|| {
        let words: Vec<&str> = options.iter().map(|(word, _)| *word).collect();
        let (last, rest) = words.split_last().expect("options are never empty");
        format!("unknown {what} {text:?}: use {} or {last}", rest.join(", "))
    })
}

fn parse_ipv4(text: &str) -> Result<Ipv4Addr, String> {
    text.parse().map_err(|_| format!("{text:?} is not an IPv4 address, e.g. \"10.1.1.10\""))
}

fn rfc3339(text: &str) -> Result<Timestamp, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| format!("bad time {text:?}: write an RFC 3339 time, e.g. \"{DEFAULT_START}\""))
}

/// A site time: RFC 3339, or a signed offset from the simulation start (`-3d`, `+2h`, `0`).
fn site_time(text: &str, start: Timestamp) -> Result<Timestamp, String> {
    if let Ok(time) = rfc3339(text) {
        return Ok(time);
    }
    let (sign, magnitude) = match text.split_at_checked(1) {
        Some(("-", rest)) => (-1, rest),
        Some(("+", rest)) => (1, rest),
        _ if text == "0" => (1, text),
        _ => {
            return Err(format!(
                "bad site time {text:?}: write an RFC 3339 time (\"{DEFAULT_START}\") or a signed offset from simulation.start (\"-3d\", \"+2h\", \"0\")"
            ));
        }
    };
    let offset = delta(parse_duration(magnitude)?);
    let time = if sign < 0 { start.checked_sub_signed(offset) } else { start.checked_add_signed(offset) };
    time.ok_or_else(|| format!("site time {text:?} is too far from the simulation start"))
}

/// Work hours `"08-18"`: UTC hours, start before end.
fn parse_hours(text: &str) -> Result<(u32, u32), String> {
    text.split_once('-')
        .and_then(|(start, end)| Some((start.trim().parse().ok()?, end.trim().parse().ok()?)))
        .ok_or_else(|| format!("bad work hours {text:?}: write start-end hours of the day in UTC, e.g. \"08-18\""))
}

/// Names for a message, the first few only: an inventory may hold thousands of VMs.
fn list_pairings(pairings: &[Pairing]) -> String {
    list(pairings.iter().map(|p| format!("{} -> {}", p.source, p.target)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTOSO: &str = include_str!("../../plans/contoso/site.toml");

    /// The smallest valid site file; tests append to it or replace pieces of it.
    const MINIMAL: &str = r#"
[[sites]]
name = "primary"
kind = "onprem"
hosts = ["h1"]
  [[sites.networks]]
  name = "prod"
    [[sites.networks.subnets]]
    name = "web"
    cidr = "10.1.3.0/24"

[[sites]]
name = "secondary"
kind = "onprem"
hosts = ["h2"]
  [[sites.networks]]
  name = "prod-dr"
    [[sites.networks.subnets]]
    name = "web"
    cidr = "10.2.3.0/24"

[[pairings]]
source = "primary"
target = "secondary"

[[policies]]
name = "gold"
retention = "24h"

[[vms]]
name = "web01"
site = "primary"
host = "h1"
os = "linux"
disks = [{ name = "os", size_gb = 30, os = true }, { name = "data", size_gb = 10 }]
nics = [{ network = "prod", subnet = "web", ip = "10.1.3.21" }]
protection = { policy = "gold" }
"#;

    fn parse(text: &str) -> Result<Inventory, SiteFileErrors> {
        parse_site(text, Path::new("site.toml"))
    }

    fn with(extra: &str) -> String {
        format!("{MINIMAL}{extra}")
    }

    fn replacing(from: &str, to: &str) -> String {
        assert!(MINIMAL.contains(from), "{from:?} is not in the minimal site");
        MINIMAL.replacen(from, to, 1)
    }

    /// The only error of a file that must fail.
    fn error(text: &str) -> SiteFileError {
        let errors = parse(text).expect_err("the site file should be refused").0;
        assert_eq!(errors.len(), 1, "expected one error, got:\n{}", SiteFileErrors(errors.clone()));
        errors.into_iter().next().unwrap()
    }

    /// The 1-based line of the first line containing `needle`.
    fn line_of(text: &str, needle: &str) -> usize {
        text.lines().position(|l| l.contains(needle)).expect("needle in text") + 1
    }

    fn last_line_of(text: &str, needle: &str) -> usize {
        text.lines().enumerate().filter(|(_, l)| l.contains(needle)).last().expect("needle in text").0 + 1
    }

    fn assert_error(text: &str, needle: &str, phrase: &str) -> SiteFileError {
        let e = error(text);
        assert_eq!(e.line, line_of(text, needle), "{e}");
        assert!(e.message.contains(phrase), "{e}");
        e
    }

    #[test]
    fn the_minimal_site_parses_with_defaults() {
        let inv = parse(MINIMAL).unwrap();
        assert_eq!(inv.simulation.speed, 600);
        assert_eq!(inv.shutdown_timeout, Duration::from_secs(300));
        assert_eq!(inv.throttle, Throttle::default());
        let gold = &inv.policies[0];
        assert_eq!(gold.copy_frequency, CopyFrequency::Minutes5);
        assert_eq!(gold.rpo_threshold, Duration::from_secs(1800));
        assert!(gold.compression && !gold.encryption_at_rest);
        let vm = &inv.vms[0];
        assert_eq!(vm.boot_time, Duration::from_secs(60));
        assert_eq!(vm.change_rate_bytes_per_sec, 256 * 1024 / 8);
        assert_eq!(inv.initial_protection[0].as_ref().unwrap().since, inv.simulation.start);
    }

    #[test]
    fn simulations_are_paced_unless_the_file_says_pace_false() {
        assert!(parse(MINIMAL).unwrap().simulation.pace);
        let unpaced = parse(&format!("[simulation]\npace = false\n{MINIMAL}")).unwrap();
        assert!(!unpaced.simulation.pace);
        let e = error(&format!("[simulation]\npace = \"no\"\n{MINIMAL}"));
        assert_eq!(e.line, 2, "{e}");
    }

    #[test]
    fn the_contoso_site_parses() {
        let inv = parse_site(CONTOSO, Path::new("plans/contoso/site.toml")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(inv.vms.len(), 9);
        assert_eq!(inv.policies.len(), 2);
        assert_eq!(inv.replication_groups.len(), 1);
        assert_eq!(inv.replication_groups[0].vms, ["sql01", "sql02"]);
        let sql01 = inv.vms.iter().position(|v| v.name == "sql01").unwrap();
        let protection = inv.initial_protection[sql01].as_ref().expect("sql01 is protected");
        assert_eq!(protection.policy, "gold");
        assert_eq!(protection.since, rfc3339("2026-01-03T08:00:00Z").unwrap());
        let report01 = inv.vms.iter().position(|v| v.name == "report01").unwrap();
        assert!(inv.initial_protection[report01].is_none());
        assert!(inv.site("secondary").unwrap().network("test-bubble").unwrap().isolated);
        assert!(inv.faults.is_empty());
    }

    #[test]
    fn toml_syntax_error_is_reported_at_its_line() {
        let text = with("[throttle]\nthreads = = 4\n");
        let e = error(&text);
        assert_eq!(e.line, line_of(&text, "= ="));
        assert!(e.field.is_empty());
    }

    #[test]
    fn unknown_field_is_refused() {
        let text = replacing("os = \"linux\"", "os = \"linux\"\ncolour = \"blue\"");
        assert_error(&text, "colour", "unknown field `colour`");
    }

    #[test]
    fn r10_nic_on_unknown_network_is_reported_with_line() {
        let text = replacing("network = \"prod\"", "network = \"prod-x\"");
        let e = assert_error(&text, "prod-x", "unknown network \"prod-x\" on site \"primary\" (its networks: prod)");
        assert_eq!(e.field, "vms.\"web01\".nics[0].network");
        assert_eq!(e.width, "\"prod-x\"".len());
        let rendered = e.to_string();
        assert!(
            rendered.starts_with(&format!("site.toml:{}:{}: vms.\"web01\".nics[0].network: unknown", e.line, e.column))
        );
        assert!(rendered.ends_with(&format!("{}^^^^^^^^", " ".repeat(e.column - 1))), "{rendered}");
    }

    #[test]
    fn hosts_networks_and_subnets_are_those_of_the_vms_site_and_network() {
        let text = replacing("host = \"h1\"", "host = \"h2\"");
        assert_error(&text, "host = \"h2\"", "unknown host \"h2\" on site \"primary\" (its hosts: h1)");
        let text = replacing("network = \"prod\", subnet = \"web\"", "network = \"prod-dr\", subnet = \"web\"");
        assert_error(&text, "prod-dr\", subnet", "unknown network \"prod-dr\" on site \"primary\"");
        // A subnet "db" exists on the VM's site, but in another network than its NIC's.
        let backup = "  [[sites.networks]]\n  name = \"backup\"\n    [[sites.networks.subnets]]\n    name = \"db\"\n    cidr = \"10.1.9.0/24\"\n";
        let text = replacing("subnet = \"web\", ip", "subnet = \"db\", ip").replacen(
            "  [[sites.networks]]\n  name = \"prod\"\n",
            &format!("{backup}  [[sites.networks]]\n  name = \"prod\"\n"),
            1,
        );
        assert_error(&text, "subnet = \"db\", ip", "unknown subnet \"db\" in network \"prod\" (its subnets: web)");
    }

    #[test]
    fn r6_two_os_disks_reported_with_line() {
        let text = replacing("size_gb = 10 }", "size_gb = 10, os = true }");
        assert_error(&text, "size_gb = 10", "exactly one OS disk");
    }

    #[test]
    fn r6_excluding_the_os_disk_is_refused() {
        let text = replacing("{ policy = \"gold\" }", "{ policy = \"gold\", exclude = [\"os\"] }");
        assert_error(&text, "exclude", "only data disks can be excluded");
    }

    #[test]
    fn r3_app_consistent_not_below_retention_reported_with_line() {
        let text = replacing("retention = \"24h\"", "retention = \"4h\"\napp_consistent = \"4h\"");
        let e = assert_error(&text, "app_consistent", "must be less than the retention window");
        assert_eq!(e.field, "policies.\"gold\".app_consistent");
    }

    #[test]
    fn r1_thirty_seconds_to_premium_reported_with_line() {
        let text = replacing(
            "retention = \"24h\"",
            "retention = \"24h\"\ncopy_frequency = \"30s\"\ntarget_storage = \"premium\"",
        );
        assert_error(&text, "premium", "not offered when the target storage is premium");
    }

    #[test]
    fn r1_copy_frequency_must_be_30s_5m_or_15m() {
        let text = replacing("retention = \"24h\"", "retention = \"24h\"\ncopy_frequency = \"10m\"");
        assert_error(&text, "10m", "copy frequency must be 30s, 5m or 15m, not 10m");
    }

    #[test]
    fn r13_site_in_two_pairings_is_refused() {
        let text = with(
            "[[sites]]\nname = \"third\"\nkind = \"cloud\"\nhosts = [\"c1\"]\n\n[[pairings]]\nsource = \"primary\"\ntarget = \"third\"\n",
        );
        let e = error(&text);
        assert_eq!(e.line, last_line_of(&text, "source = \"primary\""), "{e}");
        assert!(e.message.contains("already in a protection pairing"), "{e}");
        assert_eq!(e.field, "pairings[1].source");
    }

    #[test]
    fn r15_throttle_out_of_range_is_refused() {
        let text = with("[throttle]\nwork_kbps = 100\nthreads = 64\n");
        let errors = parse(&text).unwrap_err().0;
        assert_eq!(errors.len(), 2, "{}", SiteFileErrors(errors.clone()));
        assert_eq!(errors[0].line, line_of(&text, "work_kbps"));
        assert!(errors[0].message.contains("outside 512 Kbps to 102 Mbps"), "{}", errors[0]);
        assert_eq!(errors[1].line, line_of(&text, "threads"));
        assert!(errors[1].message.contains("1 to 32"), "{}", errors[1]);
    }

    #[test]
    fn ip_outside_its_subnet_is_refused() {
        let text = replacing("ip = \"10.1.3.21\"", "ip = \"10.9.3.21\"");
        assert_error(&text, "10.9.3.21", "outside subnet \"web\" (10.1.3.0/24)");
    }

    #[test]
    fn several_errors_are_reported_together_in_line_order() {
        let text = with("\n[[faults]]\nkind = \"boot-failure\"\nvm = \"nobody\"\n")
            .replacen("host = \"h1\"", "host = \"h9\"", 1)
            .replacen("kind = \"onprem\"", "kind = \"on-prem\"", 1);
        let errors = parse(&text).unwrap_err();
        let found: Vec<(usize, &str)> = errors.0.iter().map(|e| (e.line, e.field.as_str())).collect();
        assert_eq!(
            found,
            [
                (line_of(&text, "on-prem"), "sites.\"primary\".kind"),
                (line_of(&text, "h9"), "vms.\"web01\".host"),
                (line_of(&text, "nobody"), "faults[0].vm"),
            ]
        );
        assert!(errors.to_string().ends_with("3 errors in site.toml"), "{errors}");
    }

    #[test]
    fn a_stall_fault_needs_a_time() {
        let text = with("\n[[faults]]\nkind = \"replication-stall\"\nvm = \"web01\"\n");
        assert_error(&text, "replication-stall", "needs at = ");
        let ok = with("\n[[faults]]\nkind = \"replication-stall\"\nvm = \"web01\"\nat = \"+2h\"\n");
        let inv = parse(&ok).unwrap();
        let start = inv.simulation.start;
        assert_eq!(
            inv.faults,
            [Fault::ReplicationStall { vm: "web01".into(), at: start + chrono::TimeDelta::hours(2) }]
        );
    }

    #[test]
    fn duplicate_names_point_at_the_second() {
        let text = with("\n[[policies]]\nname = \"gold\"\nretention = \"48h\"\n");
        let e = error(&text);
        assert_eq!(e.line, last_line_of(&text, "name = \"gold\""), "{e}");
        assert!(e.message.contains(&format!(
            "duplicate policy \"gold\": it is already defined on line {}",
            line_of(&text, "name = \"gold\"")
        )));
    }
}
