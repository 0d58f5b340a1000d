//! `kiln run`, the headless flow: resumes from the image's session file, stops at the first
//! failure with its exit code, refuses to publish bytes that were not verified. Real QEMU
//! (TCG), the real guests from tests/fixtures, the contract-checking fake Djinn server.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use support::djinn::{DjinnConfig, DjinnServer};
use support::fixtures::{fixtures, variant};
use support::{Sandbox, kiln_bin, text};

/// A distinctive token, so a leak into the session file or any output cannot be missed.
const SECRET: &str = "kiln-flow-secret-4c1d9e77a0b2";

/// `kiln run ARGS… --format json` in the sandbox, with the Djinn token in the environment.
fn run(sandbox: &Sandbox, args: &[&str]) -> (Output, Value) {
    let out = Command::new(kiln_bin())
        .arg("run")
        .args(args)
        .args(["--format", "json"])
        .current_dir(sandbox.work())
        .envs(sandbox.env())
        .env("KILN_DJINN_TOKEN", SECRET)
        .output()
        .expect("kiln runs");
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON object ({e}):\n{}\nstderr:\n{}",
            text(&out.stdout),
            text(&out.stderr)
        )
    });
    (out, json)
}

/// `step → status` from `kiln run`'s JSON.
fn statuses(json: &Value) -> Vec<(String, String)> {
    json["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap().to_string(),
                s["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn expect(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn copy_into(sandbox: &Sandbox, from: &Path, name: &str) -> std::path::PathBuf {
    let to = sandbox.work().join(name);
    std::fs::copy(from, &to).expect("copy the fixture");
    to
}

#[test]
fn the_flow_resumes_from_its_session_and_refuses_to_publish_unverified_bytes() {
    let sandbox = Sandbox::new();
    let djinn = DjinnServer::start(DjinnConfig::default().token(
        SECRET,
        "tester",
        &["image:write", "image:read"],
    ));
    let url = djinn.base_url();
    // The namespace comes from the config file: no --namespace on any command line below.
    std::fs::create_dir_all(sandbox.config_dir()).unwrap();
    std::fs::write(
        sandbox.config_dir().join("config.toml"),
        "[djinn]\nnamespace = \"teamimages\"\n",
    )
    .unwrap();
    // An image that already passes every check: kiln adopts it (create and install skipped)
    // and is told to start at verify (configure was done another way: skipped too).
    let image = copy_into(&sandbox, &variant("good"), "ci.qcow2");
    let (out, json) = run(
        &sandbox,
        &[
            "ci.qcow2", "--from", "verify", "--to", "djinn", "--url", &url, "--name", "flow",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        statuses(&json),
        expect(&[
            ("create", "skipped"),
            ("install", "skipped"),
            ("configure", "skipped"),
            ("verify", "done"),
            ("publish", "done"),
        ])
    );
    assert_eq!(json["resume_at"], Value::Null);
    let stored = djinn.images();
    assert_eq!(stored.len(), 1);
    assert_eq!(
        djinn.stored_bytes(stored[0].id),
        std::fs::read(&image).unwrap()
    );
    assert_eq!(
        stored[0].namespace, "teamimages",
        "the config file's namespace"
    );

    let session = std::fs::read_to_string(sandbox.work().join("ci.kiln.toml")).unwrap();
    assert!(session.contains("target = \"djinn\""), "{session}");
    assert!(
        !session.contains(SECRET),
        "the token is in the session file"
    );

    // Again, without --from: every step is done, nothing runs or uploads.
    let (out, json) = run(&sandbox, &["ci.qcow2"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        json["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["seconds"] == 0.0),
        "a done step ran again: {json}"
    );
    assert_eq!(djinn.upload_count(), 1);

    // The image changes after verify (it grows): publishing it is refused, by `kiln publish`
    // as by the flow, until verify has run on the new bytes.
    let grow = Command::new("qemu-img")
        .args(["resize", "ci.qcow2", "+64M"])
        .current_dir(sandbox.work())
        .output()
        .unwrap();
    assert!(grow.status.success(), "{}", text(&grow.stderr));
    let refused = Command::new(kiln_bin())
        .args([
            "publish", "ci.qcow2", "--to", "djinn", "--url", &url, "--name", "flow2",
        ])
        .current_dir(sandbox.work())
        .envs(sandbox.env())
        .env("KILN_DJINN_TOKEN", SECRET)
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused.stderr));
    assert!(
        text(&refused.stderr).contains("verify is stale (the image changed since)"),
        "{}",
        text(&refused.stderr)
    );
    assert_eq!(djinn.upload_count(), 1, "refused, yet something was sent");

    let (out, json) = run(&sandbox, &["ci.qcow2", "--name", "flow2"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ran: Vec<(String, String)> = statuses(&json)
        .into_iter()
        .filter(|(step, _)| step == "verify" || step == "publish")
        .collect();
    assert_eq!(ran, expect(&[("verify", "done"), ("publish", "done")]));
    assert!(
        json["steps"][3]["seconds"].as_f64().unwrap() > 0.0,
        "verify did not run again: {json}"
    );
    assert_eq!(json["resume_at"], Value::Null);
    let stored = djinn.images();
    assert_eq!(stored.len(), 2);
    assert_eq!(
        djinn.stored_bytes(stored[1].id),
        std::fs::read(&image).unwrap(),
        "the second upload is the grown image"
    );
}

#[test]
fn the_flow_stops_at_the_first_failure_with_its_exit_code_and_resumes_there() {
    let sandbox = Sandbox::new();
    // No ISO: create runs, install cannot — a usage error (exit 2) recorded in the session.
    let (out, json) = run(&sandbox, &["new.qcow2", "--size", "1G"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert_eq!(
        statuses(&json),
        expect(&[("create", "done"), ("install", "failed")])
    );
    assert!(
        json["steps"][1]["summary"]
            .as_str()
            .unwrap()
            .contains("--iso"),
        "{json}"
    );
    assert_eq!(json["resume_at"], "install");
    assert!(sandbox.work().join("new.qcow2").exists());

    // An installed disk with the wrong password: configure fails (exit 1), verify never runs.
    copy_into(&sandbox, &fixtures().disk, "installed.qcow2");
    std::fs::write(sandbox.work().join("pw"), "not-the-password\n").unwrap();
    let user = fixtures().var("KILN_GUEST_USER");
    let (out, json) = run(
        &sandbox,
        &["installed.qcow2", "--user", user, "--password-file", "pw"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(
        statuses(&json),
        expect(&[
            ("create", "skipped"),
            ("install", "skipped"),
            ("configure", "failed"),
        ])
    );
    assert!(
        json["steps"][2]["summary"]
            .as_str()
            .unwrap()
            .contains("password rejected"),
        "{json}"
    );
    assert_eq!(json["resume_at"], "configure");
    let session = std::fs::read_to_string(sandbox.work().join("installed.kiln.toml")).unwrap();
    assert!(session.contains(&format!("user = \"{user}\"")), "{session}");
    assert!(
        !session.contains("not-the-password"),
        "a password was recorded"
    );
    assert!(
        !support::guest::qemu_running_with(&sandbox.work().display().to_string()),
        "a machine outlived the failed step"
    );
}
