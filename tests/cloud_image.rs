//! `kiln run --base CLOUD_IMAGE` on a real cloud-init guest (tests/fixtures/debian-cloud-image.sh:
//! root locked, no user, no password — nobody gets in without a NoCloud seed): the published
//! image passes verify, the base is byte-identical afterwards, a second run resumes, a seedless
//! boot of the result lets root in with an empty password and cloud-init does not run at all;
//! a user-data that is not valid YAML fails with cloud-init's own words. Four boots under TCG.

mod support;

use std::path::Path;
use std::time::Duration;

use support::fixtures::cloud_image;
use support::guest::{boot, openssh, qemu_running_with};
use support::{Sandbox, offline_runner, text};

const LOGIN: Duration = Duration::from_secs(600);

fn sha256(path: &Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .unwrap();
    text(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn run(sandbox: &Sandbox, args: &[&str]) -> (std::process::Output, serde_json::Value) {
    let mut all = vec!["--memory", "1024", "--cpus", "1", "run"];
    all.extend(args);
    all.extend(["--format", "json"]);
    let out = sandbox.kiln(&all);
    let json = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out, json)
}

fn statuses(json: &serde_json::Value) -> Vec<(String, String)> {
    json["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("no steps in {json}"))
        .iter()
        .map(|step| {
            (
                step["step"].as_str().unwrap().to_string(),
                step["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_cloud_image_becomes_a_ci_image_that_boots_without_a_seed_and_the_base_stays_as_it_was() {
    let base = cloud_image();
    let before = sha256(&base);
    let sandbox = Sandbox::new();
    let (conf, disks) = offline_runner(&sandbox);
    let base_arg = base.display().to_string();
    let conf_arg = conf.display().to_string();
    let args = [
        "ci.qcow2",
        "--base",
        &base_arg,
        "--size",
        "4G",
        "--to",
        "offline",
        "--driver-conf",
        &conf_arg,
        "--name",
        "cloud",
        "--namespace",
        "debian/cloud",
    ];
    let (out, json) = run(&sandbox, &args);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let expected: Vec<(String, String)> = [
        ("base", "done"),
        ("configure", "done"),
        ("verify", "done"),
        ("publish", "done"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(statuses(&json), expected, "{stderr}");
    for seen in [
        "waiting for SSH as kiln-build",
        "cloud-init: Cloud-init v.",
        "cloud-init: done, no warnings",
        "proof passed",
        "removing the build user",
    ] {
        assert!(stderr.contains(seen), "`{seen}` missing:\n{stderr}");
    }
    assert!(!qemu_running_with(&sandbox.path().display().to_string()));

    // The base is only read, and the session says which base it was.
    assert_eq!(sha256(&base), before, "the base image changed");
    let session = std::fs::read_to_string(sandbox.work().join("ci.kiln.toml")).unwrap();
    assert!(session.contains(&base_arg), "{session}");
    assert!(session.contains(&before), "{session}");
    let info = support::qemu_img_info(&sandbox.work().join("ci.qcow2"));
    assert_eq!(info["format-specific"]["data"]["compat"], "1.1", "{info}");
    assert!(info.get("backing-filename").is_none(), "{info}");
    assert_eq!(info["virtual-size"], 4u64 << 30, "{info}");

    // A second run resumes: nothing is done again.
    let (again, json) = run(&sandbox, &["ci.qcow2"]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    for (step, status) in statuses(&json) {
        assert_eq!(
            status,
            "skipped",
            "{step} ran again: {}",
            text(&again.stderr)
        );
    }

    // The published image, booted as the CI driver does (no seed): root gets in with an empty
    // password, the build user is gone, and cloud-init's generator turned it off before any
    // of its stages could look for a datasource.
    let published = disks.join("qemu/x86_64/debian/cloud/cloud");
    assert!(published.is_file());
    let guest = boot(&published, &sandbox.path().join("published.serial.log"));
    let out = openssh(
        guest.ssh_port,
        "root",
        "",
        "cat /run/cloud-init/cloud-init-generator.log; ls /run/cloud-init; \
         ls /var/log/cloud-init.log 2>&1; id kiln-build 2>&1; cloud-init status --long",
        LOGIN,
    );
    let said = text(&out.stdout);
    assert!(out.status.success(), "{said}{}", text(&out.stderr));
    assert!(said.contains("etc_file found disabled"), "{said}");
    assert!(said.contains("status: disabled"), "{said}");
    assert!(!said.contains("ds-identify.log"), "ds-identify ran: {said}");
    assert!(
        !said.contains("status.json"),
        "a cloud-init stage ran: {said}"
    );
    assert!(
        said.contains("cannot access '/var/log/cloud-init.log'"),
        "{said}"
    );
    assert!(said.contains("no such user"), "{said}");
}

#[test]
fn a_user_data_that_is_not_yaml_fails_with_cloud_inits_own_words() {
    let base = cloud_image();
    let sandbox = Sandbox::new();
    let user_data = sandbox.path().join("user-data");
    std::fs::write(
        &user_data,
        "#cloud-config\npackages: [git\nruncmd:\n  - true\n",
    )
    .unwrap();
    let base_arg = base.display().to_string();
    let user_data_arg = user_data.display().to_string();
    let (out, json) = run(
        &sandbox,
        &[
            "broken.qcow2",
            "--base",
            &base_arg,
            "--user-data",
            &user_data_arg,
            "--until",
            "configure",
        ],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let configure = &statuses(&json)[1];
    assert_eq!(
        configure,
        &("configure".into(), "failed".into()),
        "{stderr}"
    );
    let summary = json["steps"][1]["summary"].as_str().unwrap();
    assert!(summary.contains("cloud-init reported"), "{summary}");
    assert!(summary.contains("Failed loading yaml blob"), "{summary}");
    assert!(!qemu_running_with(&sandbox.path().display().to_string()));
}
