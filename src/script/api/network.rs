//! DNS after failover (R50): point a name's A record at a replica's address, and check
//! it with the authoritative server. `stdlib/dns.rhai` builds the friendlier
//! `dns::point_vm(vm)` on these.

use rhai::{Dynamic, Module, NativeCallContext};

use crate::script::host::{RhaiResult, doc_fn, ipv4_arg, running};

pub(super) fn register(module: &mut Module) {
    doc_fn(
        "dns_point",
        &["name: String", "ip: String", "()"],
        "Points the A record `name` at `ip` (\"10.2.1.10\") (R50). Inside actions only; a dry run records it.",
    )
    .set_into_module(module, |ctx: NativeCallContext, name: &str, ip: Dynamic| -> RhaiResult<()> {
        let run = running(&ctx)?;
        let ip = ipv4_arg("dns_point", &ip)?;
        run.block_on("dns_point", run.services().dns_point(name, ip))
    });
    doc_fn(
        "dns_verify",
        &["name: String", "ip: String", "()"],
        "Checks, by asking the authoritative server, that `name` resolves to `ip`; an error if not (R50).",
    )
    .set_into_module(module, |ctx: NativeCallContext, name: &str, ip: Dynamic| -> RhaiResult<()> {
        let run = running(&ctx)?;
        let ip = ipv4_arg("dns_verify", &ip)?;
        run.block_on("dns_verify", run.services().dns_verify(name, ip))
    });
}
