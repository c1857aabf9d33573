//! The one diagnostic format through the real binary, one full text per kind of error:
//! severity first, then file:line:column and the message, then the line with a caret under
//! what is wrong. Site file, drplan.toml, plan finding and script error each pin theirs.

use crate::util::{CONTOSO_SITE, Run, Workdir};

/// A folder with the contoso site file, edited, and `plan.rhai` beside it.
fn folder(site_edit: impl Fn(String) -> String, plan: &str) -> Workdir {
    let work = Workdir::with_site(&site_edit(std::fs::read_to_string(CONTOSO_SITE).unwrap()));
    std::fs::write(work.path().join("plan.rhai"), plan).unwrap();
    work
}

/// `drplan check plan.rhai` in `work`: exit 1, stderr with the folder written as `[dir]`.
fn check_fails(work: &Workdir) -> String {
    let plan = work.path().join("plan.rhai");
    let run: Run = work.run(&["check", plan.to_str().unwrap()]).fails(1);
    run.stderr.replace(work.path().to_str().unwrap(), "[dir]")
}

const PLAN: &str = r#"let plan = recovery_plan("t", #{ source: "primary", target: "secondary" });
plan.group("db", ["sql01", "sql02"]);
plan
"#;

#[test]
fn a_site_file_error_is_shown_at_its_line_with_a_caret() {
    let work = folder(
        |site| site.replacen("network = \"prod\", subnet = \"db\"", "network = \"prod-x\", subnet = \"db\"", 1),
        PLAN,
    );
    insta::assert_snapshot!("site_file_error", check_fails(&work));
}

#[test]
fn each_error_of_a_site_file_has_its_own_severity() {
    let work = folder(
        |site| {
            site.replacen("hosts = [\"hv-p01\"", "hosts = [\"hv-p01\", \"hv-p01\"", 1).replacen(
                "os = \"windows\"",
                "os = \"dos\"",
                1,
            )
        },
        PLAN,
    );
    let stderr = check_fails(&work);
    assert_eq!(stderr.matches("error: [dir]/site.toml:").count(), 2, "{stderr}");
    assert!(stderr.ends_with("\n\n2 errors in [dir]/site.toml\n"), "{stderr}");
}

#[test]
fn a_site_file_that_is_not_utf8_is_refused_at_the_line_of_the_bad_byte() {
    let work = folder(|site| site.replacen("name = \"sql01\"", "name = \"sql\u{1}01\"", 1), PLAN);
    let site = std::fs::read(&work.site).unwrap();
    let at = site.iter().position(|&b| b == 1).unwrap();
    let mut bytes = site.clone();
    bytes[at] = 0xFF;
    std::fs::write(&work.site, bytes).unwrap();
    insta::assert_snapshot!("site_file_not_utf8", check_fails(&work));
}

#[test]
fn a_drplan_toml_error_is_shown_at_its_line_with_a_caret() {
    let work = folder(|site| site, PLAN);
    std::fs::write(work.path().join("drplan.toml"), "[hooks]\nscripts = [\"hooks/notify.rhai\", \"../shared.rhai\"]\n")
        .unwrap();
    insta::assert_snapshot!("drplan_toml_error", check_fails(&work));
}

#[test]
fn a_plan_finding_is_shown_at_its_line_with_a_caret_and_its_rule() {
    let plan = PLAN.replace("[\"sql01\", \"sql02\"]", "[\"sql01\", \"sql02\"]);\nplan.group(\"more\", [\"sql01\"]");
    let work = folder(|site| site, &plan);
    insta::assert_snapshot!("plan_finding", check_fails(&work));
}

#[test]
fn a_script_error_is_shown_at_its_line_with_a_caret() {
    let plan = PLAN.replace("plan.group(", "plan.grop(");
    let work = folder(|site| site, &plan);
    insta::assert_snapshot!("script_error", check_fails(&work));
}
