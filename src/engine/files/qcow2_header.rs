//! The qcow2 header, read by kiln itself before any tool opens an image: the host files it
//! names (a backing file, an external data file) are opened by QEMU for the guest, so an
//! untrusted image that names any is neither booted nor converted. Depends on nothing else
//! in the engine, so the machine can check every disk it starts.

use std::path::Path;

use super::open_regular;

/// Host files a qcow2 header names: QEMU opens them for the guest (a backing file as the
/// disk's base, an external data file as its contents), so an image that names any must not
/// be booted or converted. Read by kiln itself, before any tool opens the image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFileRefs {
    pub backing_file: Option<String>,
    pub data_file: Option<String>,
}

impl HostFileRefs {
    pub fn is_empty(&self) -> bool {
        self.backing_file.is_none() && self.data_file.is_none()
    }

    /// `backing file /etc/shadow; external data file /dev/sda`, for checks and errors.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(file) = &self.backing_file {
            parts.push(format!("backing file {file}"));
        }
        if let Some(file) = &self.data_file {
            parts.push(format!("external data file {file}"));
        }
        parts.join("; ")
    }
}

/// The most of a file kiln reads for the header: names live in the first cluster (≤ 2 MiB).
const HEADER_READ_LIMIT: u64 = 2 << 20;
/// qcow2 header extension "DATA": the external data file's name.
const DATA_FILE_EXTENSION: u32 = 0x4441_5441;
/// qcow2 v3 incompatible feature bit 2: the guest data lives in an external file.
const EXTERNAL_DATA_FEATURE: u64 = 1 << 2;

/// Whether a qcow2 image holds any guest data: a disk fresh from `qemu-img create` has no
/// L1 entry set, an installed one has many. `None` when it is not a qcow2 file.
pub fn has_guest_data(path: &Path) -> std::io::Result<Option<bool>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = open_regular(path)?;
    let mut header = [0u8; 48];
    if file.read_exact(&mut header).is_err() || header[..4] != *b"QFI\xfb" {
        return Ok(None);
    }
    let l1_entries = u32::from_be_bytes(header[36..40].try_into().expect("4 bytes"));
    let l1_offset = u64::from_be_bytes(header[40..48].try_into().expect("8 bytes"));
    // 2^20 entries map 2^20 L2 tables: far beyond any CI image; more is a damaged header.
    let l1_bytes = u64::from(l1_entries.min(1 << 20)) * 8;
    let mut l1 = Vec::new();
    file.seek(SeekFrom::Start(l1_offset))?;
    file.take(l1_bytes).read_to_end(&mut l1)?;
    // Bits 9–55 of an entry are the L2 table's offset; zero means nothing was ever written.
    const OFFSET_BITS: u64 = 0x00ff_ffff_ffff_fe00;
    Ok(Some(l1.chunks_exact(8).any(|entry| {
        u64::from_be_bytes(entry.try_into().expect("8 bytes")) & OFFSET_BITS != 0
    })))
}

/// The host files `path`'s qcow2 header names; `None` when it is not a qcow2 file at all.
pub fn host_file_refs(path: &Path) -> std::io::Result<Option<HostFileRefs>> {
    use std::io::Read;
    let mut header = Vec::new();
    open_regular(path)?
        .take(HEADER_READ_LIMIT)
        .read_to_end(&mut header)?;
    Ok(parse_host_file_refs(&header))
}

fn parse_host_file_refs(header: &[u8]) -> Option<HostFileRefs> {
    let u32_at = |at: usize| -> Option<u32> {
        Some(u32::from_be_bytes(header.get(at..at + 4)?.try_into().ok()?))
    };
    let u64_at = |at: usize| -> Option<u64> {
        Some(u64::from_be_bytes(header.get(at..at + 8)?.try_into().ok()?))
    };
    let text_at = |at: u64, len: u64| -> String {
        let start = usize::try_from(at).unwrap_or(usize::MAX);
        let end = start.saturating_add(usize::try_from(len).unwrap_or(usize::MAX));
        match header.get(start..end) {
            Some(bytes) => String::from_utf8_lossy(bytes).into_owned(),
            None => format!("(a name at offset {at} beyond the header kiln reads)"),
        }
    };
    if header.get(..4)? != b"QFI\xfb" {
        return None;
    }
    let version = u32_at(4)?;
    let mut refs = HostFileRefs::default();
    let backing_offset = u64_at(8).unwrap_or(0);
    let backing_len = u64::from(u32_at(16).unwrap_or(0));
    if backing_offset != 0 && backing_len != 0 {
        refs.backing_file = Some(text_at(backing_offset, backing_len));
    }
    if version < 3 {
        return Some(refs);
    }
    let external_data = u64_at(72).is_some_and(|f| f & EXTERNAL_DATA_FEATURE != 0);
    // Header extensions follow the header: type, length, data padded to 8 bytes; type 0 ends.
    let mut at = u32_at(100).map_or(104, |len| len as usize);
    while let (Some(kind), Some(len)) = (u32_at(at), u32_at(at + 4)) {
        if kind == 0 {
            break;
        }
        if kind == DATA_FILE_EXTENSION {
            refs.data_file = Some(text_at(at as u64 + 8, u64::from(len)));
        }
        at = at.saturating_add(8 + (len as usize).div_ceil(8) * 8);
    }
    if external_data && refs.data_file.is_none() {
        refs.data_file = Some("(named by whoever opens it)".into());
    }
    Some(refs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::test_images::{backed_by_host_file, qcow2, qemu_img, with_external_data};

    #[tokio::test]
    async fn headers_naming_host_files_are_read_without_opening_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name).display().to_string();
        qemu_img(&["create", "-q", "-f", "qcow2", &path("plain.qcow2"), "16M"]).await;
        qcow2(&path("v2.qcow2"), "0.10", "16M").await;
        backed_by_host_file(Path::new(&path("backed.qcow2"))).await;
        let data = path("data.raw");
        with_external_data(Path::new(&path("data.qcow2")), Path::new(&data)).await;
        std::fs::write(path("raw.img"), [0u8; 4096]).unwrap();

        let refs = |name: &str| host_file_refs(Path::new(&path(name))).unwrap();
        assert_eq!(refs("plain.qcow2"), Some(HostFileRefs::default()));
        assert_eq!(refs("v2.qcow2"), Some(HostFileRefs::default()));
        assert_eq!(refs("raw.img"), None);
        let backed = refs("backed.qcow2").unwrap();
        assert_eq!(backed.backing_file.as_deref(), Some("/etc/hostname"));
        assert!(backed.describe().contains("backing file /etc/hostname"));
        let external = refs("data.qcow2").unwrap();
        assert_eq!(external.data_file.as_deref(), Some(data.as_str()));
        assert!(!external.is_empty());
    }

    #[tokio::test]
    async fn a_blank_disk_holds_no_guest_data_and_a_written_one_does() {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("d.qcow2");
        let disk_s = disk.display().to_string();
        qemu_img(&["create", "-q", "-f", "qcow2", &disk_s, "1G"]).await;
        assert_eq!(has_guest_data(&disk).unwrap(), Some(false));
        let wrote = tokio::process::Command::new("qemu-io")
            .args(["-c", "write -P 0x55 512M 64k", &disk_s])
            .output()
            .await
            .unwrap();
        assert!(wrote.status.success());
        assert_eq!(has_guest_data(&disk).unwrap(), Some(true));
        std::fs::write(dir.path().join("raw"), [0u8; 100]).unwrap();
        assert_eq!(has_guest_data(&dir.path().join("raw")).unwrap(), None);
    }

    #[test]
    fn damaged_headers_do_not_panic() {
        let mut header = b"QFI\xfb\0\0\0\x03".to_vec();
        assert_eq!(parse_host_file_refs(&header), Some(HostFileRefs::default()));
        // A backing file name far beyond the file, a header length pointing nowhere.
        header.resize(104, 0);
        header[8..16].copy_from_slice(&u64::MAX.to_be_bytes());
        header[16..20].copy_from_slice(&u32::MAX.to_be_bytes());
        header[100..104].copy_from_slice(&u32::MAX.to_be_bytes());
        let refs = parse_host_file_refs(&header).unwrap();
        assert!(refs.backing_file.unwrap().contains("beyond the header"));
        assert_eq!(parse_host_file_refs(b"QF"), None);
    }
}
