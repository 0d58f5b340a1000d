//! Waiting for a booting guest's sshd to say its first word, with few connections.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{Reached, io_reason};
use crate::engine::guest::ssh::{Silence, Stage};

/// Each TCP connect gets this long, as the CI driver's dial does.
const TCP_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long one connection waits for the server's first bytes after TCP connects. A booting
/// guest's QEMU user-net accepts TCP before sshd listens and may then stay silent.
pub(super) const BANNER_TIMEOUT: Duration = Duration::from_secs(5);
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
pub(super) async fn first_to_talk(
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::time::sleep;

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
}
