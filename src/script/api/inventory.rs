//! The inventory, read-only: selectors that name VMs by rule (resolved later, by
//! validation), and look-ups of the site file's VMs for scripts that compute groups.

use rhai::{Array, Map, Module, NativeCallContext};

use super::plan::SelectorValue;
use crate::model::Vm;
use crate::plan::Selector;
use crate::script::host::{RhaiResult, doc_fn, host, string_array, string_map, text_or_unit};

fn vm_info(vm: &Vm) -> Map {
    let nic = vm.nics.first();
    let mut map = Map::new();
    map.insert("name".into(), vm.name.clone().into());
    map.insert("site".into(), vm.site.clone().into());
    map.insert("os".into(), format!("{:?}", vm.os).to_lowercase().into());
    map.insert("ip".into(), text_or_unit(nic.and_then(|n| n.ip)));
    map.insert("target_ip".into(), text_or_unit(nic.and_then(|n| n.target_ip)));
    map.insert("dns".into(), string_array(&vm.dns));
    map.insert("tags".into(), string_map(&vm.tags));
    map
}

pub(super) fn register(module: &mut Module) {
    doc_fn(
        "vms_tagged",
        &["key: String", "value: String", "Selector"],
        "Selects every VM of the plan's source site whose tag `key` is `value`, for `plan.group`.",
    )
    .set_into_module(module, |key: &str, value: &str| {
        SelectorValue(Selector::Tag { key: key.to_string(), value: value.to_string() })
    });
    doc_fn(
        "replication_group",
        &["name: String", "Selector"],
        "Selects every VM of a replication group of the site file (R12), for `plan.group`.",
    )
    .set_into_module(module, |name: &str| SelectorValue(Selector::ReplicationGroup(name.to_string())));
    doc_fn(
        "vms_tagged_names",
        &["key: String", "value: String", "Array"],
        "The names of the site file's VMs whose tag `key` is `value`, in site-file order.",
    )
    .set_into_module(module, |ctx: NativeCallContext, key: &str, value: &str| -> RhaiResult<Array> {
        let host = host(&ctx)?;
        Ok(host.plan.inventory.tagged(key, value).map(|vm| vm.name.clone().into()).collect())
    });
    doc_fn(
        "vm_info",
        &["name: String", "Map"],
        "A VM of the site file: name, site, os, ip, target_ip (of its first NIC; () when none), dns, tags.",
    )
    .set_into_module(module, |ctx: NativeCallContext, name: &str| -> RhaiResult<Map> {
        let host = host(&ctx)?;
        let vm =
            host.plan.inventory.vm(name).ok_or_else(|| format!("vm_info: the site file has no VM named {name:?}"))?;
        Ok(vm_info(vm))
    });
}
