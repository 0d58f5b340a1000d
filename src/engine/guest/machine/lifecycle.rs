//! Starting a machine (paused, console attached, then resumed), waiting for it to end and
//! stopping it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::Child;
use tokio::sync::mpsc;

use super::argv::qemu_argv;
use super::record::write_record;
use super::serial::{SerialOutput, claim_log_file, connect_serial, spawn_serial_pumps};
use super::{Ending, MachineError, MachineSpec, MachineView, QEMU, ViewInner};
use crate::engine::files::qcow2_header;
use crate::engine::guest::console::Console;
use crate::engine::guest::qmp::{Qmp, QmpError, QmpEvent};
use crate::engine::host::process;
use crate::engine::host::vcpus::VcpuChoice;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Ports tried for the SSH forward before giving up, as the Djinn driver walks upward.
const PORT_ATTEMPTS: u16 = 50;

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

    /// One try at starting the machine, with the SSH forward (if any) on `ssh_port`.
    async fn start_once(
        spec: &MachineSpec,
        ssh_port: Option<u16>,
        cpus: VcpuChoice,
    ) -> Result<Machine, MachineError> {
        refuse_unbootable(spec)?;
        claim_log_file(&spec.serial_log)?;
        let run_dir = RunDir::create(&spec.purpose)?;
        let qmp_socket = run_dir.0.join("qmp.sock");
        let serial_socket = run_dir.0.join("serial.sock");

        let argv = qemu_argv(spec, ssh_port, cpus.count, &qmp_socket, &serial_socket);
        tracing::info!("starting {}", argv.join(" "));
        let (mut child, stderr) = spawn_qemu(&argv)?;
        let qmp = connect_qmp(spec, &mut child, &qmp_socket, &stderr).await?;

        let view = attach_view(spec, &qmp, ssh_port, cpus, argv, &serial_socket, &run_dir).await?;
        let guest_shutdown = watch_guest_shutdown(&qmp);
        let record = spec
            .record_dir
            .as_deref()
            .and_then(|dir| write_record(dir, &child, spec, &run_dir.0).ok());
        resume(&qmp, record.as_deref()).await?;
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

/// Refuse what QEMU must never be given, before anything starts.
fn refuse_unbootable(spec: &MachineSpec) -> Result<(), MachineError> {
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
    Ok(())
}

/// Start QEMU from `argv` and collect what it says on stderr (logged as it comes).
fn spawn_qemu(argv: &[String]) -> Result<(Child, Arc<Mutex<String>>), MachineError> {
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
    Ok((child, stderr))
}

/// QEMU's QMP connection, or why QEMU stopped instead.
async fn connect_qmp(
    spec: &MachineSpec,
    child: &mut Child,
    qmp_socket: &Path,
    stderr: &Mutex<String>,
) -> Result<Qmp, MachineError> {
    // QEMU that cannot start (image locked, port taken) exits before QMP answers — or
    // just after accepting the QMP connection, resetting it under us.
    let connected = tokio::select! {
        qmp = Qmp::connect(qmp_socket, CONNECT_TIMEOUT) => qmp.map_err(|e| (e, None)),
        status = child.wait() => Err((QmpError::Closed, Some(status))),
    };
    let (error, status) = match connected {
        Ok(qmp) => return Ok(qmp),
        Err(failed) => failed,
    };
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
    Err(explain_start_failure(spec, status.to_string(), text))
}

/// Attach the serial console and make the frontends' view of the machine.
async fn attach_view(
    spec: &MachineSpec,
    qmp: &Qmp,
    ssh_port: Option<u16>,
    cpus: VcpuChoice,
    argv: Vec<String>,
    serial_socket: &Path,
    run_dir: &RunDir,
) -> Result<MachineView, MachineError> {
    let vnc = if spec.vnc {
        qmp.vnc_address().await?
    } else {
        None
    };
    let serial = connect_serial(serial_socket).await?;
    let console = Console::new(24, 80);
    let serial_output = Arc::new(SerialOutput::new());
    let (serial_input, input_rx) = mpsc::unbounded_channel();
    spawn_serial_pumps(serial, console.clone(), serial_output.clone(), input_rx);
    Ok(MachineView {
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
    })
}

/// The reason the guest gave when it shut itself down, once QMP reports it.
fn watch_guest_shutdown(qmp: &Qmp) -> Arc<Mutex<Option<String>>> {
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
    guest_shutdown
}

/// Let the guest run: every machine starts paused (`-S`).
async fn resume(qmp: &Qmp, record: Option<&Path>) -> Result<(), MachineError> {
    if let Err(e) = qmp.cont().await {
        // QEMU dies with `child` as start_once returns (kill-on-drop); its record must not
        // outlive it.
        if let Some(record) = record {
            let _ = std::fs::remove_file(record);
        }
        return Err(e.into());
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::super::tests::spec;
    use super::*;

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
