//! `drplan check` finds what would go wrong, and points at the culprit: a finding about a
//! VM at its name (or selector) in the script, one about a group at the group, one about
//! a call at the call; every error of a plan at once; what the plan's actions write as
//! literals (waits, DNS names, uses of a replica's address) held to the plan's RTO and to
//! the folder's DNS servers.

use crate::util::{Run, Workdir};

const HEAD: &str = "let plan = recovery_plan(\"t\", #{ source: \"primary\", target: \"secondary\", rto: \"1h\" });\n";

/// A folder with the contoso site and `plan.rhai`: `HEAD`, `body`, `plan`.
fn contoso_plan(body: &str) -> Workdir {
    Workdir::contoso().plan(&format!("{HEAD}{body}\nplan\n"))
}

fn check(work: &Workdir) -> Run {
    work.run(&["check", "plan.rhai"])
}

/// Asserts that `stderr` has a finding of `severity` at plan.rhai:`line`:`column` whose
/// text contains `phrase`, and returns its first line.
fn finding<'s>(stderr: &'s str, severity: &str, (line, column): (usize, usize), phrase: &str) -> &'s str {
    let head = format!("{severity}: plan.rhai:{line}:{column}: ");
    stderr
        .lines()
        .find(|l| l.starts_with(&head) && l.contains(phrase))
        .unwrap_or_else(|| panic!("expected `{head}…{phrase}…` in:\n{stderr}"))
}

/// The contoso site with a network `backup` on primary that maps nowhere, and VMs on it:
/// bk01 (a DNS name, no static IP) and bk02 (a static target IP).
fn add_backup_network(site: String) -> String {
    let vm = |name: &str, extra: &str| {
        format!(
            "\n[[vms]]\nname = \"{name}\"\nsite = \"primary\"\nhost = \"hv-p01\"\nos = \"linux\"\n{extra}\
             disks = [{{ name = \"os\", size_gb = 30, os = true }}]\nprotection = {{ policy = \"gold\", since = \"-2d\" }}\n"
        )
    };
    let site = site.replacen(
        "hosts = [\"hv-p01\", \"hv-p02\", \"hv-p03\"]",
        "hosts = [\"hv-p01\", \"hv-p02\", \"hv-p03\"]\n\n  [[sites.networks]]\n  name = \"backup\"\n    [[sites.networks.subnets]]\n    name = \"bk\"\n    cidr = \"10.1.9.0/24\"\n",
        1,
    );
    let bk01 = vm(
        "bk01",
        "dns = [\"bk01.contoso.test\"]\nnics = [{ network = \"backup\", subnet = \"bk\", ip = \"10.1.9.5\" }]\n",
    );
    let bk02 =
        vm("bk02", "nics = [{ network = \"backup\", subnet = \"bk\", ip = \"10.1.9.6\", target_ip = \"10.2.9.6\" }]\n");
    format!("{site}{bk01}{bk02}")
}

#[test]
fn r20_a_finding_about_a_vm_points_at_its_name_and_one_about_a_group_at_the_group() {
    let work = contoso_plan(
        "plan.group(\"db\", [\"sql01\",\n    \"sql99\"]);\nplan.group(\"web\", vms_tagged(\"tier\", \"webb\"));\nplan.group(\"db2\", [\"sql01\"]);",
    );
    let stderr = check(&work).fails(1).stderr;
    finding(&stderr, "error", (3, 5), "unknown VM sql99 (did you mean sql01?)");
    finding(&stderr, "error", (4, 19), "no VM of site primary is tagged tier=webb");
    finding(&stderr, "error", (4, 6), "group web is empty: its members resolve to no VM (R20)");
    finding(&stderr, "error", (5, 20), "sql01 is already in group db (at plan.rhai:2:19)");
    // The line is shown with a caret under the name.
    assert!(stderr.contains("3 |     \"sql99\"]);\n  |     ^^^^^^^\n"), "{stderr}");
}

#[test]
fn r20_every_error_of_a_plan_is_reported_at_once() {
    let work = Workdir::contoso().plan(
        "let plan = recovery_plan(\"t\", #{ source: \"primary\", target: \"secondary\", rpo: \"5m\" });\n\
         plan.group(\"db\", [\"sql01\", \"sql02\", 42]).retry(1, \"1x\");\n\
         plan.group(\"web\", [\"web99\"]).on_failure(\"maybe\");\n\
         plan.manual(\"Call the desk\", #{ timeout: \"soon\" });\n\
         plan\n",
    );
    let stderr = check(&work).fails(1).stderr;
    finding(&stderr, "error", (1, 12), "recovery_plan: unknown option \"rpo\"");
    finding(&stderr, "error", (2, 37), "group: a member is a VM name (a string) or a selector");
    finding(&stderr, "error", (2, 42), "retry: bad duration \"1x\"");
    finding(&stderr, "error", (3, 20), "unknown VM web99");
    finding(&stderr, "error", (3, 30), "on_failure: expected \"stop\" or \"continue\", not \"maybe\"");
    finding(&stderr, "error", (4, 6), "manual timeout: bad duration \"soon\"");
    assert!(stderr.ends_with("error: the plan has 7 errors; see above\n"), "{stderr}");
}

#[test]
fn r10_an_unmapped_network_is_a_warning_when_the_plan_does_not_need_the_address() {
    let work = Workdir::contoso()
        .site_edit(add_backup_network)
        .plan(&format!("{HEAD}plan.group(\"backup\", [\"bk01\"]);\nplan\n"));
    let run = check(&work).ok();
    finding(
        &run.stderr,
        "warning",
        (2, 23),
        "bk01's NIC 1 on network backup has no network mapping to secondary: its replica will fail over not \
         connected to any network, with no address; map backup to a network of secondary if it needs one (R10)",
    );
    assert!(run.stdout.contains("is sound: 1 group, 1 VM, 1 warning"), "{}", run.stdout);
}

#[test]
fn r10_an_unmapped_network_is_an_error_where_the_plan_needs_the_address() {
    let cases = [
        // wait_port on it.
        (
            "plan.group(\"backup\", [\"bk01\"]).post_each(|vm, ctx| wait_port(vm.ip, 22, \"5m\"));",
            "vm.ip at plan.rhai:2:62 needs its address",
        ),
        (
            "plan.group(\"backup\", [\"bk01\"]).post(|ctx| wait_port(ctx.vm(\"bk01\").ip, 22, \"5m\"));",
            "ctx.vm(\"bk01\").ip at plan.rhai:2:60 needs its address",
        ),
        // DNS for it.
        (
            "plan.group(\"backup\", [\"bk01\"]);\nplan.update_dns();",
            "plan.update_dns() points its DNS names (bk01.contoso.test) at it",
        ),
        // A static IP.
        ("plan.group(\"backup\", [\"bk02\"]);", "its NIC 1 is to take the static target IP 10.2.9.6"),
    ];
    for (body, need) in cases {
        let work = Workdir::contoso().site_edit(add_backup_network).plan(&format!("{HEAD}{body}\nplan\n"));
        let stderr = check(&work).fails(1).stderr;
        let line = finding(&stderr, "error", (2, 23), "has no network mapping to secondary");
        assert!(
            line.contains(&format!("its replica would not be connected to any network, but {need} (R10)")),
            "{line}"
        );
    }
}

#[test]
fn r12_one_replication_group_split_across_two_plan_groups_is_an_error_that_says_why() {
    let work = contoso_plan("plan.group(\"db\", [\"sql01\"]);\nplan.group(\"app\", [\"app01\", \"sql02\"]);");
    let stderr = check(&work).fails(1).stderr;
    finding(
        &stderr,
        "error",
        (3, 29),
        "replication group sql-cluster is split across plan groups db (sql01) and app (sql02): a planned failover \
         shuts each member down and syncs it when its group's turn comes, so sql02 and sql01 would not share a \
         common recovery point; put all of it in one group: replication_group(\"sql-cluster\") (R12)",
    );
    // An unplanned failover shares the point, later: a warning.
    let run = work.run(&["dry-run", "plan.rhai", "--kind", "unplanned"]).ok();
    finding(&run.stderr, "warning", (3, 29), "sql02 fails over to the point chosen when sql01 began");
}

/// The folder's `drplan.toml` with `[dns]` servers for contoso.test.
const DNS_CONFIG: &str = "[hooks]\nscripts = [\"hooks/notify.rhai\"]\n\n[dns]\n[[dns.servers]]\nzone = \"contoso.test\"\naddress = \"127.0.0.1:5353\"\n";

#[test]
fn r50_a_dns_name_in_a_zone_no_dns_server_serves_is_an_error() {
    let work = Workdir::contoso_plans()
        .site_edit(|site| site.replacen("dns = [\"web02.contoso.test\"]", "dns = [\"web02.contoso.example\"]", 1))
        .file("drplan.toml", DNS_CONFIG)
        .plan(&format!(
            "import \"dns\" as dns;\n{HEAD}plan.group(\"web\", vms_tagged(\"tier\", \"web\"));\nplan.update_dns();\n\
             plan.post(|ctx| {{ dns::point(\"www.contoso.test\", ctx.vm(\"web01\").ip); dns::cname(\"shop.example.org\", \"lb.contoso.test\"); }});\nplan\n"
        ));
    let stderr = check(&work).fails(1).stderr;
    finding(
        &stderr,
        "error",
        (3, 19),
        "web02's DNS name web02.contoso.example (from the site file) cannot be updated: no [[dns.servers]] of \
         drplan.toml serves its zone (zones: contoso.test), so plan.update_dns() would fail (R50)",
    );
    finding(&stderr, "error", (5, 82), "DNS name shop.example.org cannot be updated");
    assert!(stderr.ends_with("error: the plan has 2 errors; see above\n"), "{stderr}");
    // Without [dns], updates are only recorded: nothing to check them against.
    let work = work.file("drplan.toml", "[hooks]\nscripts = [\"hooks/notify.rhai\"]\n");
    check(&work).ok();
}

#[test]
fn check_warns_where_a_plan_would_block_for_an_unreasonable_time() {
    let work = contoso_plan(
        "plan.group(\"web\", vms_tagged(\"tier\", \"web\")).retry(6, \"1m\")\n    .post_each(|vm, ctx| wait(\"1000d\"));",
    );
    let run = check(&work).ok();
    finding(
        &run.stderr,
        "warning",
        (2, 46),
        "retry(6, \"1m\") waits 1h3m in all between attempts (1m first, doubling each time), longer than the plan's RTO target of 1h",
    );
    finding(
        &run.stderr,
        "warning",
        (3, 31),
        "wait(\"1000d\") holds the run for 1000d, longer than the plan's RTO target of 1h",
    );
    // Without an RTO target, a day is the bound.
    let work = Workdir::contoso().plan(
        "let plan = recovery_plan(\"t\", #{ source: \"primary\", target: \"secondary\" });\n\
         plan.group(\"web\", [\"web01\"]).post(|ctx| { wait(\"23h\"); wait_port(ctx.vm(\"web01\").ip, 443, \"2d\"); });\nplan\n",
    );
    let run = check(&work).ok();
    let line =
        finding(&run.stderr, "warning", (2, 91), "wait_port with a timeout of \"2d\" may hold the run for up to 2d");
    assert!(line.ends_with("longer than 1d, the bound of a plan that sets no rto"), "{line}");
    assert!(run.stdout.contains("1 warning"), "the 23h wait is fine: {}", run.stdout);
}

#[test]
fn a_closure_that_captures_the_plan_is_an_error_that_says_what_to_write_instead() {
    let work = contoso_plan("plan.group(\"web\", [\"web01\"]);\nplan.pre(|ctx| log(`${plan.name} starts`));");
    let stderr = check(&work).fails(1).stderr;
    let line = finding(&stderr, "error", (3, 23), "the closure given to pre(...) captures `plan`");
    assert!(line.contains("(ctx.plan is the plan's name"), "{line}");
    assert!(!stderr.contains("Data race"), "{stderr}");
}

#[test]
fn a_limit_hit_inside_an_action_carries_the_actions_position() {
    let work = contoso_plan("fn deeper(n) { deeper(n + 1) }\nplan.group(\"web\", [\"web01\"]).post(|ctx| deeper(0));");
    let run = work.run(&["dry-run", "plan.rhai"]).fails(1);
    assert!(run.stdout.contains("plan.rhai:3:30: call stack too deep"), "{}", run.stdout);
}

#[test]
fn a_check_with_many_findings_shows_each_at_its_line_with_a_caret() {
    let work = Workdir::contoso().site_edit(add_backup_network).plan(
        "let plan = recovery_plan(\"t\", #{ source: \"primary\", target: \"secondary\", rto: \"30m\" });\n\
         plan.group(\"db\", [\"sql01\", \"sql99\"]).retry(8, \"1m\");\n\
         plan.group(\"app\", [\"sql02\", \"bk01\"])\n    .post(|ctx| wait(\"1000d\"));\n\
         plan.group(\"web\", vms_tagged(\"tier\", \"web\")).on_failure(\"later\");\n\
         plan\n",
    );
    let stderr = check(&work).fails(1).stderr;
    insta::assert_snapshot!("many_findings", stderr);
}
