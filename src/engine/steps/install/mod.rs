//! The install step: boot an installer ISO with the new disk attached, let the person watch
//! and type, and finish when the guest powers off by itself.

pub mod answer_server;
pub mod boot_command;
pub mod mirror;
pub mod netboot;
pub mod preset;
pub mod unattended;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::image::CreateError;
use super::verify::{self, DiskRefusal};
use crate::engine::files::download::DownloadError;
use crate::engine::files::iso::{self, Expected, IsoError};
use crate::engine::guest::machine::{Ending, Machine, MachineError, MachineSpec, serial_log_path};
use crate::engine::host::Accelerator;
use crate::engine::host::vcpus::Vcpus;
use crate::engine::task::{Cancelled, Reporter, Summary, TaskPanicked};
use boot_command::human_duration;
use netboot::Netboot;
use unattended::{BootMedia, Plan, Unattended, UnattendedError};

/// How long a headless install may run when nobody set a limit: a whole Debian install under
/// TCG takes well under an hour here, and an installer waiting at a question with nobody to
/// answer must not hold a CI job (and its QEMU) forever.
pub const HEADLESS_TIMEOUT: Duration = Duration::from_secs(2 * 60 * 60);

/// How long a cancelled installer gets to answer the ACPI power button.
const CANCEL_GRACE: Duration = Duration::from_secs(5);

/// What `kiln install` was asked to do.
#[derive(Debug, Clone)]
pub struct InstallRequest {
    pub image: PathBuf,
    pub installer: Installer,
    pub accelerator: Accelerator,
    pub memory_mib: u32,
    pub cpus: Vcpus,
    /// Give up (and stop the machine) after this long.
    pub timeout: Option<Duration>,
    pub vnc: bool,
    pub record_dir: Option<PathBuf>,
    /// Boot command, answer-file server, direct kernel boot, serial console.
    pub unattended: Unattended,
}

/// What boots the installer.
#[derive(Debug, Clone)]
pub enum Installer {
    /// An installer ISO in the CD drive (its own kernel booted directly when asked).
    Iso {
        path: PathBuf,
        checksum: Option<Expected>,
    },
    /// A distribution's netboot kernel and initrd, booted directly; no CD drive.
    Netboot(Netboot),
}

/// A finished install.
#[derive(Debug, Clone)]
pub struct InstallOutcome {
    pub image: PathBuf,
    pub took: Duration,
    pub reason: String,
    pub serial_log: PathBuf,
}

impl Summary for InstallOutcome {
    fn summary(&self) -> String {
        format!(
            "the installer powered off after {} s ({}); {} is installed — next: configure",
            self.took.as_secs(),
            self.reason,
            self.image.display()
        )
    }
}

/// Why an install did not complete; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error(transparent)]
    Disk(#[from] DiskRefusal),
    #[error(transparent)]
    Iso(#[from] IsoError),
    #[error(transparent)]
    Download(#[from] DownloadError),
    #[error("cannot read the image: {0}")]
    Image(#[from] CreateError),
    #[error(transparent)]
    Machine(#[from] MachineError),
    #[error(transparent)]
    Unattended(#[from] UnattendedError),
    #[error("the installer was still running after {}; it was stopped. If it was still working, allow more time (kiln install --timeout, kiln run --install-timeout, a recipe's [install] timeout); if it waited for an answer, look at its last screen: {}; its serial log: {}", human_duration(*.limit), .screen.display(), .serial_log.display())]
    TimedOut {
        limit: Duration,
        screen: PathBuf,
        serial_log: PathBuf,
    },
    #[error("QEMU ended without the guest powering off ({status}): {stderr}")]
    Died { status: String, stderr: String },
    #[error(transparent)]
    Cancelled(#[from] Cancelled),
    #[error(transparent)]
    Panicked(#[from] TaskPanicked),
}

impl InstallError {
    /// Errors about the request itself (exit 2) rather than the install failing (exit 1).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            InstallError::Iso(_)
                | InstallError::Disk(_)
                | InstallError::Unattended(_)
                | InstallError::Download(
                    DownloadError::NeedsChecksum(_)
                        | DownloadError::BadChecksum(_)
                        | DownloadError::NotListed { .. }
                        | DownloadError::Mismatch { .. }
                        | DownloadError::Missing(_)
                        | DownloadError::NoCache
                )
                | InstallError::Machine(MachineError::QemuMissing)
                | InstallError::Machine(MachineError::ImageInUse(_))
        )
    }
}

/// Where a timed-out install's last screen is kept: `NAME.install.last-screen.png`.
fn last_screen_path(image: &std::path::Path) -> PathBuf {
    let mut name = image.file_stem().unwrap_or_default().to_os_string();
    name.push(".install.last-screen.png");
    image.with_file_name(name)
}

/// Check the inputs, boot the installer and wait for it to power off.
pub async fn install(
    request: InstallRequest,
    reporter: Reporter,
) -> Result<InstallOutcome, InstallError> {
    let mut request = request;
    // The ISO is checked first (it is the person's main choice); netboot files are fetched
    // only once the disk is known to be usable, so a wrong disk costs no download.
    let media = match &request.installer {
        Installer::Iso { path, checksum } => {
            iso::validate(path)?;
            reporter.info(format!("{}: bootable ISO 9660 image", path.display()));
            if let Some(expected) = checksum {
                reporter.info("checking the ISO's SHA-256…");
                iso::verify_checksum(path, expected, &reporter).await?;
            }
            request.image = verify::writable_disk(&request.image).await?;
            // Absolute, like the disk: QEMU's command line and the machine record say which file.
            BootMedia::Iso(std::fs::canonicalize(path).unwrap_or(path.clone()))
        }
        Installer::Netboot(netboot) => {
            request.image = verify::writable_disk(&request.image).await?;
            let (kernel, initrd) = netboot.obtain(&reporter).await?;
            BootMedia::Netboot { kernel, initrd }
        }
    };

    // Everything about the unattended settings is checked before QEMU starts.
    let mut plan = Plan::prepare(&request.unattended, &media)?;
    unattended::examine_mirror(&request.unattended, &reporter).await?;
    let spec = MachineSpec {
        purpose: "install".into(),
        accelerator: request.accelerator,
        memory_mib: request.memory_mib,
        cpus: request.cpus,
        disk: request.image.clone(),
        snapshot: false,
        discard: false,
        cdrom: match &media {
            BootMedia::Iso(path) => Some(path.clone()),
            BootMedia::Netboot { .. } => None,
        },
        kernel: plan.kernel.clone(),
        ssh_forward_from: None,
        no_reboot: true,
        vnc: request.vnc,
        serial_log: serial_log_path(&request.image, "install"),
        record_dir: request.record_dir.clone(),
        driver: None,
    };
    reporter.info(match request.accelerator {
        Accelerator::Kvm => "accelerator: KVM".to_string(),
        Accelerator::Tcg => {
            "accelerator: TCG (software emulation; KVM is not usable here)".to_string()
        }
    });
    if let (Some(kernel), Some(layout)) = (&plan.kernel, plan.kernel_layout) {
        reporter.info(format!(
            "direct kernel boot ({layout}), kernel arguments: {}",
            kernel.append
        ));
    }
    if let Some(url) = plan.guest_url() {
        // A preset's answer files are kiln's own, written for this install only.
        let from = match (&request.unattended.http_dir, &request.unattended.preset) {
            (Some(dir), _) => dir.display().to_string(),
            (None, Some(preset)) => format!("the {} preset", preset.name),
            (None, None) => "a private directory".into(),
        };
        reporter.info(format!(
            "answer files from {from} at {url}/ (127.0.0.1 on this host)"
        ));
    }
    if let Some(requests) = plan.requests.take() {
        tokio::spawn(unattended::report_requests(requests, reporter.clone()));
    }
    let started = Instant::now();
    let mut machine = Machine::start(&spec).await?;
    let view = machine.view();
    reporter.info(format!("started: {}", view.argv().join(" ")));
    if let Some(vnc) = view.vnc() {
        reporter.info(format!("screen over VNC at {vnc} (loopback only)"));
    }
    reporter.info(format!("serial log: {}", view.serial_log().display()));
    reporter.machine(view.clone());

    let deadline = async {
        match request.timeout {
            Some(limit) => tokio::time::sleep(limit).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let typing = unattended::type_boot_command(
        &view,
        &plan.actions,
        plan.boot_wait,
        plan.key_interval,
        &reporter,
    );
    tokio::pin!(typing);
    let mut typed = plan.actions.is_empty();
    let ending = loop {
        tokio::select! {
            ending = machine.wait() => break ending?,
            result = &mut typing, if !typed => {
                typed = true;
                if let Err(error) = result {
                    reporter.warn(format!("boot command: typing stopped: {error}"));
                }
            }
            _ = &mut deadline => {
                let screen = last_screen_path(&request.image);
                if let Err(error) = view.save_screen(&screen).await {
                    reporter.warn(format!("cannot save the last screen: {error}"));
                }
                machine.shut_down(CANCEL_GRACE).await;
                return Err(InstallError::TimedOut {
                    limit: request.timeout.unwrap_or_default(),
                    screen,
                    serial_log: spec.serial_log,
                });
            }
            _ = reporter.cancelled() => {
                reporter.info("stopping the installer…");
                machine.shut_down(CANCEL_GRACE).await;
                return Err(Cancelled("the installer's machine was stopped".into()).into());
            }
        }
    };
    match ending {
        Ending::GuestShutdown { reason } => Ok(InstallOutcome {
            image: request.image,
            took: started.elapsed(),
            reason,
            serial_log: spec.serial_log,
        }),
        Ending::Stopped => Err(Cancelled("the installer's machine was stopped".into()).into()),
        Ending::Died { status, stderr } => Err(InstallError::Died { status, stderr }),
    }
}
