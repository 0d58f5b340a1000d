//! Presets: a distribution's answer-file templates and the kernel arguments (or boot command)
//! that point its installer at them, compiled in from `assets/presets/NAME/` (every folder
//! there, by build.rs: a new preset is a new folder). kiln fills in the person's choices,
//! serves the result from the answer-file server, and boots the installer.
//! `assets/presets/README.md` says what a preset folder holds.

use std::fmt;
use std::path::Path;

use serde::Deserialize;

use super::mirror::{Archive, Mirror};
use super::netboot::{Netboot, NetbootFile};
use crate::engine::files::download::DownloadError;

use super::answer_server::GUEST_HOST_ADDRESS;
use super::boot_command::{HTTP_IP, HTTP_PORT};
use crate::engine::steps::configure::REFERENCE_SSHD_CONFIG;

/// The built-in presets: each folder's name and its files (name, text).
const BUILT_IN: &[(&str, &[(&str, &str)])] = include!(concat!(env!("OUT_DIR"), "/presets.rs"));

/// Placeholders the answer-file server fills in (the guest's view of it), not the preset.
const SERVER_PLACEHOLDERS: [&str; 2] = [HTTP_IP, HTTP_PORT];

/// A preset's `preset.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PresetFile {
    description: String,
    /// Files of the folder kiln fills in and serves, each under its own name.
    answer_files: Vec<String>,
    kernel_args: String,
    boot_command: String,
    /// A Debian-style archive kiln examines before booting; other mirrors are not examined.
    archive: Option<Archive>,
    netboot: Option<NetbootLocations>,
}

/// `[netboot]`: the distribution's netboot kernel and initrd under the preset's mirror
/// (`{{ .MirrorURL }}`), each with its checksum (64 hex digits or `SHA256SUMS#PATH`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct NetbootLocations {
    kernel: String,
    kernel_sha256: String,
    initrd: String,
    initrd_sha256: String,
}

/// One preset, ready to fill in.
#[derive(Debug, Clone)]
pub struct Preset {
    pub name: &'static str,
    pub description: String,
    /// Each answer file's name on the server (`preseed.cfg`) and its template.
    answer_files: Vec<(String, &'static str)>,
    kernel_args: String,
    boot_command: String,
    /// The archive its mirror must be, when the mirror is a Debian-style archive.
    pub archive: Option<Archive>,
    netboot: Option<NetbootLocations>,
}

/// What a preset needs from the person. The password is a secret: never shown in `Debug`,
/// written only into the answer file kiln serves for the length of the install.
#[derive(Clone, PartialEq)]
pub struct PresetValues {
    pub hostname: String,
    pub user: String,
    pub password: String,
    pub mirror: Mirror,
    /// Install from a mirror whose signatures cannot be checked (a local test mirror): the
    /// installer is told to accept an unsigned archive. Never the default.
    pub insecure_mirror: bool,
}

impl fmt::Debug for PresetValues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PresetValues")
            .field("hostname", &self.hostname)
            .field("user", &self.user)
            .field("password", &"<secret>")
            .field("mirror", &self.mirror)
            .field("insecure_mirror", &self.insecure_mirror)
            .finish()
    }
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
        let (name, files) = BUILT_IN
            .iter()
            .find(|(known, ..)| *known == name)
            .ok_or_else(|| PresetError::Unknown(name.to_string()))?;
        let broken = |why: String| PresetError::Broken(name.to_string(), why);
        let text_of =
            |file: &str| (files.iter().find(|(known, _)| *known == file)).map(|(_, text)| *text);
        let toml_text = text_of("preset.toml").ok_or_else(|| broken("no preset.toml".into()))?;
        let file: PresetFile = toml::from_str(toml_text).map_err(|e| broken(e.to_string()))?;
        let answer_files = (file.answer_files.iter())
            .map(|answer| match text_of(answer) {
                Some(text) => Ok((answer.clone(), text)),
                None => Err(broken(format!("answer file {answer} is not in its folder"))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Preset {
            name,
            description: file.description,
            answer_files,
            kernel_args: file.kernel_args,
            boot_command: file.boot_command,
            archive: file.archive,
            netboot: file.netboot,
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

    /// Write the filled-in answer files and the reference sshd_config their late command
    /// fetches into `dir`, which the answer-file server on `port` serves.
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
        let write = |name: &str, text: &str| {
            std::fs::write(dir.join(name), text).map_err(|source| PresetError::Write {
                dir: dir.to_path_buf(),
                source,
            })
        };
        for (name, template) in &self.answer_files {
            write(name, &fill(template, &pairs))?;
        }
        write("sshd_config", REFERENCE_SSHD_CONFIG)
    }

    /// The kernel arguments that start an unattended install, the preset's values filled in
    /// (the server's address is left for the boot machinery, which knows it).
    pub fn kernel_args(&self, values: &PresetValues) -> String {
        fill(&self.kernel_args, &self.pairs(values))
    }

    /// The kernel arguments with the answer-file server's address filled in too: what the
    /// installer gets when the server listens on `port`.
    pub fn kernel_args_for_server(&self, values: &PresetValues, port: u16) -> String {
        let (address, port) = (GUEST_HOST_ADDRESS.to_string(), port.to_string());
        let mut pairs = self.pairs(values);
        pairs.push((HTTP_IP, &address));
        pairs.push((HTTP_PORT, &port));
        fill(&self.kernel_args, &pairs)
    }

    /// The same as a boot command for the ISO's boot menu, when its kernel cannot be booted
    /// directly.
    pub fn boot_command(&self, values: &PresetValues) -> String {
        fill(&self.boot_command, &self.pairs(values))
    }

    /// Whether the preset knows where its distribution's netboot files are.
    pub fn has_netboot(&self) -> bool {
        self.netboot.is_some()
    }

    /// The distribution's netboot kernel and initrd on the chosen mirror (as this host
    /// reaches it: kiln downloads them), when the preset knows where they are.
    pub fn netboot(&self, values: &PresetValues) -> Option<Result<Netboot, DownloadError>> {
        let locations = self.netboot.as_ref()?;
        let mirror = values.mirror.url_from_host();
        let mut pairs = self.pairs(values);
        pairs.push(("MirrorURL", &mirror));
        let file = |location: &str, checksum: &str| {
            NetbootFile::parse(&fill(location, &pairs), Some(&fill(checksum, &pairs)))
        };
        Some((|| {
            Ok(Netboot {
                kernel: file(&locations.kernel, &locations.kernel_sha256)?,
                initrd: file(&locations.initrd, &locations.initrd_sha256)?,
            })
        })())
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
            (
                "InsecureMirror",
                if values.insecure_mirror {
                    "true"
                } else {
                    "false"
                },
            ),
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
            insecure_mirror: false,
        }
    }

    fn answers(values: &PresetValues) -> String {
        let preset = Preset::find("debian-12").unwrap();
        let dir = tempfile::tempdir().unwrap();
        preset.write_answers(dir.path(), values, 4321).unwrap();
        std::fs::read_to_string(dir.path().join("preseed.cfg")).unwrap()
    }

    /// The preseed lines that hold a setting (its comments left out).
    fn setting_lines(answers: &str, needle: &str) -> Vec<String> {
        answers
            .lines()
            .filter(|line| !line.starts_with('#') && line.contains(needle))
            .map(|line| line.trim().to_string())
            .collect()
    }

    #[test]
    fn signatures_are_checked_unless_an_insecure_mirror_is_asked_for() {
        let signed = answers(&values());
        assert_eq!(
            setting_lines(&signed, "allow_unauthenticated boolean"),
            ["d-i debian-installer/allow_unauthenticated boolean false"]
        );
        // The hook that lets apt in /target take an unsigned Release never starts.
        assert_eq!(
            setting_lines(&signed, "= true ]"),
            [r#"if [ "false" = true ]; then \"#]
        );
        let insecure = answers(&PresetValues {
            insecure_mirror: true,
            ..values()
        });
        assert_eq!(
            setting_lines(&insecure, "allow_unauthenticated boolean"),
            ["d-i debian-installer/allow_unauthenticated boolean true"]
        );
        assert_eq!(
            setting_lines(&insecure, "= true ]"),
            [r#"if [ "true" = true ]; then \"#]
        );
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
}
