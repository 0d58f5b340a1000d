//! kiln's SSH client against a real OpenSSH in a real (booting) Debian guest under TCG, and
//! against local sockets that misbehave the way a booting guest's forwarded port does.

mod support;

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kiln::engine::guest::ssh::{
    Auth, OutputStream, Session, Silence, SshError, SshTarget, Stage, connect,
};
use kiln::engine::steps::configure::{ConfigureError, RootShell};
use support::fixtures::fixtures;
use support::guest::{boot, free_port, qemu_running_with};

const BOOT_DEADLINE: Duration = Duration::from_secs(300);
const COMMAND: Duration = Duration::from_secs(60);

fn target(port: u16, user: &str, auth: Auth) -> SshTarget {
    SshTarget {
        host: "127.0.0.1".into(),
        port,
        user: user.into(),
        auth,
    }
}

fn password(user: &str, password: &str, port: u16) -> SshTarget {
    target(port, user, Auth::Password(password.into()))
}

/// Connect, keeping every stage reported (with the time it arrived) for assertions.
async fn connect_recording(
    target: &SshTarget,
    deadline: Duration,
) -> (Result<Session, SshError>, Vec<(Duration, Stage)>) {
    let started = Instant::now();
    let stages = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&stages);
    let result = connect(target, deadline, move |stage| {
        sink.lock().unwrap().push((started.elapsed(), stage));
    })
    .await;
    let stages = stages.lock().unwrap().clone();
    (result, stages)
}

fn position(stages: &[Stage], what: &str, wanted: impl Fn(&Stage) -> bool) -> usize {
    stages
        .iter()
        .position(wanted)
        .unwrap_or_else(|| panic!("no {what} stage in {stages:#?}"))
}

fn serial_tail(path: &Path) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

async fn run(session: &Session, command: &str) -> kiln::engine::guest::ssh::ExecOutput {
    session
        .exec(command, None, &[], COMMAND)
        .await
        .unwrap_or_else(|e| panic!("{command}: {e}"))
}

/// One guest for every case: booting takes 30–60 s under TCG.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_booting_guest_is_reached_then_used_the_way_the_ci_driver_uses_it() {
    let fixtures = tokio::task::spawn_blocking(fixtures).await.unwrap();
    let user = fixtures.var("KILN_GUEST_USER").to_string();
    let user_password = fixtures.var("KILN_GUEST_PASSWORD").to_string();
    let dir = tempfile::tempdir().unwrap();
    let serial = dir.path().join("serial.log");
    let guest = boot(&fixtures.disk, &serial);
    let port = guest.ssh_port;
    let t0 = Instant::now();

    // --- connect while the guest is still booting: kiln itself has to wait for sshd.
    let (session, timed_stages) =
        connect_recording(&password(&user, &user_password, port), BOOT_DEADLINE).await;
    let session = session.unwrap_or_else(|e| {
        panic!(
            "connect failed: {e}\nstages: {timed_stages:#?}\nserial:\n{}",
            serial_tail(&serial)
        )
    });
    let stages: Vec<Stage> = timed_stages.iter().map(|(_, s)| s.clone()).collect();
    let attempts = stages
        .iter()
        .filter(|s| matches!(s, Stage::Connecting { .. }))
        .count();
    eprintln!(
        "connected after {:.1?} in {attempts} attempts; last stages: {:?}",
        t0.elapsed(),
        &timed_stages[timed_stages.len().saturating_sub(6)..]
    );
    assert_eq!(stages[0], Stage::Connecting { attempt: 1 });
    let tcp = position(&stages, "TcpConnected", |s| *s == Stage::TcpConnected);
    let banner = position(&stages, "Banner", |s| matches!(s, Stage::Banner(_)));
    let methods = position(&stages, "Methods", |s| matches!(s, Stage::Methods(_)));
    let authenticated = position(&stages, "Authenticated", |s| *s == Stage::Authenticated);
    assert!(
        tcp < banner && banner < methods && methods < authenticated,
        "{stages:#?}"
    );
    assert_eq!(authenticated, stages.len() - 1, "{stages:#?}");
    let Stage::Banner(banner_line) = &stages[banner] else {
        unreachable!()
    };
    assert!(banner_line.starts_with("SSH-2.0-OpenSSH"), "{banner_line}");
    assert_eq!(session.banner(), banner_line);
    let Stage::Methods(offered) = &stages[methods] else {
        unreachable!()
    };
    assert!(offered.iter().any(|m| m == "password"), "{offered:?}");

    // --- exec: output, exit status, stdin.
    let t = Instant::now();
    let whoami = run(&session, "id -un").await;
    assert_eq!(whoami.stdout_text(), user);
    assert_eq!(whoami.exit_status, Some(0));
    let failing = run(&session, "sh -c 'exit 3'").await;
    assert_eq!(failing.exit_status, Some(3));
    let sudo = session
        .exec(
            "sudo -S -p '' id -u",
            Some(format!("{user_password}\n").as_bytes()),
            &[],
            COMMAND,
        )
        .await
        .unwrap();
    assert_eq!(sudo.stdout_text(), "0", "stderr: {}", sudo.stderr_text());
    eprintln!("exec cases: {:.1?}", t.elapsed());

    // --- configure's root shell: sudo once, then scripts in turns, each in its own subshell.
    let t = Instant::now();
    match RootShell::open(&session, &user, Some("not-the-password")).await {
        Err(ConfigureError::Sudo { stderr, .. }) => {
            assert!(stderr.contains("incorrect password"), "{stderr}");
            assert!(!stderr.contains("not-the-password"), "{stderr}");
        }
        Err(other) => panic!("a wrong sudo password gave {other}"),
        Ok(_) => panic!("a wrong sudo password opened a root shell"),
    }
    let refused = t.elapsed();
    let mut shell = RootShell::open(&session, &user, Some(&user_password))
        .await
        .unwrap();
    assert_eq!(shell.run("id -u", "id").await.unwrap(), "0\n");
    // Nothing a script runs reads the scripts that follow; variables stay in their script.
    assert_eq!(shell.run("KEPT=1; cat", "cat").await.unwrap(), "");
    assert_eq!(
        shell.run("echo ${KEPT:-gone}", "echo").await.unwrap(),
        "gone\n"
    );
    match shell
        .run(
            "step() { echo \"kiln-step: $1\" >&2; }; step one; step two; echo why >&2; exit 1",
            "steps",
        )
        .await
    {
        Err(ConfigureError::Guest { command, stderr }) => {
            assert_eq!(command, "steps: two");
            assert_eq!(stderr, "why");
        }
        other => panic!("a failing script gave {other:?}"),
    }
    assert!(matches!(
        shell.run("echo no >&2; exit 3", "check").await,
        Err(ConfigureError::InvalidConfig(words)) if words == "no"
    ));
    // Output without a final newline, and a script after a failed one, are whole.
    assert_eq!(shell.run("printf 'a\\nb'", "printf").await.unwrap(), "a\nb");
    // Two users sudo refuses: one it does not know, one it would admit only from a terminal.
    shell
        .run(
            "useradd -M outsider && echo outsider:outsider-pass | chpasswd && \
             useradd -M -G sudo ttyonly && echo ttyonly:ttyonly-pass | chpasswd && \
             echo 'Defaults:ttyonly requiretty' > /etc/sudoers.d/kiln-test-requiretty",
            "users sudo refuses",
        )
        .await
        .unwrap();
    shell.close().await;
    // sudo ends at once, before any script reached it.
    match root_shell_refusal(port, "outsider").await {
        ConfigureError::Sudo { user, stderr } => {
            assert_eq!(user, "outsider");
            assert!(stderr.contains("not in the sudoers"), "{stderr}");
        }
        other => panic!("sudo for a user outside sudoers gave {other}"),
    }
    // Refused with words that say so, not with a question about the password.
    match root_shell_refusal(port, "ttyonly").await {
        error @ ConfigureError::Sudo { .. } => {
            let said = error.to_string();
            assert!(said.contains("requiretty"), "{said}");
            assert!(!said.contains("ttyonly-pass"), "{said}");
        }
        other => panic!("sudo with requiretty gave {other}"),
    }
    eprintln!(
        "root shell: wrong password refused after {refused:.1?}, all cases {:.1?}",
        t.elapsed()
    );

    // --- megabytes each way: stdin and output flow control over the channel window.
    let t = Instant::now();
    let big: Vec<u8> = (0..2 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let counted = session
        .exec("wc -c", Some(&big), &[], COMMAND)
        .await
        .unwrap();
    assert_eq!(counted.stdout_text().trim(), big.len().to_string());
    let flood = run(
        &session,
        "head -c 3000000 /dev/zero | tr '\\0' x; echo done >&2",
    )
    .await;
    assert_eq!(flood.stdout.len(), 3_000_000);
    assert!(flood.stdout.iter().all(|&b| b == b'x'));
    assert_eq!(flood.stderr_text(), "done");
    eprintln!("bulk exec: {:.1?}", t.elapsed());

    // --- env: stock sshd_config has `AcceptEnv LANG LC_*`, so KILN_PROBE is refused.
    let env = [
        ("LANG".to_string(), "C.UTF-8".to_string()),
        ("KILN_PROBE".to_string(), "1".to_string()),
    ];
    let shown = session
        .exec(
            "printf '%s|%s' \"$LANG\" \"${KILN_PROBE-unset}\"",
            None,
            &env,
            COMMAND,
        )
        .await
        .unwrap();
    assert_eq!(shown.env_refused, ["KILN_PROBE"]);
    assert_eq!(shown.stdout_text(), "C.UTF-8|unset");

    // --- streaming: both streams arrive through the callback, in order per stream.
    let mut streamed: Vec<(OutputStream, Vec<u8>)> = Vec::new();
    let finished = session
        .exec_streaming(
            "echo out-1; echo err-1 >&2; sleep 0.2; echo out-2; exit 4",
            &[],
            COMMAND,
            |stream, bytes| streamed.push((stream, bytes.to_vec())),
        )
        .await
        .unwrap();
    assert_eq!(finished.exit_status, Some(4));
    assert!(finished.stdout.is_empty() && finished.stderr.is_empty());
    let joined = |wanted: OutputStream| {
        let bytes: Vec<u8> = streamed
            .iter()
            .filter(|(s, _)| *s == wanted)
            .flat_map(|(_, b)| b.clone())
            .collect();
        String::from_utf8(bytes).unwrap()
    };
    assert_eq!(joined(OutputStream::Stdout), "out-1\nout-2\n");
    assert_eq!(joined(OutputStream::Stderr), "err-1\n");

    // --- a command that outlives its timeout is killed; the session stays usable.
    let t = Instant::now();
    let slow = session
        .exec("sleep 60", None, &[], Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(matches!(slow, SshError::ExecTimeout { .. }), "{slow}");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert_eq!(
        run(&session, "echo still-here").await.stdout_text(),
        "still-here"
    );

    // --- sftp: the driver's script dance.
    let t = Instant::now();
    let sftp = session.sftp().await.unwrap();
    let home = sftp.home().await.unwrap();
    assert_eq!(home, format!("/home/{user}"));
    let script = format!("{home}/kiln-probe.sh");
    let body = b"#!/bin/sh\necho \"probe ran with $1\"\n";
    sftp.write(&script, body).await.unwrap();
    sftp.chmod(&script, 0o755).await.unwrap();
    assert!(
        sftp.list(&home)
            .await
            .unwrap()
            .contains(&"kiln-probe.sh".to_string())
    );
    assert_eq!(sftp.read(&script).await.unwrap(), body);
    assert_eq!(
        run(&session, "stat -c %a kiln-probe.sh")
            .await
            .stdout_text(),
        "755"
    );
    let ran = run(&session, "./kiln-probe.sh x").await;
    assert_eq!(ran.stdout_text(), "probe ran with x");
    sftp.remove(&script).await.unwrap();
    assert!(
        !sftp
            .list(&home)
            .await
            .unwrap()
            .contains(&"kiln-probe.sh".to_string())
    );
    let missing = sftp.read(&script).await.unwrap_err();
    assert!(missing.to_string().contains("No such file"), "{missing}");
    let blob = format!("{home}/kiln-blob");
    sftp.write(&blob, &big).await.unwrap();
    assert_eq!(sftp.read(&blob).await.unwrap(), big);
    sftp.remove(&blob).await.unwrap();
    sftp.close().await;
    eprintln!("sftp cases: {:.1?}", t.elapsed());

    // --- wrong password: rejected at once (no retrying until the deadline), methods named.
    let t = Instant::now();
    let wrong = connect(
        &password(&user, "not-the-password", port),
        BOOT_DEADLINE,
        |_| {},
    )
    .await
    .unwrap_err();
    let took = t.elapsed();
    eprintln!("wrong password rejected in {took:.1?}: {wrong}");
    assert!(
        matches!(wrong, SshError::PasswordRejected { .. }),
        "{wrong:?}"
    );
    assert!(
        wrong
            .to_string()
            .starts_with(&format!("password rejected for {user}; server offers ")),
        "{wrong}"
    );
    assert!(wrong.to_string().contains("password"), "{wrong}");
    assert!(!wrong.to_string().contains("not-the-password"));
    assert!(took < Duration::from_secs(30), "{took:?}");

    // --- root with an empty password (the CI driver's login) is refused by stock sshd_config.
    let root = connect(&password("root", "", port), BOOT_DEADLINE, |_| {})
        .await
        .unwrap_err();
    eprintln!("root: {root}");
    assert!(
        matches!(root, SshError::EmptyPasswordRejected { .. }),
        "{root:?}"
    );
    assert!(
        root.to_string().contains("PermitEmptyPasswords yes"),
        "{root}"
    );

    // --- key auth: an encrypted ed25519 key, installed over the password session.
    let t = Instant::now();
    let key = dir.path().join("id_ed25519");
    keygen(&key, &["-t", "ed25519", "-N", "secretphrase"]);
    let rsa = dir.path().join("id_rsa");
    keygen(&rsa, &["-t", "rsa", "-b", "2048", "-N", ""]);
    let mut public = std::fs::read(key.with_extension("pub")).unwrap();
    public.extend(std::fs::read(rsa.with_extension("pub")).unwrap());
    let installed = session
        .exec(
            "umask 077 && mkdir -p ~/.ssh && cat >> ~/.ssh/authorized_keys",
            Some(&public),
            &[],
            COMMAND,
        )
        .await
        .unwrap();
    assert!(installed.success(), "{}", installed.stderr_text());

    let with_key = |passphrase: Option<&str>| {
        target(
            port,
            &user,
            Auth::Key {
                path: key.clone(),
                passphrase: passphrase.map(String::from),
            },
        )
    };
    let (by_key, key_stages) =
        connect_recording(&with_key(Some("secretphrase")), BOOT_DEADLINE).await;
    let by_key = by_key.unwrap_or_else(|e| panic!("key login: {e}\n{key_stages:#?}"));
    assert_eq!(run(&by_key, "id -un").await.stdout_text(), user);
    assert!(
        key_stages
            .iter()
            .any(|(_, s)| matches!(s, Stage::Methods(m) if m.iter().any(|m| m == "publickey")))
    );
    by_key.close().await;
    // RSA signs with the hash the server asks for (rsa-sha2-512/256, not the legacy SHA-1).
    let rsa_target = target(
        port,
        &user,
        Auth::Key {
            path: rsa.clone(),
            passphrase: None,
        },
    );
    let by_rsa = connect(&rsa_target, BOOT_DEADLINE, |_| {})
        .await
        .unwrap_or_else(|e| panic!("RSA key login: {e}"));
    assert_eq!(run(&by_rsa, "id -un").await.stdout_text(), user);
    by_rsa.close().await;

    let t_fail = Instant::now();
    let no_passphrase = connect(&with_key(None), BOOT_DEADLINE, |_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(no_passphrase, SshError::KeyEncrypted { .. }),
        "{no_passphrase:?}"
    );
    assert_eq!(
        no_passphrase.to_string(),
        format!("key {} is encrypted; give its passphrase", key.display())
    );
    let wrong_passphrase = connect(&with_key(Some("not-it")), BOOT_DEADLINE, |_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(wrong_passphrase, SshError::WrongPassphrase { .. }),
        "{wrong_passphrase:?}"
    );
    assert!(!wrong_passphrase.to_string().contains("not-it"));
    assert!(t_fail.elapsed() < Duration::from_secs(30));

    // A key the guest does not know is rejected with the offered methods.
    let stranger = dir.path().join("id_stranger");
    keygen(&stranger, &["-t", "ed25519", "-N", ""]);
    let unknown = connect(
        &target(
            port,
            &user,
            Auth::Key {
                path: stranger.clone(),
                passphrase: None,
            },
        ),
        BOOT_DEADLINE,
        |_| {},
    )
    .await
    .unwrap_err();
    assert!(
        matches!(unknown, SshError::KeyRejected { .. }),
        "{unknown:?}"
    );
    assert!(
        unknown.to_string().contains("server offers publickey"),
        "{unknown}"
    );
    eprintln!("key cases: {:.1?}", t.elapsed());

    // --- /run/nologin: while systemd boots, PAM lets root in but refuses everyone else (sshd
    // sends the notice as an auth banner and hangs up). kiln waits that out; other notices fail.
    let t = Instant::now();
    let booting = "System is booting up. Unprivileged users are not permitted to log in yet. \
                   Please come back later. For technical details, see pam_nologin(8).";
    as_root(
        &session,
        &user_password,
        &format!(
            "echo \"{booting}\" > /run/nologin; (sleep 6; rm -f /run/nologin) >/dev/null 2>&1 &"
        ),
    )
    .await;
    let (waited_out, nologin_stages) = connect_recording(
        &password(&user, &user_password, port),
        Duration::from_secs(60),
    )
    .await;
    let waited_out = waited_out.unwrap_or_else(|e| panic!("{e}\n{nologin_stages:#?}"));
    let tries = nologin_stages
        .iter()
        .filter(|(_, s)| matches!(s, Stage::Connecting { .. }))
        .count();
    eprintln!(
        "logged in past /run/nologin after {:.1?}, {tries} attempts",
        t.elapsed()
    );
    assert!(tries >= 2, "{nologin_stages:#?}");
    waited_out.close().await;

    as_root(
        &session,
        &user_password,
        &format!("echo \"{booting}\" > /run/nologin"),
    )
    .await;
    let t = Instant::now();
    let still = connect(
        &password(&user, &user_password, port),
        Duration::from_secs(4),
        |_| {},
    )
    .await
    .unwrap_err();
    eprintln!("still booting after {:.1?}: {still}", t.elapsed());
    assert!(matches!(still, SshError::StillBooting { .. }), "{still:?}");

    as_root(
        &session,
        &user_password,
        "echo Down for maintenance > /run/nologin",
    )
    .await;
    let t = Instant::now();
    let refused = connect(
        &password(&user, &user_password, port),
        BOOT_DEADLINE,
        |_| {},
    )
    .await
    .unwrap_err();
    eprintln!("refused in {:.1?}: {refused}", t.elapsed());
    assert!(
        matches!(refused, SshError::LoginRefused { .. }),
        "{refused:?}"
    );
    assert!(
        refused.to_string().contains("Down for maintenance"),
        "{refused}"
    );
    assert!(t.elapsed() < Duration::from_secs(30));
    as_root(&session, &user_password, "rm -f /run/nologin").await;

    // --- an image without an sftp Subsystem: the driver's EOF failure, with its hint.
    as_root(
        &session,
        &user_password,
        "sed -i s/^Subsystem/#Subsystem/ /etc/ssh/sshd_config && systemctl reload ssh",
    )
    .await;
    let fresh = connect(
        &password(&user, &user_password, port),
        BOOT_DEADLINE,
        |_| {},
    )
    .await
    .unwrap();
    let no_sftp = fresh.sftp().await.unwrap_err();
    eprintln!("without Subsystem: {no_sftp}");
    assert!(
        matches!(no_sftp, SshError::SftpUnavailable { .. }),
        "{no_sftp:?}"
    );
    assert!(
        no_sftp
            .to_string()
            .contains("make sure Subsystem in sshd_config on the image is configured correctly")
    );
    fresh.close().await;

    session.close().await;
    eprintln!("whole guest test: {:.1?}", t0.elapsed());
    drop(guest);
    assert!(!qemu_running_with(&dir.path().display().to_string()));
}

/// Run `script` as root through sudo, the password on stdin (never in argv).
/// What refuses `user` (password `USER-pass`) configure's root shell, on a new login.
async fn root_shell_refusal(port: u16, user: &str) -> ConfigureError {
    let pass = format!("{user}-pass");
    let session = connect(
        &password(user, &pass, port),
        Duration::from_secs(60),
        |_| {},
    )
    .await
    .unwrap();
    let refusal = match RootShell::open(&session, user, Some(&pass)).await {
        Err(error) => error,
        Ok(_) => panic!("{user} got a root shell"),
    };
    session.close().await;
    refusal
}

async fn as_root(session: &Session, password: &str, script: &str) {
    assert!(
        !script.contains('\''),
        "keep the script free of single quotes"
    );
    let out = session
        .exec(
            &format!("sudo -S -p '' sh -c '{script}'"),
            Some(format!("{password}\n").as_bytes()),
            &[],
            COMMAND,
        )
        .await
        .unwrap_or_else(|e| panic!("{script}: {e}"));
    assert!(out.success(), "{script}: {}", out.stderr_text());
}

fn keygen(path: &Path, args: &[&str]) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-C", "kiln-test"])
        .args(args)
        .arg("-f")
        .arg(path)
        .output()
        .expect("ssh-keygen runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_port_that_accepts_but_never_speaks_gives_the_no_banner_error() {
    // What QEMU's user-net does while the guest's sshd is not listening yet: it accepts.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let t = Instant::now();
    let (result, stages) =
        connect_recording(&password("builder", "x", port), Duration::from_secs(3)).await;
    let took = t.elapsed();
    let error = result.unwrap_err();
    assert!(matches!(error, SshError::NoBanner { .. }), "{error:?}");
    assert!(
        error.to_string().starts_with(&format!(
            "port {port} is open but no SSH banner came within 3 s"
        )),
        "{error}"
    );
    assert!(error.to_string().contains("is sshd installed and running?"));
    assert!(
        took >= Duration::from_millis(2900) && took < Duration::from_secs(6),
        "{took:?}"
    );
    assert!(stages.iter().any(|(_, s)| *s == Stage::TcpConnected));
    assert!(!stages.iter().any(|(_, s)| matches!(s, Stage::Banner(_))));
    holder.abort();
}

#[tokio::test]
async fn a_port_that_closes_at_once_is_retried_then_reported_as_no_banner() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = accepted.clone();
    let closer = tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(socket);
        }
    });
    let (result, stages) =
        connect_recording(&password("builder", "x", port), Duration::from_secs(2)).await;
    let error = result.unwrap_err();
    assert!(matches!(error, SshError::NoBanner { .. }), "{error:?}");
    let connections = accepted.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        connections >= 3,
        "retried with a short pause: {connections} connections"
    );
    // What the port does is told once, not once per connection.
    let told: Vec<_> = stages
        .iter()
        .filter(|(_, s)| matches!(s, Stage::NoAnswer(_)))
        .collect();
    assert_eq!(told.len(), 1, "{stages:?}");
    assert!(
        matches!(told[0].1, Stage::NoAnswer(Silence::Closed)),
        "{stages:?}"
    );
    closer.abort();
}

#[tokio::test]
async fn a_port_nobody_listens_on_gives_the_nothing_answers_error() {
    let port = free_port();
    let t = Instant::now();
    let error = connect(
        &password("builder", "x", port),
        Duration::from_secs(3),
        |_| {},
    )
    .await
    .unwrap_err();
    let took = t.elapsed();
    assert!(
        matches!(error, SshError::NothingAnswers { .. }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!(
            "nothing answers on 127.0.0.1:{port} after 3 s (connection refused) — is the guest booted and sshd enabled?"
        )
    );
    assert!(
        took >= Duration::from_millis(2900) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

#[tokio::test]
async fn key_files_are_checked_before_any_connection_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens here: a key that loads goes on to a connection error.
    let port = free_port();
    let formats: [(&str, &[&str]); 4] = [
        ("ed25519", &["-t", "ed25519"]),
        ("ecdsa", &["-t", "ecdsa"]),
        ("rsa-pem", &["-t", "rsa", "-b", "2048", "-m", "PEM"]),
        ("rsa-pkcs8", &["-t", "rsa", "-b", "2048", "-m", "PKCS8"]),
    ];
    for (name, args) in formats {
        let path = dir.path().join(name);
        let mut keygen_args = vec!["-N", "pass-phrase"];
        keygen_args.extend_from_slice(args);
        keygen(&path, &keygen_args);
        let with = |passphrase: Option<&str>| {
            target(
                port,
                "builder",
                Auth::Key {
                    path: path.clone(),
                    passphrase: passphrase.map(String::from),
                },
            )
        };
        let deadline = Duration::from_millis(500);
        let none = connect(&with(None), deadline, |_| {}).await.unwrap_err();
        let bad = connect(&with(Some("bad")), deadline, |_| {})
            .await
            .unwrap_err();
        let good = connect(&with(Some("pass-phrase")), deadline, |_| {})
            .await
            .unwrap_err();
        eprintln!("{name}: {none} | {bad} | {good}");
        assert!(
            matches!(none, SshError::KeyEncrypted { .. }),
            "{name}: {none:?}"
        );
        assert!(
            matches!(bad, SshError::WrongPassphrase { .. }),
            "{name}: {bad:?}"
        );
        assert!(
            // The key loaded, so connecting went ahead (and found nobody).
            !matches!(
                good,
                SshError::KeyEncrypted { .. }
                    | SshError::WrongPassphrase { .. }
                    | SshError::KeyInvalid { .. }
                    | SshError::KeyUnreadable { .. }
            ),
            "{name}: {good:?}"
        );
    }
    let junk = dir.path().join("junk");
    std::fs::write(&junk, "not a key\n").unwrap();
    let auth = |path: &Path| Auth::Key {
        path: path.to_path_buf(),
        passphrase: None,
    };
    let deadline = Duration::from_secs(30);
    let error = connect(&target(port, "b", auth(&junk)), deadline, |_| {})
        .await
        .unwrap_err();
    assert!(matches!(error, SshError::KeyInvalid { .. }), "{error:?}");
    let missing = dir.path().join("missing");
    let error = connect(&target(port, "b", auth(&missing)), deadline, |_| {})
        .await
        .unwrap_err();
    assert!(matches!(error, SshError::KeyUnreadable { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .starts_with(&format!("cannot read key {}", missing.display()))
    );
}
