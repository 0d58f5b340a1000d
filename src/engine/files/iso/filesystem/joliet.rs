//! Joliet: the supplementary volume of UCS-2 names (`-J`), read when an image has no Rock Ridge.

/// A supplementary descriptor is Joliet when its escape sequences name UCS-2 level 1, 2 or 3.
pub(super) fn is_joliet(descriptor: &[u8]) -> bool {
    matches!(&descriptor[88..91], b"%/@" | b"%/C" | b"%/E")
}

/// Joliet names are UCS-2 big-endian (read as UTF-16, so surrogate pairs survive), versioned.
pub(super) fn joliet_name(identifier: &[u8]) -> String {
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

#[cfg(test)]
mod tests {
    use super::super::NameSource;
    use super::super::tests::{assert_sample_reads_back, iso_of, sample_tree};

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
}
