//! A QMP client for a running QEMU (`-qmp unix:PATH,server=on,wait=off`).
//!
//! Commands are built, and their replies parsed, with qapi's generated types. Framing and
//! routing are ours: qapi 0.15's stream fails on any event missing from its schema and that
//! error ends the connection, and its event half must be polled to receive command replies.
//! Here one background task reads every line, hands `return`/`error` replies to the command
//! waiting on the same `id`, and turns events into [`QmpEvent`]s, unknown names included.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use qapi::qmp;
use serde::Deserialize;
use serde_json::Value;

mod connection;

use connection::Inner;

// The key table's lookups, beside the commands that take the QKeyCode names they give.
pub use super::keys::{key_for_char, key_for_name};

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

impl Qmp {
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
}

fn protocol<C: qapi::Command>(_: &C, error: impl std::fmt::Display) -> QmpError {
    QmpError::Protocol {
        command: C::NAME,
        detail: error.to_string(),
    }
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
mod tests;
