//! Records of running machines under the state directory, so a later kiln finds and stops a
//! QEMU that outlived the kiln that started it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::process::Child;

use super::MachineSpec;
use crate::engine::host::process;

/// What a record of a running machine says, for finding it after kiln crashed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MachineRecord {
    pub qemu_pid: u32,
    pub kiln_pid: u32,
    pub purpose: String,
    pub image: PathBuf,
    /// When the QEMU process started (clock ticks since boot, /proc/PID/stat field 22) and
    /// the private run directory in its command line: a pid reused by another program, even
    /// another QEMU, matches neither.
    #[serde(default)]
    pub qemu_started: u64,
    #[serde(default)]
    pub run_dir: PathBuf,
}

impl MachineRecord {
    /// Whether the process at `qemu_pid` is still the QEMU this record was written for.
    fn is_that_machine(&self) -> bool {
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", self.qemu_pid))
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default();
        let run_dir = self.run_dir.to_string_lossy();
        !run_dir.is_empty()
            && cmdline.contains("qemu-system")
            && cmdline.contains(run_dir.as_ref())
            && process_start_time(self.qemu_pid) == Some(self.qemu_started)
    }
}

/// /proc/PID/stat field 22: when the process started, in clock ticks since boot.
fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses; fields count after its ')'.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

pub(super) fn write_record(
    dir: &Path,
    child: &Child,
    spec: &MachineSpec,
    run_dir: &Path,
) -> std::io::Result<PathBuf> {
    let qemu_pid = child.id().unwrap_or_default();
    std::fs::create_dir_all(dir)?;
    let record = MachineRecord {
        qemu_pid,
        kiln_pid: std::process::id(),
        purpose: spec.purpose.clone(),
        image: spec.disk.clone(),
        qemu_started: process_start_time(qemu_pid).unwrap_or_default(),
        run_dir: run_dir.to_path_buf(),
    };
    let path = dir.join(format!("{qemu_pid}.json"));
    std::fs::write(
        &path,
        serde_json::to_string(&record).expect("record serialises"),
    )?;
    Ok(path)
}

/// Machines left running by a kiln that is no longer alive.
pub fn leftovers(record_dir: &Path) -> Vec<(PathBuf, MachineRecord)> {
    let Ok(entries) = std::fs::read_dir(record_dir) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(record) = std::fs::read_to_string(&path)
            .ok()
            .and_then(|text| serde_json::from_str::<MachineRecord>(&text).ok())
        else {
            continue;
        };
        if process::is_kiln_running(record.kiln_pid) {
            continue; // its kiln still owns it
        }
        if record.is_that_machine() {
            found.push((path, record));
        } else {
            // The machine is gone (its pid may now be anyone's): only the record is stale.
            let _ = std::fs::remove_file(&path);
        }
    }
    found
}

/// Stop a leftover machine (SIGTERM, then SIGKILL) and forget its record.
pub async fn clean_leftover(path: &Path, record: &MachineRecord) {
    let pid = record.qemu_pid as i32;
    // Checked again right before each signal: never a process kiln did not start.
    if record.is_that_machine() {
        // SAFETY: plain kill(2) on the QEMU this record describes (pid, start time, run dir).
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    for _ in 0..30 {
        if !record.is_that_machine() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if record.is_that_machine() {
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let _ = std::fs::remove_file(path);
}
