//! Presets: a distribution's answer-file template and the kernel arguments (or boot command)
//! that point its installer at it, compiled in from `assets/presets/NAME/`. kiln fills in the
//! person's choices, serves the result from the answer-file server, and boots the installer.
//! `assets/presets/debian-12/README.md` says how to add one.

use std::fmt;
use std::path::Path;

use serde::Deserialize;

use super::answer_server::GUEST_HOST_ADDRESS;
use super::boot_command::{HTTP_IP, HTTP_PORT};
use crate::engine::steps::configure::REFERENCE_SSHD_CONFIG;

/// The built-in presets: name, `preset.toml`, answer-file template.
const BUILT_IN: [(&str, &str, &str); 1] = [(
    "debian-12",
    include_str!("../../../../assets/presets/debian-12/preset.toml"),
    include_str!("../../../../assets/presets/debian-12/preseed.cfg"),
)];

/// Placeholders the answer-file server fills in (the guest's view of it), not the preset.
const SERVER_PLACEHOLDERS: [&str; 2] = [HTTP_IP, HTTP_PORT];

/// A preset's `preset.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PresetFile {
    description: String,
    answer_file: String,
    kernel_args: String,
    boot_command: String,
}

/// One preset, ready to fill in.
#[derive(Debug, Clone)]
pub struct Preset {
    pub name: &'static str,
    pub description: String,
    /// The answer file's name on the server (`preseed.cfg`).
    answer_file: String,
    template: &'static str,
    kernel_args: String,
    boot_command: String,
}

/// What a preset needs from the person. The password is a secret: never shown in `Debug`,
/// written only into the answer file kiln serves for the length of the install.
#[derive(Clone, PartialEq)]
pub struct PresetValues {
    pub hostname: String,
    pub user: String,
    pub password: String,
    pub mirror: Mirror,
}

impl fmt::Debug for PresetValues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PresetValues")
            .field("hostname", &self.hostname)
            .field("user", &self.user)
            .field("password", &"<secret>")
            .field("mirror", &self.mirror)
            .finish()
    }
}

/// A Debian mirror as the installer asks for it: `host[:port]` and the archive's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    pub host: String,
    pub directory: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PresetError {
    #[error("no preset `{0}` (built in: {names})", names = names().join(", "))]
    Unknown(String),
    #[error("the {preset} preset needs {what}")]
    Missing { preset: String, what: &'static str },
    #[error("the {preset} preset cannot use {what} `{value}`: {why}")]
    Invalid {
        preset: String,
        what: &'static str,
        value: String,
        why: &'static str,
    },
    #[error(
        "the mirror must be an http:// URL such as http://HOST/debian (the installer fetches over plain HTTP), not `{0}`"
    )]
    Mirror(String),
    #[error("cannot write the answer files into {}: {source}", .dir.display())]
    Write {
        dir: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("preset {0} is broken: {1}")]
    Broken(String, String),
}

/// The built-in presets' names.
pub fn names() -> Vec<&'static str> {
    BUILT_IN.iter().map(|(name, ..)| *name).collect()
}

impl Preset {
    pub fn find(name: &str) -> Result<Preset, PresetError> {
        let (name, toml_text, template) = BUILT_IN
            .iter()
            .find(|(known, ..)| *known == name)
            .ok_or_else(|| PresetError::Unknown(name.to_string()))?;
        let file: PresetFile = toml::from_str(toml_text)
            .map_err(|e| PresetError::Broken(name.to_string(), e.to_string()))?;
        Ok(Preset {
            name,
            description: file.description,
            answer_file: file.answer_file,
            template,
            kernel_args: file.kernel_args,
            boot_command: file.boot_command,
        })
    }

    /// Check the person's values: they are pasted into kernel command lines and preseed
    /// lines, where a space or a line break would change the meaning.
    pub fn check(&self, values: &PresetValues) -> Result<(), PresetError> {
        let invalid = |what, value: &str, why| PresetError::Invalid {
            preset: self.name.to_string(),
            what,
            value: value.to_string(),
            why,
        };
        let is_name = |text: &str| {
            !text.is_empty()
                && text
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        };
        if !is_name(&values.hostname) {
            return Err(invalid("hostname", &values.hostname, "use a-z, 0-9 and -"));
        }
        if !is_name(&values.user) || values.user == "root" {
            return Err(invalid(
                "user",
                &values.user,
                "a new user's name (a-z, 0-9, - and _; not root)",
            ));
        }
        if values.password.is_empty() {
            return Err(PresetError::Missing {
                preset: self.name.to_string(),
                what: "the user's password (Password, or --password-file FILE)",
            });
        }
        if values.password.contains(['\n', '\r']) {
            return Err(PresetError::Missing {
                preset: self.name.to_string(),
                what: "a password on one line",
            });
        }
        Ok(())
    }

    /// Write the filled-in answer file and the reference sshd_config its late command fetches
    /// into `dir`, which the answer-file server on `port` serves.
    pub fn write_answers(
        &self,
        dir: &Path,
        values: &PresetValues,
        port: u16,
    ) -> Result<(), PresetError> {
        let (address, port) = (GUEST_HOST_ADDRESS.to_string(), port.to_string());
        let mut pairs = self.pairs(values);
        pairs.push((HTTP_IP, &address));
        pairs.push((HTTP_PORT, &port));
        let answers = fill(self.template, &pairs);
        let write = |name: &str, text: &str| {
            std::fs::write(dir.join(name), text).map_err(|source| PresetError::Write {
                dir: dir.to_path_buf(),
                source,
            })
        };
        write(&self.answer_file, &answers)?;
        write("sshd_config", REFERENCE_SSHD_CONFIG)
    }

    /// The kernel arguments that start an unattended install, the preset's values filled in
    /// (the server's address is left for the boot machinery, which knows it).
    pub fn kernel_args(&self, values: &PresetValues) -> String {
        fill(&self.kernel_args, &self.pairs(values))
    }

    /// The same as a boot command for the ISO's boot menu, when its kernel cannot be booted
    /// directly.
    pub fn boot_command(&self, values: &PresetValues) -> String {
        fill(&self.boot_command, &self.pairs(values))
    }

    fn pairs<'a>(&self, values: &'a PresetValues) -> Vec<(&'static str, &'a str)> {
        vec![
            ("Hostname", &values.hostname),
            ("User", &values.user),
            ("Password", &values.password),
            // The user's password doubles as root's for the install; late_command empties it.
            ("RootPassword", &values.password),
            ("MirrorHost", &values.mirror.host),
            ("MirrorDirectory", &values.mirror.directory),
        ]
    }
}

/// Replace `{{ .Name }}` (spaces inside the braces optional) for each pair.
pub(super) fn fill(template: &str, pairs: &[(&str, &str)]) -> String {
    let mut filled = template.to_string();
    for (name, value) in pairs {
        for spelling in [format!("{{{{ .{name} }}}}"), format!("{{{{.{name}}}}}")] {
            filled = filled.replace(&spelling, value);
        }
    }
    filled
}

impl Mirror {
    /// `http://HOST[:PORT]/DIR` as the installer's host and directory.
    pub fn parse(url: &str) -> Result<Mirror, PresetError> {
        let rest = url
            .trim()
            .strip_prefix("http://")
            .ok_or_else(|| PresetError::Mirror(url.to_string()))?;
        let (host, directory) = rest.split_once('/').unwrap_or((rest, ""));
        if host.is_empty() || host.contains(char::is_whitespace) {
            return Err(PresetError::Mirror(url.to_string()));
        }
        let directory = format!("/{}", directory.trim_end_matches('/'));
        Ok(Mirror {
            host: host.to_string(),
            directory,
        })
    }

    /// The first Debian mirror in this host's apt sources, for a host that is itself Debian:
    /// the mirror it already trusts (and can reach).
    pub fn from_host_apt() -> Option<Mirror> {
        let mut sources = Vec::new();
        let mut read = |path: &Path| {
            if let Ok(text) = std::fs::read_to_string(path) {
                sources.push((path.extension().is_some_and(|e| e == "sources"), text));
            }
        };
        if let Ok(entries) = std::fs::read_dir("/etc/apt/sources.list.d") {
            let mut paths: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
            paths.sort();
            paths.iter().for_each(|path| read(path));
        }
        read(Path::new("/etc/apt/sources.list"));
        sources
            .iter()
            .flat_map(|(deb822, text)| apt_uris(text, *deb822))
            .filter(|uri| !uri.contains("security"))
            .find_map(|uri| Mirror::parse(&uri).ok())
    }
}

/// The archive URIs of an apt sources file: `URIs:` lines of the deb822 format, or the URI
/// of each `deb` line of the one-line format (after any `[options]`).
fn apt_uris(text: &str, deb822: bool) -> Vec<String> {
    let lines = text.lines().map(str::trim);
    if deb822 {
        lines
            .filter_map(|line| line.strip_prefix("URIs:"))
            .flat_map(|uris| {
                uris.split_whitespace()
                    .map(String::from)
                    .collect::<Vec<_>>()
            })
            .collect()
    } else {
        lines
            .filter_map(|line| line.strip_prefix("deb "))
            .filter_map(|rest| {
                let rest = match rest.trim_start().strip_prefix('[') {
                    Some(options) => options.split_once(']')?.1,
                    None => rest,
                };
                rest.split_whitespace().next().map(String::from)
            })
            .collect()
    }
}

/// Placeholders left in `text` that nothing will fill (a preset or a person's mistake).
pub fn unfilled(text: &str) -> Vec<String> {
    let mut left = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        let name = after[..end].trim().trim_start_matches('.').to_string();
        if !SERVER_PLACEHOLDERS.contains(&name.as_str()) {
            left.push(name);
        }
        rest = &after[end + 2..];
    }
    left
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> PresetValues {
        PresetValues {
            hostname: "ci-image".into(),
            user: "builder".into(),
            password: "s3cret pass".into(),
            mirror: Mirror::parse("http://10.0.2.2:8080/debian/").unwrap(),
        }
    }

    #[test]
    fn the_debian_preset_fills_every_placeholder_but_the_servers() {
        let preset = Preset::find("debian-12").unwrap();
        let values = values();
        preset.check(&values).unwrap();
        let dir = tempfile::tempdir().unwrap();
        preset.write_answers(dir.path(), &values, 4321).unwrap();
        let answers = std::fs::read_to_string(dir.path().join("preseed.cfg")).unwrap();
        assert_eq!(unfilled(&answers), Vec::<String>::new());
        assert!(answers.contains("d-i mirror/http/hostname string 10.0.2.2:8080"));
        assert!(answers.contains("d-i mirror/http/directory string /debian\n"));
        assert!(answers.contains("d-i passwd/username string builder"));
        assert!(answers.contains("http://10.0.2.2:4321/sshd_config"));
        let sshd = std::fs::read_to_string(dir.path().join("sshd_config")).unwrap();
        assert_eq!(sshd, REFERENCE_SSHD_CONFIG);
        let args = preset.kernel_args(&values);
        assert!(args.contains("hostname=ci-image"), "{args}");
        assert!(args.contains("url=http://{{ .HTTPIP }}:{{ .HTTPPort }}/preseed.cfg"));
        assert_eq!(unfilled(&args), Vec::<String>::new());
        assert_eq!(
            unfilled(&preset.boot_command(&values)),
            Vec::<String>::new()
        );
        // The password is in the served file only, never in Debug output.
        assert!(!format!("{values:?}").contains("s3cret"));
    }

    #[test]
    fn values_that_would_change_a_command_line_are_refused() {
        let preset = Preset::find("debian-12").unwrap();
        let with = |change: fn(&mut PresetValues)| {
            let mut values = values();
            change(&mut values);
            preset.check(&values).unwrap_err().to_string()
        };
        assert!(with(|v| v.hostname = "two words".into()).contains("hostname"));
        assert!(with(|v| v.user = "root".into()).contains("not root"));
        assert!(with(|v| v.password = String::new()).contains("--password-file"));
        assert!(with(|v| v.password = "a\nb".into()).contains("one line"));
        assert!(
            Preset::find("fedora")
                .unwrap_err()
                .to_string()
                .contains("debian-12")
        );
    }

    #[test]
    fn mirrors_are_read_from_urls_and_apt_sources() {
        assert_eq!(
            Mirror::parse("http://mirror.example:3142/debian").unwrap(),
            Mirror {
                host: "mirror.example:3142".into(),
                directory: "/debian".into()
            }
        );
        assert!(Mirror::parse("https://mirror.example/debian").is_err());
        assert!(Mirror::parse("http:///debian").is_err());
        let deb822 = "Types: deb\nURIs: http://a.example/debian\nSuites: bookworm\n";
        assert_eq!(apt_uris(deb822, true), ["http://a.example/debian"]);
        let one_line = "# comment\ndeb [arch=amd64] http://b.example/debian bookworm main\n\
                        deb http://c.example/debian-security bookworm-security main\n";
        assert_eq!(
            apt_uris(one_line, false),
            [
                "http://b.example/debian",
                "http://c.example/debian-security"
            ]
        );
    }
}
