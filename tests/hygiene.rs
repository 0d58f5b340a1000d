//! Nothing of the build left in the image: `kiln configure --clean` on a real guest that holds
//! what an installation and a build leave behind (planted offline, as the Debian installer and a
//! build would have left them), then the result inspected offline, booted the way the CI
//! driver boots it (sshd up with new host keys), and judged by `kiln check`, whose
//! `no-passwords-left` names the one file no clean-up covers.
//!
//! One configure and two boots that only read, shared by the whole story in one test.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::fixtures::fixtures;
use support::guest::{boot, openssh, qemu_running_with};
use support::{Sandbox, text};

/// Where the fixture's root filesystem starts on its disk (one partition from 1 MiB).
const PARTITION_OFFSET: &str = "1048576";
const LOGIN: Duration = Duration::from_secs(300);

/// What the installer and a build leave, by the clean-up that must remove it.
const LEFTOVERS: [(&str, &str); 16] = [
    ("logfiles", "/var/log/installer/cdebconf/questions.dat"),
    ("logfiles", "/var/log/installer/syslog"),
    ("logfiles", "/var/log/kiln-build.log"),
    ("logfiles", "/var/log/apt/history.log"),
    ("bash-history", "/root/.bash_history"),
    ("bash-history", "/home/builder/.bash_history"),
    (
        "package-manager-cache",
        "/var/cache/apt/archives/leftover_1.0_all.deb",
    ),
    ("package-manager-cache", "/var/cache/apt/pkgcache.bin"),
    ("dhcp-client-state", "/var/lib/dhcp/dhclient.enp0s3.leases"),
    // Not /tmp: Debian's tmpfiles.d empties it at every boot.
    ("tmp-files", "/var/tmp/build-cache"),
    ("tmp-files", "/var/tmp/.hidden-build-state"),
    (
        "udev-persistent-net",
        "/etc/udev/rules.d/70-persistent-net.rules",
    ),
    (
        "cloud-init",
        "/var/lib/cloud/instances/i-0123/user-data.txt",
    ),
    ("cloud-init", "/var/log/cloud-init.log"),
    ("passwd-backups", "/etc/shadow-"),
    ("passwd-backups", "/etc/passwd-"),
];

/// A preseed kept by a build script: no clean-up removes it, `kiln check` must name it.
const PRESEED_COPY: &str = "/root/preseed.cfg";

/// A root filesystem of a qcow2 disk, mounted through a raw copy on a loop device (this
/// machine has no nbd); unmounted and detached on drop.
struct Mounted {
    dir: tempfile::TempDir,
    raw: PathBuf,
    device: String,
    released: bool,
}

impl Mounted {
    fn open(disk: &Path, work: &Path) -> Mounted {
        let raw = work.join("offline.raw");
        run(
            "qemu-img",
            &["convert", "-O", "raw", path(disk), path(&raw)],
        );
        let device = run(
            "losetup",
            &["--find", "--show", "--offset", PARTITION_OFFSET, path(&raw)],
        );
        let dir = tempfile::tempdir().unwrap();
        let mounted = Mounted {
            dir,
            raw,
            device: device.trim().to_string(),
            released: false,
        };
        run(
            "mount",
            &["-t", "ext4", &mounted.device, path(mounted.dir.path())],
        );
        mounted
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn at(&self, guest_path: &str) -> PathBuf {
        self.root().join(guest_path.trim_start_matches('/'))
    }

    fn write(&self, guest_path: &str, contents: &str) {
        let file = self.at(guest_path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, contents).unwrap();
    }

    /// Unmount and write the changes back into `disk`.
    fn save_to(mut self, disk: &Path) {
        self.release(true);
        run(
            "qemu-img",
            &[
                "convert",
                "-f",
                "raw",
                "-O",
                "qcow2",
                "-o",
                "compat=1.1",
                path(&self.raw),
                path(disk),
            ],
        );
    }

    /// Unmount and detach, once; `strict`: a failure fails the test (not while unwinding).
    fn release(&mut self, strict: bool) {
        if std::mem::replace(&mut self.released, true) {
            return;
        }
        for (program, args) in [
            ("umount", [path(self.dir.path())].to_vec()),
            ("losetup", ["-d", self.device.as_str()].to_vec()),
        ] {
            match strict {
                true => drop(run(program, &args)),
                false => drop(Command::new(program).args(&args).status()),
            }
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        self.release(false);
        let _ = std::fs::remove_file(&self.raw);
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Run a host program that must succeed; its stdout.
fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Plant the leftovers into `disk`; the host keys it had.
fn plant_leftovers(disk: &Path, work: &Path) -> String {
    let user = fixtures().var("KILN_GUEST_USER");
    let root_password = fixtures().var("KILN_GUEST_ROOT_PASSWORD");
    let user_password = fixtures().var("KILN_GUEST_PASSWORD");
    assert_eq!(user, "builder", "LEFTOVERS names /home/builder");
    let mounted = Mounted::open(disk, work);
    let host_key = std::fs::read_to_string(mounted.at("/etc/ssh/ssh_host_ed25519_key.pub"))
        .expect("the fixture has host keys");
    // cdebconf's database as the installer leaves it, answers in clear.
    mounted.write(
        "/var/log/installer/cdebconf/questions.dat",
        &format!(
            "Name: passwd/root-password\nTemplate: passwd/root-password\nValue: {root_password}\nOwners: d-i\nFlags: seen\n\n\
             Name: passwd/user-password\nTemplate: passwd/user-password\nValue: {user_password}\nOwners: d-i\nFlags: seen\n"
        ),
    );
    mounted.write(
        PRESEED_COPY,
        &format!(
            "d-i passwd/user-fullname string kiln builder\nd-i passwd/user-password password {user_password}\nd-i passwd/user-password-again password {user_password}\n"
        ),
    );
    let shadow = std::fs::read_to_string(mounted.at("/etc/shadow")).unwrap();
    assert!(
        shadow.lines().any(|l| l.starts_with("root:$")),
        "the fixture's root has a password hash"
    );
    for (_, file) in LEFTOVERS {
        match file {
            "/etc/shadow-" => mounted.write(file, &shadow),
            "/etc/passwd-" => mounted.write(
                file,
                &std::fs::read_to_string(mounted.at("/etc/passwd")).unwrap(),
            ),
            "/var/log/installer/cdebconf/questions.dat" => {}
            _ => mounted.write(file, "left by the build\n"),
        }
    }
    // A MAC address pinned in ifupdown's configuration (the fixture uses networkd, so the
    // file changes nothing at boot; net-hwaddr must take the line out and keep the file).
    mounted.write(
        "/etc/network/interfaces",
        "auto eth0\niface eth0 inet dhcp\n    hwaddress ether 52:54:00:12:34:56\n",
    );
    mounted.write("/etc/machine-id", "0123456789abcdef0123456789abcdef\n");
    mounted.save_to(disk);
    host_key
}

/// `kiln check IMAGE --format json`: the exit code and the report.
fn check(sandbox: &Sandbox, image: &Path) -> (Option<i32>, Value) {
    let out = sandbox.kiln(&["check", path(image), "--format", "json"]);
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}):\n{}", text(&out.stderr)));
    (out.status.code(), report)
}

#[test]
fn configure_clean_leaves_nothing_of_the_build_and_check_names_what_is_left() {
    let sandbox = Sandbox::new();
    let disk = sandbox.work().join("installed.qcow2");
    std::fs::copy(&fixtures().disk, &disk).unwrap();
    let host_key_before = plant_leftovers(&disk, &sandbox.work());
    let password = sandbox.path().join("password");
    std::fs::write(
        &password,
        format!("{}\n", fixtures().var("KILN_GUEST_PASSWORD")),
    )
    .unwrap();

    // The defaults, as the flag alone asks.
    let out = sandbox.kiln(&[
        "--memory",
        "1024",
        "--cpus",
        "1",
        "configure",
        "installed.qcow2",
        "--user",
        fixtures().var("KILN_GUEST_USER"),
        "--password-file",
        path(&password),
        "--clean",
    ]);
    let log = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert!(!qemu_running_with(path(&disk)));
    // Each operation is in the step log with what it removed, in the order they run.
    let mut last = 0;
    for op in [
        "cloud-init",
        "logfiles",
        "bash-history",
        "package-manager-cache",
        "dhcp-client-state",
        "tmp-files",
        "udev-persistent-net",
        "net-hwaddr",
        "passwd-backups",
        "machine-id",
        "ssh-hostkeys",
    ] {
        let at = log
            .find(&format!("cleanup {op}: "))
            .unwrap_or_else(|| panic!("cleanup {op} is not in the log:\n{log}"));
        assert!(at > last, "{op} ran out of order:\n{log}");
        last = at;
    }
    assert!(!log.contains("cleanup zero-free-space"), "not a default");
    for (op, file) in LEFTOVERS {
        let line = log[log.find(&format!("cleanup {op}: ")).unwrap()..]
            .lines()
            .next()
            .unwrap();
        // The first ten of an operation's paths are named (a directory for what is in it).
        let named = Path::new(file)
            .ancestors()
            .any(|a| line.split_whitespace().any(|word| Path::new(word) == a));
        assert!(
            named || line.ends_with('…'),
            "{op} does not name {file}: {line}"
        );
    }
    assert!(
        log.contains("cleanup net-hwaddr: removed the MAC address from 1: /etc/network/interfaces"),
        "{log}"
    );
    assert!(
        log.contains("cleanup machine-id: emptied /etc/machine-id (was set)"),
        "{log}"
    );
    assert!(log.contains("kiln-ssh-host-keys.service makes new ones at first boot"));
    for secret in [
        fixtures().var("KILN_GUEST_PASSWORD"),
        fixtures().var("KILN_GUEST_ROOT_PASSWORD"),
    ] {
        assert!(!log.contains(secret), "a password in the step log");
    }

    // Offline: none of the leftovers remain; the preseed copy (no clean-up's) does.
    {
        let mounted = Mounted::open(&disk, &sandbox.work());
        for (op, file) in LEFTOVERS {
            assert!(!mounted.at(file).exists(), "{op} left {file}");
        }
        assert!(!mounted.at("/var/log/installer").exists());
        assert!(mounted.at(PRESEED_COPY).exists());
        let interfaces = std::fs::read_to_string(mounted.at("/etc/network/interfaces")).unwrap();
        assert!(
            interfaces.contains("iface eth0") && !interfaces.contains("hwaddress"),
            "{interfaces}"
        );
        let machine_id = std::fs::metadata(mounted.at("/etc/machine-id")).unwrap();
        assert_eq!(machine_id.len(), 0, "/etc/machine-id is not empty");
        let keys: Vec<String> = std::fs::read_dir(mounted.at("/etc/ssh"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("ssh_host_"))
            .collect();
        assert!(keys.is_empty(), "host keys left: {keys:?}");
        // A link with the guest's absolute path: look at the link, not where it points here.
        let wants = "/etc/systemd/system/multi-user.target.wants/kiln-ssh-host-keys.service";
        assert!(
            std::fs::symlink_metadata(mounted.at(wants)).is_ok(),
            "the first-boot unit is not enabled"
        );
        let journal = mounted.at("/var/log/journal");
        if journal.exists() {
            let left: Vec<_> = walkdir(&journal);
            assert!(left.is_empty(), "the journal kept {left:?}");
        }
    }

    // Booted as the driver boots it: sshd is up with new host keys, root gets in.
    let guest = boot(&disk, &sandbox.path().join("first-boot.log"));
    let out = openssh(
        guest.ssh_port,
        "root",
        "",
        "cat /etc/ssh/ssh_host_ed25519_key.pub; systemctl is-active ssh.service; \
         systemctl show -p Result --value kiln-ssh-host-keys.service",
        LOGIN,
    );
    let shown = text(&out.stdout);
    assert!(out.status.success(), "{}\n{shown}", text(&out.stderr));
    let lines: Vec<&str> = shown.lines().collect();
    assert!(lines[0].starts_with("ssh-ed25519 "), "{shown}");
    assert_ne!(
        lines[0].split_whitespace().nth(1),
        host_key_before.split_whitespace().nth(1),
        "the clone serves the build's host key"
    );
    assert_eq!(&lines[1..], ["active", "success"], "{shown}");
    drop(guest);

    // kiln check: everything passes but no-passwords-left, which names the preseed copy.
    let (code, report) = check(&sandbox, &disk);
    assert_eq!(code, Some(1), "{report:#}");
    let checks = report["checks"].as_array().unwrap();
    let failed: Vec<&Value> = checks.iter().filter(|c| c["verdict"] == "fail").collect();
    assert_eq!(failed.len(), 1, "{report:#}");
    assert_eq!(failed[0]["id"], "no-passwords-left", "{report:#}");
    let detail = failed[0]["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("{PRESEED_COPY} (a preseed password answer)")),
        "{detail}"
    );
    assert!(!detail.contains("questions.dat"), "{detail}");
    assert!(
        !detail.contains(fixtures().var("KILN_GUEST_PASSWORD")),
        "the check printed the password: {detail}"
    );
    assert!(failed[0]["fix"].as_str().unwrap().contains("--clean"));
    assert!(!qemu_running_with(path(&disk)));
}

/// Every file under `dir`.
fn walkdir(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap().path();
        if entry.is_dir() {
            files.extend(walkdir(&entry));
        } else {
            files.push(entry);
        }
    }
    files
}
