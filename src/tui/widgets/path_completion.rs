//! Tab completion for path fields, the way a shell does it: the typed name is extended as far
//! as every matching entry agrees, a directory gets its `/`, and when several entries still
//! match they are listed. `~` stands for the home directory.

use std::path::{Path, PathBuf};

use crate::engine::units::human_bytes;

/// Entries read from one directory at most: a completion never stalls on a huge directory.
const MAX_ENTRIES: usize = 10_000;
/// Candidates named in a hint; the rest are counted.
const SHOWN_CANDIDATES: usize = 8;

/// What Tab made of the typed text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The text to put in the field (`~` expanded, extended as far as the matches agree).
    pub text: String,
    /// The entries that still match, when more than one does (directories end in `/`).
    pub candidates: Vec<String>,
}

impl Completion {
    /// A hint line naming the candidates: "3 matches: a.iso  b.iso  c.iso".
    pub fn candidates_hint(&self) -> String {
        let shown: Vec<&str> = self
            .candidates
            .iter()
            .take(SHOWN_CANDIDATES)
            .map(String::as_str)
            .collect();
        let more = self.candidates.len().saturating_sub(SHOWN_CANDIDATES);
        let tail = if more > 0 {
            format!("  (+{more} more)")
        } else {
            String::new()
        };
        format!(
            "{} matches: {}{tail} — type more, Tab again for the next field",
            self.candidates.len(),
            shown.join("  ")
        )
    }
}

/// `~` or `~/…` with the home directory put in; other text as it is.
pub fn expand_home(typed: &str) -> String {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    match (typed.strip_prefix('~'), home) {
        (Some(rest), Some(home)) if rest.is_empty() || rest.starts_with('/') => {
            format!("{}{rest}", home.display())
        }
        _ => typed.to_string(),
    }
}

/// Complete `typed` against the file system, relative to the working directory.
pub fn complete(typed: &str) -> Completion {
    let text = expand_home(typed);
    let (dir_part, prefix) = match text.rfind('/') {
        Some(slash) => text.split_at(slash + 1),
        None => ("", text.as_str()),
    };
    let dir = if dir_part.is_empty() {
        Path::new(".")
    } else {
        Path::new(dir_part)
    };
    let matches = matching_entries(dir, prefix);
    let completed = match matches.as_slice() {
        [] => text.clone(),
        [only] => format!("{dir_part}{only}"),
        several => format!("{dir_part}{}", common_prefix(several)),
    };
    Completion {
        text: completed,
        candidates: if matches.len() > 1 { matches } else { vec![] },
    }
}

/// Names in `dir` that start with `prefix`, sorted, directories with a trailing `/`. Hidden
/// entries only when the prefix asks for them, as shells do.
fn matching_entries(dir: &Path, prefix: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return vec![];
    };
    let mut names: Vec<String> = entries
        .take(MAX_ENTRIES)
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let wanted =
                name.starts_with(prefix) && (prefix.starts_with('.') || !name.starts_with('.'));
            if !wanted {
                return None;
            }
            // Follow symlinks: a link to a directory completes like one.
            let is_dir = entry.path().is_dir();
            Some(if is_dir { format!("{name}/") } else { name })
        })
        .collect();
    names.sort();
    names
}

/// The longest text every name starts with.
fn common_prefix(names: &[String]) -> String {
    let first = &names[0];
    let mut length = first.len();
    for name in &names[1..] {
        length = first
            .char_indices()
            .zip(name.chars())
            .take_while(|((_, a), b)| a == b)
            .last()
            .map_or(0, |((at, c), _)| at + c.len_utf8())
            .min(length);
    }
    first[..length].to_string()
}

/// What is at `typed` (with `~` expanded): a directory, a file and its size, or nothing yet.
pub fn describe(typed: &str) -> String {
    let path = PathBuf::from(expand_home(typed));
    match std::fs::metadata(&path) {
        Ok(meta) if meta.is_dir() => "a directory".into(),
        Ok(meta) if meta.is_file() => format!("a file, {}", human_bytes(meta.len())),
        Ok(_) => "exists, but is not a regular file".into(),
        Err(_) => "does not exist (Tab completes)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory with `debian-12.iso`, `debian-13.iso`, `alpine.iso`, `.hidden` and `images/`.
    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for file in ["debian-12.iso", "debian-13.iso", "alpine.iso", ".hidden"] {
            std::fs::write(dir.path().join(file), b"x").unwrap();
        }
        std::fs::create_dir(dir.path().join("images")).unwrap();
        dir
    }

    fn at(dir: &Path, rest: &str) -> String {
        format!("{}/{rest}", dir.display())
    }

    #[test]
    fn a_unique_match_completes_and_a_directory_gets_its_slash() {
        let dir = tree();
        let root = dir.path();
        assert_eq!(complete(&at(root, "al")).text, at(root, "alpine.iso"));
        assert_eq!(complete(&at(root, "im")).text, at(root, "images/"));
        assert!(complete(&at(root, "al")).candidates.is_empty());
    }

    #[test]
    fn several_matches_extend_to_what_they_share_and_are_listed() {
        let dir = tree();
        let root = dir.path();
        let completion = complete(&at(root, "d"));
        assert_eq!(completion.text, at(root, "debian-1"));
        assert_eq!(completion.candidates, ["debian-12.iso", "debian-13.iso"]);
        assert!(
            completion
                .candidates_hint()
                .starts_with("2 matches: debian-12.iso  debian-13.iso")
        );
        // A directory lists everything but hidden entries, which a leading dot asks for.
        let everything = complete(&at(root, ""));
        assert_eq!(everything.candidates.len(), 4, "{everything:?}");
        assert_eq!(complete(&at(root, ".h")).text, at(root, ".hidden"));
    }

    #[test]
    fn nothing_matching_leaves_the_text_alone() {
        let dir = tree();
        let typed = at(dir.path(), "zzz");
        assert_eq!(
            complete(&typed),
            Completion {
                text: typed,
                candidates: vec![]
            }
        );
        let missing = "/no/such/dir/x";
        assert_eq!(complete(missing).text, missing);
    }

    #[test]
    fn home_is_expanded() {
        let home = std::env::var("HOME").unwrap();
        assert_eq!(expand_home("~/x.iso"), format!("{home}/x.iso"));
        assert_eq!(expand_home("~"), home);
        // `~user` and a tilde elsewhere are names, not the home directory.
        assert_eq!(expand_home("~other/x"), "~other/x");
        assert_eq!(expand_home("a~/x"), "a~/x");
    }

    #[test]
    fn common_prefix_respects_characters() {
        let names = ["dé1".to_string(), "dé2".to_string()];
        assert_eq!(common_prefix(&names), "dé");
        let names = ["dé".to_string(), "dx".to_string()];
        assert_eq!(common_prefix(&names), "d");
    }

    #[test]
    fn describe_says_what_is_there() {
        let dir = tree();
        assert_eq!(describe(&at(dir.path(), "images")), "a directory");
        assert_eq!(describe(&at(dir.path(), "alpine.iso")), "a file, 1 B");
        assert!(describe(&at(dir.path(), "nope")).starts_with("does not exist"));
    }
}
