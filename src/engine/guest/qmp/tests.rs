//! A scripted QEMU on the other end of the socket, and a real one.

use super::*;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::broadcast;

/// Long enough for anything the tests do, short of a command's own timeout.
const TEST_LIMIT: Duration = Duration::from_secs(5);

/// The QEMU end of a QMP connection, scripted by each test.
struct FakeQemu {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl FakeQemu {
    /// Accept one client, greet it like QEMU 7.2 and answer its qmp_capabilities.
    async fn accept(listener: &UnixListener) -> FakeQemu {
        let (stream, _) = listener.accept().await.unwrap();
        let (read, writer) = stream.into_split();
        let mut qemu = FakeQemu {
            reader: BufReader::new(read),
            writer,
        };
        qemu.send(json!({"QMP": {
            "version": {"qemu": {"micro": 0, "minor": 2, "major": 7},
                        "package": "Debian 1:7.2+dfsg-7"},
            "capabilities": ["oob"]}}))
            .await;
        let id = qemu.expect("qmp_capabilities").await["id"].clone();
        qemu.send(json!({"return": {}, "id": id})).await;
        qemu
    }

    async fn send(&mut self, message: Value) {
        self.send_raw(&format!("{message}\r\n")).await;
    }

    async fn send_raw(&mut self, text: &str) {
        self.writer.write_all(text.as_bytes()).await.unwrap();
    }

    /// Read the next command and check it is `execute`; returns the whole command.
    async fn expect(&mut self, execute: &str) -> Value {
        let mut line = String::new();
        self.reader.read_line(&mut line).await.unwrap();
        let command: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(command["execute"], execute, "{line}");
        command
    }
}

fn socket_in(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("qmp.sock")
}

/// A fake QEMU on a socket in a fresh directory, playing `script` once a client has
/// connected and been greeted: the directory (kept while the test runs), the socket's path and
/// the task. Every test awaits the task and unwraps it: a script's failed assertion (a wrong
/// command, say) only closes the socket, which some tests expect anyway, so the panic must
/// reach the test through the task. A script that returns its `FakeQemu` keeps the connection
/// open until the test drops it; one that returns `()` hangs up when it ends.
fn fake_qemu<F, Fut, T>(script: F) -> (tempfile::TempDir, PathBuf, tokio::task::JoinHandle<T>)
where
    F: FnOnce(FakeQemu) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + Send,
    T: Send + 'static,
{
    let dir = tempfile::tempdir().unwrap();
    let path = socket_in(&dir);
    let listener = UnixListener::bind(&path).unwrap();
    let task = tokio::spawn(async move { script(FakeQemu::accept(&listener).await).await });
    (dir, path, task)
}

async fn connected(path: &Path) -> Qmp {
    Qmp::connect(path, TEST_LIMIT).await.unwrap()
}

#[tokio::test]
async fn survives_unknown_events_and_routes_known_ones() {
    let (_dir, path, qemu) = fake_qemu(|mut qemu| async move {
        let id = qemu.expect("query-status").await["id"].clone();
        qemu.send(json!({"event": "MEM_UNPLUG_ERROR",
            "data": {"device": "dimm1", "msg": "nope"},
            "timestamp": {"seconds": 1, "microseconds": 2}}))
            .await;
        qemu.send_raw("this is not JSON\n").await;
        qemu.send(json!({"event": "SOMETHING_FROM_QEMU_11", "data": {},
            "timestamp": {"seconds": 1, "microseconds": 3}}))
            .await;
        qemu.send(json!({"return": {}, "id": 9999})).await;
        qemu.send(json!({"event": "SHUTDOWN",
            "data": {"guest": true, "reason": "guest-shutdown"},
            "timestamp": {"seconds": 1, "microseconds": 4}}))
            .await;
        qemu.send(json!({"event": "STOP",
            "timestamp": {"seconds": 1, "microseconds": 5}}))
            .await;
        qemu.send(
            json!({"return": {"status": "running", "singlestep": false, "running": true},
            "id": id}),
        )
        .await;
        qemu
    });

    let qmp = connected(&path).await;
    let mut events = qmp.events();
    let status = tokio::time::timeout(TEST_LIMIT, qmp.status())
        .await
        .unwrap();
    assert_eq!(status.unwrap(), "running");
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(events.recv().await.unwrap());
    }
    assert_eq!(
        seen,
        [
            QmpEvent::Other {
                name: "MEM_UNPLUG_ERROR".into()
            },
            QmpEvent::Other {
                name: "SOMETHING_FROM_QEMU_11".into()
            },
            QmpEvent::Shutdown {
                guest: true,
                reason: "guest-shutdown".into()
            },
            QmpEvent::Stop,
        ]
    );
    assert!(!qmp.is_closed());
    drop(qemu.await.unwrap());
}

#[tokio::test]
async fn run_state_newer_than_the_schema_is_passed_through() {
    let (_dir, path, qemu) = fake_qemu(|mut qemu| async move {
        let id = qemu.expect("query-status").await["id"].clone();
        qemu.send(json!({"return": {"status": "hibernating", "running": false}, "id": id}))
            .await;
        qemu
    });
    let qmp = connected(&path).await;
    assert_eq!(qmp.status().await.unwrap(), "hibernating");
    drop(qemu.await.unwrap());
}

#[tokio::test]
async fn qemu_error_carries_its_description() {
    let (_dir, path, qemu) = fake_qemu(|mut qemu| async move {
        let command = qemu.expect("screendump").await;
        assert_eq!(
            command["arguments"],
            json!({"filename": "/nope/screen.ppm"})
        );
        qemu.send(json!({"error": {"class": "GenericError",
            "desc": "Could not open '/nope/screen.ppm': No such file or directory"},
            "id": command["id"]}))
            .await;
        qemu
    });
    let qmp = connected(&path).await;
    let error = qmp
        .screendump(Path::new("/nope/screen.ppm"))
        .await
        .unwrap_err();
    match &error {
        QmpError::Qemu {
            command,
            class,
            desc,
        } => {
            assert_eq!(*command, "screendump");
            assert_eq!(class, "GenericError");
            assert!(desc.contains("No such file or directory"), "{desc}");
        }
        other => panic!("expected QEMU's refusal, got {other:?}"),
    }
    assert!(error.to_string().contains("/nope/screen.ppm"), "{error}");
    drop(qemu.await.unwrap());
}

#[tokio::test]
async fn keys_are_sent_as_qcodes_and_unknown_names_refused() {
    let (_dir, path, qemu) = fake_qemu(|mut qemu| async move {
        let command = qemu.expect("send-key").await;
        assert_eq!(
            command["arguments"],
            json!({"keys": [{"type": "qcode", "data": "ctrl"},
                            {"type": "qcode", "data": "alt"},
                            {"type": "qcode", "data": "f2"}]})
        );
        qemu.send(json!({"return": {}, "id": command["id"]})).await;
        qemu
    });
    let qmp = connected(&path).await;
    assert!(matches!(
        qmp.send_key(&["ctrl", "Enter"]).await,
        Err(QmpError::UnknownKey { key }) if key == "Enter"
    ));
    qmp.send_key(&["ctrl", "alt", "f2"]).await.unwrap();
    drop(qemu.await.unwrap());
}

#[tokio::test]
async fn closed_connection_fails_the_waiting_command() {
    let (_dir, path, qemu) = fake_qemu(|mut qemu| async move {
        qemu.expect("query-status").await;
        // Hang up without answering, as a crashing QEMU would.
    });
    let qmp = connected(&path).await;
    let mut events = qmp.events();
    let status = tokio::time::timeout(TEST_LIMIT, qmp.status())
        .await
        .unwrap();
    assert!(matches!(status, Err(QmpError::Closed)), "{status:?}");
    assert!(qmp.is_closed());
    assert!(matches!(
        events.recv().await,
        Err(broadcast::error::RecvError::Closed)
    ));
    assert!(matches!(
        qmp.events().recv().await,
        Err(broadcast::error::RecvError::Closed)
    ));
    assert!(matches!(
        qmp.system_powerdown().await,
        Err(QmpError::Closed)
    ));
    assert!(matches!(qmp.quit().await, Err(QmpError::Closed)));
    // The hang-up was the script's, after the command it expected.
    qemu.await.unwrap();
}

#[tokio::test]
async fn quit_succeeds_when_qemu_hangs_up_without_replying() {
    let (_dir, path, qemu) = fake_qemu(|mut qemu| async move {
        qemu.expect("quit").await;
    });
    let qmp = connected(&path).await;
    tokio::time::timeout(TEST_LIMIT, qmp.quit())
        .await
        .unwrap()
        .unwrap();
    // QEMU hung up because it was told to quit, not because the script met another command.
    qemu.await.unwrap();
}

#[tokio::test]
async fn connect_waits_for_the_socket_to_appear() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_in(&dir);
    let bind_path = path.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let listener = UnixListener::bind(&bind_path).unwrap();
        let _qemu = FakeQemu::accept(&listener).await;
        std::future::pending::<()>().await;
    });
    let qmp = connected(&path).await;
    assert!(!qmp.is_closed());
}

#[tokio::test]
async fn connect_gives_up_naming_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_in(&dir);
    let error = Qmp::connect(&path, Duration::from_millis(200))
        .await
        .err()
        .unwrap();
    assert!(matches!(error, QmpError::Connect { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains(&*path.to_string_lossy()), "{message}");
}

#[tokio::test]
async fn a_socket_that_does_not_greet_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_in(&dir);
    let listener = UnixListener::bind(&path).unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        stream.write_all(b"SSH-2.0-OpenSSH_9.2\r\n").await.unwrap();
    });
    let error = Qmp::connect(&path, TEST_LIMIT).await.err().unwrap();
    assert!(matches!(error, QmpError::Handshake { .. }), "{error:?}");
}

/// Drives a real `qemu-system-x86_64` (TCG, no disk, stopped at start with -S).
#[tokio::test]
async fn real_qemu_status_screendump_keys_and_quit() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_in(&dir);
    let child = tokio::process::Command::new("qemu-system-x86_64")
        .args([
            "-accel",
            "tcg",
            "-display",
            "none",
            "-nodefaults",
            "-vga",
            "std",
        ])
        .args(["-m", "64", "-S", "-qmp"])
        .arg(format!("unix:{},server=on,wait=off", path.display()))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("qemu-system-x86_64 must be installed: apt-get install qemu-system-x86");

    let qmp = Qmp::connect(&path, Duration::from_secs(20)).await.unwrap();
    let status = qmp.status().await.unwrap();
    assert!(
        ["prelaunch", "paused"].contains(&status.as_str()),
        "{status}"
    );

    let screen = dir.path().join("screen.ppm");
    qmp.screendump(&screen).await.unwrap();
    let image = std::fs::read(&screen).unwrap();
    assert!(
        image.starts_with(b"P6"),
        "{:?}",
        &image[..image.len().min(16)]
    );

    qmp.send_key(&["ctrl", "alt", "delete"]).await.unwrap();

    let mut events = qmp.events();
    qmp.quit().await.unwrap();
    let output = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("QEMU did not exit after quit")
        .unwrap();
    assert!(
        output.status.success(),
        "{}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let mut seen = Vec::new();
    while let Ok(event) = tokio::time::timeout(TEST_LIMIT, events.recv()).await {
        match event {
            Ok(event) => seen.push(event),
            Err(_) => break,
        }
    }
    assert!(
        qmp.is_closed(),
        "the connection stayed open after QEMU exited"
    );
    assert!(
        seen.contains(&QmpEvent::Shutdown {
            guest: false,
            reason: "host-qmp-quit".into()
        }),
        "{seen:?}"
    );
}
