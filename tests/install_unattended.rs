//! The real Debian installer, unattended: kiln types a boot command into its isolinux menu (or
//! boots its kernel directly), serves it a preseed file, and the installer runs on the serial
//! console and executes the preseed. The guest cannot reach a package mirror here, so the
//! tests stop once the preseed has run (the whole installation is benches/debian-install.sh).

mod support;

use support::fixtures::debian_installer_iso;
use support::guest::qemu_running_with;
use support::installer::{self, MARKER, blank_disk, mirror_stub, preset_flags};
use support::{Sandbox, text};

/// Where the installer's answers come from: a directory of the test's, or a preset.
enum Answers {
    Directory,
    Preset,
}

/// Run `kiln install` from the installer ISO with `unattended` flags until the serial
/// console shows the marker. Returns kiln's stderr and the serial output.
fn install_until_the_preseed_runs(answers_from: Answers, unattended: &[&str]) -> (String, String) {
    let sandbox = Sandbox::new();
    blank_disk(&sandbox);
    let mut args = vec![
        "--iso".to_string(),
        debian_installer_iso().display().to_string(),
    ];
    match answers_from {
        Answers::Directory => {
            args.push("--http-dir".into());
            args.push(installer::answers(&sandbox).display().to_string());
        }
        Answers::Preset => args.extend(preset_flags(&sandbox, &mirror_stub(&sandbox, true).url)),
    }
    args.extend(unattended.iter().map(|arg| arg.to_string()));
    installer::install_until(&sandbox, &args, MARKER, false)
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
    blank_disk(&sandbox);
    let iso = debian_installer_iso().display().to_string();
    let flags = preset_flags(&sandbox, &mirror_stub(&sandbox, false).url);
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
