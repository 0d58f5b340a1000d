//! Recipes: an image described in a TOML file checked into git, so that `kiln build
//! RECIPE.toml` can make it again without a person. This module reads a recipe, applies the
//! command line's `--var KEY=VALUE` overrides and checks everything that can be checked
//! without doing any work — sizes, durations, the boot command's syntax, names, URLs, that
//! every file it names exists — so a mistake fails in a second, at its line and column, and
//! not forty minutes into an install.
//!
//! # The format
//!
//! ```toml
//! # debian-12-ci.toml: `kiln build debian-12-ci.toml`
//! name = "debian-12-ci"                  # NAME.qcow2, and the name it is published under
//!
//! [disk]
//! size = "10G"                           # the new disk (default: kiln's 10G)
//!
//! [machine]                              # optional: the install and configure machines
//! memory_mib = 2048
//! cpus = 2
//!
//! [install]                              # or [base] image = "x.qcow2": copied, never changed
//! iso = "debian-12-netinst.iso"          # relative to this file; `~/` is $HOME
//! iso_sha256 = "SHA256SUMS"              # 64 hex digits, or a SHA256SUMS file
//! preset = "debian"                      # the built-in debian-12 answer file
//! mirror = "http://mirror.example/debian"  # else this host's own Debian mirror
//! timeout = "40m"
//! # Without a preset, or to start it differently (Packer's syntax and meanings):
//! # boot_command = "<esc><wait>auto url=http://{{ .HTTPIP }}:{{ .HTTPPort }}/preseed.cfg<enter>"
//! # boot_wait = "10s", key_interval = "100ms", http_dir = "http", http_port = 8100,
//! # kernel_boot = true, kernel = "/install.amd/vmlinuz", initrd = "/install.amd/initrd.gz",
//! # kernel_args = "auto=true priority=critical", serial_console = true
//!
//! [configure]
//! user = "builder"                       # the preset creates it; configure logs in as it
//! password_file = "secrets/pw.txt"       # its first line; or password_env = "VAR"
//! # key = "~/.ssh/id_ed25519", passphrase_file = "…" or passphrase_env = "VAR"
//! variant = "reference"                  # reference | pam; or sshd_config = "FILE"
//!
//! [[provision]]                          # in order, as root, after configure
//! upload = "files/motd"
//! to = "/etc/motd"
//! mode = "0644"                          # octal, as chmod takes it
//!
//! [[provision]]
//! shell = "scripts/setup.sh"
//! env = { TOOLCHAIN = "stable" }
//!
//! [cleanup]                              # each off unless set
//! zero_free_space = true
//! clear_machine_id = true
//! regenerate_host_keys = true
//!
//! [verify]
//! profiles = ["djinn", "srht"]           # default ["djinn"]
//!
//! [[publish]]
//! to = "djinn"                           # djinn | offline | srht
//! url = "https://ci.example/api"
//! namespace = "images"
//! token_env = "DJINN_TOKEN"              # else kiln's usual: KILN_DJINN_TOKEN or its token file
//!
//! [[publish]]
//! to = "offline"
//! driver_conf = "~/.config/djinn/driver.conf"
//! namespace = "images"
//! compact = true                         # also: name, base, compress, sha256, replace;
//!                                        # srht: root, release = "debian/12", arch
//!
//! [post_build]
//! command = "scripts/notify.sh"          # an executable, run with the image's details
//! ```
//!
//! # Decisions
//!
//! - Exactly one of `[install]` and `[base]`. A base image keeps its size, so `[disk] size`
//!   goes only with `[install]`.
//! - Secrets come from files or the environment: `password_file`/`password_env`,
//!   `passphrase_file`/`passphrase_env`, `token_env`, one of each pair at most. A `password`,
//!   `passphrase` or `token` key is refused with a pointer to these, and no error quotes a
//!   secret file's name (a password pasted there by mistake must not reach a CI log).
//! - Preset names are those [`Preset::find`] knows, and `debian` for `debian-12`; the
//!   recipe holds the built-in name.
//! - The types use `session::Choices`' words. What it records as written (size, boot wait,
//!   key interval, boot command, mirror, the ISO's checksum) is checked and kept as written,
//!   paths made absolute; the install's timeout is a [`Duration`]. `[[provision]]` and
//!   `[cleanup]` become the provision step's own [`ProvisionStep`] and [`Extras`].
//! - Unless set, `[cleanup]` keys are off, `[verify]` profiles are `["djinn"]` and a Djinn
//!   target's token is kiln's usual one. A key a publish target does not read is an error,
//!   not ignored.
//! - `--var KEY=VALUE` sets one key before anything is read from the tree: `disk.size=20G`,
//!   `publish.0.namespace=x` (entries counted from 0). A value is a TOML boolean or integer
//!   when it reads as one, else a string. A key the format does not have is an error naming
//!   the `--var`, and so is any problem with the value it set.
//! - Every error names the file and then `line L, column C` (counted from 1, in characters)
//!   or the `--var`. A boot command's mistake is placed at its own line and column when the
//!   string has no escapes, else at the string.
//! - Not checked here: what needs the build's environment or work — the ISO's checksum, the
//!   contents of driver.conf, whether a variable is set ([`Recipe::unset_variables`] says).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Display;
use std::num::NonZeroU32;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::config::toml_problem;
use super::configure::{Extras, SshdVariant};
use super::driver::Profile;
use super::image::{is_valid_image_name, parse_size};
use super::install::boot_command::{self, BootCommand, Position, edit_distance, parse_duration};
use super::install::preset::{Mirror, Preset};
use super::provision::ProvisionStep;
use super::publish::{TargetKind, is_valid_namespace};

/// Other names people give the built-in presets.
const PRESET_ALIASES: [(&str, &str); 1] = [("debian", "debian-12")];

/// An image's recipe, read and checked: paths absolute, every value valid.
#[derive(Debug, Clone)]
pub struct Recipe {
    /// The recipe file, absolute.
    pub file: PathBuf,
    pub name: String,
    pub disk: Disk,
    pub machine: Machine,
    pub source: Source,
    pub configure: Configure,
    /// `[[provision]]`, in order.
    pub provision: Vec<ProvisionStep>,
    /// `[cleanup]`, each off unless set.
    pub cleanup: Extras,
    pub verify: Verify,
    pub publish: Vec<Publish>,
    pub post_build: Option<PostBuild>,
}

/// `[disk]`: the new disk.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Disk {
    /// As written (`10G`, which [`parse_size`] accepts); `None` is kiln's default.
    pub size: Option<String>,
}

/// `[machine]`: the machine that installs and configures; `None` takes the settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Machine {
    pub memory_mib: Option<NonZeroU32>,
    pub cpus: Option<NonZeroU32>,
}

/// Where the image starts: an install from an ISO, or a copy of an installed image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Boxed: an install has many settings, a base image one.
    Install(Box<Install>),
    Base(Base),
}

/// `[install]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Install {
    pub iso: PathBuf,
    /// 64 hex digits, or the absolute path of a SHA256SUMS file.
    pub iso_sha256: Option<String>,
    /// The built-in name (`debian-12`), aliases resolved.
    pub preset: Option<String>,
    pub mirror: Option<String>,
    pub boot_command: Option<String>,
    pub boot_wait: Option<String>,
    pub key_interval: Option<String>,
    pub http_dir: Option<PathBuf>,
    pub http_port: Option<u16>,
    #[serde(default)]
    pub kernel_boot: bool,
    pub kernel: Option<String>,
    pub initrd: Option<String>,
    pub kernel_args: Option<String>,
    #[serde(default)]
    pub serial_console: bool,
    /// How long the install may take; `None` is the step's own limit.
    #[serde(default, deserialize_with = "duration")]
    pub timeout: Option<Duration>,
}

/// `[base]`: an installed qcow2, copied to NAME.qcow2 and never changed itself.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Base {
    pub image: PathBuf,
}

/// `[configure]`: how to log in, and which sshd_config to install. Secrets are named by
/// where they are, a file's first line or a variable, and read when the build runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Configure {
    /// `None` is root.
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
    pub key: Option<PathBuf>,
    pub passphrase_file: Option<PathBuf>,
    pub passphrase_env: Option<String>,
    /// `None` is the reference variant.
    pub variant: Option<SshdVariant>,
    /// A file of the person's own, instead of a variant.
    pub sshd_config: Option<PathBuf>,
}

/// `[verify]`: the CI drivers the image must boot under, in order.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Verify {
    pub profiles: Vec<Profile>,
}

impl Default for Verify {
    fn default() -> Verify {
        Verify {
            profiles: vec![Profile::Djinn],
        }
    }
}

/// One `[[publish]]` entry, in the publish choices' words.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Publish {
    #[serde(rename = "to")]
    pub target: TargetKind,
    pub url: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// Djinn only: the variable holding the token; `None` is kiln's usual token
    /// (`publish::load_token`).
    pub token_env: Option<String>,
    pub driver_conf: Option<PathBuf>,
    pub root: Option<PathBuf>,
    pub release: Option<String>,
    pub arch: Option<String>,
    #[serde(default)]
    pub base: bool,
    #[serde(default)]
    pub compact: bool,
    #[serde(default)]
    pub compress: bool,
    #[serde(default)]
    pub sha256: bool,
    #[serde(default)]
    pub replace: bool,
}

/// `[post_build]`: a program run once the image is built and published.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostBuild {
    pub command: PathBuf,
}

/// Why a recipe cannot be used; each names the file and, when it has one, the place.
#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    #[error("cannot read the recipe {}: {source}", .file.display())]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    /// `place` is `line L, column C` or `--var KEY`.
    #[error("{}, {place}: {problem}", .file.display())]
    At {
        file: PathBuf,
        place: String,
        problem: String,
    },
    #[error("{}: {problem}", .file.display())]
    Whole { file: PathBuf, problem: String },
}

impl Recipe {
    /// Read `path`, apply `vars` (`--var KEY=VALUE`, split at the first `=`) and check it all.
    pub fn load(path: &Path, vars: &[(String, String)]) -> Result<Recipe, RecipeError> {
        load(
            path,
            vars,
            std::env::var_os("HOME").map(PathBuf::from).as_deref(),
        )
    }

    /// The environment variables the recipe reads that are not set now: worth refusing
    /// before a build starts rather than at its end.
    pub fn unset_variables(&self) -> Vec<&str> {
        let secrets = [&self.configure.password_env, &self.configure.passphrase_env];
        let tokens = self.publish.iter().map(|p| &p.token_env);
        (secrets.into_iter().chain(tokens))
            .filter_map(Option::as_deref)
            .filter(|name| std::env::var_os(name).is_none())
            .collect()
    }
}

fn load(path: &Path, vars: &[(String, String)], home: Option<&Path>) -> Checked<Recipe> {
    let read_error = |source| RecipeError::Read {
        file: path.to_path_buf(),
        source,
    };
    let text = std::fs::read_to_string(path).map_err(read_error)?;
    let file = std::path::absolute(path).map_err(read_error)?;
    let mut reader = Reader {
        file: path,
        text: &text,
        dir: file.parent().unwrap_or(Path::new("/")),
        home,
        vars,
        tree: Spanned::new(0..0, DeValue::Table(DeTable::new())),
    };
    let written = reader.read()?;
    reader.recipe(file.clone(), written)
}

/// The file as deserialized, before the sections that become enums are told apart.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Written {
    name: String,
    #[serde(default)]
    disk: Disk,
    #[serde(default)]
    machine: Machine,
    install: Option<Install>,
    base: Option<Base>,
    #[serde(default)]
    configure: Configure,
    #[serde(default)]
    provision: Vec<ProvisionEntry>,
    #[serde(default)]
    cleanup: CleanupSection,
    #[serde(default)]
    verify: Verify,
    #[serde(default)]
    publish: Vec<Publish>,
    post_build: Option<PostBuild>,
}

/// `[cleanup]`, read into [`Extras`].
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct CleanupSection {
    zero_free_space: bool,
    clear_machine_id: bool,
    regenerate_host_keys: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProvisionEntry {
    upload: Option<PathBuf>,
    to: Option<String>,
    mode: Option<String>,
    shell: Option<PathBuf>,
    env: Option<BTreeMap<String, String>>,
}

/// `timeout = "40m"`, read here so that toml places a bad one.
fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    match parse_duration(&String::deserialize(deserializer)?) {
        Ok(duration) if duration.is_zero() => Err(serde::de::Error::custom("must be more than 0")),
        Ok(duration) => Ok(Some(duration)),
        Err(problem) => Err(serde::de::Error::custom(problem)),
    }
}

type Checked<T> = Result<T, RecipeError>;

/// Reads a recipe and checks it. Problems are reported by the dotted key they are at
/// (`install.iso`, `provision.0.upload`), looked up in the tree as parsed (with its spans)
/// for the place, and shown as `[install] iso` or `[[provision]] #1 upload`.
struct Reader<'a> {
    /// As the person gave it, for messages.
    file: &'a Path,
    text: &'a str,
    dir: &'a Path,
    home: Option<&'a Path>,
    vars: &'a [(String, String)],
    /// The parsed text with the `--var`s set (empty until [`Reader::read`]).
    tree: Spanned<DeValue<'a>>,
}

impl<'a> Reader<'a> {
    /// The TOML tree with the `--var`s set, deserialized. A `--var`'s key and value get a
    /// span past the end of the text (one per `--var`), so that whatever goes wrong with
    /// them is reported against the `--var` rather than a line of the file.
    fn read(&mut self) -> Checked<Written> {
        let root = DeTable::parse(self.text).map_err(|e| self.toml_error(&e))?;
        let (span, mut root) = (root.span(), root.into_inner());
        for (index, (key, value)) in self.vars.iter().enumerate() {
            let start = self.text.len() + 1 + index;
            set_var(&mut root, key, value, start..start + 1).map_err(|problem| {
                RecipeError::At {
                    file: self.file.to_path_buf(),
                    place: format!("--var {key}"),
                    problem,
                }
            })?;
        }
        self.tree = Spanned::new(span.clone(), DeValue::Table(root.clone()));
        let deserializer = toml::de::Deserializer::from(Spanned::new(span, root));
        Written::deserialize(deserializer).map_err(|e| self.toml_error(&e))
    }

    /// `line L, column C`, or the `--var` that set what is there.
    fn place(&self, offset: usize) -> String {
        let var = offset.checked_sub(self.text.len() + 1);
        if let Some((key, _)) = var.and_then(|index| self.vars.get(index)) {
            return format!("--var {key}");
        }
        let before = &self.text[..offset.min(self.text.len())];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let line = before.matches('\n').count() + 1;
        let column = before[line_start..].chars().count() + 1;
        format!("line {line}, column {column}")
    }

    /// The value at `key`, or the nearest table around it, and whether `key` is written.
    fn find(&self, key: &str) -> (&Spanned<DeValue<'a>>, bool) {
        let mut node = &self.tree;
        for name in key.split('.') {
            let child = match node.get_ref() {
                DeValue::Table(table) => table.get(name),
                DeValue::Array(items) => name.parse().ok().and_then(|i: usize| items.get(i)),
                _ => None,
            };
            match child {
                Some(child) => node = child,
                None => return (node, false),
            }
        }
        (node, true)
    }

    fn span(&self, key: &str) -> Range<usize> {
        self.find(key).0.span()
    }

    fn error(&self, key: &str, problem: impl Display) -> RecipeError {
        self.error_at(self.span(key).start, key, problem)
    }

    fn error_at(&self, offset: usize, key: &str, problem: impl Display) -> RecipeError {
        RecipeError::At {
            file: self.file.to_path_buf(),
            place: self.place(offset),
            problem: format!("{}: {problem}", label(key)),
        }
    }

    /// A TOML or format error, placed and worded by [`toml_problem`] (which never quotes
    /// the line or a string value), with a hint for an unknown name.
    fn toml_error(&self, error: &toml::de::Error) -> RecipeError {
        let file = self.file.to_path_buf();
        let in_var = error.span().is_some_and(|s| s.start > self.text.len());
        // toml_problem places by the text; a --var's span is past its end, so it gets none
        // and only its wording is kept.
        let problem = toml_problem(if in_var { "" } else { self.text }, error);
        let hint = unknown_name_hint(error.message()).map_or(String::new(), |h| format!("; {h}"));
        match (error.span(), problem.split_once(": ")) {
            (Some(span), Some((place, message))) => RecipeError::At {
                file,
                place: match in_var {
                    true => self.place(span.start),
                    false => place.to_string(),
                },
                problem: format!("{message}{hint}"),
            },
            _ => RecipeError::Whole {
                file,
                problem: format!("{problem}{hint}"),
            },
        }
    }

    fn recipe(&self, file: PathBuf, w: Written) -> Checked<Recipe> {
        if !is_valid_image_name(&w.name) {
            let problem = "use letters, digits, `_` and `-` (it names the file and the image)";
            return Err(self.error("name", problem));
        }
        let source = match (w.install, w.base) {
            (Some(install), None) => {
                Source::Install(Box::new(self.install(install, &w.configure)?))
            }
            (None, Some(base)) => {
                if w.disk.size.is_some() {
                    return Err(self.error("disk.size", "a [base] image keeps its own size"));
                }
                Source::Base(Base {
                    image: self.file("base.image", &base.image)?,
                })
            }
            (Some(_), Some(_)) => {
                let problem = "a recipe installs from [install] or starts from [base], not both";
                return Err(self.error("base", problem));
            }
            (None, None) => {
                return Err(RecipeError::Whole {
                    file: self.file.to_path_buf(),
                    problem: "no [install] or [base]: say how the image starts (an installer \
                              ISO, or an installed qcow2 to copy)"
                        .into(),
                });
            }
        };
        if let Some(size) = &w.disk.size {
            parse_size(size).map_err(|e| self.error("disk.size", e))?;
        }
        if w.verify.profiles.is_empty() {
            let problem = "name a driver (djinn, srht): a build is always verified";
            return Err(self.error("verify.profiles", problem));
        }
        let provision = (w.provision.into_iter().enumerate())
            .map(|(index, entry)| self.provision(&format!("provision.{index}"), entry))
            .collect::<Checked<_>>()?;
        let publish = (w.publish.into_iter().enumerate())
            .map(|(index, entry)| self.publish(&format!("publish.{index}"), entry))
            .collect::<Checked<_>>()?;
        Ok(Recipe {
            file,
            name: w.name,
            disk: w.disk,
            machine: w.machine,
            source,
            configure: self.configure(w.configure)?,
            provision,
            cleanup: Extras {
                zero_free_space: w.cleanup.zero_free_space,
                clear_machine_id: w.cleanup.clear_machine_id,
                regenerate_host_keys: w.cleanup.regenerate_host_keys,
            },
            verify: w.verify,
            publish,
            post_build: w.post_build.map(|p| self.post_build(p)).transpose()?,
        })
    }

    fn install(&self, mut install: Install, configure: &Configure) -> Checked<Install> {
        if let Some(preset) = &install.preset {
            install.preset = Some(self.preset(preset, configure)?);
            if install.http_dir.is_some() {
                let problem = "a preset serves its own answer files; leave out http_dir or preset";
                return Err(self.error("install.http_dir", problem));
            }
        } else if install.mirror.is_some() {
            let problem = "only a preset installs from a mirror; add preset or leave mirror out";
            return Err(self.error("install.mirror", problem));
        }
        if let Some(mirror) = &install.mirror {
            Mirror::parse(mirror).map_err(|e| self.error("install.mirror", e))?;
        }
        if install.kernel.is_some() != install.initrd.is_some() {
            let problem = "kernel and initrd go together: give both paths inside the ISO";
            let key = ["install.kernel", "install.initrd"][usize::from(install.initrd.is_some())];
            return Err(self.error(key, problem));
        }
        for (key, value) in [
            ("boot_wait", &install.boot_wait),
            ("key_interval", &install.key_interval),
        ] {
            if let Some(value) = value {
                parse_duration(value).map_err(|e| self.error(&format!("install.{key}"), e))?;
            }
        }
        if let Some(command) = &install.boot_command {
            self.boot_command(command)?;
        }
        if let Some(checksum) = &install.iso_sha256 {
            install.iso_sha256 = Some(self.checksum(checksum)?);
        }
        install.iso = self.file("install.iso", &install.iso)?;
        install.http_dir = (install.http_dir.as_deref())
            .map(|dir| self.dir("install.http_dir", dir))
            .transpose()?;
        Ok(install)
    }

    /// The preset's built-in name; it creates `[configure] user` with the password.
    fn preset(&self, written: &str, configure: &Configure) -> Checked<String> {
        let name = (PRESET_ALIASES.iter())
            .find(|(alias, _)| *alias == written)
            .map_or(written, |(_, name)| name);
        let preset = Preset::find(name).map_err(|e| {
            let aliases = PRESET_ALIASES.map(|(alias, name)| format!("{alias} for {name}"));
            self.error(
                "install.preset",
                format!("{e}; also {}", aliases.join(", ")),
            )
        })?;
        let name = preset.name;
        if configure.user.as_deref().is_none_or(|user| user == "root") {
            let problem = format!("{name} creates a user: name it in [configure] user (not root)");
            return Err(self.error("install.preset", problem));
        }
        if configure.password_file.is_none() && configure.password_env.is_none() {
            let problem = format!(
                "{name} sets the user's password: give [configure] password_file or password_env"
            );
            return Err(self.error("install.preset", problem));
        }
        Ok(name.to_string())
    }

    /// Parse the boot command now, as the install would, so its mistakes cost no boot.
    fn boot_command(&self, command: &str) -> Checked<()> {
        let known = [boot_command::HTTP_IP, boot_command::HTTP_PORT];
        let Err(error) = BootCommand::parse(command).and_then(|c| c.check_names(&known)) else {
            return Ok(());
        };
        let key = "install.boot_command";
        Err(match self.offset_in_string(self.span(key), error.at) {
            Some(offset) => self.error_at(offset, key, error.problem),
            None => self.error(key, error),
        })
    }

    /// Where `at` (a line and column in a string's value) is in the text, if the string was
    /// written without escapes, which would shift the columns.
    fn offset_in_string(&self, span: Range<usize>, at: Position) -> Option<usize> {
        let written = self.text.get(span.clone())?;
        let quote = ["\"\"\"", "'''", "\"", "'"]
            .into_iter()
            .find(|q| written.starts_with(q))?;
        let mut body = written.strip_prefix(quote)?.strip_suffix(quote)?;
        let mut offset = span.start + quote.len();
        // TOML drops a line break right after a multi-line string's opening quotes.
        let line_break = ["\r\n", "\n"].into_iter().find(|b| body.starts_with(b));
        if let (3, Some(line_break)) = (quote.len(), line_break) {
            body = &body[line_break.len()..];
            offset += line_break.len();
        }
        if quote.starts_with('"') && body.contains('\\') {
            return None;
        }
        let line_start: usize = body
            .split_inclusive('\n')
            .take(at.line - 1)
            .map(str::len)
            .sum();
        let line = body.get(line_start..)?;
        let column: usize = line.chars().take(at.column - 1).map(char::len_utf8).sum();
        Some(offset + line_start + column)
    }

    /// 64 hex digits, or a SHA256SUMS file listing the ISO (made absolute).
    fn checksum(&self, written: &str) -> Checked<String> {
        let key = "install.iso_sha256";
        let hex = written.trim();
        match hex.chars().all(|c| c.is_ascii_hexdigit()) {
            true if hex.len() == 64 => Ok(hex.to_ascii_lowercase()),
            true => Err(self.error(
                key,
                format!("a SHA-256 is 64 hex digits, not {}", hex.len()),
            )),
            false => Ok(self.file(key, Path::new(written))?.display().to_string()),
        }
    }

    fn configure(&self, mut c: Configure) -> Checked<Configure> {
        if c.user
            .as_deref()
            .is_some_and(|u| u.is_empty() || u.contains([' ', ':', '\n']))
        {
            return Err(self.error("configure.user", "a user name has no spaces or colons"));
        }
        for (secret, file, env) in [
            ("password", &c.password_file, &c.password_env),
            ("passphrase", &c.passphrase_file, &c.passphrase_env),
        ] {
            if file.is_some() && env.is_some() {
                let problem = format!("give {secret}_file or {secret}_env, not both");
                return Err(self.error(&format!("configure.{secret}_env"), problem));
            }
            if let Some(env) = env {
                self.env_name(&format!("configure.{secret}_env"), env)?;
            }
        }
        if c.key.is_none() && (c.passphrase_file.is_some() || c.passphrase_env.is_some()) {
            let key = ["configure.passphrase_env", "configure.passphrase_file"];
            let key = key[usize::from(c.passphrase_file.is_some())];
            return Err(self.error(key, "a passphrase unlocks a key: add key = \"FILE\""));
        }
        if c.variant.is_some() && c.sshd_config.is_some() {
            let problem = "choose a variant or your own sshd_config, not both";
            return Err(self.error("configure.variant", problem));
        }
        let secret = |key, file: &Option<PathBuf>| {
            (file.as_deref())
                .map(|f| self.secret_file(key, f))
                .transpose()
        };
        c.password_file = secret("configure.password_file", &c.password_file)?;
        c.passphrase_file = secret("configure.passphrase_file", &c.passphrase_file)?;
        c.key = c.key.map(|k| self.file("configure.key", &k)).transpose()?;
        c.sshd_config = (c.sshd_config.as_deref())
            .map(|f| self.file("configure.sshd_config", f))
            .transpose()?;
        Ok(c)
    }

    fn provision(&self, at: &str, entry: ProvisionEntry) -> Checked<ProvisionStep> {
        let key = |name: &str| format!("{at}.{name}");
        match (entry.upload, entry.shell) {
            (Some(upload), None) => {
                if entry.env.is_some() {
                    return Err(self.error(&key("env"), "env is for shell entries"));
                }
                let problem = "an upload needs to = \"/PATH\", where it goes in the guest";
                let to = entry.to.ok_or_else(|| self.error(at, problem))?;
                if !to.starts_with('/') {
                    return Err(self.error(&key("to"), "an absolute path in the guest"));
                }
                let mode = entry.mode.map(|mode| {
                    u32::from_str_radix(&mode, 8)
                        .ok()
                        .filter(|mode| *mode <= 0o7777)
                        .ok_or_else(|| self.error(&key("mode"), "octal permissions, e.g. \"0644\""))
                });
                Ok(ProvisionStep::Upload {
                    from: self.file(&key("upload"), &upload)?,
                    to,
                    mode: mode.transpose()?,
                })
            }
            (None, Some(shell)) => {
                if entry.to.is_some() || entry.mode.is_some() {
                    let name = if entry.to.is_some() { "to" } else { "mode" };
                    return Err(self.error(&key(name), "to and mode are for upload entries"));
                }
                let env = entry.env.unwrap_or_default();
                for name in env.keys() {
                    self.env_name(&key("env"), name)?;
                }
                let script = self.file(&key("shell"), &shell)?;
                Ok(ProvisionStep::Shell { script, env })
            }
            (Some(_), Some(_)) => {
                let problem = "an entry uploads a file or runs a script, not both; split it in two";
                Err(self.error(&key("shell"), problem))
            }
            (None, None) => {
                let problem = "give upload = \"FILE\" (with to = \"/PATH\") or shell = \"SCRIPT\"";
                Err(self.error(at, problem))
            }
        }
    }

    fn publish(&self, at: &str, mut p: Publish) -> Checked<Publish> {
        let key = |name: &str| format!("{at}.{name}");
        self.keys_fit_target(at, p.target)?;
        if p.target == TargetKind::Srht && (p.root.is_none() || p.release.is_none()) {
            let problem =
                "a builds.sr.ht tree needs root = \"DIR\" and release = \"DISTRO/RELEASE\"";
            return Err(self.error(&key("to"), problem));
        }
        let has_host = |url: &str, scheme| url.strip_prefix(scheme).is_some_and(|h| !h.is_empty());
        let is_url = |url: &str| has_host(url, "https://") || has_host(url, "http://");
        if p.url.as_deref().is_some_and(|url| !is_url(url)) {
            return Err(self.error(&key("url"), "an http:// or https:// URL, the API's base"));
        }
        let offline = p.target == TargetKind::Offline;
        if (p.namespace.as_deref())
            .is_some_and(|ns| !is_valid_namespace(ns) || offline && ns.contains('@'))
        {
            let owner = if offline {
                ""
            } else {
                ", then @OWNER for another owner's"
            };
            return Err(self.error(
                &key("namespace"),
                format!("a path of letters and `/`{owner}"),
            ));
        }
        if p.name
            .as_deref()
            .is_some_and(|name| !is_valid_image_name(name))
        {
            return Err(self.error(&key("name"), "use letters, digits, `_` and `-`"));
        }
        if p.release.as_deref().is_some_and(|r| !is_distro_release(r)) {
            return Err(self.error(&key("release"), "write distro/release, e.g. debian/12"));
        }
        if p.compress && !p.compact {
            let problem = "compress applies when compacting: add compact = true";
            return Err(self.error(&key("compress"), problem));
        }
        if let Some(env) = &p.token_env {
            self.env_name(&key("token_env"), env)?;
        }
        p.driver_conf = (p.driver_conf.as_deref())
            .map(|f| self.file(&key("driver_conf"), f))
            .transpose()?;
        p.root = p.root.map(|r| self.dir(&key("root"), &r)).transpose()?;
        Ok(p)
    }

    /// Refuse a key the entry's target does not read, rather than ignore it.
    fn keys_fit_target(&self, at: &str, target: TargetKind) -> Checked<()> {
        use TargetKind::{Djinn, Offline, Srht};
        const READ_BY: [(&str, &[TargetKind]); 11] = [
            ("url", &[Djinn]),
            ("token_env", &[Djinn]),
            ("namespace", &[Djinn, Offline]),
            ("name", &[Djinn, Offline]),
            ("driver_conf", &[Offline]),
            ("base", &[Offline]),
            ("root", &[Srht]),
            ("release", &[Srht]),
            ("arch", &[Srht]),
            ("sha256", &[Offline, Srht]),
            ("replace", &[Offline, Srht]),
        ];
        for (name, targets) in READ_BY {
            let key = format!("{at}.{name}");
            if !targets.contains(&target) && self.find(&key).1 {
                let names: Vec<_> = targets.iter().map(|t| t.name()).collect();
                let problem = format!(
                    "a {} target does not read it (only {})",
                    target.name(),
                    names.join(", ")
                );
                return Err(self.error(&key, problem));
            }
        }
        Ok(())
    }

    fn post_build(&self, post_build: PostBuild) -> Checked<PostBuild> {
        use std::os::unix::fs::PermissionsExt;
        let key = "post_build.command";
        let command = self.file(key, &post_build.command)?;
        let mode = std::fs::metadata(&command).map_or(0, |m| m.permissions().mode());
        if mode & 0o111 == 0 {
            let problem = format!("{} is not executable (chmod +x)", command.display());
            return Err(self.error(key, problem));
        }
        Ok(PostBuild { command })
    }

    // --- paths and names

    /// Relative to the recipe's directory; `~` and `~/…` in the home directory.
    fn path(&self, key: &str, written: &Path) -> Checked<PathBuf> {
        match (written.strip_prefix("~"), self.home) {
            (Ok(rest), Some(home)) => Ok(home.join(rest)),
            (Ok(_), None) => Err(self.error(key, "HOME is not set, so ~ means nothing")),
            (Err(_), _) if written.as_os_str().is_empty() => Err(self.error(key, "is empty")),
            (Err(_), _) => Ok(self.dir.join(written)),
        }
    }

    fn file(&self, key: &str, written: &Path) -> Checked<PathBuf> {
        self.existing(key, written, true, Path::is_file, "a directory, not a file")
    }

    fn dir(&self, key: &str, written: &Path) -> Checked<PathBuf> {
        self.existing(key, written, true, Path::is_dir, "a file, not a directory")
    }

    /// A secret's file, named in no message: the person may have pasted the secret itself.
    fn secret_file(&self, key: &str, written: &Path) -> Checked<PathBuf> {
        self.existing(key, written, false, Path::is_file, "not a file")
    }

    fn existing(
        &self,
        key: &str,
        written: &Path,
        shown: bool,
        is_right_kind: fn(&Path) -> bool,
        wrong_kind: &str,
    ) -> Checked<PathBuf> {
        let path = self.path(key, written)?;
        let named = match shown {
            true => format!("{} ", written.display()),
            false => "the file ".to_string(),
        };
        let problem = match (path.exists(), is_right_kind(&path)) {
            (_, true) => return Ok(path),
            (true, false) => format!("{named}is {wrong_kind}"),
            (false, _) if path.starts_with(self.dir) => {
                format!("{named}does not exist (in {})", self.dir.display())
            }
            (false, _) => format!("{named}does not exist"),
        };
        Err(self.error(key, problem))
    }

    fn env_name(&self, key: &str, name: &str) -> Checked<()> {
        let valid = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        match valid {
            true => Ok(()),
            false => Err(self.error(key, "a variable's name is letters, digits and `_`")),
        }
    }
}

/// `install.iso` as `[install] iso`, `provision.0.upload` as `[[provision]] #1 upload`.
fn label(key: &str) -> String {
    let mut names = key.splitn(3, '.');
    match (names.next(), names.next(), names.next()) {
        (Some(table), Some(index), rest) if index.parse::<usize>().is_ok() => {
            let number = index.parse::<usize>().unwrap_or_default() + 1;
            let rest = rest.map(|r| format!(" {r}")).unwrap_or_default();
            format!("[[{table}]] #{number}{rest}")
        }
        (Some(table), Some(name), rest) => {
            let rest = rest.map(|r| format!(".{r}")).unwrap_or_default();
            format!("[{table}] {name}{rest}")
        }
        (Some("base"), None, _) => "[base]".to_string(),
        _ => key.to_string(),
    }
}

fn is_distro_release(text: &str) -> bool {
    text.split_once('/').is_some_and(|(distro, release)| {
        !distro.is_empty() && !release.is_empty() && !release.contains('/')
    })
}

// ---------------------------------------------------------------------------------------------
// --var

/// Set `key` (dotted; array entries by index) to `value` in the tree, creating tables on the
/// way; the key and value get `span`.
fn set_var<'i>(
    root: &mut DeTable<'i>,
    key: &'i str,
    value: &'i str,
    span: Range<usize>,
) -> Result<(), String> {
    let path: Vec<&str> = key.split('.').collect();
    if path.iter().any(|segment| segment.is_empty()) {
        return Err("write the key as names joined by dots, e.g. disk.size".into());
    }
    let value = Spanned::new(span.clone(), typed_value(value));
    set_in_table(root, &path, value, span)
}

/// A TOML boolean or integer when the text reads as one; otherwise the text as a string.
fn typed_value(text: &str) -> DeValue<'_> {
    match DeValue::parse(text) {
        Ok(value) if matches!(value.get_ref(), DeValue::Boolean(_) | DeValue::Integer(_)) => {
            value.into_inner()
        }
        _ => DeValue::String(Cow::Borrowed(text)),
    }
}

fn set_in_table<'i>(
    table: &mut DeTable<'i>,
    path: &[&'i str],
    value: Spanned<DeValue<'i>>,
    span: Range<usize>,
) -> Result<(), String> {
    let (first, rest) = path.split_first().expect("a key has at least one name");
    let key = Spanned::new(span.clone(), Cow::Borrowed(*first));
    if rest.is_empty() {
        // An existing key keeps its own span: only the value is the --var's.
        table.insert(key, value);
        return Ok(());
    }
    let new_table = Spanned::new(span.clone(), DeValue::Table(DeTable::new()));
    let child = table.entry(key).or_insert(new_table);
    set_in_value(child.get_mut(), first, rest, value, span)
}

fn set_in_value<'i>(
    node: &mut DeValue<'i>,
    name: &str,
    path: &[&'i str],
    value: Spanned<DeValue<'i>>,
    span: Range<usize>,
) -> Result<(), String> {
    match node {
        DeValue::Table(table) => set_in_table(table, path, value, span),
        DeValue::Array(items) => {
            let (first, rest) = path.split_first().expect("a key has at least one name");
            let count = items.len();
            let item = (first.parse::<usize>().ok())
                .and_then(|index| items.get_mut(index))
                .ok_or_else(|| {
                    format!("`{name}` has {count} entries, numbered from 0: no entry `{first}`")
                })?;
            if rest.is_empty() {
                *item = value;
                Ok(())
            } else {
                set_in_value(item.get_mut(), first, rest, value, span)
            }
        }
        _ => Err(format!("`{name}` is a value, not a table")),
    }
}

// ---------------------------------------------------------------------------------------------
// Hints

/// The keys a secret would be written under, and where it comes from instead.
const SECRET_KEYS: [(&str, &str); 3] = [
    (
        "password",
        "password_file = \"FILE\" or password_env = \"VAR\"",
    ),
    (
        "passphrase",
        "passphrase_file = \"FILE\" or passphrase_env = \"VAR\"",
    ),
    (
        "token",
        "token_env = \"VAR\", or none for kiln's usual token",
    ),
];

/// For serde's "unknown field `x`, expected one of `a`, `b`" (or variant): where a secret
/// goes instead, or the known name closest to the one written.
fn unknown_name_hint(message: &str) -> Option<String> {
    let rest = (message.strip_prefix("unknown field `"))
        .or_else(|| message.strip_prefix("unknown variant `"))?;
    let mut names = rest.split('`').step_by(2);
    let written = names.next()?;
    if let Some((key, instead)) = SECRET_KEYS.iter().find(|(key, _)| *key == written) {
        return Some(format!("a {key} is never written in a recipe: {instead}"));
    }
    let (distance, closest) = names
        .filter(|name| !name.is_empty())
        .map(|name| (edit_distance(written, name), name))
        .min()?;
    (distance <= 2 && distance < written.len()).then(|| format!("did you mean `{closest}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A recipe's directory with the files the examples name, and a home directory.
    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Fixture {
            let fixture = Fixture {
                dir: tempfile::tempdir().unwrap(),
            };
            for file in [
                "debian.iso",
                "debian-12-netinst.iso",
                "SHA256SUMS",
                "secrets/pw.txt",
                "files/motd",
                "scripts/setup.sh",
                "scripts/notify.sh",
                "base.qcow2",
                "home/.config/djinn/driver.conf",
                "home/.ssh/id_ed25519",
                "http/preseed.cfg",
            ] {
                fixture.write(file, "x\n");
            }
            let notify = fixture.path("scripts/notify.sh");
            std::fs::set_permissions(notify, std::fs::Permissions::from_mode(0o755)).unwrap();
            fixture
        }

        fn path(&self, relative: &str) -> PathBuf {
            self.dir.path().join(relative)
        }

        fn write(&self, relative: &str, text: &str) {
            let path = self.path(relative);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }

        fn load(&self, text: &str, vars: &[(&str, &str)]) -> Result<Recipe, RecipeError> {
            self.write("recipe.toml", text);
            let vars: Vec<_> = vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            load(&self.path("recipe.toml"), &vars, Some(&self.path("home")))
        }

        fn error(&self, text: &str) -> String {
            self.error_with(text, &[])
        }

        fn error_with(&self, text: &str, vars: &[(&str, &str)]) -> String {
            match self.load(text, vars) {
                Ok(recipe) => panic!("loaded: {recipe:?}"),
                Err(error) => error.to_string(),
            }
        }
    }

    const MINIMAL: &str = "name = \"ci\"\n[install]\niso = \"debian.iso\"\n";

    fn install(recipe: &Recipe) -> &Install {
        match &recipe.source {
            Source::Install(install) => install,
            Source::Base(base) => panic!("a base image: {base:?}"),
        }
    }

    fn assert_has(error: &str, parts: &[&str]) {
        for part in parts {
            assert!(error.contains(part), "{part:?} not in: {error}");
        }
    }

    /// The ```toml block of the module documentation.
    fn documented_example() -> String {
        let source = include_str!("mod.rs");
        let doc: Vec<&str> = source
            .lines()
            .take_while(|line| line.starts_with("//!"))
            .map(|line| {
                line.strip_prefix("//! ")
                    .unwrap_or(line.trim_start_matches("//!"))
            })
            .collect();
        let start = doc.iter().position(|l| *l == "```toml").unwrap() + 1;
        let end = start + doc[start..].iter().position(|l| *l == "```").unwrap();
        doc[start..end].join("\n")
    }

    #[test]
    fn the_documented_example_loads_and_every_field_lands() {
        let fixture = Fixture::new();
        let recipe = fixture.load(&documented_example(), &[]).unwrap();
        let at = |relative: &str| fixture.path(relative);
        assert_eq!(recipe.file, at("recipe.toml"));
        assert_eq!(recipe.name, "debian-12-ci");
        assert_eq!(recipe.disk.size.as_deref(), Some("10G"));
        assert_eq!(recipe.machine.memory_mib.map(NonZeroU32::get), Some(2048));
        assert_eq!(recipe.machine.cpus.map(NonZeroU32::get), Some(2));
        let install = install(&recipe);
        assert_eq!(install.iso, at("debian-12-netinst.iso"));
        let sums = at("SHA256SUMS").display().to_string();
        assert_eq!(install.iso_sha256.as_deref(), Some(sums.as_str()));
        assert_eq!(install.preset.as_deref(), Some("debian-12"));
        assert_eq!(
            install.mirror.as_deref(),
            Some("http://mirror.example/debian")
        );
        assert_eq!(install.timeout, Some(Duration::from_secs(40 * 60)));
        let configure = &recipe.configure;
        assert_eq!(configure.user.as_deref(), Some("builder"));
        assert_eq!(configure.password_file, Some(at("secrets/pw.txt")));
        assert_eq!(configure.variant, Some(SshdVariant::Reference));
        assert_eq!(
            recipe.provision,
            vec![
                ProvisionStep::Upload {
                    from: at("files/motd"),
                    to: "/etc/motd".into(),
                    mode: Some(0o644),
                },
                ProvisionStep::Shell {
                    script: at("scripts/setup.sh"),
                    env: BTreeMap::from([("TOOLCHAIN".into(), "stable".into())]),
                },
            ]
        );
        assert_eq!(
            recipe.cleanup,
            Extras {
                zero_free_space: true,
                clear_machine_id: true,
                regenerate_host_keys: true,
            }
        );
        assert_eq!(recipe.verify.profiles, vec![Profile::Djinn, Profile::Srht]);
        let [djinn, offline] = &recipe.publish[..] else {
            panic!("{:?}", recipe.publish)
        };
        assert_eq!(djinn.target, TargetKind::Djinn);
        assert_eq!(djinn.url.as_deref(), Some("https://ci.example/api"));
        assert_eq!(djinn.namespace.as_deref(), Some("images"));
        assert_eq!(djinn.token_env.as_deref(), Some("DJINN_TOKEN"));
        assert_eq!(offline.target, TargetKind::Offline);
        assert_eq!(
            offline.driver_conf,
            Some(at("home/.config/djinn/driver.conf"))
        );
        assert!(offline.compact && !offline.compress && offline.token_env.is_none());
        assert_eq!(
            recipe.post_build,
            Some(PostBuild {
                command: at("scripts/notify.sh")
            })
        );
    }

    #[test]
    fn the_example_from_the_design_loads() {
        let fixture = Fixture::new();
        let text = r#"
name = "debian-12-ci"
[disk]
size = "10G"
[install]
iso = "debian-12-netinst.iso"
iso_sha256 = "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef"
preset = "debian"
timeout = "40m"
[configure]
user = "builder"
password_file = "secrets/pw.txt"
variant = "reference"
[[provision]]
upload = "files/motd"
to = "/etc/motd"
[[provision]]
shell = "scripts/setup.sh"
env = { TOOLCHAIN = "stable" }
[cleanup]
zero_free_space = true
clear_machine_id = true
regenerate_host_keys = true
[verify]
profiles = ["djinn", "srht"]
[[publish]]
to = "djinn"
url = "https://ci.example/api"
namespace = "images"
[[publish]]
to = "offline"
driver_conf = "~/.config/djinn/driver.conf"
namespace = "images"
[post_build]
command = "scripts/notify.sh"
"#;
        let recipe = fixture.load(text, &[]).unwrap();
        let install = install(&recipe);
        assert_eq!(
            install.iso_sha256.as_deref(),
            Some("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
        );
        assert!(matches!(
            &recipe.provision[0],
            ProvisionStep::Upload { mode: None, .. }
        ));
        assert_eq!(recipe.publish.len(), 2);
    }

    #[test]
    fn defaults_when_sections_are_left_out() {
        let recipe = Fixture::new().load(MINIMAL, &[]).unwrap();
        assert_eq!(recipe.disk, Disk::default());
        assert_eq!(recipe.configure, Configure::default());
        assert_eq!(recipe.cleanup, Extras::default());
        assert_eq!(recipe.verify.profiles, vec![Profile::Djinn]);
        assert!(recipe.provision.is_empty() && recipe.publish.is_empty());
        assert!(recipe.post_build.is_none());
        let install = install(&recipe);
        assert!(install.preset.is_none() && install.timeout.is_none() && !install.kernel_boot);
    }

    #[test]
    fn paths_are_relative_to_the_recipe_and_tilde_is_home() {
        let fixture = Fixture::new();
        fixture.write("sub/recipe-files/my.iso", "x");
        let text = "name = \"ci\"\n[install]\niso = \"recipe-files/my.iso\"\n\
                    http_dir = \"../http\"\n[configure]\nkey = \"~/.ssh/id_ed25519\"\n";
        fixture.write("sub/recipe.toml", text);
        let recipe = load(
            &fixture.path("sub/recipe.toml"),
            &[],
            Some(&fixture.path("home")),
        )
        .unwrap();
        assert_eq!(
            install(&recipe).iso,
            fixture.path("sub/recipe-files/my.iso")
        );
        assert_eq!(install(&recipe).http_dir, Some(fixture.path("sub/../http")));
        assert_eq!(
            recipe.configure.key,
            Some(fixture.path("home/.ssh/id_ed25519"))
        );
        let absolute = fixture.path("debian.iso").display().to_string();
        let text = format!("name = \"ci\"\n[install]\niso = \"{absolute}\"\n");
        let recipe = fixture.load(&text, &[]).unwrap();
        assert_eq!(install(&recipe).iso.display().to_string(), absolute);
    }

    #[test]
    fn a_base_image_instead_of_an_install() {
        let fixture = Fixture::new();
        let text = "name = \"ci\"\n[base]\nimage = \"base.qcow2\"\n[configure]\nuser = \"debian\"\n\
                    key = \"~/.ssh/id_ed25519\"\npassphrase_env = \"KEY_PASS\"\n";
        let recipe = fixture.load(text, &[]).unwrap();
        assert_eq!(
            recipe.source,
            Source::Base(Base {
                image: fixture.path("base.qcow2")
            })
        );
        assert_eq!(recipe.configure.passphrase_env.as_deref(), Some("KEY_PASS"));
        let error = fixture.error(&format!("{text}[disk]\nsize = \"20G\"\n"));
        assert_has(
            &error,
            &["line 9, column 8: [disk] size: a [base] image keeps"],
        );
    }

    #[test]
    fn vars_override_nested_keys_array_entries_and_are_typed() {
        let fixture = Fixture::new();
        let text = format!(
            "{MINIMAL}[[publish]]\nto = \"djinn\"\nnamespace = \"images\"\n\
             [[publish]]\nto = \"offline\"\nnamespace = \"images\"\n"
        );
        let recipe = fixture
            .load(
                &text,
                &[
                    ("name", "other"),
                    ("disk.size", "20G"),
                    ("install.iso", "debian-12-netinst.iso"),
                    ("install.http_port", "8100"),
                    ("install.kernel_boot", "true"),
                    ("cleanup.zero_free_space", "true"),
                    ("publish.1.namespace", "team"),
                ],
            )
            .unwrap();
        assert_eq!(recipe.name, "other");
        assert_eq!(recipe.disk.size.as_deref(), Some("20G"));
        let install = install(&recipe);
        assert_eq!(install.iso, fixture.path("debian-12-netinst.iso"));
        assert_eq!(install.http_port, Some(8100));
        assert!(install.kernel_boot);
        assert!(recipe.cleanup.zero_free_space);
        assert_eq!(recipe.publish[0].namespace.as_deref(), Some("images"));
        assert_eq!(recipe.publish[1].namespace.as_deref(), Some("team"));
        let text = format!("{MINIMAL}[verify]\nprofiles = [\"djinn\"]\n");
        let recipe = fixture
            .load(&text, &[("verify.profiles.0", "srht")])
            .unwrap();
        assert_eq!(recipe.verify.profiles, vec![Profile::Srht]);
    }

    #[test]
    fn a_var_that_does_not_fit_is_an_error_naming_it() {
        let fixture = Fixture::new();
        let error = fixture.error_with(MINIMAL, &[("disk.sise", "20G")]);
        assert_has(
            &error,
            &[
                "recipe.toml, --var disk.sise: unknown field `sise`",
                "did you mean `size`?",
            ],
        );
        let error = fixture.error_with(MINIMAL, &[("colour", "red")]);
        assert_has(&error, &["--var colour: unknown field `colour`"]);
        let error = fixture.error_with(MINIMAL, &[("publish.0.namespace", "x")]);
        assert_has(&error, &["--var publish.0.namespace: "]);
        let text = format!("{MINIMAL}[[provision]]\nshell = \"scripts/setup.sh\"\n");
        let error = fixture.error_with(&text, &[("provision.3.shell", "x")]);
        assert_has(
            &error,
            &["--var provision.3.shell: `provision` has 1 entries, numbered from 0: no entry `3`"],
        );
        let error = fixture.error_with(MINIMAL, &[("install.iso.path", "x")]);
        assert_has(
            &error,
            &["--var install.iso.path: `iso` is a value, not a table"],
        );
        let error = fixture.error_with(MINIMAL, &[("install..iso", "x")]);
        assert_has(
            &error,
            &["--var install..iso: write the key as names joined by dots"],
        );
        // The value it set is what is wrong: the --var is named, not a line of the file.
        let error = fixture.error_with(MINIMAL, &[("disk.size", "lots")]);
        assert_has(
            &error,
            &["--var disk.size: [disk] size: `lots` does not start with a number"],
        );
        let error = fixture.error_with(MINIMAL, &[("install.iso", "nothere.iso")]);
        assert_has(
            &error,
            &["--var install.iso: [install] iso: nothere.iso does not exist"],
        );
        let error = fixture.error_with(MINIMAL, &[("install.http_port", "http")]);
        assert_has(
            &error,
            &["--var install.http_port: invalid type: string \"…\""],
        );
    }

    #[test]
    fn an_unknown_key_is_placed_and_named_with_a_suggestion() {
        let fixture = Fixture::new();
        let error = fixture.error("name = \"ci\"\ncolour = 1\n[install]\niso = \"debian.iso\"\n");
        assert_has(
            &error,
            &["recipe.toml, line 2, column 1 (`colour`): unknown field `colour`"],
        );
        let error = fixture.error(&format!("{MINIMAL}timout = \"40m\"\n"));
        assert_has(
            &error,
            &[
                "line 4, column 1 (`timout`): unknown field `timout`",
                "did you mean `timeout`?",
            ],
        );
        let text = format!("{MINIMAL}[[provision]]\nshell = \"scripts/setup.sh\"\nenvs = {{}}\n");
        let error = fixture.error(&text);
        assert_has(
            &error,
            &["line 6, column 1 (`envs`): unknown field `envs`", "`env`?"],
        );
        let error = fixture.error(&format!("{MINIMAL}[verify]\nprofiles = [\"djin\"]\n"));
        assert_has(
            &error,
            &["line 5, column 13", "unknown variant `djin`", "`djinn`?"],
        );
    }

    #[test]
    fn a_secret_written_in_the_recipe_is_refused_without_echoing_it() {
        let fixture = Fixture::new();
        let text = format!("{MINIMAL}[configure]\npassword = \"hunter2-secret\"\n");
        let error = fixture.error(&text);
        assert_has(
            &error,
            &["line 5, column 1", "password_file", "password_env"],
        );
        assert!(!error.contains("hunter2"), "{error}");
        let text = format!("{MINIMAL}[[publish]]\nto = \"djinn\"\ntoken = \"djinn_tok_abc\"\n");
        let error = fixture.error(&text);
        assert_has(&error, &["line 6, column 1", "token_env"]);
        assert!(!error.contains("djinn_tok"), "{error}");
        // A password pasted where its file's name goes is not shown either.
        let text = format!("{MINIMAL}[configure]\npassword_file = \"hunter2-secret\"\n");
        let error = fixture.error(&text);
        assert_has(
            &error,
            &["line 5, column 17: [configure] password_file: the file does not exist"],
        );
        assert!(!error.contains("hunter2"), "{error}");
    }

    #[test]
    fn a_wrong_type_is_placed_without_quoting_the_value() {
        let fixture = Fixture::new();
        let error = fixture.error(&format!("{MINIMAL}http_port = \"eighty\"\n"));
        assert_has(
            &error,
            &["line 4, column 13 (`http_port`): invalid type: string \"…\", expected u16"],
        );
        assert!(!error.contains("eighty"), "{error}");
        let error = fixture.error("name = 5\n[install]\niso = \"debian.iso\"\n");
        assert_has(
            &error,
            &["line 1, column 8 (`name`): invalid type: integer `5`"],
        );
    }

    #[test]
    fn bad_sizes_and_durations_are_placed() {
        let fixture = Fixture::new();
        let error = fixture.error(&format!("{MINIMAL}[disk]\nsize = \"10Q\"\n"));
        assert_has(
            &error,
            &["line 5, column 8: [disk] size: `Q` is not a size unit"],
        );
        let error = fixture.error(&format!("{MINIMAL}timeout = \"40 minutes\"\n"));
        assert_has(
            &error,
            &["line 4, column 11 (`timeout`): unknown unit ` minutes`"],
        );
        let error = fixture.error(&format!("{MINIMAL}timeout = \"0s\"\n"));
        assert_has(
            &error,
            &["line 4, column 11 (`timeout`): must be more than 0"],
        );
        let error = fixture.error(&format!("{MINIMAL}boot_wait = \"10x\"\n"));
        assert_has(
            &error,
            &["line 4, column 13: [install] boot_wait: unknown unit `x`"],
        );
        let error = fixture.error(&format!("{MINIMAL}[machine]\ncpus = 0\n"));
        assert_has(&error, &["line 5, column 8 (`cpus`): invalid value"]);
    }

    #[test]
    fn presets_by_name_or_alias_with_what_they_need() {
        let fixture = Fixture::new();
        let needs = "[configure]\nuser = \"builder\"\npassword_env = \"PW\"\n";
        let text = format!("{MINIMAL}preset = \"debian-12\"\n{needs}");
        let recipe = fixture.load(&text, &[]).unwrap();
        assert_eq!(install(&recipe).preset.as_deref(), Some("debian-12"));
        let error = fixture.error(&format!("{MINIMAL}preset = \"fedora\"\n{needs}"));
        assert_has(
            &error,
            &[
                "line 4, column 10: [install] preset: no preset `fedora` (built in: debian-12); also debian for debian-12",
            ],
        );
        let error = fixture.error(&format!("{MINIMAL}preset = \"debian\"\n"));
        assert_has(
            &error,
            &["line 4, column 10: [install] preset: debian-12 creates a user"],
        );
        let text = format!("{MINIMAL}preset = \"debian\"\n[configure]\nuser = \"builder\"\n");
        assert_has(&fixture.error(&text), &["sets the user's password"]);
        let text = format!("{MINIMAL}mirror = \"http://mirror.example/debian\"\n");
        assert_has(
            &fixture.error(&text),
            &["line 4, column 10: [install] mirror: only a preset"],
        );
        let text = format!("{MINIMAL}preset = \"debian\"\nmirror = \"ftp://x/debian\"\n{needs}");
        assert_has(
            &fixture.error(&text),
            &["line 5, column 10: [install] mirror: the mirror must be an http:// URL"],
        );
        let text = format!("{MINIMAL}preset = \"debian\"\nhttp_dir = \"http\"\n{needs}");
        assert_has(
            &fixture.error(&text),
            &["line 5, column 12: [install] http_dir: a preset serves"],
        );
    }

    #[test]
    fn a_missing_file_is_placed_at_its_value() {
        let fixture = Fixture::new();
        let error = fixture.error("name = \"ci\"\n[install]\niso  =  \"debian-11.iso\"\n");
        let dir = fixture.dir.path().display().to_string();
        assert_has(
            &error,
            &[&format!(
                "recipe.toml, line 3, column 9: [install] iso: debian-11.iso does not exist (in {dir})"
            )],
        );
        let error = fixture.error(&format!("{MINIMAL}http_dir = \"debian.iso\"\n"));
        assert_has(
            &error,
            &["[install] http_dir: debian.iso is a file, not a directory"],
        );
        let error = fixture.error(&format!("{MINIMAL}iso_sha256 = \"SUMS\"\n"));
        assert_has(
            &error,
            &["line 4, column 14: [install] iso_sha256: SUMS does not exist"],
        );
        let error = fixture.error(&format!("{MINIMAL}iso_sha256 = \"abc123\"\n"));
        assert_has(
            &error,
            &["[install] iso_sha256: a SHA-256 is 64 hex digits, not 6"],
        );
        let error = fixture.error(&format!(
            "{MINIMAL}[post_build]\ncommand = \"scripts/setup.sh\"\n"
        ));
        assert_has(
            &error,
            &["line 5, column 11: [post_build] command:", "not executable"],
        );
        let error = fixture.error(&format!("{MINIMAL}[configure]\nkey = \"~/.ssh/id_rsa\"\n"));
        assert_has(&error, &["[configure] key: ~/.ssh/id_rsa does not exist"]);
    }

    #[test]
    fn exactly_one_of_install_and_base() {
        let fixture = Fixture::new();
        let error = fixture.error("name = \"ci\"\n");
        assert_has(&error, &["recipe.toml: no [install] or [base]"]);
        let error = fixture.error(&format!("{MINIMAL}[base]\nimage = \"base.qcow2\"\n"));
        assert_has(
            &error,
            &[
                "recipe.toml, line 4, column 1: [base]: a recipe installs from [install] or starts from [base], not both",
            ],
        );
    }

    #[test]
    fn a_provision_entry_uploads_or_runs_a_script() {
        let fixture = Fixture::new();
        let both = format!(
            "{MINIMAL}[[provision]]\nshell = \"scripts/setup.sh\"\n\
             [[provision]]\nupload = \"files/motd\"\nto = \"/etc/motd\"\nshell = \"scripts/setup.sh\"\n"
        );
        assert_has(
            &fixture.error(&both),
            &[
                "line 9, column 9: [[provision]] #2 shell: an entry uploads a file or runs a script, not both",
            ],
        );
        let neither = format!("{MINIMAL}[[provision]]\nenv = {{ A = \"b\" }}\n");
        assert_has(
            &fixture.error(&neither),
            &["line 4, column 1: [[provision]] #1: give upload"],
        );
        let checks = [
            (
                "upload = \"files/motd\"\n",
                "line 4, column 1: [[provision]] #1: an upload needs to",
            ),
            (
                "upload = \"files/motd\"\nto = \"etc/motd\"\n",
                "line 6, column 6: [[provision]] #1 to: an absolute path",
            ),
            (
                "upload = \"files/motd\"\nto = \"/m\"\nmode = \"rw\"\n",
                "line 7, column 8: [[provision]] #1 mode: octal",
            ),
            (
                "shell = \"scripts/setup.sh\"\nto = \"/x\"\n",
                "line 6, column 6: [[provision]] #1 to: to and mode are for upload",
            ),
            (
                "shell = \"scripts/setup.sh\"\nenv = { \"A-B\" = \"1\" }\n",
                "line 6, column 7: [[provision]] #1 env: a variable's name",
            ),
            (
                "shell = \"scripts/nothere.sh\"\n",
                "line 5, column 9: [[provision]] #1 shell: scripts/nothere.sh does not exist",
            ),
        ];
        for (entry, expected) in checks {
            let error = fixture.error(&format!("{MINIMAL}[[provision]]\n{entry}"));
            assert_has(&error, &[expected]);
        }
    }

    #[test]
    fn a_boot_command_mistake_is_placed_at_its_own_line_and_column() {
        let fixture = Fixture::new();
        let text = format!("{MINIMAL}boot_command = \"<esc><wait>install <entr>\"\n");
        assert_has(
            &fixture.error(&text),
            &[
                "line 4, column 36: [install] boot_command: unknown key <entr>; did you mean <enter>?",
            ],
        );
        let text = format!(
            "{MINIMAL}boot_command = '''\n<esc><wait>\ninstall {{{{ .HTTPIP }}}} {{{{ .Nope }}}}\n'''\n"
        );
        assert_has(
            &fixture.error(&text),
            &[
                "line 6, column 23: [install] boot_command: {{ .Nope }} is not a value kiln provides here",
            ],
        );
        let crlf = text.replace('\n', "\r\n");
        assert_has(
            &fixture.error(&crlf),
            &["line 6, column 23: [install] boot_command"],
        );
        // Escapes shift the columns: the string's own place, and the mistake's in the string.
        let text = format!("{MINIMAL}boot_command = \"a\\tb <bad>\"\n");
        assert_has(
            &fixture.error(&text),
            &[
                "line 4, column 16: [install] boot_command: boot command, line 1, column 5: unknown key <bad>",
            ],
        );
        let text = format!(
            "{MINIMAL}boot_command = \"<esc>auto url=http://{{{{ .HTTPIP }}}}:{{{{ .HTTPPort }}}}/preseed.cfg<enter>\"\n"
        );
        fixture.load(&text, &[]).unwrap();
    }

    #[test]
    fn publish_keys_fit_their_target() {
        let fixture = Fixture::new();
        let entry = |keys: &str| format!("{MINIMAL}[[publish]]\n{keys}");
        let checks = [
            (
                "to = \"offline\"\nurl = \"https://x\"\n",
                "line 6, column 7: [[publish]] #1 url: a offline target does not read it (only djinn)",
            ),
            (
                "to = \"djinn\"\nreplace = true\n",
                "line 6, column 11: [[publish]] #1 replace: a djinn target does not read it (only offline, srht)",
            ),
            (
                "to = \"srht\"\nroot = \".\"\n",
                "line 5, column 6: [[publish]] #1 to: a builds.sr.ht tree needs root",
            ),
            (
                "to = \"srht\"\nroot = \".\"\nrelease = \"debian\"\n",
                "line 7, column 11: [[publish]] #1 release: write distro/release",
            ),
            (
                "to = \"djinn\"\nurl = \"ci.example\"\n",
                "[[publish]] #1 url: an http:// or https:// URL",
            ),
            (
                "to = \"djinn\"\nnamespace = \"team-1\"\n",
                "[[publish]] #1 namespace: a path of letters and `/`, then @OWNER",
            ),
            (
                "to = \"offline\"\nnamespace = \"a@b\"\n",
                "[[publish]] #1 namespace: a path of letters and `/`",
            ),
            (
                "to = \"djinn\"\nname = \"a b\"\n",
                "[[publish]] #1 name: use letters",
            ),
            (
                "to = \"djinn\"\ncompress = true\n",
                "[[publish]] #1 compress: compress applies when compacting",
            ),
            (
                "to = \"djinn\"\ntoken_env = \"A B\"\n",
                "[[publish]] #1 token_env: a variable's name",
            ),
            (
                "to = \"ftp\"\n",
                "line 5, column 6 (`to`): unknown variant `ftp`",
            ),
            ("url = \"https://x\"\n", "missing field `to`"),
        ];
        for (keys, expected) in checks {
            assert_has(&fixture.error(&entry(keys)), &[expected]);
        }
        let recipe = fixture
            .load(
                &entry("to = \"srht\"\nroot = \"http\"\nrelease = \"debian/12\"\nsha256 = true\n"),
                &[],
            )
            .unwrap();
        assert_eq!(recipe.publish[0].root, Some(fixture.path("http")));
        assert!(recipe.publish[0].sha256 && recipe.publish[0].token_env.is_none());
        // Without token_env, a Djinn target takes kiln's usual token.
        let recipe = fixture.load(&entry("to = \"djinn\"\n"), &[]).unwrap();
        assert_eq!(recipe.publish[0].token_env, None);
    }

    #[test]
    fn configure_keys_go_together_or_not_at_all() {
        let fixture = Fixture::new();
        let section = |keys: &str| format!("{MINIMAL}[configure]\n{keys}");
        let checks = [
            (
                "password_file = \"secrets/pw.txt\"\npassword_env = \"PW\"\n",
                "line 6, column 16: [configure] password_env: give password_file or password_env, not both",
            ),
            (
                "passphrase_env = \"P\"\n",
                "line 5, column 18: [configure] passphrase_env: a passphrase unlocks a key",
            ),
            (
                "variant = \"pam\"\nsshd_config = \"files/motd\"\n",
                "line 5, column 11: [configure] variant: choose a variant or your own sshd_config",
            ),
            (
                "variant = \"pan\"\n",
                "unknown variant `pan`, expected `reference` or `pam`; did you mean `pam`?",
            ),
            (
                "user = \"a b\"\n",
                "[configure] user: a user name has no spaces",
            ),
        ];
        for (keys, expected) in checks {
            assert_has(&fixture.error(&section(keys)), &[expected]);
        }
    }

    #[test]
    fn the_name_must_name_a_file_and_an_image() {
        let fixture = Fixture::new();
        let error = fixture.error("name = \"../ci\"\n[install]\niso = \"debian.iso\"\n");
        assert_has(&error, &["line 1, column 8: name: use letters, digits"]);
    }

    #[test]
    fn a_broken_file_is_placed_by_toml() {
        let fixture = Fixture::new();
        let error = fixture.error("name = \"ci\"\n[install\n");
        assert_has(&error, &["recipe.toml, line 2, column"]);
        let error = fixture.error("[install]\niso = \"debian.iso\"\n");
        assert_has(&error, &["missing field `name`"]);
        let missing = Recipe::load(&fixture.path("absent.toml"), &[]).unwrap_err();
        assert_has(
            &missing.to_string(),
            &["cannot read the recipe", "absent.toml"],
        );
    }

    #[test]
    fn unset_variables_are_listed() {
        let fixture = Fixture::new();
        let text = format!(
            "{MINIMAL}[configure]\npassword_env = \"KILN_RECIPE_TEST_UNSET_PW\"\n\
             [[publish]]\nto = \"djinn\"\ntoken_env = \"PATH\"\n"
        );
        let recipe = fixture.load(&text, &[]).unwrap();
        let unset = recipe.unset_variables();
        assert!(unset.contains(&"KILN_RECIPE_TEST_UNSET_PW"), "{unset:?}");
        assert!(!unset.contains(&"PATH"), "{unset:?}");
    }

    #[test]
    fn hints_for_unknown_names() {
        let hint = |m: &str| unknown_name_hint(m);
        assert_eq!(
            hint("unknown field `sise`, expected `size`").as_deref(),
            Some("did you mean `size`?")
        );
        assert_eq!(hint("unknown field `zzz`, expected `size`"), None);
        assert_eq!(hint("unknown field `x`, there are no fields"), None);
        assert!(
            hint("unknown field `token`, expected `to`")
                .unwrap()
                .contains("token_env")
        );
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(label("provision.0.upload"), "[[provision]] #1 upload");
        assert_eq!(label("publish.1"), "[[publish]] #2");
        assert_eq!(label("install.iso"), "[install] iso");
        assert_eq!(label("name"), "name");
    }
}
