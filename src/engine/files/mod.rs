//! Untrusted files kiln reads itself, before any tool opens them: a qcow2 image's header and
//! an installer ISO (its checksum, its ISO 9660 filesystem, the kernel inside), and files
//! downloaded once into kiln's cache and checked against their SHA-256.

pub mod download;
pub mod iso;
pub mod qcow2_header;

use std::path::Path;

/// `path` opened for reading when it is a regular file. A FIFO named where an image or a
/// user-data file should be would block the open until something writes to it (the
/// workbench reads headers on every frame), and a device or directory is no such file.
pub fn open_regular(path: &Path) -> std::io::Result<std::fs::File> {
    if !std::fs::metadata(path)?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    std::fs::File::open(path)
}
