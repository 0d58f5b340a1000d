//! `kiln run --base CLOUD_IMAGE` on a real cloud-init guest (tests/fixtures/debian-cloud-image.sh:
//! root locked, no user, no password — nobody gets in without a NoCloud seed): the published
//! image passes verify, the base is byte-identical afterwards, a second run resumes, a seedless
//! boot of the result lets root in with an empty password and cloud-init does not run at all;
//! configuring it again logs in as root; a user-data that is not valid YAML fails with
//! cloud-init's own words. And the same way in through the workbench, in tmux, as a new user
//! takes it. Seven boots under TCG.

mod support;

use std::path::Path;
use std::time::Duration;

use support::fixtures::cloud_image;
use support::guest::{boot, openssh, qemu_running_with};
use support::tmux::{Tmux, step_line};
use support::{Sandbox, kiln_bin, offline_runner, text};

const LOGIN: Duration = Duration::from_secs(600);
const SCREEN: Duration = Duration::from_secs(20);
const MACHINE: Duration = Duration::from_secs(600);

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

    // Configured again: cloud-init is off by now and the build user gone, so kiln logs in as
    // root with the empty password instead of through a seed; its sshd_config is already the
    // reference one, so there is no change to approve.
    let (again, _) = run(
        &sandbox,
        &["ci.qcow2", "--from", "configure", "--until", "configure"],
    );
    let stderr = text(&again.stderr);
    assert!(again.status.success(), "{stderr}");
    assert!(stderr.contains("configured before"), "{stderr}");
    assert!(stderr.contains("waiting for SSH as root"), "{stderr}");
    assert!(stderr.contains("nothing to approve"), "{stderr}");

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

/// A new user in the workbench: create a disk, choose "cloud image" on Install and pick the
/// file (Tab completes it), copy, configure (no password asked: kiln's seed lets it in),
/// verify. The base is only read and the session file names it with its SHA-256.
#[test]
fn the_workbench_starts_from_a_cloud_image_through_install() {
    let base = cloud_image();
    let before = sha256(&base);
    let sandbox = Sandbox::new();
    // The base beside the work, as a person keeps the download.
    let local_base = sandbox.work().join("debian-12-genericcloud-amd64.qcow2");
    std::os::unix::fs::symlink(&base, &local_base).unwrap();
    let command = format!(
        "{} '{}' --memory 1024 --cpus 1; echo \"KILN-EXITED $?\"; sleep 600",
        sandbox.shell_prefix(),
        kiln_bin()
    );
    let tmux = Tmux::start("cloud-workbench", 120, 40, &command);
    tmux.wait_for("Steps", SCREEN);
    tmux.keys(&["Enter", "C-u"]);
    tmux.type_text("ci.qcow2");
    tmux.keys(&["Tab", "C-u"]);
    tmux.type_text("4G");
    tmux.keys(&["Enter"]);
    tmux.wait_for("image created", SCREEN);

    // Install: the cursor waits in the empty ISO field; two fields down is where the system
    // comes from. Right twice: "cloud image", and the installer's fields give way to its own.
    tmux.keys(&["n"]);
    tmux.wait_for("Boot installer", SCREEN);
    tmux.keys(&["Tab", "Tab", "Right", "Right"]);
    let screen = tmux.wait_for("Copy the cloud image", SCREEN);
    assert!(!screen.contains("Install    by hand"), "{screen}");
    assert!(screen.contains("User-data"), "{screen}");
    tmux.keys(&["Tab"]);
    tmux.type_text("debian-12-g");
    tmux.keys(&["Tab"]); // completes the one file that starts so
    tmux.wait_for("a standalone qcow2 image; only read", SCREEN);
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("kiln gets in through a NoCloud seed", MACHINE);
    assert!(step_line(&screen, "Install").ends_with("done"), "{screen}");

    // Configure: nothing to type; the seed's key lets kiln in, cloud-init's lines show.
    tmux.keys(&["n"]);
    tmux.wait_for("not needed for a cloud image", SCREEN);
    tmux.keys(&["Enter"]);
    tmux.wait_for("Apply this sshd_config?", MACHINE);
    tmux.keys(&["y"]);
    tmux.wait_for("root logs in with an empty password", MACHINE);
    // The step's log (F2) holds cloud-init's own lines, a page or more above its end.
    tmux.keys(&["F2"]);
    let mut log = tmux.wait_for("Configure log", SCREEN);
    for _ in 0..30 {
        if log.contains("cloud-init: done, no warnings") {
            break;
        }
        tmux.keys(&["PageUp"]);
        log = tmux.capture();
    }
    assert!(log.contains("cloud-init: done, no warnings"), "{log}");
    assert!(log.contains("Datasource DataSourceNoCloud"), "{log}");
    tmux.keys(&["Escape"]);

    tmux.keys(&["n", "Enter"]); // Verify, with the carried disk
    let screen = tmux.wait_for("the CI driver should accept this image", MACHINE);
    assert!(!screen.contains("[FAIL]"), "{screen}");
    tmux.keys(&["Escape"]);
    tmux.keys(&["q"]);
    tmux.wait_for("KILN-EXITED 0", SCREEN);
    drop(tmux);

    assert!(!qemu_running_with(&sandbox.path().display().to_string()));
    assert_eq!(sha256(&base), before, "the base image changed");
    let session = std::fs::read_to_string(sandbox.work().join("ci.kiln.toml")).unwrap();
    assert!(session.contains(&before), "{session}");
    assert!(session.contains("genericcloud"), "{session}");
    let info = support::qemu_img_info(&sandbox.work().join("ci.qcow2"));
    assert_eq!(info["virtual-size"], 4u64 << 30, "{info}");
    assert!(info.get("backing-filename").is_none(), "{info}");
}
