//! Provisioning: after configure, boot the image writable, log in as root (the way the CI
//! driver will), copy the person's files in and run their scripts in order with their output
//! streamed, then clean up for cloning (the operations of `configure::cleanup`) and power off.
//! A failing script fails the step with its last lines; nothing after it runs.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use super::configure::{
    Cleanup, CleanupFailed, CleanupOperation, power_off, run_cleanup, shell_quote,
};
use super::verify::{self, DiskRefusal};
use crate::engine::guest::machine::{
    Machine, MachineError, MachineSpec, MachineView, serial_log_path,
};
use crate::engine::guest::ssh::{self, Auth, OutputStream, Session, SshError, SshTarget};
use crate::engine::host::Accelerator;
use crate::engine::host::vcpus::Vcpus;
use crate::engine::task::{Cancelled, Reporter, Summary, TaskPanicked};

/// Where the SSH forward starts looking for a free port.
const FIRST_SSH_PORT: u16 = 2230;
/// A provisioning script may install a toolchain: give it time.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(2 * 60 * 60);
const CANCEL_GRACE: Duration = Duration::from_secs(5);
/// Lines of a failed script's output kept for its error.
const LAST_LINES: usize = 15;

/// One thing to do in the guest, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum ProvisionStep {
    /// Copy a host file to `to` in the guest (mode: the given one, else the file's own).
    Upload {
        from: PathBuf,
        to: String,
        mode: Option<u32>,
    },
    /// Copy a script into the guest and run it as root with these variables set.
    Shell {
        script: PathBuf,
        env: BTreeMap<String, String>,
    },
}

#[derive(Debug, Clone)]
pub struct ProvisionRequest {
    pub image: PathBuf,
    pub accelerator: Accelerator,
    pub memory_mib: u32,
    pub cpus: Vcpus,
    pub steps: Vec<ProvisionStep>,
    /// Run last in the guest, so clones start clean.
    pub cleanup: Cleanup,
    pub boot_deadline: Duration,
    pub record_dir: Option<PathBuf>,
}

/// Where provisioning is, for whoever records each step as it ends (the plan does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProvisionProgress {
    /// `steps[index]` begins (`index == steps.len()`: the cleanup).
    Began(usize),
    /// `steps[index]` (or the cleanup) is done; the line says what it did.
    Done(usize, String),
}

#[derive(Debug, Clone)]
pub struct Provisioned {
    pub image: PathBuf,
    pub steps: usize,
}

impl Summary for Provisioned {
    fn summary(&self) -> String {
        format!(
            "{} provisioning step(s) done in {}; the guest powered off",
            self.steps,
            self.image.display()
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error(transparent)]
    Disk(#[from] DiskRefusal),
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Machine(#[from] MachineError),
    #[error("no root login with an empty password (was the image configured?): {0}")]
    Login(SshError),
    #[error("{what}: {error}")]
    Ssh { what: String, error: SshError },
    #[error("{} failed ({status}); its last lines:\n{last_lines}", .script.display())]
    Script {
        script: PathBuf,
        status: String,
        last_lines: String,
    },
    #[error(transparent)]
    Cleanup(#[from] CleanupFailed),
    #[error("QEMU ended during provisioning: {0}")]
    MachineEnded(String),
    #[error(transparent)]
    Cancelled(#[from] Cancelled),
    #[error(transparent)]
    Panicked(#[from] TaskPanicked),
}

/// Boot, provision, clean up, power off; `progress` hears of each step as it begins and ends.
pub async fn provision(
    request: ProvisionRequest,
    reporter: Reporter,
    progress: impl Fn(ProvisionProgress) + Send + Sync,
) -> Result<Provisioned, ProvisionError> {
    let image_path = verify::writable_disk(&request.image).await?;
    let spec = MachineSpec {
        purpose: "provision".into(),
        accelerator: request.accelerator,
        memory_mib: request.memory_mib,
        cpus: request.cpus,
        disk: image_path.clone(),
        snapshot: false,
        discard: request.cleanup.contains(CleanupOperation::ZeroFreeSpace),
        cdrom: None,
        kernel: None,
        ssh_forward_from: Some(FIRST_SSH_PORT),
        no_reboot: false,
        vnc: true,
        serial_log: serial_log_path(&image_path, "provision"),
        record_dir: request.record_dir.clone(),
        driver: None,
    };
    let mut machine = Machine::start(&spec).await?;
    let view = machine.view();
    reporter.machine(view.clone());
    let work = work_in_guest(&request, &view, &reporter, &progress);
    let session = tokio::select! {
        result = work => result,
        ending = machine.wait() => {
            let ending = ending.map_or_else(|e| e.to_string(), |ending| ending.describe());
            return Err(ProvisionError::MachineEnded(ending));
        }
        _ = reporter.cancelled() => {
            machine.shut_down(CANCEL_GRACE).await;
            return Err(Cancelled("provisioning stopped; the guest was shut down".into()).into());
        }
    };
    match session {
        Ok(session) => {
            power_off(session, &mut machine, &reporter).await;
            Ok(Provisioned {
                image: image_path,
                steps: request.steps.len(),
            })
        }
        Err(error) => {
            machine.shut_down(CANCEL_GRACE).await;
            Err(error)
        }
    }
}

/// Log in, run every step, clean up; hands back the session for the poweroff.
async fn work_in_guest(
    request: &ProvisionRequest,
    view: &MachineView,
    reporter: &Reporter,
    progress: &(impl Fn(ProvisionProgress) + Send + Sync),
) -> Result<Session, ProvisionError> {
    let port = view.ssh_port().expect("provisioning machines forward SSH");
    let target = SshTarget {
        host: "127.0.0.1".into(),
        port,
        user: "root".into(),
        auth: Auth::Password(String::new()),
    };
    reporter.info(format!("waiting for SSH as root on 127.0.0.1:{port}…"));
    let nudges = view.console_nudges(ssh::console_line_may_mean_ssh);
    let session = ssh::connect_nudged(&target, request.boot_deadline, nudges, |_| {})
        .await
        .map_err(ProvisionError::Login)?;
    for (index, step) in request.steps.iter().enumerate() {
        progress(ProvisionProgress::Began(index));
        let done = match step {
            ProvisionStep::Upload { from, to, mode } => {
                upload(&session, from, to, *mode, reporter).await?
            }
            ProvisionStep::Shell { script, env } => {
                run_script(&session, index, script, env, reporter).await?
            }
        };
        progress(ProvisionProgress::Done(index, done));
    }
    if !request.cleanup.is_empty() {
        progress(ProvisionProgress::Began(request.steps.len()));
        let done = run_cleanup(&session, &request.cleanup, reporter).await?;
        progress(ProvisionProgress::Done(request.steps.len(), done));
    }
    Ok(session)
}

async fn upload(
    session: &Session,
    from: &std::path::Path,
    to: &str,
    mode: Option<u32>,
    reporter: &Reporter,
) -> Result<String, ProvisionError> {
    let read_error = |source| ProvisionError::Read {
        path: from.to_path_buf(),
        source,
    };
    let bytes = std::fs::read(from).map_err(read_error)?;
    let mode = match mode {
        Some(mode) => mode,
        None => {
            std::fs::metadata(from)
                .map_err(read_error)?
                .permissions()
                .mode()
                & 0o7777
        }
    };
    let ssh_error = |what: String| move |error| ProvisionError::Ssh { what, error };
    let sftp = session
        .sftp()
        .await
        .map_err(ssh_error("opening SFTP".into()))?;
    sftp.write(to, &bytes)
        .await
        .map_err(ssh_error(format!("copying {} to {to}", from.display())))?;
    sftp.chmod(to, mode)
        .await
        .map_err(ssh_error(format!("setting the mode of {to}")))?;
    sftp.close().await;
    let done = format!(
        "copied {} to {to} ({} bytes, mode {mode:o})",
        from.display(),
        bytes.len()
    );
    reporter.info(done.clone());
    Ok(done)
}

/// Copy the script in, run it with its variables (as an `env` prelude: sshd refuses most
/// names over SSH's own env requests), stream its output, and keep its last lines.
async fn run_script(
    session: &Session,
    index: usize,
    script: &std::path::Path,
    env: &BTreeMap<String, String>,
    reporter: &Reporter,
) -> Result<String, ProvisionError> {
    let remote = format!("/root/.kiln-provision-{index}");
    upload(session, script, &remote, Some(0o700), reporter).await?;
    let assignments: Vec<String> = env
        .iter()
        .map(|(name, value)| format!("{name}={}", shell_quote(value)))
        .collect();
    let command = format!(
        "env {} {remote}; status=$?; rm -f {remote}; exit $status",
        assignments.join(" ")
    );
    let name = script.file_name().map_or_else(
        || script.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    reporter.info(format!("running {name}…"));
    let mut lines = Lines::default();
    let out = session
        .exec_streaming(
            &command,
            &[],
            SCRIPT_TIMEOUT,
            |_: OutputStream, bytes: &[u8]| {
                for line in lines.push(bytes) {
                    reporter.info(format!("[{name}] {line}"));
                }
            },
        )
        .await
        .map_err(|error| ProvisionError::Ssh {
            what: format!("running {name}"),
            error,
        })?;
    if let Some(line) = lines.finish() {
        reporter.info(format!("[{name}] {line}"));
    }
    if out.success() {
        let done = format!("{name} succeeded");
        reporter.info(done.clone());
        return Ok(done);
    }
    Err(ProvisionError::Script {
        script: script.to_path_buf(),
        status: out.ending(),
        last_lines: lines.last(LAST_LINES),
    })
}

/// Output split into lines as it arrives, with the newest kept for an error message.
#[derive(Default)]
struct Lines {
    partial: Vec<u8>,
    kept: std::collections::VecDeque<String>,
}

impl Lines {
    /// Add output; returns the lines it completed.
    fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.partial.extend_from_slice(bytes);
        let mut complete = Vec::new();
        while let Some(end) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            complete.push(self.keep(&line));
        }
        complete
    }

    /// The last line when the output did not end with a newline.
    fn finish(&mut self) -> Option<String> {
        let rest = std::mem::take(&mut self.partial);
        (!rest.is_empty()).then(|| self.keep(&rest))
    }

    fn keep(&mut self, line: &[u8]) -> String {
        let text = String::from_utf8_lossy(line).trim_end().to_string();
        self.kept.push_back(text.clone());
        if self.kept.len() > LAST_LINES {
            self.kept.pop_front();
        }
        text
    }

    fn last(&self, count: usize) -> String {
        let skip = self.kept.len().saturating_sub(count);
        self.kept
            .iter()
            .skip(skip)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_split_into_lines_and_the_last_ones_are_kept() {
        let mut lines = Lines::default();
        assert_eq!(lines.push(b"one\ntw"), ["one"]);
        assert_eq!(lines.push(b"o\nthree"), ["two"]);
        assert_eq!(lines.finish().as_deref(), Some("three"));
        for i in 0..30 {
            lines.push(format!("line {i}\n").as_bytes());
        }
        let last = lines.last(LAST_LINES);
        assert!(
            last.starts_with("line 15\n") && last.ends_with("line 29"),
            "{last}"
        );
    }
}
