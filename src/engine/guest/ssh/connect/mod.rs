//! Connecting to a guest's sshd and logging in, retrying while the guest boots.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Instant, sleep, timeout};
use tracing::debug;

use super::{Auth, Session, SshError, SshTarget, Stage, seconds};

mod banner;
mod dial;
mod handler;
mod keys;

pub use dial::console_line_may_mean_ssh;
pub(super) use handler::Client;

use banner::BannerSniffer;
use dial::{BANNER_TIMEOUT, first_to_talk};
use handler::{ServerNotes, note_or, russh_reason};
use keys::load_key;

/// Key exchange once the banner came; generous because a guest under TCG is slow.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// One authentication request (PAM under TCG can take seconds).
const AUTH_TIMEOUT: Duration = Duration::from_secs(30);
/// Short waits between attempts, so kiln notices sshd within a fraction of a second of it
/// listening (the Djinn driver polls once a second; a failed attempt costs the guest nothing).
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_millis(200);

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

/// The pause after failed attempt number `attempt` (1-based): 50 ms doubling, capped at 200 ms.
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

    let notes = Arc::new(Mutex::new(ServerNotes::default()));
    let (mut handle, banner) = handshake(stream, config, &notes, give_up, on_stage).await?;

    let methods = match try_none(&mut handle, &target.user, &banner, &notes).await? {
        NoneAnswer::LoggedIn => {
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
        NoneAnswer::Offers(methods) => methods,
    };
    on_stage(Stage::Methods(methods.clone()));

    let outcome = authenticate(&mut handle, target, key, &methods, &notes).await?;
    if !outcome.success() {
        return Err(refusal(&handle, target, methods, outcome, &notes));
    }
    on_stage(Stage::Authenticated);
    Ok(Session {
        handle,
        banner,
        methods,
        user: target.user.clone(),
        addr: addr.to_string(),
    })
}

/// Read the banner and run the key exchange on a connection whose server has begun to talk;
/// the banner comes back with the handle ("SSH-?" when none was seen).
async fn handshake(
    stream: TcpStream,
    config: &Arc<client::Config>,
    notes: &Arc<Mutex<ServerNotes>>,
    give_up: Instant,
    on_stage: &mut (impl FnMut(Stage) + Send),
) -> Result<(Handle<Client>, String), Attempt> {
    let (stream, banner_rx) = BannerSniffer::new(stream);
    let handler = Client {
        notes: Arc::clone(notes),
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
    key_exchanged(connected, banner, notes)
}

/// The handle and banner of a finished key exchange, or whether a failed one is worth
/// another attempt.
fn key_exchanged(
    connected: Result<Handle<Client>, russh::Error>,
    banner: Option<String>,
    notes: &Mutex<ServerNotes>,
) -> Result<(Handle<Client>, String), Attempt> {
    match (connected, banner) {
        (Ok(handle), Some(banner)) => Ok((handle, banner)),
        (Ok(handle), None) => Ok((handle, String::from("SSH-?"))),
        (Err(e), None) => {
            let detail = match e {
                russh::Error::Disconnect => "the connection was closed without a word".into(),
                russh::Error::IO(e) => io_reason(&e),
                other => other.to_string(),
            };
            Err(Attempt::NotYet(Reached::Tcp, detail))
        }
        (Err(russh::Error::NoCommonAlgo { kind, ours, theirs }), Some(_)) => {
            Err(Attempt::Fatal(SshError::NoCommonAlgorithm {
                // The kind's name (Kex, Key, Cipher, Mac), lowercased.
                what: format!("{kind:?} algorithm").to_lowercase(), // words-ok
                detail: format!("ours {}, the server's {}", ours.join(","), theirs.join(",")),
            }))
        }
        (Err(e), Some(banner)) => {
            let detail = format!("key exchange failed: {}", russh_reason(&e, notes));
            Err(Attempt::NotYet(Reached::Banner(banner), detail))
        }
    }
}

/// What the server answered to the `none` method.
enum NoneAnswer {
    /// It let the user in (see [`Stage::Methods`]).
    LoggedIn,
    /// The methods it offers instead.
    Offers(Vec<String>),
}

/// Ask to log in with the `none` method, as the CI driver does first: the server either lets
/// the user in or says which methods it offers.
async fn try_none(
    handle: &mut Handle<Client>,
    user: &str,
    banner: &str,
    notes: &Mutex<ServerNotes>,
) -> Result<NoneAnswer, Attempt> {
    let not_yet = |detail: String| Attempt::NotYet(Reached::Banner(banner.to_string()), detail);
    match timeout(AUTH_TIMEOUT, handle.authenticate_none(user)).await {
        Err(_) => Err(not_yet(
            "no answer to the first authentication request".into(),
        )),
        Ok(Err(e)) => Err(not_yet(format!("connection lost before login: {e}"))),
        Ok(Ok(client::AuthResult::Success)) => Ok(NoneAnswer::LoggedIn),
        Ok(Ok(client::AuthResult::Failure {
            remaining_methods, ..
        })) => {
            if handle.is_closed() {
                return Err(not_yet(format!(
                    "connection closed before login: {}",
                    note_or(notes, "no reason given")
                )));
            }
            Ok(NoneAnswer::Offers(method_names(&remaining_methods)))
        }
    }
}

/// Log in with the password or key `target` names, if the server offers that method; the
/// server's verdict, which may be a refusal.
async fn authenticate(
    handle: &mut Handle<Client>,
    target: &SshTarget,
    key: Option<&Arc<PrivateKey>>,
    methods: &[String],
    notes: &Mutex<ServerNotes>,
) -> Result<client::AuthResult, Attempt> {
    let user = target.user.clone();
    let (method, result) = match (&target.auth, key) {
        (Auth::Password(password), _) => {
            if !methods.iter().any(|m| m == "password") {
                return Err(Attempt::Fatal(SshError::MethodNotOffered {
                    user,
                    method: "password",
                    methods: methods.to_vec(),
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
                    methods: methods.to_vec(),
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
    match result {
        Err(_) => Err(Attempt::Fatal(SshError::AuthTimeout {
            user,
            waited: AUTH_TIMEOUT,
        })),
        Ok(Err(e)) => Err(Attempt::Fatal(SshError::ConnectionLost {
            during: format!("during {method} login"),
            detail: russh_reason(&e, notes),
        })),
        Ok(Ok(outcome)) => Ok(outcome),
    }
}

/// Why the server did not accept a login: not up yet while PAM says the guest is booting,
/// else what the user has to fix.
fn refusal(
    handle: &Handle<Client>,
    target: &SshTarget,
    methods: Vec<String>,
    outcome: client::AuthResult,
    notes: &Mutex<ServerNotes>,
) -> Attempt {
    let user = target.user.clone();
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
            return Attempt::NotYet(Reached::Booting, message);
        }
        return Attempt::Fatal(SshError::LoginRefused {
            user,
            message: message.trim().to_string(),
        });
    }
    let methods = match outcome {
        client::AuthResult::Failure {
            remaining_methods, ..
        } if !remaining_methods.is_empty() => method_names(&remaining_methods),
        _ => methods,
    };
    Attempt::Fatal(match &target.auth {
        Auth::Password(p) if p.is_empty() => SshError::EmptyPasswordRejected { user, methods },
        Auth::Password(_) => SshError::PasswordRejected { user, methods },
        Auth::Key { path, .. } => SshError::KeyRejected {
            user,
            path: path.clone(),
            methods,
        },
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_starts_short_doubles_and_caps_at_200_ms() {
        let schedule: Vec<u128> = (1..=5).map(|n| backoff(n).as_millis()).collect();
        assert_eq!(schedule, [50, 100, 200, 200, 200]);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
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
