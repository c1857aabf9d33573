//! Is DNS ready for a plan, right now? The read-only checks a preflight runs (DESIGN.md,
//! "Preflight, then act"): each server is asked for its zone's SOA record, signed with
//! the configured TSIG key, and its answer says whether it serves the zone and accepts
//! the key. Only queries are sent, never an update, and each server gets a bounded time.
//!
//! A wrong key is told apart from a wrong secret: the server answers BADKEY when it knows
//! no key of that name and algorithm, BADSIG when the key is known but the signature does
//! not verify. On BADKEY the same name is tried with the other algorithms (still queries),
//! so that "the server has this key as hmac-sha256" can be said instead of "unknown key".
//!
//! Each check is a [`ReadinessCheck`], a line of the preflight's checklist.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::rdata::tsig::TsigError;
use hickory_proto::rr::{Name, RData, RecordType, TSigner};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::rfc2136::{DnsServer, TsigAlgorithm, fqdn, rcode_name, signer};
use crate::fabric::readiness::ReadinessCheck;

/// The subject of a server's check: "server 127.0.0.1:5353 for zone contoso.test".
pub fn server_subject(server: &DnsServer) -> String {
    format!("server {} for zone {}", server.address, server.zone.trim_end_matches('.'))
}

/// Asks `server` for its zone's SOA, signed with its key, within `server.timeout` in all;
/// says whether it answers, serves the zone and accepts the key. Sends queries only.
pub async fn check_server(server: &DnsServer) -> ReadinessCheck {
    let subject = server_subject(server);
    match tokio::time::timeout(server.timeout, diagnose(server)).await {
        Ok(Ok(found)) => ReadinessCheck::ok(subject, found),
        Ok(Err(problem)) => ReadinessCheck::problem(subject, problem),
        Err(_) => ReadinessCheck::problem(
            subject,
            format!("did not answer within {:?}: is it the zone's server, and is the address right?", server.timeout),
        ),
    }
}

/// What the server's answer to a signed SOA query says; a problem as its message.
async fn diagnose(server: &DnsServer) -> Result<String, String> {
    let zone = fqdn(&server.zone).map_err(|e| format!("the zone {:?}: {e}", server.zone))?;
    let shown = server.zone.trim_end_matches('.');
    let signer = signer(server)?;
    let answer = ask_soa(server.address, &zone, signer.as_ref()).await?;
    let key = server.key.as_ref().map(|key| format!("key {} ({})", key.name, key.algorithm));
    match (answer.rcode, answer.tsig_error) {
        (_, Some(TsigError::BadKey)) => {
            let key = server.key.as_ref().expect("a TSIG error answers a signed query");
            Err(bad_key(server, &zone, key.algorithm).await)
        }
        (_, Some(TsigError::BadSig)) => Err(format!(
            "rejects the signature of {} (BADSIG): it knows the key, but its secret differs from the one configured",
            key.unwrap_or_default()
        )),
        (_, Some(TsigError::BadTime)) => Err(
            "rejects the signature's time (BADTIME): this machine's clock and the server's differ by more than 5 minutes"
                .into(),
        ),
        (_, Some(other)) => Err(format!("rejects the signature of {} ({other:?})", key.unwrap_or_default())),
        // Authoritative for a zone above: the "zone" is a name in it, not a zone there.
        (ResponseCode::NoError | ResponseCode::NXDomain, None)
            if answer.authoritative && !answer.soa && answer.authority_zone.as_ref().is_some_and(|z| z != &zone) =>
        {
            let parent = answer.authority_zone.as_ref().map(|z| z.to_string()).unwrap_or_default();
            Err(format!(
                "does not serve zone {shown}: it is a name in its zone {}, not a zone of its own; add the zone to the server (updates would otherwise be refused)",
                parent.trim_end_matches('.')
            ))
        }
        (ResponseCode::Refused, None) => Err(format!(
            "REFUSED the query: it does not serve zone {shown} (or does not answer this host); check the address and the server's zones"
        )),
        (ResponseCode::NoError, None) if !answer.authoritative || !answer.soa => Err(format!(
            "answers, but not with authority for zone {shown}: it is not the zone's primary server"
        )),
        (ResponseCode::NoError, None) => match (key, answer.verified) {
            (Some(key), Ok(())) => {
                Ok(format!("serves zone {shown} and accepts {key}: its signed answer verifies"))
            }
            (Some(key), Err(why)) => Err(format!("serves zone {shown}, but its answer does not verify with {key}: {why}")),
            (None, _) => Ok(format!("serves zone {shown} (no TSIG key: updates go unsigned)")),
        },
        (rcode, None) => {
            Err(format!("answered the query with {}: is it a server of zone {shown}?", rcode_name(rcode)))
        }
    }
}

/// The message for BADKEY: the server knows no key of this name with this algorithm.
/// Asking again with the other algorithms tells whether it has the name with another.
async fn bad_key(server: &DnsServer, zone: &Name, configured: TsigAlgorithm) -> String {
    let key = server.key.as_ref().expect("BADKEY answers a signed query");
    for other in [TsigAlgorithm::HmacSha256, TsigAlgorithm::HmacSha384, TsigAlgorithm::HmacSha512] {
        if other == configured {
            continue;
        }
        let mut probe = server.clone();
        probe.key = Some(super::TsigKey { algorithm: other, ..key.clone() });
        let Ok(Some(signer)) = signer(&probe) else { continue };
        if let Ok(answer) = ask_soa(server.address, zone, Some(&signer)).await
            && answer.tsig_error != Some(TsigError::BadKey)
        {
            return format!(
                "does not know key {} as {configured} (BADKEY), but knows it as {other}: the algorithm in drplan.toml (or in the key file) differs from the server's",
                key.name
            );
        }
    }
    format!(
        "does not know a key named {} (BADKEY): the key name in drplan.toml (and its key file) differs from the server's",
        key.name
    )
}

/// What a server answered to a SOA query.
struct Answer {
    rcode: ResponseCode,
    /// The error the server's TSIG record reports, if any (BADKEY, BADSIG, BADTIME).
    tsig_error: Option<TsigError>,
    authoritative: bool,
    /// The answer holds the zone's SOA record.
    soa: bool,
    /// The zone whose SOA the authority section carries: the zone the server looked in
    /// (for a name that is not a zone there, a zone above it).
    authority_zone: Option<Name>,
    /// Whether the answer's signature verifies with our key (`Ok` for an unsigned query).
    verified: Result<(), String>,
}

/// One SOA query for `zone` over a new TCP connection, signed when `signer` is given.
async fn ask_soa(address: SocketAddr, zone: &Name, signer: Option<&TSigner>) -> Result<Answer, String> {
    let mut query = Message::query();
    query.metadata.id = query_id();
    query.metadata.recursion_desired = false;
    query.add_query(Query::query(zone.clone(), RecordType::SOA));
    let mut verifier = match signer {
        Some(signer) => query.finalize(signer, unix_now()).map_err(|e| format!("cannot sign the query: {e}"))?,
        None => None,
    };
    let bytes = query.to_vec().map_err(|e| format!("cannot encode the query: {e}"))?;
    let answer = exchange(address, &bytes).await?;
    let message = Message::from_vec(&answer).map_err(|e| format!("its answer cannot be read: {e}"))?;
    if message.metadata.id != query.metadata.id {
        return Err("it answered another query".into());
    }
    let tsig_error = message.signature().and_then(|tsig| tsig.data.error);
    let verified = match (&mut verifier, tsig_error) {
        (Some(verifier), None) => verifier.verify(&answer).map(drop).map_err(|e| e.to_string()),
        _ => Ok(()),
    };
    let soa = message.answers.iter().any(|r| r.name == *zone && matches!(r.data, RData::SOA(_)));
    let authority_zone = message.authorities.iter().find(|r| matches!(r.data, RData::SOA(_))).map(|r| r.name.clone());
    Ok(Answer {
        rcode: message.metadata.response_code,
        tsig_error,
        authoritative: message.metadata.authoritative,
        soa,
        authority_zone,
        verified,
    })
}

/// Sends one DNS message over TCP (length-prefixed, RFC 1035 §4.2.2) and reads one back.
async fn exchange(address: SocketAddr, message: &[u8]) -> Result<Vec<u8>, String> {
    let io = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "unreachable: connection refused, nothing listens there".to_string(),
        std::io::ErrorKind::UnexpectedEof => "closed the connection without answering".to_string(),
        _ => format!("unreachable: {e}"),
    };
    let mut stream = TcpStream::connect(address).await.map_err(io)?;
    let length = u16::try_from(message.len()).map_err(|_| "the query is too long".to_string())?;
    let mut framed = length.to_be_bytes().to_vec();
    framed.extend_from_slice(message);
    stream.write_all(&framed).await.map_err(io)?;
    let mut length = [0u8; 2];
    stream.read_exact(&mut length).await.map_err(io)?;
    let mut answer = vec![0u8; usize::from(u16::from_be_bytes(length))];
    stream.read_exact(&mut answer).await.map_err(io)?;
    Ok(answer)
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs()
}

/// An id that differs from query to query (the connection is new, so it need not be
/// unpredictable).
fn query_id() -> u16 {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).subsec_nanos();
    (nanos ^ (nanos >> 16)) as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fabric::readiness::CheckStatus;

    #[test]
    fn a_check_serializes_as_subject_status_and_message() {
        let check = ReadinessCheck::problem("server 127.0.0.1:5353 for zone contoso.test", "REFUSED the query");
        let json = serde_json::to_value(&check).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "subject": "server 127.0.0.1:5353 for zone contoso.test",
                "status": "problem",
                "message": "REFUSED the query",
            })
        );
        assert_eq!(check.to_string(), "problem: server 127.0.0.1:5353 for zone contoso.test: REFUSED the query");
        assert!(ReadinessCheck::ok("x", "y").is_ready() && ReadinessCheck::warning("x", "y").is_ready());
        assert!(!check.is_ready());
    }

    #[tokio::test]
    async fn a_closed_port_is_one_problem_line_at_once() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let server = DnsServer::new(([127, 0, 0, 1], port).into(), "contoso.test.");
        let check = check_server(&server).await;
        assert_eq!(check.subject, format!("server 127.0.0.1:{port} for zone contoso.test"));
        assert_eq!(check.status, CheckStatus::Problem);
        assert_eq!(check.message, "unreachable: connection refused, nothing listens there");
    }

    #[tokio::test]
    async fn a_server_that_does_not_answer_is_bounded_by_its_timeout() {
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let server =
            DnsServer::new(silent.local_addr().unwrap(), "contoso.test").with_timeout(Duration::from_millis(200));
        let started = std::time::Instant::now();
        let check = check_server(&server).await;
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
        assert!(check.message.starts_with("did not answer within 200ms"), "{check}");
    }
}
