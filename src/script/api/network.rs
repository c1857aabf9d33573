//! DNS after failover (R50): point a name's A record at a replica's address, or flip its
//! CNAME (a load balancer), and check it with the authoritative server. `stdlib/dns.rhai`
//! builds the friendlier `dns::point_vm(vm)` on these.

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
    doc_fn(
        "dns_cname",
        &["name: String", "target: String", "()"],
        "Makes `name` a CNAME to `target` (\"lb-dr.contoso.test\"), replacing its CNAME, e.g. to flip a load \
         balancer (R50). An error if `name` has A records. Inside actions only; a dry run records it.",
    )
    .set_into_module(module, |ctx: NativeCallContext, name: &str, target: &str| -> RhaiResult<()> {
        let run = running(&ctx)?;
        run.block_on("dns_cname", run.services().dns_cname(name, target))
    });
    doc_fn(
        "dns_verify_cname",
        &["name: String", "target: String", "()"],
        "Checks, by asking the authoritative server, that `name` is a CNAME to `target`; an error if not (R50).",
    )
    .set_into_module(module, |ctx: NativeCallContext, name: &str, target: &str| -> RhaiResult<()> {
        let run = running(&ctx)?;
        run.block_on("dns_verify_cname", run.services().dns_verify_cname(name, target))
    });
}
