//! The configure step: boot the installed disk, log in with the install's credentials,
//! `passwd -d root`, install the reference sshd_config — and never lock anyone out.
//!
//! Order matters for that promise: the new config is written beside the old one and checked
//! with `sshd -t` before anything changes; it replaces the old one with an atomic rename
//! (after Ctrl-C the file is either the old or the new one); sshd is restarted while our first
//! session stays open; a *new* root login with an empty password must then succeed, or the
//! backup is restored through the session that is still open.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;

mod cleanup;
mod root_shell;

pub use cleanup::{Cleanup, CleanupFailed, CleanupOperation, run_cleanup};
pub use root_shell::RootShell;

use super::cloud_image::{self, BUILD_USER, CloudImageError, CloudInit, Seed};
use super::verify::{self, DiskRefusal};
use crate::engine::guest::machine::{
    Machine, MachineError, MachineSpec, MachineView, serial_log_path,
};
use crate::engine::guest::ssh::{self, Auth, Session, SshError, SshTarget, Stage};
use crate::engine::host::Accelerator;
use crate::engine::host::vcpus::Vcpus;
use crate::engine::task::{Cancelled, Question, Reporter, Summary, TaskPanicked};

/// The reference sshd_config (Djinn base images): internal-sftp, no PAM.
pub const REFERENCE_SSHD_CONFIG: &str = include_str!("../../../../assets/sshd_config.reference");
/// The older documented variant: PAM on, sftp-server binary.
pub const PAM_SSHD_CONFIG: &str = include_str!("../../../../assets/sshd_config.pam");

const SSHD_CONFIG: &str = "/etc/ssh/sshd_config";
const BACKUP: &str = "/etc/ssh/sshd_config.kiln-backup";
const CANDIDATE: &str = "/etc/ssh/sshd_config.kiln-new";
/// The first port tried for SSH forwarding, as the Djinn driver does.
pub const FIRST_SSH_PORT: u16 = 2222;
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
/// Each clean-up operation (after configure's proof, or after provisioning): zeroing the free space of a big
/// disk under TCG takes minutes.
pub(crate) const CLEANUP_TIMEOUT: Duration = Duration::from_secs(600);
const PROOF_DEADLINE: Duration = Duration::from_secs(60);
const POWEROFF_WAIT: Duration = Duration::from_secs(120);
const CANCEL_GRACE: Duration = Duration::from_secs(30);

/// Which sshd_config to install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SshdConfig {
    Reference,
    Pam,
    /// A file of the person's own.
    Custom(String),
}

impl SshdConfig {
    pub fn text(&self) -> &str {
        match self {
            SshdConfig::Reference => REFERENCE_SSHD_CONFIG,
            SshdConfig::Pam => PAM_SSHD_CONFIG,
            SshdConfig::Custom(text) => text,
        }
    }
}

/// The documented sshd_config variants a person chooses between.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SshdVariant {
    /// internal-sftp, UsePAM no (Djinn's current base images).
    #[default]
    Reference,
    /// UsePAM yes and the sftp-server binary (the older documented variant).
    Pam,
}

impl SshdVariant {
    /// The word used on command lines, in forms and in session files.
    pub fn name(self) -> &'static str {
        match self {
            SshdVariant::Reference => "reference",
            SshdVariant::Pam => "pam",
        }
    }

    /// The variant a word names (the inverse of [`SshdVariant::name`]).
    pub fn from_name(name: &str) -> Option<SshdVariant> {
        [SshdVariant::Reference, SshdVariant::Pam]
            .into_iter()
            .find(|variant| variant.name() == name)
    }
}

/// What `kiln configure` was asked to do.
#[derive(Clone)]
pub struct ConfigureRequest {
    pub image: PathBuf,
    pub user: String,
    pub auth: Auth,
    /// For a non-root user: the password sudo asks for (fed on stdin, never in argv).
    pub sudo_password: Option<String>,
    pub sshd_config: SshdConfig,
    /// Run last, after the proof, through root's own session.
    pub cleanup: Cleanup,
    pub accelerator: Accelerator,
    pub memory_mib: u32,
    pub cpus: Vcpus,
    /// How long to wait for the guest's SSH to answer after power-on.
    pub boot_deadline: Duration,
    pub record_dir: Option<PathBuf>,
    /// A cloud image: log in through a NoCloud seed kiln writes (not `user`/`auth`), wait
    /// for cloud-init, and clean up after it.
    pub cloud_init: Option<CloudInit>,
}

impl std::fmt::Debug for ConfigureRequest {
    /// Everything but sudo's password (the login's own secret is redacted by `Auth`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigureRequest")
            .field("image", &self.image)
            .field("user", &self.user)
            .field("auth", &self.auth)
            .field(
                "sudo_password",
                &self.sudo_password.as_ref().map(|_| "<redacted>"),
            )
            .field("sshd_config", &self.sshd_config)
            .field("cleanup", &self.cleanup)
            .field("accelerator", &self.accelerator)
            .field("memory_mib", &self.memory_mib)
            .field("cpus", &self.cpus)
            .field("boot_deadline", &self.boot_deadline)
            .field("cloud_init", &self.cloud_init)
            .finish_non_exhaustive()
    }
}

/// A configured image.
#[derive(Debug, Clone)]
pub struct Configured {
    pub image: PathBuf,
    pub diff: String,
    pub proof: String,
}

impl Summary for Configured {
    fn summary(&self) -> String {
        format!(
            "{}: root logs in with an empty password ({}); the guest was shut down cleanly — next: verify",
            self.image.display(),
            self.proof
        )
    }
}

/// Why configuring failed; every variant says whether anything changed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigureError {
    #[error(transparent)]
    Disk(#[from] DiskRefusal),
    #[error(transparent)]
    Machine(#[from] MachineError),
    #[error(transparent)]
    CloudImage(#[from] CloudImageError),
    #[error("{error}\nlast serial console lines:\n{serial_tail}")]
    Login {
        error: SshError,
        serial_tail: String,
    },
    #[error(
        "the machine ended before configure was done: {ending}\nlast serial console lines:\n{serial_tail}"
    )]
    MachineEnded { ending: String, serial_tail: String },
    #[error("sudo refused for {user}: {stderr} ({})", sudo_hint(.user, .stderr))]
    Sudo { user: String, stderr: String },
    #[error("`{command}` failed in the guest: {stderr}")]
    Guest { command: String, stderr: String },
    #[error("sshd rejects the new sshd_config, so nothing was changed:\n{0}")]
    InvalidConfig(String),
    #[error("root could not log in with an empty password after the change ({error}); restored: {}{}", if .restored.is_empty() { "nothing".to_string() } else { .restored.join(", ") }, if .not_restored.is_empty() { String::new() } else { format!(" — NOT RESTORED: {} (log in on the console; the old sshd_config is /etc/ssh/sshd_config.kiln-backup)", .not_restored.join(", ")) })]
    ProofFailed {
        /// Boxed: the error type stays small enough to return cheaply everywhere.
        error: Box<SshError>,
        restored: Vec<&'static str>,
        not_restored: Vec<&'static str>,
    },
    #[error(
        "you declined the change; nothing in the image was modified and the guest was shut down"
    )]
    Declined,
    #[error("{0} (sshd_config and root's password are already changed and proven)")]
    Cleanup(#[from] CleanupFailed),
    #[error(transparent)]
    Cancelled(#[from] Cancelled),
    #[error(transparent)]
    Panicked(#[from] TaskPanicked),
}

/// What to do about a sudo refusal, from sudo's own words.
fn sudo_hint(user: &str, stderr: &str) -> String {
    if stderr.contains("must have a tty") {
        // kiln's root shell has no terminal: a pty would echo the password and merge stderr.
        format!(
            "sudo is set to need a terminal (Defaults requiretty); drop that for {user} in /etc/sudoers, or configure as root"
        )
    } else {
        format!("is {user} in group sudo, and is the password right?")
    }
}

impl ConfigureError {
    /// Errors about the request or environment (exit 2) rather than the guest (exit 1).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            ConfigureError::Disk(_)
                | ConfigureError::Machine(MachineError::QemuMissing)
                | ConfigureError::Machine(MachineError::ImageInUse(_))
        )
    }
}

/// Single-quote `text` for a POSIX shell.
pub fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Where the new sshd_config is checked and previewed, before anything in /etc changes.
const PREVIEW: &str = "/run/kiln-sshd_config.preview";
/// Separate the parts of the inspection's output.
const CURRENT_END: &str = "--kiln-current-sshd_config-end--";
const EFFECTIVE_NEW: &str = "--kiln-sshd-T-new--";
/// The exit status of a guest script for "sshd -t rejects the new file" (its words on stderr).
const REJECTED: u32 = 3;

/// What configure learns before changing anything.
struct Inspection {
    /// The guest's sshd_config as it is.
    current: String,
    /// `sshd -T` of the current and the new file, compared: `permitemptypasswords: no → yes`.
    /// Empty when sshd cannot say.
    effective: Vec<String>,
}

/// One privileged round-trip that reads the current sshd_config and compares it with the new
/// one through `sshd -T` — which checks the new file as `sshd -t` does — writing only a
/// preview under /run. A new file sshd rejects fails here, before the person is asked anything.
async fn inspect(shell: &mut RootShell, new: &str) -> Result<Inspection, ConfigureError> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(new.as_bytes());
    let script = format!(
        "cat {SSHD_CONFIG} || exit 1; printf '\\n%s\\n' {CURRENT_END}; \
         echo {encoded} | base64 -d > {PREVIEW} || exit 1; \
         /usr/sbin/sshd -T -f {SSHD_CONFIG} 2>/dev/null; echo {EFFECTIVE_NEW}; \
         /usr/sbin/sshd -T -f {PREVIEW} >{PREVIEW}.T || {{ rm -f {PREVIEW} {PREVIEW}.T; exit {REJECTED}; }}; \
         cat {PREVIEW}.T; rm -f {PREVIEW} {PREVIEW}.T"
    );
    let out = shell
        .run(&script, "reading and checking sshd_config")
        .await?;
    let (current, effective) = out
        .split_once(&format!("\n{CURRENT_END}\n"))
        .ok_or_else(|| ConfigureError::Guest {
            command: "reading sshd_config".into(),
            stderr: "the guest's answer was cut short".into(),
        })?;
    let effective = match effective.split_once(EFFECTIVE_NEW) {
        Some((before, after)) => setting_changes(before, after),
        None => Vec::new(),
    };
    Ok(Inspection {
        current: current.to_string(),
        effective,
    })
}

/// The one privileged round-trip that makes the change, in the order that cannot lock anyone
/// out: back up the old file (an existing backup is kept), write the new one beside it, check
/// it with `sshd -t`, print root's password hash so a failed proof can put it back, rename it
/// over the old one, `passwd -d root`, restart sshd (open sessions stay). Each step is named on
/// stderr before it runs, so a failure says which. (The clean-ups wait for the proof.)
fn apply_script(new: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(new.as_bytes());
    let mut steps = vec![
        format!("step 'backing up {SSHD_CONFIG}'; [ -e {BACKUP} ] || cp -p {SSHD_CONFIG} {BACKUP}"),
        format!(
            "step 'writing the new sshd_config'; echo {encoded} | base64 -d > {CANDIDATE} && chmod 644 {CANDIDATE}"
        ),
        format!(
            "if ! /usr/sbin/sshd -t -f {CANDIDATE} >&2; then rm -f {CANDIDATE}; exit {REJECTED}; fi"
        ),
        "step \"reading root's password hash\"; echo \"root-hash $(getent shadow root | cut -d: -f2)\"".into(),
    ];
    steps.push(format!(
        "step 'installing sshd_config'; mv {CANDIDATE} {SSHD_CONFIG} && sync"
    ));
    // passwd keeps the old file as /etc/shadow-: without this, root's old hash would stay there.
    steps.push(
        "step \"removing root's password\"; passwd -d root >/dev/null && { [ ! -e /etc/shadow- ] || cp -p /etc/shadow /etc/shadow-; }".into(),
    );
    steps.push(format!("step 'restarting sshd'; {RESTART_SSHD}"));
    format!(
        "step() {{ echo \"kiln-step: $1\" >&2; }}; set -e; {}",
        steps.join("; ")
    )
}

/// What the apply script printed about the state it changed.
fn printed_value<'a>(stdout: &'a str, key: &str) -> Option<&'a str> {
    stdout
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(' '))
}

/// The settings whose values differ between two `sshd -T` outputs, sorted by name.
pub fn setting_changes(before: &str, after: &str) -> Vec<String> {
    use std::collections::BTreeMap;
    let settings = |text: &str| -> BTreeMap<String, Vec<String>> {
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for line in text.lines() {
            if let Some((key, value)) = line.trim().split_once(' ') {
                map.entry(key.to_string())
                    .or_default()
                    .push(value.trim().to_string());
            }
        }
        map
    };
    let (old, new) = (settings(before), settings(after));
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    let shown = |values: Option<&Vec<String>>| match values {
        Some(values) => values.join(", "),
        None => "(unset)".to_string(),
    };
    keys.into_iter()
        .filter(|key| old.get(*key) != new.get(*key))
        .map(|key| format!("  {key}: {} → {}", shown(old.get(key)), shown(new.get(key))))
        .collect()
}

/// A unified diff of the guest's sshd_config against the new one.
pub fn config_diff(current: &str, new: &str) -> String {
    similar::TextDiff::from_lines(current, new)
        .unified_diff()
        .context_radius(2)
        .header(SSHD_CONFIG, "new sshd_config")
        .to_string()
}

/// Boot the disk, make the change, prove it, shut down cleanly.
pub async fn configure(
    request: ConfigureRequest,
    reporter: Reporter,
) -> Result<Configured, ConfigureError> {
    let image_path = verify::writable_disk(&request.image).await?;
    // Kept until the guest is off: the seed volume is its CD-ROM, the key our way in.
    let seed = match &request.cloud_init {
        Some(cloud) => Some(Seed::write(cloud.user_data.as_deref()).await?),
        None => None,
    };
    let spec = MachineSpec {
        purpose: "configure".into(),
        accelerator: request.accelerator,
        memory_mib: request.memory_mib,
        cpus: request.cpus,
        disk: image_path.clone(),
        snapshot: false,
        cdrom: seed.as_ref().map(Seed::iso),
        kernel: None,
        ssh_forward_from: Some(FIRST_SSH_PORT),
        no_reboot: false,
        vnc: true,
        discard: request.cleanup.contains(CleanupOperation::ZeroFreeSpace),
        serial_log: serial_log_path(&image_path, "configure"),
        record_dir: request.record_dir.clone(),
        driver: None,
    };
    let mut machine = Machine::start(&spec).await?;
    let view = machine.view();
    let port = view.ssh_port().expect("configure machines forward SSH");
    reporter.info(format!(
        "booting {} writable; SSH forwarded from 127.0.0.1:{port}",
        image_path.display()
    ));
    reporter.machine(view.clone());

    let work = change(&request, seed.as_ref(), &image_path, &view, &reporter);
    let result = tokio::select! {
        result = work => result,
        // QEMU crashed or was killed: say so now, not when the SSH deadline runs out.
        ending = machine.wait() => {
            let ending = ending.map_or_else(|e| e.to_string(), |ending| ending.describe());
            return Err(ConfigureError::MachineEnded {
                ending,
                serial_tail: view.serial_tail(15),
            });
        }
        _ = reporter.cancelled() => {
            reporter.info("stopping: asking the guest to power off…");
            machine.shut_down(CANCEL_GRACE).await;
            return Err(Cancelled(
                "the guest was shut down (sshd_config is either the old or the new file, never half)".into(),
            )
            .into());
        }
    };
    match result {
        Ok((configured, session)) => {
            power_off(session, &mut machine, &reporter).await;
            Ok(configured)
        }
        Err(error) => {
            let error = match error {
                ConfigureError::Login { error, .. } => ConfigureError::Login {
                    error,
                    serial_tail: view.serial_tail(15),
                },
                other => other,
            };
            if !matches!(error, ConfigureError::Declined) {
                reporter.hold(&error.to_string()).await;
            }
            machine.shut_down(CANCEL_GRACE).await;
            Err(error)
        }
    }
}

/// Everything between "machine is up" and "proof passed".
async fn change(
    request: &ConfigureRequest,
    seed: Option<&Seed>,
    image_path: &std::path::Path,
    view: &MachineView,
    reporter: &Reporter,
) -> Result<(Configured, Session), ConfigureError> {
    let port = view.ssh_port().expect("configure machines forward SSH");
    // A cloud image lets in only the user kiln's seed made, with the seed's key.
    let (user, auth) = match seed {
        Some(seed) => (
            BUILD_USER.to_string(),
            Auth::Key {
                path: seed.key(),
                passphrase: None,
            },
        ),
        None => (request.user.clone(), request.auth.clone()),
    };
    let target = SshTarget {
        host: "127.0.0.1".into(),
        port,
        user: user.clone(),
        auth,
    };
    reporter.info(format!(
        "waiting for SSH as {user} (up to {} s)…",
        request.boot_deadline.as_secs()
    ));
    let nudges = view.console_nudges(ssh::console_line_may_mean_ssh);
    let session = ssh::connect_nudged(&target, request.boot_deadline, nudges, |stage| {
        report_stage(reporter, &stage)
    })
    .await
    .map_err(|error| ConfigureError::Login {
        error,
        serial_tail: String::new(),
    })?;
    if seed.is_some() {
        cloud_image::wait_for_cloud_init(&session, reporter).await?;
    }
    // One root shell for everything until the proof: sudo checks the password once.
    let mut shell = RootShell::open(&session, &user, request.sudo_password.as_deref()).await?;
    let new = request.sshd_config.text();
    let Inspection { current, effective } = inspect(&mut shell, new).await?;
    let diff = config_diff(&current, new);
    // What really changes for sshd (its effective settings, from `sshd -T`) leads; the
    // line diff, mostly comments, follows.
    let shown = match effective.is_empty() {
        true => diff.clone(),
        false => format!(
            "what changes for sshd (sshd -T):\n{}\n\nthe file:\n{diff}",
            effective.join("\n")
        ),
    };
    if current == new {
        // Configured before: there is nothing to approve (root's password is still removed).
        reporter.info(format!(
            "{SSHD_CONFIG} is already this sshd_config: nothing to approve"
        ));
    } else {
        reporter.info(format!("changes to {SSHD_CONFIG}:\n{shown}"));
        // The workbench shows the changes and waits for a yes; headless runs answer up front.
        if !reporter
            .ask(Question::ApplySshdConfig { diff: shown })
            .await
        {
            return Err(ConfigureError::Declined);
        }
    }

    reporter.info(format!(
        "backing up {SSHD_CONFIG} to {BACKUP} (kept if one exists), writing the new sshd_config beside it and checking it with sshd -t, then installing it (atomic rename), removing root's password (passwd -d root), restarting sshd (this session stays open)"
    ));
    let script = apply_script(new);
    let printed = shell.run(&script, "changing sshd_config").await?;
    // What the change replaced, kept here so a failed proof can put every bit of it back
    // (the hash goes back with chpasswd -e; nothing is written aside).
    let root_hash = printed_value(&printed, "root-hash")
        .unwrap_or_default()
        .to_string();

    reporter.info("proving it: a new SSH login as root with an empty password…");
    let proof_target = SshTarget {
        host: "127.0.0.1".into(),
        port,
        user: "root".into(),
        auth: Auth::Password(String::new()),
    };
    let root_session = match ssh::connect(&proof_target, PROOF_DEADLINE, |_| {}).await {
        Ok(root_session) => root_session,
        Err(error) => {
            reporter.warn(format!(
                "root login failed ({error}); putting back everything configure changed"
            ));
            let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
            let undo = [
                (
                    "root's password",
                    format!(
                        "echo {} | base64 -d | chpasswd -e",
                        b64(&format!("root:{root_hash}"))
                    ),
                ),
                (
                    "the old sshd_config",
                    format!("cp -p {BACKUP} {SSHD_CONFIG} && sync && {RESTART_SSHD}"),
                ),
            ];
            let (mut restored, mut not_restored) = (Vec::new(), Vec::new());
            for (what, command) in undo {
                match shell.run(&command, what).await {
                    Ok(_) => restored.push(what),
                    Err(_) => not_restored.push(what),
                }
            }
            return Err(ConfigureError::ProofFailed {
                error: Box::new(error),
                restored,
                not_restored,
            });
        }
    };
    let proof = match root_session.exec("id -u", None, &[], COMMAND_TIMEOUT).await {
        Ok(out) if String::from_utf8_lossy(&out.stdout).trim() == "0" => {
            format!("new login as root on port {port} ran `id -u` = 0")
        }
        Ok(out) => format!(
            "logged in as root; `id -u` printed {}",
            String::from_utf8_lossy(&out.stdout).trim()
        ),
        Err(e) => format!("logged in as root, but a command failed: {e}"),
    };
    reporter.info(format!("proof passed: {proof}"));
    // From here on root's own session does the work.
    shell.close().await;
    session.close().await;
    // Last in the guest, through root's own session: a cloud image's seed, build user and
    // cloud-init state first, then what the build left behind (the logs of that clean-up
    // too; zero-free-space, when chosen, last of all).
    if let Some(cloud) = &request.cloud_init {
        cloud_image::clean_up(&root_session, cloud, reporter).await?;
    }
    if !request.cleanup.is_empty() {
        run_cleanup(&root_session, &request.cleanup, reporter).await?;
    }
    Ok((
        Configured {
            image: image_path.to_path_buf(),
            diff,
            proof,
        },
        root_session,
    ))
}

const RESTART_SSHD: &str = "if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then \
     systemctl restart ssh 2>/dev/null || systemctl restart sshd; \
     elif [ -x /etc/init.d/ssh ]; then /etc/init.d/ssh restart; \
     else /etc/init.d/sshd restart; fi";

/// Power the guest off through root's session and wait for QEMU to exit (it does once the
/// guest is off), pressing the power button only if it takes too long. No fixed sleep: the
/// command returns at once and QEMU's exit says when the guest is off.
pub(crate) async fn power_off(root_session: Session, machine: &mut Machine, reporter: &Reporter) {
    reporter.info("shutting the guest down (poweroff)…");
    // In the background, so the command returns before sshd goes down with the guest.
    let _ = root_session
        .exec(
            "sync; poweroff </dev/null >/dev/null 2>&1 &",
            None,
            &[],
            Duration::from_secs(20),
        )
        .await;
    root_session.close().await;
    match tokio::time::timeout(POWEROFF_WAIT, machine.wait()).await {
        Ok(Ok(_)) => reporter.info("the guest powered off"),
        _ => {
            reporter.warn("the guest did not power off in time; pressing the power button, then stopping QEMU");
            machine.shut_down(CANCEL_GRACE).await;
        }
    }
}

fn report_stage(reporter: &Reporter, stage: &Stage) {
    match stage {
        Stage::Connecting { attempt } if *attempt == 1 || attempt % 10 == 0 => {
            reporter.info(format!("SSH: connecting (attempt {attempt})"))
        }
        Stage::Connecting { .. } => {}
        Stage::TcpConnected => reporter.info("SSH: TCP connected"),
        Stage::NoAnswer(silence) => reporter.info(format!("SSH: {silence}")),
        Stage::Banner(banner) => reporter.info(format!("SSH: banner {banner}")),
        Stage::Methods(methods) => {
            reporter.info(format!("SSH: server offers {}", methods.join(",")))
        }
        Stage::Authenticated => reporter.info("SSH: logged in"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effective_changes_lead_with_what_sshd_will_do_differently() {
        let before = "port 22\npermitrootlogin without-password\npermitemptypasswords no\nacceptenv LANG\nacceptenv LC_*\n";
        let after = "port 22\npermitrootlogin yes\npermitemptypasswords yes\nacceptenv *\nsubsystem sftp internal-sftp\n";
        assert_eq!(
            setting_changes(before, after),
            vec![
                "  acceptenv: LANG, LC_* → *",
                "  permitemptypasswords: no → yes",
                "  permitrootlogin: without-password → yes",
                "  subsystem: (unset) → sftp internal-sftp",
            ]
        );
        assert!(setting_changes(before, before).is_empty());
    }

    #[test]
    fn reference_config_allows_what_the_driver_needs() {
        for line in [
            "PermitRootLogin yes",
            "PasswordAuthentication yes",
            "PermitEmptyPasswords yes",
            "AcceptEnv *",
            "Subsystem sftp internal-sftp",
            "UsePAM no",
        ] {
            assert!(REFERENCE_SSHD_CONFIG.lines().any(|l| l == line), "{line}");
        }
        assert!(PAM_SSHD_CONFIG.lines().any(|l| l == "UsePAM yes"));
        assert!(PAM_SSHD_CONFIG.contains("Subsystem sftp /usr/lib/openssh/sftp-server"));
    }

    /// The order that keeps every promise: nothing in /etc changes before `sshd -t` passed,
    /// the old state is printed before it is replaced, sshd restarts last.
    #[test]
    fn the_change_is_made_in_an_order_that_cannot_lock_anyone_out() {
        let script = apply_script(REFERENCE_SSHD_CONFIG);
        let at = |needle: &str| {
            script
                .find(needle)
                .unwrap_or_else(|| panic!("`{needle}` missing from:\n{script}"))
        };
        let order = [
            at(&format!("cp -p {SSHD_CONFIG} {BACKUP}")),
            at(&format!("> {CANDIDATE}")),
            at(&format!("sshd -t -f {CANDIDATE}")),
            at("getent shadow root"),
            at(&format!("mv {CANDIDATE} {SSHD_CONFIG}")),
            at("passwd -d root"),
            at(RESTART_SSHD),
        ];
        assert!(order.is_sorted(), "{order:?}\n{script}");
        assert!(script.starts_with("step() {") && script.contains("set -e;"));
        assert!(!script.contains("machine-id"));

        let printed = "root-hash $y$j9T$abc\nmachine-id 0123\n";
        assert_eq!(printed_value(printed, "root-hash"), Some("$y$j9T$abc"));
        assert_eq!(printed_value(printed, "machine-id"), Some("0123"));
        assert_eq!(printed_value("root-hash \n", "root-hash"), Some(""));
        assert_eq!(printed_value(printed, "root"), None);
    }

    #[test]
    fn quoting_survives_single_quotes() {
        assert_eq!(shell_quote("echo 'hi'"), r"'echo '\''hi'\'''");
    }

    #[test]
    fn diff_shows_changed_lines() {
        let diff = config_diff(
            "PermitRootLogin prohibit-password\nUsePAM yes\n",
            REFERENCE_SSHD_CONFIG,
        );
        assert!(
            diff.contains("-PermitRootLogin prohibit-password"),
            "{diff}"
        );
        assert!(diff.contains("+PermitRootLogin yes"), "{diff}");
        assert!(diff.contains("+Subsystem sftp internal-sftp"), "{diff}");
        assert!(config_diff(REFERENCE_SSHD_CONFIG, REFERENCE_SSHD_CONFIG).is_empty());
    }
}
