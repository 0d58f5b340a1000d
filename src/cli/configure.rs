//! `kiln configure IMAGE --user U (--password-file F | --key K)`: passwordless root and the
//! reference sshd_config; exit 0 only when a fresh root login with an empty password worked.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::{Exit, report};
use crate::engine::Step;
use crate::engine::config::{Dirs, Settings};
use crate::engine::configure::SshdVariant;
use crate::engine::session::Choices;
use crate::engine::task::{Answers, TaskOptions};
use crate::engine::workflow::{Secrets, StepOptions, secret_from_file};

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
pub struct ConfigureArgs {
    /// The installed disk image (booted writable).
    pub image: PathBuf,
    /// The user created during install (root works too).
    #[arg(long, default_value = "root")]
    pub user: String,
    /// A file whose first line is the user's password (also used for sudo).
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Log in with this private key instead of a password.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// A file whose first line is the key's passphrase (asked for when the key is encrypted).
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// Which documented sshd_config to install.
    #[arg(long, value_enum, default_value_t)]
    pub variant: Variant,
    /// Install this sshd_config instead (it must pass `sshd -t` in the guest).
    #[arg(long, value_name = "FILE", conflicts_with = "variant")]
    pub sshd_config: Option<PathBuf>,
    /// Zero free space and fstrim, so compaction can shrink the image later.
    #[arg(long)]
    pub zero_free_space: bool,
    /// Empty /etc/machine-id: every boot of a clone then makes its own machine ID.
    #[arg(long)]
    pub clear_machine_id: bool,
    /// Remove SSH host keys and install a first-boot unit that regenerates them.
    #[arg(long)]
    pub regenerate_host_keys: bool,
    /// Seconds to wait for the guest's SSH after power-on.
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub boot_timeout: u64,
}

pub async fn run(args: ConfigureArgs, settings: &Settings, dirs: Option<&Dirs>) -> Exit {
    let secrets = match secrets(&args) {
        Ok(secrets) => secrets,
        Err(message) => {
            eprintln!("kiln configure: {message}");
            return Exit::Environment;
        }
    };
    let workflow = match super::one_step("configure", &args.image, true, settings, dirs).await {
        Ok(workflow) => workflow,
        Err(exit) => return exit,
    };
    let on = |flag: bool| flag.then_some(true);
    workflow.choose(&Choices {
        user: Some(args.user.clone()),
        key: args.key.as_deref().map(super::absolute),
        variant: Some(args.variant.into()),
        sshd_config: args.sshd_config.as_deref().map(super::absolute),
        zero_free_space: on(args.zero_free_space),
        clear_machine_id: on(args.clear_machine_id),
        regenerate_host_keys: on(args.regenerate_host_keys),
        ..Choices::default()
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
        timeout: Some(Duration::from_secs(args.boot_timeout)),
        ..StepOptions::default()
    };
    let task = workflow.start(Step::Configure, secrets, options);
    match report::follow("configure", task, false).await {
        Ok(_) => Exit::Ok,
        Err(e) => Exit::for_step(&e),
    }
}

/// The password (file or prompt) and the key's passphrase, read before anything boots.
fn secrets(args: &ConfigureArgs) -> Result<Secrets, String> {
    let password = match &args.password_file {
        Some(file) => Some(first_line(file)?),
        None if args.key.is_none() && args.user != "root" => {
            Some(prompt(&format!("password for {}: ", args.user))?)
        }
        None => None,
    };
    let mut secrets = Secrets {
        password,
        ..Secrets::default()
    };
    if let Some(key) = &args.key {
        if !key.exists() {
            return Err(format!("key {} does not exist", key.display()));
        }
        secrets.passphrase = match &args.passphrase_file {
            Some(file) => Some(first_line(file)?),
            None if key_is_encrypted(key) => {
                Some(prompt(&format!("passphrase for {}: ", key.display()))?)
            }
            None => None,
        };
    }
    Ok(secrets)
}

/// The first line of a secret file, without its newline.
pub(super) fn first_line(file: &Path) -> Result<String, String> {
    secret_from_file(file).map_err(|e| format!("cannot read {}: {e}", file.display()))
}

/// Ask on the terminal without echo; refuse when there is no terminal to ask on.
pub(super) fn prompt(question: &str) -> Result<String, String> {
    if !std::io::stdin().is_terminal() {
        return Err(format!(
            "{}needs a terminal; use --password-file / --passphrase-file",
            question.trim_end_matches(": ")
        ));
    }
    rpassword::prompt_password(question).map_err(|e| format!("cannot read the answer: {e}"))
}

/// Whether the key needs a passphrase (russh says so when loading it without one).
pub(super) fn key_is_encrypted(key: &Path) -> bool {
    matches!(
        russh::keys::load_secret_key(key, None),
        Err(russh::keys::Error::KeyIsEncrypted)
    )
}
