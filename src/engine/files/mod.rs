//! Untrusted files kiln reads itself, before any tool opens them: a qcow2 image's header and
//! an installer ISO (its checksum, its ISO 9660 filesystem, the kernel inside), and files
//! downloaded once into kiln's cache and checked against their SHA-256.

pub mod download;
pub mod iso;
pub mod qcow2_header;
