//! The serial console: its log next to the image, the socket QEMU serves it on, and its
//! output fanned out to whoever watches.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::{broadcast, mpsc};

use super::MachineError;
use crate::engine::guest::console::Console;

/// The serial log kept next to the image: `NAME.install.serial.log`.
pub fn serial_log_path(image: &Path, purpose: &str) -> PathBuf {
    let stem = image
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into());
    image.with_file_name(format!("{stem}.{purpose}.serial.log"))
}

/// QEMU opens the serial log by name, following links and truncating: the name must hold a
/// regular file of ours before QEMU starts. A link or someone else's file put there (in a
/// shared directory, to make a root kiln truncate another file) is removed and replaced by a
/// file created exclusively.
pub(super) fn claim_log_file(path: &Path) -> Result<(), MachineError> {
    use std::os::unix::fs::MetadataExt;
    let refuse = |reason: String| MachineError::LogFile {
        path: path.to_path_buf(),
        reason,
    };
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_file() && meta.uid() == me => return Ok(()),
        Ok(meta) if meta.is_dir() => return Err(refuse("a directory is in its place".into())),
        Ok(_) => std::fs::remove_file(path)
            .map_err(|e| refuse(format!("something else is in its place and stays: {e}")))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(refuse(e.to_string())),
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map(drop)
        .map_err(|e| refuse(e.to_string()))
}

pub(super) async fn connect_serial(path: &Path) -> Result<UnixStream, MachineError> {
    let mut last_error = None;
    for _ in 0..50 {
        match UnixStream::connect(path).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last_error = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(MachineError::Serial(
        last_error.expect("at least one attempt"),
    ))
}

/// Serial output fanned out to subscribers, with recent history for late ones.
pub(super) struct SerialOutput {
    history: Mutex<VecDeque<u8>>,
    live: broadcast::Sender<Vec<u8>>,
}

impl SerialOutput {
    const HISTORY: usize = 1 << 20;

    pub(super) fn new() -> SerialOutput {
        SerialOutput {
            history: Mutex::new(VecDeque::new()),
            live: broadcast::channel(1024).0,
        }
    }

    fn publish(&self, bytes: &[u8]) {
        // Held across both so a subscriber sees each byte exactly once.
        let mut history = self.history.lock().expect("serial history lock");
        history.extend(bytes);
        let excess = history.len().saturating_sub(Self::HISTORY);
        history.drain(..excess);
        let _ = self.live.send(bytes.to_vec());
    }

    pub(super) fn subscribe(&self) -> (Vec<u8>, broadcast::Receiver<Vec<u8>>) {
        let history = self.history.lock().expect("serial history lock");
        (history.iter().copied().collect(), self.live.subscribe())
    }
}

pub(super) fn spawn_serial_pumps(
    serial: UnixStream,
    console: Console,
    output: Arc<SerialOutput>,
    mut input: mpsc::UnboundedReceiver<Vec<u8>>,
) {
    let (mut reader, mut writer) = serial.into_split();
    tokio::spawn(async move {
        let mut buffer = vec![0u8; 8192];
        while let Ok(n) = reader.read(&mut buffer).await {
            if n == 0 {
                break;
            }
            console.feed(&buffer[..n]);
            output.publish(&buffer[..n]);
        }
    });
    tokio::spawn(async move {
        while let Some(bytes) = input.recv().await {
            if writer.write_all(&bytes).await.is_err() {
                break;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_planted_as_the_serial_log_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep me").unwrap();
        let log = dir.path().join("d.install.serial.log");
        std::os::unix::fs::symlink(&victim, &log).unwrap();
        claim_log_file(&log).unwrap();
        assert!(
            std::fs::symlink_metadata(&log)
                .unwrap()
                .file_type()
                .is_file()
        );
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
        // Our own log from an earlier run is kept as it is (QEMU truncates it).
        claim_log_file(&log).unwrap();
        std::fs::create_dir(dir.path().join("dir.log")).unwrap();
        assert!(claim_log_file(&dir.path().join("dir.log")).is_err());
    }

    #[test]
    fn serial_log_sits_next_to_the_image() {
        assert_eq!(
            serial_log_path(Path::new("/img/debian-12.qcow2"), "install"),
            PathBuf::from("/img/debian-12.install.serial.log")
        );
    }
}
