//! Rock Ridge: POSIX names, symbolic links and relocated deep directories, read from the SUSP
//! entries in each record's System Use area and the continuation areas they chain to.

use super::records::{le_u32, parse_record};
use super::{
    Extent, FLAG_DIRECTORY, IsoEntry, IsoFilesystem, IsoReadError, MAX_CONTINUATIONS,
    MAX_DIRECTORY_CONTINUATIONS, MAX_NAME_BYTES, SECTOR, block_offset,
};

/// What Rock Ridge says about one record.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct RockRidge {
    pub(super) name: Option<String>,
    pub(super) symlink: Option<String>,
    /// CL: the directory was moved (deep relocation); this is where it really is.
    pub(super) child_link: Option<u32>,
    /// RE: this is the moved directory itself, listed under its placeholder's name instead.
    pub(super) relocated: bool,
}

impl IsoFilesystem {
    /// Rock Ridge is there when the root's `.` record starts its System Use area with SUSP's
    /// SP entry (`SP`, 7, 1, 0xBE, 0xEF, LEN_SKP); returns LEN_SKP.
    pub(super) fn rock_ridge_skip(&self) -> Result<Option<usize>, IsoReadError> {
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

    /// A deep directory that mkisofs moved to `rr_moved`: its `.` record says how big it is.
    pub(super) fn relocated_directory(
        &self,
        entry: IsoEntry,
        block: u32,
    ) -> Result<IsoEntry, IsoReadError> {
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
    pub(super) fn rock_ridge(
        &self,
        system_use: &[u8],
        budget: &mut usize,
    ) -> Result<RockRidge, IsoReadError> {
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

#[cfg(test)]
mod tests {
    use super::super::NameSource;
    use super::super::tests::{
        assert_sample_reads_back, blank_image, build_iso, iso_of, sample_tree, set_both_endian,
        write_tree,
    };
    use super::*;

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
}
