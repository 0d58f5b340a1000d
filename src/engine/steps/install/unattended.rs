//! What makes an install run without a person: a boot command typed into the installer's boot
//! menu, an answer-file server the guest reaches as 10.0.2.2, and direct kernel boot from the
//! ISO's own kernel and initrd (with the installer on the serial console if asked).
//!
//! Everything that can be wrong with these settings is found by [`Plan::prepare`], before
//! QEMU starts; [`type_boot_command`] then performs the typing against the running machine.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc;

use super::answer_server::{AnswerServer, AnswerServerError, GUEST_HOST_ADDRESS, ServedRequest};
use super::boot_command::{self, Action, BootCommand, BootCommandError, Values};
use super::mirror::MirrorError;
use super::preset::{self, Preset, PresetError, PresetValues};
use crate::engine::files::iso::filesystem::{IsoFilesystem, IsoReadError};
use crate::engine::files::iso::kernel::{InstallerKernel, KernelNotFound, find_installer_kernel};
use crate::engine::guest::machine::{DirectKernel, MachineError, MachineView};
use crate::engine::task::Reporter;

/// The kernel argument that puts an installer's console on the first serial port, which kiln
/// shows (and types into) in its console pane.
pub const SERIAL_CONSOLE_ARG: &str = "console=ttyS0,115200n8";

/// How the install runs without a person; all optional.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Unattended {
    /// Keys typed into the boot menu, in Packer's syntax (checked where it was typed).
    pub boot_command: Option<BootCommand>,
    /// Time for the firmware and boot menu to come up before the first key.
    pub boot_wait: Option<Duration>,
    /// Pause between two keys.
    pub key_interval: Option<Duration>,
    /// Served to the guest at http://10.0.2.2:PORT/ for the length of the step.
    pub http_dir: Option<PathBuf>,
    /// The answer-file server's port on 127.0.0.1 (any free one when unset).
    pub http_port: Option<u16>,
    /// Boot the installer's kernel and initrd from the ISO directly.
    pub kernel_boot: Option<KernelBoot>,
    /// Add `console=ttyS0,115200n8` to the installer's kernel command line (implies direct
    /// kernel boot when no boot command is given).
    pub serial_console: bool,
    /// A built-in answer file, filled in and served (instead of an HTTP directory), with the
    /// kernel arguments that start it.
    pub preset: Option<PresetChoice>,
}

/// Which preset, with the person's values for it.
#[derive(Debug, Clone, PartialEq)]
pub struct PresetChoice {
    pub name: String,
    pub values: PresetValues,
}

/// Direct kernel boot: which kernel and initrd (found by the ISO's layout when unset), and
/// the arguments added to the layout's own.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KernelBoot {
    pub kernel: Option<String>,
    pub initrd: Option<String>,
    pub args: String,
}

/// Why the unattended settings cannot be used; each message names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum UnattendedError {
    #[error(transparent)]
    BootCommand(#[from] BootCommandError),
    #[error(transparent)]
    AnswerServer(#[from] AnswerServerError),
    #[error("cannot read the installer ISO: {0}")]
    Iso(#[from] IsoReadError),
    #[error(transparent)]
    Kernel(#[from] KernelNotFound),
    #[error("cannot make a temporary directory for the install: {0}")]
    TempDir(std::io::Error),
    #[error(transparent)]
    Preset(#[from] PresetError),
    #[error("a preset serves its own answer files: leave out the HTTP directory, or the preset")]
    PresetAndHttpDir,
    #[error(transparent)]
    Mirror(#[from] MirrorError),
}

/// What the installer boots from, on this host.
#[derive(Debug, Clone)]
pub enum BootMedia {
    /// An installer ISO (absolute path).
    Iso(PathBuf),
    /// A netboot kernel and initrd, already downloaded and checked.
    Netboot { kernel: PathBuf, initrd: PathBuf },
}

/// The unattended settings, checked and ready: the server running, the kernel extracted,
/// the boot command turned into actions.
pub struct Plan {
    /// Kept until the install ends: dropping it stops the server.
    server: Option<AnswerServer>,
    /// Each request the guest made of the answer-file server.
    pub requests: Option<mpsc::UnboundedReceiver<ServedRequest>>,
    pub actions: Vec<Action>,
    pub boot_wait: Duration,
    pub key_interval: Duration,
    pub kernel: Option<DirectKernel>,
    /// Which layout the kernel was found by, for the log.
    pub kernel_layout: Option<&'static str>,
    /// Holds the extracted kernel and initrd; removed when the plan is dropped.
    _kernel_dir: Option<tempfile::TempDir>,
    /// Holds a preset's filled-in answer files (a password among them) while they are served.
    _answers_dir: Option<tempfile::TempDir>,
}

impl Plan {
    /// Check every setting and get what the machine needs, in the order that fails fastest:
    /// the ISO's kernel, then the server (which binds a port). The boot command was read
    /// where it was typed.
    pub fn prepare(settings: &Unattended, media: &BootMedia) -> Result<Plan, UnattendedError> {
        let preset = PresetAnswers::choose(settings, media)?;
        let settings = preset.as_ref().map_or(settings, |p| &p.settings);
        let command = settings.boot_command.clone();
        let boot = settings.kernel_boot.clone().unwrap_or_default();
        let (kernel, kernel_layout, kernel_dir) = match media {
            // Netboot files are nothing but a kernel: it boots directly, always.
            BootMedia::Netboot { kernel, initrd } => {
                let direct = DirectKernel {
                    kernel: kernel.clone(),
                    initrd: initrd.clone(),
                    append: command_line(&["", &boot.args], settings.serial_console),
                };
                (Some(direct), Some("netboot files"), None)
            }
            BootMedia::Iso(iso)
                if settings.kernel_boot.is_some()
                    || (settings.serial_console && command.is_none()) =>
            {
                let (direct, layout, dir) = extract_kernel(iso, &boot, settings.serial_console)?;
                (Some(direct), Some(layout), Some(dir))
            }
            BootMedia::Iso(_) => (None, None, None),
        };
        let (server, requests) = match &settings.http_dir {
            Some(dir) => {
                let (sender, receiver) = mpsc::unbounded_channel();
                let server = AnswerServer::start(dir, settings.http_port, sender)?;
                if let Some(preset) = &preset {
                    preset.write(server.port())?;
                }
                (Some(server), Some(receiver))
            }
            None => (None, None),
        };
        let mut values = Values::new().with(boot_command::HTTP_IP, GUEST_HOST_ADDRESS.to_string());
        if let Some(server) = &server {
            values = values.with(boot_command::HTTP_PORT, server.port().to_string());
        }
        let actions = match &command {
            Some(command) => command.actions(&values)?,
            None => Vec::new(),
        };
        let (kernel, kernel_layout) = match kernel {
            Some(mut direct) => {
                direct.append = fill_placeholders(&direct.append, server.as_ref());
                (Some(direct), kernel_layout)
            }
            None => (None, None),
        };
        Ok(Plan {
            server,
            requests,
            actions,
            boot_wait: settings
                .boot_wait
                .unwrap_or(boot_command::DEFAULT_BOOT_WAIT),
            key_interval: settings
                .key_interval
                .unwrap_or(boot_command::DEFAULT_KEY_INTERVAL),
            kernel,
            kernel_layout,
            _kernel_dir: kernel_dir,
            _answers_dir: preset.map(|p| p.dir),
        })
    }

    /// The answer-file server's address as the guest sees it.
    pub fn guest_url(&self) -> Option<String> {
        self.server.as_ref().map(AnswerServer::guest_url)
    }
}

/// Before a preset's installer boots: is its mirror the preset's archive, and signed? An
/// unsigned one is used only when the person said so, and the log says so every time.
pub async fn examine_mirror(
    settings: &Unattended,
    reporter: &Reporter,
) -> Result<(), UnattendedError> {
    let Some(choice) = &settings.preset else {
        return Ok(());
    };
    let preset = Preset::find(&choice.name)?;
    let (mirror, insecure) = (&choice.values.mirror, choice.values.insecure_mirror);
    let Some(archive) = &preset.archive else {
        // Not a Debian-style archive: the installer checks what it downloads itself.
        reporter.info(format!("mirror {}", mirror.url()));
        return Ok(());
    };
    reporter.info(format!(
        "mirror {}: examining its Release file…",
        mirror.url()
    ));
    let signature = mirror.examine(archive, insecure).await?;
    reporter.info(format!(
        "mirror {}: the {} archive for {}, {signature}",
        mirror.url(),
        archive.origin,
        archive.suite
    ));
    if insecure {
        reporter.warn(format!(
            "signature checks are OFF for this install (--insecure-mirror): the installed \
             system takes whatever {} serves. Only for a local test mirror",
            mirror.url()
        ));
    }
    Ok(())
}

/// A preset in use: its answer files' directory and the settings that start it.
struct PresetAnswers {
    preset: Preset,
    values: PresetValues,
    dir: tempfile::TempDir,
    /// The person's settings with the preset's way of starting the installer and its
    /// answer-file directory.
    settings: Unattended,
}

impl PresetAnswers {
    /// Check the preset and its values; start the installer with the preset's kernel
    /// arguments when the ISO's kernel can be found, else with its boot command through the
    /// boot menu — unless the person gave a boot command or kernel arguments of their own.
    fn choose(
        settings: &Unattended,
        media: &BootMedia,
    ) -> Result<Option<PresetAnswers>, UnattendedError> {
        let Some(choice) = &settings.preset else {
            return Ok(None);
        };
        if settings.http_dir.is_some() {
            return Err(UnattendedError::PresetAndHttpDir);
        }
        let preset = Preset::find(&choice.name)?;
        preset.check(&choice.values)?;
        let dir = tempfile::Builder::new()
            .prefix("kiln-answers-")
            .tempdir()
            .map_err(UnattendedError::TempDir)?;
        let mut effective = settings.clone();
        effective.http_dir = Some(dir.path().to_path_buf());
        if effective.boot_command.is_none() && effective.kernel_boot.is_none() {
            let kernel_found = match media {
                BootMedia::Netboot { .. } => true,
                BootMedia::Iso(iso) => IsoFilesystem::open(iso)
                    .ok()
                    .is_some_and(|filesystem| find_installer_kernel(&filesystem).is_ok()),
            };
            if kernel_found {
                effective.kernel_boot = Some(KernelBoot {
                    args: preset.kernel_args(&choice.values),
                    ..KernelBoot::default()
                });
            } else {
                let typed = preset.boot_command(&choice.values);
                effective.boot_command = Some(BootCommand::for_install(&typed)?);
            }
        }
        Ok(Some(PresetAnswers {
            preset,
            values: choice.values.clone(),
            dir,
            settings: effective,
        }))
    }

    /// Fill in the answer files for the server listening on `port`.
    fn write(&self, port: u16) -> Result<(), PresetError> {
        self.preset
            .write_answers(self.dir.path(), &self.values, port)
    }
}

/// `{{ .HTTPIP }}` and `{{ .HTTPPort }}` in kernel arguments, as in a boot command (kernel
/// arguments point the installer at its answer file just as a typed command line does).
fn fill_placeholders(args: &str, server: Option<&AnswerServer>) -> String {
    let address = GUEST_HOST_ADDRESS.to_string();
    let port = server.map(|s| s.port().to_string());
    let mut pairs = vec![(boot_command::HTTP_IP, address.as_str())];
    if let Some(port) = &port {
        pairs.push((boot_command::HTTP_PORT, port));
    }
    preset::fill(args, &pairs)
}

/// Copy the installer's kernel and initrd out of the ISO into a private directory, and put
/// its command line together: the layout's own arguments, the user's, the serial console.
fn extract_kernel(
    iso: &Path,
    boot: &KernelBoot,
    serial_console: bool,
) -> Result<(DirectKernel, &'static str, tempfile::TempDir), UnattendedError> {
    let filesystem = IsoFilesystem::open(iso)?;
    let found: InstallerKernel = match (&boot.kernel, &boot.initrd) {
        (Some(kernel), Some(initrd)) => InstallerKernel::explicit(&filesystem, kernel, initrd)?,
        _ => find_installer_kernel(&filesystem)?,
    };
    let dir = tempfile::Builder::new()
        .prefix("kiln-kernel-")
        .tempdir()
        .map_err(UnattendedError::TempDir)?;
    let kernel = dir.path().join("kernel");
    let initrd = dir.path().join("initrd");
    for (role, inner, dest) in [
        ("kernel", &found.kernel, &kernel),
        ("initrd", &found.initrd, &initrd),
    ] {
        let entry = filesystem
            .lookup(inner)?
            .ok_or_else(|| KernelNotFound::MissingGiven {
                iso: iso.to_path_buf(),
                role,
                inner: inner.clone(),
            })?;
        filesystem.extract(&entry, dest)?;
    }
    let direct = DirectKernel {
        kernel,
        initrd,
        append: command_line(&[&found.base_args, &boot.args], serial_console),
    };
    Ok((direct, found.layout, dir))
}

/// A kernel command line: the layout's own arguments, the person's, the serial console.
fn command_line(parts: &[&str], serial_console: bool) -> String {
    let mut append = parts.to_vec();
    // The serial console goes last: Linux makes the last `console=` the installer's terminal.
    if serial_console {
        append.push(SERIAL_CONSOLE_ARG);
    }
    append
        .into_iter()
        .filter(|part| !part.trim().is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Wait `boot_wait`, then type the boot command, logging each chunk as it is done.
pub async fn type_boot_command(
    machine: &MachineView,
    actions: &[Action],
    boot_wait: Duration,
    key_interval: Duration,
    reporter: &Reporter,
) -> Result<(), MachineError> {
    if actions.is_empty() {
        return Ok(());
    }
    reporter.info(format!(
        "boot command: waiting {} s for the boot menu",
        boot_wait.as_secs_f32()
    ));
    tokio::time::sleep(boot_wait).await;
    for chunk in boot_command::chunks(actions) {
        for action in chunk.actions {
            match action {
                Action::Press { keys, .. } => machine.send_key(keys).await?,
                Action::Hold { key, .. } => machine.key_event(key, true).await?,
                Action::Release { key, .. } => machine.key_event(key, false).await?,
                Action::Wait(duration) => {
                    tokio::time::sleep(*duration).await;
                    continue;
                }
            }
            tokio::time::sleep(key_interval).await;
        }
        reporter.info(format!("boot command: {}", chunk.shown));
    }
    Ok(())
}

/// Log each request the guest makes of the answer-file server; a miss is a warning, since an
/// installer that cannot fetch its answer file stops at a question.
pub async fn report_requests(
    mut requests: mpsc::UnboundedReceiver<ServedRequest>,
    reporter: Reporter,
) {
    while let Some(request) = requests.recv().await {
        if request.status < 400 {
            reporter.info(request.to_string());
        } else {
            reporter.warn(request.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_in_kernel_arguments_name_the_server() {
        let dir = tempfile::tempdir().unwrap();
        let (sender, _receiver) = mpsc::unbounded_channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _entered = runtime.enter();
        let server = AnswerServer::start(dir.path(), None, sender).unwrap();
        let port = server.port();
        let filled = fill_placeholders(
            "url=http://{{ .HTTPIP }}:{{.HTTPPort}}/preseed.cfg auto=true",
            Some(&server),
        );
        assert_eq!(
            filled,
            format!("url=http://10.0.2.2:{port}/preseed.cfg auto=true")
        );
        // Without a server the port stays a placeholder: the installer's fetch fails visibly.
        assert!(fill_placeholders("{{ .HTTPPort }}", None).contains("HTTPPort"));
    }
}
