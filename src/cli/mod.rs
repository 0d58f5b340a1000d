//! The headless frontend: one subcommand per step, for scripts and CI.

pub mod build;
pub mod cache;
pub mod check;
pub mod config;
pub mod configure;
pub mod create;
pub mod doctor;
pub mod flags;
pub mod install;
pub mod logging;
pub mod publish;
pub mod report;
pub mod run;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::engine::host::config::{CliOverrides, Dirs, Graphics, Settings};
use crate::engine::host::vcpus::Vcpus;
use crate::engine::host::{self, Accelerator};
use crate::engine::workflow::{Environment, Recording, StepError, StepResult, Workflow};

/// kiln — prepare, verify and publish QEMU images for CI drivers.
///
/// Run without a command to open the workbench; `kiln IMAGE` opens it on that image's session.
#[derive(Debug, Parser)]
#[command(name = "kiln", version, about, long_about)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Read settings from this file instead of ~/.config/kiln/config.toml.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Colour theme: auto (light or default, from the terminal's background; the default),
    /// default, light, high-contrast, or a user theme name.
    #[arg(long, global = true, value_name = "NAME")]
    pub theme: Option<String>,

    /// How the workbench draws a guest's screen: auto (asks the terminal), kitty, sixel,
    /// iterm2 (real pixels) or blocks (half-block characters) [default: auto].
    #[arg(long, global = true, value_name = "MODE")]
    pub graphics: Option<Graphics>,

    /// Memory for machines kiln boots, in MiB.
    #[arg(long, global = true, value_name = "MIB")]
    pub memory: Option<u32>,

    /// Virtual CPUs for machines kiln boots, or `auto`: under TCG (the default there) one or
    /// two, whichever the host's idle cores allow when the machine powers on.
    #[arg(long, global = true, value_name = "N")]
    pub cpus: Option<Vcpus>,

    /// The workbench only: the directory its Create form offers a new image in (and whose
    /// free space the doctor reports). Headless commands take image paths as given.
    #[arg(long, global = true, value_name = "DIR")]
    pub image_dir: Option<PathBuf>,
}

impl Args {
    pub fn overrides(&self) -> CliOverrides {
        CliOverrides {
            memory_mib: self.memory,
            cpus: self.cpus,
            image_dir: self.image_dir.clone(),
            theme: self.theme.clone(),
            graphics: self.graphics,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create an empty qcow2 v3 disk image (qemu-img create -f qcow2 -o compat=1.1).
    Create(create::CreateArgs),
    /// Boot an installer ISO with the disk attached; the serial console streams to stdout.
    Install(install::InstallArgs),
    /// Will the CI driver accept this image? Static checks, then a test boot as the driver does it.
    Check(check::CheckArgs),
    /// Log in to the installed disk, remove root's password, install the reference sshd_config.
    Configure(configure::ConfigureArgs),
    /// Upload to a Djinn namespace, install for the offline runner or a builds.sr.ht tree, or
    /// copy to a host over SSH with rsync.
    Publish(publish::PublishArgs),
    /// The whole flow for one image, headless: create, install, configure, verify, publish.
    /// Resumes from the image's session file (NAME.kiln.toml) and stops at the first failure.
    Run(Box<run::RunArgs>),
    /// Rebuild an image unattended from a recipe (TOML in git): install, configure, your
    /// provisioning scripts, cleanup, verify, publish to every destination, a post-build
    /// command. Starts from a fresh disk unless --resume.
    Build(build::BuildArgs),
    /// Show what this host can do: QEMU, KVM, CPUs, memory, disk space.
    Doctor(doctor::DoctorArgs),
    /// Show the effective settings, the config file path, or the commented template.
    Config(config::ConfigArgs),
    /// List the files kiln downloaded and keeps (netboot kernels and initrds), or --clear them.
    Cache(cache::CacheArgs),
    /// `kiln IMAGE`: the workbench on that image, at the first step its session has not done.
    /// (Parsed as an unknown command so that global flags may still come first.)
    #[command(external_subcommand)]
    Open(Vec<OsString>),
}

/// How results are printed on stdout.
#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum Format {
    #[default]
    Text,
    Json,
}

/// kiln's exit codes: 0 ok, 1 a check or step failed, 2 usage or environment error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok,
    Failed,
    Environment,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        match exit {
            Exit::Ok => ExitCode::SUCCESS,
            Exit::Failed => ExitCode::from(1),
            Exit::Environment => ExitCode::from(2),
        }
    }
}

impl Exit {
    /// How a step's result ends the command: done (0), a verdict or failure of the image's
    /// (1), or the person's to fix (2).
    pub fn for_result(result: &Result<StepResult, StepError>) -> Exit {
        match result {
            Ok(done) if done.succeeded() => Exit::Ok,
            Ok(_) => Exit::Failed,
            Err(error) => Exit::for_step(error),
        }
    }

    /// How a step's error ends the command: the person's to fix (2) or the image's (1).
    pub fn for_step(error: &StepError) -> Exit {
        if error.is_usage() {
            Exit::Environment
        } else {
            Exit::Failed
        }
    }
}

/// A problem the person must fix before `kiln COMMAND` can run: said on stderr, exit 2.
pub fn refused(command: &str, problem: impl std::fmt::Display) -> Exit {
    eprintln!("kiln {command}: {problem}");
    Exit::Environment
}

/// How a command that can be refused part-way ends: with its exit code either way.
pub fn exit_code(result: Result<Exit, Exit>) -> Exit {
    result.unwrap_or_else(|exit| exit)
}

/// What steps run with. Only steps that boot a machine pay for the KVM probe; `command`
/// names the command in the line that says which accelerator was chosen and why.
pub async fn environment(
    command: &str,
    boots: bool,
    settings: &Settings,
    dirs: Option<&Dirs>,
) -> Environment {
    let accelerator = if boots {
        let (accelerator, why) = host::choose_accelerator().await;
        eprintln!("kiln {command}: {why}");
        accelerator
    } else {
        Accelerator::Tcg
    };
    Environment {
        settings: settings.clone(),
        accelerator,
        record_dir: dirs.map(Dirs::machine_records),
        config_dir: dirs.map(|d| d.config_dir.clone()),
    }
}

/// `kiln COMMAND IMAGE`: a workflow of one step, recorded only where the image already has a
/// session file (a one-off command on someone's image leaves nothing behind).
pub async fn one_step(
    command: &str,
    image: &std::path::Path,
    boots: bool,
    settings: &Settings,
    dirs: Option<&Dirs>,
) -> Result<Workflow, Exit> {
    let environment = environment(command, boots, settings, dirs).await;
    Workflow::open(image, Recording::IfSessionExists, environment).map_err(|e| refused(command, e))
}

/// A path as given, made absolute so a session file records where it really is.
pub fn absolute(path: &std::path::Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}
