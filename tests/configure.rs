//! `kiln configure` on real guests: the change works as OpenSSH sees it, and no failure path
//! locks anyone out.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::fixtures::fixtures;
use support::guest::{boot, openssh, openssh_sftp, qemu_running_with};
use support::{Sandbox, text};

const LOGIN: Duration = Duration::from_secs(300);
const STOCK_MARKER: &str = "#PermitRootLogin prohibit-password";

/// A private copy of the fixture's freshly installed disk, and the builder's password file.
fn installed_disk(sandbox: &Sandbox) -> (PathBuf, PathBuf) {
    let disk = sandbox.work().join("installed.qcow2");
    std::fs::copy(&fixtures().disk, &disk).unwrap();
    let password = sandbox.path().join("password");
    std::fs::write(
        &password,
        format!("{}\n", fixtures().var("KILN_GUEST_PASSWORD")),
    )
    .unwrap();
    (disk, password)
}

fn configure(sandbox: &Sandbox, extra: &[&str]) -> std::process::Output {
    let user = fixtures().var("KILN_GUEST_USER").to_string();
    let password = sandbox.path().join("password").display().to_string();
    let mut args = vec![
        "--memory",
        "1024",
        "--cpus",
        "1",
        "configure",
        "installed.qcow2",
        "--user",
        &user,
        "--password-file",
        &password,
    ];
    args.extend(extra);
    sandbox.kiln(&args)
}

/// Boot `disk` on its own and run `command` as the install's user, with OpenSSH (not kiln's
/// client); its stdout. The user must still be able to log in.
fn as_the_user_in(disk: &Path, sandbox: &Sandbox, command: &str) -> String {
    let guest = boot(disk, &sandbox.path().join("check-boot.log"));
    let user = fixtures().var("KILN_GUEST_USER");
    let password = fixtures().var("KILN_GUEST_PASSWORD");
    let out = openssh(guest.ssh_port, user, password, command, LOGIN);
    assert!(
        out.status.success(),
        "{user} cannot log in any more: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn sshd_config_in(disk: &Path, sandbox: &Sandbox) -> String {
    as_the_user_in(disk, sandbox, "cat /etc/ssh/sshd_config; ls /etc/ssh")
}

#[test]
fn configure_as_the_sudo_user_then_openssh_logs_in_as_root_with_an_empty_password() {
    let sandbox = Sandbox::new();
    let (disk, _) = installed_disk(&sandbox);
    let out = configure(&sandbox, &[]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    for stage in [
        "SSH: TCP connected",
        "SSH: banner SSH-2.0-OpenSSH",
        "SSH: server offers",
        "+PermitEmptyPasswords yes",
        "what changes for sshd (sshd -T)",
        "permitemptypasswords: no → yes",
        "proof passed",
        "the guest powered off",
    ] {
        assert!(stderr.contains(stage), "missing `{stage}` in:\n{stderr}");
    }
    assert!(
        !stderr.contains(fixtures().var("KILN_GUEST_PASSWORD")),
        "password leaked:\n{stderr}"
    );
    assert!(!qemu_running_with(&disk.display().to_string()));

    // A fresh boot, and OpenSSH — not kiln — as the judge.
    let guest = boot(&disk, &sandbox.path().join("fresh-boot.log"));
    let out = openssh(
        guest.ssh_port,
        "root",
        "",
        "id -u && cat /etc/ssh/sshd_config.kiln-backup | head -1",
        LOGIN,
    );
    assert!(
        out.status.success(),
        "root login failed: {}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).starts_with("0\n"),
        "{}",
        text(&out.stdout)
    );
    let out = openssh_sftp(
        guest.ssh_port,
        "root",
        "",
        "put /etc/hostname kiln-sftp-probe\nls kiln-sftp-probe\n",
    );
    assert!(out.status.success(), "sftp failed: {}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("kiln-sftp-probe"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn a_config_sshd_rejects_changes_nothing_and_the_user_can_still_log_in() {
    let sandbox = Sandbox::new();
    let (disk, _) = installed_disk(&sandbox);
    let broken = sandbox.path().join("broken_sshd_config");
    std::fs::write(&broken, "PermitRootLogin yes\nThisIsNotADirective yes\n").unwrap();
    let out = configure(&sandbox, &["--sshd-config", &broken.display().to_string()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("sshd rejects the new sshd_config"),
        "{stderr}"
    );
    assert!(
        stderr.contains("ThisIsNotADirective"),
        "sshd's own reason is shown:\n{stderr}"
    );
    assert!(!qemu_running_with(&disk.display().to_string()));

    let config = sshd_config_in(&disk, &sandbox);
    assert!(
        config.contains(STOCK_MARKER),
        "the original sshd_config must stay:\n{config}"
    );
    assert!(
        !config.contains("sshd_config.kiln-new"),
        "no candidate file left behind:\n{config}"
    );
}

#[test]
fn a_wrong_password_fails_quickly_with_the_stage_and_offered_methods() {
    let sandbox = Sandbox::new();
    let (disk, password) = installed_disk(&sandbox);
    std::fs::write(&password, "not-the-password\n").unwrap();
    let start = Instant::now();
    let out = configure(&sandbox, &["--boot-timeout", "400"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("password rejected for builder; server offers"),
        "{stderr}"
    );
    assert!(stderr.contains("password"), "{stderr}");
    // Rejection is final: kiln does not sit out the 400 s boot deadline.
    assert!(
        start.elapsed() < Duration::from_secs(350),
        "took {:?}",
        start.elapsed()
    );
    assert!(
        !stderr.contains("not-the-password"),
        "password leaked:\n{stderr}"
    );
    assert!(!qemu_running_with(&disk.display().to_string()));
}

#[test]
fn an_encrypted_key_without_passphrase_is_refused_before_booting() {
    let sandbox = Sandbox::new();
    installed_disk(&sandbox);
    let key = sandbox.path().join("id_ed25519");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "secret-phrase", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(status.success());
    let out = sandbox.kiln(&[
        "configure",
        "installed.qcow2",
        "--user",
        "builder",
        "--key",
        &key.display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--passphrase-file"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn ctrl_c_during_configure_leaves_no_qemu_and_a_whole_sshd_config() {
    use std::os::unix::process::CommandExt;
    let sandbox = Sandbox::new();
    let (disk, password) = installed_disk(&sandbox);
    let mut child = Command::new(support::kiln_bin())
        .args([
            "--memory",
            "1024",
            "--cpus",
            "1",
            "configure",
            "installed.qcow2",
            "--user",
            "builder",
            "--password-file",
        ])
        .arg(&password)
        .current_dir(sandbox.work())
        .envs(sandbox.env())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        // A foreground job of its own, as in a terminal: Ctrl-C reaches its whole group.
        .process_group(0)
        .spawn()
        .unwrap();
    // Interrupt once kiln is logged in and changing things, as Ctrl-C in a terminal would:
    // SIGINT to the process group. QEMU is in a group of its own, so kiln shuts it down.
    let group = format!("-{}", child.id());
    let stderr = child.stderr.take().unwrap();
    let seen = {
        use std::io::BufRead;
        let mut seen = String::new();
        for line in std::io::BufReader::new(stderr).lines() {
            let line = line.unwrap();
            seen.push_str(&line);
            seen.push('\n');
            if line.contains("writing the new sshd_config") {
                Command::new("kill")
                    .args(["-INT", "--", &group])
                    .status()
                    .unwrap();
            }
        }
        seen
    };
    let status = child.wait().unwrap();
    assert!(seen.contains("writing the new sshd_config"), "{seen}");
    assert!(!status.success());
    assert!(seen.contains("interrupted (Ctrl-C), stopping"), "{seen}");
    assert!(
        seen.contains("cancelled; the guest was shut down"),
        "the guest was not shut down by kiln:\n{seen}"
    );
    assert!(
        !qemu_running_with(&disk.display().to_string()),
        "QEMU outlived kiln"
    );

    let config = sshd_config_in(&disk, &sandbox);
    let reference = include_str!("../assets/sshd_config.reference");
    assert!(
        config.contains(STOCK_MARKER) || config.starts_with(reference),
        "sshd_config is neither the old nor the new one:\n{config}"
    );
}

/// An sshd_config that sshd accepts but that refuses root's empty password: the proof login
/// fails, and configure puts back everything it changed — root's password hash, the old
/// sshd_config — and says so; the clean-ups, which wait for the proof, never ran.
#[test]
fn a_failed_proof_puts_back_everything_configure_changed() {
    let sandbox = Sandbox::new();
    let (disk, _) = installed_disk(&sandbox);
    let locked = sandbox.path().join("locked_sshd_config");
    let reference = include_str!("../assets/sshd_config.reference");
    std::fs::write(
        &locked,
        reference.replace("PermitEmptyPasswords yes", "PermitEmptyPasswords no"),
    )
    .unwrap();
    let out = configure(
        &sandbox,
        &[
            "--sshd-config",
            &locked.display().to_string(),
            "--clean=machine-id",
        ],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("restored: root's password, the old sshd_config"),
        "{stderr}"
    );
    assert!(!stderr.contains("NOT RESTORED"), "{stderr}");
    assert!(!qemu_running_with(&disk.display().to_string()));

    let password = fixtures().var("KILN_GUEST_PASSWORD");
    let stdout = as_the_user_in(
        &disk,
        &sandbox,
        &format!(
            "echo {password} | sudo -S sh -c 'getent shadow root | cut -d: -f2; cat /etc/machine-id; grep -q \"{STOCK_MARKER}\" /etc/ssh/sshd_config && echo stock'"
        ),
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with('$'),
        "root's password hash was not put back: {stdout}"
    );
    assert_eq!(
        lines[1].len(),
        32,
        "machine-id emptied before the proof: {stdout}"
    );
    assert!(stdout.contains("stock"), "the old sshd_config: {stdout}");
}
