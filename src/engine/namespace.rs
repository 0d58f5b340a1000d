//! A Djinn namespace, `path[@owner]`, checked once where a person types it — a flag, a recipe,
//! the Publish form, the config file — so every later step holds a valid one and every
//! frontend refuses a bad one with the same message.

use std::fmt;
use std::str::FromStr;

use serde_with::{DeserializeFromStr, SerializeDisplay};

/// `^[a-zA-Z/]+(@[a-zA-Z0-9_-]+)?$`: a path of letters and `/`, optionally another owner's.
/// Written as its text (serde through `Display` and `FromStr`).
#[derive(Debug, Clone, PartialEq, Eq, SerializeDisplay, DeserializeFromStr)]
pub struct Namespace {
    text: String,
}

/// Why a namespace cannot be used; the one message every frontend shows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NamespaceError {
    #[error(
        "`{0}` is not a valid namespace: a path of letters and `/`, optionally followed by @owner (e.g. ci/base or ci/base@team)"
    )]
    Invalid(String),
    #[error("namespace `{0}`: the offline runner has no namespace owners; drop the @owner part")]
    OwnerOffline(String),
}

impl Namespace {
    /// The path part (`ci/base` of `ci/base@team`).
    pub fn path(&self) -> &str {
        self.text
            .split_once('@')
            .map_or(&self.text, |(path, _)| path)
    }

    /// Another owner's namespace: the part after `@`.
    pub fn owner(&self) -> Option<&str> {
        self.text.split_once('@').map(|(_, owner)| owner)
    }

    /// The directories it names on the offline runner's disk (`ci/base` → `ci`, `base`),
    /// which has no owners.
    pub fn offline_segments(&self) -> Result<Vec<&str>, NamespaceError> {
        match self.owner() {
            Some(_) => Err(NamespaceError::OwnerOffline(self.text.clone())),
            None => Ok(self.path().split('/').collect()),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for Namespace {
    type Err = NamespaceError;

    fn from_str(text: &str) -> Result<Namespace, NamespaceError> {
        let (path, owner) = match text.split_once('@') {
            Some((path, owner)) => (path, Some(owner)),
            None => (text, None),
        };
        // Empty segments (`a//b`, `/a`) would name no directory on the offline runner.
        let path_ok = !path.is_empty()
            && path
                .split('/')
                .all(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphabetic()));
        let owner_ok = owner.is_none_or(|owner| {
            !owner.is_empty()
                && owner
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        });
        if path_ok && owner_ok {
            Ok(Namespace {
                text: text.to_string(),
            })
        } else {
            Err(NamespaceError::Invalid(text.to_string()))
        }
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_of_letters_with_an_optional_owner() {
        for good in [
            "ci",
            "ci/base",
            "a/b/c",
            "Debian/stable",
            "ci/base@team-1",
            "x@y_z",
        ] {
            let namespace: Namespace = good.parse().unwrap_or_else(|e| panic!("{good}: {e}"));
            assert_eq!(namespace.to_string(), good);
        }
        let owned: Namespace = "ci/base@team".parse().unwrap();
        assert_eq!((owned.path(), owned.owner()), ("ci/base", Some("team")));
        assert_eq!(
            owned.offline_segments(),
            Err(NamespaceError::OwnerOffline("ci/base@team".into()))
        );
        let plain: Namespace = "debian/stable".parse().unwrap();
        assert_eq!(plain.offline_segments(), Ok(vec!["debian", "stable"]));
        for bad in [
            "", "ci-base", "ci/base2", "deb1an", "ci base", "ci@", "@team", "ci@a/b", "a//b",
            "/debian", "debian/", "a@b@c",
        ] {
            let error = bad.parse::<Namespace>().unwrap_err();
            assert_eq!(error, NamespaceError::Invalid(bad.to_string()));
            assert!(error.to_string().contains("not a valid namespace"), "{bad}");
        }
    }
}
