//! SSH client for a test guest: connect with retry while it boots, log in the way the CI driver
//! does (password, possibly empty) or with a key, run commands (env, stdin, streamed output) and
//! move files over SFTP (docs/driver-contract.md §2).
//!
//! Host keys are never checked: the CI driver does not check them either, and every guest kiln
//! talks to is a throwaway VM booted from a snapshot on loopback.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use russh::Disconnect;
use russh::client::Handle;
use tokio::time::timeout;

mod connect;
mod exec;
mod sftp;

pub use connect::{connect, connect_nudged, console_line_may_mean_ssh};
pub use exec::{Conversation, Heard};
pub use sftp::Sftp;

use connect::Client;

const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

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

fn channel_error(e: russh::Error, command: &str) -> SshError {
    match e {
        russh::Error::ChannelOpenFailure(reason) => {
            SshError::ChannelRefused(channel_refusal(&reason))
        }
        other => lost(other, command),
    }
}

/// Why the server would not open a channel, in the protocol's words (RFC 4254 5.1).
fn channel_refusal(reason: &russh::ChannelOpenFailure) -> String {
    match reason {
        russh::ChannelOpenFailure::AdministrativelyProhibited => {
            "administratively prohibited (a limit such as MaxSessions, or a policy)".into()
        }
        russh::ChannelOpenFailure::ConnectFailed => "connect failed".into(),
        russh::ChannelOpenFailure::UnknownChannelType => "unknown channel type".into(),
        russh::ChannelOpenFailure::ResourceShortage => "resource shortage".into(),
        russh::ChannelOpenFailure::Other { code, reason } => format!("code {code}: {reason}"),
    }
}

fn lost(e: russh::Error, command: &str) -> SshError {
    SshError::ConnectionLost {
        during: format!("while running `{command}`"),
        detail: e.to_string(),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
