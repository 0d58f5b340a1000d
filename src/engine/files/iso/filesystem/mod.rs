//! Files inside an ISO 9660 image, read without mounting it (no root, no loop device), so
//! kiln can hand a distribution's kernel and initrd to QEMU's direct kernel boot.
//!
//! Names come from Rock Ridge when the image has it, else from Joliet, else from the plain
//! ISO 9660 names (`VMLINUZ.;1` matches `vmlinuz`). The image is untrusted input: every length
//! is checked against the file before it is read or allocated, and every loop has a bound.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::engine::host::temp_file::TempFile;

mod directory;
mod joliet;
mod records;
mod rock_ridge;

use records::{d_chars, text_field};

const SECTOR: u64 = 2048;
/// Volume descriptors start at sector 16 and end with a terminator (type 255).
const FIRST_DESCRIPTOR: u64 = 16;
const MAX_DESCRIPTORS: u64 = 64;
/// Bytes of a directory record before its name.
const RECORD_HEADER: usize = 33;
/// A directory kiln reads at once: 16 MiB holds some 100 000 entries, more than any installer.
const MAX_DIRECTORY_BYTES: u64 = 16 << 20;
/// Path components (after symbolic links) one lookup walks through.
const MAX_LOOKUP_STEPS: usize = 128;
/// Symbolic links one lookup follows: Linux's own limit is 40; installers need one or two.
const MAX_SYMLINK_HOPS: usize = 16;
/// Rock Ridge continuation areas chained from one record (Linux stops at 32 too).
const MAX_CONTINUATIONS: usize = 32;
/// … and read for one directory: a record needs one at most, unless it carries ACLs.
const MAX_DIRECTORY_CONTINUATIONS: usize = 65_536;
/// A Rock Ridge name or link target; longer ones are cut (NAME_MAX is 255, PATH_MAX 4096).
const MAX_NAME_BYTES: usize = 4096;
/// Parts of one multi-extent file: each is under 4 GiB, so this is 4 TiB.
const MAX_EXTENTS: usize = 1024;
/// How much of a file [`IsoFilesystem::extract`] copies at a time.
const COPY_CHUNK: u64 = 1 << 20;

const FLAG_DIRECTORY: u8 = 0x02;
const FLAG_ASSOCIATED: u8 = 0x04;
const FLAG_MULTI_EXTENT: u8 = 0x80;

/// Why a file cannot be read out of an ISO; each message names the image and what to do.
#[derive(Debug, thiserror::Error)]
pub enum IsoReadError {
    #[error("cannot open installer ISO {}: {source}", .path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a regular file (a directory, FIFO or device); give the installer's .iso file", .0.display())]
    NotAFile(PathBuf),
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not an ISO 9660 image (no primary volume descriptor from sector 16 on)", .0.display())]
    NotIso(PathBuf),
    #[error("{} uses {size}-byte blocks; kiln reads only ISO 9660 images with 2048-byte blocks", .path.display())]
    BlockSize { path: PathBuf, size: u16 },
    #[error("{} is cut short: {what} lies at bytes {start}..{end} but the file ends at {len}; download it again", .path.display())]
    Truncated {
        path: PathBuf,
        what: String,
        start: u64,
        end: u64,
        len: u64,
    },
    #[error("{} is damaged: {what}; download it again or check it against its checksum", .path.display())]
    Damaged { path: PathBuf, what: String },
    #[error("{} holds something kiln does not read: {what}", .path.display())]
    Unsupported { path: PathBuf, what: String },
    #[error("{} has no {inner}", .path.display())]
    NotFound { path: PathBuf, inner: String },
    #[error("{inner} in {} is not a directory", .path.display())]
    NotADirectory { path: PathBuf, inner: String },
    #[error("{inner} in {} is not a regular file (a directory or a symbolic link)", .path.display())]
    NotARegularFile { path: PathBuf, inner: String },
    #[error("{inner} in {} is {size} bytes, more than the {limit} kiln reads into memory", .path.display())]
    TooLarge {
        path: PathBuf,
        inner: String,
        size: u64,
        limit: u64,
    },
    #[error("cannot write {} (from {}): {source}", .dest.display(), .iso.display())]
    Write {
        dest: PathBuf,
        iso: PathBuf,
        source: std::io::Error,
    },
}

/// Which of the image's name tables kiln reads names from: the richest one it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameSource {
    /// POSIX names from the Rock Ridge extension (`-R`): exact, case-sensitive.
    RockRidge,
    /// UCS-2 names from the Joliet supplementary tree (`-J`): exact, case-sensitive.
    Joliet,
    /// 8.3-style upper-case names: matched case-insensitively, version (`;1`) dropped.
    Iso9660,
}

/// One file or directory in the image, as a directory listing or a lookup found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsoEntry {
    pub name: String,
    pub is_dir: bool,
    /// Bytes of data (for a directory: of its records).
    pub size: u64,
    /// First 2048-byte block of the data.
    pub extent: u32,
    /// Where a Rock Ridge symbolic link points (as written in the image); `None` otherwise.
    pub symlink: Option<String>,
    /// Rock Ridge and Joliet names are matched exactly, plain ISO 9660 ones case-insensitively.
    exact_name: bool,
    /// Files of 4 GiB and more are split into several extents (all but the last marked).
    parts: Vec<Extent>,
    /// Interleaved files (unit size / gap) are from the 1980s; they are listed but not read.
    interleaved: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Extent {
    block: u32,
    len: u32,
}

impl IsoEntry {
    fn matches(&self, wanted: &str) -> bool {
        if self.exact_name {
            return self.name == wanted;
        }
        // mkisofs turns characters ISO 9660 forbids (`-`, `+`, …) into `_`: match that too.
        self.name.eq_ignore_ascii_case(wanted) || self.name.eq_ignore_ascii_case(&d_chars(wanted))
    }
}

/// An opened ISO image: its volume id and the root of the name tree kiln reads.
#[derive(Debug)]
pub struct IsoFilesystem {
    path: PathBuf,
    file: File,
    len: u64,
    volume_id: String,
    names: NameSource,
    /// Bytes at the start of every System Use area that are not SUSP entries (SP's LEN_SKP).
    susp_skip: usize,
    root: IsoEntry,
}

impl IsoFilesystem {
    /// Open `path` and read its volume descriptors and root directory.
    pub fn open(path: &Path) -> Result<Self, IsoReadError> {
        let open_error = |source| IsoReadError::Open {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(open_error)?;
        // A FIFO would block a read forever; a directory or device is no installer.
        if !meta.is_file() {
            return Err(IsoReadError::NotAFile(path.to_path_buf()));
        }
        let file = File::open(path).map_err(open_error)?;
        let mut iso = IsoFilesystem {
            path: path.to_path_buf(),
            file,
            len: meta.len(),
            volume_id: String::new(),
            names: NameSource::Iso9660,
            susp_skip: 0,
            root: IsoEntry::placeholder(),
        };
        let descriptors = iso.read_descriptors()?;
        let block_size = u16::from_le_bytes([descriptors.primary[128], descriptors.primary[129]]);
        if u64::from(block_size) != SECTOR {
            return Err(IsoReadError::BlockSize {
                path: iso.path.clone(),
                size: block_size,
            });
        }
        iso.volume_id = text_field(&descriptors.primary[40..72]);
        iso.root = iso.root_from(&descriptors.primary, "primary")?;
        if let Some(skip) = iso.rock_ridge_skip()? {
            iso.names = NameSource::RockRidge;
            iso.susp_skip = skip;
        } else if let Some(joliet) = &descriptors.joliet {
            iso.names = NameSource::Joliet;
            iso.root = iso.root_from(joliet, "Joliet")?;
        }
        Ok(iso)
    }

    /// The image file this was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The primary volume id: the filesystem label installers find their image by.
    pub fn volume_id(&self) -> &str {
        &self.volume_id
    }

    /// Which name table lookups use.
    pub fn names(&self) -> NameSource {
        self.names
    }

    /// The root directory.
    pub fn root(&self) -> &IsoEntry {
        &self.root
    }

    /// Find `/dir/file` (symbolic links followed); `None` when some component is missing.
    pub fn lookup(&self, inner: &str) -> Result<Option<IsoEntry>, IsoReadError> {
        let mut pending: VecDeque<String> = components(inner).collect();
        let mut parents: Vec<IsoEntry> = Vec::new();
        let mut current = self.root.clone();
        let (mut steps, mut hops) = (0, 0);
        while let Some(component) = pending.pop_front() {
            steps += 1;
            if steps > MAX_LOOKUP_STEPS {
                return Err(self.unsupported(format!(
                    "{inner} is more than {MAX_LOOKUP_STEPS} directories deep"
                )));
            }
            if component == ".." {
                current = parents.pop().unwrap_or_else(|| self.root.clone());
                continue;
            }
            if !current.is_dir {
                return Ok(None);
            }
            let children = self.children(&current)?;
            let Some(child) = children.into_iter().find(|c| c.matches(&component)) else {
                return Ok(None);
            };
            if let Some(target) = &child.symlink {
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return Err(self.unsupported(format!(
                        "{inner} goes through more than {MAX_SYMLINK_HOPS} symbolic links (a loop?)"
                    )));
                }
                if target.starts_with('/') {
                    parents.clear();
                    current = self.root.clone();
                }
                // The link's components come before the rest of the path.
                for part in components(target).collect::<Vec<_>>().into_iter().rev() {
                    pending.push_front(part);
                }
                continue;
            }
            parents.push(std::mem::replace(&mut current, child));
        }
        Ok(Some(current))
    }

    /// The entries of directory `inner` (without `.` and `..`), in the image's order.
    pub fn list(&self, inner: &str) -> Result<Vec<IsoEntry>, IsoReadError> {
        let dir = self.lookup(inner)?.ok_or_else(|| self.not_found(inner))?;
        self.children(&dir)
    }

    /// The entries of a directory found before (without `.` and `..`), in the image's order.
    pub fn children(&self, dir: &IsoEntry) -> Result<Vec<IsoEntry>, IsoReadError> {
        if !dir.is_dir {
            return Err(IsoReadError::NotADirectory {
                path: self.path.clone(),
                inner: dir.name.clone(),
            });
        }
        if dir.size > MAX_DIRECTORY_BYTES {
            return Err(self.unsupported(format!(
                "directory {} is {} bytes of records, more than the {MAX_DIRECTORY_BYTES} kiln reads",
                dir.name, dir.size
            )));
        }
        let what = format!("directory {}", display_name(&dir.name));
        let records = self.read_at(block_offset(dir.extent), dir.size, &what)?;
        self.parse_directory(&records, &what)
    }

    /// The whole content of a small file (a boot menu), refused past `limit` bytes.
    pub fn read(&self, entry: &IsoEntry, limit: u64) -> Result<Vec<u8>, IsoReadError> {
        self.check_regular(entry)?;
        if entry.size > limit {
            return Err(IsoReadError::TooLarge {
                path: self.path.clone(),
                inner: entry.name.clone(),
                size: entry.size,
                limit,
            });
        }
        let mut bytes = Vec::new();
        for part in &entry.parts {
            let what = format!("file {}", entry.name);
            bytes.extend(self.read_at(block_offset(part.block), part.len.into(), &what)?);
        }
        Ok(bytes)
    }

    /// Copy a file's bytes to `dest`, through a temporary file beside it renamed into place,
    /// so a failure never leaves half a kernel under the real name.
    pub fn extract(&self, entry: &IsoEntry, dest: &Path) -> Result<(), IsoReadError> {
        self.check_regular(entry)?;
        let what = format!("file {}", entry.name);
        for part in &entry.parts {
            self.check_range(block_offset(part.block), part.len.into(), &what)?;
        }
        let write_error = |source| IsoReadError::Write {
            dest: dest.to_path_buf(),
            iso: self.path.clone(),
            source,
        };
        let dir = crate::engine::host::temp_file::parent_dir(dest);
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp = TempFile::create(&dir, &name, "extract").map_err(write_error)?;
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .open(temp.path())
            .map_err(write_error)?;
        for part in &entry.parts {
            self.copy_part(*part, &mut out, &what, dest)?;
        }
        out.sync_all().map_err(write_error)?;
        temp.rename_to(dest).map_err(write_error)
    }

    fn copy_part(
        &self,
        part: Extent,
        out: &mut File,
        what: &str,
        dest: &Path,
    ) -> Result<(), IsoReadError> {
        let start = block_offset(part.block);
        let end = start + u64::from(part.len);
        let mut buffer = vec![0u8; u64::from(part.len).min(COPY_CHUNK) as usize];
        let mut at = start;
        while at < end {
            let chunk = (end - at).min(COPY_CHUNK) as usize;
            self.file
                .read_exact_at(&mut buffer[..chunk], at)
                .map_err(|source| self.read_error(source, what))?;
            out.write_all(&buffer[..chunk])
                .map_err(|source| IsoReadError::Write {
                    dest: dest.to_path_buf(),
                    iso: self.path.clone(),
                    source,
                })?;
            at += chunk as u64;
        }
        Ok(())
    }

    fn check_regular(&self, entry: &IsoEntry) -> Result<(), IsoReadError> {
        if entry.is_dir || entry.symlink.is_some() {
            return Err(IsoReadError::NotARegularFile {
                path: self.path.clone(),
                inner: entry.name.clone(),
            });
        }
        if entry.interleaved {
            return Err(self.unsupported(format!("{} is an interleaved file", entry.name)));
        }
        Ok(())
    }

    /// `len` bytes at `offset`, after checking they lie inside the image.
    fn read_at(&self, offset: u64, len: u64, what: &str) -> Result<Vec<u8>, IsoReadError> {
        self.check_range(offset, len, what)?;
        // Bounded by the image's size (checked above) and by each caller's own limit.
        let mut bytes = vec![0u8; len as usize];
        self.file
            .read_exact_at(&mut bytes, offset)
            .map_err(|source| self.read_error(source, what))?;
        Ok(bytes)
    }

    fn check_range(&self, offset: u64, len: u64, what: &str) -> Result<(), IsoReadError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(()),
            end => Err(IsoReadError::Truncated {
                path: self.path.clone(),
                what: what.to_string(),
                start: offset,
                end: end.unwrap_or(u64::MAX),
                len: self.len,
            }),
        }
    }

    fn read_error(&self, source: std::io::Error, what: &str) -> IsoReadError {
        IsoReadError::Read {
            path: self.path.clone(),
            source: std::io::Error::new(source.kind(), format!("{what}: {source}")),
        }
    }

    fn damaged(&self, what: String) -> IsoReadError {
        IsoReadError::Damaged {
            path: self.path.clone(),
            what,
        }
    }

    fn unsupported(&self, what: String) -> IsoReadError {
        IsoReadError::Unsupported {
            path: self.path.clone(),
            what,
        }
    }

    fn not_found(&self, inner: &str) -> IsoReadError {
        IsoReadError::NotFound {
            path: self.path.clone(),
            inner: inner.to_string(),
        }
    }
}

impl IsoEntry {
    /// Stands in for the root while the descriptors are read.
    fn placeholder() -> IsoEntry {
        IsoEntry {
            name: String::new(),
            is_dir: true,
            size: 0,
            extent: 0,
            symlink: None,
            exact_name: true,
            parts: Vec::new(),
            interleaved: false,
        }
    }
}

fn components(path: &str) -> impl Iterator<Item = String> + '_ {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(str::to_string)
}

fn display_name(name: &str) -> &str {
    if name.is_empty() { "/" } else { name }
}

fn block_offset(block: u32) -> u64 {
    u64::from(block) * SECTOR
}

#[cfg(test)]
pub(super) mod tests;
