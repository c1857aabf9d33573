//! The DNS updater of a real run, from the plan folder's `drplan.toml` `[dns]` (R50): the
//! TSIG secrets are read here, from their file or environment variable, and never shown.
//! A test failover never touches production DNS (R30): its names move under the test
//! zone, or, with no test zone configured, its updates are refused.

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::error::CliError;
use crate::fabric::dns::rfc2136::{DnsServer, Rfc2136, TsigKey};
use crate::fabric::dns::{DnsError, DnsUpdater, RecordingDns, key_secret};
use crate::model::FailoverKind;
use crate::plan::config::{CONFIG_FILE, DnsConfig, DnsKeyConfig, SecretSource, in_zone, parse_config};

/// How long one DNS exchange may take before it counts as a timeout.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The updater for a run of the plan at `plan_path`: RFC 2136 to the configured servers,
/// or, without `[dns]`, a recorder (the run's events still list every update).
pub fn updater(plan_path: &Path, kind: FailoverKind) -> Result<Arc<dyn DnsUpdater>, CliError> {
    let folder = plan_path.parent().unwrap_or(Path::new("."));
    let path = folder.join(CONFIG_FILE);
    let config = match crate::store::text_file::read(&path, crate::store::text_file::PLAN_CONFIG) {
        Ok(text) => parse_config(&text, &path).map_err(|e| CliError::Usage(e.to_string()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Arc::new(RecordingDns::default())),
        Err(source) => return Err(CliError::Read { path, source }),
    };
    let Some(dns) = config.dns else { return Ok(Arc::new(RecordingDns::default())) };
    let servers = servers(&dns, folder, &path)?;
    let production: Vec<String> = dns.servers.iter().map(|s| s.zone.clone()).collect();
    let rfc2136: Arc<dyn DnsUpdater> = Arc::new(Rfc2136::new(servers));
    Ok(match (kind, dns.test_zone) {
        (FailoverKind::Test, Some(test_zone)) => Arc::new(TestZone { inner: rfc2136, production, test_zone }),
        (FailoverKind::Test, None) => Arc::new(NoProductionDns),
        _ => rfc2136,
    })
}

fn servers(dns: &DnsConfig, folder: &Path, config: &Path) -> Result<Vec<DnsServer>, CliError> {
    dns.servers
        .iter()
        .map(|server| {
            let key = match &server.key {
                None => None,
                Some(name) => {
                    let key = dns.keys.iter().find(|k| &k.name == name).expect("the config checks key names");
                    Some(tsig_key(key, folder, config).map_err(CliError::Refused)?)
                }
            };
            Ok(DnsServer {
                address: server.address,
                zone: format!("{}.", server.zone),
                key,
                ttl: dns.ttl,
                timeout: TIMEOUT,
            })
        })
        .collect()
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

/// R30: a test failover's DNS names move under the test zone: `web01.contoso.test`
/// becomes `web01.drill.contoso.test`.
struct TestZone {
    inner: Arc<dyn DnsUpdater>,
    production: Vec<String>,
    test_zone: String,
}

impl TestZone {
    fn rename(&self, name: &str) -> Result<String, DnsError> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if in_zone(&name, &self.test_zone) {
            return Ok(name);
        }
        let zone = self.production.iter().filter(|z| in_zone(&name, z)).max_by_key(|z| z.len());
        match zone {
            Some(zone) if name.len() > zone.len() => {
                Ok(format!("{}.{}", &name[..name.len() - zone.len() - 1], self.test_zone))
            }
            _ => Err(DnsError::UnknownZone { name, zones: self.production.join(", ") }),
        }
    }

    /// A CNAME's target: into the test zone when it is in a production zone (the apex too),
    /// as it is otherwise (a name of another organisation, or already in the test zone).
    fn rename_target(&self, target: &str) -> String {
        let target = target.trim_end_matches('.').to_ascii_lowercase();
        if in_zone(&target, &self.test_zone) {
            return target;
        }
        match self.production.iter().filter(|z| in_zone(&target, z)).max_by_key(|z| z.len()) {
            Some(zone) if target.len() > zone.len() => {
                format!("{}.{}", &target[..target.len() - zone.len() - 1], self.test_zone)
            }
            Some(_) => self.test_zone.clone(),
            None => target,
        }
    }

    /// A CNAME target as the test zone serves it, in the terms of the production name
    /// `name` that was looked up: a target in the test zone stands for the same name in
    /// `name`'s production zone (`lb-dr.drill.contoso.test` for `lb-dr.contoso.test`).
    /// A target that was in another production zone reads as if in `name`'s: the test zone
    /// cannot tell them apart.
    fn unrename_target(&self, name: &str, target: String) -> String {
        let bare = target.trim_end_matches('.').to_ascii_lowercase();
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if !in_zone(&bare, &self.test_zone) || in_zone(&name, &self.test_zone) {
            return target;
        }
        let Some(zone) = self.production.iter().filter(|z| in_zone(&name, z)).max_by_key(|z| z.len()) else {
            return target;
        };
        if bare.len() == self.test_zone.len() {
            zone.clone()
        } else {
            format!("{}.{zone}", &bare[..bare.len() - self.test_zone.len() - 1])
        }
    }
}

#[async_trait]
impl DnsUpdater for TestZone {
    async fn point(&self, name: &str, ip: Ipv4Addr) -> Result<(), DnsError> {
        self.inner.point(&self.rename(name)?, ip).await
    }

    async fn lookup(&self, name: &str) -> Result<Vec<Ipv4Addr>, DnsError> {
        self.inner.lookup(&self.rename(name)?).await
    }

    async fn point_cname(&self, name: &str, target: &str) -> Result<(), DnsError> {
        self.inner.point_cname(&self.rename(name)?, &self.rename_target(target)).await
    }

    async fn lookup_cname(&self, name: &str) -> Result<Option<String>, DnsError> {
        let found = self.inner.lookup_cname(&self.rename(name)?).await?;
        Ok(found.map(|target| self.unrename_target(name, target)))
    }
}

/// R30: with no test zone, a test failover's DNS updates are refused, never sent.
struct NoProductionDns;

impl NoProductionDns {
    fn refuse(name: &str) -> DnsError {
        DnsError::Invalid {
            name: name.into(),
            detail: "a test failover never updates production DNS: give drplan.toml's [dns] a test_zone".into(),
        }
    }
}

#[async_trait]
impl DnsUpdater for NoProductionDns {
    async fn point(&self, name: &str, _ip: Ipv4Addr) -> Result<(), DnsError> {
        Err(Self::refuse(name))
    }

    async fn lookup(&self, name: &str) -> Result<Vec<Ipv4Addr>, DnsError> {
        Err(Self::refuse(name))
    }

    async fn point_cname(&self, name: &str, _target: &str) -> Result<(), DnsError> {
        Err(Self::refuse(name))
    }

    async fn lookup_cname(&self, name: &str) -> Result<Option<String>, DnsError> {
        Err(Self::refuse(name))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::fabric::dns::TsigAlgorithm;

    #[tokio::test]
    async fn r30_a_test_failover_updates_only_the_test_zone() {
        let recorder = Arc::new(RecordingDns::default());
        let test = TestZone {
            inner: recorder.clone(),
            production: vec!["contoso.test".into()],
            test_zone: "drill.contoso.test".into(),
        };
        test.point("web01.contoso.test", "192.168.103.2".parse().unwrap()).await.unwrap();
        assert_eq!(recorder.records().keys().collect::<Vec<_>>(), ["web01.drill.contoso.test"]);
        assert_eq!(
            test.lookup("WEB01.contoso.test.").await.unwrap(),
            vec!["192.168.103.2".parse::<Ipv4Addr>().unwrap()]
        );
        assert!(matches!(
            test.point("web01.example.org", "10.0.0.1".parse().unwrap()).await,
            Err(DnsError::UnknownZone { .. })
        ));
        let err = NoProductionDns.point("web01.contoso.test", "10.0.0.1".parse().unwrap()).await.unwrap_err();
        assert!(err.to_string().contains("never updates production DNS"), "{err}");
    }

    fn drill(inner: Arc<dyn DnsUpdater>) -> TestZone {
        TestZone {
            inner,
            production: vec!["contoso.test".into(), "fabrikam.test".into()],
            test_zone: "drill.contoso.test".into(),
        }
    }

    #[tokio::test]
    async fn r30_a_test_failovers_cname_and_its_target_move_to_the_test_zone() {
        let recorder = Arc::new(RecordingDns::default());
        let test = drill(recorder.clone());
        test.point_cname("WWW.contoso.test.", "lb-dr.contoso.test.").await.unwrap();
        assert_eq!(
            recorder.cnames(),
            BTreeMap::from([("www.drill.contoso.test".to_string(), "lb-dr.drill.contoso.test".to_string())])
        );
        // Read back in production terms, so that verifying the plan's own names works.
        assert_eq!(test.lookup_cname("www.contoso.test").await.unwrap().as_deref(), Some("lb-dr.contoso.test"));
        assert_eq!(recorder.lookup_cname("www.contoso.test").await.unwrap(), None, "production untouched");

        // A target outside the production zones stays as it is; one in the test zone too.
        test.point_cname("shop.contoso.test", "shop.cdn.example.net").await.unwrap();
        test.point_cname("api.fabrikam.test", "lb.drill.contoso.test").await.unwrap();
        test.point_cname("apex.contoso.test", "contoso.test").await.unwrap();
        let cnames = recorder.cnames();
        assert_eq!(cnames["shop.drill.contoso.test"], "shop.cdn.example.net");
        assert_eq!(cnames["api.drill.contoso.test"], "lb.drill.contoso.test");
        assert_eq!(cnames["apex.drill.contoso.test"], "drill.contoso.test", "a zone's apex maps to the test zone's");
        assert_eq!(test.lookup_cname("shop.contoso.test").await.unwrap().as_deref(), Some("shop.cdn.example.net"));
        assert_eq!(test.lookup_cname("apex.contoso.test").await.unwrap().as_deref(), Some("contoso.test"));
        // A name of the test zone itself is not renamed, nor is its answer.
        assert_eq!(
            test.lookup_cname("www.drill.contoso.test").await.unwrap().as_deref(),
            Some("lb-dr.drill.contoso.test")
        );

        assert!(matches!(
            test.point_cname("www.example.org", "lb-dr.contoso.test").await,
            Err(DnsError::UnknownZone { .. })
        ));
        assert!(recorder.cnames().keys().all(|name| name.ends_with(".drill.contoso.test")), "{:?}", recorder.cnames());
    }

    #[tokio::test]
    async fn r30_without_a_test_zone_cname_flips_are_refused() {
        for error in [
            NoProductionDns.point_cname("www.contoso.test", "lb-dr.contoso.test").await.unwrap_err(),
            NoProductionDns.lookup_cname("www.contoso.test").await.unwrap_err(),
        ] {
            assert!(error.to_string().contains("never updates production DNS"), "{error}");
            assert!(error.to_string().contains("www.contoso.test"), "{error}");
        }
    }

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
