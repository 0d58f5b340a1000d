//! Installer ISOs: is the file a bootable ISO 9660 image, and does it match its checksum?

pub mod filesystem;
pub mod kernel;

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::engine::task::Reporter;

const SECTOR: u64 = 2048;
/// Volume descriptors start at sector 16 and end with a terminator (type 255).
const FIRST_DESCRIPTOR: u64 = 16;
const MAX_DESCRIPTORS: u64 = 64;
const EL_TORITO: &[u8] = b"EL TORITO SPECIFICATION";

/// Why an ISO cannot be used; each message says what to check.
#[derive(Debug, thiserror::Error)]
pub enum IsoError {
    #[error("installer ISO {} does not exist", .0.display())]
    Missing(PathBuf),
    #[error("{} is not a regular file (a directory, FIFO or device); give the installer's .iso file", .0.display())]
    NotAFile(PathBuf),
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not an ISO 9660 image (no CD001 volume descriptor at sector 16)", .0.display())]
    NotIso(PathBuf),
    #[error("{} is an ISO 9660 image but has no El Torito boot record, so it cannot boot", .0.display())]
    NotBootable(PathBuf),
    #[error("checksum mismatch for {}: expected {expected}, got {actual}", .path.display())]
    ChecksumMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("{} has no line for {name}", .sums.display())]
    NotInSums { sums: PathBuf, name: String },
    #[error("`{0}` is not a SHA-256 checksum (64 hex digits)")]
    BadChecksum(String),
    #[error("checksum cancelled")]
    Cancelled,
}

/// Check that `path` is an ISO 9660 image with an El Torito boot record.
pub fn validate(path: &Path) -> Result<(), IsoError> {
    match std::fs::metadata(path) {
        Err(_) => return Err(IsoError::Missing(path.to_path_buf())),
        // A FIFO would block the read below forever; a directory or device is no installer.
        Ok(meta) if !meta.is_file() => return Err(IsoError::NotAFile(path.to_path_buf())),
        Ok(_) => {}
    }
    let read_error = |source| IsoError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(read_error)?;
    let mut descriptor = [0u8; 2048];
    let mut saw_iso = false;
    for index in FIRST_DESCRIPTOR..FIRST_DESCRIPTOR + MAX_DESCRIPTORS {
        file.seek(SeekFrom::Start(index * SECTOR))
            .map_err(read_error)?;
        if file.read_exact(&mut descriptor).is_err() {
            break;
        }
        if &descriptor[1..6] != b"CD001" {
            break;
        }
        saw_iso = true;
        match descriptor[0] {
            0 if descriptor[7..7 + EL_TORITO.len()] == *EL_TORITO => return Ok(()),
            255 => break,
            _ => {}
        }
    }
    if saw_iso {
        Err(IsoError::NotBootable(path.to_path_buf()))
    } else {
        Err(IsoError::NotIso(path.to_path_buf()))
    }
}

/// The checksum to expect: given directly, or looked up by file name in a SHA256SUMS file.
#[derive(Debug, Clone)]
pub enum Expected {
    Hex(String),
    SumsFile(PathBuf),
}

impl Expected {
    fn resolve(&self, iso: &Path) -> Result<String, IsoError> {
        let hex = match self {
            Expected::Hex(hex) => hex.trim().to_ascii_lowercase(),
            Expected::SumsFile(sums) => {
                let text = std::fs::read_to_string(sums).map_err(|source| IsoError::Read {
                    path: sums.clone(),
                    source,
                })?;
                let name_of = |path: &Path| {
                    path.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default()
                };
                let name = name_of(iso);
                // A link (debian-12-netinst.iso → the release's file) is listed by what it
                // points to.
                let target = std::fs::canonicalize(iso).map(|target| name_of(&target));
                (find_in_sums(&text, &name))
                    .or_else(|| find_in_sums(&text, target.as_deref().ok()?))
                    .ok_or_else(|| IsoError::NotInSums {
                        sums: sums.clone(),
                        name,
                    })?
            }
        };
        if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(IsoError::BadChecksum(hex));
        }
        Ok(hex)
    }
}

/// Find `name` in `sha256sum` output (`HEX  name` or `HEX *name`).
pub fn find_in_sums(text: &str, name: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (hex, file) = line.split_once(char::is_whitespace)?;
        let file = file.trim_start().trim_start_matches('*');
        let file = file.rsplit('/').next().unwrap_or(file);
        (file == name).then(|| hex.to_ascii_lowercase())
    })
}

/// Hash the ISO with progress and compare with what was expected.
pub async fn verify_checksum(
    path: &Path,
    expected: &Expected,
    reporter: &Reporter,
) -> Result<(), IsoError> {
    let expected = expected.resolve(path)?;
    let actual = sha256_file(path, reporter).await?;
    if actual == expected {
        reporter.info(format!("sha256 matches ({expected})"));
        Ok(())
    } else {
        Err(IsoError::ChecksumMismatch {
            path: path.to_path_buf(),
            expected,
            actual,
        })
    }
}

/// SHA-256 of a file, reading on a blocking thread and reporting progress.
pub async fn sha256_file(path: &Path, reporter: &Reporter) -> Result<String, IsoError> {
    let path = path.to_path_buf();
    let reporter = reporter.clone();
    tokio::task::spawn_blocking(move || {
        let read_error = |source| IsoError::Read {
            path: path.clone(),
            source,
        };
        let mut file = std::fs::File::open(&path).map_err(read_error)?;
        let total = file.metadata().map_err(read_error)?.len();
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 1 << 20];
        let mut done = 0u64;
        let start = Instant::now();
        loop {
            if reporter.is_cancelled() {
                return Err(IsoError::Cancelled);
            }
            let n = file.read(&mut buffer).map_err(read_error)?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            done += n as u64;
            let rate = done as f64 / start.elapsed().as_secs_f64().max(1e-3);
            reporter.progress(done, Some(total), rate);
        }
        Ok(hex::encode(hasher.finalize()))
    })
    .await
    .expect("hashing thread does not panic")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iso_with(descriptors: &[(u8, &[u8])]) -> tempfile::NamedTempFile {
        let mut bytes = vec![0u8; (FIRST_DESCRIPTOR * SECTOR) as usize];
        for (kind, system_id) in descriptors {
            let mut sector = vec![0u8; SECTOR as usize];
            sector[0] = *kind;
            sector[1..6].copy_from_slice(b"CD001");
            sector[6] = 1;
            sector[7..7 + system_id.len()].copy_from_slice(system_id);
            bytes.extend(sector);
        }
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), bytes).unwrap();
        file
    }

    #[test]
    fn bootable_iso_passes() {
        let iso = iso_with(&[(1, b""), (0, EL_TORITO), (255, b"")]);
        validate(iso.path()).unwrap();
    }

    #[test]
    fn iso_without_boot_record_is_named_as_such() {
        let iso = iso_with(&[(1, b""), (255, b"")]);
        assert!(matches!(
            validate(iso.path()),
            Err(IsoError::NotBootable(_))
        ));
    }

    #[test]
    fn other_files_are_not_isos() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), b"QFI\xfb not an iso").unwrap();
        assert!(matches!(validate(file.path()), Err(IsoError::NotIso(_))));
        assert!(matches!(
            validate(Path::new("/nonexistent/x.iso")),
            Err(IsoError::Missing(_))
        ));
    }

    #[test]
    fn sums_lookup() {
        let sums = "aa11  debian-12.iso\nBB22 *other.iso\ncc33  ./sub/dir/third.iso\n";
        assert_eq!(find_in_sums(sums, "debian-12.iso").as_deref(), Some("aa11"));
        assert_eq!(find_in_sums(sums, "other.iso").as_deref(), Some("bb22"));
        assert_eq!(find_in_sums(sums, "third.iso").as_deref(), Some("cc33"));
        assert_eq!(find_in_sums(sums, "missing.iso"), None);
    }

    #[test]
    fn a_link_to_the_iso_is_found_by_what_it_points_to() {
        let dir = tempfile::tempdir().unwrap();
        let iso = dir.path().join("debian-12.13.0-amd64-netinst.iso");
        std::fs::write(&iso, b"x").unwrap();
        let link = dir.path().join("debian-12-netinst.iso");
        std::os::unix::fs::symlink(iso.file_name().unwrap(), &link).unwrap();
        let sums = dir.path().join("SHA256SUMS");
        let hex = "ab".repeat(32);
        std::fs::write(&sums, format!("{hex}  debian-12.13.0-amd64-netinst.iso\n")).unwrap();
        let expected = Expected::SumsFile(sums.clone());
        assert_eq!(expected.resolve(&link).unwrap(), hex);
        assert_eq!(expected.resolve(&iso).unwrap(), hex);
        std::fs::write(&sums, format!("{hex}  other.iso\n")).unwrap();
        let error = expected.resolve(&link).unwrap_err().to_string();
        assert!(
            error.ends_with("has no line for debian-12-netinst.iso"),
            "{error}"
        );
    }
}
