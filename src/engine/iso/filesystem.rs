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

use crate::engine::temp_file::TempFile;

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

/// The volume descriptors kiln uses.
struct Descriptors {
    primary: Vec<u8>,
    joliet: Option<Vec<u8>>,
}

/// What the fields of one directory record say, before names are decoded.
struct RawRecord<'a> {
    block: u32,
    len: u32,
    flags: u8,
    interleaved: bool,
    identifier: &'a [u8],
    system_use: &'a [u8],
}

/// What Rock Ridge says about one record.
#[derive(Debug, Default, PartialEq, Eq)]
struct RockRidge {
    name: Option<String>,
    symlink: Option<String>,
    /// CL: the directory was moved (deep relocation); this is where it really is.
    child_link: Option<u32>,
    /// RE: this is the moved directory itself, listed under its placeholder's name instead.
    relocated: bool,
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
        let dir = crate::engine::temp_file::parent_dir(dest);
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

    /// Sector 16 on: the primary descriptor (required) and a Joliet one (optional).
    fn read_descriptors(&self) -> Result<Descriptors, IsoReadError> {
        let mut primary = None;
        let mut joliet = None;
        for index in FIRST_DESCRIPTOR..FIRST_DESCRIPTOR + MAX_DESCRIPTORS {
            let offset = index * SECTOR;
            if offset + SECTOR > self.len {
                break;
            }
            let sector = self.read_at(offset, SECTOR, "a volume descriptor")?;
            if &sector[1..6] != b"CD001" {
                break;
            }
            match sector[0] {
                1 if primary.is_none() => primary = Some(sector),
                2 if joliet.is_none() && is_joliet(&sector) => joliet = Some(sector),
                255 => break,
                _ => {}
            }
        }
        match primary {
            Some(primary) => Ok(Descriptors { primary, joliet }),
            None => Err(IsoReadError::NotIso(self.path.clone())),
        }
    }

    /// The root directory record stored in a volume descriptor (bytes 156..190).
    fn root_from(&self, descriptor: &[u8], which: &str) -> Result<IsoEntry, IsoReadError> {
        let what = format!("the {which} volume descriptor's root directory record");
        let record = parse_record(&descriptor[156..190])
            .ok_or_else(|| self.damaged(format!("{what} is malformed")))?;
        if record.flags & FLAG_DIRECTORY == 0 {
            return Err(self.damaged(format!("{what} is not a directory")));
        }
        Ok(IsoEntry {
            name: String::new(),
            is_dir: true,
            size: record.len.into(),
            extent: record.block,
            symlink: None,
            exact_name: true,
            parts: vec![Extent {
                block: record.block,
                len: record.len,
            }],
            interleaved: false,
        })
    }

    /// Rock Ridge is there when the root's `.` record starts its System Use area with SUSP's
    /// SP entry (`SP`, 7, 1, 0xBE, 0xEF, LEN_SKP); returns LEN_SKP.
    fn rock_ridge_skip(&self) -> Result<Option<usize>, IsoReadError> {
        let first = self.root.size.min(SECTOR);
        let sector = self.read_at(block_offset(self.root.extent), first, "the root directory")?;
        let record_len = usize::from(*sector.first().unwrap_or(&0));
        let Some(record) = sector.get(..record_len).and_then(parse_record) else {
            return Ok(None);
        };
        Ok(match record.system_use {
            [b'S', b'P', 7, 1, 0xBE, 0xEF, skip, ..] => Some(usize::from(*skip)),
            _ => None,
        })
    }

    /// Decode a directory's records: `.` and `..` skipped, multi-extent parts joined,
    /// Rock Ridge relocations undone.
    fn parse_directory(&self, bytes: &[u8], what: &str) -> Result<Vec<IsoEntry>, IsoReadError> {
        let mut entries = Vec::new();
        // A multi-extent file whose last part has not come yet, with its raw identifier.
        let mut unfinished: Option<(&[u8], IsoEntry)> = None;
        let mut continuations = MAX_DIRECTORY_CONTINUATIONS;
        for record in self.split_records(bytes, what)? {
            if matches!(record.identifier, [0] | [1]) || record.flags & FLAG_ASSOCIATED != 0 {
                continue;
            }
            let entry = match unfinished.take() {
                Some((identifier, entry)) => self.add_part(identifier, entry, &record, what)?,
                None => match self.entry_from(&record, &mut continuations)? {
                    Some(entry) => entry,
                    None => continue,
                },
            };
            if record.flags & FLAG_MULTI_EXTENT == 0 {
                entries.push(entry);
            } else {
                unfinished = Some((record.identifier, entry));
            }
        }
        match unfinished {
            Some((_, entry)) => Err(self.cut_multi_extent(&entry, what)),
            None => Ok(entries),
        }
    }

    /// The records in a directory's bytes. Records never cross a sector boundary: a zero
    /// length byte means the rest of the sector is padding.
    fn split_records<'a>(
        &self,
        bytes: &'a [u8],
        what: &str,
    ) -> Result<Vec<RawRecord<'a>>, IsoReadError> {
        let mut records = Vec::new();
        let mut at = 0usize;
        while at < bytes.len() {
            let record_len = usize::from(bytes[at]);
            let sector_left = SECTOR as usize - at % SECTOR as usize;
            if record_len == 0 {
                at += sector_left;
                continue;
            }
            if record_len > sector_left || at + record_len > bytes.len() {
                return Err(self.damaged(format!(
                    "a record in {what} at byte {at} runs past its sector"
                )));
            }
            let record = parse_record(&bytes[at..at + record_len]).ok_or_else(|| {
                self.damaged(format!("a record in {what} at byte {at} is malformed"))
            })?;
            records.push(record);
            at += record_len;
        }
        Ok(records)
    }

    /// The next part of a multi-extent file: the next record, under the same identifier.
    fn add_part(
        &self,
        identifier: &[u8],
        mut entry: IsoEntry,
        record: &RawRecord,
        what: &str,
    ) -> Result<IsoEntry, IsoReadError> {
        if record.identifier != identifier {
            return Err(self.cut_multi_extent(&entry, what));
        }
        if entry.parts.len() >= MAX_EXTENTS {
            return Err(self.unsupported(format!(
                "{} has more than {MAX_EXTENTS} extents",
                entry.name
            )));
        }
        entry.parts.push(Extent {
            block: record.block,
            len: record.len,
        });
        entry.size += u64::from(record.len);
        Ok(entry)
    }

    fn cut_multi_extent(&self, entry: &IsoEntry, what: &str) -> IsoReadError {
        self.damaged(format!(
            "multi-extent file {} in {what} stops before its last part",
            entry.name
        ))
    }

    /// One record as an entry; `None` for a directory Rock Ridge moved (its placeholder lists it).
    fn entry_from(
        &self,
        record: &RawRecord,
        continuations: &mut usize,
    ) -> Result<Option<IsoEntry>, IsoReadError> {
        let rock_ridge = match self.names {
            NameSource::RockRidge => self.rock_ridge(record.system_use, continuations)?,
            _ => RockRidge::default(),
        };
        if rock_ridge.relocated {
            return Ok(None);
        }
        let (name, exact_name) = match (rock_ridge.name, self.names) {
            (Some(name), _) => (name, true),
            (None, NameSource::Joliet) => (joliet_name(record.identifier), true),
            (None, _) => (plain_name(record.identifier), false),
        };
        let mut entry = IsoEntry {
            name,
            is_dir: record.flags & FLAG_DIRECTORY != 0,
            size: record.len.into(),
            extent: record.block,
            symlink: rock_ridge.symlink,
            exact_name,
            parts: vec![Extent {
                block: record.block,
                len: record.len,
            }],
            interleaved: record.interleaved,
        };
        if let Some(block) = rock_ridge.child_link {
            entry = self.relocated_directory(entry, block)?;
        }
        Ok(Some(entry))
    }

    /// A deep directory that mkisofs moved to `rr_moved`: its `.` record says how big it is.
    fn relocated_directory(&self, entry: IsoEntry, block: u32) -> Result<IsoEntry, IsoReadError> {
        let what = format!("relocated directory {}", entry.name);
        let sector = self.read_at(block_offset(block), SECTOR, &what)?;
        let record_len = usize::from(sector[0]);
        let record = sector
            .get(..record_len)
            .and_then(parse_record)
            .filter(|r| r.identifier == [0] && r.flags & FLAG_DIRECTORY != 0)
            .ok_or_else(|| self.damaged(format!("{what} does not start with its `.` record")))?;
        Ok(IsoEntry {
            is_dir: true,
            size: record.len.into(),
            extent: record.block,
            symlink: None,
            parts: vec![Extent {
                block: record.block,
                len: record.len,
            }],
            ..entry
        })
    }

    /// Walk the SUSP entries of a record's System Use area and the continuation areas (CE)
    /// it chains to, collecting the Rock Ridge name (NM), link (SL) and relocation (CL, RE).
    /// `budget` counts down the continuation areas the whole directory may still read.
    fn rock_ridge(&self, system_use: &[u8], budget: &mut usize) -> Result<RockRidge, IsoReadError> {
        let mut found = RockRidge::default();
        let mut name = NameParts::default();
        let mut link = LinkParts::default();
        let mut area = system_use
            .get(self.susp_skip..)
            .unwrap_or_default()
            .to_vec();
        let mut continuations = 0;
        loop {
            let next = walk_susp(&area, &mut found, &mut name, &mut link);
            let Some((block, offset, len)) = next else {
                break;
            };
            continuations += 1;
            if continuations > MAX_CONTINUATIONS {
                return Err(self.damaged(format!(
                    "a Rock Ridge record chains more than {MAX_CONTINUATIONS} continuation areas"
                )));
            }
            *budget = budget.checked_sub(1).ok_or_else(|| {
                self.damaged(format!(
                    "a directory chains more than {MAX_DIRECTORY_CONTINUATIONS} Rock Ridge continuation areas"
                ))
            })?;
            // Like Linux: a continuation area lies inside one block.
            if u64::from(offset) + u64::from(len) > SECTOR {
                return Err(self.damaged(format!(
                    "a Rock Ridge continuation area ({len} bytes at offset {offset}) crosses its block"
                )));
            }
            let start = block_offset(block) + u64::from(offset);
            area = self.read_at(start, len.into(), "a Rock Ridge continuation area")?;
        }
        found.name = name.finish();
        found.symlink = link.finish();
        Ok(found)
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

/// Walk one area's SUSP entries; returns the continuation area (block, offset, length) if a
/// CE entry names one. A malformed entry ends the walk, as in Linux: what came before counts.
fn walk_susp(
    area: &[u8],
    found: &mut RockRidge,
    name: &mut NameParts,
    link: &mut LinkParts,
) -> Option<(u32, u32, u32)> {
    let mut continuation = None;
    let mut rest = area;
    while rest.len() >= 4 {
        let len = usize::from(rest[2]);
        if len < 4 || len > rest.len() {
            break;
        }
        let (entry, after) = rest.split_at(len);
        rest = after;
        match &entry[..2] {
            b"NM" if len >= 5 => name.push(entry[4], &entry[5..]),
            b"SL" if len >= 5 => link.push(&entry[5..]),
            b"CE" if len >= 28 => {
                continuation = Some((
                    le_u32(&entry[4..8]),
                    le_u32(&entry[12..16]),
                    le_u32(&entry[20..24]),
                ));
            }
            b"CL" if len >= 12 => found.child_link = Some(le_u32(&entry[4..8])),
            b"RE" => found.relocated = true,
            b"ST" => break,
            _ => {}
        }
    }
    continuation
}

/// A Rock Ridge name, possibly spread over several NM entries (flag 1: more follows).
#[derive(Default)]
struct NameParts {
    bytes: Vec<u8>,
    seen: bool,
    done: bool,
}

impl NameParts {
    fn push(&mut self, flags: u8, part: &[u8]) {
        // Flags 2 and 4 name `.` and `..`, which kiln skips anyway.
        if self.done || flags & 0x06 != 0 {
            return;
        }
        self.seen = true;
        let room = MAX_NAME_BYTES.saturating_sub(self.bytes.len());
        self.bytes.extend_from_slice(&part[..part.len().min(room)]);
        self.done = flags & 0x01 == 0;
    }

    fn finish(self) -> Option<String> {
        (self.seen && !self.bytes.is_empty())
            .then(|| String::from_utf8_lossy(&self.bytes).into_owned())
    }
}

/// A Rock Ridge symbolic link target: component records, over one or more SL entries.
#[derive(Default)]
struct LinkParts {
    target: String,
    seen: bool,
    /// The last component continues in the next record (no `/` between them).
    glued: bool,
}

impl LinkParts {
    fn push(&mut self, mut records: &[u8]) {
        self.seen = true;
        while let [flags, len, rest @ ..] = records {
            let len = usize::from(*len);
            let Some(content) = rest.get(..len) else {
                break;
            };
            records = &rest[len..];
            if self.target.len() > MAX_NAME_BYTES {
                break;
            }
            if flags & 0x08 != 0 {
                self.target = "/".to_string();
                self.glued = false;
                continue;
            }
            if !self.glued && !self.target.is_empty() && !self.target.ends_with('/') {
                self.target.push('/');
            }
            match flags & 0x06 {
                0x02 => self.target.push('.'),
                0x04 => self.target.push_str(".."),
                _ => self.target.push_str(&String::from_utf8_lossy(content)),
            }
            self.glued = flags & 0x01 != 0;
        }
    }

    fn finish(self) -> Option<String> {
        self.seen.then_some(self.target)
    }
}

/// The fields of a directory record (ECMA-119 9.1), or `None` when its lengths do not fit.
fn parse_record(bytes: &[u8]) -> Option<RawRecord<'_>> {
    let record_len = usize::from(*bytes.first()?);
    let bytes = bytes.get(..record_len)?;
    if record_len < RECORD_HEADER + 1 {
        return None;
    }
    let attribute_blocks = u32::from(bytes[1]);
    let name_len = usize::from(bytes[32]);
    let name_end = RECORD_HEADER + name_len;
    let identifier = bytes.get(RECORD_HEADER..name_end)?;
    // A pad byte keeps the System Use area at an even offset.
    let system_use = bytes
        .get(name_end + (name_len + 1) % 2..)
        .unwrap_or_default();
    Some(RawRecord {
        // The data starts after the extended attribute record, if the record has one.
        block: le_u32(&bytes[2..6]).checked_add(attribute_blocks)?,
        len: le_u32(&bytes[10..14]),
        flags: bytes[25],
        interleaved: bytes[26] != 0 || bytes[27] != 0,
        identifier,
        system_use,
    })
}

/// A supplementary descriptor is Joliet when its escape sequences name UCS-2 level 1, 2 or 3.
fn is_joliet(descriptor: &[u8]) -> bool {
    matches!(&descriptor[88..91], b"%/@" | b"%/C" | b"%/E")
}

/// `VMLINUZ.;1` → `VMLINUZ`: the version and an empty extension's dot are not part of the name.
fn plain_name(identifier: &[u8]) -> String {
    let text = String::from_utf8_lossy(identifier);
    let without_version = text.split(';').next().unwrap_or_default();
    without_version.trim_end_matches('.').to_string()
}

/// Joliet names are UCS-2 big-endian (read as UTF-16, so surrogate pairs survive), versioned.
fn joliet_name(identifier: &[u8]) -> String {
    let units: Vec<u16> = identifier
        .chunks_exact(2)
        .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
        .collect();
    let text = String::from_utf16_lossy(&units);
    match text.rsplit_once(';') {
        Some((name, version)) if version.chars().all(|c| c.is_ascii_digit()) => name.to_string(),
        _ => text,
    }
}

/// A name as mkisofs writes it in plain ISO 9660: upper case, anything but `A-Z 0-9 _ .` as `_`.
fn d_chars(name: &str) -> String {
    name.chars()
        .map(|c| match c.to_ascii_uppercase() {
            c @ ('A'..='Z' | '0'..='9' | '_' | '.') => c,
            _ => '_',
        })
        .collect()
}

/// A space-padded a-characters field of a volume descriptor.
fn text_field(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .trim_end_matches([' ', '\0'])
        .to_string()
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

/// ISO 9660 stores numbers both-endian; the little-endian half is read.
fn le_u32(bytes: &[u8]) -> u32 {
    u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::process::Command;

    /// Build `out` from `tree` with `xorriso -as mkisofs OPTIONS`. The tests need a real tool's
    /// images, so a missing xorriso fails them (apt-get install xorriso) rather than skipping.
    pub(crate) fn build_iso(tree: &Path, options: &[&str], out: &Path) {
        let output = Command::new("xorriso")
            .args(["-as", "mkisofs", "-quiet", "-o"])
            .arg(out)
            .args(options)
            .arg(tree)
            .output()
            .expect("these tests build ISOs with xorriso: apt-get install xorriso");
        assert!(
            output.status.success(),
            "xorriso failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Create `files` (path relative to `root`, content) with their directories.
    pub(crate) fn write_tree(root: &Path, files: &[(&str, &[u8])]) {
        for (path, content) in files {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
    }

    /// Bytes that differ from file to file and from block to block.
    fn pattern(len: usize, seed: u32) -> Vec<u8> {
        let mut state = seed.wrapping_mul(2_654_435_761).max(1);
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                state as u8
            })
            .collect()
    }

    struct Sample {
        dir: tempfile::TempDir,
        files: Vec<(String, Vec<u8>)>,
    }

    /// A small installer-like tree: a kernel, an initrd over many sectors, an empty file, a
    /// name with capitals and spaces.
    fn sample_tree() -> Sample {
        let dir = tempfile::tempdir().unwrap();
        let files = vec![
            ("vmlinuz".to_string(), pattern(5000, 1)),
            ("install.amd/initrd.gz".to_string(), pattern(70_001, 2)),
            ("install.amd/empty".to_string(), Vec::new()),
            ("boot/vmlinuz-lts".to_string(), pattern(2048, 3)),
            ("docs/Mixed Case Name.txt".to_string(), b"hello".to_vec()),
        ];
        let refs: Vec<(&str, &[u8])> = files
            .iter()
            .map(|(p, c)| (p.as_str(), c.as_slice()))
            .collect();
        write_tree(&dir.path().join("tree"), &refs);
        Sample { dir, files }
    }

    fn iso_of(sample: &Sample, options: &[&str]) -> IsoFilesystem {
        let out = sample.dir.path().join(format!("{}.iso", options.join("")));
        build_iso(&sample.dir.path().join("tree"), options, &out);
        IsoFilesystem::open(&out).unwrap()
    }

    /// Every file of the sample is found, listed and extracted byte for byte.
    fn assert_sample_reads_back(iso: &IsoFilesystem, sample: &Sample) {
        let out = sample.dir.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        for (path, content) in &sample.files {
            let entry = iso
                .lookup(path)
                .unwrap()
                .unwrap_or_else(|| panic!("{path} not found"));
            assert!(!entry.is_dir);
            assert_eq!(entry.size, content.len() as u64, "{path}");
            let dest = out.join(path.replace('/', "_"));
            iso.extract(&entry, &dest).unwrap();
            assert_eq!(&std::fs::read(&dest).unwrap(), content, "{path}");
        }
        let mut root: Vec<(String, bool)> = iso
            .list("/")
            .unwrap()
            .into_iter()
            .map(|e| (e.name.to_ascii_lowercase(), e.is_dir))
            .collect();
        root.sort();
        let expected = [
            ("boot", true),
            ("docs", true),
            ("install.amd", true),
            ("vmlinuz", false),
        ];
        assert_eq!(root, expected.map(|(n, d)| (n.to_string(), d)));
        assert_eq!(iso.list("/install.amd").unwrap().len(), 2);
        assert!(iso.lookup("/install.amd/missing").unwrap().is_none());
        assert!(iso.lookup("/vmlinuz/below-a-file").unwrap().is_none());
        assert!(iso.lookup("/install.amd").unwrap().unwrap().is_dir);
        // `.` and `..` walk the tree like a path on disk.
        let again = iso.lookup("/install.amd/./../vmlinuz").unwrap().unwrap();
        assert_eq!(again.size, 5000);
    }

    #[test]
    fn rock_ridge_names_are_exact() {
        let sample = sample_tree();
        let iso = iso_of(&sample, &["-R"]);
        assert_eq!(iso.names(), NameSource::RockRidge);
        assert_sample_reads_back(&iso, &sample);
        assert!(iso.lookup("/docs/Mixed Case Name.txt").unwrap().is_some());
        assert!(
            iso.lookup("/VMLINUZ").unwrap().is_none(),
            "Rock Ridge names are case-sensitive"
        );
    }

    #[test]
    fn joliet_names_are_read_when_there_is_no_rock_ridge() {
        let sample = sample_tree();
        let iso = iso_of(&sample, &["--norock", "-J"]);
        assert_eq!(iso.names(), NameSource::Joliet);
        assert_sample_reads_back(&iso, &sample);
        assert!(iso.lookup("/docs/Mixed Case Name.txt").unwrap().is_some());
        assert!(
            iso.lookup("/VMLINUZ").unwrap().is_none(),
            "Joliet names are matched exactly"
        );
    }

    #[test]
    fn plain_iso9660_names_match_case_insensitively() {
        let sample = sample_tree();
        let iso = iso_of(&sample, &["--norock", "-iso-level", "2"]);
        assert_eq!(iso.names(), NameSource::Iso9660);
        assert_sample_reads_back(&iso, &sample);
        // Stored as VMLINUZ.;1 and VMLINUZ_LTS.;1: version, dot and mapped `-` are no obstacle.
        assert_eq!(iso.lookup("/VMLINUZ").unwrap().unwrap().name, "VMLINUZ");
        assert!(iso.lookup("/boot/vmlinuz-lts").unwrap().is_some());
    }

    #[test]
    fn rock_ridge_wins_over_joliet_and_volume_id_is_read() {
        let sample = sample_tree();
        let iso = iso_of(&sample, &["-R", "-J", "-V", "Fedora-S-dvd-x86_64-40"]);
        assert_eq!(iso.names(), NameSource::RockRidge);
        assert_eq!(iso.volume_id(), "Fedora-S-dvd-x86_64-40");
        assert_sample_reads_back(&iso, &sample);
    }

    #[test]
    fn long_names_continue_into_continuation_areas_and_links_are_followed() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        let long = "a-really-long-file-name-".repeat(10);
        write_tree(
            &tree,
            &[
                (&format!("boot/{long}"), b"long"),
                ("boot/vmlinuz-6.1", b"kernel"),
            ],
        );
        std::os::unix::fs::symlink("vmlinuz-6.1", tree.join("boot/vmlinuz")).unwrap();
        std::os::unix::fs::symlink("boot", tree.join("current")).unwrap();
        std::os::unix::fs::symlink("/current/vmlinuz", tree.join("absolute")).unwrap();
        std::os::unix::fs::symlink("loop", tree.join("loop")).unwrap();
        let out = dir.path().join("rr.iso");
        build_iso(&tree, &["-R"], &out);
        let iso = IsoFilesystem::open(&out).unwrap();

        let entry = iso.lookup(&format!("/boot/{long}")).unwrap().unwrap();
        assert_eq!(entry.name, long);
        let listed = iso.list("/").unwrap();
        let link = listed.iter().find(|e| e.name == "current").unwrap();
        assert_eq!(link.symlink.as_deref(), Some("boot"));
        for path in [
            "/boot/vmlinuz",
            "/current/vmlinuz",
            "/absolute",
            "/current/../boot/vmlinuz",
        ] {
            let kernel = iso
                .lookup(path)
                .unwrap()
                .unwrap_or_else(|| panic!("{path}"));
            assert_eq!(iso.read(&kernel, 100).unwrap(), b"kernel", "{path}");
        }
        let looped = iso.lookup("/loop").unwrap_err().to_string();
        assert!(looped.contains("symbolic links"), "{looped}");
        let not_file = iso.extract(link, &dir.path().join("x")).unwrap_err();
        assert!(
            matches!(not_file, IsoReadError::NotARegularFile { .. }),
            "{not_file}"
        );
        assert!(!dir.path().join("x").exists());
    }

    /// Every entry below `dir` (depth and count bounded: the image may be garbage).
    fn walk(
        iso: &IsoFilesystem,
        dir: &IsoEntry,
        prefix: &str,
        depth: usize,
        out: &mut Vec<(String, IsoEntry)>,
    ) -> Result<(), IsoReadError> {
        if depth > 20 || out.len() > 5000 {
            return Ok(());
        }
        for child in iso.children(dir)? {
            let path = format!("{prefix}/{}", child.name);
            out.push((path.clone(), child.clone()));
            if child.is_dir && child.symlink.is_none() {
                walk(iso, &child, &path, depth + 1, out)?;
            }
        }
        Ok(())
    }

    #[test]
    fn deep_trees_and_directories_of_many_sectors() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        let deep = "d1/d2/d3/d4/d5/d6/d7/d8/d9/d10/d11/d12/deep.txt";
        let mut files: Vec<(String, Vec<u8>)> = vec![(deep.to_string(), b"bottom".to_vec())];
        for n in 0..300 {
            files.push((
                format!("many/file-number-{n:03}.txt"),
                format!("content {n}").into_bytes(),
            ));
        }
        let refs: Vec<(&str, &[u8])> = files
            .iter()
            .map(|(p, c)| (p.as_str(), c.as_slice()))
            .collect();
        write_tree(&tree, &refs);
        for (options, source) in [
            (&["-R"][..], NameSource::RockRidge),
            (&["--norock", "-J"][..], NameSource::Joliet),
        ] {
            let out = dir.path().join(format!("deep{}.iso", options.join("")));
            build_iso(&tree, options, &out);
            let iso = IsoFilesystem::open(&out).unwrap();
            assert_eq!(iso.names(), source);
            let many = iso.lookup("/many").unwrap().unwrap();
            assert!(
                many.size > 4 * SECTOR,
                "the directory spans several sectors: {}",
                many.size
            );
            let listed = iso.list("/many").unwrap();
            assert_eq!(listed.len(), 300, "{options:?}");
            for (path, content) in &files {
                let entry = iso
                    .lookup(path)
                    .unwrap()
                    .unwrap_or_else(|| panic!("{path} in {options:?}"));
                assert_eq!(&iso.read(&entry, 1000).unwrap(), content, "{path}");
            }
            let mut everything = Vec::new();
            walk(&iso, iso.root(), "", 0, &mut everything).unwrap();
            assert_eq!(everything.iter().filter(|(_, e)| !e.is_dir).count(), 301);
        }
    }

    /// Relocated deep directories (mkisofs's rr_moved) are read through their placeholders.
    #[test]
    fn relocated_deep_directories_are_found_where_rock_ridge_says() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        let deep = "d1/d2/d3/d4/d5/d6/d7/d8/d9/d10/deep.txt";
        write_tree(&tree, &[(deep, b"bottom")]);
        let out = dir.path().join("reloc.iso");
        build_iso(&tree, &["-R", "-rr_reloc_dir", "rr_moved"], &out);
        let mut iso = IsoFilesystem::open(&out).unwrap();
        let entry = iso.lookup(deep).unwrap().unwrap();
        assert_eq!(iso.read(&entry, 100).unwrap(), b"bottom");
        // The moved directory is listed only under its old place (its RE entry hides it).
        let names = |iso: &IsoFilesystem| -> Vec<String> {
            iso.list("/").unwrap().into_iter().map(|e| e.name).collect()
        };
        assert_eq!(names(&iso), ["d1"]);
        iso.names = NameSource::Iso9660;
        assert_eq!(names(&iso), ["D1", "RR_MOVED"], "mkisofs did relocate");
    }

    fn set_both_endian(field: &mut [u8], value: u32) {
        field[..4].copy_from_slice(&value.to_le_bytes());
        field[4..8].copy_from_slice(&value.to_be_bytes());
    }

    /// Files of 4 GiB and more come as several records; a real one is too big for a test, so
    /// a record that xorriso wrote is split in two, its halves swapped to show the order.
    #[test]
    fn multi_extent_files_are_read_part_by_part() {
        let dir = tempfile::tempdir().unwrap();
        let content = pattern(2 * SECTOR as usize, 7);
        write_tree(
            &dir.path().join("tree"),
            &[("a", b"a"), ("zzz-big", &content)],
        );
        let out = dir.path().join("multi.iso");
        build_iso(&dir.path().join("tree"), &["-R"], &out);
        let iso = IsoFilesystem::open(&out).unwrap();
        let root_at = block_offset(iso.root().extent) as usize;
        let mut image = std::fs::read(&out).unwrap();
        let sector = &mut image[root_at..root_at + SECTOR as usize];
        let (at, len) = record_named(sector, b"ZZZ_BIG");
        assert!(
            sector[at + 2 * len..].iter().all(|b| *b == 0),
            "room after the last record"
        );
        let record = sector[at..at + len].to_vec();
        let block = le_u32(&record[2..6]);
        let (mut first, mut second) = (record.clone(), record);
        first[25] |= FLAG_MULTI_EXTENT;
        set_both_endian(&mut first[2..10], block + 1);
        set_both_endian(&mut first[10..18], SECTOR as u32);
        set_both_endian(&mut second[10..18], SECTOR as u32);
        sector[at..at + len].copy_from_slice(&first);
        sector[at + len..at + 2 * len].copy_from_slice(&second);
        std::fs::write(&out, &image).unwrap();

        let iso = IsoFilesystem::open(&out).unwrap();
        let entry = iso.lookup("/zzz-big").unwrap().unwrap();
        assert_eq!(entry.size, 2 * SECTOR);
        assert_eq!(entry.parts.len(), 2);
        assert_eq!(iso.list("/").unwrap().len(), 2, "one entry, not two");
        let dest = dir.path().join("big");
        iso.extract(&entry, &dest).unwrap();
        let swapped = [&content[SECTOR as usize..], &content[..SECTOR as usize]].concat();
        assert_eq!(std::fs::read(&dest).unwrap(), swapped);

        // The first part alone (its last part gone) is an error, not half a file.
        let (at, len) = record_named(&image[root_at..root_at + SECTOR as usize], b"ZZZ_BIG");
        image[root_at + at + len..root_at + at + 2 * len].fill(0);
        std::fs::write(&out, &image).unwrap();
        let error = IsoFilesystem::open(&out).unwrap().list("/").unwrap_err();
        assert!(
            error.to_string().contains("stops before its last part"),
            "{error}"
        );
    }

    /// Offset and length of the first record whose ISO 9660 identifier starts with `prefix`.
    fn record_named(sector: &[u8], prefix: &[u8]) -> (usize, usize) {
        let mut at = 0;
        while at < sector.len() && sector[at] != 0 {
            let record = parse_record(&sector[at..]).unwrap();
            if record.identifier.starts_with(prefix) {
                return (at, usize::from(sector[at]));
            }
            at += usize::from(sector[at]);
        }
        panic!("no record {prefix:?}");
    }

    /// Open, walk and extract everything small; the errors met (a panic fails the test).
    fn read_everything(path: &Path, out: &Path) -> Vec<IsoReadError> {
        let iso = match IsoFilesystem::open(path) {
            Ok(iso) => iso,
            Err(error) => return vec![error],
        };
        let mut errors = Vec::new();
        let mut entries = Vec::new();
        if let Err(error) = walk(&iso, iso.root(), "", 0, &mut entries) {
            errors.push(error);
        }
        for (index, (_, entry)) in entries.iter().enumerate() {
            if !entry.is_dir && entry.size <= 1 << 20 {
                errors.extend(iso.extract(entry, &out.join(index.to_string())).err());
            }
        }
        errors
    }

    fn sample_image() -> (Sample, PathBuf) {
        let sample = sample_tree();
        let path = sample.dir.path().join("good.iso");
        build_iso(&sample.dir.path().join("tree"), &["-R", "-J"], &path);
        (sample, path)
    }

    #[test]
    fn cut_short_images_are_errors_not_panics() {
        let (sample, good) = sample_image();
        let image = std::fs::read(&good).unwrap();
        let out = sample.dir.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        assert!(read_everything(&good, &out).is_empty());
        let iso = IsoFilesystem::open(&good).unwrap();
        let initrd = iso.lookup("/install.amd/initrd.gz").unwrap().unwrap();
        let data_end = block_offset(initrd.extent) + initrd.size;
        let cut_path = sample.dir.path().join("cut.iso");
        let mut cuts: Vec<usize> = (0..image.len()).step_by(SECTOR as usize / 2).collect();
        cuts.extend([1, 100, 16 * 2048 + 1, data_end as usize - 1]);
        for cut in cuts {
            std::fs::write(&cut_path, &image[..cut]).unwrap();
            let errors = read_everything(&cut_path, &out);
            if cut < 17 * SECTOR as usize {
                assert!(
                    matches!(errors[..], [IsoReadError::NotIso(_)]),
                    "{cut}: {errors:?}"
                );
            } else if (cut as u64) < data_end {
                assert!(!errors.is_empty(), "cut at {cut} went unnoticed");
            }
        }
        assert_no_temporary_files(&out);
    }

    fn assert_no_temporary_files(dir: &Path) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            assert!(!name.contains(".kiln-"), "{name} left behind");
        }
    }

    #[test]
    fn garbled_images_are_errors_not_panics() {
        let (sample, good) = sample_image();
        let image = std::fs::read(&good).unwrap();
        let out = sample.dir.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        // Descriptors, path tables and directories lie before the first file's data.
        let iso = IsoFilesystem::open(&good).unwrap();
        let mut entries = Vec::new();
        walk(&iso, iso.root(), "", 0, &mut entries).unwrap();
        let metadata_end = entries
            .iter()
            .filter(|(_, e)| !e.is_dir && e.size > 0)
            .map(|(_, e)| block_offset(e.extent))
            .min()
            .unwrap() as usize;
        let bad = sample.dir.path().join("bad.iso");
        let mut random = pattern(4 * 2000 * 8, 99).into_iter();
        let mut next = || u32::from_le_bytes([0; 4].map(|_| random.next().unwrap()));
        let mut errors = 0;
        for _ in 0..600 {
            let mut garbled = image.clone();
            for _ in 0..(next() % 6 + 1) {
                let at =
                    16 * SECTOR as usize + next() as usize % (metadata_end - 16 * SECTOR as usize);
                garbled[at] = next() as u8;
            }
            std::fs::write(&bad, &garbled).unwrap();
            errors += read_everything(&bad, &out).len();
        }
        assert!(errors > 0, "some garbling must be noticed");
        assert_no_temporary_files(&out);
    }

    /// A hand-made image of `sectors` zeroed sectors, read as Rock Ridge.
    fn blank_image(
        sectors: usize,
        patch: impl FnOnce(&mut [u8]),
    ) -> (tempfile::NamedTempFile, IsoFilesystem) {
        let mut bytes = vec![0u8; sectors * SECTOR as usize];
        patch(&mut bytes);
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &bytes).unwrap();
        let iso = IsoFilesystem {
            path: file.path().to_path_buf(),
            file: File::open(file.path()).unwrap(),
            len: bytes.len() as u64,
            volume_id: String::new(),
            names: NameSource::RockRidge,
            susp_skip: 0,
            root: IsoEntry::placeholder(),
        };
        (file, iso)
    }

    fn continuation_entry(block: u32, offset: u32, len: u32) -> Vec<u8> {
        let mut entry = vec![0u8; 28];
        entry[..4].copy_from_slice(&[b'C', b'E', 28, 1]);
        set_both_endian(&mut entry[4..12], block);
        set_both_endian(&mut entry[12..20], offset);
        set_both_endian(&mut entry[20..28], len);
        entry
    }

    #[test]
    fn continuation_loops_and_strays_are_refused() {
        let looping = continuation_entry(20, 0, 28);
        let (_file, iso) = blank_image(21, |bytes| {
            let at = 20 * SECTOR as usize;
            bytes[at..at + 28].copy_from_slice(&looping);
        });
        let error = iso.rock_ridge(&looping, &mut 1000).unwrap_err().to_string();
        assert!(error.contains("more than 32 continuation areas"), "{error}");
        let crossing = continuation_entry(20, 2040, 28);
        let error = iso
            .rock_ridge(&crossing, &mut 1000)
            .unwrap_err()
            .to_string();
        assert!(error.contains("crosses its block"), "{error}");
        let outside = continuation_entry(u32::MAX, 0, 28);
        assert!(matches!(
            iso.rock_ridge(&outside, &mut 1000),
            Err(IsoReadError::Truncated { .. })
        ));
        // A malformed entry ends the walk; what came before it counts.
        let name = [b"NM\x08\x01\x00abc".as_slice(), b"XX\x02\x01"].concat();
        assert_eq!(
            iso.rock_ridge(&name, &mut 1000).unwrap().name.as_deref(),
            Some("abc")
        );
    }

    #[test]
    fn names_spread_over_entries_and_areas_are_joined() {
        let mut first = b"NM\x08\x01\x01abc".to_vec();
        first.extend(continuation_entry(20, 100, 9));
        let (_file, iso) = blank_image(21, |bytes| {
            let at = 20 * SECTOR as usize + 100;
            bytes[at..at + 9].copy_from_slice(b"NM\x09\x01\x00defg");
        });
        assert_eq!(
            iso.rock_ridge(&first, &mut 1000).unwrap().name.as_deref(),
            Some("abcdefg")
        );
        let spent = iso.rock_ridge(&first, &mut 0).unwrap_err().to_string();
        assert!(spent.contains("a directory chains more than"), "{spent}");
    }

    #[test]
    fn records_that_do_not_fit_are_damage() {
        let (_file, iso) = blank_image(20, |_| {});
        let mut records = vec![0u8; 2 * SECTOR as usize];
        // Eight `.` records of 255 bytes lead to byte 2040, where one of 40 would cross over.
        for at in (0..2040).step_by(255) {
            records[at] = 255;
            records[at + 32] = 1;
        }
        records[2040] = 40;
        let error = iso
            .parse_directory(&records, "directory /x")
            .unwrap_err()
            .to_string();
        assert!(error.contains("runs past its sector"), "{error}");
        records.fill(0);
        records[0] = 20;
        let error = iso
            .parse_directory(&records, "directory /x")
            .unwrap_err()
            .to_string();
        assert!(error.contains("malformed"), "{error}");
        records[0] = 40;
        records[32] = 200;
        assert!(iso.parse_directory(&records, "directory /x").is_err());
        // Padding to the end of a sector is no record at all.
        records.fill(0);
        assert_eq!(iso.parse_directory(&records, "directory /x").unwrap(), []);
    }

    #[test]
    fn what_is_not_an_iso_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("notes.iso");
        std::fs::write(&text, vec![b'x'; 40 * SECTOR as usize]).unwrap();
        assert!(matches!(
            IsoFilesystem::open(&text),
            Err(IsoReadError::NotIso(_))
        ));
        assert!(matches!(
            IsoFilesystem::open(dir.path()),
            Err(IsoReadError::NotAFile(_))
        ));
        let missing = IsoFilesystem::open(&dir.path().join("gone.iso")).unwrap_err();
        assert!(missing.to_string().contains("gone.iso"), "{missing}");

        let (sample, good) = sample_image();
        let mut image = std::fs::read(&good).unwrap();
        image[16 * SECTOR as usize + 128..][..2].copy_from_slice(&512u16.to_le_bytes());
        let odd = sample.dir.path().join("odd.iso");
        std::fs::write(&odd, &image).unwrap();
        let error = IsoFilesystem::open(&odd).unwrap_err();
        assert!(
            matches!(error, IsoReadError::BlockSize { size: 512, .. }),
            "{error}"
        );

        let iso = IsoFilesystem::open(&good).unwrap();
        assert!(matches!(
            iso.list("/nowhere"),
            Err(IsoReadError::NotFound { .. })
        ));
        assert!(matches!(
            iso.list("/vmlinuz"),
            Err(IsoReadError::NotADirectory { .. })
        ));
        let kernel = iso.lookup("/vmlinuz").unwrap().unwrap();
        assert!(matches!(
            iso.read(&kernel, 10),
            Err(IsoReadError::TooLarge { .. })
        ));
        let into_missing_dir = iso.extract(&kernel, &dir.path().join("no/such/dir/vmlinuz"));
        assert!(matches!(into_missing_dir, Err(IsoReadError::Write { .. })));
    }

    /// The fixture installer (tests/fixtures/build.sh) is on some machines only.
    #[test]
    fn fixture_installer_reads_like_xorriso_extracts_it() {
        let Some(fixture) = super::super::fixture_installer() else {
            return;
        };
        let iso = IsoFilesystem::open(&fixture).unwrap();
        assert_eq!(iso.names(), NameSource::RockRidge);
        assert_eq!(iso.volume_id(), "KILN_INSTALLER");
        let dir = tempfile::tempdir().unwrap();
        for inner in [
            "/kiln/vmlinuz",
            "/kiln/initrd.img",
            "/isolinux/isolinux.cfg",
        ] {
            let ours = dir.path().join("ours");
            let theirs = dir.path().join("theirs");
            let entry = iso.lookup(inner).unwrap().unwrap();
            iso.extract(&entry, &ours).unwrap();
            let status = Command::new("xorriso")
                .args(["-osirrox", "on", "-indev"])
                .arg(&fixture)
                .args(["-extract", inner])
                .arg(&theirs)
                .output()
                .unwrap()
                .status;
            assert!(status.success());
            assert!(
                std::fs::read(&ours).unwrap() == std::fs::read(&theirs).unwrap(),
                "{inner} differs"
            );
            std::fs::remove_file(&theirs).unwrap();
        }
    }
}
