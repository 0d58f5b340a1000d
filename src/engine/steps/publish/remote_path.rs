//! Where an rsync destination points, `[user@]host:path` as rsync and scp write it, checked
//! once where a person types it (the flag, the recipe, the Publish form) so every frontend
//! refuses a bad one with the same message, and nothing that reaches `ssh`'s command line can
//! be read as one of its options.

use std::fmt;
use std::str::FromStr;

use serde_with::{DeserializeFromStr, SerializeDisplay};

/// `[user@]host:path`. A path ending in `/` is a directory the image goes into; anything else
/// names the file. Written as its text (serde through `Display` and `FromStr`).
#[derive(Debug, Clone, PartialEq, Eq, SerializeDisplay, DeserializeFromStr)]
pub struct RemotePath {
    user: Option<String>,
    /// A name, an address, or an IPv6 address without its brackets.
    host: String,
    path: String,
}

/// Why a destination cannot be used; the one message every frontend shows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not an rsync destination: {problem} (write user@host:/srv/images/)")]
pub struct RemotePathError {
    text: String,
    problem: &'static str,
}

impl RemotePath {
    /// What `ssh` is given to log in: `user@host` or `host` (a name `~/.ssh/config` may
    /// describe).
    pub fn login(&self) -> String {
        match &self.user {
            Some(user) => format!("{user}@{}", self.host),
            None => self.host.clone(),
        }
    }

    /// The host as the person wrote it (an alias of `~/.ssh/config`, a name or an address).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The path on the host, as given: absolute, or relative to the login's home directory.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether the path names a directory (it ends with `/`): the image keeps its own name.
    pub fn is_directory(&self) -> bool {
        self.path.ends_with('/')
    }

    /// `LOGIN:PATH` for rsync's command line, an IPv6 address in brackets as rsync wants it.
    pub fn rsync_arg(&self, path: &str) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match &self.user {
            Some(user) => format!("{user}@{host}:{path}"),
            None => format!("{host}:{path}"),
        }
    }

    /// The same host with another path: how a published file is named in messages.
    pub fn with_path(&self, path: &str) -> RemotePath {
        RemotePath {
            path: path.to_string(),
            ..self.clone()
        }
    }
}

/// Letters, digits, `.`, `_` and `-`, not starting with `-`: a user or host name that `ssh`
/// cannot take for an option.
fn is_plain_name(text: &str) -> bool {
    !text.is_empty()
        && !text.starts_with('-')
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

impl FromStr for RemotePath {
    type Err = RemotePathError;

    fn from_str(text: &str) -> Result<RemotePath, RemotePathError> {
        let refuse = |problem| {
            Err(RemotePathError {
                text: text.to_string(),
                problem,
            })
        };
        if text.contains("://") || text.contains("::") && !text.contains('[') {
            return refuse("rsync daemons (host::module, rsync://) are not supported, only SSH");
        }
        let (login, path) = if let Some((login, rest)) = text.split_once("]:") {
            (format!("{login}]"), rest)
        } else {
            match text.split_once(':') {
                Some((login, path)) => (login.to_string(), path),
                None => return refuse("no `host:` in front of the path"),
            }
        };
        let (user, host) = match login.rsplit_once('@') {
            Some((user, host)) => (Some(user), host),
            None => (None, login.as_str()),
        };
        if user.is_some_and(|user| !is_plain_name(user)) {
            return refuse("the user is letters, digits, `.`, `_` and `-`");
        }
        let host = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Some(v6) if !v6.is_empty() && v6.chars().all(|c| c.is_ascii_hexdigit() || c == ':') => {
                v6
            }
            Some(_) => return refuse("the address in brackets is not an IPv6 address"),
            None if is_plain_name(host) => host,
            None => return refuse("the host is a name or an address"),
        };
        if path.is_empty() {
            return refuse("no path after `host:`");
        }
        if path.starts_with('~') {
            return refuse(
                "write the path from the home directory without `~` (images/) or absolute",
            );
        }
        if path.starts_with('-') {
            return refuse("the path starts with `-`");
        }
        if path.chars().any(char::is_control) {
            return refuse("the path holds a control character");
        }
        if path.ends_with("/.") || path.ends_with("/..") || path == "." || path == ".." {
            return refuse("end a directory with `/`");
        }
        Ok(RemotePath {
            user: user.map(str::to_string),
            host: host.to_string(),
            path: path.to_string(),
        })
    }
}

impl fmt::Display for RemotePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.rsync_arg(&self.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_host_and_path_as_rsync_writes_them() {
        let dest: RemotePath = "ci@images.example:/srv/images/".parse().unwrap();
        assert_eq!(dest.login(), "ci@images.example");
        assert_eq!(dest.path(), "/srv/images/");
        assert!(dest.is_directory());
        assert_eq!(dest.to_string(), "ci@images.example:/srv/images/");

        let alias: RemotePath = "images:srv/debian-12.qcow2".parse().unwrap();
        assert_eq!(alias.login(), "images");
        assert!(!alias.is_directory());
        assert_eq!(alias.rsync_arg("x"), "images:x");

        let v6: RemotePath = "root@[::1]:/srv/a.qcow2".parse().unwrap();
        assert_eq!(v6.login(), "root@::1");
        assert_eq!(v6.to_string(), "root@[::1]:/srv/a.qcow2");
        assert_eq!(v6.with_path("/b").to_string(), "root@[::1]:/b");
    }

    #[test]
    fn what_ssh_could_read_as_an_option_or_rsync_as_a_daemon_is_refused() {
        for (bad, why) in [
            ("/srv/images/", "no `host:`"),
            ("host:", "no path"),
            ("-oProxyCommand=x:/srv/", "the host"),
            ("-l:/srv", "the host"),
            ("a b:/srv", "the host"),
            ("-x@host:/srv", "the user"),
            ("host:-rf", "starts with `-`"),
            ("host:~/images/", "without `~`"),
            ("host::module/x", "daemons"),
            ("rsync://host/module", "daemons"),
            ("host:/srv/a\nb", "control character"),
            ("host:/srv/..", "end a directory"),
            ("[zz]:/srv", "IPv6"),
        ] {
            let error = bad.parse::<RemotePath>().unwrap_err().to_string();
            assert!(error.contains(why), "{bad:?}: {error}");
            assert!(error.contains("user@host:/srv/images/"), "{error}");
        }
    }

    #[test]
    fn written_and_read_back_as_text() {
        let dest: RemotePath = "u@h:/srv/x.qcow2".parse().unwrap();
        let json = serde_json::to_string(&dest).unwrap();
        assert_eq!(json, "\"u@h:/srv/x.qcow2\"");
        assert_eq!(serde_json::from_str::<RemotePath>(&json).unwrap(), dest);
    }
}
