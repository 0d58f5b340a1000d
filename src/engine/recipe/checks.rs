//! Everything about a recipe that can be checked without doing any work: its name, sizes,
//! durations, the boot command, URLs, namespaces, and which keys go together. Each problem is
//! placed at the line and column of the key it is about.

use std::ops::Range;
use std::path::{Path, PathBuf};

use super::error::{Checked, RecipeError};
use super::{
    Base, Configure, Install, PostBuild, ProvisionEntry, Publish, Reader, Recipe, Source, Written,
};
use crate::engine::files::download::{Checksum, Location};
use crate::engine::steps::image::is_valid_image_name;
use crate::engine::steps::install::boot_command::{BootCommand, Position};
use crate::engine::steps::install::mirror::Mirror;
use crate::engine::steps::install::preset::Preset;
use crate::engine::steps::provision::ProvisionStep;
use crate::engine::steps::publish::TargetKind;

/// Other names people give the built-in presets.
const PRESET_ALIASES: [(&str, &str); 1] = [("debian", "debian-12")];

impl Reader<'_> {
    /// Check the file as deserialized, section by section, and make the recipe of it.
    pub(super) fn recipe(&self, file: PathBuf, mut w: Written) -> Checked<Recipe> {
        if !is_valid_image_name(&w.name) {
            let problem = "use letters, digits, `_` and `-` (it names the file and the image)";
            return Err(self.error("name", problem));
        }
        let source = match (w.install, w.base) {
            (Some(install), None) => {
                Source::Install(Box::new(self.install(install, &w.configure)?))
            }
            (None, Some(base)) => {
                if w.disk.size_text.is_some() && !base.cloud_init {
                    return Err(self.error("disk.size", "a [base] image keeps its own size"));
                }
                if !base.cloud_init && (base.user_data.is_some() || base.keep_build_user) {
                    let problem =
                        "user_data and keep_build_user are for a cloud image (cloud_init = true)";
                    return Err(self.error("base", problem));
                }
                Source::Base(Base {
                    image: self.file("base.image", &base.image)?,
                    user_data: match &base.user_data {
                        Some(file) => Some(self.file("base.user_data", file)?),
                        None => None,
                    },
                    ..base
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
        if let Some(text) = w.disk.size_text.take() {
            w.disk.size = Some(text.parse().map_err(|e| self.error("disk.size", e))?);
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
            cleanup: (w.cleanup.cleanup()).map_err(|e| self.error("cleanup.operations", e))?,
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
        } else if install.insecure_mirror {
            let problem =
                "only a preset installs from a mirror; add preset or leave insecure_mirror out";
            return Err(self.error("install.insecure_mirror", problem));
        }
        if let Some(mirror) = &install.mirror {
            Mirror::parse(mirror).map_err(|e| self.error("install.mirror", e))?;
        }
        if install.kernel.is_some() != install.initrd.is_some() {
            let problem = match install.iso {
                Some(_) => "kernel and initrd go together: give both paths inside the ISO",
                None => "kernel and initrd go together: give both netboot files",
            };
            let key = ["install.kernel", "install.initrd"][usize::from(install.initrd.is_some())];
            return Err(self.error(key, problem));
        }
        if install.iso.is_none() {
            self.netboot(&mut install)?;
        }
        let duration = |key: &str, text: Option<String>| {
            let read = |text: String| text.parse().map_err(|e| self.error(key, e));
            text.map(read).transpose()
        };
        install.boot_wait = duration("install.boot_wait", install.boot_wait_text.take())?;
        install.key_interval = duration("install.key_interval", install.key_interval_text.take())?;
        if let Some(text) = install.boot_command_text.take() {
            install.boot_command = Some(self.boot_command(&text)?);
        }
        if let Some(checksum) = &install.iso_sha256 {
            install.iso_sha256 = Some(self.checksum(checksum)?);
        }
        install.iso = (install.iso.as_deref())
            .map(|iso| self.file("install.iso", iso))
            .transpose()?;
        install.http_dir = (install.http_dir.as_deref())
            .map(|dir| self.dir("install.http_dir", dir))
            .transpose()?;
        Ok(install)
    }

    /// Without an ISO: netboot files (a path made absolute and checked, a URL as written)
    /// with their checksums read, or a preset that knows its own.
    fn netboot(&self, install: &mut Install) -> Checked<()> {
        if install.kernel.is_none() {
            let netboot = (install.preset.as_deref()).and_then(|name| Preset::find(name).ok());
            return match netboot {
                Some(preset) if preset.has_netboot() => Ok(()),
                Some(preset) => Err(self.error(
                    "install.preset",
                    format!("{} knows no netboot files: give iso", preset.name),
                )),
                None => Err(self.error(
                    "install",
                    "say what boots the installer: iso, netboot files (kernel and initrd), or a preset",
                )),
            };
        }
        for (key, file) in [
            ("install.kernel", &mut install.kernel),
            ("install.initrd", &mut install.initrd),
        ] {
            if let Some(Location::File(path)) = file.as_deref().map(Location::parse) {
                *file = Some(self.file(key, &path)?.display().to_string());
            }
        }
        for (key, checksum) in [
            ("install.kernel_sha256", &mut install.kernel_sha256),
            ("install.initrd_sha256", &mut install.initrd_sha256),
        ] {
            let Some(written) = checksum.clone() else {
                continue;
            };
            match written.parse::<Checksum>() {
                Err(error) => return Err(self.error(key, error)),
                Ok(Checksum::Listed {
                    list: Location::File(path),
                    entry,
                }) => {
                    let list = Location::File(self.file(key, &path)?);
                    *checksum = Some(Checksum::Listed { list, entry }.to_string());
                }
                Ok(_) => {}
            }
        }
        Ok(())
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

    /// Read the boot command as every frontend does, so its mistakes cost no boot and are
    /// placed at their own line and column in the file.
    fn boot_command(&self, text: &str) -> Checked<BootCommand> {
        let error = match BootCommand::for_install(text) {
            Ok(command) => return Ok(command),
            Err(error) => error,
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
                self.secret_variable(&format!("configure.{secret}_env"), env)?;
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
        if p.target == TargetKind::Rsync && p.dest.is_none() {
            let problem = "an rsync destination needs dest = \"user@host:/srv/images/\"";
            return Err(self.error(&key("to"), problem));
        }
        // The recipe's name names the file in a directory; a file named in dest keeps its own.
        if p.dest.as_ref().is_some_and(|dest| !dest.is_directory()) && self.find(&key("name")).1 {
            let problem =
                "dest names the file already; give name only with a directory (dest ending in /)";
            return Err(self.error(&key("name"), problem));
        }
        let has_host = |url: &str, scheme| url.strip_prefix(scheme).is_some_and(|h| !h.is_empty());
        let is_url = |url: &str| has_host(url, "https://") || has_host(url, "http://");
        if p.url.as_deref().is_some_and(|url| !is_url(url)) {
            return Err(self.error(&key("url"), "an http:// or https:// URL, the API's base"));
        }
        // Its syntax was checked as it was read (`Namespace`); owners are Djinn's alone.
        if p.target == TargetKind::Offline
            && let Some(Err(problem)) = p.namespace.as_ref().map(|ns| ns.offline_segments())
        {
            return Err(self.error(&key("namespace"), problem));
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
            self.secret_variable(&key("token_env"), env)?;
        }
        p.driver_conf = (p.driver_conf.as_deref())
            .map(|f| self.file(&key("driver_conf"), f))
            .transpose()?;
        p.root = p.root.map(|r| self.dir(&key("root"), &r)).transpose()?;
        Ok(p)
    }

    /// Refuse a key the entry's target does not read, rather than ignore it.
    fn keys_fit_target(&self, at: &str, target: TargetKind) -> Checked<()> {
        use TargetKind::{Djinn, Offline, Rsync, Srht};
        const READ_BY: [(&str, &[TargetKind]); 12] = [
            ("url", &[Djinn]),
            ("token_env", &[Djinn]),
            ("namespace", &[Djinn, Offline]),
            ("name", &[Djinn, Offline, Rsync]),
            ("dest", &[Rsync]),
            ("driver_conf", &[Offline]),
            ("base", &[Offline]),
            ("root", &[Srht]),
            ("release", &[Srht]),
            ("arch", &[Srht]),
            ("sha256", &[Offline, Srht, Rsync]),
            ("replace", &[Offline, Srht, Rsync]),
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
        // A command that is not there is already noted as missing.
        let mode = std::fs::metadata(&command).map(|m| m.permissions().mode());
        if mode.is_ok_and(|mode| mode & 0o111 == 0) {
            let problem = format!("{} is not executable (chmod +x)", command.display());
            return Err(self.error(key, problem));
        }
        Ok(PostBuild { command })
    }
}

fn is_distro_release(text: &str) -> bool {
    text.split_once('/').is_some_and(|(distro, release)| {
        !distro.is_empty() && !release.is_empty() && !release.contains('/')
    })
}

#[cfg(test)]
mod tests {
    use crate::engine::recipe::test_fixture::{Fixture, MINIMAL, assert_has, install};

    #[test]
    fn netboot_files_replace_the_iso_and_their_checksums_are_read() {
        let fixture = Fixture::new();
        fixture.write("SHA256SUMS", "");
        let text = "name = \"ci\"\n[install]\n\
                    kernel = \"http://mirror.test/images/netboot/linux\"\n\
                    initrd = \"http://mirror.test/images/netboot/initrd.gz\"\n\
                    kernel_sha256 = \"SHA256SUMS#./netboot/linux\"\n\
                    initrd_sha256 = \"http://mirror.test/images/SHA256SUMS\"\n";
        let recipe = fixture.load(text, &[]).unwrap();
        let install = install(&recipe);
        assert_eq!(install.iso, None);
        let sums = fixture.path("SHA256SUMS").display().to_string();
        assert_eq!(
            install.kernel_sha256.as_deref(),
            Some(format!("{sums}#./netboot/linux").as_str())
        );
        let error = fixture.error(&text.replace("SHA256SUMS#", "MISSING#"));
        assert_has(&error, &["[install] kernel_sha256: MISSING does not exist"]);
        let error =
            fixture.error(&text.replace("kernel = \"http://mirror.test", "kernel = \"nope"));
        assert_has(
            &error,
            &["[install] kernel: nope/images/netboot/linux does not exist"],
        );
        let error = fixture.error("name = \"ci\"\n[install]\nkernel_args = \"quiet\"\n");
        assert_has(&error, &["say what boots the installer"]);
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
                "line 4, column 10: [install] preset: no preset `fedora` (built in: debian-12, fedora-41, opensuse-leap-15, rhel-9, ubuntu-24.04); also debian for debian-12",
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
                "line 6, column 11: [[publish]] #1 replace: a djinn target does not read it (only offline, srht, rsync)",
            ),
            (
                "to = \"rsync\"\nsha256 = true\n",
                "line 5, column 6: [[publish]] #1 to: an rsync destination needs dest",
            ),
            (
                "to = \"rsync\"\ndest = \"/srv/images/\"\n",
                "line 6, column 8 (`dest`): `/srv/images/` is not an rsync destination: no `host:` in front of the path",
            ),
            (
                "to = \"rsync\"\ndest = \"ci@h:/srv/x.qcow2\"\nname = \"y\"\n",
                "line 7, column 8: [[publish]] #1 name: dest names the file already",
            ),
            (
                "to = \"offline\"\ndest = \"ci@h:/srv/\"\n",
                "[[publish]] #1 dest: a offline target does not read it (only rsync)",
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
                "`team-1` is not a valid namespace: a path of letters and `/`",
            ),
            (
                "to = \"offline\"\nnamespace = \"a@b\"\n",
                "[[publish]] #1 namespace: namespace `a@b`: the offline runner has no namespace owners",
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
        let recipe = fixture
            .load(
                &entry("to = \"rsync\"\ndest = \"ci@images:/srv/images/\"\nreplace = true\n"),
                &[("publish.0.dest", "images:/srv/other/")],
            )
            .unwrap();
        let dest = recipe.publish[0].dest.as_ref().unwrap();
        assert_eq!(dest.to_string(), "images:/srv/other/");
        assert!(recipe.publish[0].replace);
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
}
