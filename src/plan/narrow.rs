//! R22: a failover is normally run for a whole plan, but a VM can also fail over on its
//! own. A plan narrowed to some of its VMs keeps their groups, in order, with only them,
//! and the steps that belong to each VM (its per-VM actions, its DNS); the plan's and
//! the groups' own steps are about whole groups, and are left out.

use super::Plan;
use super::validate::ResolvedPlan;

impl Plan {
    /// The plan narrowed to `vms`, with the groups resolved the same way; an error names
    /// a VM that is not in the plan.
    pub fn narrowed(&self, resolved: &ResolvedPlan, vms: &[String]) -> Result<(Plan, ResolvedPlan), String> {
        let planned: Vec<&String> = resolved.groups.iter().flat_map(|g| &g.vms).collect();
        if let Some(missing) = vms.iter().find(|vm| !planned.contains(vm)) {
            let listed = planned.iter().take(12).map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
            let more = if planned.len() > 12 { ", ..." } else { "" };
            return Err(format!("{missing} is not in plan {:?} (its VMs: {listed}{more})", self.name));
        }
        let mut narrowed_resolved = ResolvedPlan::default();
        let mut narrowed = Plan { pre: Vec::new(), post: Vec::new(), groups: Vec::new(), ..self.clone() };
        for (group, members) in self.groups.iter().zip(&resolved.groups) {
            let kept: Vec<String> = members.vms.iter().filter(|vm| vms.contains(vm)).cloned().collect();
            if kept.is_empty() {
                continue;
            }
            narrowed.groups.push(super::Group { pre: Vec::new(), post: Vec::new(), ..group.clone() });
            narrowed_resolved.groups.push(super::validate::ResolvedGroup { name: members.name.clone(), vms: kept });
        }
        Ok((narrowed, narrowed_resolved))
    }
}

#[cfg(test)]
mod tests {
    use super::super::validate::ResolvedGroup;
    use super::super::{Group, Manual, Step};
    use super::*;
    use crate::plan::SourcePos;

    fn group(name: &str) -> Group {
        let manual = Step::Manual(Manual {
            text: "check".into(),
            timeout: std::time::Duration::from_secs(60),
            estimate: std::time::Duration::ZERO,
            at: SourcePos::new("p.rhai", 1, 1),
        });
        Group {
            pre: vec![manual.clone()],
            post: vec![manual],
            ..Group::new(name, SourcePos::new("p.rhai", 1, 1), vec![])
        }
    }

    #[test]
    fn r22_a_plan_narrowed_to_one_vm_keeps_its_group_without_the_groups_steps() {
        let plan = Plan {
            groups: vec![group("db"), group("web")],
            update_dns: true,
            ..Plan::new("p", ("a", "b"), SourcePos::new("p.rhai", 1, 1))
        };
        let g = |name: &str, vms: &[&str]| ResolvedGroup {
            name: name.into(),
            vms: vms.iter().map(|s| s.to_string()).collect(),
        };
        let resolved = ResolvedPlan { groups: vec![g("db", &["sql01", "sql02"]), g("web", &["web01", "web02"])] };
        let Ok((narrowed, only)) = plan.narrowed(&resolved, &["web02".into()]) else { panic!("web02 is in the plan") };
        assert_eq!(only.groups, vec![g("web", &["web02"])]);
        assert_eq!(narrowed.groups.len(), 1);
        assert!(narrowed.groups[0].pre.is_empty() && narrowed.groups[0].post.is_empty());
        assert!(narrowed.update_dns, "a VM's own DNS step stays");
        let err = plan.narrowed(&resolved, &["web09".into()]).err().expect("web09 is not in the plan");
        assert!(err.contains("web09 is not in plan \"p\"") && err.contains("sql01, sql02, web01, web02"), "{err}");
    }
}
