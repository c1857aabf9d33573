//! R50 against a real authoritative server: `Rfc2136` updates a BIND 9 started on a
//! loopback port (see `bind/mod.rs`), and every change is read back both through
//! `lookup` and with `dig`, another program's resolver query. These tests fail, never
//! skip, when BIND is not installed.

use std::net::{Ipv4Addr, Ipv6Addr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::bind::{self, Bind, LB_DR, LB_PRIMARY, WEB01_SOURCE_IP, WWW};
use drplan::fabric::dns::{DnsError, DnsServer, DnsUpdater, Rfc2136, TsigAlgorithm, TsigKey};
use hickory_proto::rr::{RData, RecordType};

const WEB01: &str = "web01.contoso.test";
const FAILOVER_IP: Ipv4Addr = Ipv4Addr::new(10, 2, 3, 21);

fn source_ip() -> Ipv4Addr {
    WEB01_SOURCE_IP.parse().unwrap()
}

fn updater(bind: &Bind) -> Rfc2136 {
    Rfc2136::new(vec![bind.server(300)])
}

/// `dig +short NAME TYPE`, one answer per line.
fn dig_short(bind: &Bind, name: &str, rtype: &str) -> Vec<String> {
    bind.dig(&["+short", name, rtype]).lines().map(str::to_string).collect()
}

#[tokio::test]
async fn r50_point_replaces_the_a_record_and_a_real_query_reads_it_back() {
    let bind = Bind::start();
    let dns = updater(&bind);
    assert_eq!(dns.lookup(WEB01).await.unwrap(), vec![source_ip()]);

    dns.point(WEB01, FAILOVER_IP).await.unwrap();

    assert_eq!(dns.lookup(WEB01).await.unwrap(), vec![FAILOVER_IP], "the old address is gone, the new one is served");
    assert_eq!(dig_short(&bind, WEB01, "A"), vec!["10.2.3.21"], "dig reads the same from the server");
    // Names are case-insensitive and may be written fully qualified.
    assert_eq!(dns.lookup("WEB01.Contoso.Test.").await.unwrap(), vec![FAILOVER_IP]);

    // A name the zone did not have is created.
    dns.point("app02.contoso.test", Ipv4Addr::new(10, 2, 3, 40)).await.unwrap();
    assert_eq!(dig_short(&bind, "app02.contoso.test", "A"), vec!["10.2.3.40"]);
}

#[tokio::test]
async fn replace_with_a_prerequisite_applies_only_while_the_old_address_still_holds() {
    let bind = Bind::start();
    let dns = updater(&bind);

    dns.replace(WEB01, Some(source_ip()), FAILOVER_IP).await.unwrap();
    assert_eq!(dns.lookup(WEB01).await.unwrap(), vec![FAILOVER_IP]);

    // Someone else's view is stale now: it still expects the source address.
    let serial = bind.soa_serial();
    let error = dns.replace(WEB01, Some(source_ip()), Ipv4Addr::new(10, 9, 9, 9)).await.unwrap_err();
    assert!(matches!(error, DnsError::Changed { .. }), "{error:?}");
    let text = error.to_string();
    assert!(text.contains("changed by someone else"), "{text}");
    assert!(text.contains(WEB01) && text.contains(&bind.address().to_string()) && text.contains("10.1.3.21"), "{text}");

    assert_eq!(dns.lookup(WEB01).await.unwrap(), vec![FAILOVER_IP], "the record is untouched");
    assert_eq!(dig_short(&bind, WEB01, "A"), vec!["10.2.3.21"]);
    assert_eq!(bind.soa_serial(), serial, "a failed prerequisite changes nothing");

    // A prerequisite on a name that has no A records fails the same way.
    let error = dns.replace("ghost.contoso.test", Some(source_ip()), FAILOVER_IP).await.unwrap_err();
    assert!(matches!(error, DnsError::Changed { .. }), "{error:?}");
    assert!(dns.lookup("ghost.contoso.test").await.unwrap().is_empty());
}

#[tokio::test]
async fn the_record_gets_the_configured_ttl() {
    let bind = Bind::start();
    let dns = Rfc2136::new(vec![bind.server(120)]);
    dns.point(WEB01, FAILOVER_IP).await.unwrap();

    // dig +noall +answer: "web01.contoso.test.	120	IN	A	10.2.3.21"
    let answer = bind.dig(&["+noall", "+answer", WEB01, "A"]);
    let fields: Vec<&str> = answer.split_whitespace().collect();
    assert_eq!(fields, ["web01.contoso.test.", "120", "IN", "A", "10.2.3.21"], "{answer}");

    let response = bind.query(WEB01, RecordType::A, Duration::from_secs(2)).unwrap();
    let ttls: Vec<u32> = response.answers.iter().map(|r| r.ttl).collect();
    assert_eq!(ttls, [120]);
}

#[tokio::test]
async fn a_wrong_tsig_key_is_reported_as_an_authentication_failure() {
    let bind = Bind::start();
    let serial = bind.soa_serial();
    let wrong_secret = bind::random_secret();
    let wrong_keys = [
        ("wrong secret", TsigKey::from_base64(bind::KEY_NAME, TsigAlgorithm::HmacSha256, &wrong_secret).unwrap()),
        ("wrong key name", TsigKey::from_base64("not-drplan-key", TsigAlgorithm::HmacSha256, &bind.secret).unwrap()),
    ];
    for (case, key) in wrong_keys {
        let dns = Rfc2136::new(vec![bind.server(300).with_key(key)]);
        let error = dns.point(WEB01, FAILOVER_IP).await.unwrap_err();
        assert!(matches!(error, DnsError::AuthFailed { .. }), "{case}: {error:?}");
        let text = error.to_string();
        let expected =
            format!("authentication failed at {} for {WEB01}: check the TSIG key name and secret", bind.address());
        assert!(text.starts_with(&expected), "{case}: {text}");
        for secret in [&wrong_secret, &bind.secret] {
            assert!(!text.contains(secret.as_str()), "{case}: the secret leaks: {text}");
            assert!(!format!("{error:?}").contains(secret.as_str()), "{case}: the secret leaks: {error:?}");
        }
        // A reply that could not be authenticated is no answer: but the server did not apply it.
        assert_eq!(dig_short(&bind, WEB01, "A"), vec!["10.1.3.21"], "{case}");
    }
    assert_eq!(bind.soa_serial(), serial, "rejected updates change nothing");
}

#[tokio::test]
async fn a_key_the_zone_does_not_allow_is_refused_and_changes_nothing() {
    let bind = Bind::start();
    let serial = bind.soa_serial();
    let dns = Rfc2136::new(vec![bind.server(300).with_key(bind.readonly_key())]);
    let error = dns.point(WEB01, FAILOVER_IP).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        format!("{} refused the update of {WEB01}: is the key allowed to update the zone?", bind.address())
    );
    assert_eq!(bind.soa_serial(), serial);
    assert_eq!(dig_short(&bind, WEB01, "A"), vec!["10.1.3.21"]);
}

#[tokio::test]
async fn the_soa_serial_moves_with_each_applied_update_only() {
    let bind = Bind::start();
    let dns = updater(&bind);
    let before = bind.soa_serial();
    dns.point(WEB01, FAILOVER_IP).await.unwrap();
    let after_one = bind.soa_serial();
    assert!(after_one > before, "{before} -> {after_one}");

    let unsigned = Rfc2136::new(vec![DnsServer { key: None, ..bind.server(300) }]);
    let error = unsigned.point(WEB01, Ipv4Addr::new(10, 9, 9, 9)).await.unwrap_err();
    assert!(matches!(error, DnsError::Refused { .. }), "an unsigned update is refused: {error:?}");
    assert_eq!(bind.soa_serial(), after_one, "a refused update leaves the serial alone");

    dns.point(WEB01, Ipv4Addr::new(10, 2, 3, 22)).await.unwrap();
    assert!(bind.soa_serial() > after_one);
}

#[tokio::test]
async fn delete_removes_the_address_records_and_keeps_the_others() {
    let bind = Bind::start();
    let dns = updater(&bind);
    assert_eq!(dig_short(&bind, "db01.contoso.test", "A"), vec!["10.1.2.10"]);
    dns.point_v6("db01.contoso.test", "fd00::10".parse().unwrap()).await.unwrap();

    dns.delete("db01.contoso.test").await.unwrap();

    assert!(dns.lookup("db01.contoso.test").await.unwrap().is_empty());
    assert!(dns.lookup_v6("db01.contoso.test").await.unwrap().is_empty());
    assert!(dig_short(&bind, "db01.contoso.test", "A").is_empty());
    assert_eq!(dig_short(&bind, "db01.contoso.test", "TXT"), vec!["\"sql primary\""], "other types stay");
    // Deleting again is not an error.
    dns.delete("db01.contoso.test").await.unwrap();
}

#[tokio::test]
async fn aaaa_records_are_replaced_the_same_way() {
    let bind = Bind::start();
    let dns = updater(&bind);
    let ip: Ipv6Addr = "fd00:2::21".parse().unwrap();
    dns.point_v6(WEB01, ip).await.unwrap();
    assert_eq!(dns.lookup_v6(WEB01).await.unwrap(), vec![ip]);
    assert_eq!(dig_short(&bind, WEB01, "AAAA"), vec!["fd00:2::21"]);
    assert_eq!(dns.lookup(WEB01).await.unwrap(), vec![source_ip()], "the A record is another set");
}

#[tokio::test]
async fn an_hmac_sha512_key_works() {
    let bind = Bind::start();
    let dns = Rfc2136::new(vec![bind.server(300).with_key(bind.sha512_key())]);
    dns.point(WEB01, FAILOVER_IP).await.unwrap();
    assert_eq!(dig_short(&bind, WEB01, "A"), vec!["10.2.3.21"]);
}

#[tokio::test]
async fn a_name_outside_the_configured_zones_is_an_unknown_zone() {
    let bind = Bind::start();
    let dns = updater(&bind);
    let error = dns.point("web01.fabrikam.test", FAILOVER_IP).await.unwrap_err();
    assert!(matches!(error, DnsError::UnknownZone { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        "no DNS server is configured for web01.fabrikam.test: it is in none of the zones contoso.test.; add a server for its zone"
    );
    assert!(dns.lookup("web01.fabrikam.test").await.is_err());
}

#[tokio::test]
async fn a_server_that_is_not_there_is_unreachable_at_once() {
    let port = bind::free_port();
    let server = DnsServer::new(([127, 0, 0, 1], port).into(), "contoso.test.").with_timeout(Duration::from_secs(3));
    let dns = Rfc2136::new(vec![server]);
    let started = Instant::now();
    let error = dns.point(WEB01, FAILOVER_IP).await.unwrap_err();
    assert!(matches!(error, DnsError::Unreachable { .. }), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(2), "no waiting for a timeout: {:?}", started.elapsed());
    assert_eq!(
        error.to_string(),
        format!("DNS server 127.0.0.1:{port} is unreachable (for {WEB01}): connection refused: nothing listens there")
    );
}

#[tokio::test]
async fn a_server_that_does_not_answer_times_out_with_its_name() {
    // Accepts connections (the kernel's backlog does) but never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = silent.local_addr().unwrap();
    let dns = Rfc2136::new(vec![DnsServer::new(address, "contoso.test.").with_timeout(Duration::from_millis(300))]);
    let started = Instant::now();
    let error = dns.point(WEB01, FAILOVER_IP).await.unwrap_err();
    assert!(matches!(error, DnsError::Timeout { .. }), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    assert_eq!(error.to_string(), format!("DNS server {address} did not answer within 300ms (for {WEB01})"));
}

#[tokio::test]
async fn lookup_reads_the_authoritative_server_not_the_system_resolver() {
    let bind = Bind::start();
    let dns = updater(&bind);
    dns.point(WEB01, FAILOVER_IP).await.unwrap();
    // The system resolver knows nothing of contoso.test; the answer comes from BIND, and
    // what BIND answers to another program is the same.
    let response = bind.query(WEB01, RecordType::A, Duration::from_secs(2)).unwrap();
    assert!(response.metadata.authoritative);
    let served: Vec<Ipv4Addr> =
        response.answers.iter().filter_map(|r| if let RData::A(a) = &r.data { Some(a.0) } else { None }).collect();
    assert_eq!(dns.lookup(WEB01).await.unwrap(), served);
    assert!(dns.lookup("nothing-here.contoso.test").await.unwrap().is_empty(), "NXDOMAIN is no records");
}

#[tokio::test]
async fn r50_a_cname_flip_for_a_load_balancer() {
    let bind = Bind::start();
    let dns = updater(&bind);
    assert_eq!(dns.lookup_cname(WWW).await.unwrap().as_deref(), Some(LB_PRIMARY));
    assert_eq!(dig_short(&bind, WWW, "CNAME"), vec![LB_PRIMARY]);
    let serial = bind.soa_serial();

    dns.point_cname(WWW, "lb-dr.contoso.test").await.unwrap();

    assert_eq!(dig_short(&bind, WWW, "CNAME"), vec![LB_DR], "the old CNAME is gone, the new one is served");
    assert_eq!(dns.lookup_cname("WWW.Contoso.Test.").await.unwrap().as_deref(), Some(LB_DR));
    // A resolver following it now reaches the other site's load balancer.
    assert_eq!(dig_short(&bind, WWW, "A"), vec![LB_DR, "10.2.3.100"]);
    // One update: the serial moved once, and the record has the configured TTL.
    assert_eq!(bind.soa_serial(), serial + 1);
    let answer = bind.dig(&["+noall", "+answer", WWW, "CNAME"]);
    let fields: Vec<&str> = answer.split_whitespace().collect();
    assert_eq!(fields, ["www.contoso.test.", "300", "IN", "CNAME", LB_DR], "{answer}");

    // Flipping back, and flipping a name that had no CNAME (it is created).
    dns.point_cname(WWW, LB_PRIMARY).await.unwrap();
    assert_eq!(dig_short(&bind, WWW, "CNAME"), vec![LB_PRIMARY]);
    dns.point_cname("shop.contoso.test", "lb-dr.contoso.test").await.unwrap();
    assert_eq!(dig_short(&bind, "shop.contoso.test", "CNAME"), vec![LB_DR]);
    // No CNAME, or no name at all, is `None`.
    assert_eq!(dns.lookup_cname(WEB01).await.unwrap(), None);
    assert_eq!(dns.lookup_cname("nothing-here.contoso.test").await.unwrap(), None);
}

#[tokio::test]
async fn a_cname_at_a_name_with_a_records_is_an_error_and_changes_nothing() {
    let bind = Bind::start();
    let dns = updater(&bind);
    let serial = bind.soa_serial();

    let error = dns.point_cname(WEB01, "lb-dr.contoso.test").await.unwrap_err();

    assert!(matches!(error, DnsError::CnameConflict { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        format!(
            "{WEB01} cannot become a CNAME: {} holds A records (10.1.3.21) for it, and a CNAME cannot stand beside other data: delete them first, or update them instead of adding a CNAME",
            bind.address()
        )
    );
    assert_eq!(dig_short(&bind, WEB01, "A"), vec!["10.1.3.21"], "the A record stays");
    assert!(dig_short(&bind, WEB01, "CNAME").is_empty(), "no CNAME was added");
    assert_eq!(bind.soa_serial(), serial, "the prerequisite failed: nothing was applied");

    // AAAA records are in the way too.
    dns.point_v6("v6only.contoso.test", "fd00:2::40".parse().unwrap()).await.unwrap();
    let error = dns.point_cname("v6only.contoso.test", "lb-dr.contoso.test").await.unwrap_err();
    assert!(error.to_string().contains("holds AAAA records (fd00:2::40) for it"), "{error}");
    assert!(dig_short(&bind, "v6only.contoso.test", "CNAME").is_empty());
}

#[tokio::test]
async fn a_cname_the_server_ignores_beside_other_data_is_an_error() {
    // The apex holds SOA and NS: no prerequisite rules them out, BIND answers NOERROR and
    // ignores the CNAME (RFC 2136 §3.4.2.2); the read-back tells.
    let bind = Bind::start();
    let dns = updater(&bind);
    let error = dns.point_cname("contoso.test", "lb-dr.contoso.test").await.unwrap_err();
    assert!(matches!(error, DnsError::CnameConflict { .. }), "{error:?}");
    assert!(error.to_string().starts_with("contoso.test cannot become a CNAME:"), "{error}");
    assert!(error.to_string().contains("did not apply it"), "{error}");
    assert!(dig_short(&bind, "contoso.test", "CNAME").is_empty());
}

#[test]
#[should_panic(
    expected = "was not found in PATH nor in /usr/sbin: install BIND 9 to run the DNS tests: apt-get install -y bind9 bind9-dnsutils"
)]
fn a_missing_bind_fails_the_tests_with_what_to_install() {
    // What `Bind::start` and `dig` do when BIND is not installed: fail, never skip.
    bind::find_program("drplan-no-such-named");
}

/// A TCP relay to BIND on loopback that counts the connections made through it, and can
/// cut them all (as a server closing idle connections does).
struct Relay {
    address: std::net::SocketAddr,
    accepted: Arc<AtomicUsize>,
    live: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    _accepting: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn to(bind: &Bind) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (accepted, live) = (Arc::new(AtomicUsize::new(0)), Arc::new(Mutex::new(Vec::new())));
        let server = bind.address();
        let (count, connections) = (accepted.clone(), live.clone());
        let accepting = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let relay = tokio::spawn(async move {
                    let mut upstream = tokio::net::TcpStream::connect(server).await.unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                });
                connections.lock().unwrap().push(relay);
            }
        });
        Relay { address, accepted, live, _accepting: accepting }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Closes every connection relayed so far, on both sides.
    fn cut(&self) {
        for relay in self.live.lock().unwrap().drain(..) {
            relay.abort();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_carries_a_runs_updates_and_queries_at_any_parallelism() {
    let bind = Bind::start();
    let relay = Relay::to(&bind).await;
    let dns = Arc::new(Rfc2136::new(vec![DnsServer { address: relay.address, ..bind.server(300) }]));
    // 90 VMs, `parallel` at a time, each pointed and verified: 180 exchanges a round. At
    // 90, more calls wait than the connection carries at once (32).
    for (round, parallel) in [30, 90, 8, 90, 90, 90].into_iter().enumerate() {
        let slots = Arc::new(tokio::sync::Semaphore::new(parallel));
        let mut vms = tokio::task::JoinSet::new();
        for i in 0..90u8 {
            let (dns, slots) = (dns.clone(), slots.clone());
            vms.spawn(async move {
                let _slot = slots.acquire_owned().await.unwrap();
                let (name, ip) = (format!("vm{i:02}.contoso.test"), Ipv4Addr::new(10, 2, round as u8, i + 1));
                dns.point(&name, ip).await.unwrap();
                assert_eq!(dns.lookup(&name).await.unwrap(), vec![ip], "{name}");
            });
        }
        while let Some(done) = vms.join_next().await {
            done.unwrap();
        }
    }
    assert_eq!(relay.accepted(), 1, "one TCP connection for all the jobs");
    assert_eq!(dns.connections_opened(), 1);
    assert_eq!(dig_short(&bind, "vm89.contoso.test", "A"), vec!["10.2.5.90"]);
}

#[tokio::test]
async fn a_connection_the_server_closed_is_opened_again_at_the_next_call() {
    let bind = Bind::start();
    let relay = Relay::to(&bind).await;
    let dns = Rfc2136::new(vec![DnsServer { address: relay.address, ..bind.server(300) }]);
    dns.point(WEB01, FAILOVER_IP).await.unwrap();
    relay.cut();
    // Let the client see the close, as it would after a server's idle timeout.
    tokio::time::sleep(Duration::from_millis(50)).await;
    dns.point(WEB01, Ipv4Addr::new(10, 2, 3, 22)).await.unwrap();
    assert_eq!(dns.lookup(WEB01).await.unwrap(), vec![Ipv4Addr::new(10, 2, 3, 22)]);
    assert_eq!(relay.accepted(), 2, "one new connection after the close, then reused");

    // Closed just as the next message goes: a replace without a condition on the old
    // data is harmless to send again, so it goes again on a new connection.
    relay.cut();
    dns.point(WEB01, Ipv4Addr::new(10, 2, 3, 23)).await.unwrap();
    assert_eq!(dig_short(&bind, WEB01, "A"), vec!["10.2.3.23"]);
    assert_eq!(relay.accepted(), 3);
}

#[tokio::test]
async fn zones_of_one_server_and_key_share_its_connection() {
    let bind = Bind::start();
    let relay = Relay::to(&bind).await;
    let server = DnsServer { address: relay.address, ..bind.server(300) };
    let dns = Rfc2136::new(vec![server.clone(), DnsServer { zone: "other.test.".into(), ..server }]);
    dns.point(WEB01, FAILOVER_IP).await.unwrap();
    // The other zone is not served: the answer does not matter, the connection does.
    let _ = dns.lookup("www.other.test").await;
    assert_eq!(relay.accepted(), 1);
}
