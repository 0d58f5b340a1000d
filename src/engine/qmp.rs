//! A QMP client for a running QEMU (`-qmp unix:PATH,server=on,wait=off`).
//!
//! Commands are built, and their replies parsed, with qapi's generated types. Framing and
//! routing are ours: qapi 0.15's stream fails on any event missing from its schema and that
//! error ends the connection, and its event half must be polled to receive command replies.
//! Here one background task reads every line, hands `return`/`error` replies to the command
//! waiting on the same `id`, and turns events into [`QmpEvent`]s, unknown names included.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use qapi::qmp;
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{broadcast, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

// The key table's lookups, beside the commands that take the QKeyCode names they give.
pub use super::keys::{key_for_char, key_for_name};

/// How long one command (and the greeting plus capabilities handshake) may wait for QEMU.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// Events kept per subscriber; a subscriber further behind than this is told it lagged.
const EVENT_CAPACITY: usize = 256;
/// Pause between connection attempts while QEMU has not created or opened its socket yet.
const CONNECT_RETRY: Duration = Duration::from_millis(50);

/// Why talking to QEMU over QMP failed.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    #[error(
        "could not connect to the QMP socket {} within {} s: {source}; is QEMU running with \
         -qmp unix:{},server=on,wait=off?",
        .path.display(), .after.as_secs_f32(), .path.display()
    )]
    Connect {
        path: PathBuf,
        after: Duration,
        source: std::io::Error,
    },
    #[error("{} does not speak QMP: {detail}; is it QEMU's -qmp socket?", .path.display())]
    Handshake { path: PathBuf, detail: String },
    #[error(
        "QEMU did not answer {command} within {} s; the VM may be hung: check its serial log \
         or stop it",
        .after.as_secs()
    )]
    TimedOut {
        command: &'static str,
        after: Duration,
    },
    #[error("QEMU refused {command}: {desc} ({class})")]
    Qemu {
        command: &'static str,
        class: String,
        desc: String,
    },
    #[error("QEMU closed the QMP connection; it has probably exited, see its stderr")]
    Closed,
    #[error("could not send {command} to QEMU: {source}")]
    Send {
        command: &'static str,
        source: std::io::Error,
    },
    #[error("QEMU's reply to {command} is not what QMP describes: {detail}")]
    Protocol {
        command: &'static str,
        detail: String,
    },
    #[error("{key:?} is not a QEMU key name (QKeyCode), such as \"ret\", \"ctrl\" or \"a\"")]
    UnknownKey { key: String },
    #[error(
        "{} is not valid UTF-8 and QMP can only pass UTF-8 file names; choose another path",
        .path.display()
    )]
    NonUtf8Path { path: PathBuf },
}

/// Something QEMU announced on its own, for the steps that wait for a guest to act.
#[derive(Debug, Clone, PartialEq)]
pub enum QmpEvent {
    /// The VM shut down; `guest` is true when the guest asked for it, `reason` is QEMU's cause.
    Shutdown { guest: bool, reason: String },
    /// An ACPI power button press was sent to the guest.
    Powerdown,
    /// The VM was reset.
    Reset,
    /// The VM stopped running (paused, or the CPU hit an error).
    Stop,
    /// The VM resumed running.
    Resume,
    /// Any other event, including ones newer than qapi's schema.
    Other { name: String },
}

impl QmpEvent {
    fn from_message(name: &str, data: Option<&Value>) -> QmpEvent {
        use qapi::Event;
        match name {
            qmp::SHUTDOWN::NAME => {
                // Our own shape rather than qmp::SHUTDOWN: its `reason` is a closed enum, and
                // QEMU adds shutdown causes over time.
                #[derive(Deserialize, Default)]
                struct Data {
                    #[serde(default)]
                    guest: bool,
                    #[serde(default)]
                    reason: String,
                }
                let data = data
                    .and_then(|data| Data::deserialize(data).ok())
                    .unwrap_or_default();
                QmpEvent::Shutdown {
                    guest: data.guest,
                    reason: data.reason,
                }
            }
            qmp::POWERDOWN::NAME => QmpEvent::Powerdown,
            qmp::RESET::NAME => QmpEvent::Reset,
            qmp::STOP::NAME => QmpEvent::Stop,
            qmp::RESUME::NAME => QmpEvent::Resume,
            other => QmpEvent::Other {
                name: other.to_string(),
            },
        }
    }
}

/// A connection to one QEMU's monitor; clones share it, and it closes when the last is dropped.
#[derive(Clone)]
pub struct Qmp {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Qmp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qmp")
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

struct Inner {
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    next_id: AtomicU64,
    router: Arc<Router>,
    reader: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Nobody can send commands any more; stop reading so the socket closes.
        self.reader.abort();
    }
}

/// Where incoming messages go; shared by the reader task and the command senders.
struct Router {
    state: Mutex<RouterState>,
}

struct RouterState {
    /// Commands sent and not yet answered, by the `id` we gave them.
    waiting: HashMap<u64, oneshot::Sender<Map<String, Value>>>,
    /// `None` once the connection has closed, which also ends every subscriber's stream.
    events: Option<broadcast::Sender<QmpEvent>>,
}

impl Router {
    fn lock(&self) -> MutexGuard<'_, RouterState> {
        // The state stays consistent even if a holder panicked: every update is one call.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn expect_reply(&self, id: u64) -> Result<oneshot::Receiver<Map<String, Value>>, QmpError> {
        let mut state = self.lock();
        if state.events.is_none() {
            return Err(QmpError::Closed);
        }
        let (tx, rx) = oneshot::channel();
        state.waiting.insert(id, tx);
        Ok(rx)
    }

    fn forget(&self, id: u64) {
        self.lock().waiting.remove(&id);
    }

    fn route(&self, line: &[u8]) {
        if line.trim_ascii().is_empty() {
            return;
        }
        tracing::trace!(line = %String::from_utf8_lossy(line).trim_end(), "QMP <-");
        let message: Map<String, Value> = match serde_json::from_slice(line) {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(%error, line = %String::from_utf8_lossy(line), "ignoring a QMP line that is not a JSON object");
                return;
            }
        };
        let mut state = self.lock();
        if let Some(name) = message.get("event").and_then(Value::as_str) {
            let event = QmpEvent::from_message(name, message.get("data"));
            if let Some(events) = &state.events {
                // No subscriber is fine: events nobody waits for are simply dropped.
                let _ = events.send(event);
            }
            return;
        }
        let id = message.get("id").and_then(Value::as_u64);
        match id.and_then(|id| state.waiting.remove(&id)) {
            // The sender may have timed out and left; then the reply has nobody to go to.
            Some(waiter) => drop(waiter.send(message)),
            None => tracing::warn!(
                ?id,
                ?message,
                "ignoring a QMP reply that no command waits for"
            ),
        }
    }

    fn close(&self) {
        let mut state = self.lock();
        // Dropping the senders wakes every waiting command and ends every event stream.
        state.waiting.clear();
        state.events = None;
    }
}

impl Qmp {
    /// Connect to QEMU's QMP socket at `path`, retrying until it accepts or `timeout` passes
    /// (QEMU creates it a moment after starting), then read the greeting and leave
    /// capabilities negotiation mode, which together may take up to 10 s more.
    pub async fn connect(path: &Path, timeout: Duration) -> Result<Qmp, QmpError> {
        let stream = connect_with_retry(path, timeout).await?;
        let (read, write) = stream.into_split();
        let mut reader = BufReader::new(read);

        let mut line = Vec::new();
        let handshake = |detail: String| QmpError::Handshake {
            path: path.to_path_buf(),
            detail,
        };
        match tokio::time::timeout(COMMAND_TIMEOUT, reader.read_until(b'\n', &mut line)).await {
            Err(_) => {
                return Err(handshake(format!(
                    "no greeting within {} s",
                    COMMAND_TIMEOUT.as_secs()
                )));
            }
            Ok(Err(error)) => return Err(handshake(format!("reading the greeting: {error}"))),
            Ok(Ok(0)) => return Err(handshake("it closed the connection at once".into())),
            Ok(Ok(_)) => {}
        }
        let greeting: qmp::QapiCapabilities = serde_json::from_slice(&line).map_err(|error| {
            handshake(format!(
                "expected a {{\"QMP\": …}} greeting ({error}), got {}",
                String::from_utf8_lossy(&line).trim_end()
            ))
        })?;
        let version = &greeting.QMP.version;
        tracing::debug!(
            path = %path.display(),
            qemu = %format!("{}.{}.{}", version.qemu.major, version.qemu.minor, version.qemu.micro),
            package = %version.package,
            "QMP greeting"
        );

        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let router = Arc::new(Router {
            state: Mutex::new(RouterState {
                waiting: HashMap::new(),
                events: Some(events),
            }),
        });
        let reader = tokio::spawn(read_messages(reader, Arc::clone(&router)));
        let qmp = Qmp {
            inner: Arc::new(Inner {
                writer: tokio::sync::Mutex::new(write),
                next_id: AtomicU64::new(0),
                router,
                reader,
            }),
        };
        qmp.execute(qmp::qmp_capabilities { enable: None }).await?;
        Ok(qmp)
    }

    /// Subscribe to QEMU's events from now on; the stream ends when the connection closes.
    pub fn events(&self) -> broadcast::Receiver<QmpEvent> {
        match &self.inner.router.lock().events {
            Some(events) => events.subscribe(),
            None => broadcast::channel(1).1,
        }
    }

    /// The VM's run state as QEMU names it: "prelaunch", "running", "paused", "shutdown",
    /// "internal-error", …
    pub async fn status(&self) -> Result<String, QmpError> {
        let command = qmp::query_status {};
        let reply = self.call(&command).await?;
        match qmp::StatusInfo::deserialize(&reply) {
            Ok(info) => Ok(qapi::Enum::name(&info.status).to_string()),
            // A state newer than qapi's schema still has a name worth showing.
            Err(error) => reply
                .get("status")
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| protocol(&command, error)),
        }
    }

    /// Have QEMU write the current screen to `file` as a PPM image.
    pub async fn screendump(&self, file: &Path) -> Result<(), QmpError> {
        self.dump_screen(file, None).await
    }

    /// The current screen as a PNG, for people to look at (the last screen of a failed
    /// install).
    pub async fn screendump_png(&self, file: &Path) -> Result<(), QmpError> {
        self.dump_screen(file, Some(qmp::ImageFormat::png)).await
    }

    async fn dump_screen(
        &self,
        file: &Path,
        format: Option<qmp::ImageFormat>,
    ) -> Result<(), QmpError> {
        let filename = file.to_str().ok_or_else(|| QmpError::NonUtf8Path {
            path: file.to_path_buf(),
        })?;
        self.execute(qmp::screendump {
            filename: filename.to_string(),
            device: None,
            head: None,
            format,
        })
        .await?;
        Ok(())
    }

    /// Press (`down`) or release one key on its own, for a modifier held across other keys
    /// (a boot command's `<leftCtrlOn>` … `<leftCtrlOff>`).
    pub async fn key_event(&self, key: &str, down: bool) -> Result<(), QmpError> {
        let key = parse_key(key)?;
        let event = qmp::InputEvent::key(qmp::InputKeyEventWrapper {
            data: qmp::InputKeyEvent { down, key },
        });
        self.execute(qmp::input_send_event {
            device: None,
            head: None,
            events: vec![event],
        })
        .await?;
        Ok(())
    }

    /// Press `keys` together as one chord (QEMU releases them in reverse order), e.g.
    /// `["ctrl", "alt", "delete"]`; names are QEMU's QKeyCode names.
    pub async fn send_key(&self, keys: &[&str]) -> Result<(), QmpError> {
        let keys = keys
            .iter()
            .map(|key| parse_key(key))
            .collect::<Result<Vec<_>, _>>()?;
        self.execute(qmp::send_key {
            keys,
            hold_time: None,
        })
        .await?;
        Ok(())
    }

    /// Where QEMU's VNC server listens, when it has one (`-vnc 127.0.0.1:0,to=99` picks
    /// the first free display, so only QEMU knows the port).
    pub async fn vnc_address(&self) -> Result<Option<SocketAddr>, QmpError> {
        let info = self.execute(qmp::query_vnc {}).await?;
        let (Some(host), Some(service)) = (info.host, info.service) else {
            return Ok(None);
        };
        Ok(format!("{host}:{service}").parse().ok())
    }

    /// Resume a machine started paused (`-S`).
    pub async fn cont(&self) -> Result<(), QmpError> {
        self.execute(qmp::cont {}).await?;
        Ok(())
    }

    /// Press the guest's ACPI power button, asking its OS to shut down cleanly.
    pub async fn system_powerdown(&self) -> Result<(), QmpError> {
        self.execute(qmp::system_powerdown {}).await?;
        Ok(())
    }

    /// Make QEMU exit at once. QEMU may hang up before or after it replies; once the command
    /// is sent, either counts as success.
    pub async fn quit(&self) -> Result<(), QmpError> {
        if self.is_closed() {
            return Err(QmpError::Closed);
        }
        match self.execute(qmp::quit {}).await {
            Ok(_) | Err(QmpError::Closed) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Whether QEMU has closed the connection (after which every command fails at once).
    pub fn is_closed(&self) -> bool {
        self.inner.router.lock().events.is_none()
    }

    /// Commands sent and not answered yet: tells a QEMU that stopped answering from an idle one.
    pub fn awaiting_replies(&self) -> usize {
        self.inner.router.lock().waiting.len()
    }

    /// Send `command` and parse its reply with the type qapi generated for it.
    async fn execute<C: qapi::Command>(&self, command: C) -> Result<C::Ok, QmpError> {
        let reply = self.call(&command).await?;
        serde_json::from_value(reply).map_err(|error| protocol(&command, error))
    }

    /// Send `command` and return its raw `return` value.
    async fn call<C: qapi::Command>(&self, command: &C) -> Result<Value, QmpError> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let mut line = serde_json::to_vec(&qapi::Execute::with_id(command, id))
            .map_err(|error| protocol(command, error))?;
        line.push(b'\n');

        let router = &self.inner.router;
        let reply = router.expect_reply(id)?;
        let exchange = async {
            let mut writer = self.inner.writer.lock().await;
            tracing::trace!(line = %String::from_utf8_lossy(&line).trim_end(), "QMP ->");
            writer
                .write_all(&line)
                .await
                .map_err(|source| match source.kind() {
                    std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset => {
                        QmpError::Closed
                    }
                    _ => QmpError::Send {
                        command: C::NAME,
                        source,
                    },
                })?;
            drop(writer);
            reply.await.map_err(|_| QmpError::Closed)
        };
        let mut message = match tokio::time::timeout(COMMAND_TIMEOUT, exchange).await {
            Ok(Ok(message)) => message,
            Ok(Err(error)) => {
                router.forget(id);
                return Err(error);
            }
            Err(_) => {
                router.forget(id);
                return Err(QmpError::TimedOut {
                    command: C::NAME,
                    after: COMMAND_TIMEOUT,
                });
            }
        };

        if let Some(error) = message.remove("error") {
            // Our own shape rather than qapi::Error: its class is a closed enum, and the
            // description is what matters to the user whatever the class.
            #[derive(Deserialize)]
            struct QemuError {
                class: String,
                desc: String,
            }
            let error = QemuError::deserialize(error).map_err(|error| protocol(command, error))?;
            return Err(QmpError::Qemu {
                command: C::NAME,
                class: error.class,
                desc: error.desc,
            });
        }
        message.remove("return").ok_or_else(|| QmpError::Protocol {
            command: C::NAME,
            detail: "neither \"return\" nor \"error\" in the reply".into(),
        })
    }
}

fn protocol<C: qapi::Command>(_: &C, error: impl std::fmt::Display) -> QmpError {
    QmpError::Protocol {
        command: C::NAME,
        detail: error.to_string(),
    }
}

async fn connect_with_retry(path: &Path, timeout: Duration) -> Result<UnixStream, QmpError> {
    let deadline = Instant::now() + timeout;
    loop {
        match UnixStream::connect(path).await {
            Ok(stream) => return Ok(stream),
            // Not there yet, or there but not listening yet: QEMU is still starting.
            Err(error) if Instant::now() + CONNECT_RETRY < deadline => {
                tracing::trace!(%error, path = %path.display(), "QMP socket not ready; retrying");
                tokio::time::sleep(CONNECT_RETRY).await;
            }
            Err(source) => {
                return Err(QmpError::Connect {
                    path: path.to_path_buf(),
                    after: timeout,
                    source,
                });
            }
        }
    }
}

async fn read_messages(mut reader: BufReader<OwnedReadHalf>, router: Arc<Router>) {
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) => break,
            Ok(_) => router.route(&line),
            Err(error) => {
                tracing::warn!(%error, "reading from QMP failed; treating the connection as closed");
                break;
            }
        }
    }
    router.close();
}

/// A QKeyCode name ("ret", "shift") as QMP takes it.
fn parse_key(key: &str) -> Result<qmp::KeyValue, QmpError> {
    key.parse::<qmp::QKeyCode>()
        .map(qmp::KeyValue::from)
        .map_err(|()| QmpError::UnknownKey {
            key: key.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tokio::net::UnixListener;

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

    async fn connected(path: &Path) -> Qmp {
        Qmp::connect(path, TEST_LIMIT).await.unwrap()
    }

    #[tokio::test]
    async fn survives_unknown_events_and_routes_known_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = socket_in(&dir);
        let listener = UnixListener::bind(&path).unwrap();
        let qemu = tokio::spawn(async move {
            let mut qemu = FakeQemu::accept(&listener).await;
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
        let dir = tempfile::tempdir().unwrap();
        let path = socket_in(&dir);
        let listener = UnixListener::bind(&path).unwrap();
        let qemu = tokio::spawn(async move {
            let mut qemu = FakeQemu::accept(&listener).await;
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
        let dir = tempfile::tempdir().unwrap();
        let path = socket_in(&dir);
        let listener = UnixListener::bind(&path).unwrap();
        let qemu = tokio::spawn(async move {
            let mut qemu = FakeQemu::accept(&listener).await;
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
        let dir = tempfile::tempdir().unwrap();
        let path = socket_in(&dir);
        let listener = UnixListener::bind(&path).unwrap();
        let qemu = tokio::spawn(async move {
            let mut qemu = FakeQemu::accept(&listener).await;
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
        let dir = tempfile::tempdir().unwrap();
        let path = socket_in(&dir);
        let listener = UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            let mut qemu = FakeQemu::accept(&listener).await;
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
    }

    #[tokio::test]
    async fn quit_succeeds_when_qemu_hangs_up_without_replying() {
        let dir = tempfile::tempdir().unwrap();
        let path = socket_in(&dir);
        let listener = UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            let mut qemu = FakeQemu::accept(&listener).await;
            qemu.expect("quit").await;
        });
        let qmp = connected(&path).await;
        tokio::time::timeout(TEST_LIMIT, qmp.quit())
            .await
            .unwrap()
            .unwrap();
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
}
