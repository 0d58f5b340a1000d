//! A running QEMU under kiln's control: its command line, QMP, the serial console, the VGA
//! screen and VNC — and a lifecycle that never leaves an orphan behind.
//!
//! Every machine starts paused (`-S`) so kiln can attach the serial console before the guest
//! prints anything, then is resumed over QMP. QEMU is killed when the [`Machine`] is dropped,
//! when kiln dies (PR_SET_PDEATHSIG), and a record under the state directory lets a later kiln
//! find a machine that survived anyway.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::process::Child;
use tokio::sync::{broadcast, mpsc, watch};

use super::console::Console;
use super::driver::DriverProfile;
use super::host::Accelerator;
use super::process::{self, ToolError, install_hint};
use super::qcow2_header;
use super::qmp::{Qmp, QmpError, QmpEvent};
use super::screen::{Picture, parse_ppm};
use super::vcpus::{VcpuChoice, Vcpus};

const QEMU: &str = "qemu-system-x86_64";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Ports tried for the SSH forward before giving up, as the Djinn driver walks upward.
const PORT_ATTEMPTS: u16 = 50;
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

impl MachineSpec {
    /// The guest-facing part of the command line (what a person would type by hand), with the
    /// vCPU count chosen at power-on.
    pub fn guest_args(&self, ssh_port: Option<u16>, cpus: u32) -> Vec<String> {
        if let (Some(driver), Some(port)) = (&self.driver, ssh_port) {
            let mut args = vec!["-name".into(), format!("kiln-{}", self.purpose)];
            args.extend(driver.guest_args(&self.disk, port));
            return args;
        }
        let mut args = vec!["-name".into(), format!("kiln-{}", self.purpose)];
        match self.accelerator {
            Accelerator::Kvm => args.extend(["-accel", "kvm", "-cpu", "host"].map(String::from)),
            Accelerator::Tcg => args.extend(["-accel", "tcg"].map(String::from)),
        }
        args.extend([
            "-smp".into(),
            cpus.to_string(),
            "-m".into(),
            self.memory_mib.to_string(),
        ]);
        // The format is said, never probed: a probed header may name host files to open.
        let mut drive = format!(
            "file={},format=qcow2,media=disk,if=virtio",
            qemu_escape(&self.disk)
        );
        if self.snapshot {
            drive.push_str(",snapshot=on");
        }
        if self.discard {
            drive.push_str(",discard=unmap,detect-zeroes=unmap");
        }
        args.extend(["-drive".into(), drive]);
        if let Some(iso) = &self.cdrom {
            // `-cdrom` would probe the format, and an "ISO" that is really a qcow2 could name
            // a backing file; an installer is raw bytes, read-only.
            args.extend([
                "-drive".into(),
                format!(
                    "file={},format=raw,media=cdrom,readonly=on",
                    qemu_escape(iso)
                ),
            ]);
        }
        if let Some(direct) = &self.kernel {
            args.extend([
                "-kernel".into(),
                direct.kernel.display().to_string(),
                "-initrd".into(),
                direct.initrd.display().to_string(),
                "-append".into(),
                direct.append.clone(),
            ]);
        }
        args.extend(["-net".into(), "nic,model=virtio".into(), "-net".into()]);
        args.push(match ssh_port {
            Some(port) => format!("user,hostfwd=tcp:127.0.0.1:{port}-:22"),
            None => "user".into(),
        });
        if self.no_reboot {
            args.push("-no-reboot".into());
        }
        args
    }
}

/// `,` separates QEMU options, so a comma in a file name is written `,,`.
fn qemu_escape(path: &Path) -> String {
    path.display().to_string().replace(',', ",,")
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

/// The serial log kept next to the image: `NAME.install.serial.log`.
pub fn serial_log_path(image: &Path, purpose: &str) -> PathBuf {
    let stem = image
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into());
    image.with_file_name(format!("{stem}.{purpose}.serial.log"))
}

/// QEMU opens the serial log by name, following links and truncating: the name must hold a
/// regular file of ours before QEMU starts. A link or someone else's file put there (in a
/// shared directory, to make a root kiln truncate another file) is removed and replaced by a
/// file created exclusively.
fn claim_log_file(path: &Path) -> Result<(), MachineError> {
    use std::os::unix::fs::MetadataExt;
    let refuse = |reason: String| MachineError::LogFile {
        path: path.to_path_buf(),
        reason,
    };
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_file() && meta.uid() == me => return Ok(()),
        Ok(meta) if meta.is_dir() => return Err(refuse("a directory is in its place".into())),
        Ok(_) => std::fs::remove_file(path)
            .map_err(|e| refuse(format!("something else is in its place and stays: {e}")))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(refuse(e.to_string())),
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map(drop)
        .map_err(|e| refuse(e.to_string()))
}

/// A QEMU process kiln started and owns.
pub struct Machine {
    child: Child,
    view: MachineView,
    stderr: Arc<Mutex<String>>,
    guest_shutdown: Arc<Mutex<Option<String>>>,
    stop_requested: bool,
    record: Option<PathBuf>,
    _run_dir: RunDir,
}

impl Machine {
    /// Start a machine; with an SSH forward, walk ports upward while QEMU says the forwarding
    /// rule could not be set up (as the Djinn driver does).
    pub async fn start(spec: &MachineSpec) -> Result<Machine, MachineError> {
        // The count is in the command line logged below; a decided one is also said by the
        // step's reporter (Reporter::machine).
        let cpus = spec.cpus.choose().await;
        let Some(first) = spec.ssh_forward_from else {
            return Machine::start_once(spec, None, cpus).await;
        };
        let last = first.saturating_add(PORT_ATTEMPTS - 1);
        for port in first..=last {
            match Machine::start_once(spec, Some(port), cpus.clone()).await {
                Err(MachineError::Exited(stderr))
                    if stderr.contains("Could not set up host forwarding rule") =>
                {
                    tracing::info!("port {port} is taken; trying {}", port + 1);
                }
                other => return other,
            }
        }
        Err(MachineError::NoFreePort { first, last })
    }

    async fn start_once(
        spec: &MachineSpec,
        ssh_port: Option<u16>,
        cpus: VcpuChoice,
    ) -> Result<Machine, MachineError> {
        // QEMU takes paths inside option strings (`file=…`): they must be UTF-8 to arrive
        // as they are, not mangled into a name that does not exist.
        let paths = [
            Some(&spec.disk),
            spec.cdrom.as_ref(),
            Some(&spec.serial_log),
        ];
        if let Some(path) = paths.into_iter().flatten().find(|p| p.to_str().is_none()) {
            return Err(MachineError::NonUtf8Path(path.clone()));
        }
        // The last line of defence: whoever asked, no disk that names host files boots.
        if let Ok(Some(refs)) = qcow2_header::host_file_refs(&spec.disk)
            && !refs.is_empty()
        {
            return Err(MachineError::NamesHostFiles {
                disk: spec.disk.clone(),
                refs: refs.describe(),
            });
        }
        claim_log_file(&spec.serial_log)?;
        let run_dir = RunDir::create(&spec.purpose)?;
        let qmp_socket = run_dir.0.join("qmp.sock");
        let serial_socket = run_dir.0.join("serial.sock");

        let mut argv = vec![QEMU.to_string()];
        argv.extend(spec.guest_args(ssh_port, cpus.count));
        argv.extend(["-display".into(), "none".into()]);
        if spec.vnc {
            // QEMU takes the first free display from 0 to 99 itself: no race with other
            // machines starting at the same moment.
            argv.extend(["-vnc".into(), "127.0.0.1:0,to=99".into()]);
        }
        argv.extend([
            "-qmp".into(),
            format!("unix:{},server=on,wait=off", qemu_escape(&qmp_socket)),
            "-chardev".into(),
            format!(
                "socket,id=serial0,path={},server=on,wait=off,logfile={}",
                qemu_escape(&serial_socket),
                qemu_escape(&spec.serial_log)
            ),
            "-serial".into(),
            "chardev:serial0".into(),
            "-S".into(),
        ]);
        tracing::info!("starting {}", argv.join(" "));

        // Its own process group: a terminal's Ctrl-C reaches kiln, which shuts QEMU down in
        // order (ACPI, then quit) instead of the guest losing power mid-write.
        let mut command = process::command(QEMU);
        command
            .args(&argv[1..])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                MachineError::QemuMissing
            } else {
                MachineError::Io(e)
            }
        })?;
        let stderr = Arc::new(Mutex::new(String::new()));
        if let Some(mut pipe) = child.stderr.take() {
            let stderr = stderr.clone();
            tokio::spawn(async move {
                let mut buffer = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buffer).await {
                    if n == 0 {
                        break;
                    }
                    let text = String::from_utf8_lossy(&buffer[..n]).into_owned();
                    tracing::info!("qemu stderr: {}", text.trim_end());
                    stderr.lock().expect("stderr lock").push_str(&text);
                }
            });
        }

        // QEMU that cannot start (image locked, port taken) exits before QMP answers — or
        // just after accepting the QMP connection, resetting it under us.
        let connected = tokio::select! {
            qmp = Qmp::connect(&qmp_socket, CONNECT_TIMEOUT) => qmp.map_err(|e| (e, None)),
            status = child.wait() => Err((QmpError::Closed, Some(status))),
        };
        let qmp = match connected {
            Ok(qmp) => qmp,
            Err((error, status)) => {
                let status = match status {
                    Some(status) => Some(status?),
                    None => tokio::time::timeout(Duration::from_secs(2), child.wait())
                        .await
                        .ok()
                        .transpose()?,
                };
                let Some(status) = status else {
                    return Err(error.into());
                };
                // Let the stderr reader catch up with QEMU's last words.
                tokio::time::sleep(Duration::from_millis(100)).await;
                let text = stderr.lock().expect("stderr lock").trim().to_string();
                return Err(explain_start_failure(spec, status.to_string(), text));
            }
        };

        let vnc = if spec.vnc {
            qmp.vnc_address().await?
        } else {
            None
        };
        let serial = connect_serial(&serial_socket).await?;
        let console = Console::new(24, 80);
        let serial_output = Arc::new(SerialOutput::new());
        let (serial_input, input_rx) = mpsc::unbounded_channel();
        spawn_serial_pumps(serial, console.clone(), serial_output.clone(), input_rx);

        let guest_shutdown = Arc::new(Mutex::new(None));
        let mut events = qmp.events();
        {
            let guest_shutdown = guest_shutdown.clone();
            tokio::spawn(async move {
                while let Ok(event) = events.recv().await {
                    if let QmpEvent::Shutdown {
                        guest: true,
                        reason,
                    } = event
                    {
                        *guest_shutdown.lock().expect("shutdown lock") = Some(reason);
                    }
                }
            });
        }

        let view = MachineView {
            inner: Arc::new(ViewInner {
                console,
                serial_input,
                serial: serial_output,
                qmp: qmp.clone(),
                vnc,
                ssh_port,
                accelerator: spec.accelerator,
                cpus,
                argv,
                screen_file: run_dir.0.join("screen.ppm"),
                serial_log: spec.serial_log.clone(),
            }),
        };
        let record = spec
            .record_dir
            .as_deref()
            .and_then(|dir| write_record(dir, &child, spec, &run_dir.0).ok());
        if let Err(e) = qmp.cont().await {
            // QEMU dies with `child` (kill-on-drop); its record must not outlive it.
            if let Some(record) = record {
                let _ = std::fs::remove_file(record);
            }
            return Err(e.into());
        }
        Ok(Machine {
            child,
            view,
            stderr,
            guest_shutdown,
            stop_requested: false,
            record,
            _run_dir: run_dir,
        })
    }

    /// The QEMU process, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub fn view(&self) -> MachineView {
        self.view.clone()
    }

    /// Wait until QEMU exits, and say why it did.
    pub async fn wait(&mut self) -> Result<Ending, MachineError> {
        let status = self.child.wait().await?;
        // QEMU sends SHUTDOWN before it exits; give the QMP reader a moment to deliver it.
        for _ in 0..20 {
            if self.view.qmp().is_closed() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.remove_record();
        let shutdown = self.guest_shutdown.lock().expect("shutdown lock").clone();
        Ok(match shutdown {
            Some(reason) if !self.stop_requested => Ending::GuestShutdown { reason },
            _ if self.stop_requested => Ending::Stopped,
            _ => Ending::Died {
                status: status.to_string(),
                stderr: self.stderr.lock().expect("stderr lock").trim().to_string(),
            },
        })
    }

    /// Stop the machine: ACPI power button, then QMP quit, then kill — each after a wait.
    pub async fn shut_down(&mut self, grace: Duration) {
        self.stop_requested = true;
        if self.child.try_wait().ok().flatten().is_some() {
            self.remove_record();
            return;
        }
        let qmp = self.view.qmp().clone();
        if qmp.system_powerdown().await.is_ok()
            && tokio::time::timeout(grace, self.child.wait()).await.is_ok()
        {
            self.remove_record();
            return;
        }
        let _ = qmp.quit().await;
        if tokio::time::timeout(Duration::from_secs(3), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
        self.remove_record();
    }

    fn remove_record(&mut self) {
        if let Some(record) = self.record.take() {
            let _ = std::fs::remove_file(record);
        }
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        // kill_on_drop ends QEMU; the record goes with it.
        self.remove_record();
    }
}

fn explain_start_failure(spec: &MachineSpec, status: String, stderr: String) -> MachineError {
    if stderr.contains("Failed to get \"write\" lock") || stderr.contains("Failed to get shared") {
        MachineError::ImageInUse(spec.disk.clone())
    } else if stderr.contains("No such file or directory")
        && stderr.contains(&spec.disk.display().to_string())
    {
        MachineError::ImageMissing(spec.disk.clone())
    } else if stderr.is_empty() {
        MachineError::Exited(status)
    } else {
        MachineError::Exited(stderr)
    }
}

async fn connect_serial(path: &Path) -> Result<UnixStream, MachineError> {
    let mut last_error = None;
    for _ in 0..50 {
        match UnixStream::connect(path).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last_error = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(MachineError::Serial(
        last_error.expect("at least one attempt"),
    ))
}

/// Serial output fanned out to subscribers, with recent history for late ones.
struct SerialOutput {
    history: Mutex<VecDeque<u8>>,
    live: broadcast::Sender<Vec<u8>>,
}

impl SerialOutput {
    const HISTORY: usize = 1 << 20;

    fn new() -> SerialOutput {
        SerialOutput {
            history: Mutex::new(VecDeque::new()),
            live: broadcast::channel(1024).0,
        }
    }

    fn publish(&self, bytes: &[u8]) {
        // Held across both so a subscriber sees each byte exactly once.
        let mut history = self.history.lock().expect("serial history lock");
        history.extend(bytes);
        let excess = history.len().saturating_sub(Self::HISTORY);
        history.drain(..excess);
        let _ = self.live.send(bytes.to_vec());
    }

    fn subscribe(&self) -> (Vec<u8>, broadcast::Receiver<Vec<u8>>) {
        let history = self.history.lock().expect("serial history lock");
        (history.iter().copied().collect(), self.live.subscribe())
    }
}

fn spawn_serial_pumps(
    serial: UnixStream,
    console: Console,
    output: Arc<SerialOutput>,
    mut input: mpsc::UnboundedReceiver<Vec<u8>>,
) {
    let (mut reader, mut writer) = serial.into_split();
    tokio::spawn(async move {
        let mut buffer = vec![0u8; 8192];
        while let Ok(n) = reader.read(&mut buffer).await {
            if n == 0 {
                break;
            }
            console.feed(&buffer[..n]);
            output.publish(&buffer[..n]);
        }
    });
    tokio::spawn(async move {
        while let Some(bytes) = input.recv().await {
            if writer.write_all(&bytes).await.is_err() {
                break;
            }
        }
    });
}

/// A private directory for one machine's sockets and screen dumps, removed on drop.
struct RunDir(PathBuf);

impl RunDir {
    /// A new directory with a random name, made by us alone with mode 0700 (mkdtemp): the
    /// QMP and serial sockets carry keystrokes and the screendump is written by QEMU, so no
    /// other local user may have made, or be able to enter, the place they live in. Under
    /// `$XDG_RUNTIME_DIR` when set, else the temp dir; short, as socket paths are ≤ 107 bytes.
    fn create(purpose: &str) -> std::io::Result<RunDir> {
        let base = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|dir| dir.is_dir())
            .unwrap_or_else(std::env::temp_dir);
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new()
            .prefix(&format!("kiln-{purpose}-"))
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(base)?
            .keep();
        Ok(RunDir(dir))
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What a record of a running machine says, for finding it after kiln crashed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MachineRecord {
    pub qemu_pid: u32,
    pub kiln_pid: u32,
    pub purpose: String,
    pub image: PathBuf,
    /// When the QEMU process started (clock ticks since boot, /proc/PID/stat field 22) and
    /// the private run directory in its command line: a pid reused by another program, even
    /// another QEMU, matches neither.
    #[serde(default)]
    pub qemu_started: u64,
    #[serde(default)]
    pub run_dir: PathBuf,
}

impl MachineRecord {
    /// Whether the process at `qemu_pid` is still the QEMU this record was written for.
    fn is_that_machine(&self) -> bool {
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", self.qemu_pid))
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default();
        let run_dir = self.run_dir.to_string_lossy();
        !run_dir.is_empty()
            && cmdline.contains("qemu-system")
            && cmdline.contains(run_dir.as_ref())
            && process_start_time(self.qemu_pid) == Some(self.qemu_started)
    }
}

/// /proc/PID/stat field 22: when the process started, in clock ticks since boot.
fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses; fields count after its ')'.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

fn write_record(
    dir: &Path,
    child: &Child,
    spec: &MachineSpec,
    run_dir: &Path,
) -> std::io::Result<PathBuf> {
    let qemu_pid = child.id().unwrap_or_default();
    std::fs::create_dir_all(dir)?;
    let record = MachineRecord {
        qemu_pid,
        kiln_pid: std::process::id(),
        purpose: spec.purpose.clone(),
        image: spec.disk.clone(),
        qemu_started: process_start_time(qemu_pid).unwrap_or_default(),
        run_dir: run_dir.to_path_buf(),
    };
    let path = dir.join(format!("{qemu_pid}.json"));
    std::fs::write(
        &path,
        serde_json::to_string(&record).expect("record serialises"),
    )?;
    Ok(path)
}

/// Machines left running by a kiln that is no longer alive.
pub fn leftovers(record_dir: &Path) -> Vec<(PathBuf, MachineRecord)> {
    let Ok(entries) = std::fs::read_dir(record_dir) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(record) = std::fs::read_to_string(&path)
            .ok()
            .and_then(|text| serde_json::from_str::<MachineRecord>(&text).ok())
        else {
            continue;
        };
        if super::process::is_kiln_running(record.kiln_pid) {
            continue; // its kiln still owns it
        }
        if record.is_that_machine() {
            found.push((path, record));
        } else {
            // The machine is gone (its pid may now be anyone's): only the record is stale.
            let _ = std::fs::remove_file(&path);
        }
    }
    found
}

/// Stop a leftover machine (SIGTERM, then SIGKILL) and forget its record.
pub async fn clean_leftover(path: &Path, record: &MachineRecord) {
    let pid = record.qemu_pid as i32;
    // Checked again right before each signal: never a process kiln did not start.
    if record.is_that_machine() {
        // SAFETY: plain kill(2) on the QEMU this record describes (pid, start time, run dir).
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    for _ in 0..30 {
        if !record.is_that_machine() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if record.is_that_machine() {
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let _ = std::fs::remove_file(path);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> MachineSpec {
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

    #[test]
    fn run_directories_are_new_private_and_unguessable() {
        use std::os::unix::fs::PermissionsExt;
        let first = RunDir::create("test").unwrap();
        let second = RunDir::create("test").unwrap();
        assert_ne!(first.0, second.0);
        for dir in [&first.0, &second.0] {
            let mode = std::fs::metadata(dir).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "{dir:?}");
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            assert!(name.starts_with("kiln-test-") && name.len() > "kiln-test-".len() + 4);
            assert!(!name.contains(&std::process::id().to_string()), "{name}");
        }
        let gone = first.0.clone();
        drop(first);
        assert!(!gone.exists());
    }

    #[test]
    fn a_link_planted_as_the_serial_log_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep me").unwrap();
        let log = dir.path().join("d.install.serial.log");
        std::os::unix::fs::symlink(&victim, &log).unwrap();
        claim_log_file(&log).unwrap();
        assert!(
            std::fs::symlink_metadata(&log)
                .unwrap()
                .file_type()
                .is_file()
        );
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
        // Our own log from an earlier run is kept as it is (QEMU truncates it).
        claim_log_file(&log).unwrap();
        std::fs::create_dir(dir.path().join("dir.log")).unwrap();
        assert!(claim_log_file(&dir.path().join("dir.log")).is_err());
    }

    #[test]
    fn serial_log_sits_next_to_the_image() {
        assert_eq!(
            serial_log_path(Path::new("/img/debian-12.qcow2"), "install"),
            PathBuf::from("/img/debian-12.install.serial.log")
        );
    }

    #[tokio::test]
    async fn a_disk_whose_header_names_host_files_never_starts() {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("backed.qcow2");
        crate::engine::test_images::backed_by_host_file(&disk).await;
        let mut spec = spec();
        spec.disk = disk;
        spec.cdrom = None;
        spec.serial_log = dir.path().join("serial.log");
        match Machine::start(&spec).await {
            Err(MachineError::NamesHostFiles { refs, .. }) => {
                assert!(refs.contains("/etc/hostname"), "{refs}")
            }
            Err(other) => panic!("refused for another reason: {other}"),
            Ok(_) => panic!("a disk backed by /etc/hostname was booted"),
        }
    }

    #[test]
    fn guest_args_escape_commas_and_bind_forwards_to_loopback() {
        let args = spec().guest_args(Some(2222), 1).join(" ");
        assert_eq!(
            args,
            "-name kiln-install -accel tcg -smp 1 -m 1024 \
             -drive file=/images/a,,b.qcow2,format=qcow2,media=disk,if=virtio \
             -drive file=/isos/debian.iso,format=raw,media=cdrom,readonly=on \
             -net nic,model=virtio -net user,hostfwd=tcp:127.0.0.1:2222-:22 -no-reboot"
        );
        let mut kvm = spec();
        kvm.accelerator = Accelerator::Kvm;
        kvm.snapshot = true;
        let args = kvm.guest_args(None, 2).join(" ");
        assert!(args.contains("-smp 2 "));
        assert!(args.contains("-accel kvm -cpu host"));
        assert!(args.contains("if=virtio,snapshot=on"));
        assert!(args.ends_with("-net user -no-reboot"));
    }

    #[test]
    fn start_failures_are_explained() {
        let spec = spec();
        let locked = explain_start_failure(
            &spec,
            "exit status: 1".into(),
            "qemu-system-x86_64: -drive file=…: Failed to get \"write\" lock\nIs another process using the image?".into(),
        );
        assert!(matches!(locked, MachineError::ImageInUse(_)));
        let other = explain_start_failure(&spec, "exit status: 1".into(), "boom".into());
        assert_eq!(other.to_string(), "QEMU stopped at start: boom");
    }
}
