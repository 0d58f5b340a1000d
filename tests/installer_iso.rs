//! kiln's ISO reader on a real installer: the fixture ISO of tests/fixtures/build.sh (built
//! once and cached under KILN_FIXTURE_CACHE), an isolinux image (El Torito, isohybrid) with
//! Rock Ridge and Joliet names and an initrd over 100 MB. The reader's unit tests use small images
//! made with xorriso; these check it against the image the install tests boot.

mod support;

use std::process::Command;

use kiln::engine::files::iso;
use kiln::engine::files::iso::filesystem::{IsoFilesystem, NameSource};
use kiln::engine::files::iso::kernel::{BOOT_MENU_LAYOUT, find_installer_kernel};
use support::fixtures::fixtures;

#[test]
fn the_fixture_installer_reads_like_xorriso_extracts_it() {
    let fixture = &fixtures().iso;
    iso::validate(fixture).unwrap();
    let iso = IsoFilesystem::open(fixture).unwrap();
    assert_eq!(iso.names(), NameSource::RockRidge);
    assert_eq!(iso.volume_id(), "KILN_INSTALLER");
    let dir = tempfile::tempdir().unwrap();
    for inner in [
        "/kiln/vmlinuz",
        "/kiln/initrd.img",
        "/isolinux/isolinux.cfg",
    ] {
        let ours = dir.path().join("ours");
        let theirs = dir.path().join("theirs");
        let entry = iso.lookup(inner).unwrap().unwrap();
        iso.extract(&entry, &ours).unwrap();
        let out = Command::new("xorriso")
            .args(["-osirrox", "on", "-indev"])
            .arg(fixture)
            .args(["-extract", inner])
            .arg(&theirs)
            .output()
            .expect("xorriso runs (apt-get install xorriso)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            std::fs::read(&ours).unwrap() == std::fs::read(&theirs).unwrap(),
            "{inner} differs"
        );
        std::fs::remove_file(&theirs).unwrap();
    }
}

#[test]
fn the_fixture_installer_kernel_is_found_through_its_boot_menu() {
    let iso = IsoFilesystem::open(&fixtures().iso).unwrap();
    let found = find_installer_kernel(&iso).unwrap();
    assert_eq!(found.kernel, "/kiln/vmlinuz");
    assert_eq!(found.initrd, "/kiln/initrd.img");
    assert_eq!(found.layout, BOOT_MENU_LAYOUT);
    assert!(
        found.base_args.contains("console=ttyS0,115200"),
        "{}",
        found.base_args
    );
}
