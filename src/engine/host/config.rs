//! Settings: defaults sized from the host, `config.toml`, and command-line flags — merged in
//! one place with the precedence CLI > file > defaults.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::vcpus::Vcpus;
use crate::engine::namespace::Namespace;

/// The commented template printed by `kiln config --print-template`.
pub const TEMPLATE: &str = include_str!("../../../assets/config-template.toml");

/// Where kiln keeps its files, from the `directories` crate (XDG on Linux).
#[derive(Debug, Clone)]
pub struct Dirs {
    pub config_dir: PathBuf,
    pub data_dir: PathBuf,
    /// Downloads kept for the next build (netboot kernels and initrds).
    pub cache_dir: PathBuf,
}

impl Dirs {
    pub fn discover() -> Option<Dirs> {
        let dirs = directories::ProjectDirs::from("", "", "kiln")?;
        Some(Dirs {
            config_dir: dirs.config_dir().to_path_buf(),
            data_dir: dirs.data_dir().to_path_buf(),
            cache_dir: dirs.cache_dir().to_path_buf(),
        })
    }

    pub fn config_file(&self) -> PathBuf {
        self.config_dir.join("config.toml")
    }

    /// User themes that override or add to the built-in ones.
    pub fn theme_dir(&self) -> PathBuf {
        self.config_dir.join("themes")
    }

    /// Records of running machines, so a later kiln can find one a crash left behind.
    pub fn machine_records(&self) -> PathBuf {
        self.data_dir.join("machines")
    }

    pub fn log_file(&self) -> PathBuf {
        self.data_dir.join("kiln.log")
    }
}

/// `config.toml` as written by the person; every key optional.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub memory_mib: Option<u32>,
    pub cpus: Option<Vcpus>,
    pub image_dir: Option<PathBuf>,
    pub theme: Option<String>,
    pub graphics: Option<Graphics>,
    #[serde(default)]
    pub djinn: DjinnFileConfig,
}

/// How the workbench draws the guest's screen: terminal graphics (real pixels) or
/// half-block characters. `auto` asks the terminal what it can show.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Graphics {
    #[default]
    Auto,
    Kitty,
    Sixel,
    Iterm2,
    Blocks,
}

impl std::str::FromStr for Graphics {
    type Err = String;

    fn from_str(text: &str) -> Result<Graphics, String> {
        match text {
            "auto" => Ok(Graphics::Auto),
            "kitty" => Ok(Graphics::Kitty),
            "sixel" => Ok(Graphics::Sixel),
            "iterm2" => Ok(Graphics::Iterm2),
            "blocks" => Ok(Graphics::Blocks),
            other => Err(format!(
                "`{other}` is not a graphics mode (auto, kitty, sixel, iterm2, blocks)"
            )),
        }
    }
}

/// The `[djinn]` table. The token is deliberately not here: it comes from the environment
/// or a 0600 token file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DjinnFileConfig {
    pub url: Option<String>,
    pub namespace: Option<Namespace>,
}

/// What the command line said, for the settings that can also come from the file.
#[derive(Debug, Clone, Default)]
pub struct CliOverrides {
    pub memory_mib: Option<u32>,
    pub cpus: Option<Vcpus>,
    pub image_dir: Option<PathBuf>,
    pub theme: Option<String>,
    pub graphics: Option<Graphics>,
}

/// The effective settings every step reads.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Settings {
    pub memory_mib: u32,
    pub cpus: Vcpus,
    pub image_dir: PathBuf,
    pub theme: String,
    pub graphics: Graphics,
    pub djinn_url: Option<String>,
    pub djinn_namespace: Option<Namespace>,
}

/// What the host can spare, used for the defaults.
#[derive(Debug, Clone, Copy)]
pub struct HostResources {
    pub cpus: u32,
    pub memory_mib: u64,
    /// KVM is ruled out here without a probe boot: machines run under TCG.
    pub software_emulation: bool,
}

impl HostResources {
    /// Install and test machines get up to 4 GiB and 2 CPUs, never more than half the host.
    pub fn default_memory_mib(self) -> u32 {
        (self.memory_mib / 2).clamp(256, 4096) as u32
    }

    /// Under TCG one or two, decided at power-on from the host's idle cores (see
    /// [`Vcpus::ByIdleCores`]); under KVM up to 2.
    pub fn default_cpus(self) -> Vcpus {
        match self.software_emulation {
            true => Vcpus::ByIdleCores,
            false => Vcpus::Exactly(self.cpus.clamp(1, 2)),
        }
    }
}

/// The config file could not be used; the message names the file and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not valid: {message}", .path.display())]
    Parse { path: PathBuf, message: String },
}

/// Read a config file; a missing file is the same as an empty one.
pub fn load_file(path: &Path) -> Result<FileConfig, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: toml_problem(&text, &e),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(FileConfig::default()),
        Err(source) => Err(ConfigError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Where a TOML file is wrong and why — `line 3, column 9: invalid string` — without
/// quoting the line: a token pasted into the wrong file must not end up in a CI log.
pub fn toml_problem(text: &str, error: &toml::de::Error) -> String {
    // serde quotes the offending value ("invalid type: string \"…\""): not that either.
    let mut message = String::new();
    for (i, part) in error.message().trim_end().split('"').enumerate() {
        message.push_str(if i % 2 == 1 { "\"…" } else { part });
        if i % 2 == 1 {
            message.push('"');
        }
    }
    let Some(span) = error.span() else {
        return message;
    };
    let before = &text.as_bytes()[..span.start.min(text.len())];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let column = before.iter().rev().take_while(|b| **b != b'\n').count() + 1;
    // The key is named when the line has a plain one; the value never is.
    let key = text
        .lines()
        .nth(line - 1)
        .and_then(|l| l.split_once('='))
        .map(|(key, _)| key.trim())
        .filter(|key| {
            !key.is_empty()
                && key.len() <= 40
                && key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        })
        .map(|key| format!(" (`{key}`)"))
        .unwrap_or_default();
    format!("line {line}, column {column}{key}: {message}")
}

fn layer<T>(cli: Option<T>, file: Option<T>, default: T) -> T {
    cli.or(file).unwrap_or(default)
}

/// The single place where CLI, file and defaults meet.
pub fn resolve(cli: CliOverrides, file: FileConfig, host: HostResources) -> Settings {
    Settings {
        memory_mib: layer(cli.memory_mib, file.memory_mib, host.default_memory_mib()),
        cpus: layer(cli.cpus, file.cpus, host.default_cpus()),
        image_dir: layer(cli.image_dir, file.image_dir, PathBuf::from(".")),
        theme: layer(cli.theme, file.theme, "auto".to_string()),
        graphics: layer(cli.graphics, file.graphics, Graphics::Auto),
        // Per-command flags (--url, --namespace) are step choices and win over these in
        // workflow::requests; the settings hold the config file's defaults.
        djinn_url: file.djinn.url,
        djinn_namespace: file.djinn.namespace,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_config_names_line_and_column_but_never_echoes_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.toml");
        let secret = "djinn_tok_5ecret_0123456789";
        std::fs::write(&file, format!("cpus = 2\ntoken {secret}\n")).unwrap();
        let error = load_file(&file).unwrap_err().to_string();
        assert!(error.contains("line 2, column"), "{error}");
        assert!(!error.contains("5ecret"), "the line was echoed: {error}");
        std::fs::write(&file, format!("[djinn]\nurl = \"{secret}\"\nextra = 1\n")).unwrap();
        let error = load_file(&file).unwrap_err().to_string();
        assert!(error.contains("line 3"), "{error}");
        assert!(!error.contains("5ecret"), "the line was echoed: {error}");
        std::fs::write(&file, format!("memory_mib = \"{secret}\"\n")).unwrap();
        let error = load_file(&file).unwrap_err().to_string();
        assert!(
            error.contains("line 1, column 14 (`memory_mib`)"),
            "{error}"
        );
        assert!(!error.contains("5ecret"), "the value was echoed: {error}");
    }

    const HOST: HostResources = HostResources {
        cpus: 8,
        memory_mib: 24 * 1024,
        software_emulation: false,
    };

    #[test]
    fn cli_beats_file_beats_defaults() {
        let file = FileConfig {
            memory_mib: Some(3000),
            cpus: Some(Vcpus::Exactly(3)),
            theme: Some("light".into()),
            djinn: DjinnFileConfig {
                url: Some("https://ci.example".into()),
                namespace: Some("team".parse().unwrap()),
            },
            ..FileConfig::default()
        };
        let cli = CliOverrides {
            memory_mib: Some(1024),
            ..CliOverrides::default()
        };
        let settings = resolve(cli, file, HOST);
        assert_eq!(settings.memory_mib, 1024); // CLI
        assert_eq!(settings.cpus, Vcpus::Exactly(3)); // file
        assert_eq!(settings.theme, "light"); // file
        assert_eq!(settings.image_dir, PathBuf::from(".")); // default
        assert_eq!(settings.djinn_url.as_deref(), Some("https://ci.example"));
        assert_eq!(
            settings.djinn_namespace.map(|ns| ns.to_string()).as_deref(),
            Some("team")
        );
    }

    #[test]
    fn defaults_never_take_more_than_half_the_host() {
        let small = HostResources {
            cpus: 1,
            memory_mib: 2048,
            software_emulation: false,
        };
        let settings = resolve(CliOverrides::default(), FileConfig::default(), small);
        assert_eq!(settings.memory_mib, 1024);
        assert_eq!(settings.cpus, Vcpus::Exactly(1));
        let big = resolve(CliOverrides::default(), FileConfig::default(), HOST);
        assert_eq!(big.memory_mib, 4096);
        assert_eq!(big.cpus, Vcpus::Exactly(2));
        let emulated = HostResources {
            software_emulation: true,
            ..HOST
        };
        let tcg = resolve(CliOverrides::default(), FileConfig::default(), emulated);
        assert_eq!(
            tcg.cpus,
            Vcpus::ByIdleCores,
            "decided at power-on under TCG"
        );
        let asked = CliOverrides {
            cpus: Some(Vcpus::Exactly(2)),
            ..CliOverrides::default()
        };
        assert_eq!(
            resolve(asked, FileConfig::default(), emulated).cpus,
            Vcpus::Exactly(2)
        );
    }

    #[test]
    fn template_is_valid_commented_and_uncommented() {
        assert_eq!(
            toml::from_str::<FileConfig>(TEMPLATE).unwrap(),
            FileConfig::default()
        );
        // Every setting line in the template is `#key = value`; uncommented, they must parse.
        let uncommented: String = TEMPLATE
            .lines()
            .map(|line| match line.strip_prefix('#') {
                Some(rest) if rest.starts_with(|c: char| c.is_ascii_lowercase() || c == '[') => {
                    rest
                }
                _ => line,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let parsed: FileConfig = toml::from_str(&uncommented).unwrap();
        assert!(parsed.memory_mib.is_some() && parsed.djinn.url.is_some());
    }

    #[test]
    fn broken_file_names_the_file_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "memory_mib = \"lots\"\n").unwrap();
        let err = load_file(&path).unwrap_err().to_string();
        assert!(
            err.contains("config.toml") && err.contains("memory_mib"),
            "{err}"
        );
        std::fs::write(&path, "colour = 1\n").unwrap();
        let err = load_file(&path).unwrap_err().to_string();
        assert!(err.contains("colour"), "{err}");
        assert_eq!(
            load_file(&dir.path().join("absent.toml")).unwrap(),
            FileConfig::default()
        );
    }
}
