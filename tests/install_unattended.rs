//! The real Debian installer, unattended: kiln types a boot command into its isolinux menu (or
//! boots its kernel directly), serves it a preseed file, and the installer runs on the serial
//! console and executes the preseed. The guest cannot reach a package mirror here, so the
//! tests stop once the preseed has run (the whole installation is benches/debian-install.sh).

mod support;

use std::io::BufRead;
use std::process::{Command, Stdio};

use support::fixtures::debian_installer_iso;
use support::guest::qemu_running_with;
use support::static_http::StaticServer;
use support::{Sandbox, text};

/// What the preseed's early_command writes to the serial console.
const MARKER: &str = "kiln-preseed: early_command ran";

/// A preseed that proves it was fetched and run, then leaves the installer to wait.
fn answers(sandbox: &Sandbox) -> std::path::PathBuf {
    let dir = sandbox.path().join("answers");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("preseed.cfg"),
        format!("d-i preseed/early_command string echo '{MARKER}' > /dev/ttyS0\n"),
    )
    .unwrap();
    dir
}

/// Where the installer's answers come from: a directory of the test's, or a preset.
enum Answers {
    Directory,
    Preset,
}

/// A mirror that is Debian's archive for bookworm, signed, as kiln's check before booting
/// sees it: the real InRelease this host's apt fetched from its own Debian mirror, served on
/// 127.0.0.1. (It has no packages: the installer stops after the preseed ran.) Without
/// `signed`, a Release file alone, as an unsigned test mirror has.
fn mirror_stub(sandbox: &Sandbox, signed: bool) -> String {
    let dists = sandbox.path().join("mirror/debian/dists/bookworm");
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
    format!("http://10.0.2.2:{}/debian", server.port)
}

fn preset_flags(sandbox: &Sandbox, mirror: String) -> Vec<String> {
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
        &mirror,
    ]
    .map(String::from)
    .to_vec()
}

/// Run `kiln install` with `unattended` flags until the serial console shows the marker, then
/// stop it (SIGTERM, as a cancelled CI job would). Returns kiln's stderr and the serial output.
fn install_until_the_preseed_runs(answers_from: Answers, unattended: &[&str]) -> (String, String) {
    let sandbox = Sandbox::new();
    let out = sandbox.kiln(&["create", "di.qcow2", "--size", "2G"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let answer_flags = match answers_from {
        Answers::Directory => vec![
            "--http-dir".to_string(),
            answers(&sandbox).display().to_string(),
        ],
        Answers::Preset => preset_flags(&sandbox, mirror_stub(&sandbox, true)),
    };
    let iso = debian_installer_iso().display().to_string();
    let mut child = Command::new(support::kiln_bin())
        .args(["--memory", "1024", "install", "di.qcow2", "--iso", &iso])
        .args(["--timeout", "900"]) // a limit, not a wait: a busy host slows the installer
        .args(&answer_flags)
        .args(unattended)
        .current_dir(sandbox.work())
        .envs(sandbox.env())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let pid = child.id().to_string();
    let mut serial = String::new();
    for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
        let Ok(line) = line else { break };
        serial.push_str(&line);
        serial.push('\n');
        if line.contains(MARKER) {
            Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        }
    }
    child.wait().unwrap();
    let log = log.join().unwrap();
    assert!(
        serial.contains(MARKER),
        "the preseed never ran:\n{log}\n--- serial ---\n{serial}"
    );
    assert!(
        !qemu_running_with(&sandbox.work().display().to_string()),
        "QEMU outlived kiln"
    );
    (log, serial)
}

#[test]
fn a_boot_command_typed_into_the_real_installer_menu_starts_a_preseeded_install() {
    let (log, serial) = install_until_the_preseed_runs(
        Answers::Directory,
        &[
            "--boot-wait",
            "20s",
            "--boot-command",
            "<esc><wait>install auto=true priority=critical \
         url=http://{{ .HTTPIP }}:{{ .HTTPPort }}/preseed.cfg console=ttyS0,115200n8<enter>",
        ],
    );
    // Each typed chunk is in the log, with the placeholders filled in.
    assert!(log.contains("boot command: pressed <esc>"), "{log}");
    assert!(
        log.contains(
            "boot command: typed `install auto=true priority=critical url=http://10.0.2.2:"
        ),
        "{log}"
    );
    assert!(log.contains("boot command: pressed <enter>"), "{log}");
    // The installer asked the answer-file server, and it answered.
    assert!(log.contains("guest fetched /preseed.cfg, 200"), "{log}");
    // The kernel got the typed `console=ttyS0`: the installer's init talks on the serial port
    // (the menu's `quiet` hides the kernel's own lines).
    assert!(serial.contains("Starting system log daemon"), "{serial}");
}

/// The debian-12 preset: kiln fills in its preseed and serves it with the reference
/// sshd_config, and boots the installer's kernel directly with the preset's arguments.
#[test]
fn the_debian_preset_boots_the_installer_directly_with_its_own_preseed() {
    let (log, serial) = install_until_the_preseed_runs(Answers::Preset, &[]);
    assert!(
        log.contains("direct kernel boot (Debian netboot (debian-installer/amd64))"),
        "{log}"
    );
    assert!(!log.contains("boot command:"), "{log}");
    assert!(
        log.contains("answer files from the debian-12 preset at http://10.0.2.2:"),
        "{log}"
    );
    assert!(log.contains("guest fetched /preseed.cfg, 200"), "{log}");
    // The preset's kernel arguments: its serial console and the image's name as hostname.
    assert!(log.contains("console=ttyS0,115200n8"), "{log}");
    assert!(log.contains("hostname=di "), "{log}");
    assert!(serial.contains("Starting system log daemon"), "{serial}");
    // The password went into the served answer file only.
    assert!(!log.contains("builder-pass"), "{log}");
    // Signatures are checked: kiln found the mirror signed, and the real installer read
    // `allow_unauthenticated false` from the preseed kiln served (its early_command says
    // what the installer's own debconf holds).
    assert!(
        log.contains("the Debian archive for bookworm, signed (InRelease)"),
        "{log}"
    );
    assert!(!log.contains("signature checks are OFF"), "{log}");
    assert!(serial.contains("allow_unauthenticated=false"), "{serial}");
}

/// An unsigned mirror is refused before anything boots, unless the person says it is a test
/// mirror; the message says how.
#[test]
fn the_debian_preset_refuses_an_unsigned_mirror_before_booting() {
    let sandbox = Sandbox::new();
    let out = sandbox.kiln(&["create", "di.qcow2", "--size", "2G"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let iso = debian_installer_iso().display().to_string();
    let flags = preset_flags(&sandbox, mirror_stub(&sandbox, false));
    let mut args = vec!["install", "di.qcow2", "--iso", &iso];
    args.extend(flags.iter().map(String::as_str));
    let out = sandbox.kiln(&args);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("serves an unsigned Release"), "{stderr}");
    assert!(stderr.contains("--insecure-mirror"), "{stderr}");
    assert!(!stderr.contains("qemu-system"), "{stderr}");
    assert!(!qemu_running_with(&sandbox.work().display().to_string()));
}
