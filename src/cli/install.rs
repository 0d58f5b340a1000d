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
    #[command(flatten)]
    pub unattended: UnattendedArgs,
    /// With --preset: the user the installer creates (configure then logs in as it).
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// With --preset: first line is the user's password. Never recorded.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
}

/// How the installer runs without a person; shared by `kiln install` and `kiln run`.
#[derive(Debug, Args, Default)]
pub struct UnattendedArgs {
    /// Keys to type into the installer's boot menu, in Packer's syntax: text, <enter> <esc>
    /// <tab> <f1>…, <wait5> <wait1m30s>, <leftCtrlOn>…, {{ .HTTPIP }} {{ .HTTPPort }},
    /// {{ env "VAR" }} (typed but never logged). Recorded in the session file.
    #[arg(long, value_name = "KEYS", conflicts_with = "boot_command_file")]
    pub boot_command: Option<String>,
    /// Read the boot command from this file (line breaks are not typed).
    #[arg(long, value_name = "FILE")]
    pub boot_command_file: Option<PathBuf>,
    /// Wait this long for the boot menu before the first key, e.g. 10s, 1m [default: 10s].
    #[arg(long, value_name = "DURATION")]
    pub boot_wait: Option<String>,
    /// Pause between two keys of the boot command [default: 100ms].
    #[arg(long, value_name = "DURATION")]
    pub key_interval: Option<String>,
    /// Serve this directory to the installer at http://10.0.2.2:PORT/ ({{ .HTTPIP }},
    /// {{ .HTTPPort }}), from 127.0.0.1 on this host, while the step runs.
    #[arg(long, value_name = "DIR")]
    pub http_dir: Option<PathBuf>,
    /// The answer-file server's port on 127.0.0.1 [default: any free port].
    #[arg(long, value_name = "PORT")]
    pub http_port: Option<u16>,
    /// Boot the installer's kernel and initrd from the ISO directly (-kernel -initrd
    /// -append), found by the ISO's layout (Debian, Ubuntu, Fedora, Alpine, Arch, isolinux).
    #[arg(long)]
    pub kernel_boot: bool,
    /// With --kernel-boot: the kernel's path inside the ISO, when the layout is not known.
    #[arg(long, value_name = "PATH", requires = "initrd")]
    pub kernel: Option<String>,
    /// With --kernel-boot: the initrd's path inside the ISO.
    #[arg(long, value_name = "PATH", requires = "kernel")]
    pub initrd: Option<String>,
    /// Arguments for the installer's kernel (implies --kernel-boot), e.g.
    /// "auto=true priority=critical url=http://{{ .HTTPIP }}:{{ .HTTPPort }}/preseed.cfg".
    #[arg(long, value_name = "ARGS")]
    pub kernel_args: Option<String>,
    /// Put the installer on the serial console (adds console=ttyS0,115200n8 to its kernel
    /// command line; without a boot command this means --kernel-boot).
    #[arg(long)]
    pub serial_console: bool,
    /// Install unattended with a built-in answer file: debian-12 (a minimal Debian with
    /// openssh-server, CI-ready sshd_config and an empty root password). Needs the user and
    /// password; boots the ISO's kernel directly when it can, else types into its menu.
    #[arg(long, value_name = "NAME")]
    pub preset: Option<String>,
    /// The package mirror a preset installs from, http://HOST/DIR [default: this host's
    /// Debian mirror from its apt sources].
    #[arg(long, value_name = "URL")]
    pub mirror: Option<String>,
}

impl UnattendedArgs {
    /// The choices these flags make (paths made absolute, the boot command file read).
    pub fn choices(&self) -> Result<Choices, String> {
        let boot_command = match &self.boot_command_file {
            Some(file) => Some(std::fs::read_to_string(file).map_err(|e| {
                format!("cannot read the boot command file {}: {e}", file.display())
            })?),
            None => self.boot_command.clone(),
        };
        let on = |flag: bool| flag.then_some(true);
        Ok(Choices {
            boot_command,
            boot_wait: self.boot_wait.clone(),
            key_interval: self.key_interval.clone(),
            http_dir: self.http_dir.as_deref().map(super::absolute),
            http_port: self.http_port,
            kernel_boot: on(self.kernel_boot),
            kernel: self.kernel.clone(),
            initrd: self.initrd.clone(),
            kernel_args: self.kernel_args.clone(),
            serial_console: on(self.serial_console),
            preset: self.preset.clone(),
            mirror: self.mirror.clone(),
            ..Choices::default()
        })
    }
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
    let mut choices = match args.unattended.choices() {
        Ok(choices) => choices,
        Err(problem) => {
            eprintln!("kiln install: {problem}");
            return Exit::Environment;
        }
    };
    choices.iso = Some(super::absolute(&args.iso));
    choices.iso_checksum = checksum;
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
