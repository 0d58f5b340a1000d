//! `kiln check` / the Verify step: will the CI driver accept this image? Every requirement is
//! a named check with a verdict and, when it fails, the command or change that fixes it.

pub mod boot;
mod diagnose;
mod leftovers;
mod static_checks;

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

pub use leftovers::KnownPasswords;
pub use static_checks::static_checks;

use crate::engine::check::{Check, Verdict, failures};
use crate::engine::driver::DriverProfile;
use crate::engine::task::{Cancelled, Reporter, Summary, TaskPanicked};
use boot::{BOOT_CHECKS, BootNotStarted, BootRequest};

/// What `kiln check` was asked to do.
#[derive(Debug, Clone)]
pub struct VerifyRequest {
    pub image: PathBuf,
    /// The driver to imitate for the test boot; `None` runs the static checks only.
    pub profile: Option<DriverProfile>,
    pub deadline: Duration,
    pub record_dir: Option<PathBuf>,
    /// Passwords the flow knows, searched for in the image's files.
    pub passwords: KnownPasswords,
}

/// Every check's verdict, in order, for the TUI checklist and the reports.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub image: PathBuf,
    pub profile: Option<DriverProfile>,
    /// The command line the CI driver would run (shown verbatim).
    pub driver_argv: Option<Vec<String>>,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn passed(&self) -> bool {
        failures(&self.checks).is_empty()
    }
}

impl Summary for Report {
    fn summary(&self) -> String {
        let count = |v: Verdict| self.checks.iter().filter(|c| c.verdict == v).count();
        format!(
            "{}: {} passed, {} failed, {} warnings, {} skipped",
            self.image.display(),
            count(Verdict::Pass),
            count(Verdict::Fail),
            count(Verdict::Warn),
            count(Verdict::Skipped)
        )
    }
}

/// The checks could not run at all (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Boot(#[from] BootNotStarted),
    #[error(transparent)]
    Cancelled(#[from] Cancelled),
    #[error(transparent)]
    Panicked(#[from] TaskPanicked),
}

/// Static checks, then (unless static-only, or the file cannot be booted) the test boot.
pub async fn verify(request: VerifyRequest, reporter: Reporter) -> Result<Report, VerifyError> {
    let image = std::fs::canonicalize(&request.image).unwrap_or(request.image.clone());
    let mut checks = static_checks(&image).await;
    for check in &checks {
        reporter.check(check.clone());
    }
    let Some(profile) = request.profile.clone() else {
        return Ok(Report {
            image,
            profile: None,
            driver_argv: None,
            checks,
        });
    };
    if let Some(blocker) = boot_blocker(&checks) {
        let because = format!("{} failed", blocker.name);
        for (id, name) in BOOT_CHECKS {
            let check = Check::skipped(id, name, &because);
            reporter.check(check.clone());
            checks.push(check);
        }
        return Ok(Report {
            image,
            profile: Some(profile),
            driver_argv: None,
            checks,
        });
    }
    let boot = BootRequest {
        image: image.clone(),
        profile: profile.clone(),
        deadline: request.deadline,
        record_dir: request.record_dir.clone(),
        passwords: request.passwords.clone(),
    };
    // The boot checks report themselves (before a failed run holds its machine).
    let boot_checks = boot::boot_checks(&boot, &reporter).await?;
    if boot_checks.is_empty() {
        return Err(Cancelled("the test machine was stopped".into()).into());
    }
    checks.extend(boot_checks);
    let driver_argv = Some(profile.driver_argv(&image, 2222));
    Ok(Report {
        image,
        profile: Some(profile),
        driver_argv,
        checks,
    })
}

/// The static checks whose failure means kiln must not boot (or convert) the image at all:
/// it cannot be read, another QEMU has it, it is not qcow2, its header names host files QEMU
/// would open for the guest, or it is corrupt (booting it would only wait out the deadline).
const BOOT_BLOCKERS: [&str; 5] = ["file", "not-in-use", "format", "standalone", "consistency"];

/// The first failed check that forbids booting, if any.
pub fn boot_blocker(checks: &[Check]) -> Option<&Check> {
    checks
        .iter()
        .find(|c| c.verdict == Verdict::Fail && BOOT_BLOCKERS.contains(&c.id))
}

/// Run the static checks and refuse (with the failed check and its fix) an image kiln must
/// not boot; [`writable_disk`] calls this before a writable machine starts.
async fn refuse_unbootable(image: &std::path::Path) -> Result<(), String> {
    let checks = static_checks(image).await;
    match boot_blocker(&checks) {
        None => Ok(()),
        Some(check) => Err(format!(
            "{} is not booted: {} failed ({}){}",
            image.display(),
            check.name,
            check.detail,
            check
                .fix
                .as_deref()
                .map(|fix| format!("; fix: {fix}"))
                .unwrap_or_default()
        )),
    }
}

/// Why a disk cannot be booted writable: a mistake in the request (exit 2), whichever step
/// (install, configure, provision) was asked.
#[derive(Debug, thiserror::Error)]
pub enum DiskRefusal {
    #[error("image {} does not exist; create it first (kiln create)", .0.display())]
    Missing(PathBuf),
    #[error("{} is in use by a running QEMU; stop that machine first", .0.display())]
    InUse(PathBuf),
    #[error("{0}")]
    NotBootable(String),
}

/// The disk a writable machine (install, configure, provision) boots, checked: it exists, no
/// QEMU holds it, the static checks allow it. Returned absolute, so QEMU's command line and
/// the machine record name exactly this file.
pub async fn writable_disk(image: &std::path::Path) -> Result<PathBuf, DiskRefusal> {
    if !image.exists() {
        return Err(DiskRefusal::Missing(image.to_path_buf()));
    }
    let image = std::fs::canonicalize(image).unwrap_or_else(|_| image.to_path_buf());
    if super::image::is_locked(&image).await {
        return Err(DiskRefusal::InUse(image));
    }
    refuse_unbootable(&image)
        .await
        .map_err(DiskRefusal::NotBootable)?;
    Ok(image)
}

/// The first four bytes of every qcow2 file (the Djinn server checks only these).
pub const QCOW2_MAGIC: &[u8; 4] = b"QFI\xfb";

#[cfg(test)]
mod tests {
    /// Every detail, fix and log line of the checks is for people: no value is formatted
    /// with Rust's Debug notation (`Some(1)`, `Ok(..)`, `"quoted"`) in the code that writes
    /// them — the check steps and the SSH client whose errors they quote. A line that prints
    /// a name Debug happens to spell as a person would is marked `words-ok`.
    #[test]
    fn no_message_of_the_checks_is_written_in_rust_notation() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/engine");
        let mut files = Vec::new();
        for dir in ["steps/verify", "guest/ssh", "guest/ssh/connect"] {
            for entry in std::fs::read_dir(root.join(dir)).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "rs") {
                    files.push(path);
                }
            }
        }
        files.push(root.join("check.rs"));
        assert!(files.len() > 8, "{files:?}");
        let mut found = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            // The code before its tests (which may print anything for the developer).
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            for (number, line) in code.lines().enumerate() {
                let debug = debug_placeholder(line);
                if debug && !line.contains("words-ok") && !line.trim_start().starts_with("//") {
                    found.push(format!(
                        "{}:{}: {}",
                        file.display(),
                        number + 1,
                        line.trim()
                    ));
                }
            }
        }
        assert!(
            found.is_empty(),
            "Debug formatting in messages:\n{}",
            found.join("\n")
        );
    }

    /// A `{…:…?}` placeholder on the line: `{x:?}`, `{:?}`, `{:02x?}`, `{:#?}`.
    fn debug_placeholder(line: &str) -> bool {
        line.match_indices("?}").any(|(end, _)| {
            let start = line[..end].rfind('{').unwrap_or(end);
            line[start..end].contains(':')
        })
    }

    #[test]
    fn debug_placeholders_are_found_in_every_spelling() {
        for line in ["{x:?}", "{:?}", "\"{:02x?}\"", "{:#?}"] {
            assert!(debug_placeholder(line), "{line}");
        }
        for line in ["{x}", "{:02x}", "value?}", "{}?"] {
            assert!(!debug_placeholder(line), "{line}");
        }
    }
}
