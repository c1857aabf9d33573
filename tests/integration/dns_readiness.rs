//! The DNS half of `drplan preflight` (DESIGN.md, "Preflight, then act"):
//! `cli::dns::readiness` against a real BIND 9 on loopback. Each problem an operator can
//! have is one clear line: a wrong secret, a wrong key name, a wrong algorithm, a key
//! file for another key, a missing secret, an unreachable server, a zone the server does
//! not serve (REFUSED), a drill's test zone not served. Only queries are sent: the zones'
//! serials never move.

use std::path::PathBuf;

use drplan::cli::dns::{DnsUse, readiness};
use drplan::fabric::dns::{CheckStatus, ReadinessCheck};
use drplan::model::FailoverKind;

use crate::bind::{self, Bind, KEY_NAME};

/// A plan folder with `config` as its drplan.toml and `files` beside it.
struct Folder {
    dir: tempfile::TempDir,
}

impl Folder {
    fn new(config: &str, files: &[(&str, &str)]) -> Folder {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("drplan.toml"), config).unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        Folder { dir }
    }

    fn plan(&self) -> PathBuf {
        self.dir.path().join("plan.rhai")
    }

    async fn checks(&self, kind: FailoverKind, names: &[&str]) -> Vec<ReadinessCheck> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        readiness(&self.plan(), kind, DnsUse::Updates, &names).await
    }
}

/// Production's entry and the test zone's (`test_zone`, on the same server), signed
/// with key `key_name`, whose secret is the file `tsig.secret`; `extra` goes in the key.
fn config(address: &str, test_zone: &str, key_name: &str, extra: &str) -> String {
    format!(
        "[dns]\ntest_zone = \"{test_zone}\"\n[[dns.servers]]\nzone = \"contoso.test\"\naddress = \"{address}\"\nkey = \"{key_name}\"\n[[dns.servers]]\nzone = \"{test_zone}\"\naddress = \"{address}\"\nkey = \"{key_name}\"\n[[dns.keys]]\nname = \"{key_name}\"\nsecret_file = \"tsig.secret\"\n{extra}"
    )
}

fn good(bind: &Bind) -> Folder {
    Folder::new(
        &config(&bind.address().to_string(), "drill.contoso.test", KEY_NAME, ""),
        &[("tsig.secret", &bind.secret)],
    )
}

/// The one line whose subject starts with `subject`.
fn line<'c>(checks: &'c [ReadinessCheck], subject: &str) -> &'c ReadinessCheck {
    let mut found = checks.iter().filter(|c| c.subject.starts_with(subject));
    let line = found.next().unwrap_or_else(|| panic!("no line for {subject:?} in {checks:#?}"));
    assert!(found.next().is_none(), "two lines for {subject:?} in {checks:#?}");
    line
}

fn problem<'c>(checks: &'c [ReadinessCheck], subject: &str) -> &'c str {
    let line = line(checks, subject);
    assert_eq!(line.status, CheckStatus::Problem, "{line}");
    &line.message
}

#[tokio::test]
async fn a_ready_server_key_and_zone_are_one_ok_line_each_and_only_queries_are_sent() {
    let bind = Bind::start();
    let (serial, test_serial) = (bind.soa_serial(), test_zone_serial(&bind));
    let folder = good(&bind);
    let checks = folder.checks(FailoverKind::Planned, &["web01.contoso.test", "WEB02.contoso.test."]).await;
    assert!(checks.iter().all(ReadinessCheck::is_ready), "{checks:#?}");
    let server = format!("server {} for zone contoso.test", bind.address());
    assert_eq!(
        checks.iter().map(|c| c.subject.as_str()).collect::<Vec<_>>(),
        ["DNS names of the plan", "TSIG key drplan-key", server.as_str()]
    );
    assert_eq!(line(&checks, "DNS names").message, "2 names, in contoso.test");
    assert_eq!(line(&checks, "TSIG key").message, "the secret is present (file tsig.secret); hmac-sha256");
    assert_eq!(
        line(&checks, "server").message,
        "serves zone contoso.test and accepts key drplan-key (hmac-sha256): its signed answer verifies"
    );
    // For --format json: each line is {subject, status, message}.
    let json = serde_json::to_value(&checks).unwrap();
    assert_eq!(json[2]["status"], "ok");
    assert_eq!(json[2]["subject"], server);

    // A drill checks the test zone's server alone, and that it serves the test zone.
    let drill = folder.checks(FailoverKind::Test, &["web01.contoso.test"]).await;
    assert!(drill.iter().all(ReadinessCheck::is_ready), "{drill:#?}");
    let test_server = line(&drill, "server");
    assert_eq!(test_server.subject, format!("server {} for test zone drill.contoso.test", bind.address()));
    assert!(
        test_server.message.starts_with("serves zone drill.contoso.test and accepts key drplan-key"),
        "{test_server}"
    );
    assert_eq!(line(&drill, "DNS names").message, "1 name of the plan move under the test zone");

    assert_eq!((bind.soa_serial(), test_zone_serial(&bind)), (serial, test_serial), "nothing was updated");
    assert!(!format!("{checks:?}{drill:?}").contains(bind.secret.as_str()), "a secret was shown");
}

fn test_zone_serial(bind: &Bind) -> String {
    bind.dig(&["+short", bind::TEST_ZONE, "SOA"])
}

#[tokio::test]
async fn a_wrong_secret_a_wrong_key_name_and_a_wrong_algorithm_are_told_apart() {
    let bind = Bind::start();
    let address = bind.address().to_string();
    let wrong_secret =
        Folder::new(&config(&address, "drill.contoso.test", KEY_NAME, ""), &[("tsig.secret", &bind::random_secret())]);
    let checks = wrong_secret.checks(FailoverKind::Planned, &["web01.contoso.test"]).await;
    assert_eq!(
        problem(&checks, "server"),
        "rejects the signature of key drplan-key (hmac-sha256) (BADSIG): it knows the key, but its secret differs from the one configured"
    );

    let wrong_name =
        Folder::new(&config(&address, "drill.contoso.test", "not-drplan-key", ""), &[("tsig.secret", &bind.secret)]);
    let checks = wrong_name.checks(FailoverKind::Planned, &["web01.contoso.test"]).await;
    assert_eq!(
        problem(&checks, "server"),
        "does not know a key named not-drplan-key (BADKEY): the key name in drplan.toml (and its key file) differs from the server's"
    );

    let wrong_algorithm = Folder::new(
        &config(&address, "drill.contoso.test", KEY_NAME, "algorithm = \"hmac-sha512\"\n"),
        &[("tsig.secret", &bind.secret)],
    );
    let checks = wrong_algorithm.checks(FailoverKind::Planned, &["web01.contoso.test"]).await;
    assert_eq!(
        problem(&checks, "server"),
        "does not know key drplan-key as hmac-sha512 (BADKEY), but knows it as hmac-sha256: the algorithm in drplan.toml (or in the key file) differs from the server's"
    );
}

#[tokio::test]
async fn a_key_file_for_another_key_or_a_missing_secret_is_the_keys_line_and_nothing_is_asked() {
    let bind = Bind::start();
    let address = bind.address().to_string();
    let other_key = Folder::new(
        &config(&address, "drill.contoso.test", KEY_NAME, ""),
        &[("tsig.secret", &bind.dr_secret_key_file)],
    );
    let checks = other_key.checks(FailoverKind::Planned, &["web01.contoso.test"]).await;
    let key = problem(&checks, "TSIG key drplan-key");
    assert!(key.contains("tsig.secret: it holds the key \"dr-secret\", not \"drplan-key\""), "{key}");
    assert_eq!(problem(&checks, "server"), "not asked: its TSIG key cannot be used (see the key's line)");

    let missing = Folder::new(&config(&address, "drill.contoso.test", KEY_NAME, ""), &[]);
    let checks = missing.checks(FailoverKind::Test, &["web01.contoso.test"]).await;
    let key = problem(&checks, "TSIG key drplan-key");
    assert!(key.contains("the secret of TSIG key drplan-key cannot be read from"), "{key}");
    assert!(key.contains("tsig.secret"), "{key}");
    let unset = config(&address, "drill.contoso.test", KEY_NAME, "")
        .replace("secret_file = \"tsig.secret\"", "secret_env = \"DRPLAN_TEST_READINESS_UNSET\"");
    let checks = Folder::new(&unset, &[]).checks(FailoverKind::Planned, &["web01.contoso.test"]).await;
    assert!(problem(&checks, "TSIG key").ends_with("$DRPLAN_TEST_READINESS_UNSET, which is not set"), "{checks:#?}");
}

#[tokio::test]
async fn an_unreachable_server_a_refused_zone_and_an_unserved_test_zone_are_each_one_line() {
    let bind = Bind::start();
    let port = bind::free_port();
    let nowhere = Folder::new(
        &config(&format!("127.0.0.1:{port}"), "drill.contoso.test", KEY_NAME, ""),
        &[("tsig.secret", &bind.secret)],
    );
    let checks = nowhere.checks(FailoverKind::Planned, &["web01.contoso.test"]).await;
    assert_eq!(problem(&checks, "server"), "unreachable: connection refused, nothing listens there");

    // A zone the server does not serve: BIND answers REFUSED.
    let unserved = Folder::new(
        &config(&bind.address().to_string(), "drill.contoso.test", KEY_NAME, "")
            .replace("zone = \"contoso.test\"", "zone = \"fabrikam.test\""),
        &[("tsig.secret", &bind.secret)],
    );
    let checks = unserved.checks(FailoverKind::Planned, &["web01.fabrikam.test"]).await;
    assert_eq!(
        problem(&checks, "server"),
        "REFUSED the query: it does not serve zone fabrikam.test (or does not answer this host); check the address and the server's zones"
    );

    // A drill whose test zone's entry names a server without that zone: the name lies in
    // the server's contoso.test, which answers for it (NXDOMAIN) instead of refusing.
    let drill2 = Folder::new(
        &config(&bind.address().to_string(), "drill2.contoso.test", KEY_NAME, ""),
        &[("tsig.secret", &bind.secret)],
    );
    let checks = drill2.checks(FailoverKind::Test, &["web01.contoso.test"]).await;
    let test_zone = line(&checks, "server");
    assert_eq!(test_zone.subject, format!("server {} for test zone drill2.contoso.test", bind.address()));
    assert_eq!(
        test_zone.message,
        "does not serve zone drill2.contoso.test: it is a name in its zone contoso.test, not a zone of its own; add the zone to the server (updates would otherwise be refused)"
    );
}

#[tokio::test]
async fn names_outside_the_zones_and_the_configuration_itself_are_lines_too() {
    let bind = Bind::start();
    let folder = good(&bind);
    let checks = folder.checks(FailoverKind::Planned, &["web01.contoso.test", "a.example.org", "b.example.org"]).await;
    assert_eq!(
        problem(&checks, "DNS names of the plan"),
        "a.example.org and b.example.org are in none of the configured zones (contoso.test): add a [[dns.servers]] entry for their zone"
    );
    let drill = folder.checks(FailoverKind::Test, &["a.example.org"]).await;
    assert!(
        problem(&drill, "DNS names in test zone drill.contoso.test")
            .starts_with("a.example.org is in no production zone")
    );

    // No [dns]: a problem when the plan changes DNS, nothing to check when it does not.
    let none = Folder::new("[hooks]\nscripts = []\n", &[]);
    let checks = none.checks(FailoverKind::Planned, &["web01.contoso.test"]).await;
    assert_eq!(checks.len(), 1, "{checks:#?}");
    assert!(problem(&checks, "DNS configuration").contains("has no [dns] section"), "{checks:#?}");
    let quiet = readiness(&none.plan(), FailoverKind::Planned, DnsUse::NoUpdates, &[]).await;
    assert!(quiet.iter().all(ReadinessCheck::is_ready), "{quiet:#?}");

    let record = Folder::new("[dns]\nmode = \"record\"\n", &[]);
    let checks = record.checks(FailoverKind::Planned, &["web01.contoso.test"]).await;
    assert_eq!(checks.len(), 1);
    assert!(line(&checks, "DNS configuration").message.starts_with("record mode"), "{checks:#?}");

    // A drill with no test zone is refused: one line that says why.
    let no_test_zone = Folder::new(
        &format!("[dns]\n[[dns.servers]]\nzone = \"contoso.test\"\naddress = \"{}\"\n", bind.address()),
        &[],
    );
    let checks = no_test_zone.checks(FailoverKind::Test, &["web01.contoso.test"]).await;
    assert!(
        problem(&checks, "DNS configuration").contains("a drill never changes production DNS (R30)"),
        "{checks:#?}"
    );
}
