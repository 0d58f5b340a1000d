//! An image on a read-only filesystem: its session file exists but cannot be written. The
//! workbench, `kiln run` and `kiln check` handle that the same way — the step runs, and a
//! warning names the file and says the run is not recorded. (The image fails its static
//! checks, so no machine boots: the point is the recording, not the verdict.)

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::tmux::Tmux;
use support::{Sandbox, kiln_bin, text};

/// The words every frontend shows; the rest of the line names the file and the OS error.
const NOT_RECORDED: &str = "this run is not recorded, so it cannot be resumed";

/// A tmpfs holding `bad.qcow2` and its session file, remounted read-only (root can write
/// anywhere else, so a read-only mount is the honest way to make a write fail).
struct ReadOnlyImage {
    dir: PathBuf,
}

impl ReadOnlyImage {
    fn new(sandbox: &Sandbox) -> ReadOnlyImage {
        let dir = sandbox.work().join("ro");
        std::fs::create_dir_all(&dir).unwrap();
        mount(&[
            "-t",
            "tmpfs",
            "-o",
            "size=4m",
            "tmpfs",
            &dir.display().to_string(),
        ]);
        std::fs::write(dir.join("bad.qcow2"), b"not a disk image at all").unwrap();
        std::fs::write(dir.join("bad.kiln.toml"), "# an existing session\n").unwrap();
        mount(&["-o", "remount,ro", &dir.display().to_string()]);
        assert!(
            std::fs::write(dir.join("probe"), b"x").is_err(),
            "the mount is not read-only"
        );
        ReadOnlyImage { dir }
    }

    fn image(&self) -> PathBuf {
        self.dir.join("bad.qcow2")
    }

    fn session(&self) -> PathBuf {
        self.dir.join("bad.kiln.toml")
    }
}

impl Drop for ReadOnlyImage {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

fn mount(args: &[&str]) {
    let out = Command::new("mount")
        .args(args)
        .output()
        .expect("mount runs");
    assert!(
        out.status.success(),
        "mount {args:?}: {}",
        text(&out.stderr)
    );
}

fn warned(stderr: &str, session: &Path) -> bool {
    stderr.lines().any(|line| {
        line.contains("warning: cannot write the session file")
            && line.contains(&session.display().to_string())
            && line.contains(NOT_RECORDED)
    })
}

#[test]
fn kiln_check_and_kiln_run_warn_and_go_on() {
    let sandbox = Sandbox::new();
    let ro = ReadOnlyImage::new(&sandbox);
    let image = ro.image().display().to_string();

    let check = sandbox.kiln(&["check", &image]);
    let stderr = text(&check.stderr);
    assert_eq!(check.status.code(), Some(1), "{stderr}");
    assert!(warned(&stderr, &ro.session()), "{stderr}");
    // The check itself ran: its report is on stdout.
    assert!(
        text(&check.stdout).contains("[FAIL]"),
        "{}",
        text(&check.stdout)
    );

    let run = Command::new(kiln_bin())
        .args(["run", &image, "--from", "verify", "--until", "verify"])
        .args(["--format", "json"])
        .current_dir(sandbox.work())
        .envs(sandbox.env())
        .output()
        .unwrap();
    let stderr = text(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(warned(&stderr, &ro.session()), "{stderr}");
    let json: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(json["steps"][3]["step"], "verify", "{json}");
    assert_eq!(json["steps"][3]["status"], "failed", "{json}");

    assert_eq!(
        std::fs::read_to_string(ro.session()).unwrap(),
        "# an existing session\n"
    );
}

#[test]
fn the_workbench_warns_the_same_way_and_goes_on() {
    let sandbox = Sandbox::new();
    let ro = ReadOnlyImage::new(&sandbox);
    let command = format!(
        "{} '{}' '{}'; sleep 60",
        sandbox.shell_prefix(),
        kiln_bin(),
        ro.image().display()
    );
    let tmux = Tmux::start("ro-session", 250, 40, &command);
    // Opening adopts the image (create and install skipped): that cannot be written either.
    let screen = tmux.wait_for(NOT_RECORDED, Duration::from_secs(20));
    assert!(screen.contains("cannot write the session file"), "{screen}");
    // To Verify and run it; the step runs and its log carries the same warning.
    tmux.wait_for("Configure —", Duration::from_secs(5));
    tmux.click(5, 5); // "4 Verify" in the step list
    tmux.keys(&["Enter"]);
    tmux.wait_for("Verify —", Duration::from_secs(5));
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("see the fixes above", Duration::from_secs(30));
    // In the step's log (inside the pane's border), not only on the status line.
    let in_the_log = screen
        .lines()
        .filter(|line| line.contains('│') && line.contains(NOT_RECORDED))
        .count();
    assert!(in_the_log >= 1, "{screen}");
    assert!(screen.contains("qcow2"), "{screen}");
    tmux.keys(&["Escape", "q"]);
}
