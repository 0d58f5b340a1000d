//! Starting from a distribution's cloud image (Debian's genericcloud, Ubuntu's cloudimg,
//! Fedora Cloud): nobody can log in to one until cloud-init gives it a user. kiln copies the
//! base ([`copy_base`]: a standalone qcow2 v3, grown, the base never written), boots the copy
//! once with a NoCloud seed of its own ([`seed`]), waits for cloud-init and fails with its
//! words, lets configure do its usual work through the seed's key, and then leaves the image
//! as a seedless CI boot needs it ([`CLEAN_UP`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

pub mod seed;

pub use seed::{BUILD_USER, Seed};

use crate::engine::files::{iso, qcow2_header};
use crate::engine::guest::ssh::{OutputStream, Session};
use crate::engine::host::process::run_tool;
use crate::engine::host::temp_file::{TempFile, parent_dir};
use crate::engine::steps::image::DiskSize;
use crate::engine::task::Reporter;

/// How long cloud-init may take after SSH answers (a user-data that installs packages under
/// TCG takes minutes).
const CLOUD_INIT_TIMEOUT: Duration = Duration::from_secs(1800);
const QUICK: Duration = Duration::from_secs(60);
const QEMU_IMG_TIMEOUT: Duration = Duration::from_secs(3600);

/// What configure does differently for a cloud image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CloudInit {
    /// The person's own user-data, merged into kiln's seed.
    pub user_data: Option<PathBuf>,
    /// Leave the build user (and its sudo rule) in the published image.
    pub keep_build_user: bool,
}

/// Why a cloud image could not be seeded or configured.
#[derive(Debug, thiserror::Error)]
pub enum CloudImageError {
    #[error("cannot read the user-data {}: {reason}", .path.display())]
    UserData { path: PathBuf, reason: String },
    #[error("cannot write the NoCloud seed: {0}")]
    Seed(std::io::Error),
    #[error("cannot make the NoCloud seed volume: {0}")]
    SeedVolume(String),
    #[error("cloud-init reported {status}:\n{details}")]
    CloudInit { status: String, details: String },
    #[error("waiting for cloud-init failed: {0}")]
    Wait(String),
    #[error("cleaning up after cloud-init failed: {0}")]
    Clean(String),
}

/// Copy `base` to `image` as a standalone qcow2 v3 (`qemu-img convert`: no backing file left,
/// whatever the base's format), grown to `size` when it is larger. The base is only read; the
/// copy appears under its name only when complete. Returns the base's SHA-256, for the record.
pub async fn copy_base(
    base: &Path,
    image: &Path,
    size: Option<&DiskSize>,
    reporter: &Reporter,
) -> Result<String, String> {
    let name = image
        .file_name()
        .map_or_else(|| "image".into(), |n| n.to_string_lossy().into_owned());
    // The base is untrusted: `qemu-img convert` would read the host files its header names
    // into the copy, which is then booted. The format is named, never probed.
    let format = match qcow2_header::host_file_refs(base)
        .map_err(|e| format!("cannot read {}: {e}", base.display()))?
    {
        Some(refs) if !refs.is_empty() => {
            return Err(format!(
                "its header names host files ({}), which a copy would read in: kiln starts only from a standalone image (where you trust them: qemu-img convert -O qcow2 {} standalone.qcow2)",
                refs.describe(),
                base.display()
            ));
        }
        Some(_) => "qcow2",
        None => "raw",
    };
    let temp = TempFile::create(&parent_dir(image), &name, "base")
        .map_err(|e| format!("cannot write beside {}: {e}", image.display()))?;
    let copy = async {
        run_tool(
            "qemu-img",
            [
                "convert".as_ref(),
                "-f".as_ref(),
                format.as_ref(),
                "-O".as_ref(),
                "qcow2".as_ref(),
                "-o".as_ref(),
                "compat=1.1".as_ref(),
                base.as_os_str(),
                temp.path().as_os_str(),
            ],
            QEMU_IMG_TIMEOUT,
        )
        .await
        .map_err(|e| e.to_string())?;
        if let Some(size) = size {
            let info = crate::engine::steps::image::image_info(temp.path())
                .await
                .map_err(|e| e.to_string())?;
            if size.size().bytes() > info.virtual_size {
                run_tool(
                    "qemu-img",
                    [
                        "resize".as_ref(),
                        "-q".as_ref(),
                        temp.path().as_os_str(),
                        size.size().bytes().to_string().as_ref(),
                    ],
                    QEMU_IMG_TIMEOUT,
                )
                .await
                .map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    };
    // Hashed while qemu-img copies: both read the base, which the page cache then serves once.
    let hashing = async {
        iso::sha256_file(base, reporter)
            .await
            .map_err(|e| e.to_string())
    };
    let ((), digest) = tokio::try_join!(copy, hashing)?;
    temp.rename_to(image)
        .map_err(|e| format!("cannot rename the copy to {}: {e}", image.display()))?;
    Ok(digest)
}

/// Follow `cloud-init status --wait` over SSH, showing cloud-init's own progress lines
/// (`/var/log/cloud-init-output.log`) on the step's log, then judge the outcome by
/// `cloud-init status --long` and the WARNING lines of `/var/log/cloud-init.log` — which
/// cloud-init 23.4 and later report themselves as "degraded"; the 22.4 of Debian 12 only logs
/// them (a user-data that is not valid YAML is one).
pub async fn wait_for_cloud_init(
    session: &Session,
    reporter: &Reporter,
) -> Result<String, CloudImageError> {
    reporter.info("waiting for cloud-init to finish (cloud-init status --wait)…");
    let follow = "sudo -n sh -c 'tail -n +1 -F /var/log/cloud-init-output.log 2>/dev/null & t=$!; \
                  cloud-init status --wait >/dev/null; rc=$?; sleep 1; kill $t; exit $rc'";
    let mut pending = Vec::new();
    let waited = session
        .exec_streaming(follow, &[], CLOUD_INIT_TIMEOUT, |stream, bytes| {
            if let OutputStream::Stdout = stream {
                pending.extend_from_slice(bytes);
                while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=end).collect();
                    let line = String::from_utf8_lossy(&line).trim_end().to_string();
                    if !line.is_empty() {
                        reporter.info(format!("cloud-init: {line}"));
                    }
                }
            }
        })
        .await
        .map_err(|e| CloudImageError::Wait(e.to_string()))?;
    let judge = "sudo -n sh -c 'cloud-init status --long; echo --kiln-warnings--; \
                 grep -E \"\\[(WARNING|ERROR|CRITICAL)\\]\" /var/log/cloud-init.log | tail -n 20'";
    let out = session
        .exec(judge, None, &[], QUICK)
        .await
        .map_err(|e| CloudImageError::Wait(e.to_string()))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (long, warnings) = text
        .split_once("--kiln-warnings--\n")
        .unwrap_or((&text, ""));
    let status = long
        .lines()
        .find_map(|line| line.strip_prefix("status:"))
        .map(str::trim)
        .unwrap_or("an unknown status")
        .to_string();
    let done = status == "done" && waited.success();
    if done && warnings.trim().is_empty() {
        reporter.info("cloud-init: done, no warnings");
        return Ok(status);
    }
    let status = match (done, status.as_str()) {
        (true, _) => "done with warnings (degraded)".to_string(),
        (false, "done") => format!(
            "done, but `cloud-init status --wait` ended with {}",
            waited.ending()
        ),
        (false, other) => other.to_string(),
    };
    let tail = session
        .exec(
            "sudo -n tail -n 25 /var/log/cloud-init.log",
            None,
            &[],
            QUICK,
        )
        .await
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default();
    let mut details = format!("cloud-init status --long:\n{}", long.trim_end());
    if !warnings.trim().is_empty() {
        details.push_str(&format!(
            "\nits warnings and errors:\n{}",
            warnings.trim_end()
        ));
    }
    if !done {
        details.push_str(&format!(
            "\nthe end of /var/log/cloud-init.log:\n{}",
            tail.trim_end()
        ));
    }
    Err(CloudImageError::CloudInit { status, details })
}

/// What the published image must not carry from kiln's seeded boot, and how its seedless
/// boots skip cloud-init:
/// - `cloud-init clean --logs --seed` and an empty `/etc/machine-id`: the next boot is a first
///   boot, nothing of this one is left. Not `clean --machine-id`: cloud-init 22.4 (Debian 12)
///   deletes the file, and systemd 252 then cannot set up the machine ID on the read-only
///   root of early boot ("System cannot boot: Missing /etc/machine-id"; seen here: the
///   published image's sshd never answered). An empty file is the golden-image state systemd
///   fills in at first boot;
/// - the build user and its sudo rule removed (unless kept);
/// - `/etc/cloud/cloud-init.disabled`: the CI driver never attaches a seed, so cloud-init has
///   nothing to do on a CI boot. cloud-init's systemd generator reads this file on every
///   distribution before any cloud-init unit starts, so not one of its stages runs. A
///   datasource list cannot promise that: ds-identify does not even look when the list has a
///   single entry (`[NoCloud]`, `[NoCloud, None]`: "use that"), and then every stage runs,
///   falling back to the `None` datasource, or, with Ubuntu's long list, probing metadata
///   services. To seed the image again later, remove the file (or boot with
///   `cloud-init=enabled` on the kernel command line).
pub fn clean_up_script(keep_build_user: bool) -> String {
    let user = match keep_build_user {
        true => String::new(),
        false => format!(
            "pkill -KILL -u {BUILD_USER} || true; userdel -r -f {BUILD_USER} 2>/dev/null || userdel -f {BUILD_USER}; \
             for f in /etc/sudoers.d/*; do if [ -f \"$f\" ]; then sed -i '/^{BUILD_USER}[[:space:]]/d' \"$f\"; fi; done; "
        ),
    };
    format!(
        "set -e; {user}\
         cloud-init clean --logs --seed; truncate -s 0 /etc/machine-id; rm -f /var/lib/dbus/machine-id; \
         touch {DISABLED}; sync"
    )
}

/// cloud-init's own switch: while it exists, cloud-init does not run at boot.
pub const DISABLED: &str = "/etc/cloud/cloud-init.disabled";

/// Run [`clean_up_script`] through root's session.
pub async fn clean_up(
    root_session: &Session,
    cloud: &CloudInit,
    reporter: &Reporter,
) -> Result<(), CloudImageError> {
    reporter.info(match cloud.keep_build_user {
        true => "cleaning up after cloud-init: cloud-init clean --logs --seed, emptying /etc/machine-id; the build user is kept as asked; cloud-init disabled for the CI boots (/etc/cloud/cloud-init.disabled)",
        false => "cleaning up after cloud-init: cloud-init clean --logs --seed, emptying /etc/machine-id, removing the build user; cloud-init disabled for the CI boots (/etc/cloud/cloud-init.disabled)",
    });
    let out = root_session
        .exec(&clean_up_script(cloud.keep_build_user), None, &[], QUICK)
        .await
        .map_err(|e| CloudImageError::Clean(e.to_string()))?;
    if !out.success() {
        return Err(CloudImageError::Clean(format!(
            "{}: {}",
            out.ending(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clean_up_removes_the_build_user_unless_kept_and_disables_cloud_init() {
        let removed = clean_up_script(false);
        assert!(
            removed.contains(&format!("userdel -r -f {BUILD_USER}")),
            "{removed}"
        );
        assert!(removed.contains(&format!("touch {DISABLED}")), "{removed}");
        assert!(
            removed.contains("cloud-init clean --logs --seed"),
            "{removed}"
        );
        let kept = clean_up_script(true);
        assert!(!kept.contains("userdel"), "{kept}");
    }

    #[tokio::test]
    async fn a_base_whose_header_names_host_files_is_never_copied() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.qcow2");
        crate::engine::test_images::backed_by_host_file(&base).await;
        let image = dir.path().join("ci.qcow2");
        let error = copy_base(&base, &image, None, &crate::engine::task::test_reporter())
            .await
            .unwrap_err();
        assert!(error.contains("backing file /etc/hostname"), "{error}");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "only the base: {left:?}");
    }
}
