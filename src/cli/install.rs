//! `kiln install IMAGE --iso ISO`: boot the installer, stream its serial console to stdout,
//! exit 0 when the guest powered off by itself.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::flags::InstallerArgs;
use super::{Exit, report};
use crate::engine::Step;
use crate::engine::config::{Dirs, Settings};
use crate::engine::workflow::{Secrets, StepOptions};

#[derive(Debug, Args)]
#[command(
    mut_arg("iso", |iso| iso.required(true)),
    // The spellings `kiln install` had before --iso-sha256 (HEX and FILE alike).
    mut_arg("iso_sha256", |sha256| sha256.aliases(["sha256", "sha256sums"]))
)]
pub struct InstallArgs {
    /// The disk to install onto (made with `kiln create`).
    pub image: PathBuf,
    #[command(flatten)]
    pub installer: InstallerArgs,
    /// Stop the installer and fail after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// Do not serve the screen over VNC.
    #[arg(long)]
    pub no_vnc: bool,
    /// With --preset: the user the installer creates (configure then logs in as it).
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// With --preset: first line is the user's password. Never recorded.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
}

pub async fn run(args: InstallArgs, settings: &Settings, dirs: Option<&Dirs>) -> Exit {
    let workflow = match super::one_step("install", &args.image, true, settings, dirs).await {
        Ok(workflow) => workflow,
        Err(exit) => return exit,
    };
    let mut choices = match args.installer.choices() {
        Ok(choices) => choices,
        Err(problem) => {
            eprintln!("kiln install: {problem}");
            return Exit::Environment;
        }
    };
    choices.user = args.user.clone();
    workflow.choose(&choices);
    let mut secrets = Secrets::default();
    if let Some(file) = &args.password_file {
        match super::configure::first_line(file) {
            Ok(password) => secrets.password = Some(password),
            Err(problem) => {
                eprintln!("kiln install: {problem}");
                return Exit::Environment;
            }
        }
    }
    let options = StepOptions {
        timeout: args.timeout.map(Duration::from_secs),
        no_vnc: args.no_vnc,
        ..StepOptions::default()
    };
    let task = workflow.start(Step::Install, secrets, options);
    match report::follow("install", task, true).await {
        Ok(_) => Exit::Ok,
        Err(e) => Exit::for_step(&e),
    }
}
