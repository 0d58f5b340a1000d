//! `kiln install IMAGE --iso ISO`: boot the installer, stream its serial console to stdout,
//! exit 0 when the guest powered off by itself.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::{Exit, report};
use crate::engine::config::{Dirs, Settings};
use crate::engine::host;
use crate::engine::install::{self, InstallRequest};
use crate::engine::iso::Expected;
use crate::engine::task;

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// The disk to install onto (made with `kiln create`).
    pub image: PathBuf,
    /// The installer ISO to boot.
    #[arg(long, value_name = "ISO")]
    pub iso: PathBuf,
    /// Expected SHA-256 of the ISO (64 hex digits).
    #[arg(long, value_name = "HEX", conflicts_with = "sha256sums")]
    pub sha256: Option<String>,
    /// A SHA256SUMS file that lists the ISO by name.
    #[arg(long, value_name = "FILE")]
    pub sha256sums: Option<PathBuf>,
    /// Stop the installer and fail after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// Do not serve the screen over VNC.
    #[arg(long)]
    pub no_vnc: bool,
}

pub async fn run(args: InstallArgs, settings: &Settings, dirs: Option<&Dirs>) -> Exit {
    let (accelerator, why) = host::choose_accelerator().await;
    eprintln!("kiln install: {why}");
    let checksum = match (args.sha256, args.sha256sums) {
        (Some(hex), _) => Some(Expected::Hex(hex)),
        (None, Some(file)) => Some(Expected::SumsFile(file)),
        (None, None) => None,
    };
    let request = InstallRequest {
        image: args.image,
        iso: args.iso,
        checksum,
        accelerator,
        memory_mib: settings.memory_mib,
        cpus: settings.cpus,
        timeout: args.timeout.map(Duration::from_secs),
        vnc: !args.no_vnc,
        record_dir: dirs.map(Dirs::machine_records),
    };
    let title = format!(
        "installing {} onto {}",
        request.iso.display(),
        request.image.display()
    );
    let task = task::spawn(title, |reporter| install::install(request, reporter));
    match report::follow("install", task, true).await {
        Ok(_) => Exit::Ok,
        Err(e) if e.is_usage() => Exit::Environment,
        Err(_) => Exit::Failed,
    }
}
