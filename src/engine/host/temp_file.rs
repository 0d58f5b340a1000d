//! Temporary files beside the files kiln makes (a new image, a compacted copy, a session
//! file, a checksum): created exclusively — never following or reusing a file someone planted
//! under the name, which in a shared directory could make a root kiln truncate any file — with
//! a name no one can predict, removed unless moved into place. A kiln that is killed cannot
//! remove its own; the next kiln in that directory does ([`sweep`]).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// What every temporary name holds between its target's name and the process id.
const MARK: &str = ".kiln-";

/// A new, empty file beside its target; removed when dropped unless it was moved away.
#[derive(Debug)]
pub struct TempFile {
    path: PathBuf,
}

impl TempFile {
    /// `.NAME.kiln-PURPOSE-PID-RANDOM` in `dir`, created with O_CREAT|O_EXCL (a symlink or
    /// any existing file under the name makes it fail), mode 0644 less the umask.
    pub fn create(dir: &Path, name: &str, purpose: &str) -> std::io::Result<TempFile> {
        let prefix = format!(".{name}{MARK}{purpose}-{}-", std::process::id());
        // The OS's own words: the random name in tempfile's message means nothing to anyone.
        // tempfile adds ` at path "…"` (the random name, meaningless to anyone): drop it.
        let plain = |e: std::io::Error| {
            let text = e.to_string();
            let words = text.split(" at path \"").next().unwrap_or_default();
            std::io::Error::new(e.kind(), words.to_string())
        };
        let (_, path) = tempfile::Builder::new()
            .prefix(&prefix)
            .rand_bytes(8)
            .permissions(std::fs::Permissions::from_mode(0o644))
            .tempfile_in(dir)
            .map_err(plain)?
            .keep()
            .map_err(|e| plain(e.error))?;
        Ok(TempFile { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Move it over `target` (rename: atomic, replaces what is there); no longer ours to remove.
    pub fn rename_to(self, target: &Path) -> std::io::Result<()> {
        std::fs::rename(&self.path, target)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        // After a rename there is nothing left here, and the error says so.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The directory holding `path` (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Remove the temporary files that kilns no longer running left in `dir` (killed mid-step),
/// and say which: a file of a live kiln, or anything that is not a regular file, is left alone.
pub fn sweep(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = owner(&name) else {
            continue;
        };
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if is_file && !super::process::is_kiln_running(pid) {
            let path = entry.path();
            if std::fs::remove_file(&path).is_ok() {
                removed.push(path);
            }
        }
    }
    removed
}

/// The pid in a name [`TempFile::create`] made (`.NAME.kiln-PURPOSE-PID-RANDOM`).
fn owner(name: &str) -> Option<u32> {
    if !name.starts_with('.') || !name.contains(MARK) {
        return None;
    }
    let mut parts = name.rsplitn(3, '-');
    let random = parts.next()?;
    let pid = parts.next()?;
    (random.len() == 8).then_some(())?;
    pid.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_planted_symlink_is_never_followed_and_names_are_unpredictable() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep me").unwrap();
        let a = TempFile::create(dir.path(), "disk.qcow2", "tmp").unwrap();
        let b = TempFile::create(dir.path(), "disk.qcow2", "tmp").unwrap();
        assert_ne!(a.path(), b.path());
        let name = a.path().file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with(&format!(".disk.qcow2.kiln-tmp-{}-", std::process::id())));
        assert_eq!(owner(&name), Some(std::process::id()));
        // Even a symlink under the very name cannot be opened through: O_EXCL refuses it.
        let planted = b.path().to_path_buf();
        drop(b);
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        let exclusive = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&planted);
        assert!(exclusive.is_err());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");

        let moved = dir.path().join("disk.qcow2");
        a.rename_to(&moved).unwrap();
        assert!(moved.exists());
    }

    #[test]
    fn a_failure_is_told_in_the_os_words_without_the_random_name() {
        let missing = std::path::Path::new("/nonexistent-kiln-dir");
        let error = TempFile::create(missing, "d.qcow2", "tmp")
            .unwrap_err()
            .to_string();
        assert!(error.contains("No such file or directory"), "{error}");
        assert!(!error.contains("kiln-tmp"), "{error}");
    }

    #[test]
    fn leftovers_of_dead_kilns_are_swept_and_others_kept() {
        let dir = tempfile::tempdir().unwrap();
        // pid 1 is init, never a kiln: this one was left by a killed kiln.
        let dead = dir.path().join(".disk.qcow2.kiln-tmp-1-abcdefgh");
        std::fs::write(&dead, "half an image").unwrap();
        let ours = TempFile::create(dir.path(), "disk.qcow2", "tmp").unwrap();
        let unrelated = dir.path().join(".disk.qcow2.kiln-notes");
        std::fs::write(&unrelated, "mine").unwrap();
        let removed = sweep(dir.path());
        assert_eq!(removed, vec![dead.clone()]);
        assert!(!dead.exists());
        assert!(ours.path().exists(), "a live kiln's file was swept");
        assert!(unrelated.exists());
    }
}
