//! The checks that need no boot: file, format, version, backing file, encryption, size,
//! consistency, lock, name.

use std::io::Read;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;

use super::QCOW2_MAGIC;
use crate::engine::check::{Check, Verdict};
use crate::engine::files::qcow2_header::{self, HostFileRefs};
use crate::engine::host::process;
use crate::engine::steps::image::{self, RECOMMENDED_MAX_SIZE, is_valid_image_name};
use crate::engine::units::human_bytes;

const CHECK_TIMEOUT: Duration = Duration::from_secs(120);

/// Everything that can be known without booting: file, format, version, backing file,
/// encryption, size, consistency, lock, name. Reads only metadata: well under a second.
pub async fn static_checks(path: &Path) -> Vec<Check> {
    let shown = path.display().to_string();
    let mut checks = Vec::new();
    let mut header = [0u8; 4];
    let readable = std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut header));
    if let Err(e) = readable {
        let detail = if path.exists() {
            format!("cannot read {shown}: {e}")
        } else {
            format!("{shown} does not exist")
        };
        checks
            .push(Check::new("file", "file readable", Verdict::Fail, detail).fix("check the path"));
        for (id, name) in STATIC_AFTER_FILE {
            checks.push(Check::skipped(id, name, "the file cannot be read"));
        }
        return checks;
    }
    checks.push(Check::new(
        "file",
        "file readable",
        Verdict::Pass,
        shown.clone(),
    ));

    let convert = format!(
        "qemu-img convert -O qcow2 -o compat=1.1 {shown} {}",
        fixed_name(path)
    );
    checks.push(if &header == QCOW2_MAGIC {
        Check::new(
            "qcow2-magic",
            "QCOW2 magic",
            Verdict::Pass,
            "starts with QFI\\xfb",
        )
    } else {
        Check::new(
            "qcow2-magic",
            "QCOW2 magic",
            Verdict::Fail,
            format!(
                "starts with the bytes {}, not QFI\\xfb: not a qcow2 file",
                header.map(|byte| format!("{byte:02x}")).join(" ")
            ),
        )
        .fix(convert.clone())
    });

    // Read before any tool opens the image: qemu-img would open the files it names.
    let refs = qcow2_header::host_file_refs(path).ok().flatten();
    if let Some(refs) = refs.filter(|refs| !refs.is_empty()) {
        return names_host_files(path, &refs, checks);
    }

    checks.push(if image::is_locked(path).await {
        Check::new(
            "not-in-use",
            "not in use",
            Verdict::Fail,
            "a running QEMU holds the image's write lock",
        )
        .fix("stop the machine using it (pgrep -af qemu-system)")
    } else {
        Check::new(
            "not-in-use",
            "not in use",
            Verdict::Pass,
            "no QEMU holds it",
        )
    });

    let info = match image::image_info_shared(path).await {
        Ok(info) => info,
        Err(e) => {
            checks.push(
                Check::new(
                    "format",
                    "format qcow2",
                    Verdict::Fail,
                    format!("qemu-img cannot read it: {e}"),
                )
                .fix(convert),
            );
            for (id, name) in STATIC_AFTER_INFO {
                checks.push(Check::skipped(id, name, "qemu-img cannot read the image"));
            }
            checks.push(name_check(path));
            return checks;
        }
    };
    let is_qcow2 = info.format == "qcow2";
    checks.push(if is_qcow2 {
        Check::new("format", "format qcow2", Verdict::Pass, "qcow2")
    } else {
        Check::new(
            "format",
            "format qcow2",
            Verdict::Fail,
            format!("format is {}", info.format),
        )
        .fix(convert.clone())
    });
    checks.push(match (is_qcow2, info.compat.as_deref()) {
        (false, _) => Check::skipped("qcow2-v3", "qcow2 v3 (compat 1.1)", "not qcow2"),
        (true, Some("1.1")) => Check::new(
            "qcow2-v3",
            "qcow2 v3 (compat 1.1)",
            Verdict::Pass,
            "compat 1.1",
        ),
        (true, other) => Check::new(
            "qcow2-v3",
            "qcow2 v3 (compat 1.1)",
            Verdict::Fail,
            format!(
                "compat {} (qcow2 v2); the CI driver needs v3",
                other.unwrap_or("unknown")
            ),
        )
        .fix(format!("qemu-img amend -f qcow2 -o compat=1.1 {shown}")),
    });
    checks.push(match &info.backing_file {
        None => Check::new("standalone", "no backing file", Verdict::Pass, "standalone"),
        Some(backing) => Check::new(
            "standalone",
            "no backing file",
            Verdict::Fail,
            format!("depends on backing file {backing}, which the CI server will not have"),
        )
        .fix(convert.clone()),
    });
    checks.push(if info.encrypted {
        Check::new(
            "not-encrypted",
            "not encrypted",
            Verdict::Fail,
            "the image is encrypted; the driver cannot open it",
        )
        .fix(convert.clone())
    } else {
        Check::new(
            "not-encrypted",
            "not encrypted",
            Verdict::Pass,
            "not encrypted",
        )
    });
    let size = format!(
        "virtual {}, {} on disk",
        human_bytes(info.virtual_size),
        human_bytes(info.actual_size)
    );
    checks.push(if info.virtual_size > RECOMMENDED_MAX_SIZE {
        Check::new(
            "size",
            "virtual size under 20 GB",
            Verdict::Warn,
            format!("{size}: above the recommended 20 GB"),
        )
        .fix("install onto a smaller disk (kiln create --size 10G)")
    } else {
        Check::new("size", "virtual size under 20 GB", Verdict::Pass, size)
    });
    checks.push(if is_qcow2 {
        consistency_check(path).await
    } else {
        Check::skipped("consistency", "qemu-img check", "not qcow2")
    });
    checks.push(name_check(path));
    checks
}

/// The header names host files: say so, and open nothing (no qemu-img info, lock or check).
fn names_host_files(path: &Path, refs: &HostFileRefs, mut checks: Vec<Check>) -> Vec<Check> {
    const NOT_OPENED: &str = "not opened: its header names files on this host";
    checks.push(Check::skipped("not-in-use", "not in use", NOT_OPENED));
    checks.push(Check::new(
        "format",
        "format qcow2",
        Verdict::Pass,
        "qcow2 (from its header)",
    ));
    checks.push(Check::skipped(
        "qcow2-v3",
        "qcow2 v3 (compat 1.1)",
        NOT_OPENED,
    ));
    checks.push(
        Check::new(
            "standalone",
            "no backing file",
            Verdict::Fail,
            format!(
                "depends on the {}, which the CI server will not have; kiln will not boot or convert it, because QEMU would open that file for the guest",
                refs.describe()
            ),
        )
        .fix(format!(
            "rebuild it standalone where you trust its base: qemu-img convert -O qcow2 -o compat=1.1 {} {}",
            path.display(),
            fixed_name(path)
        )),
    );
    for (id, name) in [
        ("not-encrypted", "not encrypted"),
        ("size", "virtual size under 20 GB"),
        ("consistency", "qemu-img check"),
    ] {
        checks.push(Check::skipped(id, name, NOT_OPENED));
    }
    checks.push(name_check(path));
    checks
}

const STATIC_AFTER_FILE: [(&str, &str); 9] = [
    ("qcow2-magic", "QCOW2 magic"),
    ("not-in-use", "not in use"),
    ("format", "format qcow2"),
    ("qcow2-v3", "qcow2 v3 (compat 1.1)"),
    ("standalone", "no backing file"),
    ("not-encrypted", "not encrypted"),
    ("size", "virtual size under 20 GB"),
    ("consistency", "qemu-img check"),
    ("name", "valid Djinn image name"),
];

const STATIC_AFTER_INFO: [(&str, &str); 5] = [
    ("qcow2-v3", "qcow2 v3 (compat 1.1)"),
    ("standalone", "no backing file"),
    ("not-encrypted", "not encrypted"),
    ("size", "virtual size under 20 GB"),
    ("consistency", "qemu-img check"),
];

fn fixed_name(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into());
    path.with_file_name(format!("{stem}-fixed.qcow2"))
        .display()
        .to_string()
}

fn name_check(path: &Path) -> Check {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if is_valid_image_name(&stem) {
        Check::new(
            "name",
            "valid Djinn image name",
            Verdict::Pass,
            format!("`{stem}`"),
        )
    } else {
        Check::new(
            "name",
            "valid Djinn image name",
            Verdict::Warn,
            format!("`{stem}` does not match ^[a-zA-Z0-9_-]+$"),
        )
        .fix("rename the file, or publish with --name NAME")
    }
}

#[derive(Deserialize)]
struct CheckReport {
    #[serde(default)]
    corruptions: u64,
    #[serde(default)]
    leaks: u64,
    #[serde(rename = "check-errors", default)]
    check_errors: u64,
}

/// `qemu-img check`: corruption fails, leaked clusters only warn (they waste space, no more).
async fn consistency_check(path: &Path) -> Check {
    const ID: &str = "consistency";
    const NAME: &str = "qemu-img check";
    let output = process::command("qemu-img")
        .args(["check", "-U", "--output=json"])
        .arg(path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output();
    let output = match tokio::time::timeout(CHECK_TIMEOUT, output).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => {
            return Check::new(
                ID,
                NAME,
                Verdict::Fail,
                format!("qemu-img check could not run: {e}"),
            );
        }
        Err(_) => {
            return Check::new(
                ID,
                NAME,
                Verdict::Warn,
                "qemu-img check took over 120 s; not finished",
            );
        }
    };
    // qemu-img check exits non-zero for findings but still prints its JSON report.
    match serde_json::from_slice::<CheckReport>(&output.stdout) {
        Ok(r) if r.corruptions > 0 || r.check_errors > 0 => Check::new(
            ID,
            NAME,
            Verdict::Fail,
            format!(
                "{} corruptions, {} check errors",
                r.corruptions, r.check_errors
            ),
        )
        .fix(format!(
            "qemu-img check -r all {} (back it up first)",
            path.display()
        )),
        Ok(r) if r.leaks > 0 => Check::new(
            ID,
            NAME,
            Verdict::Warn,
            format!("{} leaked clusters", r.leaks),
        )
        .fix(format!("qemu-img check -r leaks {}", path.display())),
        Ok(_) => Check::new(ID, NAME, Verdict::Pass, "no errors"),
        Err(_) => Check::new(
            ID,
            NAME,
            Verdict::Fail,
            format!(
                "qemu-img check failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::check::failures;
    use crate::engine::test_images::{backed_by_host_file, qcow2, qemu_img, with_external_data};

    fn verdict<'a>(checks: &'a [Check], id: &str) -> &'a Check {
        checks
            .iter()
            .find(|c| c.id == id)
            .unwrap_or_else(|| panic!("no check {id}"))
    }

    #[tokio::test]
    async fn a_fresh_v3_image_passes_everything() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("good-image.qcow2");
        qcow2(path.to_str().unwrap(), "1.1", "1G").await;
        let checks = static_checks(&path).await;
        for check in &checks {
            assert_eq!(check.verdict, Verdict::Pass, "{check:?}");
        }
        assert_eq!(checks.len(), 10);
    }

    #[tokio::test]
    async fn each_defect_fails_its_own_check_only() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.qcow2");
        let base_s = base.to_str().unwrap().to_string();
        qcow2(&base_s, "1.1", "1G").await;

        let v2 = dir.path().join("old.qcow2");
        qcow2(v2.to_str().unwrap(), "0.10", "1G").await;
        let checks = static_checks(&v2).await;
        assert_eq!(verdict(&checks, "qcow2-v3").verdict, Verdict::Fail);
        assert!(
            verdict(&checks, "qcow2-v3")
                .fix
                .as_ref()
                .unwrap()
                .contains("amend")
        );
        assert_eq!(failures(&checks).len(), 1, "{checks:?}");

        let overlay = dir.path().join("overlay.qcow2");
        qemu_img(&[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-o",
            "compat=1.1",
            "-b",
            &base_s,
            "-F",
            "qcow2",
            overlay.to_str().unwrap(),
        ])
        .await;
        let checks = static_checks(&overlay).await;
        assert_eq!(verdict(&checks, "standalone").verdict, Verdict::Fail);
        assert_eq!(failures(&checks).len(), 1, "{checks:?}");

        let raw = dir.path().join("disk.qcow2");
        std::fs::write(&raw, vec![0u8; 1 << 20]).unwrap();
        let checks = static_checks(&raw).await;
        assert_eq!(verdict(&checks, "qcow2-magic").verdict, Verdict::Fail);
        assert_eq!(verdict(&checks, "format").verdict, Verdict::Fail);
        assert_eq!(verdict(&checks, "qcow2-v3").verdict, Verdict::Skipped);

        let big = dir.path().join("big.qcow2");
        qcow2(big.to_str().unwrap(), "1.1", "30G").await;
        let checks = static_checks(&big).await;
        assert_eq!(verdict(&checks, "size").verdict, Verdict::Warn);
        assert!(failures(&checks).is_empty());

        let badname = dir.path().join("bad name.qcow2");
        std::fs::copy(&base, &badname).unwrap();
        assert_eq!(
            verdict(&static_checks(&badname).await, "name").verdict,
            Verdict::Warn
        );

        let checks = static_checks(&dir.path().join("missing.qcow2")).await;
        assert_eq!(verdict(&checks, "file").verdict, Verdict::Fail);
        assert!(checks[1..].iter().all(|c| c.verdict == Verdict::Skipped));
    }

    /// Images that name host files, or are corrupt, get their verdicts and are never booted:
    /// `verify` with a driver profile skips every boot check (no QEMU starts, so this is quick).
    #[tokio::test]
    async fn images_naming_host_files_or_corrupt_are_not_booted() {
        use crate::engine::driver::DriverProfile;
        use crate::engine::host::Accelerator;
        use crate::engine::steps::verify::{VerifyRequest, verify};
        use crate::engine::task::{self, TaskOptions};

        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name);
        let backed = path("backed.qcow2");
        backed_by_host_file(&backed).await;
        let external = path("external.qcow2");
        let data = path("data.raw").display().to_string();
        with_external_data(&external, Path::new(&data)).await;
        let truncated = path("truncated.qcow2");
        qemu_img(&[
            "create",
            "-q",
            "-f",
            "qcow2",
            truncated.to_str().unwrap(),
            "64M",
        ])
        .await;
        let wrote = tokio::process::Command::new("qemu-io")
            .args(["-c", "write -P 0xab 0 4M"])
            .arg(&truncated)
            .output()
            .await
            .unwrap();
        assert!(wrote.status.success());
        std::fs::OpenOptions::new()
            .write(true)
            .open(&truncated)
            .unwrap()
            .set_len(1 << 20)
            .unwrap();

        for (image, blocker, words) in [
            (&backed, "standalone", "backing file /etc/hostname"),
            (&external, "standalone", data.as_str()),
            (&truncated, "consistency", "corruptions"),
        ] {
            let request = VerifyRequest {
                image: image.clone(),
                profile: Some(DriverProfile::djinn(Accelerator::Tcg)),
                deadline: std::time::Duration::from_secs(300),
                record_dir: None,
                passwords: Default::default(),
            };
            let task = task::spawn("check", TaskOptions::default(), |r| verify(request, r));
            let report = task.result().await.unwrap();
            let check = verdict(&report.checks, blocker);
            assert_eq!(check.verdict, Verdict::Fail, "{image:?}: {check:?}");
            assert!(check.detail.contains(words), "{image:?}: {check:?}");
            assert!(report.driver_argv.is_none(), "{image:?} was booted");
            let boots = verdict(&report.checks, "boots");
            assert_eq!(boots.verdict, Verdict::Skipped, "{image:?}: {boots:?}");
        }
    }
}
