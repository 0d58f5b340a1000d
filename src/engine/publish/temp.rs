//! Temporary files beside a destination: hidden, per-process names, removed unless moved
//! into place. Shared by the local installs, compaction and checksums.

use std::path::{Path, PathBuf};

/// A file removed when dropped, unless it was already moved away.
pub(super) struct TempFile(pub(super) PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `.NAME.kiln-SUFFIX-PID` in `dir`: hidden, and unique to this process.
pub(super) fn temp_path(dir: &Path, name: &str, suffix: &str) -> PathBuf {
    dir.join(format!(".{name}.kiln-{suffix}-{}", std::process::id()))
}

/// The directory holding `path` (`.` for a bare file name).
pub(super) fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}
