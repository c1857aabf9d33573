//! The preflight of a run (DESIGN.md, "Preflight, then act"): every check that could
//! refuse a VM, for the whole plan, before the first VM is touched, and where each
//! replica will land. Nothing is changed: a refused plan leaves every VM as it was.

use super::placement::Destination;
use super::{SimFabric, SimState};
use crate::fabric::{FabricError, FailoverRequest, Intent, Preflight, PreflightRequest, Replica};
use crate::model::{FailoverKind, Operation, Side, Timestamp};

impl SimFabric {
    pub(super) fn check_plan(&self, request: &PreflightRequest) -> Preflight {
        let mut state = self.lock();
        let mut preflight = Preflight::default();
        // Placements are reserved as they are made, so each VM sees the addresses the
        // earlier ones of the plan will take, then given back: the preflight changes nothing.
        for name in &request.vms {
            let checked = self.check_vm(&mut state, name, request);
            match checked {
                Ok(Some(replica)) => {
                    preflight.placements.insert(name.clone(), replica);
                }
                Ok(None) => {}
                Err(refusal) => preflight.refusals.push(refusal),
            }
        }
        self.address_book(&mut state).release_reserved();
        preflight
    }

    /// One VM of the plan: its refusal, or where its replica lands (for a failover).
    fn check_vm(
        &self,
        state: &mut SimState,
        name: &str,
        request: &PreflightRequest,
    ) -> Result<Option<Replica>, FabricError> {
        let vm = self.vm(name)?;
        let at = request.at;
        state.record(name).settle(at);
        match &request.intent {
            Intent::Failover(failover) => self.check_failover(state, vm, failover, at).map(Some),
            Intent::Failback => {
                let back = FailoverRequest::new(FailoverKind::Planned, crate::model::PointChoice::Latest);
                self.failover_refusal(state, vm, &back, true).map(|()| None)
            }
            Intent::ChangePoint(choice) => {
                state.record(name).protection.check(name, Operation::ChangeRecoveryPoint)?;
                let schedule = self.schedule(state, name, at);
                self.choose_point(name, schedule, *choice, at).map(|_| None)
            }
            Intent::Other(operation) => {
                state.record(name).protection.check(name, *operation).map_err(Into::into).map(|()| None)
            }
        }
    }

    fn check_failover(
        &self,
        state: &mut SimState,
        vm: &crate::model::Vm,
        request: &FailoverRequest,
        at: Timestamp,
    ) -> Result<Replica, FabricError> {
        let name = vm.name.as_str();
        self.failover_refusal(state, vm, request, false)?;
        if request.kind != FailoverKind::Planned {
            // R33, R2: the point must exist now; R12: a group's members share it.
            let as_of = Self::points_as_of(request, at);
            let schedule = self.schedule(state, name, as_of);
            self.choose_point(name, schedule, request.point, as_of)?;
        }
        let test = request.kind == FailoverKind::Test;
        let to = state.record(name).protection.active.other();
        let destination = Destination { side: to, test, test_network: request.test_network.as_deref() };
        let replica = self.place(state, vm, destination)?;
        if test || to == Side::Recovery {
            self.address_book(state).reserve(&self.inventory, &replica);
        }
        Ok(replica)
    }
}
