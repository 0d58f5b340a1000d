//! The real Debian installer under kiln, for the tests that boot it (from an ISO, or from
//! netboot files): a signed mirror stub, the preset's flags, and a run of `kiln install` that
//! is stopped as soon as the preseed's early_command has run.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::guest::qemu_running_with;
use super::static_http::StaticServer;
use super::{Sandbox, text};

/// What the preseed's early_command writes to the serial console.
pub const MARKER: &str = "kiln-preseed: early_command ran";

/// A preseed that proves it was fetched and run, then leaves the installer to wait.
pub fn answers(sandbox: &Sandbox) -> PathBuf {
    let dir = sandbox.path().join("answers");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("preseed.cfg"),
        format!("d-i preseed/early_command string echo '{MARKER}' > /dev/ttyS0\n"),
    )
    .unwrap();
    dir
}

/// A Debian mirror on 127.0.0.1, as the guest names it (`url`, 10.0.2.2) and with its files
/// on disk (`root`, the archive's directory) for a test to add to.
pub struct MirrorStub {
    pub url: String,
    pub root: PathBuf,
    pub server: StaticServer,
}

/// A mirror that is Debian's archive for bookworm, signed, as kiln's check before booting
/// sees it: the real InRelease this host's apt fetched from its own Debian mirror, served on
/// 127.0.0.1. (It has no packages: the installer stops after the preseed ran.) Without
/// `signed`, a Release file alone, as an unsigned test mirror has.
pub fn mirror_stub(sandbox: &Sandbox, signed: bool) -> MirrorStub {
    let root = sandbox.path().join("mirror/debian");
    let dists = root.join("dists/bookworm");
    std::fs::create_dir_all(&dists).unwrap();
    let lists = std::fs::read_dir("/var/lib/apt/lists").expect("this host's apt lists");
    let in_release = lists
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| {
            let name = path.file_name().unwrap().to_string_lossy();
            name.ends_with("_debian_dists_bookworm_InRelease")
        })
        .expect("this host's apt lists hold Debian bookworm's InRelease (apt-get update)");
    match signed {
        true => std::fs::copy(&in_release, dists.join("InRelease")).map(drop),
        false => std::fs::write(
            dists.join("Release"),
            "Origin: Debian\nCodename: bookworm\n",
        ),
    }
    .unwrap();
    let server = StaticServer::serve(sandbox.path().join("mirror"));
    MirrorStub {
        url: format!("http://10.0.2.2:{}/debian", server.port),
        root,
        server,
    }
}

/// `--preset debian-12` with its user, password file and mirror.
pub fn preset_flags(sandbox: &Sandbox, mirror: &str) -> Vec<String> {
    let password = sandbox.path().join("password");
    std::fs::write(&password, "builder-pass\n").unwrap();
    [
        "--preset",
        "debian-12",
        "--user",
        "builder",
        "--password-file",
        &password.display().to_string(),
        "--mirror",
        mirror,
    ]
    .map(String::from)
    .to_vec()
}

/// `kiln create di.qcow2` in the sandbox.
pub fn blank_disk(sandbox: &Sandbox) {
    let out = sandbox.kiln(&["create", "di.qcow2", "--size", "2G"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// Run `kiln install di.qcow2 ARGS` in `sandbox` (whose disk exists) until a line of its
/// serial output (stdout) or, with `stop_on_log`, of its log (stderr) contains `until`; then
/// stop it (SIGTERM, as a cancelled CI job would). Returns kiln's stderr and the serial
/// output; QEMU must not outlive kiln.
pub fn install_until(
    sandbox: &Sandbox,
    args: &[String],
    until: &str,
    stop_on_log: bool,
) -> (String, String) {
    let mut child = Command::new(super::kiln_bin())
        .args(["--memory", "1024", "install", "di.qcow2"])
        .args(["--timeout", "900"]) // a limit, not a wait: a busy host slows the installer
        .args(args)
        .current_dir(sandbox.work())
        .envs(sandbox.env())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let stop = move || {
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    };
    let (stdout, stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let until_owned = until.to_string();
    let (watched, other) = if stop_on_log {
        (
            Box::new(stderr) as Box<dyn std::io::Read + Send>,
            Box::new(stdout) as Box<dyn std::io::Read + Send>,
        )
    } else {
        (
            Box::new(stdout) as Box<dyn std::io::Read + Send>,
            Box::new(stderr) as Box<dyn std::io::Read + Send>,
        )
    };
    let other = std::thread::spawn(move || std::io::read_to_string(other).unwrap_or_default());
    let mut seen = String::new();
    for line in std::io::BufReader::new(watched).lines() {
        let Ok(line) = line else { break };
        seen.push_str(&line);
        seen.push('\n');
        if line.contains(&until_owned) {
            stop();
        }
    }
    child.wait().unwrap();
    let other = other.join().unwrap();
    let (log, serial) = if stop_on_log {
        (seen, other)
    } else {
        (other, seen)
    };
    let watched_text = if stop_on_log { &log } else { &serial };
    assert!(
        watched_text.contains(until),
        "never saw `{until}`:\n{log}\n--- serial ---\n{serial}"
    );
    assert!(
        !qemu_running_with(&sandbox.work().display().to_string()),
        "QEMU outlived kiln"
    );
    (log, serial)
}
