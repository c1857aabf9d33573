//! R30: what a drill does to DNS. Its names move under the test zone
//! (`web01.contoso.test` becomes `web01.drill.contoso.test`), and the updater it wraps
//! reaches only the test zone's own server: a drill cannot write to a production zone
//! whatever its names, and what it reports (errors included) names the records it
//! actually changed and queried.

use std::net::Ipv4Addr;
use std::sync::Arc;

use async_trait::async_trait;

use super::{DnsError, DnsMode, DnsUpdater, in_zone};

/// R30: a test failover's DNS names move under the test zone: `web01.contoso.test`
/// becomes `web01.drill.contoso.test`.
pub struct TestZone {
    /// The updater of the test zone's server alone.
    inner: Arc<dyn DnsUpdater>,
    /// The production zones (without final dots), whose names move.
    production: Vec<String>,
    test_zone: String,
}

impl TestZone {
    /// `inner` should reach the test zone's server only: whatever the names, nothing can
    /// then be sent to a production zone's.
    pub fn new(inner: Arc<dyn DnsUpdater>, production: Vec<String>, test_zone: impl Into<String>) -> Self {
        let bare = |zone: &str| zone.trim_end_matches('.').to_ascii_lowercase();
        let production = production.iter().map(|zone| bare(zone)).collect();
        TestZone { inner, production, test_zone: bare(&test_zone.into()) }
    }

    /// The name a drill uses for `name`: the same under the test zone (a name already in
    /// the test zone stays); an error for a name in no production zone.
    pub fn rename(&self, name: &str) -> Result<String, DnsError> {
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

    /// Verifies the test zone's record, and names it when it does not hold `ip`.
    async fn verify(&self, name: &str, ip: Ipv4Addr) -> Result<(), DnsError> {
        self.inner.verify(&self.rename(name)?, ip).await
    }

    async fn verify_cname(&self, name: &str, target: &str) -> Result<(), DnsError> {
        self.inner.verify_cname(&self.rename(name)?, &self.rename_target(target)).await
    }

    fn mode(&self) -> DnsMode {
        self.inner.mode()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::fabric::dns::RecordingDns;

    #[tokio::test]
    async fn r30_a_test_failover_updates_only_the_test_zone() {
        let recorder = Arc::new(RecordingDns::default());
        let test = TestZone::new(recorder.clone(), vec!["contoso.test".into()], "drill.contoso.test");
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
    }

    fn drill(inner: Arc<dyn DnsUpdater>) -> TestZone {
        TestZone::new(inner, vec!["contoso.test.".into(), "fabrikam.test".into()], "Drill.Contoso.Test.")
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
    async fn r30_a_drills_verify_error_names_the_test_zones_record() {
        let recorder = Arc::new(RecordingDns::default());
        let test = drill(recorder.clone());
        let ip: Ipv4Addr = "192.168.103.12".parse().unwrap();
        let error = test.verify("db00012.contoso.test", ip).await.unwrap_err();
        assert_eq!(error.to_string(), "db00012.drill.contoso.test resolves to nothing, not 192.168.103.12");
        test.point("db00012.contoso.test", ip).await.unwrap();
        test.verify("db00012.contoso.test", ip).await.unwrap();

        let error = test.verify_cname("www.contoso.test", "lb-dr.contoso.test").await.unwrap_err();
        assert_eq!(error.to_string(), "www.drill.contoso.test has no CNAME (expected one to lb-dr.drill.contoso.test)");
        test.point_cname("www.contoso.test", "lb-dr.contoso.test").await.unwrap();
        test.verify_cname("www.contoso.test", "lb-dr.contoso.test").await.unwrap();
    }
}
