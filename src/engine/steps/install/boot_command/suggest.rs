//! Suggestions for misspelt names: the known name nearest to what was written.

use crate::engine::guest::keys::{PACKER_KEYS, familiar_name};

/// Names people bring from elsewhere for a wait, for suggesting `<wait>` only.
const WAIT_NAMES: &[&str] = &["sleep", "pause"];

/// The closest valid tag to a misspelt one, keeping an `On`/`Off` the person wrote.
pub(super) fn suggest_key(written: &str) -> Option<String> {
    let lower = written.to_ascii_lowercase();
    for suffix in ["On", "Off"] {
        let suffix_lower = suffix.to_ascii_lowercase();
        if let Some(base) = lower.strip_suffix(&suffix_lower)
            && let Some(name) = suggest_key_name(base)
        {
            return Some(format!("{name}{suffix}"));
        }
    }
    suggest_key_name(&lower).map(str::to_string)
}

fn suggest_key_name(written: &str) -> Option<&'static str> {
    if let Some(name) = familiar_name(written) {
        return Some(name);
    }
    if WAIT_NAMES
        .iter()
        .any(|name| name.eq_ignore_ascii_case(written))
    {
        return Some("wait");
    }
    let names = PACKER_KEYS.iter().map(|(name, _)| *name).chain(["wait"]);
    closest(written, names)
}

/// The candidate nearest to `written` (ignoring case), if it is near enough to be a typo.
pub(super) fn closest<'a>(
    written: &str,
    candidates: impl Iterator<Item = &'a str>,
) -> Option<&'a str> {
    let written = written.to_lowercase();
    // One slip per three letters: `<br>` is not a misspelt `<bs>`, `<entre>` is `<enter>`.
    let typo_limit = (written.chars().count() / 3).min(3);
    candidates
        .map(|candidate| {
            (
                edit_distance(&written, &candidate.to_lowercase()),
                candidate,
            )
        })
        .filter(|(distance, _)| *distance <= typo_limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Edits (insert, delete, replace, swap two neighbours) that turn `a` into `b`: how close a
/// misspelt name is to a known one.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut rows = vec![vec![0; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let replace = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + replace);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::super::Problem;
    use super::super::tests::parse_error;

    #[test]
    fn unknown_keys_are_errors_with_a_suggestion() {
        let cases = [
            ("<entre>", Some("enter")),
            ("<Enterr>", Some("enter")),
            ("<pgup>", Some("pageUp")),
            ("<space>", Some("spacebar")),
            ("<backspace>", Some("bs")),
            ("<escape>", Some("esc")),
            ("<ctrl>", Some("leftCtrl")),
            ("<leftCtlOn>", Some("leftCtrlOn")),
            ("<rihgtAltOff>", Some("rightAltOff")),
            ("<sleep>", Some("wait")),
            ("<br>", None),
            ("<xyzzy>", None),
        ];
        for (source, suggestion) in cases {
            let error = parse_error(source);
            let written = source.trim_matches(|c| c == '<' || c == '>').to_string();
            let expected = Problem::UnknownKey {
                written,
                suggestion: suggestion.map(str::to_string),
            };
            assert_eq!(error.problem, expected, "{source}");
        }
        let message = parse_error("go <entre>").to_string();
        assert_eq!(
            message,
            "boot command, line 1, column 4: unknown key <entre>; did you mean <enter>?"
        );
        let message = parse_error("<br>").to_string();
        assert!(message.ends_with(r#"write {{ "<br>" }}"#), "{message}");
    }
}
