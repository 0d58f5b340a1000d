//! The one key table: which QEMU key (a QKeyCode name, what QMP's `send-key` takes) each key
//! name and each character presses. Boot commands, QMP and the console's VGA keyboard all look
//! keys up here, so `<enter>` in a boot command and Enter typed at the console press the same key.

/// Packer's key names (compared without case) and the QKeyCode each one presses.
pub(crate) const PACKER_KEYS: &[(&str, &str)] = &[
    ("enter", "ret"),
    ("return", "ret"),
    ("tab", "tab"),
    ("esc", "esc"),
    ("bs", "backspace"),
    ("del", "delete"),
    ("spacebar", "spc"),
    ("insert", "insert"),
    ("home", "home"),
    ("end", "end"),
    ("pageUp", "pgup"),
    ("pageDown", "pgdn"),
    ("up", "up"),
    ("down", "down"),
    ("left", "left"),
    ("right", "right"),
    ("menu", "menu"),
    ("f1", "f1"),
    ("f2", "f2"),
    ("f3", "f3"),
    ("f4", "f4"),
    ("f5", "f5"),
    ("f6", "f6"),
    ("f7", "f7"),
    ("f8", "f8"),
    ("f9", "f9"),
    ("f10", "f10"),
    ("f11", "f11"),
    ("f12", "f12"),
    ("leftAlt", "alt"),
    ("rightAlt", "alt_r"),
    ("leftCtrl", "ctrl"),
    ("rightCtrl", "ctrl_r"),
    ("leftShift", "shift"),
    ("rightShift", "shift_r"),
    ("leftSuper", "meta_l"),
    ("rightSuper", "meta_r"),
];

/// Names people bring from elsewhere for a key (compared without case), and the Packer name
/// that means the same key.
const FAMILIAR_NAMES: &[(&str, &str)] = &[
    ("space", "spacebar"),
    ("backspace", "bs"),
    ("escape", "esc"),
    ("delete", "del"),
    ("ins", "insert"),
    ("pgup", "pageUp"),
    ("pgdn", "pageDown"),
    ("pagedn", "pageDown"),
    ("ctrl", "leftCtrl"),
    ("control", "leftCtrl"),
    ("alt", "leftAlt"),
    ("shift", "leftShift"),
    ("super", "leftSuper"),
    ("win", "leftSuper"),
    ("meta", "leftSuper"),
];

/// Packer's name and the QKeyCode for a Packer key name written in any case.
pub(crate) fn packer_key(written: &str) -> Option<(&'static str, &'static str)> {
    PACKER_KEYS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(written))
        .copied()
}

/// The Packer name for a key named as people do elsewhere ("Backspace" → "bs"), in any case.
pub(crate) fn familiar_name(written: &str) -> Option<&'static str> {
    FAMILIAR_NAMES
        .iter()
        .find(|(familiar, _)| familiar.eq_ignore_ascii_case(written))
        .map(|(_, name)| *name)
}

/// The QKeyCode chord that types `c` on a US keyboard layout, for sending text as keys.
pub fn key_for_char(c: char) -> Option<Vec<&'static str>> {
    const LETTERS: [&str; 26] = [
        "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q", "r",
        "s", "t", "u", "v", "w", "x", "y", "z",
    ];
    const DIGITS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
    let plain = |key: &'static str| Some(vec![key]);
    let shifted = |key: &'static str| Some(vec!["shift", key]);
    match c {
        'a'..='z' => plain(LETTERS[c as usize - 'a' as usize]),
        'A'..='Z' => shifted(LETTERS[c as usize - 'A' as usize]),
        '0'..='9' => plain(DIGITS[c as usize - '0' as usize]),
        ' ' => plain("spc"),
        '\n' | '\r' => plain("ret"),
        '\t' => plain("tab"),
        '-' => plain("minus"),
        '=' => plain("equal"),
        '[' => plain("bracket_left"),
        ']' => plain("bracket_right"),
        '\\' => plain("backslash"),
        ';' => plain("semicolon"),
        '\'' => plain("apostrophe"),
        '`' => plain("grave_accent"),
        ',' => plain("comma"),
        '.' => plain("dot"),
        '/' => plain("slash"),
        '!' => shifted("1"),
        '@' => shifted("2"),
        '#' => shifted("3"),
        '$' => shifted("4"),
        '%' => shifted("5"),
        '^' => shifted("6"),
        '&' => shifted("7"),
        '*' => shifted("8"),
        '(' => shifted("9"),
        ')' => shifted("0"),
        '_' => shifted("minus"),
        '+' => shifted("equal"),
        '{' => shifted("bracket_left"),
        '}' => shifted("bracket_right"),
        '|' => shifted("backslash"),
        ':' => shifted("semicolon"),
        '"' => shifted("apostrophe"),
        '~' => shifted("grave_accent"),
        '<' => shifted("comma"),
        '>' => shifted("dot"),
        '?' => shifted("slash"),
        _ => None,
    }
}

/// The QKeyCode for a named key as people write it ("Enter", "PageUp", "F5", Packer's
/// "spacebar"; any case).
pub fn key_for_name(name: &str) -> Option<&'static str> {
    let name = familiar_name(name).unwrap_or(name);
    packer_key(name).map(|(_, key)| key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use qapi::qmp;

    #[test]
    fn characters_map_to_us_layout_chords() {
        assert_eq!(key_for_char('a'), Some(vec!["a"]));
        assert_eq!(key_for_char('z'), Some(vec!["z"]));
        assert_eq!(key_for_char('A'), Some(vec!["shift", "a"]));
        assert_eq!(key_for_char('7'), Some(vec!["7"]));
        assert_eq!(key_for_char('!'), Some(vec!["shift", "1"]));
        assert_eq!(key_for_char(')'), Some(vec!["shift", "0"]));
        assert_eq!(key_for_char(' '), Some(vec!["spc"]));
        assert_eq!(key_for_char('\n'), Some(vec!["ret"]));
        assert_eq!(key_for_char('\r'), Some(vec!["ret"]));
        assert_eq!(key_for_char('-'), Some(vec!["minus"]));
        assert_eq!(key_for_char('/'), Some(vec!["slash"]));
        assert_eq!(key_for_char('.'), Some(vec!["dot"]));
        assert_eq!(key_for_char(':'), Some(vec!["shift", "semicolon"]));
        assert_eq!(key_for_char('~'), Some(vec!["shift", "grave_accent"]));
        assert_eq!(key_for_char('é'), None);
        assert_eq!(key_for_char('\u{7}'), None);
    }

    #[test]
    fn every_printable_ascii_character_has_valid_qcodes() {
        for c in (' '..='~').chain(['\n', '\r', '\t']) {
            let keys = key_for_char(c).unwrap_or_else(|| panic!("no keys for {c:?}"));
            for key in keys {
                assert!(key.parse::<qmp::QKeyCode>().is_ok(), "{c:?} -> {key}");
            }
        }
    }

    #[test]
    fn named_keys_map_to_qcodes() {
        let cases = [
            ("Enter", "ret"),
            ("Tab", "tab"),
            ("Backspace", "backspace"),
            ("Esc", "esc"),
            ("Up", "up"),
            ("Down", "down"),
            ("Left", "left"),
            ("Right", "right"),
            ("F1", "f1"),
            ("F12", "f12"),
            ("Home", "home"),
            ("End", "end"),
            ("PageUp", "pgup"),
            ("PageDown", "pgdn"),
            ("Delete", "delete"),
            ("Insert", "insert"),
            ("enter", "ret"),
        ];
        for (name, key) in cases {
            assert_eq!(key_for_name(name), Some(key), "{name}");
            assert!(key.parse::<qmp::QKeyCode>().is_ok(), "{key}");
        }
        for bad in ["F0", "F13", "f", "Fx", "Hyper", ""] {
            assert_eq!(key_for_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn key_names_agree_with_packer_names_where_both_know_them() {
        let mut compared = 0;
        for (name, key) in PACKER_KEYS {
            if let Some(named_key) = key_for_name(name) {
                assert_eq!(*key, named_key, "<{name}>");
                compared += 1;
            }
        }
        assert!(compared >= 25, "only {compared} names compared");
    }
}
