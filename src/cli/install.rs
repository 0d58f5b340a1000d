//! `kiln install IMAGE --iso ISO` (or `--kernel K --initrd I`, or `--preset P` alone): boot
//! the installer, stream its serial console to stdout,
//! exit 0 when the guest powered off by itself.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::flags::{InstallerArgs, LoginArgs, positive_duration};
use super::{Exit, report};
use crate::engine::Step;
use crate::engine::host::config::{Dirs, Settings};
use crate::engine::steps::install::HEADLESS_TIMEOUT;
use crate::engine::workflow::StepOptions;
use crate::engine::workflow::requests::{headless_install_warning, write_preset_answers};

#[derive(Debug, Args)]
#[command(
    mut_arg("iso", |iso| iso.required_unless_present_any(["kernel", "preset"])),
    // The spellings `kiln install` had before --iso-sha256 (HEX and FILE alike).
    mut_arg("iso_sha256", |sha256| sha256.aliases(["sha256", "sha256sums"]))
)]
pub struct InstallArgs {
    /// The disk to install onto (made with `kiln create`).
    pub image: PathBuf,
    #[command(flatten)]
    pub installer: InstallerArgs,
    /// Stop the installer and fail when it has not powered off after this long, e.g. 90m (a
    /// bare number is seconds) [default: 2h].
    #[arg(long, value_name = "DURATION", value_parser = positive_duration)]
    pub timeout: Option<Duration>,
    /// Do not serve the screen over VNC.
    #[arg(long)]
    pub no_vnc: bool,
    #[command(flatten)]
    pub login: LoginArgs,
    /// Write the preset's answer files, filled in as the install would serve them (port
    /// --http-port, else 8080), into DIR and print its kernel arguments; boot nothing.
    #[arg(long, value_name = "DIR", requires = "preset")]
    pub write_answers: Option<PathBuf>,
}

pub async fn run(
    args: InstallArgs,
    settings: &Settings,
    dirs: Option<&Dirs>,
) -> Result<Exit, Exit> {
    if let Some(dir) = &args.write_answers {
        return write_answers(&args, dir);
    }
    let workflow = super::one_step("install", &args.image, true, settings, dirs).await?;
    let mut choices = args
        .installer
        .choices()
        .map_err(|e| super::refused("install", e))?;
    choices.update(&args.login.choices());
    workflow.choose(&choices);
    let secrets = args
        .login
        .secrets()
        .map_err(|e| super::refused("install", e))?;
    let timeout = args.timeout.unwrap_or(HEADLESS_TIMEOUT);
    if let Some(warning) = headless_install_warning(&workflow.choices(), timeout) {
        eprintln!("kiln install: warning: {warning}");
    }
    let options = StepOptions {
        timeout: Some(timeout),
        no_vnc: args.no_vnc,
        ..StepOptions::default()
    };
    let task = workflow.start(Step::Install, secrets, options);
    Ok(match report::follow("install", task, true).await {
        Ok(_) => Exit::Ok,
        Err(e) => Exit::for_step(&e),
    })
}

/// `--write-answers DIR`: the preset's filled-in files, for reading and validators.
fn write_answers(args: &InstallArgs, dir: &std::path::Path) -> Result<Exit, Exit> {
    let refused = |e: String| super::refused("install", e);
    let mut choices = args.installer.choices().map_err(refused)?;
    choices.update(&args.login.choices());
    let secrets = args.login.secrets().map_err(refused)?;
    let kernel_args =
        write_preset_answers(&args.image, &choices, &secrets, dir).map_err(refused)?;
    eprintln!("kiln install: answer files written to {}", dir.display());
    println!("{kernel_args}");
    Ok(Exit::Ok)
}
