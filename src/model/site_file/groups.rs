//! Replication groups (R12).

use std::collections::HashMap;

use super::checker::{Checker, GROUP, Names, VM};
use super::doc::{SiteFileDoc, VmDoc};
use crate::model::inventory::ReplicationGroup;

impl Checker<'_> {
    /// R12: members exist, each in one group, all on one site, protected ones under one policy.
    pub(super) fn groups(&mut self, doc: &SiteFileDoc, names: &Names) -> Vec<ReplicationGroup> {
        self.unique(&doc.replication_groups, GROUP, "", |g| format!("replication_groups.{:?}.name", g.name.get_ref()));
        let mut grouped = HashMap::new();
        for group in &doc.replication_groups {
            let name = group.name.get_ref();
            let at = format!("replication_groups.{name:?}");
            if group.vms.is_empty() {
                let message = format!("replication group {name:?} has no VMs; list its members in vms = [...]");
                self.error(group.name.span(), format!("{at}.vms"), message);
            }
            // The first member on a site, and the first protected one: the others must agree.
            let mut first_site: Option<&VmDoc> = None;
            let mut first_policy: Option<(&VmDoc, &str)> = None;
            for (i, member) in group.vms.iter().enumerate() {
                let field = format!("{at}.vms[{i}]");
                let Some(vm) = self.lookup(&names.vms, member, field.clone(), VM, "") else { continue };
                let vm_name = vm.name.get_ref();
                self.once(&mut grouped, vm_name.as_str(), member.span(), field.clone(), |line| {
                    format!(
                        "VM {vm_name:?} is already in a replication group on line {line}; a VM can be in only one group"
                    )
                });
                match first_site {
                    Some(first) if first.site.get_ref() != vm.site.get_ref() => {
                        let message = format!(
                            "VM {vm_name:?} runs on site {:?} but {:?} of the same group runs on site {:?}; a group's VMs share one site",
                            vm.site.get_ref(),
                            first.name.get_ref(),
                            first.site.get_ref()
                        );
                        self.error(member.span(), field.clone(), message);
                    }
                    Some(_) => {}
                    None => first_site = Some(vm),
                }
                let Some(protection) = &vm.protection else { continue };
                let policy = protection.policy.get_ref().as_str();
                match first_policy {
                    Some((first, first_policy)) if first_policy != policy => {
                        let message = format!(
                            "VM {vm_name:?} is protected with policy {policy:?} but {:?} of the same group with {first_policy:?}; a group's protected VMs share one policy",
                            first.name.get_ref()
                        );
                        self.error(member.span(), field, message);
                    }
                    Some(_) => {}
                    None => first_policy = Some((vm, policy)),
                }
            }
        }
        doc.replication_groups
            .iter()
            .map(|g| ReplicationGroup {
                name: g.name.get_ref().clone(),
                vms: g.vms.iter().map(|v| v.get_ref().clone()).collect(),
            })
            .collect()
    }
}
