//! Checksum lists as distributions publish them: `sha256sum` output (`HEX  ./path`, Debian's
//! and Ubuntu's SHA256SUMS, openSUSE's CHECKSUMS), the BSD form (`SHA256 (path) = HEX`,
//! Fedora's CHECKSUM) and a `.treeinfo`'s `[checksums]` (`path = sha256:HEX`, Fedora's and
//! RHEL's installation trees). A list names files by their path below its own directory, so a file is
//! looked up by that whole path: Debian's list has several files called `linux`.

/// The SHA-256 listed for `entry` (leading `./` ignored); an entry without a `/` may also
/// name a file by its last component, when exactly one line does.
pub fn find_entry(text: &str, entry: &str) -> Option<String> {
    let wanted = normalise(entry);
    let lines: Vec<(String, String)> = text.lines().filter_map(parse_line).collect();
    if let Some((hex, _)) = lines.iter().find(|(_, path)| normalise(path) == wanted) {
        return Some(hex.clone());
    }
    if wanted.contains('/') {
        return None;
    }
    let mut by_name = lines
        .iter()
        .filter(|(_, path)| path.rsplit('/').next() == Some(wanted));
    match (by_name.next(), by_name.next()) {
        (Some((hex, _)), None) => Some(hex.clone()),
        _ => None,
    }
}

/// One line as (lowercase hex, path).
fn parse_line(line: &str) -> Option<(String, String)> {
    let line = line.trim();
    let (hex, path) = if let Some(rest) = line.strip_prefix("SHA256 (") {
        let (path, hex) = rest.rsplit_once(") = ")?;
        (hex.trim(), path)
    } else if let Some((path, hex)) = line.split_once(" = sha256:") {
        (hex.trim(), path.trim())
    } else {
        let (hex, path) = line.split_once(char::is_whitespace)?;
        (hex, path.trim_start().trim_start_matches('*'))
    };
    let is_sha256 = hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit());
    is_sha256.then(|| (hex.to_ascii_lowercase(), path.to_string()))
}

fn normalise(path: &str) -> &str {
    path.trim().trim_start_matches("./").trim_start_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";

    #[test]
    fn a_path_is_found_whole_in_debian_style_lists() {
        let list = format!(
            "{A}  ./netboot/debian-installer/amd64/linux\n\
             {B}  ./netboot/gtk/debian-installer/amd64/linux\n"
        );
        assert_eq!(
            find_entry(&list, "./netboot/debian-installer/amd64/linux").as_deref(),
            Some(A)
        );
        assert_eq!(
            find_entry(&list, "netboot/gtk/debian-installer/amd64/linux"),
            Some(B.to_ascii_lowercase())
        );
        // Two files called linux: the name alone is not enough.
        assert_eq!(find_entry(&list, "linux"), None);
        assert_eq!(find_entry(&list, "./netboot/linux"), None);
    }

    #[test]
    fn bsd_style_and_binary_marked_lines_are_read() {
        let list =
            format!("# a comment\nSHA256 (Fedora-41.iso) = {A}\n{B} *images/pxeboot/vmlinuz\n");
        assert_eq!(find_entry(&list, "Fedora-41.iso").as_deref(), Some(A));
        assert_eq!(find_entry(&list, "vmlinuz"), Some(B.to_ascii_lowercase()));
        assert_eq!(find_entry("not a list", "x"), None);
        let treeinfo = format!("[checksums]\nimages/pxeboot/vmlinuz = sha256:{A}\n");
        assert_eq!(
            find_entry(&treeinfo, "images/pxeboot/vmlinuz").as_deref(),
            Some(A)
        );
    }
}
