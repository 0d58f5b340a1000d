//! The connection itself: the handshake, one task reading every line QEMU sends, and
//! commands matched to their replies by `id`.

use std::collections::HashMap;
use std::path::Path;
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

use super::{Qmp, QmpError, QmpEvent, protocol};

/// How long one command (and the greeting plus capabilities handshake) may wait for QEMU.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// Events kept per subscriber; a subscriber further behind than this is told it lagged.
const EVENT_CAPACITY: usize = 256;
/// Pause between connection attempts while QEMU has not created or opened its socket yet.
const CONNECT_RETRY: Duration = Duration::from_millis(50);

pub(super) struct Inner {
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

    /// Whether QEMU has closed the connection (after which every command fails at once).
    pub fn is_closed(&self) -> bool {
        self.inner.router.lock().events.is_none()
    }

    /// Commands sent and not answered yet: tells a QEMU that stopped answering from an idle one.
    pub fn awaiting_replies(&self) -> usize {
        self.inner.router.lock().waiting.len()
    }

    /// Send `command` and parse its reply with the type qapi generated for it.
    pub(super) async fn execute<C: qapi::Command>(&self, command: C) -> Result<C::Ok, QmpError> {
        let reply = self.call(&command).await?;
        serde_json::from_value(reply).map_err(|error| protocol(&command, error))
    }

    /// Send `command` and return its raw `return` value.
    pub(super) async fn call<C: qapi::Command>(&self, command: &C) -> Result<Value, QmpError> {
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
