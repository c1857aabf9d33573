//! Injected faults: what goes wrong, to which VM, and when.

use super::checker::{Checker, Names, VM};
use super::doc::SiteFileDoc;
use super::values::{one_of, site_time};
use crate::model::inventory::Fault;
use crate::model::recovery::Timestamp;

#[derive(Clone, Copy)]
enum FaultKind {
    BootFailure,
    ShutdownFailure,
    ShutdownHang,
    ReplicationStall,
}

impl Checker<'_> {
    pub(super) fn faults(&mut self, doc: &SiteFileDoc, names: &Names, start: Timestamp) -> Vec<Fault> {
        let kinds = [
            ("boot-failure", FaultKind::BootFailure),
            ("shutdown-failure", FaultKind::ShutdownFailure),
            ("shutdown-hang", FaultKind::ShutdownHang),
            ("replication-stall", FaultKind::ReplicationStall),
        ];
        let mut faults = Vec::new();
        for (i, fault) in doc.faults.iter().enumerate() {
            let at = format!("faults[{i}]");
            let kind = self.parse(&fault.kind, format!("{at}.kind"), |s| one_of(s, "fault kind", &kinds));
            self.lookup(&names.vms, &fault.vm, format!("{at}.vm"), VM, "");
            let vm = fault.vm.get_ref().clone();
            let fault = match (kind, &fault.at) {
                (None, _) => continue,
                (Some(FaultKind::ReplicationStall), Some(when)) => {
                    let Some(at) = self.parse(when, format!("{at}.at"), |s| site_time(s, start)) else { continue };
                    Fault::ReplicationStall { vm, at }
                }
                (Some(FaultKind::ReplicationStall), None) => {
                    let message = "a replication-stall fault needs at = \"<site time>\", when the stall begins, e.g. at = \"+2h\"";
                    self.error(fault.kind.span(), format!("{at}.at"), message);
                    continue;
                }
                (Some(_), Some(when)) => {
                    let message =
                        format!("at applies only to replication-stall faults, not to {:?}", fault.kind.get_ref());
                    self.error(when.span(), format!("{at}.at"), message);
                    continue;
                }
                (Some(FaultKind::BootFailure), None) => Fault::BootFailure { vm },
                (Some(FaultKind::ShutdownFailure), None) => Fault::ShutdownFailure { vm },
                (Some(FaultKind::ShutdownHang), None) => Fault::ShutdownHang { vm },
            };
            faults.push(fault);
        }
        faults
    }
}
