//! Volume descriptors and the fields of one directory record, and the plain ISO 9660 names
//! those records carry.

use super::joliet::is_joliet;
use super::{
    Extent, FIRST_DESCRIPTOR, FLAG_DIRECTORY, IsoEntry, IsoFilesystem, IsoReadError,
    MAX_DESCRIPTORS, RECORD_HEADER, SECTOR,
};

/// The volume descriptors kiln uses.
pub(super) struct Descriptors {
    pub(super) primary: Vec<u8>,
    pub(super) joliet: Option<Vec<u8>>,
}

/// What the fields of one directory record say, before names are decoded.
pub(super) struct RawRecord<'a> {
    pub(super) block: u32,
    pub(super) len: u32,
    pub(super) flags: u8,
    pub(super) interleaved: bool,
    pub(super) identifier: &'a [u8],
    pub(super) system_use: &'a [u8],
}

impl IsoFilesystem {
    /// Sector 16 on: the primary descriptor (required) and a Joliet one (optional).
    pub(super) fn read_descriptors(&self) -> Result<Descriptors, IsoReadError> {
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
    pub(super) fn root_from(
        &self,
        descriptor: &[u8],
        which: &str,
    ) -> Result<IsoEntry, IsoReadError> {
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
}

/// The fields of a directory record (ECMA-119 9.1), or `None` when its lengths do not fit.
pub(super) fn parse_record(bytes: &[u8]) -> Option<RawRecord<'_>> {
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

/// `VMLINUZ.;1` → `VMLINUZ`: the version and an empty extension's dot are not part of the name.
pub(super) fn plain_name(identifier: &[u8]) -> String {
    let text = String::from_utf8_lossy(identifier);
    let without_version = text.split(';').next().unwrap_or_default();
    without_version.trim_end_matches('.').to_string()
}

/// A name as mkisofs writes it in plain ISO 9660: upper case, anything but `A-Z 0-9 _ .` as `_`.
pub(super) fn d_chars(name: &str) -> String {
    name.chars()
        .map(|c| match c.to_ascii_uppercase() {
            c @ ('A'..='Z' | '0'..='9' | '_' | '.') => c,
            _ => '_',
        })
        .collect()
}

/// A space-padded a-characters field of a volume descriptor.
pub(super) fn text_field(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .trim_end_matches([' ', '\0'])
        .to_string()
}

/// ISO 9660 stores numbers both-endian; the little-endian half is read.
pub(super) fn le_u32(bytes: &[u8]) -> u32 {
    u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

#[cfg(test)]
mod tests {
    use super::super::NameSource;
    use super::super::tests::{assert_sample_reads_back, iso_of, sample_tree};

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
}
