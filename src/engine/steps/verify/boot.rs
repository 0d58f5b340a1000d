//! The dynamic checks: boot the image exactly as the CI driver does (snapshot=on, so the file
//! is never written) and walk the driver's SSH procedure step by step, each step a check.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::diagnose::{Cause, Probes, glob_matches};
use super::leftovers::{KnownPasswords, NO_PASSWORDS_LEFT, no_passwords_left};
use crate::engine::check::{Check, Verdict};
use crate::engine::driver::DriverProfile;
use crate::engine::guest::machine::{
    Machine, MachineError, MachineSpec, MachineView, serial_log_path,
};
use crate::engine::guest::ssh::{
    self, Auth, ExecOutput, OutputStream, Session, Silence, SshError, SshTarget, Stage,
};
use crate::engine::host::vcpus::Vcpus;
use crate::engine::task::Reporter;

/// Ids and names of the dynamic checks, in the order the driver meets them.
pub const BOOT_CHECKS: [(&str, &str); 11] = [
    ("boots", "boots (serial console output)"),
    ("ssh-port", "SSH port answers"),
    ("ssh-banner", "SSH banner"),
    ("root-login", "login with an empty password"),
    ("sftp", "sftp subsystem opens"),
    ("script-upload", "script uploaded and chmod 0755"),
    ("env", "Setenv variable reaches the script (AcceptEnv)"),
    (
        "script-run",
        "script runs, output streams, exit code propagates",
    ),
    ("artifact", "artifact downloaded by SFTP glob"),
    ("ready-time", "time from QEMU start to SSH ready"),
    NO_PASSWORDS_LEFT,
];

const FIRST_PORT: u16 = 2222;
const JOB: &str = "kiln-check";
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// What to boot and how long to wait for it.
#[derive(Debug, Clone)]
pub struct BootRequest {
    pub image: PathBuf,
    pub profile: DriverProfile,
    /// How long SSH may take to come up (the Djinn driver waits 5 minutes).
    pub deadline: Duration,
    pub record_dir: Option<PathBuf>,
    /// Searched for in the image's files as plain text (with hashes and installer answers).
    pub passwords: KnownPasswords,
}

/// The machine could not even be started: the checks could not run (exit 2, not 1).
#[derive(Debug, thiserror::Error)]
#[error("the test boot could not start: {0}")]
pub struct BootNotStarted(#[from] pub MachineError);

/// Boot and run the driver's procedure; one check per step, in order, reported once all are
/// known (`boots` is judged last) and before a failed run holds its machine.
pub async fn boot_checks(
    request: &BootRequest,
    reporter: &Reporter,
) -> Result<Vec<Check>, BootNotStarted> {
    let spec = MachineSpec {
        purpose: "verify".into(),
        accelerator: request.profile.accelerator,
        memory_mib: request.profile.memory_mib,
        cpus: Vcpus::Exactly(request.profile.cpus),
        disk: request.image.clone(),
        snapshot: true,
        discard: false,
        cdrom: None,
        kernel: None,
        ssh_forward_from: Some(FIRST_PORT),
        no_reboot: false,
        vnc: false,
        serial_log: serial_log_path(&request.image, "verify"),
        record_dir: request.record_dir.clone(),
        driver: Some(request.profile.clone()),
    };
    let started = Instant::now();
    let mut machine = Machine::start(&spec).await?;
    let view = machine.view();
    let port = view.ssh_port().expect("verify machines forward SSH");
    reporter.info(format!(
        "the driver runs: {}",
        request.profile.driver_argv(&request.image, port).join(" ")
    ));
    reporter.info(format!("kiln runs: {}", view.argv().join(" ")));
    for note in request.profile.differences() {
        reporter.info(format!("  ({note})"));
    }
    reporter.machine(view.clone());

    let procedure = procedure(request, &view, port, started, reporter);
    let mut machine_gone = false;
    let mut checks = tokio::select! {
        checks = procedure => checks,
        // QEMU crashed or was killed while the driver's procedure ran: a verdict now, with
        // QEMU's words, instead of dialling a dead port until the deadline.
        ending = machine.wait() => {
            let ending = ending.map_or_else(|e| e.to_string(), |ending| ending.describe());
            machine_gone = true;
            machine_ended(&ending, started.elapsed())
        }
        // Cancelled mid-procedure: no verdicts (the caller reports the cancellation).
        _ = reporter.cancelled() => {
            machine.shut_down(Duration::ZERO).await;
            return Ok(Vec::new());
        }
    };
    // `boots` is judged last, from everything the serial port printed meanwhile — and, when
    // SSH was faster than the console, what it prints a little longer: the verdict must not
    // depend on how quickly the other checks ended.
    let answered_ssh = checks
        .iter()
        .any(|c| c.id == "ssh-banner" && c.verdict == Verdict::Pass);
    let serial = match machine_gone {
        true => String::from_utf8_lossy(&view.subscribe_serial().0).into_owned(),
        false => console_with_evidence(&view, CONSOLE_GRACE).await,
    };
    // A guest whose sshd sent its banner has booted, whatever its console printed (a quiet
    // kernel, a getty that had not started when a refused login ended the run).
    checks.insert(0, boots_check(&serial, answered_ssh, &view.serial_tail(10)));
    for check in &checks {
        reporter.check(check.clone());
    }
    let failed: Vec<&str> = checks
        .iter()
        .filter(|c| c.verdict == Verdict::Fail)
        .map(|c| c.name)
        .collect();
    // A machine that is gone cannot be kept for a look.
    if !failed.is_empty() && !machine_gone {
        reporter
            .hold(&format!("failed checks: {}", failed.join(", ")))
            .await;
    }
    // The driver kills QEMU without a clean shutdown; with snapshot=on nothing is lost.
    machine.shut_down(Duration::ZERO).await;
    Ok(checks)
}

/// The procedure's checks when the machine ended under it: the SSH ones failed for that reason.
fn machine_ended(ending: &str, after: Duration) -> Vec<Check> {
    let (port_id, port_name) = BOOT_CHECKS[1];
    let mut checks = vec![
        Check::new(
            port_id,
            port_name,
            Verdict::Fail,
            format!("the machine ended after {} s: {ending}", after.as_secs()),
        )
        .fix("look at the serial console log next to the image; under KVM, try TCG (kiln doctor)"),
    ];
    skip_rest(&mut checks, "the machine ended");
    checks
}

/// How long `boots` waits for boot output on the console after the procedure ended without it.
const CONSOLE_GRACE: Duration = Duration::from_secs(15);

/// What on a serial console shows that a system booted: the boot loader, the kernel, the init
/// system, a getty, cloud-init.
const BOOT_EVIDENCE: [&str; 12] = [
    "GNU GRUB",
    "Booting `",
    "Loading Linux",
    "Linux version",
    "systemd[1]",
    "Welcome to ",
    "[  OK  ]",
    "Reached target",
    "Started ",
    " login:",
    "cloud-init",
    "Run /init",
];

/// The first console line that shows a boot, without its colours.
fn boot_evidence(serial: &str) -> Option<String> {
    plain_console(serial)
        .lines()
        .find(|line| BOOT_EVIDENCE.iter().any(|sign| line.contains(sign)))
        .map(str::to_string)
}

/// Console text without terminal escape sequences (systemd colours its status words and unit
/// names), so lines match and can be quoted.
fn plain_console(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            plain.push(c);
            continue;
        }
        match chars.next() {
            // CSI: parameters, then one final byte in @..~.
            Some('[') => {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            // OSC: up to BEL or ESC \.
            Some(']') => {
                while let Some(c) = chars.next() {
                    if c == '\x07' || (c == '\x1b' && chars.next_if_eq(&'\\').is_some()) {
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    plain
}

/// The console so far; if it shows no boot yet, what it prints within `grace` more (until the
/// first sign of a boot).
async fn console_with_evidence(view: &MachineView, grace: Duration) -> String {
    let (history, mut live) = view.subscribe_serial();
    let mut console = String::from_utf8_lossy(&history).into_owned();
    let waiting = async {
        while boot_evidence(&console).is_none() {
            match live.recv().await {
                Ok(bytes) => console.push_str(&String::from_utf8_lossy(&bytes)),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    };
    let _ = tokio::time::timeout(grace, waiting).await;
    console
}

fn boots_check(serial: &str, answered_ssh: bool, tail: &str) -> Check {
    let (id, name) = BOOT_CHECKS[0];
    let evidence = boot_evidence(serial);
    match (evidence.as_deref(), answered_ssh, serial.trim().is_empty()) {
        (Some(line), _, _) => Check::new(
            id,
            name,
            Verdict::Pass,
            format!("boot output on ttyS0: `{}`", line.trim()),
        ),
        (None, true, _) => Check::new(id, name, Verdict::Warn, "booted (its SSH server answered) but printed nothing recognisable on the serial console: no boot loader, kernel, init or login lines")
            .fix("add console=ttyS0,115200 to the kernel command line so boot problems are visible"),
        (None, false, true) => Check::new(id, name, Verdict::Fail, "nothing at all on the serial console")
            .fix("check that the image boots by BIOS from its own disk (virtio, /dev/vda) and add console=ttyS0,115200"),
        (None, false, false) => Check::new(id, name, Verdict::Fail, format!("no kernel output; the serial console ends with:\n{tail}"))
            .fix("the boot loader may be stuck; boot it in the Install screen to look at the VGA console"),
    }
}

/// The driver's procedure from the first TCP connect to the artifact download.
async fn procedure(
    request: &BootRequest,
    view: &MachineView,
    port: u16,
    started: Instant,
    reporter: &Reporter,
) -> Vec<Check> {
    let user = request.profile.user();
    let target = SshTarget {
        host: "127.0.0.1".into(),
        port,
        user: user.into(),
        auth: Auth::Password(String::new()),
    };
    let reached = Arc::new(Mutex::new(Vec::<Stage>::new()));
    let seen = reached.clone();
    let login = Arc::new(Mutex::new(LoginTimes::default()));
    let login_seen = login.clone();
    reporter.info(format!(
        "waiting for SSH on 127.0.0.1:{port} as {user} with an empty password…"
    ));
    let nudges = view.console_nudges(ssh::console_line_may_mean_ssh);
    let connect = ssh::connect_nudged(&target, request.deadline, nudges, |stage| {
        login_seen.lock().expect("login lock").saw(&stage);
        if !matches!(stage, Stage::Connecting { .. }) {
            seen.lock().expect("stage lock").push(stage);
        }
    });
    // QEMU's user network accepts the TCP connection whether or not sshd runs: without this,
    // a guest with no sshd would only fail when the whole deadline ran out.
    let session = tokio::select! {
        session = connect => session.map_err(|e| e.to_string()),
        evidence = booted_without_sshd(view, &reached, SSHD_GRACE) => Err(evidence),
    };
    let ready_after = started.elapsed();
    let stages = reached.lock().expect("stage lock").clone();
    let console = plain_console(&String::from_utf8_lossy(&view.subscribe_serial().0));
    let error = session.as_ref().err().map(String::as_str);
    let mut checks = connection_checks(&stages, error, user, &console);
    let Ok(session) = session else {
        skip_rest(&mut checks, "there is no SSH session");
        return checks;
    };
    reporter.info(format!(
        "SSH ready {:.1} s after QEMU started",
        ready_after.as_secs_f64()
    ));
    run_job(&session, user, reporter, &mut checks).await;
    let took = login.lock().expect("login lock").took();
    if let Some(took) = took.filter(|took| *took >= SLOW_LOGIN) {
        let probes = Probes {
            session: &session,
            sftp: None,
            user,
        };
        if let Some(cause) = probes.slow_login(took).await {
            let (login_id, login_name) = BOOT_CHECKS[3];
            let warning = Check::new(
                login_id,
                login_name,
                Verdict::Warn,
                format!("{user} logged in, but {}", cause.why),
            )
            .fix(cause.fix);
            if let Some(check) = checks.iter_mut().find(|check| check.id == login_id) {
                *check = warning;
            }
        }
    }
    let (id, name) = BOOT_CHECKS[9];
    let ready = format!("{:.1} s", ready_after.as_secs_f64());
    checks.push(match cloud_init_ran(&session).await {
        Some(status) => Check::new(
            id,
            name,
            Verdict::Warn,
            format!("{ready}; cloud-init ran on this boot although no seed was given ({status}): every CI boot waits for its search for a datasource and its stages"),
        )
        .fix("disable it for CI boots: touch /etc/cloud/cloud-init.disabled in the image (kiln run --base does this for a cloud image)"),
        None => Check::new(id, name, Verdict::Pass, ready),
    });
    checks.push(no_passwords_left(&session, user, &request.passwords, reporter).await);
    session.close().await;
    checks
}

/// A login slower than this, from the server's banner to its yes, is worth a reason: sshd
/// answers an empty-password login in well under a second even under TCG on a busy machine.
const SLOW_LOGIN: Duration = Duration::from_secs(5);

/// When the server's banner came and when it let the user in, on the attempt that did.
#[derive(Default)]
struct LoginTimes {
    banner: Option<Instant>,
    authenticated: Option<Instant>,
}

impl LoginTimes {
    fn saw(&mut self, stage: &Stage) {
        match stage {
            Stage::Banner(_) => self.banner = Some(Instant::now()),
            Stage::Authenticated => self.authenticated = Some(Instant::now()),
            _ => {}
        }
    }

    fn took(&self) -> Option<Duration> {
        Some(self.authenticated?.saturating_duration_since(self.banner?))
    }
}

/// What `cloud-init status --long` said when cloud-init did not stay disabled on this seedless
/// boot; `None` when it is not installed or was disabled.
async fn cloud_init_ran(session: &Session) -> Option<String> {
    let out = session
        .exec(
            "cloud-init status --long 2>/dev/null",
            None,
            &[],
            Duration::from_secs(30),
        )
        .await
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = text.lines().find_map(|l| l.strip_prefix("status:"))?.trim();
    if status == "disabled" {
        return None;
    }
    let detail = text
        .lines()
        .skip_while(|l| !l.starts_with("detail:"))
        .nth(1)
        .map(str::trim)
        .filter(|d| !d.is_empty());
    Some(match detail {
        Some(detail) => format!("status: {status}, {detail}"),
        None => format!("status: {status}"),
    })
}

/// How long the console must stay quiet after the guest's login prompt before kiln says sshd
/// is not coming: sshd and the getty start side by side, and first-boot work (a host-key
/// regeneration unit, say) prints its status lines meanwhile, each restarting the wait.
const SSHD_GRACE: Duration = Duration::from_secs(10);

/// Resolves when the guest has visibly finished booting without sshd answering — its login
/// prompt appeared and the console then stayed quiet for `grace` (or the kernel panicked) —
/// with the evidence: the console's line and what the port did.
async fn booted_without_sshd(
    view: &MachineView,
    reached: &Mutex<Vec<Stage>>,
    grace: Duration,
) -> String {
    let (history, mut live) = view.subscribe_serial();
    let mut console = String::from_utf8_lossy(&history).into_owned();
    let finished = |console: &str| {
        let console = plain_console(console);
        let line =
            |wanted: &dyn Fn(&str) -> bool| console.lines().find(|l| wanted(l)).map(str::to_string);
        line(&|l| l.contains("Kernel panic")).or_else(|| {
            // systemd that prints its status: booted when it reached its default target (a
            // getty may print `login:` long before, while a first-boot job holds sshd back).
            if console.contains("Reached target") {
                line(&|l| {
                    l.contains("Reached target")
                        && ["multi-user", "Multi-User", "graphical", "Graphical"]
                            .iter()
                            .any(|target| l.contains(target))
                })
            } else {
                line(&|l| l.contains(" login:"))
            }
        })
    };
    let mut prompt: Option<String> = None;
    loop {
        if prompt.is_none() {
            prompt = finished(&console);
            if let Some(line) = prompt.as_deref().filter(|l| l.contains("Kernel panic")) {
                return format!("the guest's kernel panicked: {}", line.trim());
            }
        }
        let next = live.recv();
        let quiet = match prompt {
            Some(_) => tokio::time::timeout(grace, next).await,
            None => Ok(next.await),
        };
        match quiet {
            Ok(Ok(bytes)) => console.push_str(&String::from_utf8_lossy(&bytes)),
            Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => continue,
            // The machine ended: that is told by whoever waits for it.
            Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => {
                return std::future::pending().await;
            }
            Err(_quiet_for_grace) => break,
        }
    }
    let stages = reached.lock().expect("stage lock").clone();
    // sshd answered (a slow login is under way), or the guest has not answered on its network
    // at all (a busy host, a late network): the deadline is the only judge. Only a guest
    // whose network refuses the port has shown that nothing listens there.
    if stages.iter().any(|s| matches!(s, Stage::Banner(_)))
        || last_silence(&stages) != Some(Silence::Closed)
    {
        return std::future::pending().await;
    }
    let port = Silence::Closed.to_string();
    format!(
        "the guest finished booting (its console shows `{}`, then nothing for {} s) and the port still sends no SSH banner: {port}",
        prompt.unwrap_or_default().trim(),
        grace.as_secs()
    )
}

/// What the forwarded port did last while no SSH server talked on it.
fn last_silence(stages: &[Stage]) -> Option<Silence> {
    stages.iter().rev().find_map(|s| match s {
        Stage::NoAnswer(silence) => Some(*silence),
        _ => None,
    })
}

/// What the console says about sshd when its port sent no banner: it failed to start, or it
/// started and listens somewhere the driver does not connect to.
fn sshd_on_console(console: &str) -> Option<Cause> {
    let about_sshd = |line: &&str| line.contains("Secure Shell") || line.contains("ssh.service");
    let lines: Vec<&str> = console.lines().filter(about_sshd).collect();
    if let Some(line) = lines.iter().rev().find(|l| l.contains("Failed to start")) {
        return Some(Cause {
            why: format!(
                "sshd did not start (the console says `{}`): most often its host keys are missing or sshd_config has an error",
                line.trim()
            ),
            fix: "in the guest: ssh-keygen -A creates missing host keys, sshd -t names a configuration error".into(),
        });
    }
    let line = lines.iter().rev().find(|l| l.contains("Started "))?;
    Some(Cause {
        why: format!(
            "sshd started (the console says `{}`) but nothing answers on the guest's port 22: a ListenAddress, AddressFamily or Port in sshd_config keeps it off 10.0.2.15:22, where the driver connects",
            line.trim()
        ),
        fix: "let sshd listen on port 22 of every IPv4 address: remove ListenAddress, AddressFamily inet6 and Port from /etc/ssh/sshd_config".into(),
    })
}

/// ssh-port, ssh-banner and root-login from how far the connection got (and, when no banner
/// came, what the console says about sshd).
fn connection_checks(
    stages: &[Stage],
    error: Option<&str>,
    user: &str,
    console: &str,
) -> Vec<Check> {
    let tcp = stages.contains(&Stage::TcpConnected);
    let banner = stages.iter().find_map(|s| match s {
        Stage::Banner(b) => Some(b.clone()),
        _ => None,
    });
    let authenticated = stages.contains(&Stage::Authenticated);
    let cloud_image = looks_like_a_cloud_image(stages, console);
    let because = |e: Option<&str>| e.unwrap_or_default().to_string();
    let (port_id, port_name) = BOOT_CHECKS[1];
    let (banner_id, banner_name) = BOOT_CHECKS[2];
    let (login_id, login_name) = BOOT_CHECKS[3];
    let mut checks = Vec::new();
    checks.push(if tcp {
        Check::new(
            port_id,
            port_name,
            Verdict::Pass,
            "TCP connect to the forwarded port works",
        )
    } else {
        Check::new(port_id, port_name, Verdict::Fail, because(error))
            .fix("check QEMU's user networking (-net user,hostfwd=…)")
    });
    checks.push(match (&banner, tcp) {
        (Some(b), _) => Check::new(banner_id, banner_name, Verdict::Pass, b.clone()),
        (None, true) => match sshd_on_console(console) {
            Some(cause) => Check::new(
                banner_id,
                banner_name,
                Verdict::Fail,
                format!("{}; {}", because(error), cause.why),
            )
            .fix(cause.fix),
            None => Check::new(banner_id, banner_name, Verdict::Fail, because(error)).fix(match last_silence(stages) {
                Some(Silence::Closed) => "the guest's network is up but nothing listens on port 22: install and enable OpenSSH (apt-get install openssh-server; systemctl enable ssh)",
                _ => "the guest never answered on its network: bring up the virtio NIC with DHCP at boot (QEMU's user network hands out 10.0.2.15), and install and enable OpenSSH",
            }),
        },
        (None, false) => Check::skipped(banner_id, banner_name, "the port never answered"),
    });
    checks.push(match (authenticated, banner.is_some()) {
        (true, _) => Check::new(login_id, login_name, Verdict::Pass, format!("{user} logged in with the password method and an empty password")),
        (false, true) => Check::new(
            login_id,
            login_name,
            Verdict::Fail,
            match cloud_image {
                // What the image is says it all; the guesses about PAM and shells would mislead.
                Some(_) => because(error),
                None => format!(
                    "{}. Where the password is empty and sshd_config allows it, the refusal comes from inside the guest, which cannot be seen before a login: a PAM stack that refuses empty passwords (UsePAM yes, pam_unix without nullok), a login shell that does not exist (sshd refuses such users), or AllowUsers/DenyUsers",
                    because(error).trim_end_matches('.')
                ),
            },
        )
        .fix(match cloud_image {
            Some(sign) => format!(
                "this looks like a cloud image as it ships ({sign}): nobody can log in until cloud-init is given a user, so `kiln configure` cannot enter it either. Start from it instead: `kiln run OUT.qcow2 --base IMAGE --size 10G` copies it, configures the copy through a NoCloud seed kiln writes, and leaves IMAGE unchanged"
            ),
            None => format!(
                "run `kiln configure` (or in the guest: passwd -d {user}; PermitRootLogin yes, PasswordAuthentication yes, PermitEmptyPasswords yes in /etc/ssh/sshd_config; nullok on pam_unix in /etc/pam.d/common-auth; a login shell that exists)"
            ),
        }),
        (false, false) => Check::skipped(login_id, login_name, "no SSH banner"),
    });
    checks
}

/// A distribution's cloud image as it ships: cloud-init on the console and an sshd that offers
/// key login only. The signs seen, for the message.
fn looks_like_a_cloud_image(stages: &[Stage], console: &str) -> Option<String> {
    let methods = stages.iter().find_map(|stage| match stage {
        Stage::Methods(methods) => Some(methods.clone()),
        _ => None,
    })?;
    let key_only = !methods.is_empty() && methods.iter().all(|method| method == "publickey");
    let cloud_init = console.lines().any(|line| line.contains("cloud-init"));
    (key_only && cloud_init)
        .then(|| "cloud-init on the console, sshd offers key login only".to_string())
}

fn skip_rest(checks: &mut Vec<Check>, because: &str) {
    for (id, name) in &BOOT_CHECKS[checks.len() + 1..] {
        checks.push(Check::skipped(id, name, because));
    }
}

/// sftp → upload → env → run → artifact, as the driver does a job.
async fn run_job(session: &Session, user: &str, reporter: &Reporter, checks: &mut Vec<Check>) {
    let (sftp_id, sftp_name) = BOOT_CHECKS[4];
    let sftp = match session.sftp().await {
        Ok(sftp) => {
            checks.push(Check::new(
                sftp_id,
                sftp_name,
                Verdict::Pass,
                "subsystem sftp opened",
            ));
            sftp
        }
        Err(e) => {
            let probes = Probes {
                session,
                sftp: None,
                user,
            };
            let cause = probes.sftp().await;
            let said = match e {
                SshError::SftpUnavailable { detail } => detail,
                other => other.to_string(),
            };
            checks.push(
                Check::new(
                    sftp_id,
                    sftp_name,
                    Verdict::Fail,
                    format!("the SFTP subsystem did not open ({said}): {}", cause.why),
                )
                .fix(cause.fix),
            );
            skip_rest_before_ready(checks, "SFTP is unavailable");
            return;
        }
    };
    // A value the image cannot have by chance, so seeing it proves the round trip.
    let nonce = format!(
        "{:x}{:x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    );
    let home = sftp.home().await.unwrap_or_else(|_| "/root".into());
    let probes = Probes {
        session,
        sftp: Some(&sftp),
        user,
    };
    let script_path = format!("{home}/{JOB}.sh");
    let script = format!(
        "#!/bin/sh\necho \"kiln-check: KILN_CHECK_VAR=${{KILN_CHECK_VAR:-unset}}\"\necho kiln-check-stderr >&2\n\
         mkdir -p artifacts && echo 'artifact-{nonce}' > artifacts/{JOB}-artifact.txt\nexit 0\n"
    );
    let (upload_id, upload_name) = BOOT_CHECKS[5];
    let uploaded = async {
        sftp.write(&script_path, script.as_bytes()).await?;
        sftp.chmod(&script_path, 0o755).await
    }
    .await;
    if let Err(e) = uploaded {
        let check = match probes.write(&home).await {
            Some(cause) => Check::new(
                upload_id,
                upload_name,
                Verdict::Fail,
                format!("{e}: {}", cause.why),
            )
            .fix(cause.fix),
            None => Check::new(upload_id, upload_name, Verdict::Fail, e.to_string())
                .fix(format!("check that {home} is writable by {user}")),
        };
        checks.push(check);
        skip_rest_before_ready(checks, "the script could not be uploaded");
        return;
    }
    checks.push(Check::new(
        upload_id,
        upload_name,
        Verdict::Pass,
        script_path.clone(),
    ));

    let env = vec![("KILN_CHECK_VAR".to_string(), nonce.clone())];
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let run = session
        .exec_streaming(
            &format!("./{JOB}.sh"),
            &env,
            COMMAND_TIMEOUT,
            |stream, bytes| {
                let text = String::from_utf8_lossy(bytes);
                for line in text.lines() {
                    reporter.info(format!("  job: {line}"));
                }
                match stream {
                    OutputStream::Stdout => stdout.extend_from_slice(bytes),
                    OutputStream::Stderr => stderr.extend_from_slice(bytes),
                }
            },
        )
        .await;
    let (env_id, env_name) = BOOT_CHECKS[6];
    let (run_id, run_name) = BOOT_CHECKS[7];
    let stdout = String::from_utf8_lossy(&stdout).into_owned();
    // The script's first line, whatever the variable: proof that it ran at all.
    let script_ran = run.is_ok() && stdout.contains("kiln-check: KILN_CHECK_VAR=");
    if !script_ran {
        let refused = run.as_ref().is_ok_and(|o| !o.env_refused.is_empty());
        checks.push(match refused {
            true => variable_refused(&probes).await,
            false => Check::skipped(env_id, env_name, "the script never ran (see script-run)"),
        });
        let cause = probes.command(&run, &home).await;
        checks.push(
            Check::new(
                run_id,
                run_name,
                Verdict::Fail,
                format!("the script did not run: {}", cause.why),
            )
            .fix(cause.fix),
        );
        skip_rest_before_ready(checks, "the script did not run");
        return;
    }
    let output = run.expect("the script ran");
    let seen = stdout.contains(&format!("KILN_CHECK_VAR={nonce}"));
    checks.push(match (output.env_refused.is_empty(), seen) {
        (true, true) => Check::new(env_id, env_name, Verdict::Pass, "KILN_CHECK_VAR arrived"),
        (false, _) => variable_refused(&probes).await,
        (true, false) => Check::new(
            env_id,
            env_name,
            Verdict::Fail,
            "the server accepted KILN_CHECK_VAR, but the script did not see it: something between sshd and the script (the login shell's startup files, PAM's environment) resets it",
        )
        .fix(format!("look for env -i or an exported KILN_* reset in {user}'s shell startup files and /etc/security/pam_env.conf")),
    });
    // A failing script must fail the job: run one that exits 3.
    let failing = session
        .exec("sh -c 'exit 3'", None, &[], COMMAND_TIMEOUT)
        .await;
    let streamed_stderr = String::from_utf8_lossy(&stderr).contains("kiln-check-stderr");
    let failing_status = failing.as_ref().ok().and_then(|o| o.exit_status);
    checks.push(match (output.exit_status, failing_status, streamed_stderr) {
        (Some(0), Some(3), true) => Check::new(
            run_id,
            run_name,
            Verdict::Pass,
            "exit 0 with stdout and stderr streamed; a failing command exited 3",
        ),
        (Some(0), Some(3), false) => Check::new(
            run_id,
            run_name,
            Verdict::Fail,
            "the script's stderr never arrived (its stdout did): the job's error output would be lost",
        )
        .fix("make sure nothing in the shell's startup files redirects stderr"),
        (Some(0), _, _) => Check::new(
            run_id,
            run_name,
            Verdict::Fail,
            format!(
                "a command that exits 3 was reported as {}: a failing job would pass",
                failing.as_ref().map_or_else(ToString::to_string, ExecOutput::ending)
            ),
        )
        .fix(format!("make sure {user}'s login shell passes on its command's exit status")),
        _ => Check::new(
            run_id,
            run_name,
            Verdict::Fail,
            format!("the script ran but ended with {} instead of 0", output.ending()),
        )
        .fix("run the script in the image by hand to see why it fails"),
    });

    let (artifact_id, artifact_name) = BOOT_CHECKS[8];
    let artifact = async {
        let names = sftp.list(&format!("{home}/artifacts")).await?;
        let Some(name) = names.iter().find(|n| glob_matches("*-artifact.txt", n)) else {
            return Ok(None);
        };
        sftp.read(&format!("{home}/artifacts/{name}"))
            .await
            .map(Some)
    }
    .await;
    checks.push(match artifact {
        Ok(Some(bytes))
            if String::from_utf8_lossy(&bytes).trim() == format!("artifact-{nonce}") =>
        {
            Check::new(
                artifact_id,
                artifact_name,
                Verdict::Pass,
                "artifacts/*-artifact.txt downloaded intact",
            )
        }
        Ok(None) => Check::new(
            artifact_id,
            artifact_name,
            Verdict::Fail,
            format!(
                "nothing in {home}/artifacts matched *-artifact.txt, though the script wrote one"
            ),
        ),
        Ok(Some(_)) => Check::new(
            artifact_id,
            artifact_name,
            Verdict::Fail,
            "the artifact downloaded differs from what the script wrote",
        ),
        Err(e) => Check::new(artifact_id, artifact_name, Verdict::Fail, e.to_string()),
    });
    // The driver removes the script afterwards; so do we (the boot is a snapshot anyway).
    let _ = sftp.remove(&script_path).await;
    sftp.close().await;
}

/// The env check when the server refused the variable, with what AcceptEnv really says.
async fn variable_refused(probes: &Probes<'_>) -> Check {
    let (env_id, env_name) = BOOT_CHECKS[6];
    let cause = probes.refused_variable("KILN_CHECK_VAR").await;
    Check::new(env_id, env_name, Verdict::Fail, cause.why).fix(cause.fix)
}

/// Mark the remaining job checks skipped, leaving `ready-time` to the caller.
fn skip_rest_before_ready(checks: &mut Vec<Check>, because: &str) {
    for (id, name) in &BOOT_CHECKS[checks.len() + 1..9] {
        checks.push(Check::skipped(id, name, because));
    }
}

/// The image's serial log of the verify boot, next to it.
pub fn serial_log(image: &Path) -> PathBuf {
    serial_log_path(image, "verify")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guest_that_answered_ssh_booted_whatever_its_console_printed() {
        let quiet = "SeaBIOS (version 1.16)\nBooting from Hard Disk...\n";
        let answered = boots_check(quiet, true, quiet);
        assert_eq!(answered.verdict, Verdict::Warn, "{answered:?}");
        let silent = boots_check(quiet, false, quiet);
        assert_eq!(silent.verdict, Verdict::Fail, "{silent:?}");
        let kernel = boots_check("[    0.000000] Linux version 6.1", false, "");
        assert_eq!(kernel.verdict, Verdict::Pass);
    }

    #[test]
    fn globs() {
        assert!(glob_matches("*-artifact.txt", "kiln-check-artifact.txt"));
        assert!(glob_matches("a?c", "abc"));
        assert!(!glob_matches("*.txt", "x.log"));
    }

    #[test]
    fn console_lines_lose_their_colours_and_count_as_evidence() {
        let systemd = "[\x1b[0;32m  OK  \x1b[0m] Reached target \x1b[0;1;39mmulti-user.target\x1b[0m - Multi-User System.\r\n";
        assert_eq!(
            plain_console(systemd),
            "[  OK  ] Reached target multi-user.target - Multi-User System.\r\n"
        );
        assert_eq!(plain_console("a\x1b]0;title\x07b\x1b]2;t\x1b\\c"), "abc");
        let grub = "\x1b[2J\x1b[1;1H  Booting `Debian GNU/Linux'\n";
        let check = boots_check(grub, true, "");
        assert_eq!(check.verdict, Verdict::Pass, "{check:?}");
        assert!(
            check.detail.contains("`Booting `Debian GNU/Linux'`"),
            "{check:?}"
        );
        let failed = "[\x1b[0;1;31mFAILED\x1b[0m] Failed to start \x1b[0;1;39mssh.service\x1b[0m - OpenBSD Secure Shell server.";
        let cause = sshd_on_console(&plain_console(failed)).unwrap();
        assert!(cause.why.contains("host keys"), "{}", cause.why);
        assert!(!cause.why.contains('\x1b'), "{}", cause.why);
    }

    #[test]
    fn connection_stages_name_the_failing_step() {
        let checks = connection_checks(&[Stage::TcpConnected], None, "root", "");
        assert_eq!(
            checks.iter().map(|c| c.verdict).collect::<Vec<_>>(),
            [Verdict::Pass, Verdict::Fail, Verdict::Skipped]
        );
        let stages = [
            Stage::TcpConnected,
            Stage::Banner("SSH-2.0-OpenSSH_9.2".into()),
            Stage::Methods(vec!["publickey".into()]),
        ];
        let checks = connection_checks(&stages, None, "root", "");
        assert_eq!(checks[2].verdict, Verdict::Fail);
        assert!(checks[2].fix.as_ref().unwrap().contains("passwd -d root"));
    }

    /// A cloud image as it ships (cloud-init on the console, key-only sshd) cannot be entered
    /// by `kiln configure`: the fix points to `kiln run --base` instead.
    #[test]
    fn a_cloud_image_as_it_ships_is_pointed_to_kiln_run_base() {
        let stages = [
            Stage::TcpConnected,
            Stage::Banner("SSH-2.0-OpenSSH_9.2".into()),
            Stage::Methods(vec!["publickey".into()]),
        ];
        let console = "[  163.06] cloud-init[419]: Cloud-init v. 22.4.2 finished at …\n";
        let checks = connection_checks(&stages, None, "root", console);
        let fix = checks[2].fix.as_ref().unwrap();
        assert!(fix.contains("cloud image"), "{fix}");
        assert!(fix.contains("kiln run OUT.qcow2 --base IMAGE"), "{fix}");
        assert!(!fix.contains("run `kiln configure`"), "{fix}");
        // Password login offered: not a cloud image as it ships, whatever the console says.
        let password = [
            Stage::TcpConnected,
            Stage::Banner("SSH-2.0-OpenSSH_9.2".into()),
            Stage::Methods(vec!["publickey".into(), "password".into()]),
        ];
        let checks = connection_checks(&password, None, "root", console);
        assert!(
            checks[2]
                .fix
                .as_ref()
                .unwrap()
                .contains("run `kiln configure`")
        );
    }
}
