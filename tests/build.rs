//! `kiln build RECIPE.toml`: a recipe rebuilds an image unattended — install from the fixture
//! ISO, configure, provision (a file and a script), clean up, verify, publish to the
//! contract-checking Djinn fake and an offline runner, then a post-build command. A broken
//! recipe fails before QEMU starts; a failing script fails the build and publishes nothing.

mod support;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use support::djinn::{DjinnConfig, DjinnServer};
use support::fixtures::{fixtures, variant};
use support::guest::{boot, openssh, qemu_running_with};
use support::{
    FIXTURE_CI_STAGES, Sandbox, assert_published_twice, kiln_bin, offline_runner, text,
    write_script,
};

const TOKEN: &str = "kiln-build-secret-7f3a";

/// `kiln build ARGS…` in the sandbox, with the Djinn token in the environment.
fn build(sandbox: &Sandbox, args: &[&str]) -> Output {
    Command::new(kiln_bin())
        .args(["--memory", "1024", "build"])
        .args(args)
        .current_dir(sandbox.work())
        .envs(sandbox.env())
        .env("KILN_DJINN_TOKEN", TOKEN)
        .output()
        .expect("kiln runs")
}

/// The provisioning files: a motd to upload, a script that leaves evidence of its
/// environment, and a post-build command that records its own.
fn write_files(dir: &Path) {
    std::fs::create_dir_all(dir.join("files")).unwrap();
    std::fs::create_dir_all(dir.join("scripts")).unwrap();
    std::fs::write(dir.join("files/motd"), "built by a kiln recipe\n").unwrap();
    let scripts = [
        (
            "setup.sh",
            "#!/bin/sh\nset -e\necho \"setting up $TOOLCHAIN\"\n\
             echo \"$TOOLCHAIN\" > /etc/kiln-toolchain\necho done\n",
        ),
        ("fail.sh", "#!/bin/sh\necho before the failure\nexit 3\n"),
        (
            "count.sh",
            "#!/bin/sh\necho run >> /root/count-runs\necho counted $(wc -l < /root/count-runs)\n",
        ),
        (
            "post.sh",
            "#!/bin/sh\nenv | grep '^KILN_IMAGE' | sort > \"$(dirname \"$0\")/post-build.env\"\n",
        ),
    ];
    for (name, body) in scripts {
        write_script(&dir.join("scripts").join(name), body);
    }
    std::fs::write(
        dir.join("password.txt"),
        format!("{}\n", fixtures().var("KILN_GUEST_PASSWORD")),
    )
    .unwrap();
}

#[test]
fn a_recipe_installs_configures_provisions_verifies_publishes_twice_and_reports() {
    let sandbox = Sandbox::new();
    let recipes = sandbox.path().join("recipes");
    write_files(&recipes);
    let djinn = DjinnServer::start(DjinnConfig::default().token(
        TOKEN,
        "builder",
        &["image:write", "image:read"],
    ));
    let (driver_conf, runner_images) = offline_runner(&sandbox);
    // The repository's reference recipe, with this machine's values given as --var.
    let recipe = recipes.join("ci.toml");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/recipes/fixture-ci.toml"),
        &recipe,
    )
    .unwrap();
    let vars = [
        format!("install.iso={}", fixtures().iso.display()),
        format!("configure.user={}", fixtures().var("KILN_GUEST_USER")),
        format!("publish.0.url={}", djinn.base_url()),
        format!("publish.1.driver_conf={}", driver_conf.display()),
    ];
    let mut args = vec![recipe.display().to_string()];
    for var in &vars {
        args.extend(["--var".to_string(), var.clone()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = build(&sandbox, &args);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "build failed:\n{stderr}");
    assert!(!stderr.contains(TOKEN) && !text(&out.stdout).contains(TOKEN));
    // The script's output was streamed.
    assert!(stderr.contains("[setup.sh] setting up stable"), "{stderr}");
    // No cpus in the recipe: under TCG each machine's vCPUs were chosen at power-on, and said.
    assert!(stderr.contains("accelerator: "), "{stderr}");
    if stderr.contains("accelerator: TCG") {
        let chosen = stderr
            .lines()
            .filter(|line| line.contains("machine: ") && line.ends_with(" host cores idle)"))
            .count();
        assert!(chosen >= 3, "install, configure and provision: {stderr}");
    }

    // The JSON summary: every step with its status, the image's facts, both destinations.
    let image = recipes.join("ci-image.qcow2");
    let summary: Value = serde_json::from_str(
        &std::fs::read_to_string(recipes.join("ci-image.build.json")).unwrap(),
    )
    .unwrap();
    let steps: Vec<(String, String)> = summary["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap().into(),
                s["status"].as_str().unwrap().into(),
            )
        })
        .collect();
    let names: Vec<&str> = steps.iter().map(|(step, _)| step.as_str()).collect();
    assert_eq!(names, FIXTURE_CI_STAGES);
    assert!(
        steps.iter().all(|(_, status)| status == "done"),
        "{steps:?}"
    );
    let sha256 = summary["sha256"].as_str().unwrap().to_string();
    assert_eq!(sha256.len(), 64);
    assert_eq!(summary["destinations"].as_array().unwrap().len(), 2);
    assert!(recipes.join("ci-image.build.log").exists());
    let junit = std::fs::read_to_string(recipes.join("ci-image.verify-djinn.junit.xml")).unwrap();
    assert!(
        junit.contains("<testsuite") && junit.contains("failures=\"0\""),
        "{junit}"
    );

    // Published: the fake got the verified bytes, the runner's directory has the image.
    assert_published_twice(&djinn, &runner_images, &image, "ci-image");
    // The post-build command got the image's facts.
    let post_env = std::fs::read_to_string(recipes.join("scripts/post-build.env")).unwrap();
    assert!(post_env.contains("KILN_IMAGE_NAME=ci-image"), "{post_env}");
    assert!(
        post_env.contains(&format!("KILN_IMAGE_SHA256={sha256}")),
        "{post_env}"
    );
    assert!(
        post_env.contains(&format!("KILN_IMAGE_PATH={}", image.display())),
        "{post_env}"
    );
    assert!(post_env.contains("KILN_IMAGE_SIZE="), "{post_env}");
    assert!(!qemu_running_with(&recipes.display().to_string()));

    // Independently of kiln: root logs in to the result, which has the provisioned files.
    let guest = boot(&image, &sandbox.path().join("boot.log"));
    let out = openssh(
        guest.ssh_port,
        "root",
        "",
        "cat /etc/motd /etc/kiln-toolchain; wc -c < /etc/machine-id",
        Duration::from_secs(300),
    );
    let shown = text(&out.stdout);
    assert!(out.status.success(), "{}\n{shown}", text(&out.stderr));
    assert!(shown.contains("built by a kiln recipe"), "{shown}");
    assert!(shown.contains("stable"), "{shown}");
}

#[test]
fn a_broken_recipe_fails_before_any_machine_starts_naming_the_place() {
    let sandbox = Sandbox::new();
    let dir = sandbox.path().join("broken");
    write_files(&dir);
    let cases = [
        ("name = \"x\"\ncolour = \"red\"\n", "line 2"),
        (
            "name = \"x\"\n[disk]\nsize = \"lots\"\n[base]\nimage = \"base.qcow2\"\n",
            "line 3",
        ),
        (
            "name = \"x\"\n[disk]\nsize = \"4G\"\n[install]\niso = \"missing.iso\"\n",
            "missing.iso",
        ),
    ];
    for (text_of_recipe, expected) in cases {
        let recipe = dir.join("recipe.toml");
        std::fs::write(&recipe, text_of_recipe).unwrap();
        let out = build(&sandbox, &[recipe.to_str().unwrap()]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text_of_recipe}: {stderr}");
        assert!(
            stderr.contains("recipe.toml") && stderr.contains(expected),
            "{text_of_recipe}: {stderr}"
        );
        assert!(!dir.join("x.qcow2").exists(), "work started: {stderr}");
    }
}

#[test]
fn a_failing_provisioning_script_fails_the_build_and_resume_reruns_it_not_the_ones_before() {
    let sandbox = Sandbox::new();
    let dir = sandbox.path().join("failing");
    write_files(&dir);
    // A base image that is already configured (root logs in with an empty password).
    std::fs::copy(variant("good"), dir.join("base.qcow2")).unwrap();
    let (driver_conf, runner_images) = offline_runner(&sandbox);
    let recipe = dir.join("recipe.toml");
    std::fs::write(
        &recipe,
        format!(
            "name = \"failing\"\n[base]\nimage = \"base.qcow2\"\n[configure]\nuser = \"root\"\n\
             [[provision]]\nshell = \"scripts/count.sh\"\n\
             [[provision]]\nshell = \"scripts/fail.sh\"\n[[publish]]\nto = \"offline\"\n\
             driver_conf = \"{}\"\n",
            driver_conf.display()
        ),
    )
    .unwrap();
    let base_before = std::fs::read(dir.join("base.qcow2")).unwrap();
    let out = build(&sandbox, &[recipe.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("fail.sh failed (exit status 3)"),
        "{stderr}"
    );
    assert!(stderr.contains("before the failure"), "{stderr}");
    assert!(stderr.contains("[count.sh] counted 1"), "{stderr}");
    assert_eq!(
        std::fs::read_dir(&runner_images).unwrap().count(),
        0,
        "something was published"
    );
    // The base was copied, never changed.
    assert_eq!(std::fs::read(dir.join("base.qcow2")).unwrap(), base_before);
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("failing.build.json")).unwrap())
            .unwrap();
    let status_of = |name: &str| {
        summary["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["step"] == name)
            .map(|s| s["status"].clone())
    };
    assert_eq!(status_of("provision 1"), Some("done".into()), "{summary}");
    assert_eq!(status_of("provision 2"), Some("failed".into()), "{summary}");
    // Each provisioning step has its own record, the first with its inputs' digest.
    let session = std::fs::read_to_string(dir.join("failing.kiln.toml")).unwrap();
    assert!(
        session.contains("[steps.provision-1]") && session.contains("[steps.provision-2]"),
        "{session}"
    );
    assert!(!qemu_running_with(&dir.display().to_string()));
    let image = dir.join("failing.qcow2");
    let image_before = std::fs::metadata(&image).unwrap();

    // Fixed, and resumed: the stages done before are not run again — not the base copy, not
    // the first script (the guest's count would say 2) — the failed script and the rest are.
    std::fs::write(dir.join("scripts/fail.sh"), "#!/bin/sh\necho fixed\n").unwrap();
    let out = build(&sandbox, &[recipe.to_str().unwrap(), "--resume"]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // A base copy is a new file renamed over the image; the image is still the first run's
    // file (nothing else replaces it), and the base was only read.
    let image_after = std::fs::metadata(&image).unwrap();
    assert_eq!(
        (image_after.dev(), image_after.ino()),
        (image_before.dev(), image_before.ino()),
        "the base was copied over the image again: {stderr}"
    );
    assert_eq!(std::fs::read(dir.join("base.qcow2")).unwrap(), base_before);
    assert!(stderr.contains("[fail.sh] fixed"), "{stderr}");
    assert!(
        !stderr.contains("[count.sh]"),
        "the first script ran again: {stderr}"
    );
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("failing.build.json")).unwrap())
            .unwrap();
    let statuses: Vec<(String, String)> = summary["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap().into(),
                s["status"].as_str().unwrap().into(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("base", "skipped"),
        ("configure", "skipped"),
        ("provision 1", "skipped"),
        ("provision 2", "done"),
        ("verify djinn", "done"),
        ("publish offline", "done"),
        ("post-build", "done"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(statuses, expected);
    assert_eq!(
        files_under(&runner_images),
        1,
        "the image was not published"
    );
}

/// How many files are under `dir`, at any depth.
fn files_under(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .map(|path| if path.is_dir() { files_under(&path) } else { 1 })
        .sum()
}
