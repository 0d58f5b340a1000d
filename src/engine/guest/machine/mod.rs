//! A running QEMU under kiln's control: its command line, QMP, the serial console, the VGA
//! screen and VNC — and a lifecycle that never leaves an orphan behind.
//!
//! Every machine starts paused (`-S`) so kiln can attach the serial console before the guest
//! prints anything, then is resumed over QMP. QEMU is killed when the [`Machine`] is dropped,
//! when kiln dies (PR_SET_PDEATHSIG), and a record under the state directory lets a later kiln
//! find a machine that survived anyway.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::{broadcast, mpsc, watch};

use super::console::Console;
use super::qmp::{Qmp, QmpError};
use super::screen::{Picture, parse_ppm};
use crate::engine::driver::DriverProfile;
use crate::engine::host::Accelerator;
use crate::engine::host::process::{ToolError, install_hint};
use crate::engine::host::vcpus::{VcpuChoice, Vcpus};

mod argv;
mod lifecycle;
mod record;
mod serial;

pub use lifecycle::Machine;
pub use record::{MachineRecord, clean_leftover, leftovers};
pub use serial::serial_log_path;

use serial::SerialOutput;

const QEMU: &str = "qemu-system-x86_64";
/// The longest console line [`MachineView::console_nudges`] keeps for its test.
const MAX_NUDGE_LINE: usize = 512;

/// What to boot and how.
#[derive(Debug, Clone)]
pub struct MachineSpec {
    /// Short purpose ("install", "configure", "verify"), used in names and records.
    pub purpose: String,
    pub accelerator: Accelerator,
    pub memory_mib: u32,
    pub cpus: Vcpus,
    pub disk: PathBuf,
    /// Boot with `snapshot=on`: the image file is never written.
    pub snapshot: bool,
    /// Pass the guest's discards (fstrim) and zero writes through as holes, so freed space
    /// can be compacted away later (QEMU's default drops them).
    pub discard: bool,
    pub cdrom: Option<PathBuf>,
    /// Boot this kernel and initrd directly (`-kernel`, `-initrd`, `-append`) instead of the
    /// firmware's boot order: an installer without its boot menu.
    pub kernel: Option<DirectKernel>,
    /// Forward 127.0.0.1:PORT to the guest's port 22, trying upward from this port.
    pub ssh_forward_from: Option<u16>,
    /// Exit instead of rebooting (installers reboot when done).
    pub no_reboot: bool,
    /// Serve the screen over VNC on 127.0.0.1 for an external viewer.
    pub vnc: bool,
    /// Where QEMU also writes everything the serial port printed.
    pub serial_log: PathBuf,
    /// Where records of running machines live, for crash recovery.
    pub record_dir: Option<PathBuf>,
    /// Boot exactly as this CI driver does instead (the fields above that the driver fixes —
    /// size, drive, network — are then the driver's).
    pub driver: Option<DriverProfile>,
}

/// A kernel QEMU loads itself, with its initrd and command line.
#[derive(Debug, Clone)]
pub struct DirectKernel {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub append: String,
}

/// Why a machine could not be started or controlled.
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    #[error("{QEMU} was not found; install it with `{}`", install_hint(QEMU))]
    QemuMissing,
    #[error("{} is in use by another QEMU (it holds the image's write lock); stop that machine first", .0.display())]
    ImageInUse(PathBuf),
    #[error("QEMU cannot open {}: no such file", .0.display())]
    ImageMissing(PathBuf),
    #[error("{} is not booted: its qcow2 header names the {refs}, which QEMU would open for the guest (kiln check shows how to rebuild it standalone)", .disk.display())]
    NamesHostFiles { disk: PathBuf, refs: String },
    #[error("no free port for SSH forwarding from {first} to {last}")]
    NoFreePort { first: u16, last: u16 },
    #[error("QEMU stopped at start: {0}")]
    Exited(String),
    #[error("cannot attach to the serial console: {0}")]
    Serial(std::io::Error),
    #[error("QEMU control (QMP): {0}")]
    Qmp(#[from] QmpError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{} is not valid UTF-8, and QEMU takes paths inside its option strings; rename it", .0.display())]
    NonUtf8Path(PathBuf),
    #[error("the serial log {} cannot be made kiln's own file: {reason}", .path.display())]
    LogFile { path: PathBuf, reason: String },
    #[error("screen capture failed: {0}")]
    Screen(String),
}

impl From<ToolError> for MachineError {
    fn from(e: ToolError) -> Self {
        MachineError::Exited(e.to_string())
    }
}

/// How a machine's QEMU ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The guest powered off (or reset, under `-no-reboot`) by itself.
    GuestShutdown { reason: String },
    /// kiln or someone else stopped it (QMP quit, powerdown request, kill).
    Stopped,
    /// QEMU ended without a guest shutdown: crashed or killed from outside.
    Died { status: String, stderr: String },
}

impl Ending {
    /// How the machine ended, in QEMU's own words where it left any.
    pub fn describe(&self) -> String {
        match self {
            Ending::GuestShutdown { reason } => format!("the guest powered off ({reason})"),
            Ending::Stopped => "the machine was stopped from outside kiln".into(),
            Ending::Died { status, stderr } if stderr.is_empty() => {
                format!("QEMU ended ({status}) without a word")
            }
            Ending::Died { status, stderr } => format!("QEMU ended ({status}): {stderr}"),
        }
    }
}

/// A cheap handle on a running machine for frontends: console, keys, screen, addresses.
#[derive(Clone)]
pub struct MachineView {
    inner: Arc<ViewInner>,
}

struct ViewInner {
    console: Console,
    serial_input: mpsc::UnboundedSender<Vec<u8>>,
    serial: Arc<SerialOutput>,
    qmp: Qmp,
    vnc: Option<SocketAddr>,
    ssh_port: Option<u16>,
    accelerator: Accelerator,
    cpus: VcpuChoice,
    argv: Vec<String>,
    screen_file: PathBuf,
    serial_log: PathBuf,
}

impl std::fmt::Debug for MachineView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MachineView")
            .field("argv", &self.inner.argv)
            .finish_non_exhaustive()
    }
}

impl PartialEq for MachineView {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl MachineView {
    pub fn console(&self) -> &Console {
        &self.inner.console
    }

    /// Type bytes into the serial port.
    pub fn send_serial(&self, bytes: Vec<u8>) {
        let _ = self.inner.serial_input.send(bytes);
    }

    /// Everything the serial port printed so far (the last MiB) and a receiver for what
    /// follows, with no gap between the two.
    pub fn subscribe_serial(&self) -> (Vec<u8>, broadcast::Receiver<Vec<u8>>) {
        self.inner.serial.subscribe()
    }

    /// A signal that changes whenever the serial console completes a line `wanted` accepts
    /// (lines printed before this call do not count). It stops changing when the machine ends
    /// or the receiver is dropped.
    pub fn console_nudges(&self, wanted: fn(&str) -> bool) -> watch::Receiver<()> {
        let (history, mut live) = self.subscribe_serial();
        let (nudge, nudges) = watch::channel(());
        // The line under way when the history ends is finished by what follows.
        let mut line: Vec<u8> = match history.iter().rposition(|&b| b == b'\n') {
            Some(end) => history[end + 1..].to_vec(),
            None => history,
        };
        tokio::spawn(async move {
            loop {
                let bytes = tokio::select! {
                    received = live.recv() => match received {
                        Ok(bytes) => bytes,
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    _ = nudge.closed() => return,
                };
                for byte in bytes {
                    if byte != b'\n' {
                        // A line that never ends stops growing; its start decides.
                        if line.len() < MAX_NUDGE_LINE {
                            line.push(byte);
                        }
                        continue;
                    }
                    if wanted(&String::from_utf8_lossy(&line)) {
                        nudge.send_replace(());
                    }
                    line.clear();
                }
            }
        });
        nudges
    }

    /// The last `lines` lines of serial output, for error messages.
    pub fn serial_tail(&self, lines: usize) -> String {
        let (history, _) = self.inner.serial.subscribe();
        let text = String::from_utf8_lossy(&history);
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Press keys together on the VGA keyboard (QKeyCode names, e.g. `["ctrl", "alt", "f2"]`).
    pub async fn send_key(&self, keys: &[&str]) -> Result<(), MachineError> {
        Ok(self.inner.qmp.send_key(keys).await?)
    }

    /// Press or release one key on its own (a boot command's held modifier).
    pub async fn key_event(&self, key: &str, down: bool) -> Result<(), MachineError> {
        Ok(self.inner.qmp.key_event(key, down).await?)
    }

    /// Save the VGA screen as a PNG at `file`, for a person to look at later.
    pub async fn save_screen(&self, file: &Path) -> Result<(), MachineError> {
        Ok(self.inner.qmp.screendump_png(file).await?)
    }

    /// The VGA screen now.
    pub async fn screenshot(&self) -> Result<Picture, MachineError> {
        self.inner.qmp.screendump(&self.inner.screen_file).await?;
        let bytes = tokio::fs::read(&self.inner.screen_file).await?;
        parse_ppm(&bytes).map_err(MachineError::Screen)
    }

    pub fn vnc(&self) -> Option<SocketAddr> {
        self.inner.vnc
    }

    pub fn ssh_port(&self) -> Option<u16> {
        self.inner.ssh_port
    }

    pub fn accelerator(&self) -> Accelerator {
        self.inner.accelerator
    }

    /// The vCPUs the machine got, and why when they were decided at power-on.
    pub fn cpus(&self) -> &VcpuChoice {
        &self.inner.cpus
    }

    /// The full QEMU command line, shown verbatim to the user.
    pub fn argv(&self) -> &[String] {
        &self.inner.argv
    }

    pub fn serial_log(&self) -> &Path {
        &self.inner.serial_log
    }

    pub fn qmp(&self) -> &Qmp {
        &self.inner.qmp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An installer boot of a disk whose name holds a comma, for the submodules' tests.
    pub(super) fn spec() -> MachineSpec {
        MachineSpec {
            purpose: "install".into(),
            accelerator: Accelerator::Tcg,
            memory_mib: 1024,
            cpus: Vcpus::Exactly(1),
            disk: PathBuf::from("/images/a,b.qcow2"),
            snapshot: false,
            discard: false,
            cdrom: Some(PathBuf::from("/isos/debian.iso")),
            kernel: None,
            ssh_forward_from: None,
            no_reboot: true,
            vnc: false,
            serial_log: PathBuf::from("/images/a.install.serial.log"),
            record_dir: None,
            driver: None,
        }
    }
}
