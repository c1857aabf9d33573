//! A real BIND 9 for the DNS tests and the DNS benchmark: `named -g` on a free loopback
//! port, in a temporary directory holding fresh copies of the production zone
//! `contoso.test.` and of the drills' test zone `drill.contoso.test.` (BIND writes its
//! journal back into the zone file at shutdown), with TSIG keys allowed to update both
//! and one that is not. Killed on drop. Nothing here talks to an address outside
//! 127.0.0.0/8. `named` runs in the host's network namespace, or (`start_in_netns`) in
//! the real-VM tests' own, where drplan reaches the guests; it is then asked with `dig`
//! run there too.
//!
//! Used by the integration tests (`dns_bind`, `dns_runs`) and by `benches/dns.rs`
//! (`#[path = "../tests/integration/bind.rs"] mod bind;`).

use std::fs;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use drplan::fabric::dns::{DnsServer, TsigAlgorithm, TsigKey};
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

pub const ZONE: &str = "contoso.test.";
/// The test zone drills update (R30): a zone of its own on the same server.
pub const TEST_ZONE: &str = "drill.contoso.test.";
/// The key `allow-update` names.
pub const KEY_NAME: &str = "drplan-key";
/// Also allowed to update, with HMAC-SHA512.
pub const SHA512_KEY_NAME: &str = "drplan-sha512";
/// A key the server knows but that may not update the zone: its updates are REFUSED.
pub const READONLY_KEY_NAME: &str = "readonly-key";
/// Allowed to update; made by `tsig-keygen`, whose file names it (a name with "secret" in
/// it, which a reader that looks for the word would take for the secret).
pub const DR_SECRET_KEY_NAME: &str = "dr-secret";
/// The address web01 has in the zone before any test touches it (the source site's).
pub const WEB01_SOURCE_IP: &str = "10.1.3.21";
/// `www` is a CNAME to the source site's load balancer; `lb-dr` is the other site's.
pub const WWW: &str = "www.contoso.test";
pub const LB_PRIMARY: &str = "lb-primary.contoso.test.";
pub const LB_DR: &str = "lb-dr.contoso.test.";

const INSTALL: &str = "install BIND 9 to run the DNS tests: apt-get install -y bind9 bind9-dnsutils";

const ZONE_FILE: &str = "\
$TTL 3600
@       IN SOA  ns1.contoso.test. hostmaster.contoso.test. ( 2026010501 3600 600 86400 60 )
        IN NS   ns1.contoso.test.
ns1     IN A    127.0.0.1
web01   IN A    10.1.3.21
db01    IN A    10.1.2.10
        IN TXT  \"sql primary\"
www     IN CNAME lb-primary.contoso.test.
lb-primary IN A 10.1.3.100
lb-dr   IN A    10.2.3.100
";

const TEST_ZONE_FILE: &str = "\
$TTL 3600
@       IN SOA  ns1.contoso.test. hostmaster.contoso.test. ( 2026010501 3600 600 86400 60 )
        IN NS   ns1.contoso.test.
";

/// A running `named`; stops when dropped.
pub struct Bind {
    pub port: u16,
    /// The base64 secret of `drplan-key`, as in named.conf.
    pub secret: String,
    pub sha512_secret: String,
    pub readonly_secret: String,
    /// `tsig-keygen -a hmac-sha256 dr-secret`'s output: a key file, as named.conf includes it.
    pub dr_secret_key_file: String,
    child: Child,
    dir: tempfile::TempDir,
    /// The pid of a process in the network namespace `named` runs in; `None`: the host's.
    netns: Option<u32>,
}

impl Bind {
    /// Starts `named` and waits until it answers a SOA query (up to 5 s). Panics, with what
    /// to install, if BIND is missing.
    pub fn start() -> Bind {
        Bind::launch(None, "")
    }

    /// [`Bind::start`] inside the network namespace of process `pid`, on that namespace's
    /// 127.0.0.1, with `records` (zone file lines) added to `contoso.test.`. `dig` asks it
    /// from there; `query` and `soa_serial`, which ask from the test's own namespace,
    /// cannot.
    pub fn start_in_netns(pid: u32, records: &str) -> Bind {
        Bind::launch(Some(pid), records)
    }

    fn launch(netns: Option<u32>, records: &str) -> Bind {
        let named = find_program("named");
        let mut last_failure = String::new();
        // A free port can be taken between our probe and named's bind: try a few.
        for _ in 0..5 {
            let dir = tempfile::Builder::new().prefix("drplan-bind-").tempdir().expect("temporary directory");
            let port = free_port();
            let secret = random_secret();
            let sha512_secret = random_secret();
            let readonly_secret = random_secret();
            let dr_secret_key_file = tsig_keygen(DR_SECRET_KEY_NAME);
            let secrets = Secrets {
                secret: &secret,
                sha512: &sha512_secret,
                readonly: &readonly_secret,
                dr_secret_key_file: &dr_secret_key_file,
            };
            let conf = named_conf(dir.path(), port, &secrets);
            fs::write(dir.path().join("contoso.test.zone"), format!("{ZONE_FILE}{records}"))
                .expect("write the zone file");
            fs::write(dir.path().join("drill.contoso.test.zone"), TEST_ZONE_FILE).expect("write the test zone file");
            fs::write(dir.path().join("named.conf"), conf).expect("write named.conf");
            let log = fs::File::create(dir.path().join("named.log")).expect("create named.log");
            let child = in_netns(netns, &named)
                .arg("-g")
                .arg("-c")
                .arg(dir.path().join("named.conf"))
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log handle"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}; {INSTALL}", named.display()));
            let mut bind = Bind { port, secret, sha512_secret, readonly_secret, dr_secret_key_file, child, dir, netns };
            match bind.wait_until_serving(Duration::from_secs(5)) {
                Ok(()) => return bind,
                Err(failure) => last_failure = failure,
            }
        }
        panic!("BIND did not start: {last_failure}");
    }

    pub fn address(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn key(&self) -> TsigKey {
        TsigKey::from_base64(KEY_NAME, TsigAlgorithm::HmacSha256, &self.secret).expect("our own base64")
    }

    pub fn sha512_key(&self) -> TsigKey {
        TsigKey::from_base64(SHA512_KEY_NAME, TsigAlgorithm::HmacSha512, &self.sha512_secret).expect("base64")
    }

    pub fn readonly_key(&self) -> TsigKey {
        TsigKey::from_base64(READONLY_KEY_NAME, TsigAlgorithm::HmacSha256, &self.readonly_secret).expect("base64")
    }

    /// The server entry for `contoso.test.` with the updating key and `ttl`.
    pub fn server(&self, ttl: u32) -> DnsServer {
        DnsServer::new(self.address(), ZONE).with_key(self.key()).with_ttl(ttl).with_timeout(Duration::from_secs(5))
    }

    /// What named wrote to stderr so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("named.log")).unwrap_or_default()
    }

    /// Runs `dig @127.0.0.1 -p PORT +norecurse ARGS` (in named's namespace) and returns
    /// its output.
    pub fn dig(&self, args: &[&str]) -> String {
        self.try_dig(args).unwrap_or_else(|failure| panic!("dig {args:?} failed: {failure}"))
    }

    /// [`Bind::dig`], or what dig said when it failed.
    fn try_dig(&self, args: &[&str]) -> Result<String, String> {
        let dig = find_program("dig");
        let output = in_netns(self.netns, &dig)
            .arg("@127.0.0.1")
            .arg("-p")
            .arg(self.port.to_string())
            .args(["+norecurse", "+time=2", "+tries=1"])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}; {INSTALL}", dig.display()));
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).into_owned());
        }
        Ok(String::from_utf8(output.stdout).expect("dig prints UTF-8"))
    }

    /// The whole of `zone` as a zone transfer (AXFR, with `dig`) reads it: one record per
    /// line, sorted, comments left out. Two transfers are equal when the zone is.
    pub fn axfr(&self, zone: &str) -> Vec<String> {
        let transfer = self.dig(&["+nocmd", "+nostats", "+nocomments", zone, "AXFR"]);
        let mut records: Vec<String> = transfer
            .lines()
            .filter(|line| !line.trim().is_empty() && !line.starts_with(';'))
            .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        // A transfer starts and ends with the SOA: keep it once.
        records.sort();
        records.dedup();
        assert!(records.iter().any(|r| r.contains(" SOA ")), "the transfer of {zone} failed:\n{transfer}");
        records
    }

    /// The zone's SOA serial, asked over UDP by hand (not through drplan's client).
    pub fn soa_serial(&self) -> u32 {
        let response = self.query(ZONE, RecordType::SOA, Duration::from_secs(2)).expect("SOA query");
        response
            .answers
            .iter()
            .find_map(|r| if let RData::SOA(soa) = &r.data { Some(soa.serial) } else { None })
            .expect("a SOA record in the answer")
    }

    /// One UDP query to the server, without recursion, from the test's namespace (the
    /// host's).
    pub fn query(&self, name: &str, rtype: RecordType, timeout: Duration) -> io::Result<Message> {
        assert!(self.netns.is_none(), "named runs in another network namespace: ask it with dig");
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.set_read_timeout(Some(timeout))?;
        let mut message = Message::query();
        message.metadata.recursion_desired = false;
        message.add_query(Query::query(Name::from_ascii(name).map_err(io::Error::other)?, rtype));
        socket.send_to(&message.to_vec().map_err(io::Error::other)?, self.address())?;
        let mut buffer = [0u8; 4096];
        loop {
            let (len, _) = socket.recv_from(&mut buffer)?;
            let response = Message::from_vec(&buffer[..len]).map_err(io::Error::other)?;
            if response.metadata.id == message.metadata.id {
                return Ok(response);
            }
        }
    }

    fn wait_until_serving(&mut self, within: Duration) -> Result<(), String> {
        let started = Instant::now();
        while started.elapsed() < within {
            if let Some(status) = self.child.try_wait().expect("named's status") {
                return Err(format!("named exited with {status}:\n{}", self.log()));
            }
            let serving = match self.netns {
                None => self.query(ZONE, RecordType::SOA, Duration::from_millis(100)).is_ok_and(|response| {
                    response.metadata.response_code == ResponseCode::NoError && !response.answers.is_empty()
                }),
                Some(_) => self.try_dig(&["+short", ZONE, "SOA"]).is_ok_and(|soa| !soa.trim().is_empty()),
            };
            if serving {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("named did not answer a SOA query within {within:?}:\n{}", self.log()))
    }
}

impl Drop for Bind {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `PROGRAM`, run in the network namespace of process `netns` (`nsenter --net`, which
/// execs it: the child is the program itself), or in the host's.
fn in_netns(netns: Option<u32>, program: &Path) -> Command {
    match netns {
        None => Command::new(program),
        Some(pid) => {
            let mut command = Command::new("nsenter");
            command.arg(format!("--net=/proc/{pid}/ns/net")).arg(program);
            command
        }
    }
}

/// The keys named.conf defines.
struct Secrets<'a> {
    secret: &'a str,
    sha512: &'a str,
    readonly: &'a str,
    dr_secret_key_file: &'a str,
}

fn named_conf(dir: &Path, port: u16, secrets: &Secrets) -> String {
    let dir = dir.display();
    let Secrets { secret, sha512: sha512_secret, readonly: readonly_secret, dr_secret_key_file } = secrets;
    format!(
        r#"options {{
    directory "{dir}";
    pid-file "{dir}/named.pid";
    session-keyfile "{dir}/session.key";
    managed-keys-directory "{dir}";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    notify no;
}};
controls {{ }};
key "{KEY_NAME}" {{ algorithm hmac-sha256; secret "{secret}"; }};
key "{SHA512_KEY_NAME}" {{ algorithm hmac-sha512; secret "{sha512_secret}"; }};
key "{READONLY_KEY_NAME}" {{ algorithm hmac-sha256; secret "{readonly_secret}"; }};
{dr_secret_key_file}
zone "contoso.test" {{
    type primary;
    file "contoso.test.zone";
    allow-update {{ key "{KEY_NAME}"; key "{SHA512_KEY_NAME}"; key "{DR_SECRET_KEY_NAME}"; }};
    allow-transfer {{ 127.0.0.1; }};
}};
zone "drill.contoso.test" {{
    type primary;
    file "drill.contoso.test.zone";
    allow-update {{ key "{KEY_NAME}"; key "{SHA512_KEY_NAME}"; key "{DR_SECRET_KEY_NAME}"; }};
    allow-transfer {{ 127.0.0.1; }};
}};
"#
    )
}

/// A loopback port free for both UDP and TCP now.
pub fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket on loopback");
        let port = udp.local_addr().expect("local address").port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// 32 random bytes, base64: a fresh TSIG secret.
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).expect("read /dev/urandom");
    data_encoding::BASE64.encode(&bytes)
}

/// A new key file for `name` (HMAC-SHA256), as BIND's own `tsig-keygen` writes it.
pub fn tsig_keygen(name: &str) -> String {
    let program = find_program("tsig-keygen");
    let output = Command::new(&program)
        .args(["-a", "hmac-sha256", name])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; {INSTALL}", program.display()));
    assert!(output.status.success(), "tsig-keygen failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("tsig-keygen prints UTF-8")
}

/// `name` in PATH or in the sbin directories (not in a normal user's PATH on Debian).
pub fn find_program(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("`{name}` was not found in PATH nor in /usr/sbin: {INSTALL}"))
}
