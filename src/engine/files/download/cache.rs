//! kiln's download cache: `CACHE_DIR/downloads/SHA256/NAME`, a `.part` beside a file while
//! it arrives. Listed and cleared by `kiln cache`.

use std::path::{Path, PathBuf};

use crate::engine::host::config::Dirs;

/// The directory downloads are kept in.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

/// One file in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedFile {
    pub path: PathBuf,
    pub bytes: u64,
    /// A download that stopped before the end (resumed by the next try).
    pub partial: bool,
}

impl Cache {
    /// `downloads/` in kiln's XDG cache directory (`~/.cache/kiln`).
    pub fn discover() -> Option<Cache> {
        Dirs::discover().map(|dirs| Cache::at(&dirs.cache_dir))
    }

    /// `downloads/` below `cache_dir`.
    pub fn at(cache_dir: &Path) -> Cache {
        Cache {
            dir: cache_dir.join("downloads"),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where a file with this SHA-256 and name is kept.
    pub fn path_for(&self, sha256: &str, name: &str) -> PathBuf {
        let name = match name {
            "" | "." | ".." => "download",
            name => name,
        };
        self.dir.join(sha256).join(name)
    }

    /// Drop a file and whatever arrived of it (a download that did not match its checksum).
    pub(super) fn forget(&self, kept: &Path) {
        if let Some(dir) = kept.parent().filter(|dir| dir.starts_with(&self.dir)) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    /// Every file, sorted by path.
    pub fn files(&self) -> std::io::Result<Vec<CachedFile>> {
        let mut files = Vec::new();
        let sums = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(files),
            Err(error) => return Err(error),
        };
        for sum in sums {
            let sum = sum?;
            if !sum.file_type()?.is_dir() {
                continue;
            }
            for file in std::fs::read_dir(sum.path())? {
                let file = file?;
                let meta = file.metadata()?;
                if meta.is_file() {
                    let path = file.path();
                    files.push(CachedFile {
                        partial: path.extension().is_some_and(|e| e == "part"),
                        path,
                        bytes: meta.len(),
                    });
                }
            }
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(files)
    }

    /// Remove every file; the bytes freed.
    pub fn clear(&self) -> std::io::Result<u64> {
        let freed = self.files()?.iter().map(|file| file.bytes).sum();
        match std::fs::remove_dir_all(&self.dir) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
            _ => Ok(freed),
        }
    }
}

/// `NAME.part`, where `NAME` arrives.
pub(super) fn part_path(kept: &Path) -> PathBuf {
    let mut name = kept.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    kept.with_file_name(name)
}
