//! A value a person types is parsed once, where it is typed, into the engine's type (a Djinn
//! namespace, a boot command, an rsync destination): so a bad one is refused by every frontend — a flag, a recipe,
//! the workbench's form — with the same message, before any work starts.

mod support;

use std::time::Duration;

use support::tmux::Tmux;
use support::{Sandbox, kiln_bin, text};

const SCREEN: Duration = Duration::from_secs(20);
const BAD_BOOT_COMMAND: &str = "<esc><entre>";
/// What is wrong with it, the same in every frontend (each says where in its own terms: the
/// flag's text, the recipe file's line and column).
const BOOT_COMMAND_PROBLEM: &str = "unknown key <entre>; did you mean <enter>?";
const BAD_NAMESPACE: &str = "team-1";
/// The one message for it (`NamespaceError`).
const NAMESPACE_MESSAGE: &str = "`team-1` is not a valid namespace: a path of letters and `/`, optionally followed by @owner (e.g. ci/base or ci/base@team)";

#[test]
fn a_bad_namespace_is_refused_with_one_message_by_flag_recipe_and_workbench() {
    let sandbox = Sandbox::with_blank_disk();

    // A flag: clap parses it with the engine's own parser; nothing is published.
    let out = sandbox.kiln(&[
        "publish",
        "disk.qcow2",
        "--to",
        "djinn",
        "--url",
        "http://127.0.0.1:9/api",
        "--namespace",
        BAD_NAMESPACE,
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(NAMESPACE_MESSAGE), "{stderr}");

    // A recipe: refused when it is read, at its line, before a disk is made.
    let recipe = sandbox.work().join("ns.toml");
    std::fs::write(
        &recipe,
        format!(
            "name = \"ns\"\n[base]\nimage = \"disk.qcow2\"\n[[publish]]\nto = \"djinn\"\n\
             url = \"http://127.0.0.1:9/api\"\nnamespace = \"{BAD_NAMESPACE}\"\n"
        ),
    )
    .unwrap();
    let out = sandbox.kiln(&["build", "ns.toml"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("ns.toml") && stderr.contains("line 7"),
        "{stderr}"
    );
    assert!(stderr.contains(NAMESPACE_MESSAGE), "{stderr}");
    assert!(!sandbox.work().join("ns.qcow2").exists(), "work started");

    // The workbench: the field says so as it is typed, and Publish is refused with it.
    let command = format!(
        "{} '{}' disk.qcow2; echo \"KILN-EXITED $?\"; sleep 60",
        sandbox.shell_prefix(),
        kiln_bin()
    );
    let tmux = Tmux::start("one-message", 220, 40, &command);
    tmux.wait_for("Steps", SCREEN);
    tmux.keys(&["Escape"]);
    tmux.keys(&["Down", "Down", "Down", "Down", "Enter"]); // Publish, cursor in Name
    tmux.wait_for("[ Publish ]", SCREEN);
    tmux.keys(&["Tab"]); // Namespace
    tmux.type_text(BAD_NAMESPACE);
    tmux.wait_for(NAMESPACE_MESSAGE, SCREEN);
    tmux.keys(&["Enter"]);
    tmux.wait_for(&format!("✘ {NAMESPACE_MESSAGE}"), SCREEN);
    let session =
        std::fs::read_to_string(sandbox.work().join("disk.kiln.toml")).unwrap_or_default();
    assert!(!session.contains("[steps.publish]"), "{session}");
    tmux.keys(&["C-c"]);
    tmux.wait_for("KILN-EXITED 0", SCREEN);
}

const BAD_DEST: &str = "/srv/images/";
/// The one message for it (`RemotePathError`).
const DEST_MESSAGE: &str = "`/srv/images/` is not an rsync destination: no `host:` in front of the path (write user@host:/srv/images/)";

#[test]
fn a_bad_rsync_destination_is_refused_with_one_message_by_flag_recipe_and_workbench() {
    let sandbox = Sandbox::with_blank_disk();

    let out = sandbox.kiln(&["publish", "disk.qcow2", "--to", "rsync", "--dest", BAD_DEST]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(DEST_MESSAGE), "{stderr}");

    let recipe = sandbox.work().join("dest.toml");
    std::fs::write(
        &recipe,
        format!(
            "name = \"dest\"\n[base]\nimage = \"disk.qcow2\"\n[[publish]]\nto = \"rsync\"\n\
             dest = \"{BAD_DEST}\"\n"
        ),
    )
    .unwrap();
    let out = sandbox.kiln(&["build", "dest.toml"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("dest.toml") && stderr.contains("line 6"),
        "{stderr}"
    );
    assert!(stderr.contains(DEST_MESSAGE), "{stderr}");
    assert!(!sandbox.work().join("dest.qcow2").exists(), "work started");

    let command = format!(
        "{} '{}' disk.qcow2; echo \"KILN-EXITED $?\"; sleep 60",
        sandbox.shell_prefix(),
        kiln_bin()
    );
    let tmux = Tmux::start("one-message-dest", 220, 40, &command);
    tmux.wait_for("Steps", SCREEN);
    tmux.keys(&["Escape"]);
    tmux.keys(&["Down", "Down", "Down", "Down", "Enter"]); // Publish, cursor in Name
    tmux.wait_for("[ Publish ]", SCREEN);
    tmux.keys(&["Up", "Right", "Right", "Right"]); // To: djinn → offline → srht → rsync
    tmux.wait_for("Destination", SCREEN);
    tmux.keys(&["Down"]); // Destination
    tmux.type_text(BAD_DEST);
    tmux.wait_for(DEST_MESSAGE, SCREEN);
    tmux.keys(&["Enter"]);
    tmux.wait_for(&format!("✘ {DEST_MESSAGE}"), SCREEN);
    let session =
        std::fs::read_to_string(sandbox.work().join("disk.kiln.toml")).unwrap_or_default();
    assert!(!session.contains("[steps.publish]"), "{session}");
    tmux.keys(&["C-c"]);
    tmux.wait_for("KILN-EXITED 0", SCREEN);
}

#[test]
fn a_bad_boot_command_is_refused_with_one_message_by_flag_recipe_and_workbench() {
    let sandbox = Sandbox::with_blank_disk();
    std::fs::write(
        sandbox.work().join("installer.iso"),
        b"not read: refused before",
    )
    .unwrap();

    let out = sandbox.kiln(&[
        "install",
        "disk.qcow2",
        "--iso",
        "installer.iso",
        "--boot-command",
        BAD_BOOT_COMMAND,
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("line 1, column 6: {BOOT_COMMAND_PROBLEM}")),
        "{stderr}"
    );

    let recipe = sandbox.work().join("boot.toml");
    std::fs::write(
        &recipe,
        format!(
            "name = \"boot\"\n[disk]\nsize = \"1G\"\n[install]\niso = \"installer.iso\"\n\
             boot_command = \"{BAD_BOOT_COMMAND}\"\n"
        ),
    )
    .unwrap();
    let out = sandbox.kiln(&["build", "boot.toml"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    // Placed in the file: line 6, the column of `<entre>` inside the string.
    assert!(
        stderr.contains(&format!(
            "line 6, column 22: [install] boot_command: {BOOT_COMMAND_PROBLEM}"
        )),
        "{stderr}"
    );
    assert!(!sandbox.work().join("boot.qcow2").exists(), "work started");

    // The workbench opens on the blank disk at Install, the cursor in the ISO field.
    let command = format!(
        "{} '{}' disk.qcow2; echo \"KILN-EXITED $?\"; sleep 60",
        sandbox.shell_prefix(),
        kiln_bin()
    );
    let tmux = Tmux::start("one-message-boot", 220, 40, &command);
    tmux.wait_for("resuming at install", SCREEN);
    tmux.type_text("installer.iso");
    // SHA-256, From (ISO), Install: unattended, Boot keys
    tmux.keys(&["Down", "Down", "Down", "Right", "Down"]);
    tmux.type_text(BAD_BOOT_COMMAND);
    tmux.wait_for(BOOT_COMMAND_PROBLEM, SCREEN);
    tmux.keys(&["Enter"]);
    tmux.wait_for(
        &format!("✘ boot command, line 1, column 6: {BOOT_COMMAND_PROBLEM}"),
        SCREEN,
    );
    let session =
        std::fs::read_to_string(sandbox.work().join("disk.kiln.toml")).unwrap_or_default();
    assert!(!session.contains("[steps.install]"), "{session}");
    assert!(!support::guest::qemu_running_with(
        &sandbox.work().display().to_string()
    ));
    tmux.keys(&["C-c"]);
    tmux.wait_for("KILN-EXITED 0", SCREEN);
}
