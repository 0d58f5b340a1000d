//! Recipes: an image described in a TOML file checked into git, so that `kiln build
//! RECIPE.toml` can make it again without a person. This module reads a recipe, applies the
//! command line's `--var KEY=VALUE` overrides and checks everything that can be checked
//! without doing any work — sizes, durations, the boot command's syntax, names, URLs, that
//! every file it names exists — so a mistake fails in a second, at its line and column, and
//! not forty minutes into an install.
//!
//! # The format
//!
//! `docs/recipes.md` shows every key in one example, which this module's tests load (so the
//! documentation cannot show a key the reader refuses).
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
//!   `[cleanup]` become the provision step's own [`ProvisionStep`] and [`Cleanup`].
//! - Unless set, `[cleanup]` runs nothing, `[verify]` profiles are `["djinn"]` and a Djinn
//!   target's token is kiln's usual one. A key a publish target does not read is an error,
//!   not ignored.
//! - `--var KEY=VALUE` sets one key before anything is read from the tree: `disk.size=20G`,
//!   `publish.0.namespace=x` (entries counted from 0). A value is a TOML boolean or integer
//!   when it reads as one, else a string. A key the format does not have is an error naming
//!   the `--var`, and so is any problem with the value it set.
//! - Every error names the file and then `line L, column C` (counted from 1, in characters)
//!   or the `--var`. A boot command's mistake is placed at its own line and column when the
//!   string has no escapes, else at the string.
//! - What the person must supply — a file the recipe names that is not there, and for a
//!   build ([`Recipe::load_to_build`]) a variable it reads that is not set — is gathered, so
//!   one message lists all of it ([`RecipeError::Missing`]) rather than one per attempt. Any
//!   other problem stops the reading at once.
//! - Not checked here: what needs the build's environment or work — the ISO's contents and
//!   checksum, the contents of driver.conf.
//!
//! [`Preset::find`]: crate::engine::steps::install::preset::Preset::find

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::driver::Profile;
use crate::engine::steps::configure::{Cleanup, SshdVariant};
use crate::engine::steps::image::DiskSize;
use crate::engine::steps::install::boot_command::{BootCommand, WrittenDuration, parse_duration};
use crate::engine::steps::provision::ProvisionStep;
use crate::engine::steps::publish::{Namespace, RemotePath, TargetKind};
use error::Checked;
use vars::set_var;

mod checks;
mod error;
mod paths;
mod vars;

pub use error::RecipeError;

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
    pub cleanup: Cleanup,
    pub verify: Verify,
    pub publish: Vec<Publish>,
    pub post_build: Option<PostBuild>,
}

/// `[disk]`: the new disk.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Disk {
    /// Read by the checks from `size`, so a mistake is placed in the file; `None` is kiln's
    /// default.
    #[serde(skip)]
    pub size: Option<DiskSize>,
    /// `size` as written; the checks read it into [`Disk::size`].
    #[serde(rename = "size")]
    pub(super) size_text: Option<String>,
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
    /// The installer ISO; without one, netboot files (`kernel`, `initrd`) or the preset's.
    pub iso: Option<PathBuf>,
    /// 64 hex digits, or the absolute path of a SHA256SUMS file.
    pub iso_sha256: Option<String>,
    /// The built-in name (`debian-12`), aliases resolved.
    pub preset: Option<String>,
    pub mirror: Option<String>,
    /// The mirror is unsigned (a local test mirror): the preset's installer is told not to
    /// check signatures. Never the default.
    #[serde(default)]
    pub insecure_mirror: bool,
    /// Read by the recipe's checks from `boot_command`, so a mistake is placed at its own
    /// line and column in the file.
    #[serde(skip)]
    pub boot_command: Option<BootCommand>,
    /// `boot_command` as written; the checks read it into [`Install::boot_command`].
    #[serde(rename = "boot_command")]
    pub(super) boot_command_text: Option<String>,
    /// Read by the checks from `boot_wait` and `key_interval`, like the boot command.
    #[serde(skip)]
    pub boot_wait: Option<WrittenDuration>,
    #[serde(skip)]
    pub key_interval: Option<WrittenDuration>,
    #[serde(rename = "boot_wait")]
    pub(super) boot_wait_text: Option<String>,
    #[serde(rename = "key_interval")]
    pub(super) key_interval_text: Option<String>,
    pub http_dir: Option<PathBuf>,
    pub http_port: Option<u16>,
    #[serde(default)]
    pub kernel_boot: bool,
    /// Paths inside the ISO; without `iso`, netboot files: a URL, or a path (made absolute).
    pub kernel: Option<String>,
    pub initrd: Option<String>,
    /// The netboot files' checksums: 64 hex digits, or a SHA256SUMS URL or file (`LIST#PATH`).
    pub kernel_sha256: Option<String>,
    pub initrd_sha256: Option<String>,
    pub kernel_args: Option<String>,
    #[serde(default)]
    pub serial_console: bool,
    /// How long the install may take; `None` is the step's own limit.
    #[serde(default, deserialize_with = "duration")]
    pub timeout: Option<Duration>,
}

/// `[base]`: an installed qcow2, or a distribution's cloud image (`cloud_init = true`),
/// copied to NAME.qcow2 and never changed itself.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Base {
    pub image: PathBuf,
    /// A cloud image: configured through a NoCloud seed kiln writes (no login of its own);
    /// the copy is standalone and grown to `[disk] size`.
    #[serde(default)]
    pub cloud_init: bool,
    /// Your own cloud-init user-data, merged into kiln's seed.
    pub user_data: Option<PathBuf>,
    /// Keep the seed's build user in the image.
    #[serde(default)]
    pub keep_build_user: bool,
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
    pub namespace: Option<Namespace>,
    pub name: Option<String>,
    /// Djinn only: the variable holding the token; `None` is kiln's usual token
    /// (`publish::load_token`).
    pub token_env: Option<String>,
    pub driver_conf: Option<PathBuf>,
    pub root: Option<PathBuf>,
    pub release: Option<String>,
    pub arch: Option<String>,
    /// rsync only: `[user@]host:/dir/` or `[user@]host:/dir/FILE`.
    pub dest: Option<RemotePath>,
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

impl Recipe {
    /// Read `path`, apply `vars` (`--var KEY=VALUE`, split at the first `=`) and check it all.
    pub fn load(path: &Path, vars: &[(String, String)]) -> Result<Recipe, RecipeError> {
        load(
            path,
            vars,
            std::env::var_os("HOME").map(PathBuf::from).as_deref(),
        )
    }

    /// As [`Recipe::load`], for a build about to start: a variable the recipe reads (a
    /// password, passphrase or token) must be set now too, not found missing at its stage.
    pub fn load_to_build(path: &Path, vars: &[(String, String)]) -> Result<Recipe, RecipeError> {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        Reading::ToBuild.load(path, vars, home.as_deref())
    }
}

fn load(path: &Path, vars: &[(String, String)], home: Option<&Path>) -> Checked<Recipe> {
    Reading::ToOpen.load(path, vars, home)
}

/// What a recipe is read for, which decides whether the variables it reads must be set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// To show or edit (the workbench): variables are read when a stage needs them.
    ToOpen,
    /// To build now: every variable it reads must be set.
    ToBuild,
}

impl Reading {
    fn load(self, path: &Path, vars: &[(String, String)], home: Option<&Path>) -> Checked<Recipe> {
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
            reading: self,
            missing: RefCell::new(Vec::new()),
        };
        let written = reader.read()?;
        let recipe = reader.recipe(file.clone(), written)?;
        let mut missing = reader.missing.into_inner();
        missing.sort();
        match missing.is_empty() {
            true => Ok(recipe),
            false => Err(RecipeError::Missing {
                file: path.to_path_buf(),
                missing: (missing.into_iter())
                    .map(|(_, place, problem)| (place, problem))
                    .collect(),
            }),
        }
    }
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

/// `[cleanup]`, read into [`Cleanup`]: `operations` in virt-sysprep's words (one string or a
/// list), and the three switches older recipes use, each adding its operation.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct CleanupSection {
    operations: Option<Words>,
    zero_free_space: bool,
    clear_machine_id: bool,
    regenerate_host_keys: bool,
}

/// `"defaults,-ssh-hostkeys"` or `["defaults", "-ssh-hostkeys"]`.
#[derive(Deserialize)]
#[serde(untagged)]
enum Words {
    One(String),
    Many(Vec<String>),
}

impl CleanupSection {
    fn cleanup(&self) -> Result<Cleanup, String> {
        let mut cleanup = match &self.operations {
            None => Cleanup::none(),
            Some(Words::One(text)) => Cleanup::parse(text)?,
            Some(Words::Many(words)) => Cleanup::parse(&words.join(","))?,
        };
        use crate::engine::steps::configure::CleanupOperation as Op;
        for (on, op) in [
            (self.zero_free_space, Op::ZeroFreeSpace),
            (self.clear_machine_id, Op::MachineId),
            (self.regenerate_host_keys, Op::SshHostkeys),
        ] {
            if on {
                cleanup.insert(op);
            }
        }
        Ok(cleanup)
    }
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
    reading: Reading,
    /// What the person must supply and has not, as `(offset, place, problem)`: gathered, so
    /// that one message lists it all, in the file's order.
    missing: RefCell<Vec<(usize, String, String)>>,
}

impl Reader<'_> {
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
}

#[cfg(test)]
mod test_fixture;

#[cfg(test)]
mod tests {
    use super::test_fixture::{Fixture, MINIMAL, assert_has, install};
    use super::*;

    /// The ```toml block of docs/recipes.md, the format's documentation.
    fn documented_example() -> String {
        let doc = include_str!("../../../docs/recipes.md");
        let marker = "<!-- recipe-format -->\n```toml\n";
        let start = doc.find(marker).expect("the marked example") + marker.len();
        let end = start + doc[start..].find("\n```").unwrap();
        doc[start..end].to_string()
    }

    #[test]
    fn the_documented_example_loads_and_every_field_lands() {
        let fixture = Fixture::new();
        // The builds.sr.ht tree's root must exist: the fixture's own directory stands in.
        let root = fixture.path("http").display().to_string();
        let recipe = (fixture.load(&documented_example(), &[("publish.2.root", &root)]))
            .unwrap_or_else(|e| panic!("{e}"));
        let at = |relative: &str| fixture.path(relative);
        assert_eq!(recipe.file, at("recipe.toml"));
        assert_eq!(recipe.name, "debian-12-ci");
        assert_eq!(recipe.disk.size, Some("10G".parse().unwrap()));
        assert_eq!(recipe.machine.memory_mib.map(NonZeroU32::get), Some(2048));
        assert_eq!(recipe.machine.cpus.map(NonZeroU32::get), Some(2));
        let install = install(&recipe);
        assert_eq!(install.iso, Some(at("debian-12-netinst.iso")));
        let sums = at("SHA256SUMS").display().to_string();
        assert_eq!(install.iso_sha256.as_deref(), Some(sums.as_str()));
        assert_eq!(install.preset.as_deref(), Some("debian-12"));
        assert_eq!(
            install.mirror.as_deref(),
            Some("http://mirror.example/debian")
        );
        assert_eq!(install.timeout, Some(Duration::from_secs(90 * 60)));
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
            Cleanup::parse("defaults,-tmp-files,zero-free-space").unwrap()
        );
        assert_eq!(recipe.verify.profiles, vec![Profile::Djinn, Profile::Srht]);
        let [djinn, offline, srht, rsync] = &recipe.publish[..] else {
            panic!("{:?}", recipe.publish)
        };
        assert_eq!(djinn.target, TargetKind::Djinn);
        assert_eq!(djinn.url.as_deref(), Some("https://ci.example/api"));
        assert_eq!(
            djinn.namespace.as_ref().map(|ns| ns.as_str()),
            Some("images")
        );
        assert_eq!(djinn.token_env.as_deref(), Some("STAGING_DJINN_TOKEN"));
        assert_eq!(offline.target, TargetKind::Offline);
        assert_eq!(
            offline.driver_conf,
            Some(at("home/.config/djinn/driver.conf"))
        );
        assert!(offline.compact && !offline.compress && offline.token_env.is_none());
        assert_eq!(srht.target, TargetKind::Srht);
        assert_eq!(srht.root, Some(fixture.path("http")));
        assert_eq!(srht.release.as_deref(), Some("debian/12"));
        assert_eq!(srht.arch.as_deref(), Some("x86_64"));
        assert_eq!(rsync.target, TargetKind::Rsync);
        let dest = rsync.dest.as_ref().unwrap();
        assert_eq!(dest.to_string(), "ci@images.example:/srv/images/");
        assert!(dest.is_directory() && rsync.sha256 && !rsync.replace);
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
operations = ["defaults", "-tmp-files", "-machine-id"]
zero_free_space = true
clear_machine_id = true
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
        assert!(recipe.cleanup.is_empty());
        assert_eq!(recipe.verify.profiles, vec![Profile::Djinn]);
        assert!(recipe.provision.is_empty() && recipe.publish.is_empty());
        assert!(recipe.post_build.is_none());
        let install = install(&recipe);
        assert!(install.preset.is_none() && install.timeout.is_none() && !install.kernel_boot);
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
                cloud_init: false,
                user_data: None,
                keep_build_user: false,
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

    /// A cloud image: grown to `[disk] size`, its user-data found beside the recipe; the
    /// cloud-only keys are refused on an installed base.
    #[test]
    fn a_cloud_image_base_may_be_grown_and_seeded() {
        let fixture = Fixture::new();
        fixture.write("cloud.qcow2", "x\n");
        fixture.write("user-data", "#cloud-config\n");
        let text = "name = \"ci\"\n[disk]\nsize = \"8G\"\n[base]\nimage = \"cloud.qcow2\"\n\
                    cloud_init = true\nuser_data = \"user-data\"\n";
        let recipe = fixture.load(text, &[]).unwrap();
        assert_eq!(
            recipe.source,
            Source::Base(Base {
                image: fixture.path("cloud.qcow2"),
                cloud_init: true,
                user_data: Some(fixture.path("user-data")),
                keep_build_user: false,
            })
        );
        let choices = crate::engine::build::choices(&recipe);
        assert_eq!(choices.cloud_init, Some(true));
        assert_eq!(choices.base_image, Some(fixture.path("cloud.qcow2")));
        let error = fixture
            .error("name = \"ci\"\n[base]\nimage = \"cloud.qcow2\"\nkeep_build_user = true\n");
        assert_has(&error, &["cloud image (cloud_init = true)"]);
    }

    #[test]
    fn what_the_person_must_supply_is_listed_in_one_message() {
        let fixture = Fixture::new();
        let text = "name = \"ci\"\n[install]\niso = \"netinst.iso\"\niso_sha256 = \"SUMS\"\n\
                    [configure]\nuser = \"builder\"\npassword_file = \"secrets/none.txt\"\n\
                    [[publish]]\nto = \"djinn\"\ntoken_env = \"KILN_RECIPE_TEST_UNSET_TOKEN\"\n\
                    [[publish]]\nto = \"djinn\"\ntoken_env = \"PATH\"\n";
        let dir = fixture.dir.path().display().to_string();
        // To open it, the files; the variables are read when a stage needs them.
        let error = fixture.error(text);
        assert_has(
            &error,
            &[
                "recipe.toml: 3 things it needs are not there yet:\n",
                &format!(
                    "\n  line 3, column 7: [install] iso: netinst.iso does not exist (in {dir})"
                ),
                "\n  line 4, column 14: [install] iso_sha256: SUMS does not exist",
                "\n  line 7, column 17: [configure] password_file: the file does not exist",
            ],
        );
        assert!(!error.contains("KILN_RECIPE_TEST_UNSET_TOKEN"), "{error}");
        // To build it now, a variable it reads must be set too; PATH is.
        let to_build = |text: &str| {
            fixture.write("recipe.toml", text);
            let home = fixture.path("home");
            let loaded = Reading::ToBuild.load(&fixture.path("recipe.toml"), &[], Some(&home));
            loaded.map(|_| ()).map_err(|e| e.to_string())
        };
        let error = to_build(text).unwrap_err();
        assert_has(
            &error,
            &[
                "4 things it needs",
                "\n  line 10, column 13: [[publish]] #1 token_env: the variable KILN_RECIPE_TEST_UNSET_TOKEN is not set",
            ],
        );
        assert!(!error.contains("PATH"), "{error}");
        for file in ["netinst.iso", "SUMS", "secrets/none.txt"] {
            fixture.write(file, "x\n");
        }
        let error = to_build(text).unwrap_err();
        assert!(
            error.ends_with(
                "recipe.toml, line 10, column 13: [[publish]] #1 token_env: the variable KILN_RECIPE_TEST_UNSET_TOKEN is not set"
            ),
            "{error}"
        );
        // Any other problem stops the reading at once, whatever is missing besides.
        let error = fixture.error(&format!("{text}[disk]\nsize = \"10Q\"\n"));
        assert_has(&error, &["[disk] size: `Q` is not a size unit"]);
        assert!(!error.contains("things it needs"), "{error}");
    }
}
