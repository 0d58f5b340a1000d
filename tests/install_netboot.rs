//! Installing with no ISO: the real netboot kernel and initrd of Debian's
//! `debian-installer-12-netboot-amd64` (as tests/fixtures/debian-installer.sh packs them),
//! served in a Debian mirror's layout with a SHA256SUMS beside `images/`, as the debian-12
//! preset finds them. kiln downloads them into its cache, checks them, reuses them without a
//! request on the next run, refuses a file that does not match, and the real installer boots
//! from them to its preseed's early_command.

mod support;

use std::path::Path;
use std::process::Command;

use support::fixtures::debian_installer_iso;
use support::installer::{self, MARKER, MirrorStub, blank_disk, mirror_stub, preset_flags};
use support::{Sandbox, text};

/// The installer images' directory in the mirror (Debian's layout).
const IMAGES: &str = "dists/bookworm/main/installer-amd64/current/images";
const KERNEL: &str = "netboot/debian-installer/amd64/linux";
const INITRD: &str = "netboot/debian-installer/amd64/initrd.gz";

/// Put the netboot kernel and initrd into the mirror, with a SHA256SUMS as Debian writes it
/// (`./path` below images/; a graphical installer's kernel of the same name listed too).
/// `initrd_sum` replaces the initrd's true sum when given.
fn publish_netboot(mirror: &MirrorStub, initrd_sum: Option<&str>) {
    let images = mirror.root.join(IMAGES);
    let iso = debian_installer_iso();
    for inner in [KERNEL, INITRD] {
        let dest = images.join(inner);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        let from = inner.replace("netboot/", "/");
        let out = Command::new("xorriso")
            .args(["-osirrox", "on", "-indev"])
            .arg(&iso)
            .args(["-extract", &from])
            .arg(&dest)
            .output()
            .expect("xorriso runs");
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let sum = |inner: &str| support::sha256sum_line(&images, inner);
    let mut initrd_line = sum(INITRD);
    if let Some(wrong) = initrd_sum {
        initrd_line = format!("{wrong}  {INITRD}\n");
    }
    let list = format!(
        "{}  ./netboot/gtk/debian-installer/amd64/linux\n{}{}",
        "0".repeat(64),
        sum(KERNEL).replace(KERNEL, &format!("./{KERNEL}")),
        initrd_line.replace(INITRD, &format!("./{INITRD}")),
    );
    std::fs::write(images.join("SHA256SUMS"), list).unwrap();
}

/// How often the mirror was asked for `file` (a path ending in it).
fn requests_for(mirror: &MirrorStub, file: &str) -> usize {
    let requested = mirror.server.requested();
    requested.iter().filter(|path| path.ends_with(file)).count()
}

fn cached_files(sandbox: &Sandbox) -> Vec<String> {
    let mut files = Vec::new();
    if let Ok(sums) = std::fs::read_dir(sandbox.download_cache()) {
        for sum in sums.flatten() {
            for file in std::fs::read_dir(sum.path()).unwrap().flatten() {
                files.push(file.file_name().to_string_lossy().into_owned());
            }
        }
    }
    files.sort();
    files
}

#[test]
fn the_debian_preset_without_an_iso_downloads_its_netboot_files_once_and_boots_them() {
    let sandbox = Sandbox::new();
    blank_disk(&sandbox);
    let mirror = mirror_stub(&sandbox, true);
    publish_netboot(&mirror, None);
    let flags = preset_flags(&sandbox, &mirror.url);
    let host_url = mirror.url.replace("10.0.2.2", "127.0.0.1");

    let (log, serial) = installer::install_until(&sandbox, &flags, MARKER, false);
    assert!(
        log.contains(&format!("downloading {host_url}/{IMAGES}/{KERNEL}")),
        "{log}"
    );
    assert!(
        log.contains(&format!("{host_url}/{IMAGES}/{INITRD}: sha256 matches {host_url}/{IMAGES}/SHA256SUMS (./{INITRD})")),
        "{log}"
    );
    assert!(log.contains("direct kernel boot (netboot files)"), "{log}");
    assert!(
        !log.contains("-cdrom") && !log.contains("media=cdrom"),
        "{log}"
    );
    assert!(log.contains("guest fetched /preseed.cfg, 200"), "{log}");
    assert!(serial.contains("allow_unauthenticated=false"), "{serial}");
    assert!(!log.contains("builder-pass"), "{log}");
    assert_eq!(cached_files(&sandbox), ["initrd.gz", "linux"]);
    assert_eq!(
        (
            requests_for(&mirror, "/linux"),
            requests_for(&mirror, "/initrd.gz")
        ),
        (1, 1)
    );

    // The next run takes both from the cache without asking the mirror for them; it is
    // stopped once QEMU has started from them.
    let (log, _) = installer::install_until(&sandbox, &flags, "started: ", true);
    assert_eq!(log.matches(": from the cache, ").count(), 2, "{log}");
    assert!(!log.contains("downloading"), "{log}");
    assert!(
        log.contains(&sandbox.download_cache().display().to_string()),
        "{log}"
    );
    assert_eq!(
        (
            requests_for(&mirror, "/linux"),
            requests_for(&mirror, "/initrd.gz")
        ),
        (1, 1)
    );
}

#[test]
fn a_netboot_file_that_does_not_match_the_sha256sums_is_refused_and_not_kept() {
    let sandbox = Sandbox::new();
    blank_disk(&sandbox);
    let mirror = mirror_stub(&sandbox, true);
    let wrong = "ab".repeat(32);
    publish_netboot(&mirror, Some(&wrong));
    let images = format!("{}/{IMAGES}", mirror.url.replace("10.0.2.2", "127.0.0.1"));
    let sums = format!("{images}/SHA256SUMS");
    let real = support::sha256sum_line(&mirror.root.join(IMAGES), INITRD);
    let real = real.split_whitespace().next().unwrap();
    // The netboot flags, with the entries found by their path below the list's directory.
    let answers = installer::answers(&sandbox).display().to_string();
    let kernel_url = format!("{images}/{KERNEL}");
    let initrd_url = format!("{images}/{INITRD}");
    let out = sandbox.kiln(&[
        "install",
        "di.qcow2",
        "--kernel",
        &kernel_url,
        "--initrd",
        &initrd_url,
        "--kernel-sha256",
        &sums,
        "--initrd-sha256",
        &sums,
        "--http-dir",
        &answers,
        "--kernel-args",
        "auto=true",
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&initrd_url), "{stderr}");
    assert!(stderr.contains(&wrong) && stderr.contains(real), "{stderr}");
    assert!(stderr.contains("nothing was kept"), "{stderr}");
    assert!(!stderr.contains("qemu-system"), "{stderr}");
    // The kernel matched and is kept; of the initrd nothing, not even a partial file.
    assert_eq!(cached_files(&sandbox), ["linux"]);
    assert!(!Path::new(&sandbox.download_cache()).join(&wrong).exists());

    // `kiln cache` lists what is kept, with its size, and clears it.
    let out = sandbox.kiln(&["cache"]);
    let listed = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(listed.contains("/linux\n"), "{listed}");
    assert!(listed.contains("1 file(s), "), "{listed}");
    assert!(
        listed.contains(&sandbox.download_cache().display().to_string()),
        "{listed}"
    );
    let out = sandbox.kiln(&["cache", "--clear"]);
    assert!(text(&out.stdout).contains("freed"), "{}", text(&out.stderr));
    assert!(cached_files(&sandbox).is_empty());
    let out = sandbox.kiln(&["cache"]);
    assert!(
        text(&out.stdout).contains("0 file(s), 0 B"),
        "{}",
        text(&out.stdout)
    );
}
