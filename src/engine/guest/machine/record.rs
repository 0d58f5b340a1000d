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

impl MachineRecord {
    /// The sockets' directory of a machine that is gone, left behind when its kiln was
    /// killed. Only a directory named as kiln names them (`kiln-PURPOSE-…`): the record is
    /// ours, but a path read from a file is never removed on trust alone.
    fn remove_run_dir(&self) {
        let prefix = format!("kiln-{}-", self.purpose);
        let ours = (self.run_dir.file_name())
            .is_some_and(|name| name.to_string_lossy().starts_with(&prefix));
        if ours && self.run_dir.is_dir() && !self.is_that_machine() {
            let _ = std::fs::remove_dir_all(&self.run_dir);
        }
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
            // The machine is gone (its pid may now be anyone's): only the record and the
            // run directory its killed kiln could not remove are left.
            record.remove_run_dir();
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
    record.remove_run_dir();
    let _ = std::fs::remove_file(path);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record of a machine that is gone, written by a kiln that is gone (a pid of a
    /// process that has exited), naming `run_dir`.
    fn stale_record(records: &Path, run_dir: &Path) -> PathBuf {
        let mut gone = std::process::Command::new("true").spawn().unwrap();
        let dead_pid = gone.id();
        gone.wait().unwrap();
        let record = MachineRecord {
            qemu_pid: dead_pid,
            kiln_pid: dead_pid,
            purpose: "configure".into(),
            image: "disk.qcow2".into(),
            qemu_started: 1,
            run_dir: run_dir.to_path_buf(),
        };
        let path = records.join(format!("{dead_pid}.json"));
        std::fs::write(&path, serde_json::to_string(&record).unwrap()).unwrap();
        path
    }

    #[test]
    fn a_killed_kilns_run_directory_goes_with_its_stale_record() {
        let dir = tempfile::tempdir().unwrap();
        let records = dir.path().join("machines");
        std::fs::create_dir_all(&records).unwrap();
        let run_dir = dir.path().join("kiln-configure-Ab3dE9");
        std::fs::create_dir_all(&run_dir).unwrap();
        std::fs::write(run_dir.join("qmp.sock"), b"").unwrap();
        let record = stale_record(&records, &run_dir);

        assert!(leftovers(&records).is_empty());
        assert!(!record.exists());
        assert!(!run_dir.exists());
    }

    #[test]
    fn a_directory_kiln_did_not_name_is_never_removed() {
        let dir = tempfile::tempdir().unwrap();
        let records = dir.path().join("machines");
        std::fs::create_dir_all(&records).unwrap();
        let elsewhere = dir.path().join("projects");
        std::fs::create_dir_all(&elsewhere).unwrap();
        let record = stale_record(&records, &elsewhere);

        assert!(leftovers(&records).is_empty());
        assert!(!record.exists());
        assert!(elsewhere.is_dir());
    }
}
