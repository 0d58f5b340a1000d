//! The whole life of an image in one workbench, in a real terminal: create → install (the
//! fixture installer ISO, console visible) → configure (as the fixture's sudo user) → verify →
//! publish to the contract-checking Djinn server. Midway kiln is killed with SIGKILL during
//! configure; the next kiln on the image resumes there. A last start shows every step done.
//! And a whole recipe — the reference `assets/recipes/fixture-ci.toml` — run by the workbench.

mod support;

use std::time::Duration;

use support::djinn::{DjinnConfig, DjinnServer};
use support::fixtures::fixtures;
use support::guest::qemu_running_with;
use support::tmux::{Tmux, step_line};
use support::{
    FIXTURE_CI_STAGES, Sandbox, assert_published_twice, kiln_bin, offline_runner, write_script,
};

const SCREEN: Duration = Duration::from_secs(20);
/// A whole install or boot-and-SSH under TCG on a loaded 2-core machine.
const MACHINE: Duration = Duration::from_secs(600);
const SECRET: &str = "kiln-e2e-secret-6b0f3c19e2d4";

/// kiln (with `args`) in the sandbox's work directory, then the exit status on screen.
fn workbench(sandbox: &Sandbox, name: &str, args: &str) -> Tmux {
    let command = format!(
        "{} KILN_DJINN_TOKEN={SECRET} '{}' --memory 1024 --cpus 1 {args}; \
         echo \"KILN-EXITED $?\"; sleep 600",
        sandbox.shell_prefix(),
        kiln_bin()
    );
    let tmux = Tmux::start(name, 120, 40, &command);
    tmux.wait_for("Steps", SCREEN);
    tmux
}

#[test]
fn blank_disk_to_published_image_in_one_workbench_killed_and_resumed() {
    let sandbox = Sandbox::new();
    let djinn = DjinnServer::start(DjinnConfig::default().token(
        SECRET,
        "tester",
        &["image:write", "image:read"],
    ));
    let image = sandbox.work().join("flow.qcow2");
    let user = fixtures().var("KILN_GUEST_USER");
    let password = fixtures().var("KILN_GUEST_PASSWORD");

    // ---- First kiln: create, install, start configure, then SIGKILL.
    let tmux = workbench(&sandbox, "flow-first", "");
    tmux.keys(&["Enter", "C-u"]);
    tmux.type_text("flow.qcow2");
    tmux.keys(&["Tab", "C-u"]);
    tmux.type_text("4G");
    tmux.keys(&["Enter"]);
    tmux.wait_for("image created", SCREEN);

    // The step list answers the mouse: a click on "2 Install" selects it.
    tmux.click(5, 3);
    let screen = tmux.wait_for("Boot installer", SCREEN);
    assert!(screen.contains("flow.qcow2"), "disk not carried:\n{screen}");
    tmux.keys(&["Enter"]); // open the screen: the cursor waits in the empty ISO field
    tmux.type_text(&fixtures().iso.display().to_string());
    tmux.wait_for("bootable ISO 9660 image", SCREEN);
    tmux.keys(&["Enter"]);
    tmux.wait_for("Serial console", SCREEN);
    tmux.wait_for("kiln-installer:", MACHINE);
    // Resizing mid-run redraws every pane at the new size, console included.
    tmux.resize(80, 24);
    let small = tmux.wait_for("Serial console", SCREEN);
    assert!(
        small.lines().all(|l| l.chars().count() <= 80) && small.lines().count() <= 24,
        "{small}"
    );
    tmux.resize(120, 40);
    let screen = tmux.wait_for("installed: the guest powered off", MACHINE);
    assert!(step_line(&screen, "Install").ends_with("done"), "{screen}");

    // n: on to Configure, disk carried, the cursor in the empty Password field; then back
    // (Shift-Tab) to User, which says root, for the install's user.
    tmux.keys(&["n"]);
    tmux.wait_for("[ Configure ]", SCREEN);
    tmux.type_text(password);
    tmux.keys(&["BTab", "C-u"]);
    tmux.type_text(user);
    tmux.keys(&["Enter"]);
    let dialog = tmux.wait_for("Apply this sshd_config?", MACHINE);
    // What changes for sshd leads (sshd -T before and after), ahead of the comment churn.
    assert!(
        dialog.contains("permitemptypasswords: no → yes"),
        "{dialog}"
    );
    let kiln = tmux.program_pid().expect("kiln runs in the pane");
    // SAFETY: kill(2) on the kiln this test started.
    unsafe { libc::kill(kiln as i32, libc::SIGKILL) };
    tmux.wait_for("KILN-EXITED 137", SCREEN);
    let gone = std::time::Instant::now();
    while qemu_running_with(&image.display().to_string()) {
        assert!(gone.elapsed() < SCREEN, "QEMU outlived the killed kiln");
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(tmux);

    // ---- Second kiln, on the image: configure was interrupted, the flow resumes there.
    let tmux = workbench(&sandbox, "flow-second", "flow.qcow2");
    let screen = tmux.wait_for("resuming at configure", SCREEN);
    assert!(step_line(&screen, "Create").ends_with("done"), "{screen}");
    assert!(step_line(&screen, "Install").ends_with("done"), "{screen}");
    assert!(
        step_line(&screen, "Configure").ends_with("interrupted"),
        "{screen}"
    );
    // The user was carried; the password was not (it is never written down).
    assert!(screen.contains(&format!("User      {user}")), "{screen}");
    tmux.type_text(password); // the cursor is in the one empty field that matters
    tmux.keys(&["Enter"]);
    tmux.wait_for("Apply this sshd_config?", MACHINE);
    tmux.keys(&["y"]);
    tmux.wait_for("root logs in with an empty password", MACHINE);

    tmux.keys(&["n", "Enter"]); // Verify, with the carried disk
    let screen = tmux.wait_for("the CI driver should accept this image", MACHINE);
    assert!(screen.contains("[pass]"), "{screen}");
    assert!(!screen.contains("[FAIL]"), "{screen}");

    tmux.keys(&["n"]); // Publish: the cursor in the empty Name field
    tmux.type_text("flow-e2e");
    tmux.keys(&["Tab", "Tab"]); // URL
    tmux.type_text(&djinn.base_url());
    tmux.keys(&["Enter"]);
    tmux.wait_for("Djinn image", MACHINE);
    let stored = djinn.images();
    assert_eq!(stored.len(), 1, "{:?}", djinn.requests());
    assert_eq!(stored[0].name, "flow-e2e");
    assert_eq!(
        djinn.stored_bytes(stored[0].id),
        std::fs::read(&image).unwrap()
    );
    tmux.keys(&["Escape"]); // alone: Escape then q in one burst reads as Alt-q
    tmux.keys(&["q"]);
    tmux.wait_for("KILN-EXITED 0", SCREEN);
    drop(tmux);

    // ---- Third kiln on the image: every step done; nothing secret was written down.
    let tmux = workbench(&sandbox, "flow-third", "flow.qcow2");
    let screen = tmux.wait_for("every step is done", SCREEN);
    for title in ["Create", "Install", "Configure", "Verify", "Publish"] {
        assert!(step_line(&screen, title).ends_with("done"), "{screen}");
    }
    tmux.keys(&["q"]); // every step done: the step list has the keys
    tmux.wait_for("KILN-EXITED 0", SCREEN);
    let session = std::fs::read_to_string(sandbox.work().join("flow.kiln.toml")).unwrap();
    assert!(!session.contains(SECRET), "token in the session file");
    assert!(!session.contains(password), "password in the session file");
}

/// Like Packer's `-on-error=ask`, but visible: a verify that fails keeps its machine up for a
/// look until the person retries or stops it; then nothing is left running.
#[test]
fn a_failed_verify_keeps_its_machine_until_the_person_retries_or_stops_it() {
    let sandbox = Sandbox::new();
    let image = sandbox.work().join("broken.qcow2");
    std::fs::copy(support::fixtures::variant("no-sftp"), &image).unwrap();
    let tmux = workbench(&sandbox, "held", "broken.qcow2");
    // An image kiln did not make: create and install are skipped, the flow starts at configure.
    let screen = tmux.wait_for("resuming at configure", SCREEN);
    assert!(
        step_line(&screen, "Install").ends_with("skipped"),
        "{screen}"
    );
    tmux.keys(&["Escape"]);
    tmux.keys(&["Down", "Enter", "Enter"]); // Verify, run
    let screen = tmux.wait_for("machine kept", MACHINE);
    assert!(screen.contains("[FAIL]"), "{screen}");
    assert!(step_line(&screen, "Verify").ends_with("failed"), "{screen}");
    let path = image.display().to_string();
    assert!(
        qemu_running_with(&path),
        "the failed step's machine is gone"
    );

    tmux.keys(&["s"]);
    let stopped = std::time::Instant::now();
    while qemu_running_with(&path) {
        assert!(
            stopped.elapsed() < SCREEN,
            "s did not stop the kept machine"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let screen = tmux.wait_for("1 failed, 0 warnings", SCREEN);
    assert!(step_line(&screen, "Verify").ends_with("failed"), "{screen}");
    tmux.keys(&["Escape"]);
    tmux.keys(&["q"]);
    tmux.wait_for("KILN-EXITED 0", SCREEN);
}

/// `kiln RECIPE.toml` shows every stage of the reference recipe in the step list, and `b`
/// runs them all — install, configure (its question answered on screen), both provisioning
/// steps and the cleanup, verify, both destinations, the post-build command — as
/// `kiln build` would.
#[test]
fn the_workbench_runs_the_reference_recipe_end_to_end() {
    let sandbox = Sandbox::new();
    let djinn = DjinnServer::start(DjinnConfig::default().token(
        SECRET,
        "builder",
        &["image:write", "image:read"],
    ));
    let recipes = sandbox.work().join("recipes");
    for dir in ["files", "scripts"] {
        std::fs::create_dir_all(recipes.join(dir)).unwrap();
    }
    std::fs::write(recipes.join("files/motd"), "built in the workbench\n").unwrap();
    std::fs::write(
        recipes.join("password.txt"),
        format!("{}\n", fixtures().var("KILN_GUEST_PASSWORD")),
    )
    .unwrap();
    let scripts = [
        ("setup.sh", "#!/bin/sh\necho \"setting up $TOOLCHAIN\"\n"),
        (
            "post.sh",
            "#!/bin/sh\nenv | grep '^KILN_IMAGE' > \"$(dirname \"$0\")/post-build.env\"\n",
        ),
    ];
    for (name, body) in scripts {
        write_script(&recipes.join("scripts").join(name), body);
    }
    let (driver_conf, disks) = offline_runner(&sandbox);
    // The repository's reference recipe, with this machine's values in place of its examples.
    let reference = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/recipes/fixture-ci.toml"),
    )
    .unwrap();
    let recipe = reference
        .replace(
            "iso = \"installer.iso\"",
            &format!("iso = \"{}\"", fixtures().iso.display()),
        )
        .replace(
            "user = \"builder\"",
            &format!("user = \"{}\"", fixtures().var("KILN_GUEST_USER")),
        )
        .replace("http://127.0.0.1:8080/api", &djinn.base_url())
        .replace(
            "driver_conf = \"driver.conf\"",
            &format!("driver_conf = \"{}\"", driver_conf.display()),
        );
    assert_ne!(recipe, reference);
    std::fs::write(recipes.join("ci.toml"), recipe).unwrap();

    let tmux = workbench(&sandbox, "recipe-run", "recipes/ci.toml");
    let screen = tmux.wait_for("recipe ci-image:", SCREEN);
    let stages = FIXTURE_CI_STAGES;
    for stage in stages {
        assert!(!step_line(&screen, stage).ends_with("done"), "{screen}");
    }
    tmux.keys(&["b"]);
    tmux.wait_for("Apply this sshd_config?", MACHINE);
    tmux.keys(&["y"]);
    let screen = tmux.wait_for("every stage is done", MACHINE);
    for stage in stages {
        assert!(
            step_line(&screen, stage).ends_with("done"),
            "{stage}:\n{screen}"
        );
    }
    assert_published_twice(&djinn, &disks, &recipes.join("ci-image.qcow2"), "ci-image");
    let post_env = std::fs::read_to_string(recipes.join("scripts/post-build.env")).unwrap();
    assert!(post_env.contains("KILN_IMAGE_NAME=ci-image"), "{post_env}");
    // Each provisioning step is recorded, so the next build resumes past it.
    let session = std::fs::read_to_string(recipes.join("ci-image.kiln.toml")).unwrap();
    for record in [
        "[steps.provision-1]",
        "[steps.provision-2]",
        "[steps.cleanup]",
    ] {
        assert!(session.contains(record), "{record}: {session}");
    }
    assert!(!session.contains(SECRET), "token in the session file");
    tmux.keys(&["q"]);
    tmux.wait_for("KILN-EXITED 0", SCREEN);
    assert!(!qemu_running_with(&recipes.display().to_string()));
}
