//! Flags that more than one command takes, each declared once, with one spelling and one
//! meaning everywhere. Each group turns itself into the engine's [`Choices`] in one method.
//! A command adjusts a flag only by clap attributes on itself (`mut_arg`: required on
//! `kiln install`, an old spelling kept as a hidden alias…), never by declaring it again.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::absolute;
use crate::engine::files::download::{Checksum, Location};
use crate::engine::files::iso::Expected;
use crate::engine::session::Choices;
use crate::engine::steps::configure::Cleanup;
use crate::engine::steps::install::boot_command::{
    BootCommandError, WrittenDuration, parse_duration,
};
use crate::engine::steps::publish::{Namespace, RemotePath, TargetKind};
use crate::engine::workflow::requests::{BOOT_DEADLINE, parse_checksum};
use crate::engine::workflow::{Secrets, secret_from_file};

/// The installer and how it runs: `kiln install` and `kiln run`.
#[derive(Debug, Args)]
pub struct InstallerArgs {
    /// The installer ISO to boot. `kiln run` without one takes an existing disk as installed.
    #[arg(long, value_name = "ISO")]
    pub iso: Option<PathBuf>,
    /// The ISO's expected SHA-256: 64 hex digits, or a SHA256SUMS file that lists the ISO by
    /// name.
    #[arg(long, value_name = "HEX|FILE", value_parser = iso_sha256)]
    pub iso_sha256: Option<String>,
    #[command(flatten)]
    pub unattended: UnattendedArgs,
}

impl InstallerArgs {
    /// The choices these flags make (paths made absolute, the boot command file read).
    pub fn choices(&self) -> Result<Choices, String> {
        let mut choices = self.unattended.choices()?;
        choices.iso = self.iso.as_deref().map(absolute);
        if choices.iso.is_none() {
            // Netboot files on this host: absolute, as the session records them.
            let on_host = |text: &mut Option<String>| {
                if let Some(Location::File(path)) = text.as_deref().map(Location::parse) {
                    *text = Some(absolute(&path).display().to_string());
                }
            };
            on_host(&mut choices.kernel);
            on_host(&mut choices.initrd);
            on_host(&mut choices.kernel_sha256);
            on_host(&mut choices.initrd_sha256);
        }
        choices.iso_checksum = self
            .iso_sha256
            .as_deref()
            .map(|text| match parse_checksum(text) {
                Some(Expected::SumsFile(file)) => absolute(&file).display().to_string(),
                // Hex digits, or empty: no checksum (switched off where one was recorded).
                _ => text.to_string(),
            });
        // An installer named here replaces a cloud image the session started from.
        let installer =
            choices.iso.is_some() || choices.kernel.is_some() || choices.preset.is_some();
        if installer {
            choices.cloud_init = Some(false);
        }
        Ok(choices)
    }
}

/// `--iso-sha256`: hex digits that are not 64 of them are a mistyped checksum, not a file.
fn iso_sha256(text: &str) -> Result<String, String> {
    let digits = text.trim();
    if !digits.is_empty() && digits.len() != 64 && digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "the ISO's SHA-256 is 64 hex digits, not {}; anything else names a SHA256SUMS file",
            digits.len()
        ));
    }
    Ok(text.to_string())
}

/// `--kernel-sha256`, `--initrd-sha256`: read now, so a mistyped checksum costs no download.
fn netboot_sha256(text: &str) -> Result<String, String> {
    text.parse::<Checksum>().map_err(|e| e.to_string())?;
    Ok(text.to_string())
}

/// How the installer runs without a person.
#[derive(Debug, Args, Default)]
pub struct UnattendedArgs {
    /// Keys to type into the installer's boot menu, in Packer's syntax: text, <enter> <esc>
    /// <tab> <f1>…, <wait5> <wait1m30s>, <leftCtrlOn>…, {{ .HTTPIP }} {{ .HTTPPort }},
    /// {{ env "VAR" }} (typed but never logged). Recorded in the session file.
    #[arg(long, value_name = "KEYS", conflicts_with = "boot_command_file")]
    pub boot_command: Option<String>,
    /// Read the boot command from this file (line breaks are not typed).
    #[arg(long, value_name = "FILE")]
    pub boot_command_file: Option<PathBuf>,
    /// Wait this long for the boot menu before the first key, e.g. 10s, 1m [default: 10s].
    #[arg(long, value_name = "DURATION")]
    pub boot_wait: Option<WrittenDuration>,
    /// Pause between two keys of the boot command [default: 100ms].
    #[arg(long, value_name = "DURATION")]
    pub key_interval: Option<WrittenDuration>,
    /// Serve this directory to the installer at http://10.0.2.2:PORT/ ({{ .HTTPIP }},
    /// {{ .HTTPPort }}), from 127.0.0.1 on this host, while the step runs.
    #[arg(long, value_name = "DIR")]
    pub http_dir: Option<PathBuf>,
    /// The answer-file server's port on 127.0.0.1 [default: any free port].
    #[arg(long, value_name = "PORT")]
    pub http_port: Option<u16>,
    /// Boot the installer's kernel and initrd from the ISO directly (-kernel -initrd
    /// -append), found by the ISO's layout (Debian, Ubuntu, Fedora/RHEL, openSUSE, Alpine,
    /// Arch, isolinux).
    #[arg(long)]
    pub kernel_boot: bool,
    /// Without --iso: the installer's netboot kernel, a file or an http(s) URL (downloaded
    /// once into kiln's cache). With --kernel-boot: the kernel's path inside the ISO, when
    /// the layout is not known.
    #[arg(long, value_name = "FILE|URL|PATH", requires = "initrd")]
    pub kernel: Option<String>,
    /// Without --iso: the netboot initrd, a file or URL. With --kernel-boot: the initrd's
    /// path inside the ISO.
    #[arg(long, value_name = "FILE|URL|PATH", requires = "kernel")]
    pub initrd: Option<String>,
    /// The netboot kernel's SHA-256: 64 hex digits, or the distribution's SHA256SUMS (URL or
    /// file; LIST#PATH names its line, else a URL is found by its path below the list's).
    /// Required for a URL.
    #[arg(long, value_name = "HEX|SUMS[#PATH]", requires = "kernel", value_parser = netboot_sha256)]
    pub kernel_sha256: Option<String>,
    /// The netboot initrd's SHA-256, as --kernel-sha256.
    #[arg(long, value_name = "HEX|SUMS[#PATH]", requires = "initrd", value_parser = netboot_sha256)]
    pub initrd_sha256: Option<String>,
    /// Arguments for the installer's kernel (implies --kernel-boot), e.g.
    /// "auto=true priority=critical url=http://{{ .HTTPIP }}:{{ .HTTPPort }}/preseed.cfg".
    #[arg(long, value_name = "ARGS")]
    pub kernel_args: Option<String>,
    /// Put the installer on the serial console (adds console=ttyS0,115200n8 to its kernel
    /// command line; without a boot command this means --kernel-boot).
    #[arg(long)]
    pub serial_console: bool,
    /// Install unattended with a built-in preset (debian-12, ubuntu-24.04, fedora-41, …; a
    /// wrong name lists them all): a minimal system with openssh-server, CI-ready sshd_config
    /// and an empty root password. Needs the user and password; boots the ISO's kernel
    /// directly when it can, else types into its menu. Without --iso or --kernel, the
    /// preset's netboot files from its mirror.
    #[arg(long, value_name = "NAME")]
    pub preset: Option<String>,
    /// The package mirror a preset installs from, http://HOST/DIR [default: this host's
    /// Debian mirror from its apt sources].
    #[arg(long, value_name = "URL")]
    pub mirror: Option<String>,
    /// Let a preset install from an unsigned mirror (a local test mirror): the installer is
    /// told to accept packages whose signatures it cannot check. Never use it with a real
    /// mirror; the step log warns every time.
    #[arg(long, requires = "preset")]
    pub insecure_mirror: bool,
}

impl UnattendedArgs {
    /// The choices these flags make (paths made absolute, the boot command file read).
    pub fn choices(&self) -> Result<Choices, String> {
        let source = match &self.boot_command_file {
            Some(file) => Some(std::fs::read_to_string(file).map_err(|e| {
                format!("cannot read the boot command file {}: {e}", file.display())
            })?),
            None => self.boot_command.clone(),
        };
        let boot_command = source
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e: BootCommandError| e.to_string())?;
        let on = |flag: bool| flag.then_some(true);
        Ok(Choices {
            boot_command,
            boot_wait: self.boot_wait.clone(),
            key_interval: self.key_interval.clone(),
            http_dir: self.http_dir.as_deref().map(absolute),
            http_port: self.http_port,
            kernel_boot: on(self.kernel_boot),
            kernel: self.kernel.clone(),
            initrd: self.initrd.clone(),
            kernel_sha256: self.kernel_sha256.clone(),
            initrd_sha256: self.initrd_sha256.clone(),
            kernel_args: self.kernel_args.clone(),
            serial_console: on(self.serial_console),
            preset: self.preset.clone(),
            mirror: self.mirror.clone(),
            insecure_mirror: on(self.insecure_mirror),
            ..Choices::default()
        })
    }
}

/// A time limit as flags take it: `90m`, `1h30m`, `45s`, or a bare number of seconds.
pub fn positive_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        duration if duration.is_zero() => Err("a time limit must be more than 0".into()),
        duration => Ok(duration),
    }
}

/// Who the installer creates and configure logs in as, with the password: `kiln install`
/// (with --preset), and within [`CredentialArgs`].
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The user the installer creates (with --preset) and configure logs in as; root works
    /// too.
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// A file whose first line is the user's password (for a preset's install, configure's
    /// login and sudo). Never recorded.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
}

impl LoginArgs {
    /// The choice these flags make: the user (the password is a secret, never a choice).
    pub fn choices(&self) -> Choices {
        Choices {
            user: self.user.clone(),
            ..Choices::default()
        }
    }

    /// The password from its file.
    pub fn secrets(&self) -> Result<Secrets, String> {
        Ok(Secrets {
            password: self.password_file.as_deref().map(first_line).transpose()?,
            ..Secrets::default()
        })
    }
}

/// What configure cleans for cloning, last in the guest: `kiln configure` and `kiln run`.
#[derive(Debug, Args)]
pub struct CleanupArgs {
    /// Clean the image for cloning, last in the guest: virt-sysprep's operation names,
    /// comma-separated; `defaults` (also the flag alone) is all but zero-free-space, `-NAME`
    /// leaves one out, e.g. --clean=defaults,-ssh-hostkeys,zero-free-space. The operations:
    /// cloud-init, logfiles (with /var/log/installer), bash-history, package-manager-cache,
    /// dhcp-client-state, tmp-files, udev-persistent-net, net-hwaddr, passwd-backups,
    /// machine-id, ssh-hostkeys (regenerated at first boot), zero-free-space.
    #[arg(
        long,
        value_name = "OPERATIONS",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "defaults"
    )]
    pub clean: Option<Cleanup>,
}

impl CleanupArgs {
    /// The choice these flags make (none when the flag is not given).
    pub fn choices(&self) -> Choices {
        Choices {
            cleanup: self.clean.clone(),
            ..Choices::default()
        }
    }
}

/// How configure logs in: `kiln configure` and `kiln run`.
#[derive(Debug, Args)]
pub struct CredentialArgs {
    #[command(flatten)]
    pub login: LoginArgs,
    /// Log in with this private key instead of a password.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// A file whose first line is the key's passphrase (asked for on a terminal when the key
    /// needs one).
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
}

impl CredentialArgs {
    /// The choices these flags make: the user and the key (made absolute).
    pub fn choices(&self) -> Choices {
        Choices {
            key: self.key.as_deref().map(absolute),
            ..self.login.choices()
        }
    }

    /// The password and the key's passphrase from their files. When configure will log in —
    /// `login` says as whom and with which key, by this command line or the session — what it
    /// still needs is asked for on the terminal, before anything boots.
    pub fn secrets(&self, login: Option<(&str, Option<&Path>)>) -> Result<Secrets, String> {
        let mut secrets = self.login.secrets()?;
        secrets.passphrase = self
            .passphrase_file
            .as_deref()
            .map(first_line)
            .transpose()?;
        match login {
            Some((_, Some(key))) if !key.exists() => {
                return Err(format!("key {} does not exist", key.display()));
            }
            Some((_, Some(key))) if secrets.passphrase.is_none() && key_is_encrypted(key) => {
                secrets.passphrase = Some(prompt(&format!("passphrase for {}: ", key.display()))?);
            }
            Some((user, None)) if secrets.password.is_none() && user != "root" => {
                secrets.password = Some(prompt(&format!("password for {user}: "))?);
            }
            _ => {}
        }
        Ok(secrets)
    }
}

/// Where publish sends the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TargetArg {
    /// A Djinn server's API (`POST /images`); token from KILN_DJINN_TOKEN or the token file.
    Djinn,
    /// The disks directory of Djinn's offline runner (from ~/.config/djinn/driver.conf).
    Offline,
    /// A builds.sr.ht image tree: ROOT/DISTRO/RELEASE/ARCH/root.img.qcow2.
    Srht,
    /// A host over SSH, copied to with the system's rsync: --dest user@host:/srv/images/.
    Rsync,
}

impl From<TargetArg> for TargetKind {
    fn from(target: TargetArg) -> TargetKind {
        match target {
            TargetArg::Djinn => TargetKind::Djinn,
            TargetArg::Offline => TargetKind::Offline,
            TargetArg::Srht => TargetKind::Srht,
            TargetArg::Rsync => TargetKind::Rsync,
        }
    }
}

/// Where publish sends the image, and how: `kiln publish` and `kiln run`.
#[derive(Debug, Args)]
pub struct DestinationArgs {
    /// Where publish sends the image (`kiln run` without one ends after verify).
    #[arg(long, value_enum)]
    pub to: Option<TargetArg>,
    /// The published image's name (letters, digits, `_`, `-`) [default: the file name without
    /// extension].
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Djinn: `path[@owner]` [default: config [djinn] namespace]; offline: a path like
    /// `debian`.
    #[arg(long, value_name = "NS")]
    pub namespace: Option<Namespace>,
    /// Djinn API base URL, under which /images lives [default: config [djinn] url].
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Rewrite the image with `qemu-img convert` first (the original stays as it is).
    #[arg(long)]
    pub compact: bool,
    /// With --compact: compress the clusters (smaller, slower).
    #[arg(long, requires = "compact")]
    pub compress: bool,
    /// Also write NAME.sha256 (sha256sum format) beside the published file.
    #[arg(long, alias = "sha256")]
    pub write_sha256: bool,
    /// Offline: the runner's driver configuration [default: ~/.config/djinn/driver.conf].
    #[arg(long, value_name = "FILE")]
    pub driver_conf: Option<PathBuf>,
    /// Offline: install as a worker base image (DISKS/_base/qemu/x86_64/…).
    #[arg(long)]
    pub worker_base: bool,
    /// Offline, srht, rsync: replace an image that is already there.
    #[arg(long)]
    pub replace: bool,
    /// rsync: `[user@]host:/dir/` (the file is NAME.qcow2) or `[user@]host:/dir/FILE`, over
    /// your own ssh (its ~/.ssh/config, agent and known_hosts; an unknown host key is refused).
    #[arg(long, value_name = "USER@HOST:PATH")]
    pub dest: Option<RemotePath>,
    /// srht: the image tree's root directory.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// srht: the distribution directory, e.g. debian.
    #[arg(long, value_name = "D")]
    pub distro: Option<String>,
    /// srht: the release directory, e.g. 12.
    #[arg(long, value_name = "R")]
    pub release: Option<String>,
    /// srht: the architecture directory [default: x86_64].
    #[arg(long, value_name = "A")]
    pub arch: Option<String>,
}

impl DestinationArgs {
    /// The choices these flags make; the config file fills in the Djinn URL and namespace.
    pub fn choices(&self) -> Result<Choices, String> {
        let on = |flag: bool| flag.then_some(true);
        Ok(Choices {
            target: self.to.map(Into::into),
            name: self.name.clone(),
            namespace: self.namespace.clone(),
            url: self.url.clone(),
            driver_conf: self.driver_conf.as_deref().map(absolute),
            base: on(self.worker_base),
            replace: on(self.replace),
            root: self.root.as_deref().map(absolute),
            release: self.release()?,
            arch: self.arch.clone(),
            compact: on(self.compact),
            compress: on(self.compress),
            sha256: on(self.write_sha256),
            dest: self.dest.clone(),
            ..Choices::default()
        })
    }

    /// builds.sr.ht's `distro/release`, from --distro D --release R, or from the `--release
    /// D/R` that `kiln run` took before it had --distro.
    fn release(&self) -> Result<Option<String>, String> {
        let old = |release: &str| {
            release
                .split_once('/')
                .is_some_and(|(distro, release)| !distro.is_empty() && !release.is_empty())
        };
        match (&self.distro, &self.release) {
            (None, None) => Ok(None),
            (Some(distro), Some(release)) if !release.contains('/') => {
                Ok(Some(format!("{distro}/{release}")))
            }
            (None, Some(release)) if old(release) => Ok(Some(release.clone())),
            _ => Err("a builds.sr.ht tree takes --distro D --release R, e.g. --distro debian --release 12".into()),
        }
    }
}

/// How long a booted guest has to answer on SSH: `kiln configure` and `kiln check`.
#[derive(Debug, Args)]
pub struct BootTimeoutArgs {
    /// Seconds to wait for the guest's SSH after power-on (the Djinn driver waits 300).
    #[arg(long, value_name = "SECONDS", default_value_t = BOOT_DEADLINE.as_secs())]
    pub boot_timeout: u64,
}

impl BootTimeoutArgs {
    /// The wait as the step's timeout.
    pub fn timeout(&self) -> Option<Duration> {
        Some(Duration::from_secs(self.boot_timeout))
    }
}

/// The first line of a secret file, without its newline.
fn first_line(file: &Path) -> Result<String, String> {
    secret_from_file(file).map_err(|e| format!("cannot read {}: {e}", file.display()))
}

/// Ask on the terminal without echo; refuse when there is no terminal to ask on.
fn prompt(question: &str) -> Result<String, String> {
    if !std::io::stdin().is_terminal() {
        return Err(format!(
            "{}needs a terminal; use --password-file / --passphrase-file",
            question.trim_end_matches(": ")
        ));
    }
    rpassword::prompt_password(question).map_err(|e| format!("cannot read the answer: {e}"))
}

/// Whether the key needs a passphrase (russh says so when loading it without one).
fn key_is_encrypted(key: &Path) -> bool {
    matches!(
        russh::keys::load_secret_key(key, None),
        Err(russh::keys::Error::KeyIsEncrypted)
    )
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::super::{Args, Command};
    use crate::engine::steps::configure::Cleanup;

    fn parse(words: &[&str]) -> Result<Command, clap::Error> {
        let words = std::iter::once("kiln").chain(words.iter().copied());
        Args::try_parse_from(words).map(|args| args.command.expect("a command"))
    }

    fn install(words: &[&str]) -> super::super::install::InstallArgs {
        match parse(words).unwrap() {
            Command::Install(args) => args,
            other => panic!("not install: {other:?}"),
        }
    }

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn the_command_line_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn install_takes_the_old_checksum_spellings() {
        for flag in ["--iso-sha256", "--sha256", "--sha256sums"] {
            let args = install(&["install", "x.qcow2", "--iso", "a.iso", flag, HEX]);
            assert_eq!(args.installer.iso_sha256.as_deref(), Some(HEX), "{flag}");
        }
        let args = install(&[
            "install",
            "x.qcow2",
            "--iso",
            "a.iso",
            "--sha256sums",
            "SUMS",
        ]);
        let choices = args.installer.choices().unwrap();
        let file = choices.iso_checksum.expect("a checksum");
        assert!(file.ends_with("SUMS") && std::path::Path::new(&file).is_absolute());
        // Given twice under two names is the same flag twice.
        let twice = [
            "install",
            "x",
            "--iso",
            "a",
            "--sha256",
            HEX,
            "--sha256sums",
            "S",
        ];
        assert!(parse(&twice).is_err());
    }

    #[test]
    fn a_short_checksum_is_refused_and_iso_is_required_on_install() {
        let error = parse(&["install", "x.qcow2", "--iso", "a.iso", "--sha256", "abc123"]);
        assert_eq!(
            error.unwrap_err().kind(),
            clap::error::ErrorKind::ValueValidation
        );
        let error = parse(&["install", "x.qcow2"]).unwrap_err();
        assert_eq!(
            error.kind(),
            clap::error::ErrorKind::MissingRequiredArgument
        );
        assert!(error.to_string().contains("--iso <ISO>"), "{error}");
        assert!(parse(&["run", "x.qcow2"]).is_ok(), "run needs no ISO");
    }

    #[test]
    fn an_empty_checksum_switches_a_recorded_one_off() {
        let Command::Run(args) = parse(&["run", "x.qcow2", "--iso-sha256", ""]).unwrap() else {
            panic!("not run");
        };
        let choices = args.installer.choices().unwrap();
        assert_eq!(choices.iso_checksum.as_deref(), Some(""));
    }

    #[test]
    fn configure_logs_in_as_root_unless_told_and_install_takes_no_key() {
        let Command::Configure(args) = parse(&["configure", "x.qcow2"]).unwrap() else {
            panic!("not configure");
        };
        assert_eq!(args.credentials.choices().user.as_deref(), Some("root"));
        let Command::Run(args) = parse(&["run", "x.qcow2", "--key", "id"]).unwrap() else {
            panic!("not run");
        };
        let choices = args.credentials.choices();
        assert_eq!(choices.user, None, "run keeps the session's user");
        assert!(choices.key.is_some_and(|key| key.is_absolute()));
        assert!(parse(&["install", "x", "--iso", "a", "--key", "id"]).is_err());
    }

    /// `--clean` alone means the defaults and never swallows the image as its value.
    #[test]
    fn clean_alone_is_the_defaults_and_a_list_is_virt_sysprep_s() {
        let clean = |argv: &[&str]| match parse(argv).unwrap() {
            Command::Configure(args) => (args.image, args.cleanup.clean),
            _ => panic!("not configure"),
        };
        let (image, chosen) = clean(&["configure", "--clean", "x.qcow2"]);
        assert_eq!(image.to_str(), Some("x.qcow2"));
        assert_eq!(chosen, Some(Cleanup::defaults()));
        let (_, chosen) = clean(&["configure", "x", "--clean=defaults,-ssh-hostkeys"]);
        assert_eq!(
            chosen,
            Some(Cleanup::parse("defaults,-ssh-hostkeys").unwrap())
        );
        assert_eq!(clean(&["configure", "x"]).1, None);
        let error = parse(&["configure", "x", "--clean=bash-histroy"]).unwrap_err();
        assert!(
            error.to_string().contains("no clean-up is called"),
            "{error}"
        );
        let Command::Run(args) = parse(&["run", "x", "--clean"]).unwrap() else {
            panic!("not run");
        };
        assert_eq!(args.cleanup.choices().cleanup, Some(Cleanup::defaults()));
    }

    #[test]
    fn secrets_are_read_from_files_and_a_missing_key_is_refused() {
        let dir = std::env::temp_dir().join(format!("kiln-flags-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pw = dir.join("pw");
        std::fs::write(&pw, "hunter2\nignored\n").unwrap();
        let pw = pw.to_str().unwrap();
        let Command::Configure(args) =
            parse(&["configure", "x", "--user", "builder", "--password-file", pw]).unwrap()
        else {
            panic!("not configure");
        };
        let secrets = args.credentials.secrets(Some(("builder", None))).unwrap();
        assert_eq!(secrets.password.as_deref(), Some("hunter2"));
        let missing = dir.join("no-such-key");
        let error = args.credentials.secrets(Some(("builder", Some(&missing))));
        assert!(error.unwrap_err().contains("does not exist"));
        // Nobody will log in: nothing is asked, a missing key is not looked at.
        assert!(args.credentials.secrets(None).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn run(words: &[&str]) -> super::super::run::RunArgs {
        match parse(&[&["run", "x.qcow2"], words].concat()).unwrap() {
            Command::Run(args) => *args,
            other => panic!("not run: {other:?}"),
        }
    }

    #[test]
    fn write_sha256_keeps_its_old_spelling_on_publish_and_run() {
        for flag in ["--write-sha256", "--sha256"] {
            let Command::Publish(args) = parse(&["publish", "x", "--to", "djinn", flag]).unwrap()
            else {
                panic!("not publish");
            };
            assert!(args.destination.write_sha256, "publish {flag}");
            let choices = run(&[flag]).destination.choices().unwrap();
            assert_eq!(choices.sha256, Some(true), "run {flag}");
        }
    }

    #[test]
    fn srht_takes_distro_and_release_and_run_still_takes_the_old_release() {
        let release = |words: &[&str]| run(words).destination.choices().map(|c| c.release);
        let new = release(&["--distro", "debian", "--release", "12"]);
        assert_eq!(new, Ok(Some("debian/12".into())));
        assert_eq!(
            release(&["--release", "debian/12"]),
            Ok(Some("debian/12".into()))
        );
        assert_eq!(release(&[]), Ok(None));
        for wrong in [
            &["--release", "12"][..],
            &["--distro", "debian"],
            &["--release", "debian/"],
            &["--distro", "debian", "--release", "debian/12"],
        ] {
            assert!(release(wrong).is_err(), "{wrong:?}");
        }
    }

    #[test]
    fn publish_requires_what_it_required() {
        use clap::error::ErrorKind::MissingRequiredArgument;
        let kind = |words: &[&str]| parse(words).unwrap_err().kind();
        assert_eq!(kind(&["publish", "x"]), MissingRequiredArgument);
        let srht = [
            "publish", "x", "--to", "srht", "--root", "r", "--distro", "debian",
        ];
        assert_eq!(kind(&srht), MissingRequiredArgument);
        assert!(parse(&[&srht[..], &["--release", "12"]].concat()).is_ok());
        assert_eq!(
            kind(&["publish", "x", "--to", "djinn", "--compress"]),
            MissingRequiredArgument
        );
        assert!(
            parse(&["run", "x", "--to", "srht"]).is_ok(),
            "run: the session has them"
        );
    }

    #[test]
    fn check_waits_for_ssh_by_the_same_flag_as_configure() {
        for flag in ["--boot-timeout", "--timeout"] {
            let Command::Check(args) = parse(&["check", "x", flag, "60"]).unwrap() else {
                panic!("not check");
            };
            assert_eq!(args.boot.boot_timeout, 60, "{flag}");
        }
        let Command::Configure(args) = parse(&["configure", "x"]).unwrap() else {
            panic!("not configure");
        };
        assert_eq!(args.boot.timeout(), Some(super::BOOT_DEADLINE));
    }
}
