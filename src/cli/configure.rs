//! `kiln configure IMAGE --user U (--password-file F | --key K)`: passwordless root and the
//! reference sshd_config; exit 0 only when a fresh root login with an empty password worked.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::flags::{BootTimeoutArgs, CleanupArgs, CredentialArgs};
use super::{Exit, report};
use crate::engine::Step;
use crate::engine::host::config::{Dirs, Settings};
use crate::engine::session::Choices;
use crate::engine::steps::configure::SshdVariant;
use crate::engine::task::{Answers, TaskOptions};
use crate::engine::workflow::StepOptions;

#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum Variant {
    /// internal-sftp, UsePAM no (Djinn's current base images).
    #[default]
    Reference,
    /// UsePAM yes and the sftp-server binary (the older documented variant).
    Pam,
}

impl From<Variant> for SshdVariant {
    fn from(variant: Variant) -> SshdVariant {
        match variant {
            Variant::Reference => SshdVariant::Reference,
            Variant::Pam => SshdVariant::Pam,
        }
    }
}

#[derive(Debug, Args)]
#[command(mut_arg("user", |user| user.default_value("root")))]
pub struct ConfigureArgs {
    /// The installed disk image (booted writable).
    pub image: PathBuf,
    #[command(flatten)]
    pub credentials: CredentialArgs,
    /// Which documented sshd_config to install.
    #[arg(long, value_enum, default_value_t)]
    pub variant: Variant,
    /// Install this sshd_config instead (it must pass `sshd -t` in the guest).
    #[arg(long, value_name = "FILE", conflicts_with = "variant")]
    pub sshd_config: Option<PathBuf>,
    #[command(flatten)]
    pub cleanup: CleanupArgs,
    #[command(flatten)]
    pub boot: BootTimeoutArgs,
}

pub async fn run(
    args: ConfigureArgs,
    settings: &Settings,
    dirs: Option<&Dirs>,
) -> Result<Exit, Exit> {
    let credentials = &args.credentials;
    // Always given: clap's default is root.
    let user = credentials.login.user.as_deref().unwrap_or("root");
    let secrets = credentials
        .secrets(Some((user, credentials.key.as_deref())))
        .map_err(|e| super::refused("configure", e))?;
    let workflow = super::one_step("configure", &args.image, true, settings, dirs).await?;
    workflow.choose(&Choices {
        variant: Some(args.variant.into()),
        sshd_config: args.sshd_config.as_deref().map(super::absolute),
        cleanup: args.cleanup.clean.clone(),
        ..credentials.choices()
    });
    let options = StepOptions {
        // Headless: the diff is printed, then applied (scripts cannot answer a question).
        task: TaskOptions {
            answers: Answers {
                apply_sshd_config: Some(true),
                ..Answers::default()
            },
            ..TaskOptions::default()
        },
        timeout: args.boot.timeout(),
        ..StepOptions::default()
    };
    let task = workflow.start(Step::Configure, secrets, options);
    Ok(match report::follow("configure", task, false).await {
        Ok(_) => Exit::Ok,
        Err(e) => Exit::for_step(&e),
    })
}
