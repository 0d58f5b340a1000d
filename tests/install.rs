//! `kiln install` on the real fixture installer ISO under real QEMU (TCG).

mod support;

use std::time::Duration;

use support::fixtures::fixtures;
use support::guest::{boot, qemu_running_with, wait_for_ssh_banner};
use support::{Sandbox, text};

/// The ISO's installer booted directly (its kernel and initrd read out of the ISO by kiln,
/// found through its isolinux menu) on the serial console, with an answer-file server; the
/// workbench and `kiln run` tests boot the same ISO through its boot menu.
#[test]
fn create_install_then_the_disk_boots_on_its_own_to_sshd() {
    let fixtures = fixtures();
    let sandbox = Sandbox::new();
    let out = sandbox.kiln(&["create", "fresh.qcow2", "--size", "4G"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let answers = sandbox.path().join("answers");
    std::fs::create_dir(&answers).unwrap();

    let iso = fixtures.iso.display().to_string();
    let out = sandbox.kiln(&[
        "--memory",
        "1024",
        "--cpus",
        "1",
        "install",
        "fresh.qcow2",
        "--iso",
        &iso,
        "--timeout",
        "900",
        "--kernel-args",
        "kiln.answers=http://{{ .HTTPIP }}:{{ .HTTPPort }}/",
        "--serial-console",
        "--http-dir",
        &answers.display().to_string(),
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success(),
        "install failed:\n{stderr}\n--- serial ---\n{stdout}"
    );
    // The serial console streamed to stdout from its first lines to the installer's last.
    assert!(stdout.contains("Linux version"), "{stdout}");
    assert!(
        stdout.contains("kiln-installer: done, powering off"),
        "{stdout}"
    );
    assert!(stderr.contains("guest-shutdown"), "{stderr}");
    // Booted directly, with the menu entry's arguments, the user's (placeholders filled with
    // the answer-file server's address) and the serial console.
    assert!(
        stderr.contains("direct kernel boot (isolinux/syslinux boot menu)"),
        "{stderr}"
    );
    assert!(stderr.contains(" -kernel "), "{stderr}");
    let command_line = stdout
        .lines()
        .find(|line| line.contains("Command line:"))
        .unwrap_or_else(|| panic!("no kernel command line on the serial console:\n{stdout}"));
    let port = stderr
        .split("answer files from ")
        .nth(1)
        .and_then(|rest| rest.split("http://10.0.2.2:").nth(1))
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("no answer-file server in the log:\n{stderr}"));
    assert!(
        command_line.contains(&format!("kiln.answers=http://10.0.2.2:{port}/"))
            && command_line.contains("console=ttyS0,115200n8")
            && command_line.contains("panic=10"),
        "{command_line}"
    );
    assert!(stderr.contains("VNC at 127.0.0.1:"), "{stderr}");
    let log = std::fs::read_to_string(sandbox.work().join("fresh.install.serial.log")).unwrap();
    assert!(
        log.contains("kiln-installer: done"),
        "serial log next to the image"
    );
    assert!(!qemu_running_with(&sandbox.work().display().to_string()));

    // Independently of kiln: the installed disk boots from its own disk to sshd.
    let guest = boot(
        &sandbox.work().join("fresh.qcow2"),
        &sandbox.path().join("boot.log"),
    );
    let banner = wait_for_ssh_banner(guest.ssh_port, Duration::from_secs(300));
    let serial = std::fs::read_to_string(sandbox.path().join("boot.log")).unwrap_or_default();
    assert!(
        banner.is_some(),
        "no SSH banner from the installed disk; serial:\n{serial}"
    );
}

#[test]
fn install_refuses_bad_input_with_clear_errors() {
    let fixtures = fixtures();
    let sandbox = Sandbox::new();
    assert!(
        sandbox
            .kiln(&["create", "d.qcow2", "--size", "1G"])
            .status
            .success()
    );
    std::fs::write(sandbox.work().join("notes.iso"), vec![b'x'; 64 * 1024]).unwrap();
    let iso = fixtures.iso.display().to_string();

    let cases: [(&[&str], &str); 11] = [
        (
            &["install", "d.qcow2", "--iso", "missing.iso"],
            "does not exist",
        ),
        (
            &["install", "d.qcow2", "--iso", "notes.iso"],
            "not an ISO 9660 image",
        ),
        (&["install", "nope.qcow2", "--iso", &iso], "create it first"),
        // The unattended settings are checked before QEMU starts.
        (
            &[
                "install",
                "d.qcow2",
                "--iso",
                &iso,
                "--boot-command",
                "<esc>\n<entre>",
            ],
            "line 2, column 1",
        ),
        (
            &[
                "install",
                "d.qcow2",
                "--iso",
                &iso,
                "--http-dir",
                "no-such-dir",
            ],
            "does not exist",
        ),
        (
            &["install", "d.qcow2", "--iso", &iso, "--preset", "debian-12"],
            "--user NAME",
        ),
        (
            &[
                "install", "d.qcow2", "--iso", &iso, "--preset", "fedora", "--user", "u",
            ],
            "no preset `fedora`",
        ),
        // No ISO: netboot files, checked before anything is downloaded.
        (&["install", "d.qcow2"], "--iso <ISO>"),
        (
            &[
                "install",
                "d.qcow2",
                "--kernel",
                "http://127.0.0.1:9/linux",
                "--initrd",
                "http://127.0.0.1:9/initrd.gz",
            ],
            "only with a SHA-256",
        ),
        (
            &[
                "install",
                "d.qcow2",
                "--kernel",
                "k",
                "--initrd",
                "i",
                "--kernel-sha256",
                "abc",
            ],
            "neither a SHA-256",
        ),
        (
            &["install", "d.qcow2", "--preset", "fedora-41", "--user", "u"],
            "installs from its distribution's mirror",
        ),
    ];
    for (args, expected) in cases {
        let out = sandbox.kiln(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains(expected),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }

    let wrong_sum = "0".repeat(64);
    let out = sandbox.kiln(&["install", "d.qcow2", "--iso", &iso, "--sha256", &wrong_sum]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("checksum mismatch"),
        "{}",
        text(&out.stderr)
    );
}

/// A cancelled CI job sends SIGTERM: kiln stops the installer's machine and says so.
#[test]
fn sigterm_stops_the_install_and_its_machine() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let fixtures = fixtures();
    let sandbox = Sandbox::new();
    assert!(
        sandbox
            .kiln(&["create", "term.qcow2", "--size", "1G"])
            .status
            .success()
    );
    let iso = fixtures.iso.display().to_string();
    let mut child = Command::new(support::kiln_bin())
        .args(["--memory", "512", "install", "term.qcow2", "--iso", &iso])
        .current_dir(sandbox.work())
        .envs(sandbox.env())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let mut seen = String::new();
    for line in std::io::BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        // The machine runs: its VNC address is announced once QEMU is up.
        if line.contains("VNC at 127.0.0.1:") {
            Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        }
    }
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1), "{seen}");
    assert!(seen.contains("terminated (SIGTERM), stopping"), "{seen}");
    assert!(
        seen.contains("cancelled; the installer's machine was stopped"),
        "{seen}"
    );
    assert!(!qemu_running_with(&sandbox.work().display().to_string()));
}

#[test]
fn install_refuses_an_image_in_use() {
    let fixtures = fixtures();
    let sandbox = Sandbox::new();
    assert!(
        sandbox
            .kiln(&["create", "busy.qcow2", "--size", "1G"])
            .status
            .success()
    );
    let image = sandbox.work().join("busy.qcow2");
    let holder = support::ImageLock::hold(&image);
    let iso = fixtures.iso.display().to_string();
    let out = sandbox.kiln(&["install", "busy.qcow2", "--iso", &iso]);
    drop(holder);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("in use"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn install_without_qemu_system_says_what_to_install() {
    let fixtures = fixtures();
    let sandbox = Sandbox::new();
    assert!(
        sandbox
            .kiln(&["create", "d.qcow2", "--size", "1G"])
            .status
            .success()
    );
    // A PATH with qemu-img but no qemu-system-x86_64.
    let bin = sandbox.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink("/usr/bin/qemu-img", bin.join("qemu-img")).unwrap();
    let out = std::process::Command::new(support::kiln_bin())
        .args(["install", "d.qcow2", "--iso"])
        .arg(&fixtures.iso)
        .current_dir(sandbox.work())
        .envs(sandbox.env())
        .env("PATH", &bin)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("apt-get install qemu-system-x86"),
        "{}",
        text(&out.stderr)
    );
}

/// A headless install nothing answers is told so before it boots, and never waits forever:
/// the limit stops it, keeps its last screen and names the knobs (here 3 s, long before the
/// fixture installer is done).
#[test]
fn a_headless_install_that_nothing_answers_is_warned_and_stopped_at_its_limit() {
    let fixtures = fixtures();
    let sandbox = Sandbox::new();
    assert!(
        sandbox
            .kiln(&["create", "slow.qcow2", "--size", "1G"])
            .status
            .success()
    );
    let iso = fixtures.iso.display().to_string();
    let args = ["--memory", "512", "install", "slow.qcow2", "--iso", &iso];
    let out = sandbox.kiln(&[&args[..], &["--timeout", "3s"]].concat());
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let warning = stderr
        .find("nothing will answer the installer")
        .expect("the warning");
    let booted = stderr.find("qemu-system").expect("the QEMU command line");
    assert!(warning < booted, "warned after booting:\n{stderr}");
    assert!(
        stderr.contains("--preset debian-12, --boot-command KEYS"),
        "{stderr}"
    );
    assert!(stderr.contains("still running after 3 s"), "{stderr}");
    assert!(stderr.contains("kiln run --install-timeout"), "{stderr}");
    assert!(sandbox.work().join("slow.install.last-screen.png").exists());
    assert!(!qemu_running_with(&sandbox.work().display().to_string()));
    // A limit of nothing is a mistake, not "no limit".
    let out = sandbox.kiln(&[&args[..], &["--timeout", "0"]].concat());
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("more than 0"),
        "{}",
        text(&out.stderr)
    );
}
