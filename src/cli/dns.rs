//! The DNS of a real run, from the plan folder's `drplan.toml` `[dns]` (R50): which
//! updater a run gets, what refuses a run before it starts, and the read-only readiness
//! checks of a preflight. The TSIG secrets are read here, from their file or environment
//! variable, and never shown.
//!
//! What a run of each kind gets:
//! - no `[dns]` section: a plan that changes DNS is refused before the run exists;
//!   otherwise any DNS call the plan makes after all fails, saying why. Nothing is ever
//!   recorded as done without being done.
//! - `mode = "record"`: a recorder; the changes are listed in the run, marked as recorded
//!   and not sent.
//! - a drill (R30): only the test zone's own server, its names moved under the test zone
//!   (`fabric::dns::TestZone`). No test zone: refused like a missing section.
//! - any other run: the production zones' servers.
//!
//! Any key that cannot be used (secret missing, key file for another key or algorithm)
//! refuses the run before it starts.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;

use super::error::CliError;
use crate::fabric::dns::readiness::check_server;
use crate::fabric::dns::rfc2136::{DnsServer, Rfc2136, TsigKey};
use crate::fabric::dns::{DnsMode, DnsUpdater, ReadinessCheck, RecordingDns, Refusing, TestZone, in_zone, key_secret};
use crate::model::names::Count;
use crate::model::{FailoverKind, Inventory};
use crate::plan::config::{CONFIG_FILE, DnsConfig, DnsKeyConfig, DnsServerConfig, SecretSource, parse_config};
use crate::plan::{Plan, ResolvedPlan, UsedVms};

/// How long one DNS exchange may take before it counts as a timeout; also the bound on
/// each server's readiness check.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Whether a plan changes DNS, as far as can be known before it runs: `plan.update_dns()`
/// with VMs that have DNS names, or scripts that import the `dns` module (the names they
/// pass cannot be known beforehand).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsUse {
    Updates,
    NoUpdates,
}

impl DnsUse {
    pub fn when(updates: bool) -> Self {
        if updates { DnsUse::Updates } else { DnsUse::NoUpdates }
    }
}

/// The DNS names the plan changes, as far as its scripts show before it runs: with
/// `plan.update_dns()` every DNS name of every VM of the plan (from the site file); those
/// of the VMs an action points at their replica (`dns::point_vm(vm)`); and the names
/// written as literals (`dns::point("www.contoso.test", ip)`). Empty: no DNS change seen.
pub fn changed_dns_names(plan: &Plan, resolved: &ResolvedPlan, inventory: &Inventory) -> Vec<String> {
    let written = &plan.written;
    let pointed = written.address_uses.iter().filter(|used| used.updates_dns).flat_map(|used| match &used.vms {
        UsedVms::EachOfGroup(index) => resolved.groups.get(*index).map(|g| g.vms.clone()).unwrap_or_default(),
        UsedVms::Named(vm) => vec![vm.clone()],
    });
    let vms: BTreeSet<String> = if plan.update_dns {
        resolved.groups.iter().flat_map(|group| group.vms.iter().cloned()).collect()
    } else {
        pointed.collect()
    };
    let of_vms = vms.iter().filter_map(|vm| inventory.vm(vm)).flat_map(|vm| vm.dns.iter().cloned());
    of_vms.chain(written.dns_names.iter().map(|name| name.name.clone())).collect()
}

/// The updater for a run of kind `kind` of the plan at `plan_path` (see the module doc);
/// `Err` when the run must not start: the plan changes DNS and there is no `[dns]`
/// section, it is a drill with no test zone, or a key of a server it would use cannot be
/// used. Reads the configuration and the secrets, sends nothing.
pub fn updater(plan_path: &Path, kind: FailoverKind, dns_use: DnsUse) -> Result<Arc<dyn DnsUpdater>, CliError> {
    let folder = Folder::load(plan_path)?;
    Ok(match folder.decide(kind, dns_use) {
        Decision::Refuse(why) => return Err(CliError::Refused(why)),
        Decision::FailEachCall(why) => Arc::new(Refusing::new(why)),
        Decision::Record => Arc::new(RecordingDns::default()),
        Decision::Send { servers, drill } => {
            let dns = folder.dns.as_ref().expect("servers come from [dns]");
            let servers: Vec<DnsServer> = servers
                .iter()
                .map(|server| folder.server(dns, server).map_err(CliError::Refused))
                .collect::<Result<_, _>>()?;
            let rfc2136 = Arc::new(Rfc2136::new(servers));
            match drill {
                Some(Drill { production, test_zone }) => Arc::new(TestZone::new(rfc2136, production, test_zone)),
                None => rfc2136,
            }
        }
    })
}

/// The read-only DNS checks of a preflight for a run of kind `kind` of the plan at
/// `plan_path`, which updates `names` (and, if `dns_use` says so, names its scripts
/// compute). One line for the configuration, one per key and one per server the run
/// would use: each server is asked for its zone's SOA, signed with its key (only
/// queries, at most 5 s per server, all servers at once). For a drill, the test zone's
/// server alone, and whether it serves the test zone.
pub async fn readiness(plan_path: &Path, kind: FailoverKind, dns_use: DnsUse, names: &[String]) -> Vec<ReadinessCheck> {
    let folder = match Folder::load(plan_path) {
        Ok(folder) => folder,
        Err(error) => return vec![ReadinessCheck::problem("DNS configuration", error.to_string())],
    };
    let subject = format!("DNS configuration ({})", folder.config.display());
    let (servers, drill) = match folder.decide(kind, dns_use) {
        Decision::Refuse(why) => return vec![ReadinessCheck::problem(subject, why)],
        Decision::FailEachCall(_) => {
            return vec![ReadinessCheck::ok(subject, "the plan changes no DNS records: nothing to check")];
        }
        Decision::Record => {
            let message = "record mode ([dns] mode = \"record\"): the run records its DNS changes and sends none";
            return vec![ReadinessCheck::ok(subject, message)];
        }
        Decision::Send { .. } if dns_use == DnsUse::NoUpdates => {
            return vec![ReadinessCheck::ok(subject, "the plan changes no DNS records: nothing to check")];
        }
        Decision::Send { servers, drill } => (servers, drill),
    };
    let dns = folder.dns.as_ref().expect("servers come from [dns]");
    let mut checks = Vec::new();
    let servers = match &drill {
        Some(drill) => {
            checks.push(names_in_test_zone(drill, names));
            servers
        }
        None => {
            let (used, check) = servers_of_names(&servers, names);
            checks.push(check);
            used
        }
    };
    let mut keys_checked: Vec<&str> = Vec::new();
    let mut probes = Vec::new();
    for server in servers {
        let resolved = folder.server(dns, server);
        if let Some(key) = &server.key
            && !keys_checked.contains(&key.as_str())
        {
            keys_checked.push(key);
            checks.push(key_check(dns, key, &resolved));
        }
        let zone = if drill.is_some() { "test zone" } else { "zone" };
        let subject = format!("server {} for {zone} {}", server.address, server.zone);
        probes.push(async move {
            match resolved {
                Ok(resolved) => ReadinessCheck { subject, ..check_server(&resolved).await },
                Err(_) => {
                    ReadinessCheck::problem(subject, "not asked: its TSIG key cannot be used (see the key's line)")
                }
            }
        });
    }
    checks.extend(join_all(probes).await);
    checks
}

/// The line of key `name`: its secret present and usable, or why not.
fn key_check(dns: &DnsConfig, name: &str, resolved: &Result<DnsServer, String>) -> ReadinessCheck {
    let subject = format!("TSIG key {name}");
    match resolved.as_ref().map(|server| server.key.as_ref()) {
        Ok(Some(key)) => {
            let from = dns.keys.iter().find(|k| k.name == name).map(|k| secret_from(&k.secret)).unwrap_or_default();
            ReadinessCheck::ok(subject, format!("the secret is present ({from}); {}", key.algorithm))
        }
        Ok(None) => ReadinessCheck::ok(subject, "unused"),
        Err(why) => ReadinessCheck::problem(subject, why.clone()),
    }
}

/// Where a secret comes from, in words: "$DRPLAN_TSIG_SECRET", "file keys/drplan.key".
fn secret_from(source: &SecretSource) -> String {
    match source {
        SecretSource::File(path) => format!("file {}", path.display()),
        SecretSource::Env(var) => format!("${var}"),
    }
}

/// The line about a drill's names: each must move into the test zone.
fn names_in_test_zone(drill: &Drill, names: &[String]) -> ReadinessCheck {
    let subject = format!("DNS names in test zone {}", drill.test_zone);
    if names.is_empty() {
        let message = "computed by the plan's scripts: each must be in a production zone to move under the test zone";
        return ReadinessCheck::ok(subject, message);
    }
    let test = TestZone::new(Arc::new(RecordingDns::default()), drill.production.clone(), drill.test_zone.clone());
    let outside: Vec<&str> = names.iter().filter(|name| test.rename(name).is_err()).map(String::as_str).collect();
    if outside.is_empty() {
        let count = Count::numbered("name", names.len());
        return ReadinessCheck::ok(subject, format!("{count} of the plan move under the test zone"));
    }
    ReadinessCheck::problem(
        subject,
        format!(
            "{} in no production zone ({}), so a drill cannot move them under the test zone: add a [[dns.servers]] entry for their zone",
            listed(&outside),
            drill.production.join(", ")
        ),
    )
}

/// The servers whose zones hold `names` (all of them when no name is known), and the line
/// about names in no configured zone.
fn servers_of_names<'c>(
    servers: &[&'c DnsServerConfig],
    names: &[String],
) -> (Vec<&'c DnsServerConfig>, ReadinessCheck) {
    let subject = "DNS names of the plan";
    if names.is_empty() {
        let message = "computed by the plan's scripts: every configured zone's server is checked";
        return (servers.to_vec(), ReadinessCheck::ok(subject, message));
    }
    let mut used: Vec<&DnsServerConfig> = Vec::new();
    let mut outside: Vec<&str> = Vec::new();
    for name in names {
        let bare = name.trim_end_matches('.').to_ascii_lowercase();
        let zone = servers.iter().filter(|s| in_zone(&bare, &s.zone)).max_by_key(|s| s.zone.len());
        match zone {
            Some(server) if !used.iter().any(|u| std::ptr::eq(*u, *server)) => used.push(server),
            Some(_) => {}
            None => outside.push(name),
        }
    }
    let check = if outside.is_empty() {
        let zones: Vec<&str> = used.iter().map(|s| s.zone.as_str()).collect();
        ReadinessCheck::ok(subject, format!("{}, in {}", Count::numbered("name", names.len()), zones.join(", ")))
    } else {
        let zones: Vec<&str> = servers.iter().map(|s| s.zone.as_str()).collect();
        let zones = if zones.is_empty() { "none".to_string() } else { zones.join(", ") };
        ReadinessCheck::problem(
            subject,
            format!(
                "{} in none of the configured zones ({zones}): add a [[dns.servers]] entry for their zone",
                listed(&outside)
            ),
        )
    };
    (used, check)
}

/// "a.contoso.test is", "a and b are", "a, b and 3 more are".
fn listed(names: &[&str]) -> String {
    match names {
        [] => "no name is".into(),
        [one] => format!("{one} is"),
        [first, second] => format!("{first} and {second} are"),
        [first, second, rest @ ..] => format!("{first}, {second} and {} more are", rest.len()),
    }
}

/// The plan folder's configuration file and its `[dns]`.
struct Folder {
    dir: PathBuf,
    config: PathBuf,
    dns: Option<DnsConfig>,
}

/// What a run does with DNS, decided from the configuration alone.
enum Decision<'c> {
    /// The run must not start.
    Refuse(String),
    /// The run may start, but any DNS call fails: the plan was not expected to make one.
    FailEachCall(String),
    /// Record mode.
    Record,
    /// RFC 2136 to these servers; for a drill, the test zone's alone.
    Send { servers: Vec<&'c DnsServerConfig>, drill: Option<Drill> },
}

/// What a drill moves its names from, and to.
struct Drill {
    production: Vec<String>,
    test_zone: String,
}

impl Folder {
    fn load(plan_path: &Path) -> Result<Folder, CliError> {
        let dir = plan_path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let config = dir.join(CONFIG_FILE);
        let dns = match crate::store::text_file::read(&config, crate::store::text_file::PLAN_CONFIG) {
            Ok(text) => parse_config(&text, &config).map_err(|e| CliError::Usage(e.to_string()))?.dns,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => return Err(CliError::Read { path: config, source }),
        };
        Ok(Folder { dir, config, dns })
    }

    fn decide(&self, kind: FailoverKind, dns_use: DnsUse) -> Decision<'_> {
        let config = self.config.display();
        let refuse_or_fail = |why: String| match dns_use {
            DnsUse::Updates => Decision::Refuse(why),
            DnsUse::NoUpdates => Decision::FailEachCall(why),
        };
        let Some(dns) = &self.dns else {
            return refuse_or_fail(format!(
                "{config} has no [dns] section, so this run cannot change DNS: name each zone's server in [[dns.servers]], or set mode = \"record\" under [dns] to record the changes without sending them"
            ));
        };
        if dns.mode == DnsMode::Record {
            return Decision::Record;
        }
        let production: Vec<&DnsServerConfig> =
            dns.servers.iter().filter(|s| Some(&s.zone) != dns.test_zone.as_ref()).collect();
        if kind != FailoverKind::Test {
            return Decision::Send { servers: production, drill: None };
        }
        match (&dns.test_zone, dns.test_zone_server()) {
            (Some(test_zone), Some(server)) => Decision::Send {
                servers: vec![server],
                drill: Some(Drill {
                    production: production.iter().map(|s| s.zone.clone()).collect(),
                    test_zone: test_zone.clone(),
                }),
            },
            _ => refuse_or_fail(format!(
                "{config}: a drill never changes production DNS (R30), and [dns] has no test_zone: add test_zone = \"drill.<zone>\" and a [[dns.servers]] entry of its own for it"
            )),
        }
    }

    /// `server` ready to use: its key's secret read, or why it cannot be.
    fn server(&self, dns: &DnsConfig, server: &DnsServerConfig) -> Result<DnsServer, String> {
        let key = match &server.key {
            None => None,
            Some(name) => {
                let key = dns.keys.iter().find(|k| &k.name == name).expect("the config checks key names");
                Some(tsig_key(key, &self.dir, &self.config)?)
            }
        };
        Ok(DnsServer {
            address: server.address,
            zone: format!("{}.", server.zone),
            key,
            ttl: dns.ttl,
            timeout: TIMEOUT,
        })
    }
}

/// The TSIG key `key` of the configuration, its secret read from its file or variable;
/// or why it cannot be used. Errors say where the secret was looked for, never what it is.
fn tsig_key(key: &DnsKeyConfig, folder: &Path, config: &Path) -> Result<TsigKey, String> {
    let name = &key.name;
    let (text, from) = match &key.secret {
        SecretSource::File(file) => {
            let path = folder.join(file);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                format!(
                    "{}: the secret of TSIG key {name} cannot be read from {}: {e}",
                    config.display(),
                    path.display()
                )
            })?;
            (text, path.display().to_string())
        }
        SecretSource::Env(var) => {
            let text = std::env::var(var).map_err(|_| {
                format!("{}: the secret of TSIG key {name} is to come from ${var}, which is not set", config.display())
            })?;
            (text, format!("${var}"))
        }
    };
    let secret = key_secret(&text, name, key.algorithm)
        .map_err(|e| format!("{}: the secret of TSIG key {name} cannot be used: {from}: {e}", config.display()))?;
    TsigKey::from_base64(name, secret.algorithm, &secret.base64)
        .map_err(|_| format!("{}: the secret of TSIG key {name} (from {from}) is not valid base64", config.display()))
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    /// A plan folder with `config` as its drplan.toml (none when `None`); the plan's path.
    fn folder(config: Option<&str>) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        if let Some(config) = config {
            std::fs::write(dir.path().join(CONFIG_FILE), config).unwrap();
        }
        let plan = dir.path().join("plan.rhai");
        (dir, plan)
    }

    const PRODUCTION: &str = "[[dns.servers]]\nzone = \"contoso.test\"\naddress = \"127.0.0.1:1\"\nkey = \"prod\"\n[[dns.keys]]\nname = \"prod\"\nsecret_env = \"DRPLAN_TEST_UNSET_PRODUCTION_SECRET\"\n";
    const TEST_ZONE: &str = "[[dns.servers]]\nzone = \"drill.contoso.test\"\naddress = \"127.0.0.1:1\"\nkey = \"drill\"\n[[dns.keys]]\nname = \"drill\"\nsecret_file = \"drill.key\"\n";

    fn refusal(result: Result<Arc<dyn DnsUpdater>, CliError>) -> String {
        match result {
            Err(CliError::Refused(why)) => why,
            Err(other) => panic!("refused for another reason: {other}"),
            Ok(_) => panic!("not refused"),
        }
    }

    #[tokio::test]
    async fn without_a_dns_section_a_plan_that_changes_dns_is_refused_and_any_other_call_fails() {
        for config in [None, Some("[hooks]\nscripts = []\n")] {
            let (_dir, plan) = folder(config);
            for kind in [FailoverKind::Planned, FailoverKind::Test] {
                let why = refusal(updater(&plan, kind, DnsUse::Updates));
                assert!(why.ends_with("drplan.toml has no [dns] section, so this run cannot change DNS: name each zone's server in [[dns.servers]], or set mode = \"record\" under [dns] to record the changes without sending them"), "{why}");
                // A plan not expected to change DNS runs; a DNS call it makes after all fails.
                let dns = updater(&plan, kind, DnsUse::NoUpdates).unwrap();
                let error = dns.point("web01.contoso.test", Ipv4Addr::new(10, 2, 3, 21)).await.unwrap_err();
                assert!(error.to_string().contains("has no [dns] section"), "{error}");
            }
        }
    }

    #[tokio::test]
    async fn record_mode_records_and_says_so() {
        let (_dir, plan) = folder(Some("[dns]\nmode = \"record\"\n"));
        for kind in [FailoverKind::Planned, FailoverKind::Test] {
            let dns = updater(&plan, kind, DnsUse::Updates).unwrap();
            assert_eq!(dns.mode(), DnsMode::Record);
            dns.point("web01.contoso.test", Ipv4Addr::new(10, 2, 3, 21)).await.unwrap();
            dns.verify("web01.contoso.test", Ipv4Addr::new(10, 2, 3, 21)).await.unwrap();
        }
    }

    #[test]
    fn r30_a_drill_needs_a_test_zone_and_only_the_test_zones_key() {
        let (_dir, plan) = folder(Some(&format!("[dns]\n{PRODUCTION}")));
        let why = refusal(updater(&plan, FailoverKind::Test, DnsUse::Updates));
        assert!(why.ends_with("drplan.toml: a drill never changes production DNS (R30), and [dns] has no test_zone: add test_zone = \"drill.<zone>\" and a [[dns.servers]] entry of its own for it"), "{why}");
        assert!(updater(&plan, FailoverKind::Test, DnsUse::NoUpdates).is_ok(), "fails at a DNS call, if any");

        // A drill reads the test zone's key only: production's secret is not set here.
        let (dir, plan) = folder(Some(&format!("[dns]\ntest_zone = \"drill.contoso.test\"\n{PRODUCTION}{TEST_ZONE}")));
        std::fs::write(dir.path().join("drill.key"), "c2VjcmV0LWJ5dGVz\n").unwrap();
        assert_eq!(updater(&plan, FailoverKind::Test, DnsUse::Updates).unwrap().mode(), DnsMode::Update);
        let why = refusal(updater(&plan, FailoverKind::Planned, DnsUse::Updates));
        assert!(why.contains("$DRPLAN_TEST_UNSET_PRODUCTION_SECRET, which is not set"), "{why}");
        // And production runs do not need the test zone's.
        std::fs::remove_file(dir.path().join("drill.key")).unwrap();
        let why = refusal(updater(&plan, FailoverKind::Test, DnsUse::Updates));
        assert!(why.contains("the secret of TSIG key drill cannot be read from"), "{why}");
    }

    use crate::fabric::dns::TsigAlgorithm;

    fn key_config(name: &str, algorithm: Option<TsigAlgorithm>, secret: SecretSource) -> DnsKeyConfig {
        DnsKeyConfig { name: name.into(), algorithm, secret }
    }

    #[test]
    fn secrets_come_from_files_or_the_environment_and_are_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("k.secret"),
            "key \"k\" { algorithm hmac-sha512; secret \"c2VjcmV0LWJ5dGVz\"; };\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("bare.secret"), "  c2VjcmV0LWJ5dGVz\n").unwrap();
        let config = Path::new("drplan.toml");
        let from_file = tsig_key(&key_config("k", None, SecretSource::File("k.secret".into())), dir.path(), config);
        assert_eq!(
            from_file.unwrap(),
            TsigKey::new("k", TsigAlgorithm::HmacSha512, b"secret-bytes".to_vec()),
            "tsig-keygen's file: its secret and algorithm"
        );
        let bare = tsig_key(&key_config("k", None, SecretSource::File("bare.secret".into())), dir.path(), config);
        assert_eq!(bare.unwrap().algorithm, TsigAlgorithm::HmacSha256);
        let unset = key_config("k", None, SecretSource::Env("DRPLAN_TEST_UNSET_SECRET".into()));
        let err = tsig_key(&unset, dir.path(), config).unwrap_err();
        assert!(err.contains("$DRPLAN_TEST_UNSET_SECRET, which is not set"), "{err}");
    }

    #[test]
    fn a_key_file_for_another_key_or_algorithm_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("dr.key"),
            "key \"dr-secret\" {\n\talgorithm hmac-sha256;\n\tsecret \"c2VjcmV0LWJ5dGVz\";\n};\n",
        )
        .unwrap();
        let config = Path::new("plans/drplan.toml");
        let file = || SecretSource::File("dr.key".into());
        let named = tsig_key(&key_config("dr-secret", None, file()), dir.path(), config).unwrap();
        assert_eq!(named.secret, b"secret-bytes", "a key named dr-secret is read by the grammar");

        let other = tsig_key(&key_config("drplan", None, file()), dir.path(), config).unwrap_err();
        assert!(other.starts_with("plans/drplan.toml: the secret of TSIG key drplan cannot be used: "), "{other}");
        assert!(other.ends_with("dr.key: it holds the key \"dr-secret\", not \"drplan\": the key name in drplan.toml and in the key file must be the same (the server knows the key by it)"), "{other}");
        let algorithm = tsig_key(&key_config("dr-secret", Some(TsigAlgorithm::HmacSha512), file()), dir.path(), config)
            .unwrap_err();
        assert!(algorithm.contains("is hmac-sha256 in the key file but hmac-sha512 in drplan.toml"), "{algorithm}");
        for error in [other, algorithm] {
            assert!(!error.contains("c2VjcmV0"), "the secret leaks: {error}");
        }
    }
}
