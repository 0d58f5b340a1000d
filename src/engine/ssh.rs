//! SSH client for a test guest: connect with retry while it boots, log in the way the CI driver
//! does (password, possibly empty) or with a key, run commands (env, stdin, streamed output) and
//! move files over SFTP (driver-contract.md §2).
//!
//! Host keys are never checked: the CI driver does not check them either, and every guest kiln
//! talks to is a throwaway VM booted from a snapshot on loopback.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use russh::client::{self, DisconnectReason, Handle};
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{ChannelMsg, Disconnect, Sig};
use russh_sftp::client::SftpSession;
use russh_sftp::protocol::FileAttributes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch};
use tokio::time::{Instant, sleep, timeout};
use tracing::debug;

/// Each TCP connect gets this long, as the CI driver's dial does.
const TCP_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long one connection waits for the server's first bytes after TCP connects. A booting
/// guest's QEMU user-net accepts TCP before sshd listens and may then stay silent.
const BANNER_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections are opened at most this often (see [`first_to_talk`]); once the guest's
/// network is up it bounds how late kiln notices sshd listening.
const DIAL_EVERY: Duration = Duration::from_millis(100);
/// A nudge opens a connection no sooner than this after the last one: that one's SYN went out
/// about when the console spoke, and a burst of console lines costs one connection.
const NUDGE_MIN_AGE: Duration = Duration::from_millis(150);
/// Connections waiting for the server's first byte at once (nudges add to the one).
const MAX_DIALS: usize = 3;
/// How long most connections opened before the guest's network is seen up wait for a byte.
const EARLY_SILENCE: Duration = Duration::from_secs(2);
/// Key exchange once the banner came; generous because a guest under TCG is slow.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// One authentication request (PAM under TCG can take seconds).
const AUTH_TIMEOUT: Duration = Duration::from_secs(30);
/// Short waits between attempts, so kiln notices sshd within a fraction of a second of it
/// listening (the Djinn driver polls once a second; a failed attempt costs the guest nothing).
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_millis(200);
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Opening the SFTP subsystem, and each SFTP operation unless [`Sftp::set_timeout`] says otherwise.
const SFTP_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest line the banner sniffer keeps; RFC 4253 caps the identification line at 255.
const MAX_BANNER_LINE: usize = 255;
/// Lines a server may send before its identification (RFC 4253 §4.2) that the sniffer reads.
const MAX_PRE_BANNER_LINES: usize = 20;

/// Where to log in and how.
#[derive(Debug, Clone)]
pub struct SshTarget {
    /// Usually "127.0.0.1": QEMU forwards a loopback port to the guest's sshd.
    pub host: String,
    pub port: u16,
    pub user: String,
    pub auth: Auth,
}

/// How to authenticate; never printed (Debug redacts the secrets).
#[derive(Clone)]
pub enum Auth {
    /// The `password` method; may be empty, which is exactly how the CI driver logs in as root.
    Password(String),
    /// A private key file (OpenSSH, PKCS#8 or PEM), with its passphrase if it is encrypted.
    Key {
        path: PathBuf,
        passphrase: Option<String>,
    },
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::Password(p) if p.is_empty() => f.write_str("Password(empty)"),
            Auth::Password(_) => f.write_str("Password(<redacted>)"),
            Auth::Key { path, passphrase } => f
                .debug_struct("Key")
                .field("path", path)
                .field("passphrase", &passphrase.as_ref().map(|_| "<redacted>"))
                .finish(),
        }
    }
}

/// Where a connection attempt got to; reported as it happens so a UI can show
/// "TCP connect → banner → methods → auth". A retry starts again at `Connecting`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stage {
    Connecting {
        attempt: u32,
    },
    TcpConnected,
    /// Connections were accepted but then closed, or stayed silent, without a byte from the
    /// server; told when what they do changes, so a boot watcher can say which.
    NoAnswer(Silence),
    /// The server's identification line, e.g. "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3".
    Banner(String),
    /// The authentication methods the server offers. Just `["none"]` when it let the user in
    /// with the `none` method — OpenSSH does that for an account whose empty password it would
    /// accept, and the CI driver (Go's x/crypto/ssh) tries `none` first too.
    Methods(Vec<String>),
    Authenticated,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stage::Connecting { attempt } => write!(f, "TCP connect (attempt {attempt})"),
            Stage::TcpConnected => f.write_str("TCP connected"),
            Stage::NoAnswer(silence) => write!(f, "no answer: {silence}"),
            Stage::Banner(banner) => write!(f, "banner {banner}"),
            Stage::Methods(methods) => write!(f, "methods {}", methods.join(",")),
            Stage::Authenticated => f.write_str("authenticated"),
        }
    }
}

/// What a forwarded port does while no SSH server talks on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Silence {
    /// Accepted, then closed at once: through QEMU's user network this is the guest's TCP
    /// stack refusing the port — the guest's network is up and nothing listens there.
    Closed,
    /// Accepted and then nothing: the guest has not answered QEMU's connection at all (still
    /// booting, or its network is not up).
    Silent,
}

impl fmt::Display for Silence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Silence::Closed => {
                "connections are closed at once (the guest is up but nothing listens on port 22)"
            }
            Silence::Silent => {
                "connections stay silent (the guest has not answered; its network may be down)"
            }
        })
    }
}

/// Everything that can go wrong talking to a guest, each worded so the user knows what to fix.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("cannot resolve {host}: {source}")]
    Resolve { host: String, source: io::Error },
    #[error(
        "nothing answers on {addr} after {} ({last}) — is the guest booted and sshd enabled?",
        seconds(*.waited)
    )]
    NothingAnswers {
        addr: String,
        waited: Duration,
        last: String,
    },
    #[error(
        "port {port} is open but no SSH banner came within {} ({last}) — is sshd installed and running?",
        seconds(*.waited)
    )]
    NoBanner {
        port: u16,
        waited: Duration,
        last: String,
    },
    #[error("{banner} answered on {addr} but the SSH handshake kept failing for {}: {last}", seconds(*.waited))]
    Handshake {
        addr: String,
        banner: String,
        waited: Duration,
        last: String,
    },
    #[error("the server and kiln share no {what}: {detail}")]
    NoCommonAlgorithm { what: String, detail: String },
    #[error(
        "the guest still refused logins for {user} after {} because it is booting (/run/nologin) — is systemd-user-sessions failing?",
        seconds(*.waited)
    )]
    StillBooting { user: String, waited: Duration },
    #[error("password rejected for {user}; server offers {}", list(.methods))]
    PasswordRejected { user: String, methods: Vec<String> },
    #[error(
        "empty password rejected for {user}; server offers {} — the CI driver logs in this way, so the image needs `passwd -d {user}`, PasswordAuthentication yes and PermitEmptyPasswords yes{} in sshd_config",
        list(.methods),
        if .user == "root" { ", PermitRootLogin yes" } else { "" }
    )]
    EmptyPasswordRejected { user: String, methods: Vec<String> },
    #[error("the server does not offer {method} login for {user}; it offers {}", list(.methods))]
    MethodNotOffered {
        user: String,
        method: &'static str,
        methods: Vec<String>,
    },
    #[error("key {} rejected for {user}; server offers {}", .path.display(), list(.methods))]
    KeyRejected {
        user: String,
        path: PathBuf,
        methods: Vec<String>,
    },
    #[error("the server closed the connection while logging in {user}: {message}")]
    LoginRefused { user: String, message: String },
    #[error("key {} is encrypted; give its passphrase", .path.display())]
    KeyEncrypted { path: PathBuf },
    #[error("wrong passphrase for key {}", .path.display())]
    WrongPassphrase { path: PathBuf },
    #[error("cannot read key {}: {source}", .path.display())]
    KeyUnreadable { path: PathBuf, source: io::Error },
    #[error("{} is not a private key kiln can use: {detail}", .path.display())]
    KeyInvalid { path: PathBuf, detail: String },
    #[error("authentication of {user} got no answer within {}", seconds(*.waited))]
    AuthTimeout { user: String, waited: Duration },
    #[error("the SSH connection was lost {during}: {detail}")]
    ConnectionLost { during: String, detail: String },
    #[error("the server refused to open a session channel: {0}")]
    ChannelRefused(String),
    #[error("the server refused to run `{command}`")]
    ExecRefused { command: String },
    #[error("`{command}` did not finish within {}; it was killed", seconds(*.waited))]
    ExecTimeout { command: String, waited: Duration },
    #[error(
        "SFTP subsystem unavailable ({detail}) — make sure Subsystem in sshd_config on the image is configured correctly"
    )]
    SftpUnavailable { detail: String },
    #[error("SFTP {op} {path} failed: {detail}")]
    Sftp {
        op: &'static str,
        path: String,
        detail: String,
    },
    #[error("SFTP {op} {path} did not finish within {}", seconds(*.waited))]
    SftpTimeout {
        op: &'static str,
        path: String,
        waited: Duration,
    },
}

/// What a finished command left behind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    /// `None` when the command died of a signal (see `exit_signal`) or the server sent no status.
    pub exit_status: Option<u32>,
    /// The signal's name ("KILL", "SEGV", …) when the command was killed by one.
    pub exit_signal: Option<String>,
    /// Empty for [`Session::exec_streaming`]: its output went to the callback only.
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Names of the env variables the server refused (OpenSSH: not matched by `AcceptEnv`).
    /// The CI driver only prints these, so a refused build variable is silently lost.
    pub env_refused: Vec<String>,
}

impl ExecOutput {
    /// Exit status 0.
    pub fn success(&self) -> bool {
        self.exit_status == Some(0)
    }

    /// How the command ended, for messages: "exit status 3", "killed by SIGKILL".
    pub fn ending(&self) -> String {
        match (&self.exit_status, &self.exit_signal) {
            (Some(code), _) => format!("exit status {code}"),
            (None, Some(signal)) => format!("killed by SIG{signal}"),
            (None, None) => "no exit status".into(),
        }
    }

    /// Stdout as text, trailing newline(s) removed — handy for `id -un` and the like.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout)
            .trim_end_matches(['\r', '\n'])
            .to_string()
    }

    /// Stderr as text, trailing newline(s) removed.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr)
            .trim_end_matches(['\r', '\n'])
            .to_string()
    }
}

/// Which of a command's streams a piece of output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    Stdout,
    Stderr,
}

/// A logged-in SSH connection to a guest.
pub struct Session {
    handle: Handle<Client>,
    banner: String,
    methods: Vec<String>,
    user: String,
    addr: String,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("addr", &self.addr)
            .field("user", &self.user)
            .field("banner", &self.banner)
            .finish()
    }
}

/// Connect to `target` and log in, retrying while the guest is still coming up.
///
/// Retries (backoff 50 ms doubling to 200 ms) until `deadline` while the failure means "not up
/// yet": connection refused, a port that stays silent or closes before the SSH banner, a cut-off
/// key exchange, or PAM's /run/nologin while systemd boots. A rejected login, a bad key file or a
/// wrong passphrase fail at once. `on_stage` sees each stage as it is reached.
///
/// Each TCP connect gets 1 s and each wait for the banner 5 s, both cut short by the deadline.
/// Once a server has spoken, its key exchange (30 s) and each login request (30 s) keep their
/// own timeouts even past the deadline, so a guest that came up at the last moment is not cut
/// off mid-login.
pub async fn connect(
    target: &SshTarget,
    deadline: Duration,
    on_stage: impl FnMut(Stage) + Send,
) -> Result<Session, SshError> {
    // Nothing ever nudges: the sender lives as long as the wait.
    let (_never, nudges) = watch::channel(());
    connect_nudged(target, deadline, nudges, on_stage).await
}

/// [`connect`], also dialling afresh whenever `nudges` changes: the guest's console said
/// something about sshd or its network (see [`console_line_may_mean_ssh`]), so a connection
/// that has been silent since before is most likely one whose SYN the guest never saw, and
/// QEMU would only retry it seconds later.
pub async fn connect_nudged(
    target: &SshTarget,
    deadline: Duration,
    mut nudges: watch::Receiver<()>,
    mut on_stage: impl FnMut(Stage) + Send,
) -> Result<Session, SshError> {
    let give_up = Instant::now() + deadline;
    // A bad key fails before any waiting: no point watching a guest boot for it.
    let key = match &target.auth {
        Auth::Key { path, passphrase } => Some(load_key(path, passphrase.clone()).await?),
        Auth::Password(_) => None,
    };
    let addr = resolve(&target.host, target.port).await?;
    let config = Arc::new(client_config());
    let mut furthest = Reached::Nothing;
    let mut furthest_detail = String::from("no attempt finished");
    let mut attempt = 0;
    loop {
        attempt += 1;
        on_stage(Stage::Connecting { attempt });
        let outcome = try_once(
            target,
            addr,
            key.as_ref(),
            &config,
            give_up,
            &mut nudges,
            &mut on_stage,
        )
        .await;
        match outcome {
            Ok(session) => return Ok(session),
            Err(Attempt::Fatal(error)) => return Err(error),
            Err(Attempt::NotYet(reached, detail)) => {
                debug!(attempt, ?reached, %detail, "SSH not up yet");
                if reached.rank() >= furthest.rank() {
                    furthest = reached;
                    furthest_detail = detail;
                }
            }
        }
        let now = Instant::now();
        if now >= give_up {
            return Err(gave_up(target, deadline, furthest, furthest_detail));
        }
        sleep(backoff(attempt).min(give_up - now)).await;
        if Instant::now() >= give_up {
            return Err(gave_up(target, deadline, furthest, furthest_detail));
        }
    }
}

/// The pause after failed attempt number `attempt` (1-based): 100 ms doubling, capped at 1 s.
fn backoff(attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(1).min(10);
    (FIRST_BACKOFF * 2u32.pow(doublings)).min(MAX_BACKOFF)
}

/// How far an attempt that should be retried got.
#[derive(Debug)]
enum Reached {
    Nothing,
    Tcp,
    Banner(String),
    /// Logged in, but the guest's PAM said it is still booting.
    Booting,
}

impl Reached {
    fn rank(&self) -> u8 {
        match self {
            Reached::Nothing => 0,
            Reached::Tcp => 1,
            Reached::Banner(_) => 2,
            Reached::Booting => 3,
        }
    }
}

enum Attempt {
    NotYet(Reached, String),
    Fatal(SshError),
}

fn gave_up(target: &SshTarget, waited: Duration, reached: Reached, last: String) -> SshError {
    let addr = format!("{}:{}", target.host, target.port);
    match reached {
        Reached::Nothing => SshError::NothingAnswers { addr, waited, last },
        Reached::Tcp => SshError::NoBanner {
            port: target.port,
            waited,
            last,
        },
        Reached::Banner(banner) => SshError::Handshake {
            addr,
            banner,
            waited,
            last,
        },
        Reached::Booting => SshError::StillBooting {
            user: target.user.clone(),
            waited,
        },
    }
}

async fn resolve(host: &str, port: u16) -> Result<SocketAddr, SshError> {
    let resolve_error = |source| SshError::Resolve {
        host: host.to_string(),
        source,
    };
    tokio::net::lookup_host((host, port))
        .await
        .map_err(resolve_error)?
        .next()
        .ok_or_else(|| resolve_error(io::Error::other("no address")))
}

fn client_config() -> client::Config {
    client::Config {
        // Keepalives notice a guest that died under a long-running CI script.
        keepalive_interval: Some(Duration::from_secs(15)),
        keepalive_max: 4,
        nodelay: true,
        ..Default::default()
    }
}

/// A TCP connection on which the server has begun to talk (its first bytes wait unread).
///
/// QEMU's user network accepts a forwarded connection on the host at once, then sends the
/// guest a SYN. While the guest's network is not up that SYN goes unanswered and is retried
/// seconds apart, so a connection opened during boot can sit silent for seconds after sshd
/// listens. Closing it does not help the guest: QEMU keeps retrying the SYN of a connection
/// it has not finished for over a minute, so every connection given up on early comes back
/// later — tried: a fresh connection every 100 ms made the guest's kernel report a SYN flood
/// on port 22 and sshd never answered. So connections are few. Until one is closed at once
/// (the guest's TCP stack refusing the port: its network is up) each waits [`EARLY_SILENCE`]
/// for a byte, every fourth the whole [`BANNER_TIMEOUT`] so a slow sshd is not given up on;
/// after that each waits the whole timeout, [`DIAL_EVERY`] apart.
///
/// A nudge (the console mentioning sshd or the network) opens one more connection beside the
/// waiting ones, at most [`MAX_DIALS`] at a time and [`NUDGE_MIN_AGE`] after the last: the
/// waiting one may be a connection sshd is already starting a process for (hundreds of
/// milliseconds under TCG), so it is not given up.
async fn first_to_talk(
    addr: SocketAddr,
    give_up: Instant,
    nudges: &mut watch::Receiver<()>,
    on_stage: &mut (impl FnMut(Stage) + Send),
) -> Result<TcpStream, (Reached, String)> {
    let mut furthest = (Reached::Nothing, String::from("no connection finished"));
    let mut told: Option<Silence> = None;
    let mut network_up = false;
    let mut dials = tokio::task::JoinSet::new();
    let mut opened = 0u64;
    let mut last_opened = Instant::now();
    let mut nudged = false;
    let mut nudging = true;
    loop {
        let now = Instant::now();
        if now >= give_up {
            break;
        }
        let nudge_due = nudged && dials.len() < MAX_DIALS;
        if dials.is_empty() || (nudge_due && now >= last_opened + NUDGE_MIN_AGE) {
            let silence = match network_up || opened % 4 == 3 {
                true => BANNER_TIMEOUT,
                false => EARLY_SILENCE,
            };
            // A nudge from before this connection says nothing about it.
            nudges.borrow_and_update();
            nudged = false;
            dials.spawn(dial(addr, silence, give_up));
            opened += 1;
            last_opened = now;
            continue;
        }
        let nudge_wait = tokio::time::sleep_until(last_opened + NUDGE_MIN_AGE);
        let outcome = tokio::select! {
            finished = dials.join_next() => match finished {
                Some(Ok(outcome)) => outcome,
                Some(Err(_)) | None => continue,
            },
            changed = nudges.changed(), if !nudged && nudging => {
                // The sender is gone once the machine ended: no more nudges.
                nudged = changed.is_ok();
                nudging = changed.is_ok();
                continue;
            }
            _ = nudge_wait, if nudge_due => continue,
            _ = tokio::time::sleep_until(give_up) => break,
        };
        match outcome {
            Dial::Talking(stream) => {
                if told.is_none() {
                    on_stage(Stage::TcpConnected);
                }
                return Ok(stream);
            }
            Dial::Unanswered(silence) => {
                network_up |= silence == Silence::Closed;
                if told.is_none() {
                    on_stage(Stage::TcpConnected);
                }
                if told != Some(silence) {
                    on_stage(Stage::NoAnswer(silence));
                    told = Some(silence);
                }
                let detail = match silence {
                    Silence::Closed => "the connection was closed without a word",
                    Silence::Silent => "it stayed silent",
                };
                furthest = (Reached::Tcp, detail.into());
            }
            Dial::Failed(detail) if told.is_none() => furthest.1 = detail,
            Dial::Failed(_) => {}
        }
        if dials.is_empty() {
            tokio::time::sleep_until((last_opened + DIAL_EVERY).min(give_up)).await;
        }
    }
    Err(furthest)
}

/// How one connection of [`first_to_talk`] ended.
enum Dial {
    Talking(TcpStream),
    Unanswered(Silence),
    /// No TCP connection (refused, unreachable, timed out).
    Failed(String),
}

/// Connect and wait up to `silence` for the server's first bytes.
async fn dial(addr: SocketAddr, silence: Duration, give_up: Instant) -> Dial {
    let connect_by = (Instant::now() + TCP_CONNECT_TIMEOUT).min(give_up);
    let stream = match tokio::time::timeout_at(connect_by, TcpStream::connect(addr)).await {
        Err(_) => return Dial::Failed("no answer".into()),
        Ok(Err(e)) => return Dial::Failed(io_reason(&e)),
        Ok(Ok(stream)) => stream,
    };
    let talk_by = (Instant::now() + silence).min(give_up);
    let mut first = [0u8; 1];
    match tokio::time::timeout_at(talk_by, stream.peek(&mut first)).await {
        Ok(Ok(n)) if n > 0 => Dial::Talking(stream),
        Ok(_) => Dial::Unanswered(Silence::Closed),
        Err(_) => Dial::Unanswered(Silence::Silent),
    }
}

/// Whether a line of the guest's console is worth dialling again for: inits say when they
/// start sshd and bring the network up (systemd's "Started ssh.service", "Starting OpenBSD
/// Secure Shell server…", "Reached target network.target", OpenRC's " * Starting sshd").
/// A few lines per boot match; each costs one connection.
pub fn console_line_may_mean_ssh(line: &str) -> bool {
    let line = line.to_ascii_lowercase();
    line.contains("ssh") || line.contains("network")
}

/// One connection attempt: TCP, banner, key exchange, methods, authentication.
async fn try_once(
    target: &SshTarget,
    addr: SocketAddr,
    key: Option<&Arc<PrivateKey>>,
    config: &Arc<client::Config>,
    give_up: Instant,
    nudges: &mut watch::Receiver<()>,
    on_stage: &mut (impl FnMut(Stage) + Send),
) -> Result<Session, Attempt> {
    let stream = first_to_talk(addr, give_up, nudges, on_stage)
        .await
        .map_err(|(reached, detail)| Attempt::NotYet(reached, detail))?;
    let _ = stream.set_nodelay(true);

    let (stream, banner_rx) = BannerSniffer::new(stream);
    let notes = Arc::new(Mutex::new(ServerNotes::default()));
    let handler = Client {
        notes: Arc::clone(&notes),
    };
    let connecting = client::connect_stream(Arc::clone(config), stream, handler);
    tokio::pin!(connecting);
    tokio::pin!(banner_rx);

    // The banner arrives while russh reads it inside `connecting`, so both are polled together.
    let remaining = give_up.saturating_duration_since(Instant::now());
    let banner_timer = sleep(BANNER_TIMEOUT.min(remaining));
    tokio::pin!(banner_timer);
    let mut banner: Option<String> = None;
    // A oneshot receiver must not be polled again once it has answered.
    let mut sniffer_done = false;
    let early = loop {
        tokio::select! {
            result = &mut connecting => break Some(result),
            sniffed = &mut banner_rx, if !sniffer_done => {
                sniffer_done = true;
                match sniffed {
                    Ok(line) => {
                        on_stage(Stage::Banner(line.clone()));
                        banner = Some(line);
                        break None;
                    }
                    // The sniffer is gone without a banner: `connecting` says why next.
                    Err(_) => continue,
                }
            },
            _ = &mut banner_timer, if banner.is_none() => {
                return Err(Attempt::NotYet(Reached::Tcp, "it stayed silent".into()));
            }
        }
    };
    let connected = match early {
        Some(result) => result,
        None => match timeout(HANDSHAKE_TIMEOUT, &mut connecting).await {
            Ok(result) => result,
            Err(_) => {
                return Err(Attempt::NotYet(
                    Reached::Banner(banner.unwrap_or_default()),
                    format!(
                        "key exchange did not finish within {}",
                        seconds(HANDSHAKE_TIMEOUT)
                    ),
                ));
            }
        },
    };
    // `connecting` may finish in the same poll that read the banner, before its branch ran.
    if !sniffer_done && let Ok(line) = banner_rx.try_recv() {
        on_stage(Stage::Banner(line.clone()));
        banner = Some(line);
    }
    let (mut handle, banner) = match (connected, banner) {
        (Ok(handle), Some(banner)) => (handle, banner),
        (Ok(handle), None) => (handle, String::from("SSH-?")),
        (Err(e), None) => {
            let detail = match e {
                russh::Error::Disconnect => "the connection was closed without a word".into(),
                russh::Error::IO(e) => io_reason(&e),
                other => other.to_string(),
            };
            return Err(Attempt::NotYet(Reached::Tcp, detail));
        }
        (Err(russh::Error::NoCommonAlgo { kind, ours, theirs }), Some(_)) => {
            return Err(Attempt::Fatal(SshError::NoCommonAlgorithm {
                what: format!("{kind:?} algorithm").to_lowercase(),
                detail: format!("ours {}, the server's {}", ours.join(","), theirs.join(",")),
            }));
        }
        (Err(e), Some(banner)) => {
            let detail = format!("key exchange failed: {}", russh_reason(&e, &notes));
            return Err(Attempt::NotYet(Reached::Banner(banner), detail));
        }
    };

    let methods = match timeout(AUTH_TIMEOUT, handle.authenticate_none(target.user.as_str())).await
    {
        Err(_) => {
            return Err(Attempt::NotYet(
                Reached::Banner(banner),
                "no answer to the first authentication request".into(),
            ));
        }
        Ok(Err(e)) => {
            let detail = format!("connection lost before login: {e}");
            return Err(Attempt::NotYet(Reached::Banner(banner), detail));
        }
        Ok(Ok(result)) if result.success() => {
            on_stage(Stage::Methods(vec!["none".into()]));
            on_stage(Stage::Authenticated);
            return Ok(Session {
                handle,
                banner,
                methods: vec!["none".into()],
                user: target.user.clone(),
                addr: addr.to_string(),
            });
        }
        Ok(Ok(client::AuthResult::Failure {
            remaining_methods, ..
        })) => {
            if handle.is_closed() {
                let detail = format!(
                    "connection closed before login: {}",
                    note_or(&notes, "no reason given")
                );
                return Err(Attempt::NotYet(Reached::Banner(banner), detail));
            }
            method_names(&remaining_methods)
        }
        Ok(Ok(client::AuthResult::Success)) => unreachable!("handled above"),
    };
    on_stage(Stage::Methods(methods.clone()));

    let user = target.user.clone();
    let (method, result) = match (&target.auth, key) {
        (Auth::Password(password), _) => {
            if !methods.iter().any(|m| m == "password") {
                return Err(Attempt::Fatal(SshError::MethodNotOffered {
                    user,
                    method: "password",
                    methods,
                }));
            }
            let result = timeout(
                AUTH_TIMEOUT,
                handle.authenticate_password(user.as_str(), password.as_str()),
            )
            .await;
            ("password", result)
        }
        (Auth::Key { .. }, Some(key)) => {
            if !methods.iter().any(|m| m == "publickey") {
                return Err(Attempt::Fatal(SshError::MethodNotOffered {
                    user,
                    method: "publickey",
                    methods,
                }));
            }
            let result = timeout(AUTH_TIMEOUT, async {
                // RSA keys need the server's preferred signature hash; others ignore it.
                let hash = if key.algorithm().is_rsa() {
                    handle.best_supported_rsa_hash().await?.flatten()
                } else {
                    None
                };
                let key = PrivateKeyWithHashAlg::new(Arc::clone(key), hash);
                handle.authenticate_publickey(user.as_str(), key).await
            })
            .await;
            ("publickey", result)
        }
        (Auth::Key { .. }, None) => unreachable!("connect loads the key first"),
    };
    let outcome = match result {
        Err(_) => {
            return Err(Attempt::Fatal(SshError::AuthTimeout {
                user,
                waited: AUTH_TIMEOUT,
            }));
        }
        Ok(Err(e)) => {
            return Err(Attempt::Fatal(SshError::ConnectionLost {
                during: format!("during {method} login"),
                detail: russh_reason(&e, &notes),
            }));
        }
        Ok(Ok(outcome)) => outcome,
    };
    if outcome.success() {
        on_stage(Stage::Authenticated);
        return Ok(Session {
            handle,
            banner,
            methods,
            user,
            addr: addr.to_string(),
        });
    }
    if handle.is_closed() {
        // OpenSSH accepted the credentials but PAM's account stage refused the login: it sends
        // PAM's message as an auth banner and hangs up. pam_nologin does that to non-root users
        // until systemd-user-sessions removes /run/nologin late in boot — not up yet.
        let message = {
            let notes = notes.lock().expect("notes lock");
            notes
                .auth_banner
                .clone()
                .or_else(|| notes.disconnect.clone())
        };
        let message = message.unwrap_or_else(|| "no reason given".into());
        if is_booting_notice(&message) {
            return Err(Attempt::NotYet(Reached::Booting, message));
        }
        return Err(Attempt::Fatal(SshError::LoginRefused {
            user,
            message: message.trim().to_string(),
        }));
    }
    let methods = match outcome {
        client::AuthResult::Failure {
            remaining_methods, ..
        } if !remaining_methods.is_empty() => method_names(&remaining_methods),
        _ => methods,
    };
    Err(Attempt::Fatal(match &target.auth {
        Auth::Password(p) if p.is_empty() => SshError::EmptyPasswordRejected { user, methods },
        Auth::Password(_) => SshError::PasswordRejected { user, methods },
        Auth::Key { path, .. } => SshError::KeyRejected {
            user,
            path: path.clone(),
            methods,
        },
    }))
}

/// pam_nologin's message while systemd boots ("System is booting up. Unprivileged users are
/// not permitted to log in yet. …").
fn is_booting_notice(message: &str) -> bool {
    message.contains("System is booting up") || message.contains("not permitted to log in yet")
}

fn method_names(methods: &[russh::MethodKind]) -> Vec<String> {
    methods.iter().map(String::from).collect()
}

fn io_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::ConnectionReset => "connection reset".into(),
        io::ErrorKind::UnexpectedEof => "the connection was closed without a word".into(),
        io::ErrorKind::BrokenPipe => "the connection was closed".into(),
        _ => e.to_string(),
    }
}

/// A russh error, with the server's disconnect message when it sent one.
fn russh_reason(e: &russh::Error, notes: &Mutex<ServerNotes>) -> String {
    let base = match e {
        russh::Error::IO(e) => io_reason(e),
        other => other.to_string(),
    };
    match notes.lock().expect("notes lock").disconnect.clone() {
        Some(note) => format!("{base} ({note})"),
        None => base,
    }
}

fn note_or(notes: &Mutex<ServerNotes>, fallback: &str) -> String {
    let notes = notes.lock().expect("notes lock");
    notes
        .disconnect
        .clone()
        .or_else(|| notes.auth_banner.clone())
        .unwrap_or_else(|| fallback.to_string())
}

/// Load (and decrypt) a private key off the async runtime: bcrypt-pbkdf is deliberately slow.
async fn load_key(path: &Path, passphrase: Option<String>) -> Result<Arc<PrivateKey>, SshError> {
    let owned = path.to_path_buf();
    let loaded = tokio::task::spawn_blocking(move || {
        let text = std::fs::read_to_string(&owned).map_err(|e| match e.kind() {
            io::ErrorKind::InvalidData => KeyTrouble::Invalid("not a text file".into()),
            _ => KeyTrouble::Unreadable(e),
        })?;
        // russh reads an encrypted PKCS#8 key without a passphrase as a plain one and fails
        // with a DER error; the PEM label says what is really going on.
        if passphrase.is_none() && text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
            return Err(KeyTrouble::Encrypted);
        }
        russh::keys::decode_secret_key(&text, passphrase.as_deref())
            .map_err(|e| key_trouble(passphrase.is_some(), e))
    })
    .await
    .map_err(|e| KeyTrouble::Invalid(e.to_string()))
    .and_then(|loaded| loaded);
    let path = path.to_path_buf();
    match loaded {
        Ok(key) => Ok(Arc::new(key)),
        Err(KeyTrouble::Encrypted) => Err(SshError::KeyEncrypted { path }),
        Err(KeyTrouble::WrongPassphrase) => Err(SshError::WrongPassphrase { path }),
        Err(KeyTrouble::Unreadable(source)) => Err(SshError::KeyUnreadable { path, source }),
        Err(KeyTrouble::Invalid(detail)) => Err(SshError::KeyInvalid { path, detail }),
    }
}

enum KeyTrouble {
    Encrypted,
    WrongPassphrase,
    Unreadable(io::Error),
    Invalid(String),
}

fn key_trouble(had_passphrase: bool, e: russh::keys::Error) -> KeyTrouble {
    use russh::keys::{Error, ssh_key};
    match e {
        Error::KeyIsEncrypted => KeyTrouble::Encrypted,
        // A wrong passphrase decrypts to garbage: OpenSSH keys' check words differ, PEM keys'
        // padding is bad, PKCS#8 keys fail to decrypt or parse.
        Error::SshKey(ssh_key::Error::Crypto) | Error::Unpad(_) | Error::Pkcs8(_)
            if had_passphrase =>
        {
            KeyTrouble::WrongPassphrase
        }
        other => KeyTrouble::Invalid(other.to_string()),
    }
}

/// What the server told us besides protocol replies; kept for error messages.
#[derive(Default)]
struct ServerNotes {
    auth_banner: Option<String>,
    disconnect: Option<String>,
}

struct Client {
    notes: Arc<Mutex<ServerNotes>>,
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        _server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        // Not checked, on purpose: the CI driver does not check host keys either, and these are
        // throwaway test VMs on loopback whose keys change with every image.
        Ok(true)
    }

    async fn auth_banner(
        &mut self,
        banner: &str,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        self.notes.lock().expect("notes lock").auth_banner = Some(banner.to_string());
        Ok(())
    }

    async fn disconnected(
        &mut self,
        reason: DisconnectReason<Self::Error>,
    ) -> Result<(), Self::Error> {
        match reason {
            DisconnectReason::ReceivedDisconnect(info) => {
                let note = format!("server said: {:?} {}", info.reason_code, info.message);
                self.notes.lock().expect("notes lock").disconnect = Some(note);
                Ok(())
            }
            DisconnectReason::Error(e) => Err(e),
        }
    }
}

impl Session {
    /// The server's identification line, e.g. "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3".
    pub fn banner(&self) -> &str {
        &self.banner
    }

    /// The authentication methods the server offered before login.
    pub fn methods(&self) -> &[String] {
        &self.methods
    }

    /// The user this session is logged in as.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Whether the connection is gone (guest powered off, sshd killed, keepalives unanswered).
    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    /// Run `command`, feed it `stdin` (then EOF) and collect its output. `env` goes first as SSH
    /// `env` requests; the ones the server refuses are listed in [`ExecOutput::env_refused`].
    pub async fn exec(
        &self,
        command: &str,
        stdin: Option<&[u8]>,
        env: &[(String, String)],
        timeout: Duration,
    ) -> Result<ExecOutput, SshError> {
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let mut collect = |stream: OutputStream, bytes: &[u8]| match stream {
            OutputStream::Stdout => stdout.extend_from_slice(bytes),
            OutputStream::Stderr => stderr.extend_from_slice(bytes),
        };
        let mut output = self.run(command, stdin, env, timeout, &mut collect).await?;
        output.stdout = stdout;
        output.stderr = stderr;
        Ok(output)
    }

    /// Like [`Session::exec`] without stdin, but hands output to `on_output` as it arrives (a CI
    /// script's log) instead of keeping it: the returned stdout and stderr are empty.
    pub async fn exec_streaming(
        &self,
        command: &str,
        env: &[(String, String)],
        timeout: Duration,
        mut on_output: impl FnMut(OutputStream, &[u8]) + Send,
    ) -> Result<ExecOutput, SshError> {
        self.run(command, None, env, timeout, &mut on_output).await
    }

    async fn run(
        &self,
        command: &str,
        stdin: Option<&[u8]>,
        env: &[(String, String)],
        limit: Duration,
        on_output: &mut (dyn FnMut(OutputStream, &[u8]) + Send),
    ) -> Result<ExecOutput, SshError> {
        let shown = short_command(command);
        let started = Instant::now();
        let channel = match timeout(limit, self.handle.channel_open_session()).await {
            Err(_) => {
                return Err(SshError::ExecTimeout {
                    command: shown,
                    waited: limit,
                });
            }
            Ok(Err(e)) => return Err(channel_error(e, &shown)),
            Ok(Ok(channel)) => channel,
        };
        let (mut read, write) = channel.split();
        let remaining = limit.saturating_sub(started.elapsed());
        let work = async {
            let (started_tx, started_rx) = oneshot::channel::<()>();
            // Requests are answered in order, so the first env.len() replies are the env ones
            // and the next one is the exec's; sending them all at once saves round trips. The
            // replies are read while they are sent: russh stalls the whole connection when a
            // channel's unread messages pile up.
            let requests = async {
                for (name, value) in env {
                    write
                        .set_env(true, name.as_str(), value.as_str())
                        .await
                        .map_err(|e| lost(e, &shown))?;
                }
                write
                    .exec(true, command.as_bytes())
                    .await
                    .map_err(|e| lost(e, &shown))?;
                // stdin only once the command runs: if it is refused nobody would read it.
                if started_rx.await.is_ok() {
                    if let Some(bytes) = stdin {
                        // A command may exit without reading its stdin; that is its business.
                        let _ = write.data(bytes).await;
                    }
                    let _ = write.eof().await;
                }
                Ok(())
            };
            let reading = read_replies(&mut read, env, &shown, started_tx, on_output);
            tokio::pin!(requests, reading);
            let mut sent = false;
            loop {
                tokio::select! {
                    result = &mut reading => break result,
                    // The read side decides when we are done: stdin still waiting for window
                    // space when the command exits is simply dropped.
                    result = &mut requests, if !sent => {
                        sent = true;
                        result?;
                    }
                }
            }
        };
        match timeout(remaining, work).await {
            Ok(result) => result,
            Err(_) => {
                let _ = write.signal(Sig::KILL).await;
                let _ = write.close().await;
                Err(SshError::ExecTimeout {
                    command: shown,
                    waited: limit,
                })
            }
        }
    }

    /// Start `command` and keep its stdin open: kiln writes to it and reads its output in
    /// turns (see [`Conversation`]). Returns once the server agreed to run it.
    pub async fn converse(&self, command: &str, limit: Duration) -> Result<Conversation, SshError> {
        let shown = short_command(command);
        let starting = async {
            let mut channel = self
                .handle
                .channel_open_session()
                .await
                .map_err(|e| channel_error(e, &shown))?;
            channel
                .exec(true, command.as_bytes())
                .await
                .map_err(|e| lost(e, &shown))?;
            loop {
                match channel.wait().await {
                    Some(ChannelMsg::Success) => return Ok(channel),
                    Some(ChannelMsg::Failure) => {
                        return Err(SshError::ExecRefused {
                            command: shown.clone(),
                        });
                    }
                    Some(ChannelMsg::Close) | None => {
                        return Err(SshError::ConnectionLost {
                            during: format!("while starting `{shown}`"),
                            detail: "the channel closed".into(),
                        });
                    }
                    Some(_) => continue,
                }
            }
        };
        match timeout(limit, starting).await {
            Ok(Ok(channel)) => Ok(Conversation {
                channel,
                command: shown,
                stdout: Vec::new(),
                stderr: Vec::new(),
                exit_status: None,
                exit_signal: None,
                closed: false,
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(SshError::ExecTimeout {
                command: shown,
                waited: limit,
            }),
        }
    }

    /// Open the `sftp` subsystem (the CI driver copies its script this way).
    pub async fn sftp(&self) -> Result<Sftp, SshError> {
        let opening = async {
            let mut channel = self
                .handle
                .channel_open_session()
                .await
                .map_err(|e| channel_error(e, "sftp"))?;
            channel
                .request_subsystem(true, "sftp")
                .await
                .map_err(|e| lost(e, "sftp"))?;
            loop {
                match channel.wait().await {
                    Some(ChannelMsg::Success) => break,
                    Some(ChannelMsg::Failure) => {
                        return Err(SshError::SftpUnavailable {
                            detail: "the server refused the `sftp` subsystem request".into(),
                        });
                    }
                    Some(ChannelMsg::Eof | ChannelMsg::Close) | None => {
                        return Err(SshError::SftpUnavailable {
                            detail: "EOF".into(),
                        });
                    }
                    Some(_) => continue,
                }
            }
            let config = russh_sftp::client::Config {
                request_timeout_secs: SFTP_TIMEOUT.as_secs(),
                ..Default::default()
            };
            SftpSession::new_with_config(channel.into_stream(), config)
                .await
                .map_err(|e| SshError::SftpUnavailable {
                    detail: sftp_reason(&e),
                })
        };
        match timeout(SFTP_TIMEOUT, opening).await {
            Ok(Ok(session)) => Ok(Sftp {
                session,
                timeout: SFTP_TIMEOUT,
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(SshError::SftpUnavailable {
                detail: format!("no answer within {}", seconds(SFTP_TIMEOUT)),
            }),
        }
    }

    /// Say goodbye politely (bounded in time); the connection is gone either way afterwards.
    pub async fn close(self) {
        let _ = timeout(
            CLOSE_TIMEOUT,
            self.handle
                .disconnect(Disconnect::ByApplication, "kiln is done", "en"),
        )
        .await;
    }
}

/// Read a command's channel until it closes: request replies, output, exit status.
async fn read_replies(
    read: &mut russh::ChannelReadHalf,
    env: &[(String, String)],
    command: &str,
    started: oneshot::Sender<()>,
    on_output: &mut (dyn FnMut(OutputStream, &[u8]) + Send),
) -> Result<ExecOutput, SshError> {
    let mut output = ExecOutput::default();
    let mut replies = 0;
    let mut started = Some(started);
    let mut closed = false;
    while let Some(message) = read.wait().await {
        match message {
            ChannelMsg::Success | ChannelMsg::Failure => {
                let refused = matches!(message, ChannelMsg::Failure);
                if let Some((name, _)) = env.get(replies) {
                    if refused {
                        output.env_refused.push(name.clone());
                    }
                } else if replies == env.len() {
                    if refused {
                        return Err(SshError::ExecRefused {
                            command: command.to_string(),
                        });
                    }
                    if let Some(started) = started.take() {
                        let _ = started.send(());
                    }
                }
                replies += 1;
            }
            ChannelMsg::Data { data } => on_output(OutputStream::Stdout, &data),
            // Extended data type 1 is stderr (RFC 4254 §5.2); there is no other in use.
            ChannelMsg::ExtendedData { data, ext: 1 } => on_output(OutputStream::Stderr, &data),
            ChannelMsg::ExitStatus { exit_status } => output.exit_status = Some(exit_status),
            ChannelMsg::ExitSignal { signal_name, .. } => {
                output.exit_signal = Some(signal_text(&signal_name));
            }
            ChannelMsg::Close => {
                closed = true;
                break;
            }
            _ => {}
        }
    }
    if !closed && output.exit_status.is_none() && output.exit_signal.is_none() {
        return Err(SshError::ConnectionLost {
            during: format!("while running `{command}`"),
            detail: "the channel ended without an exit status".into(),
        });
    }
    Ok(output)
}

fn signal_text(signal: &Sig) -> String {
    match signal {
        Sig::Custom(name) => name.clone(),
        other => format!("{other:?}"),
    }
}

fn channel_error(e: russh::Error, command: &str) -> SshError {
    match e {
        russh::Error::ChannelOpenFailure(reason) => SshError::ChannelRefused(format!("{reason:?}")),
        other => lost(other, command),
    }
}

fn lost(e: russh::Error, command: &str) -> SshError {
    SshError::ConnectionLost {
        during: format!("while running `{command}`"),
        detail: e.to_string(),
    }
}

/// A command as error messages show it: one line, at most 80 characters.
fn short_command(command: &str) -> String {
    let line = command.lines().next().unwrap_or("");
    let mut shown: String = line.chars().take(80).collect();
    if shown.len() < command.len() {
        shown.push('…');
    }
    shown
}

/// "3 s", "0.5 s", "300 s".
fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 10.0 || s.fract() == 0.0 {
        format!("{s:.0} s")
    } else {
        format!("{s:.1} s")
    }
}

fn list(methods: &[String]) -> String {
    if methods.is_empty() {
        "no methods".into()
    } else {
        methods.join(",")
    }
}

fn sftp_reason(e: &russh_sftp::client::error::Error) -> String {
    use russh_sftp::client::error::Error;
    match e {
        Error::Status(status) if status.error_message.is_empty() => status.status_code.to_string(),
        Error::Status(status) => format!("{} ({})", status.status_code, status.error_message),
        // russh-sftp reports a closed channel as an I/O or "unexpected" error; say it plainly.
        Error::IO(detail) | Error::UnexpectedBehavior(detail)
            if detail.contains("EOF") || detail.contains("eof") || detail.contains("closed") =>
        {
            format!("EOF: {detail}")
        }
        other => other.to_string(),
    }
}

/// A command kiln talks to in turns: write to its stdin, read its output until what is wanted
/// arrived, write again. Configure keeps one root shell this way across its question, so sudo
/// checks the password once.
pub struct Conversation {
    channel: russh::Channel<client::Msg>,
    command: String,
    /// Output not yet taken by a [`Conversation::listen`] condition.
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    exit_status: Option<u32>,
    exit_signal: Option<String>,
    closed: bool,
}

/// What [`Conversation::listen`] heard.
#[derive(Debug)]
pub enum Heard<T> {
    /// The condition was met.
    Said(T),
    /// The command ended first; its last output is in the [`ExecOutput`].
    Ended(ExecOutput),
}

impl Conversation {
    /// Write `bytes` to the command's stdin.
    pub async fn say(&mut self, bytes: &[u8]) -> Result<(), SshError> {
        self.channel
            .data(bytes)
            .await
            .map_err(|e| lost(e, &self.command))
    }

    /// Read output until `until` (given all output not yet taken, to drain what it used)
    /// returns a value, or the command ends; an error after `limit`.
    pub async fn listen<T>(
        &mut self,
        limit: Duration,
        mut until: impl FnMut(&mut Vec<u8>, &mut Vec<u8>) -> Option<T>,
    ) -> Result<Heard<T>, SshError> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(value) = until(&mut self.stdout, &mut self.stderr) {
                return Ok(Heard::Said(value));
            }
            // Only a closed channel ends it: output may still follow the exit status.
            if self.closed {
                return Ok(Heard::Ended(ExecOutput {
                    exit_status: self.exit_status,
                    exit_signal: self.exit_signal.clone(),
                    stdout: std::mem::take(&mut self.stdout),
                    stderr: std::mem::take(&mut self.stderr),
                    env_refused: Vec::new(),
                }));
            }
            let Ok(message) = tokio::time::timeout_at(deadline, self.channel.wait()).await else {
                return Err(SshError::ExecTimeout {
                    command: self.command.clone(),
                    waited: limit,
                });
            };
            match message {
                Some(ChannelMsg::Data { data }) => self.stdout.extend_from_slice(&data),
                // Extended data type 1 is stderr (RFC 4254 §5.2).
                Some(ChannelMsg::ExtendedData { data, ext: 1 }) => {
                    self.stderr.extend_from_slice(&data)
                }
                Some(ChannelMsg::ExitStatus { exit_status }) => {
                    self.exit_status = Some(exit_status)
                }
                Some(ChannelMsg::ExitSignal { signal_name, .. }) => {
                    self.exit_signal = Some(signal_text(&signal_name))
                }
                Some(ChannelMsg::Close) | None => self.closed = true,
                Some(_) => {}
            }
        }
    }

    /// Close the command's stdin and wait (within `limit`) for it to end.
    pub async fn end(mut self, limit: Duration) -> Option<ExecOutput> {
        let _ = self.channel.eof().await;
        match self.listen(limit, |_, _| None::<()>).await {
            Ok(Heard::Ended(output)) => Some(output),
            _ => {
                let _ = self.channel.close().await;
                None
            }
        }
    }
}

/// An open SFTP session on a guest; every operation has a timeout.
pub struct Sftp {
    session: SftpSession,
    timeout: Duration,
}

impl fmt::Debug for Sftp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sftp")
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Sftp {
    /// How long each later operation may take (default 60 s); big transfers need more.
    pub fn set_timeout(&mut self, limit: Duration) {
        self.timeout = limit;
        self.session.set_timeout(limit.as_secs().max(1));
    }

    async fn bounded<T>(
        &self,
        op: &'static str,
        path: &str,
        work: impl Future<Output = Result<T, String>>,
    ) -> Result<T, SshError> {
        match timeout(self.timeout, work).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(detail)) => Err(SshError::Sftp {
                op,
                path: path.to_string(),
                detail,
            }),
            Err(_) => Err(SshError::SftpTimeout {
                op,
                path: path.to_string(),
                waited: self.timeout,
            }),
        }
    }

    /// Create or truncate `path` and write `bytes` to it.
    pub async fn write(&self, path: &str, bytes: &[u8]) -> Result<(), SshError> {
        self.bounded("write", path, async {
            let mut file = self
                .session
                .create(path)
                .await
                .map_err(|e| sftp_reason(&e))?;
            file.write_all(bytes).await.map_err(|e| e.to_string())?;
            // Shutdown waits for every pending write to be acknowledged.
            file.shutdown().await.map_err(|e| e.to_string())
        })
        .await
    }

    /// Set `path`'s permission bits, e.g. 0o755 for a script.
    pub async fn chmod(&self, path: &str, mode: u32) -> Result<(), SshError> {
        self.bounded("chmod", path, async {
            let attributes = FileAttributes {
                permissions: Some(mode),
                ..FileAttributes::empty()
            };
            self.session
                .set_metadata(path, attributes)
                .await
                .map_err(|e| sftp_reason(&e))
        })
        .await
    }

    /// The whole content of `path`.
    pub async fn read(&self, path: &str) -> Result<Vec<u8>, SshError> {
        self.bounded("read", path, async {
            self.session.read(path).await.map_err(|e| sftp_reason(&e))
        })
        .await
    }

    /// Names in `dir` (without "." and ".."), sorted.
    pub async fn list(&self, dir: &str) -> Result<Vec<String>, SshError> {
        self.bounded("list", dir, async {
            let entries = self
                .session
                .read_dir(dir)
                .await
                .map_err(|e| sftp_reason(&e))?;
            let mut names: Vec<String> = entries.map(|entry| entry.file_name()).collect();
            names.sort();
            Ok(names)
        })
        .await
    }

    /// Delete the file `path`.
    pub async fn remove(&self, path: &str) -> Result<(), SshError> {
        self.bounded("remove", path, async {
            self.session
                .remove_file(path)
                .await
                .map_err(|e| sftp_reason(&e))
        })
        .await
    }

    /// The login's home directory (where the CI driver puts its script): `.` made absolute.
    pub async fn home(&self) -> Result<String, SshError> {
        self.bounded("canonicalize", ".", async {
            self.session
                .canonicalize(".")
                .await
                .map_err(|e| sftp_reason(&e))
        })
        .await
    }

    /// End the SFTP session (the SSH session stays open).
    pub async fn close(self) {
        let _ = timeout(CLOSE_TIMEOUT, self.session.close()).await;
    }
}

/// Passes a stream through unchanged while noting the first line the server sends that starts
/// with "SSH-": russh reads the server's identification but does not expose it.
struct BannerSniffer<S> {
    inner: S,
    line: Vec<u8>,
    lines_seen: usize,
    found: Option<oneshot::Sender<String>>,
}

impl<S> BannerSniffer<S> {
    fn new(inner: S) -> (BannerSniffer<S>, oneshot::Receiver<String>) {
        let (tx, rx) = oneshot::channel();
        let sniffer = BannerSniffer {
            inner,
            line: Vec::with_capacity(64),
            lines_seen: 0,
            found: Some(tx),
        };
        (sniffer, rx)
    }

    fn sniff(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            if self.found.is_none() {
                return;
            }
            if byte != b'\n' {
                if self.line.len() < MAX_BANNER_LINE {
                    self.line.push(byte);
                }
                continue;
            }
            let mut line = std::mem::take(&mut self.line);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if line.starts_with(b"SSH-") {
                if let Some(found) = self.found.take() {
                    let _ = found.send(String::from_utf8_lossy(&line).into_owned());
                }
                return;
            }
            // RFC 4253 §4.2 lets a server send other lines first; past a few, give up.
            self.lines_seen += 1;
            if self.lines_seen >= MAX_PRE_BANNER_LINES {
                self.found = None;
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for BannerSniffer<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        if this.found.is_some() {
            this.sniff(&buf.filled()[before..]);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for BannerSniffer<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, duplex};

    #[tokio::test]
    async fn sniffer_reports_the_banner_and_passes_every_byte_through() {
        let (client, mut server) = duplex(1024);
        let (mut sniffer, banner) = BannerSniffer::new(client);
        let sent = b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n\x00\x00\x01\x2cbinary";
        server.write_all(sent).await.unwrap();
        drop(server);
        let mut received = Vec::new();
        sniffer.read_to_end(&mut received).await.unwrap();
        assert_eq!(received, sent);
        assert_eq!(
            banner.await.unwrap(),
            "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3"
        );
    }

    #[tokio::test]
    async fn sniffer_joins_a_banner_split_across_reads_and_skips_pre_banner_lines() {
        let (client, mut server) = duplex(1024);
        let (mut sniffer, mut banner) = BannerSniffer::new(client);
        let mut buf = [0u8; 64];
        server
            .write_all(b"hello there\r\nSSH-2.0-Op")
            .await
            .unwrap();
        let n = sniffer.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"hello there\r\nSSH-2.0-Op");
        assert!(banner.try_recv().is_err(), "no banner before its newline");
        server.write_all(b"enSSH_9.2\nrest").await.unwrap();
        let n = sniffer.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"enSSH_9.2\nrest");
        assert_eq!(banner.await.unwrap(), "SSH-2.0-OpenSSH_9.2");
    }

    #[tokio::test]
    async fn sniffer_writes_go_to_the_inner_stream() {
        let (client, mut server) = duplex(1024);
        let (mut sniffer, _banner) = BannerSniffer::new(client);
        sniffer.write_all(b"SSH-2.0-kiln\r\n").await.unwrap();
        let mut buf = [0u8; 32];
        let n = server.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"SSH-2.0-kiln\r\n");
    }

    #[tokio::test]
    async fn sniffer_drops_the_sender_when_the_stream_ends_without_a_banner() {
        let (client, mut server) = duplex(1024);
        let (mut sniffer, banner) = BannerSniffer::new(client);
        server.write_all(b"not ssh\n").await.unwrap();
        drop(server);
        let mut received = Vec::new();
        sniffer.read_to_end(&mut received).await.unwrap();
        drop(sniffer);
        assert!(banner.await.is_err());
    }

    #[test]
    fn sniffer_gives_up_after_many_pre_banner_lines() {
        let (client, _server) = tokio::io::duplex(16);
        let (mut sniffer, mut banner) = BannerSniffer::new(client);
        sniffer.sniff("noise\n".repeat(MAX_PRE_BANNER_LINES).as_bytes());
        sniffer.sniff(b"SSH-2.0-late\n");
        assert!(banner.try_recv().is_err());
    }

    /// A port like QEMU's user network during boot: it accepts every connection, but only
    /// the ones opened after `talks_after` ever hear from the server.
    async fn port_that_wakes_up(talks_after: Duration) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let opened = Instant::now();
        tokio::spawn(async move {
            let mut held = Vec::new();
            for n in 0u32.. {
                let (mut stream, _) = listener.accept().await.unwrap();
                if opened.elapsed() >= talks_after {
                    let _ = stream
                        .write_all(format!("SSH-2.0-conn{n}\r\n").as_bytes())
                        .await;
                }
                held.push(stream);
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_connection_that_stays_silent_is_given_up_for_a_fresh_one() {
        let addr = port_that_wakes_up(Duration::from_millis(300)).await;
        let mut stages = Vec::new();
        // Less than one banner timeout: waiting on the first, silent connection cannot succeed.
        let give_up = Instant::now() + EARLY_SILENCE + BANNER_TIMEOUT / 2;
        assert!(give_up < Instant::now() + BANNER_TIMEOUT);
        let mut stream = first_to_talk(addr, give_up, &mut no_nudges(), &mut |s| stages.push(s))
            .await
            .expect("a later connection talks");
        let mut banner = [0u8; 32];
        let n = stream.read(&mut banner).await.unwrap();
        let banner = String::from_utf8_lossy(&banner[..n]);
        assert!(banner.starts_with("SSH-2.0-conn"), "{banner}");
        assert_ne!(
            banner.trim(),
            "SSH-2.0-conn0",
            "the first connection never talks"
        );
        assert_eq!(
            stages,
            [Stage::TcpConnected, Stage::NoAnswer(Silence::Silent)]
        );
    }

    /// Nudges that never come: the sender is gone at once, as after the machine ended.
    fn no_nudges() -> watch::Receiver<()> {
        watch::channel(()).1
    }

    #[tokio::test]
    async fn a_nudge_opens_a_fresh_connection_beside_a_silent_one_but_an_older_nudge_does_not() {
        let addr = port_that_wakes_up(Duration::from_millis(250)).await;
        let (nudge, mut nudges) = watch::channel(());
        // Sent before any connection opened: it says nothing about the first one.
        nudge.send_replace(());
        tokio::spawn(async move {
            sleep(Duration::from_millis(500)).await;
            nudge.send_replace(());
            sleep(Duration::from_secs(3600)).await;
        });
        // Without the nudge at 500 ms the first, silent connection would wait past this.
        let give_up = Instant::now() + EARLY_SILENCE / 2;
        let mut stream = first_to_talk(addr, give_up, &mut nudges, &mut |_| {})
            .await
            .expect("the connection opened after the nudge talks");
        let mut banner = [0u8; 32];
        let n = stream.read(&mut banner).await.unwrap();
        assert_eq!(
            String::from_utf8_lossy(&banner[..n]).trim(),
            "SSH-2.0-conn1"
        );
    }

    #[test]
    fn console_lines_about_sshd_or_the_network_are_worth_a_dial() {
        for line in [
            "[  OK  ] Started \x1b[0;1;39mssh.service\x1b[0m - OpenBSD Secure Shell server.",
            "         Starting sshd.service - OpenSSH server daemon...",
            " * Starting sshd ... [ ok ]",
            "[  OK  ] Reached target network.target - Network.",
        ] {
            assert!(console_line_may_mean_ssh(line), "{line}");
        }
        for line in [
            "[    1.2] virtio_blk virtio1: [vda] 8388608 512-byte logical blocks",
            "kiln-fixture login: ",
        ] {
            assert!(!console_line_may_mean_ssh(line), "{line}");
        }
    }

    #[tokio::test]
    async fn a_port_that_closes_at_once_is_told_apart_from_a_silent_one() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                drop(listener.accept().await.unwrap());
            }
        });
        let mut stages = Vec::new();
        let give_up = Instant::now() + Duration::from_millis(500);
        let Err((reached, detail)) =
            first_to_talk(addr, give_up, &mut no_nudges(), &mut |s| stages.push(s)).await
        else {
            panic!("nothing talks");
        };
        assert!(matches!(reached, Reached::Tcp), "{reached:?}");
        assert_eq!(detail, "the connection was closed without a word");
        // Told once each, not once per connection.
        assert_eq!(
            stages,
            [Stage::TcpConnected, Stage::NoAnswer(Silence::Closed)]
        );

        let silent = port_that_wakes_up(Duration::from_secs(3600)).await;
        let mut stages = Vec::new();
        let give_up = Instant::now() + Duration::from_millis(300);
        let outcome =
            first_to_talk(silent, give_up, &mut no_nudges(), &mut |s| stages.push(s)).await;
        assert!(outcome.is_err());
        // Nothing finished before the deadline: the port accepted, but no dial can say more.
        assert!(
            !stages.contains(&Stage::NoAnswer(Silence::Closed)),
            "{stages:?}"
        );
    }

    #[test]
    fn backoff_starts_short_doubles_and_caps_at_200_ms() {
        let schedule: Vec<u128> = (1..=5).map(|n| backoff(n).as_millis()).collect();
        assert_eq!(schedule, [50, 100, 200, 200, 200]);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn errors_name_the_stage_and_what_to_check() {
        let waited = Duration::from_secs(60);
        let nothing = SshError::NothingAnswers {
            addr: "127.0.0.1:2222".into(),
            waited,
            last: "connection refused".into(),
        };
        assert_eq!(
            nothing.to_string(),
            "nothing answers on 127.0.0.1:2222 after 60 s (connection refused) — is the guest booted and sshd enabled?"
        );
        let silent = SshError::NoBanner {
            port: 2222,
            waited,
            last: "it stayed silent".into(),
        };
        assert_eq!(
            silent.to_string(),
            "port 2222 is open but no SSH banner came within 60 s (it stayed silent) — is sshd installed and running?"
        );
        let rejected = SshError::PasswordRejected {
            user: "builder".into(),
            methods: vec!["publickey".into(), "password".into()],
        };
        assert_eq!(
            rejected.to_string(),
            "password rejected for builder; server offers publickey,password"
        );
        let root = SshError::EmptyPasswordRejected {
            user: "root".into(),
            methods: vec!["publickey".into(), "password".into()],
        }
        .to_string();
        assert!(
            root.starts_with("empty password rejected for root; server offers publickey,password")
        );
        assert!(
            root.contains("PermitEmptyPasswords yes, PermitRootLogin yes"),
            "{root}"
        );
        let encrypted = SshError::KeyEncrypted {
            path: "/x/id_ed25519".into(),
        };
        assert_eq!(
            encrypted.to_string(),
            "key /x/id_ed25519 is encrypted; give its passphrase"
        );
        let sftp = SshError::SftpUnavailable {
            detail: "EOF".into(),
        };
        assert_eq!(
            sftp.to_string(),
            "SFTP subsystem unavailable (EOF) — make sure Subsystem in sshd_config on the image is configured correctly"
        );
    }

    #[test]
    fn seconds_are_short_and_readable() {
        assert_eq!(seconds(Duration::from_secs(3)), "3 s");
        assert_eq!(seconds(Duration::from_millis(500)), "0.5 s");
        assert_eq!(seconds(Duration::from_millis(300_400)), "300 s");
    }

    #[test]
    fn auth_debug_never_shows_secrets() {
        let password = format!("{:?}", Auth::Password("builder-pass".into()));
        assert!(!password.contains("builder-pass"), "{password}");
        let key = format!(
            "{:?}",
            Auth::Key {
                path: "/k".into(),
                passphrase: Some("secretphrase".into()),
            }
        );
        assert!(!key.contains("secretphrase") && key.contains("/k"), "{key}");
    }

    #[test]
    fn long_commands_are_shortened_in_messages() {
        assert_eq!(short_command("id -un"), "id -un");
        let long = "x".repeat(100);
        assert_eq!(short_command(&long).chars().count(), 81);
        assert_eq!(short_command("a\nb"), "a…");
    }

    #[test]
    fn booting_notice_is_recognised() {
        let notice = "System is booting up. Unprivileged users are not permitted to log in yet. \
                      Please come back later. For technical details, see pam_nologin(8).\n";
        assert!(is_booting_notice(notice));
        assert!(!is_booting_notice("Your account has expired"));
    }

    #[tokio::test]
    async fn a_missing_key_file_fails_at_once_without_connecting() {
        let target = SshTarget {
            host: "127.0.0.1".into(),
            port: 9, // never dialled: the key is read first
            user: "builder".into(),
            auth: Auth::Key {
                path: "/nonexistent/kiln/id_ed25519".into(),
                passphrase: None,
            },
        };
        let started = std::time::Instant::now();
        let error = connect(&target, Duration::from_secs(30), |_| {})
            .await
            .unwrap_err();
        assert!(matches!(error, SshError::KeyUnreadable { .. }), "{error}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn connect_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        let target = SshTarget {
            host: "127.0.0.1".into(),
            port: 1,
            user: "u".into(),
            auth: Auth::Password(String::new()),
        };
        let future = connect(&target, Duration::from_secs(1), |_| {});
        assert_send(&future);
    }
}
