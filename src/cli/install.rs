//! `kiln install IMAGE --iso ISO`: boot the installer, stream its serial console to stdout,
//! exit 0 when the guest powered off by itself.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::{Exit, report};
use crate::engine::Step;
use crate::engine::config::{Dirs, Settings};
use crate::engine::session::Choices;
use crate::engine::workflow::{Secrets, StepOptions};

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
    let workflow = match super::one_step("install", &args.image, true, settings, dirs).await {
        Ok(workflow) => workflow,
        Err(exit) => return exit,
    };
    let checksum = match (args.sha256, args.sha256sums) {
        (Some(hex), _) if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) => {
            eprintln!("kiln install: --sha256 takes the ISO's SHA-256 as 64 hex digits");
            return Exit::Environment;
        }
        (Some(hex), _) => Some(hex),
        (None, Some(file)) => Some(super::absolute(&file).display().to_string()),
        (None, None) => None,
    };
    workflow.choose(&Choices {
        iso: Some(super::absolute(&args.iso)),
        iso_checksum: checksum,
        ..Choices::default()
    });
    let options = StepOptions {
        timeout: args.timeout.map(Duration::from_secs),
        no_vnc: args.no_vnc,
        ..StepOptions::default()
    };
    let task = workflow.start(Step::Install, Secrets::default(), options);
    match report::follow("install", task, true).await {
        Ok(_) => Exit::Ok,
        Err(e) => Exit::for_step(&e),
    }
}
