//! `kiln check` against real images: a good one passes everything without being modified;
//! each broken variant fails its own check and nothing unrelated.

mod support;

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;
use support::fixtures::variant;
use support::guest::qemu_running_with;
use support::{Sandbox, text};

/// `kiln check IMAGE --format json ARGS…`: the exit code and the report.
fn check(image: &Path, args: &[&str]) -> (Option<i32>, Value) {
    let sandbox = Sandbox::new();
    let mut all = vec!["check", image.to_str().unwrap(), "--format", "json"];
    all.extend(args);
    let out = sandbox.kiln(&all);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}):\n{}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        )
    });
    assert!(
        !qemu_running_with(&image.display().to_string()),
        "QEMU left running"
    );
    (out.status.code(), report)
}

/// The check `id` in a JSON report.
fn check_named<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no check {id}: {report:#}"))
}

fn ids(report: &Value, verdict: &str) -> BTreeSet<String> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["verdict"] == verdict)
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect()
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

fn sha256(path: &Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .unwrap();
    text(&out.stdout)
}

#[test]
fn a_good_image_passes_every_check_and_is_not_modified() {
    let image = variant("good");
    let before = sha256(&image);
    let (code, report) = check(&image, &[]);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(ids(&report, "fail"), set(&[]), "{report:#}");
    assert_eq!(report["checks"].as_array().unwrap().len(), 21);
    let argv = report["driver_argv"].as_array().unwrap();
    assert!(
        argv.iter().any(|a| a == "-daemonize"),
        "the driver's own argv is reported"
    );
    assert_eq!(sha256(&image), before, "kiln check wrote to the image");
}

/// Bootable variants: the named check fails; the ones the driver never reaches are skipped.
#[test]
fn login_defects_fail_the_login_check_only() {
    for name in ["root-password", "no-empty-passwords", "prohibit-password"] {
        let (code, report) = check(&variant(name), &[]);
        assert_eq!(code, Some(1), "{name}");
        assert_eq!(
            ids(&report, "fail"),
            set(&["root-login"]),
            "{name}: {report:#}"
        );
        assert_eq!(
            ids(&report, "skipped"),
            set(&[
                "sftp",
                "script-upload",
                "env",
                "script-run",
                "artifact",
                "ready-time",
                "no-passwords-left"
            ]),
            "{name}"
        );
    }
}

#[test]
fn a_missing_sftp_subsystem_fails_sftp_with_the_drivers_hint() {
    let (code, report) = check(&variant("no-sftp"), &[]);
    assert_eq!(code, Some(1));
    assert_eq!(ids(&report, "fail"), set(&["sftp"]), "{report:#}");
    let sftp = check_named(&report, "sftp");
    assert!(
        sftp["detail"].as_str().unwrap().contains("Subsystem"),
        "{sftp:#}"
    );
    assert!(
        sftp["fix"]
            .as_str()
            .unwrap()
            .contains("Subsystem sftp internal-sftp")
    );
}

#[test]
fn a_missing_accept_env_fails_env_and_names_the_directive() {
    let (code, report) = check(&variant("no-acceptenv"), &[]);
    assert_eq!(code, Some(1));
    assert_eq!(ids(&report, "fail"), set(&["env"]), "{report:#}");
    let env = check_named(&report, "env");
    assert!(
        env["detail"].as_str().unwrap().contains("acceptenv"),
        "sshd -T is quoted: {env:#}"
    );
}

#[test]
fn a_disabled_sshd_fails_the_banner_check() {
    // The deadline is far off: the verdict comes from the guest having finished booting.
    let (code, report) = check(&variant("sshd-disabled"), &["--timeout", "600"]);
    assert_eq!(code, Some(1));
    assert_eq!(ids(&report, "fail"), set(&["ssh-banner"]), "{report:#}");
    let banner = check_named(&report, "ssh-banner");
    let detail = banner["detail"].as_str().unwrap();
    // systemd reached its default target (the getty's `login:` alone is not enough: a
    // first-boot job may still hold sshd back then).
    assert!(
        detail.contains("finished booting") && detail.contains("Reached target multi-user.target"),
        "{detail}"
    );
    // The port's behaviour is the evidence, and it picks the fix: the guest's network is up.
    assert!(detail.contains("nothing listens on port 22"), "{detail}");
    let fix = banner["fix"].as_str().unwrap_or_default();
    assert!(
        fix.contains("systemctl enable ssh") && !fix.contains("DHCP"),
        "{banner:#}"
    );
    assert!(
        ids(&report, "pass").contains("boots"),
        "the guest itself booted: {report:#}"
    );
}

#[test]
fn file_defects_fail_their_static_checks_only() {
    let cases: [(&str, &[&str]); 3] = [
        ("compat010", &["qcow2-v3"]),
        ("backing", &["standalone"]),
        ("raw", &["qcow2-magic", "format"]),
    ];
    for (name, failing) in cases {
        let (code, report) = check(&variant(name), &["--static-only"]);
        assert_eq!(code, Some(1), "{name}");
        assert_eq!(ids(&report, "fail"), set(failing), "{name}: {report:#}");
    }
}

#[test]
fn junit_and_text_reports() {
    let sandbox = Sandbox::new();
    let image = variant("compat010");
    let out = sandbox.kiln(&[
        "check",
        image.to_str().unwrap(),
        "--static-only",
        "--format",
        "junit",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let xml = text(&out.stdout);
    assert!(xml.starts_with("<?xml"), "{xml}");
    assert!(xml.contains("tests=\"10\" failures=\"1\""), "{xml}");
    assert!(
        xml.contains(
            "<testcase classname=\"kiln.check\" name=\"qcow2-v3: qcow2 v3 (compat 1.1)\"><failure"
        ),
        "{xml}"
    );
    let out = sandbox.kiln(&["check", image.to_str().unwrap(), "--static-only"]);
    let report = text(&out.stdout);
    assert!(report.contains("[FAIL] qcow2 v3 (compat 1.1)"), "{report}");
    assert!(
        report.contains("fix: qemu-img amend -f qcow2 -o compat=1.1"),
        "{report}"
    );

    let out = sandbox.kiln(&["check", "/nonexistent.qcow2", "--static-only"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("does not exist"));
}

/// QEMU killed while the driver's procedure waits for SSH: the check says so at once, in
/// QEMU's words, instead of dialling a dead port until the deadline.
#[test]
fn a_machine_killed_during_the_ssh_wait_is_reported_at_once() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let sandbox = Sandbox::new();
    let image = sandbox.work().join("killed.qcow2");
    std::fs::copy(variant("good"), &image).unwrap();
    let mut child = Command::new(support::kiln_bin())
        .args(["check", image.to_str().unwrap(), "--format", "json"])
        .args(["--timeout", "250"])
        .current_dir(sandbox.work())
        .envs(sandbox.env())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen = String::new();
    for line in std::io::BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("waiting for SSH on 127.0.0.1:") {
            let killed = Command::new("pkill")
                .args(["-KILL", "-f", &format!("qemu-system.*{}", image.display())])
                .status()
                .unwrap();
            assert!(killed.success(), "no QEMU to kill:\n{seen}");
        }
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{seen}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let port = check_named(&report, "ssh-port").clone();
    assert_eq!(port["verdict"], "fail", "{report}");
    let detail = port["detail"].as_str().unwrap();
    assert!(detail.contains("the machine ended after"), "{detail}");
    assert!(detail.contains("QEMU ended"), "{detail}");
    assert!(!qemu_running_with(&image.display().to_string()));
}
