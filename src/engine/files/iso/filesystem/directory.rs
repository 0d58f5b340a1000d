//! A directory's records turned into entries: `.` and `..` skipped, multi-extent files joined,
//! names taken from the richest table the image has.

use super::joliet::joliet_name;
use super::records::{RawRecord, parse_record, plain_name};
use super::rock_ridge::RockRidge;
use super::{
    Extent, FLAG_ASSOCIATED, FLAG_DIRECTORY, FLAG_MULTI_EXTENT, IsoEntry, IsoFilesystem,
    IsoReadError, MAX_DIRECTORY_CONTINUATIONS, MAX_EXTENTS, NameSource, SECTOR,
};

impl IsoFilesystem {
    /// Decode a directory's records: `.` and `..` skipped, multi-extent parts joined,
    /// Rock Ridge relocations undone.
    pub(super) fn parse_directory(
        &self,
        bytes: &[u8],
        what: &str,
    ) -> Result<Vec<IsoEntry>, IsoReadError> {
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
}

#[cfg(test)]
mod tests {
    use super::super::tests::{blank_image, build_iso, pattern, set_both_endian, write_tree};
    use super::super::{block_offset, records::le_u32};
    use super::*;

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
}
