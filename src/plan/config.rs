//! The plan folder's config file, `drplan.toml`: settings that apply to every plan of
//! the folder it sits in. Today it names the global hook scripts — hooks loaded for every
//! run of every plan there (custom post-failover actions: notifications, audit) — after
//! the plan's own hooks, in the order listed:
//!
//! ```toml
//! [hooks]
//! scripts = ["hooks/notify.rhai", "hooks/audit.rhai"]   # relative to the folder
//! ```
//!
//! `[dns]` names the DNS servers the folder's plans update after failover (R50), their
//! TSIG keys (the secrets are read from a file or an environment variable, never written
//! here) and the zone test failovers use instead of production's, which has a server
//! entry of its own (R30):
//!
//! ```toml
//! [dns]
//! ttl = 60
//! test_zone = "drill.contoso.test"
//! [[dns.servers]]
//! zone = "contoso.test"
//! address = "192.0.2.53:53"
//! key = "drplan"
//! [[dns.servers]]
//! zone = "drill.contoso.test"            # drills update this server only
//! address = "192.0.2.53:53"
//! key = "drplan"
//! [[dns.keys]]
//! name = "drplan"
//! algorithm = "hmac-sha256"             # optional with a key file: it names the algorithm
//! secret_env = "DRPLAN_TSIG_SECRET"      # or secret_file = "keys/drplan.key" (tsig-keygen's)
//! ```
//!
//! `[dns] mode = "record"` (and no servers) makes real runs record their DNS changes
//! without sending them; without a `[dns]` section, a real run whose plan changes DNS
//! is refused.
//!
//! Pure parsing, no I/O: the script layer reads the file (a missing one means the
//! default, no hooks) and loads the scripts. Unknown sections and keys are errors, so a
//! typo is never silently ignored; every error names the file, line and column.

use std::ops::Range;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::SourcePos;
use crate::fabric::dns::{DnsMode, TsigAlgorithm};
use crate::model::snippet::Source;

/// The config file's name, in a plan's folder.
pub const CONFIG_FILE: &str = "drplan.toml";

/// `[dns]`: the authoritative servers the folder's plans update after failover (R50).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// Whether real runs send their DNS changes (`mode = "update"`, the default) or only
    /// record them (`mode = "record"`).
    pub mode: DnsMode,
    /// TTL of the records drplan writes, in seconds.
    pub ttl: u32,
    pub servers: Vec<DnsServerConfig>,
    pub keys: Vec<DnsKeyConfig>,
    /// R30: test failovers update this zone only, never production's: a name of a
    /// production zone is moved under it (`web01.contoso.test` → `web01.drill.contoso.test`)
    /// and sent to the test zone's own entry of `servers`, which the parser requires.
    pub test_zone: Option<String>,
}

impl DnsConfig {
    /// The server entry of the test zone, if there is a test zone.
    pub fn test_zone_server(&self) -> Option<&DnsServerConfig> {
        let test_zone = self.test_zone.as_ref()?;
        self.servers.iter().find(|s| &s.zone == test_zone)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsServerConfig {
    /// The zone it is authoritative for, e.g. `contoso.test`.
    pub zone: String,
    pub address: std::net::SocketAddr,
    /// The name of the TSIG key that signs updates, from `[[dns.keys]]`.
    pub key: Option<String>,
}

/// A TSIG key. Its secret is not in the config: only where to read it from, so the
/// config can be shared and reviewed; the secret is never printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsKeyConfig {
    pub name: String,
    /// `hmac-sha256`, `hmac-sha384` or `hmac-sha512`; when not given, the key file's, or
    /// `hmac-sha256` for a bare secret.
    pub algorithm: Option<TsigAlgorithm>,
    pub secret: SecretSource,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A file (relative to the plan's folder) holding the base64 secret, or a key file
    /// as `tsig-keygen` writes it.
    File(PathBuf),
    /// An environment variable holding the base64 secret.
    Env(String),
}

/// `drplan.toml`, as parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanConfig {
    /// `[dns]`, if the folder's plans update DNS for real.
    pub dns: Option<DnsConfig>,
    /// `[hooks] scripts`: hook scripts, relative to the folder, as written and in order.
    pub hooks: Vec<PathBuf>,
    /// Where each of `hooks` is written in the config file, for errors about it (a
    /// missing script, one that leaves the folder through a link).
    pub hooks_at: Vec<SourcePos>,
}

/// `drplan.toml` is broken; `Display` is "file:line:column: message".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {message}")]
pub struct ConfigError {
    pub at: SourcePos,
    pub message: String,
}

// The document as written.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigDoc {
    #[serde(default)]
    hooks: HooksDoc,
    dns: Option<Spanned<DnsDoc>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DnsDoc {
    mode: Option<Spanned<String>>,
    ttl: Option<u32>,
    test_zone: Option<Spanned<String>>,
    #[serde(default)]
    servers: Vec<DnsServerDoc>,
    #[serde(default)]
    keys: Vec<DnsKeyDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DnsServerDoc {
    zone: Spanned<String>,
    address: Spanned<String>,
    key: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DnsKeyDoc {
    name: Spanned<String>,
    algorithm: Option<Spanned<String>>,
    secret_file: Option<Spanned<String>>,
    secret_env: Option<Spanned<String>>,
}

/// A zone written with or without its final dot, compared without it.
fn zone_name(text: &str) -> String {
    text.trim().trim_end_matches('.').to_ascii_lowercase()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct HooksDoc {
    #[serde(default)]
    scripts: Vec<Spanned<String>>,
}

/// Parses the text of a plan folder's `drplan.toml`. `path` is only used in messages.
pub fn parse_config(text: &str, path: &Path) -> Result<PlanConfig, ConfigError> {
    let file = path.display().to_string();
    let source = Source::new(text);
    let at = |offset: usize| {
        let (line, column) = source.position(offset);
        SourcePos::new(file.as_str(), line, column)
    };
    let error = |span: Range<usize>, message: String| ConfigError { at: at(span.start), message };
    let doc: ConfigDoc =
        toml::from_str(text).map_err(|e| error(e.span().unwrap_or(0..0), e.message().trim_end().to_string()))?;
    let mut config = PlanConfig::default();
    for (i, script) in doc.hooks.scripts.iter().enumerate() {
        let field = format!("hooks.scripts[{i}]");
        let written = script.get_ref().as_str();
        let relative = Path::new(written);
        let how =
            "a hook script is named relative to the plan's folder and stays inside it, e.g. \"hooks/notify.rhai\"";
        if written.trim().is_empty() {
            return Err(error(script.span(), format!("{field}: the path is empty; {how}")));
        }
        if relative.is_absolute() || written.starts_with(['/', '\\']) || written.contains(':') {
            return Err(error(script.span(), format!("{field}: {written:?} is an absolute path; {how}")));
        }
        if relative.components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir)) {
            return Err(error(script.span(), format!("{field}: {written:?} leaves the plan's folder; {how}")));
        }
        if let Some(first) = config.hooks.iter().position(|h| same_path(h, relative)) {
            return Err(error(
                script.span(),
                format!(
                    "{field}: {written:?} is listed twice (first as hooks.scripts[{first}]); its hooks would run twice"
                ),
            ));
        }
        config.hooks.push(relative.to_path_buf());
        config.hooks_at.push(at(script.span().start));
    }
    if let Some(dns) = doc.dns {
        let span = dns.span();
        config.dns = Some(dns_config(dns.into_inner(), span, &error)?);
    }
    Ok(config)
}

fn dns_config(
    doc: DnsDoc,
    section: Range<usize>,
    error: &dyn Fn(Range<usize>, String) -> ConfigError,
) -> Result<DnsConfig, ConfigError> {
    let mode = match &doc.mode {
        None => DnsMode::Update,
        Some(mode) => match mode.get_ref().as_str() {
            "update" => DnsMode::Update,
            "record" => DnsMode::Record,
            other => {
                return Err(error(
                    mode.span(),
                    format!(
                        "dns.mode: {other:?} is not a mode: \"update\" sends the changes to the servers, \"record\" only records them"
                    ),
                ));
            }
        },
    };
    let mut keys: Vec<DnsKeyConfig> = Vec::new();
    for (i, key) in doc.keys.iter().enumerate() {
        let field = format!("dns.keys[{i}]");
        let algorithm = match &key.algorithm {
            None => None,
            Some(written) => Some(
                written
                    .get_ref()
                    .parse::<TsigAlgorithm>()
                    .map_err(|e| error(written.span(), format!("{field}.algorithm: {e}")))?,
            ),
        };
        let secret = match (&key.secret_file, &key.secret_env) {
            (Some(file), None) => SecretSource::File(PathBuf::from(file.get_ref())),
            (None, Some(env)) => SecretSource::Env(env.get_ref().clone()),
            _ => {
                return Err(error(
                    key.name.span(),
                    format!(
                        "{field}: give exactly one of secret_file or secret_env; the secret itself never goes in this file"
                    ),
                ));
            }
        };
        if keys.iter().any(|k| k.name == *key.name.get_ref()) {
            return Err(error(key.name.span(), format!("{field}.name: two keys are named {:?}", key.name.get_ref())));
        }
        keys.push(DnsKeyConfig { name: key.name.get_ref().clone(), algorithm, secret });
    }
    let mut servers: Vec<DnsServerConfig> = Vec::new();
    for (i, server) in doc.servers.iter().enumerate() {
        let field = format!("dns.servers[{i}]");
        let zone = zone_name(server.zone.get_ref());
        if zone.is_empty() || servers.iter().any(|s| s.zone == zone) {
            return Err(error(server.zone.span(), format!("{field}.zone: {zone:?} is empty or given twice")));
        }
        let address = server.address.get_ref().parse().map_err(|_| {
            error(
                server.address.span(),
                format!(
                    "{field}.address: {:?} is not an address:port, e.g. \"192.0.2.53:53\"",
                    server.address.get_ref()
                ),
            )
        })?;
        if let Some(key) = &server.key
            && !keys.iter().any(|k| k.name == *key.get_ref())
        {
            return Err(error(key.span(), format!("{field}.key: no [[dns.keys]] entry is named {:?}", key.get_ref())));
        }
        servers.push(DnsServerConfig { zone, address, key: server.key.as_ref().map(|k| k.get_ref().clone()) });
    }
    if mode == DnsMode::Update && servers.is_empty() {
        let span = doc.mode.as_ref().map_or(section, |m| m.span());
        return Err(error(
            span,
            "[dns] names no server: add a [[dns.servers]] entry for each zone the plans update, or set mode = \"record\" to record the changes without sending them".into(),
        ));
    }
    let test_zone = match &doc.test_zone {
        Some(test) => {
            let zone = zone_name(test.get_ref());
            // R30: a drill's changes go to the test zone's own server entry only. Were it
            // served through a production zone's entry, they would land in that zone.
            if !servers.iter().any(|s| s.zone == zone) {
                return Err(error(
                    test.span(),
                    format!(
                        "dns.test_zone: {zone:?} has no [[dns.servers]] entry of its own; drills send their changes only to the test zone's server, so add one with zone = {zone:?} (its address may be a production zone's server that also serves the test zone)"
                    ),
                ));
            }
            Some(zone)
        }
        None => None,
    };
    Ok(DnsConfig { mode, ttl: doc.ttl.unwrap_or(60), servers, keys, test_zone })
}

/// Whether two relative paths name the same file, `./` aside.
fn same_path(a: &Path, b: &Path) -> bool {
    fn normal(p: &Path) -> impl Iterator<Item = Component<'_>> {
        p.components().filter(|c| *c != Component::CurDir)
    }
    normal(a).eq(normal(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<PlanConfig, ConfigError> {
        parse_config(text, Path::new("plans/x/drplan.toml"))
    }

    fn error(text: &str) -> ConfigError {
        parse(text).expect_err("the config must be refused")
    }

    fn at(err: &ConfigError) -> (usize, usize) {
        (err.at.line, err.at.column)
    }

    #[test]
    fn hook_scripts_keep_their_order_and_positions() {
        let config = parse(
            "# beside the plans\n[hooks]\nscripts = [\"hooks/notify.rhai\",\n    \"hooks/audit.rhai\"]   # in order\n",
        )
        .unwrap();
        assert_eq!(config.hooks, [PathBuf::from("hooks/notify.rhai"), PathBuf::from("hooks/audit.rhai")]);
        let positions: Vec<String> = config.hooks_at.iter().map(ToString::to_string).collect();
        assert_eq!(positions, ["plans/x/drplan.toml:3:12", "plans/x/drplan.toml:4:5"]);
    }

    #[test]
    fn an_empty_file_or_section_means_no_hooks() {
        assert_eq!(parse("").unwrap(), PlanConfig::default());
        assert_eq!(parse("# nothing yet\n").unwrap(), PlanConfig::default());
        assert_eq!(parse("[hooks]\n").unwrap(), PlanConfig::default());
        assert_eq!(parse("[hooks]\nscripts = []\n").unwrap(), PlanConfig::default());
    }

    #[test]
    fn a_syntax_error_is_reported_at_its_line() {
        let err = error("[hooks]\nscripts = [\"a.rhai\" \"b.rhai\"]\n");
        assert_eq!(err.at.line, 2, "{err}");
        assert!(err.to_string().starts_with("plans/x/drplan.toml:2:"), "{err}");
    }

    #[test]
    fn an_unknown_section_is_refused_where_it_is_written() {
        let err = error("[hooks]\nscripts = []\n\n[alerts]\nserver = \"10.0.0.53\"\n");
        assert_eq!(at(&err), (4, 2), "{err}");
        assert!(err.message.contains("unknown field `alerts`"), "{err}");
        assert!(err.message.contains("expected `hooks` or `dns`"), "{err}");
    }

    #[test]
    fn an_unknown_key_is_refused_where_it_is_written() {
        let err = error("[hooks]\nscript = [\"a.rhai\"]\n");
        assert_eq!(at(&err), (2, 1), "{err}");
        assert!(err.message.contains("unknown field `script`, expected `scripts`"), "{err}");
    }

    #[test]
    fn scripts_must_be_an_array_of_strings() {
        let err = error("[hooks]\nscripts = \"hooks/notify.rhai\"\n");
        assert_eq!(err.at.line, 2, "{err}");
        assert!(err.message.contains("expected a sequence"), "{err}");
    }

    #[test]
    fn absolute_paths_are_refused() {
        for path in ["/etc/hooks.rhai", "C:/hooks.rhai", "\\\\server\\hooks.rhai"] {
            let text = format!("[hooks]\nscripts = [\"ok.rhai\", {}]\n", toml_string(path));
            let err = error(&text);
            assert_eq!(at(&err), (2, 23), "{path}: {err}");
            assert!(err.message.contains("hooks.scripts[1]"), "{err}");
            assert!(err.message.contains("is an absolute path"), "{err}");
        }
    }

    #[test]
    fn paths_leaving_the_folder_are_refused() {
        for path in ["../shared/hooks.rhai", "hooks/../../x.rhai"] {
            let err = error(&format!("[hooks]\nscripts = [{}]\n", toml_string(path)));
            assert_eq!(at(&err), (2, 12), "{path}: {err}");
            assert!(err.message.contains("leaves the plan's folder"), "{err}");
        }
    }

    #[test]
    fn an_empty_path_is_refused() {
        let err = error("[hooks]\nscripts = [\"  \"]\n");
        assert_eq!(at(&err), (2, 12), "{err}");
        assert!(err.message.contains("the path is empty"), "{err}");
    }

    #[test]
    fn a_script_listed_twice_is_refused_at_the_second() {
        let err = error("[hooks]\nscripts = [\"hooks/a.rhai\", \"./hooks/a.rhai\"]\n");
        assert_eq!(at(&err), (2, 28), "{err}");
        assert!(err.message.contains("listed twice (first as hooks.scripts[0])"), "{err}");
    }

    #[test]
    fn columns_count_characters() {
        let err = error("[hooks]\nscripts = [\"é.rhai\", \"/x.rhai\"]\n");
        assert_eq!(at(&err), (2, 22), "{err}");
    }

    #[test]
    fn the_example_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("plans/contoso").join(CONFIG_FILE);
        let config = parse_config(&std::fs::read_to_string(&path).unwrap(), &path).unwrap();
        assert_eq!(config.hooks, [PathBuf::from("hooks/notify.rhai")]);
    }

    fn toml_string(text: &str) -> String {
        format!("'{text}'")
    }
}

#[cfg(test)]
mod dns_tests {
    use super::*;

    /// The README's layout: production's server, and the test zone's own entry.
    const DNS: &str = "[dns]\ntest_zone = \"drill.contoso.test\"\n[[dns.servers]]\nzone = \"contoso.test.\"\naddress = \"127.0.0.1:5353\"\nkey = \"k\"\n[[dns.servers]]\nzone = \"drill.contoso.test\"\naddress = \"127.0.0.1:5353\"\nkey = \"k\"\n[[dns.keys]]\nname = \"k\"\nsecret_env = \"DRPLAN_TSIG_SECRET\"\n";

    fn parse(text: &str) -> Result<PlanConfig, ConfigError> {
        parse_config(text, Path::new("drplan.toml"))
    }

    #[test]
    fn r50_dns_servers_keys_and_a_test_zone() {
        let dns = parse(DNS).unwrap().dns.unwrap();
        assert_eq!(dns.mode, DnsMode::Update);
        assert_eq!(dns.ttl, 60);
        assert_eq!(dns.servers[0].zone, "contoso.test");
        assert_eq!(dns.servers[0].key.as_deref(), Some("k"));
        assert_eq!(dns.keys[0].algorithm, None, "the key file's, or HMAC-SHA256");
        assert_eq!(dns.keys[0].secret, SecretSource::Env("DRPLAN_TSIG_SECRET".into()));
        assert_eq!(dns.test_zone.as_deref(), Some("drill.contoso.test"));
        assert_eq!(dns.test_zone_server().map(|s| s.zone.as_str()), Some("drill.contoso.test"));
        let sha384 = parse(&DNS.replace("name = \"k\"\n", "name = \"k\"\nalgorithm = \"HMAC-SHA384\"\n")).unwrap();
        assert_eq!(sha384.dns.unwrap().keys[0].algorithm, Some(TsigAlgorithm::HmacSha384));
    }

    #[test]
    fn r30_a_test_zone_without_a_server_entry_of_its_own_is_refused() {
        // The layout that wrote a drill's records into the production zone: the test zone
        // lies in contoso.test, whose entry would have received its updates.
        let readme = DNS
            .replace("[[dns.servers]]\nzone = \"drill.contoso.test\"\naddress = \"127.0.0.1:5353\"\nkey = \"k\"\n", "");
        let err = parse(&readme).unwrap_err();
        assert_eq!(err.at.line, 2, "{err}");
        assert_eq!(
            err.message,
            "dns.test_zone: \"drill.contoso.test\" has no [[dns.servers]] entry of its own; drills send their changes only to the test zone's server, so add one with zone = \"drill.contoso.test\" (its address may be a production zone's server that also serves the test zone)"
        );
    }

    #[test]
    fn record_mode_needs_no_server_and_update_mode_does() {
        let record = parse("[dns]\nmode = \"record\"\n").unwrap().dns.unwrap();
        assert_eq!((record.mode, record.servers.len()), (DnsMode::Record, 0));
        let none = parse("# DNS\n[dns]\nttl = 30\n").unwrap_err();
        assert_eq!(none.at.line, 2, "{none}");
        assert!(none.message.starts_with("[dns] names no server: add a [[dns.servers]] entry"), "{none}");
        assert!(none.message.ends_with("or set mode = \"record\" to record the changes without sending them"));
        let explicit = parse("[dns]\nttl = 30\nmode = \"update\"\n").unwrap_err();
        assert_eq!(explicit.at.line, 3, "at the mode: {explicit}");
        let typo = parse("[dns]\nmode = \"recorded\"\n").unwrap_err();
        assert_eq!(typo.at.line, 2, "{typo}");
        assert!(typo.message.starts_with("dns.mode: \"recorded\" is not a mode"), "{typo}");
    }

    #[test]
    fn dns_mistakes_are_located() {
        let cases = [
            (
                DNS.replace(
                    "127.0.0.1:5353\"\nkey = \"k\"\n[[dns.servers]]",
                    "nowhere\"\nkey = \"k\"\n[[dns.servers]]",
                ),
                "not an address:port",
                5,
            ),
            (DNS.replacen("key = \"k\"", "key = \"other\"", 1), "no [[dns.keys]] entry", 6),
            (DNS.replace("secret_env", "secret"), "unknown field", 13),
            (
                DNS.replace("test_zone = \"drill.contoso.test\"", "test_zone = \"drill.example.org\""),
                "has no [[dns.servers]] entry of its own",
                2,
            ),
            (
                DNS.replace("name = \"k\"\n", "name = \"k\"\nalgorithm = \"hmac-md5\"\n"),
                "dns.keys[0].algorithm: unsupported TSIG algorithm",
                13,
            ),
            (
                DNS.replace("name = \"k\"\n", "name = \"k\"\nsecret_file = \"x\"\n"),
                "exactly one of secret_file or secret_env",
                12,
            ),
        ];
        for (text, phrase, line) in cases {
            let err = parse(&text).unwrap_err();
            assert!(err.message.contains(phrase), "{phrase:?}: {err}");
            assert_eq!(err.at.line, line, "{err}");
        }
    }
}
