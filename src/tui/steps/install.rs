//! The Install screen's state: the form, then the running machine's console and screen.

use std::sync::LazyLock;

use super::run::StepRun;
use crate::engine::files::download::{Checksum, Location};
use crate::engine::files::qcow2_header;
use crate::engine::session::Choices;
use crate::engine::steps::install::InstallOutcome;
use crate::engine::steps::install::boot_command::{BootCommand, BootCommandError, WrittenDuration};
use crate::engine::steps::install::preset::{self, Preset};
use crate::engine::task::{Level, Summary};
use crate::engine::workflow::base::BaseCopy;
use crate::tui::widgets::form::{Field, Form, FormProblem};

/// The Install form's ways: a person at the installer; kiln typing and serving what the
/// person set up; or a built-in preset (its answer files filled in from the form).
const BY_HAND: &str = "by hand";
const UNATTENDED: &str = "unattended";
const PRESET: &str = "preset";
const UNATTENDED_ONLY: &[&str] = &[UNATTENDED];
const PRESET_ONLY: &[&str] = &[PRESET];

/// Where the system comes from: an installer booted from an ISO or from a distribution's
/// netboot kernel and initrd, or a distribution's cloud image copied over the disk (no
/// installer at all; configure gets in through a NoCloud seed kiln writes).
const FROM_ISO: &str = "ISO";
const FROM_NETBOOT: &str = "netboot files";
const FROM_CLOUD: &str = "cloud image";
const ISO_ONLY: &[&str] = &[FROM_ISO];
const NETBOOT_ONLY: &[&str] = &[FROM_NETBOOT];
const CLOUD_ONLY: &[&str] = &[FROM_CLOUD];
const AN_INSTALLER: &[&str] = &[FROM_ISO, FROM_NETBOOT];

/// Every built-in preset (one per folder of assets/presets/).
static PRESETS: LazyLock<Vec<&'static str>> = LazyLock::new(preset::names);

pub struct InstallScreen {
    pub form: Form,
    pub run: StepRun,
}

impl InstallScreen {
    pub fn new() -> InstallScreen {
        InstallScreen {
            form: Form::new(vec![
                Field::path("disk", "Disk", ""),
                Field::path("iso", "ISO", "").only_for("from", ISO_ONLY),
                Field::path("sha256", "SHA-256", "").only_for("from", ISO_ONLY),
                // After the ISO's fields, so that Tab from the disk still reaches the ISO.
                Field::choice("from", "From", vec![FROM_ISO, FROM_NETBOOT, FROM_CLOUD]),
                Field::path("kernel", "Kernel", "").only_for("from", NETBOOT_ONLY),
                Field::text("kernel-sha256", "Its sum", "").only_for("from", NETBOOT_ONLY),
                Field::path("initrd", "Initrd", "").only_for("from", NETBOOT_ONLY),
                Field::text("initrd-sha256", "Its sum", "").only_for("from", NETBOOT_ONLY),
                Field::path("base", "Cloud img", "").only_for("from", CLOUD_ONLY),
                Field::path("user-data", "User-data", "").only_for("from", CLOUD_ONLY),
                Field::check(
                    "keep-build-user",
                    "keep the build user (kiln-build, passwordless sudo) in the image",
                )
                .only_for("from", CLOUD_ONLY),
                Field::choice("mode", "Install", vec![BY_HAND, UNATTENDED, PRESET])
                    .only_for("from", AN_INSTALLER),
                Field::choice("preset", "Preset", PRESETS.clone()).only_for("mode", PRESET_ONLY),
                Field::text("user", "User", "").only_for("mode", PRESET_ONLY),
                Field::secret("password", "Password").only_for("mode", PRESET_ONLY),
                Field::text("mirror", "Mirror", "").only_for("mode", PRESET_ONLY),
                Field::check(
                    "insecure-mirror",
                    "unsigned test mirror: no signature checks (never a real mirror)",
                )
                .only_for("mode", PRESET_ONLY),
                Field::text("boot-command", "Boot keys", "").only_for("mode", UNATTENDED_ONLY),
                Field::text("boot-wait", "Key wait", "").only_for("mode", UNATTENDED_ONLY),
                Field::path("http-dir", "HTTP dir", "").only_for("mode", UNATTENDED_ONLY),
                Field::text("kernel-args", "Kernel", "").only_for("mode", UNATTENDED_ONLY),
                Field::check(
                    "kernel-boot",
                    "boot the ISO's kernel directly (no boot menu)",
                )
                .only_for("mode", UNATTENDED_ONLY),
                Field::check(
                    "serial-console",
                    "installer on the serial console (console=ttyS0)",
                )
                .only_for("mode", UNATTENDED_ONLY),
                Field::button("Boot installer").only_for("from", AN_INSTALLER),
                Field::button("Copy the cloud image").only_for("from", CLOUD_ONLY),
            ]),
            run: StepRun::default(),
        }
    }

    /// The choices this form makes, to carry and record.
    pub fn choices(&self) -> Choices {
        let optional = |key: &str| Some(self.form.text(key)).filter(|t| !t.is_empty());
        if self.from_cloud_image() {
            return Choices {
                // Absolute, as the session records paths: a later kiln may start elsewhere.
                base_image: optional("base").map(|path| absolute(&path)),
                cloud_init: Some(true),
                // Empty: no user-data of the person's own (an earlier one is switched off).
                user_data: Some(
                    optional("user-data").map_or_else(Default::default, |path| absolute(&path)),
                ),
                keep_build_user: Some(self.form.checked("keep-build-user")),
                ..Choices::default()
            };
        }
        let mode = self.form.choice("mode");
        let unattended = mode == UNATTENDED;
        let preset = mode == PRESET;
        let netboot = self.form.choice("from") == FROM_NETBOOT;
        // Netboot files switch the ISO off (empty), and the other way round.
        let netboot_text = |key: &str| Some(self.form.text(key)).filter(|_| netboot);
        // By hand, the unattended settings are switched off, not forgotten as typed: the
        // session's earlier ones must not type keys into a person's installer either.
        let when = |value: Option<String>| {
            if unattended {
                value
            } else {
                Some(String::new())
            }
        };
        let boot_command = match unattended {
            true => self.boot_command().ok().flatten(),
            false => BootCommand::for_install("").ok(),
        };
        Choices {
            iso: match netboot {
                true => Some(Default::default()),
                false => optional("iso").map(Into::into),
            },
            iso_checksum: optional("sha256").filter(|_| !netboot),
            kernel: netboot_text("kernel"),
            kernel_sha256: netboot_text("kernel-sha256"),
            initrd: netboot_text("initrd"),
            initrd_sha256: netboot_text("initrd-sha256"),
            boot_command,
            boot_wait: optional("boot-wait")
                .filter(|_| unattended)
                .and_then(|text| text.parse().ok()),
            http_dir: when(optional("http-dir")).map(Into::into),
            kernel_args: when(optional("kernel-args")),
            kernel_boot: Some(unattended && self.form.checked("kernel-boot")),
            serial_console: Some(unattended && self.form.checked("serial-console")),
            preset: Some(if preset {
                self.form.choice("preset").into()
            } else {
                String::new()
            }),
            user: optional("user").filter(|_| preset),
            mirror: optional("mirror").filter(|_| preset),
            insecure_mirror: Some(preset && self.form.checked("insecure-mirror")),
            // An installer chosen: a cloud image of the session's is no longer the way in.
            cloud_init: Some(false),
            ..Choices::default()
        }
    }

    /// A cloud image copied over the disk, instead of an installer.
    pub fn from_cloud_image(&self) -> bool {
        self.form.choice("from") == FROM_CLOUD
    }

    /// The Boot command field, read as every frontend reads one; empty is none.
    fn boot_command(&self) -> Result<Option<BootCommand>, BootCommandError> {
        let source = self.form.raw("boot-command");
        match source.trim().is_empty() {
            true => Ok(None),
            false => source.parse().map(Some),
        }
    }

    /// What the form lacks or holds that an install would refuse (no ISO, a preset without
    /// its user, a boot command with a mistake): the step is not started, and the message is
    /// the one every frontend gives.
    pub fn problem(&self) -> Option<FormProblem> {
        if self.from_cloud_image() {
            return self.cloud_image_problem();
        }
        if self.form.choice("from") == FROM_NETBOOT {
            return self.netboot_problem().or_else(|| self.typed_problem());
        }
        let iso = self.form.text("iso");
        if iso.is_empty() {
            let how = "type the installer ISO's path (Tab completes)";
            return Some(FormProblem::missing("iso", "the installer ISO", how));
        }
        // What was typed is read first, as the command line reads its flags; the ISO's
        // contents after.
        let typed = self.typed_problem();
        if typed.is_some() {
            return typed;
        }
        let error = crate::engine::files::iso::validate(std::path::Path::new(&iso)).err()?;
        Some(FormProblem::new("iso", "a bootable ISO", error.to_string()))
    }

    /// A cloud image: a file to copy (never the disk itself), and a user-data file if named.
    fn cloud_image_problem(&self) -> Option<FormProblem> {
        let base = self.form.text("base");
        if base.is_empty() {
            let how = "type the cloud image's path, e.g. debian-12-genericcloud-amd64.qcow2";
            return Some(FormProblem::missing("base", "the cloud image", how));
        }
        // Only looked at, never opened here: this runs on every frame.
        if let Some(problem) = not_a_file(&base) {
            return Some(FormProblem::new("base", "a cloud image file", problem));
        }
        let user_data = self.form.text("user-data");
        let problem = (!user_data.is_empty()).then(|| not_a_file(&user_data));
        let problem = problem.flatten()?;
        Some(FormProblem::new("user-data", "a user-data file", problem))
    }

    /// Netboot files: both, or neither with a preset that knows its own; a URL needs its
    /// checksum, and a checksum must read as one.
    fn netboot_problem(&self) -> Option<FormProblem> {
        let (kernel, initrd) = (self.form.text("kernel"), self.form.text("initrd"));
        if kernel.is_empty() && initrd.is_empty() {
            let preset = self
                .uses_preset()
                .then(|| Preset::find(self.form.choice("preset")));
            if preset.is_some_and(|found| found.is_ok_and(|p| p.has_netboot())) {
                return None;
            }
            let how = "a file or http(s) URL; a preset with netboot files needs none";
            return Some(FormProblem::missing("kernel", "the netboot kernel", how));
        }
        for (key, text, what) in [
            ("kernel", &kernel, "the kernel"),
            ("initrd", &initrd, "the initrd"),
        ] {
            if text.is_empty() {
                let how = "netboot files go together: give both";
                return Some(FormProblem::missing(key, what, how));
            }
        }
        for (file, key) in [(&kernel, "kernel-sha256"), (&initrd, "initrd-sha256")] {
            let sum = self.form.text(key);
            if sum.is_empty() && matches!(Location::parse(file), Location::Url(_)) {
                let how = "kiln checks every download: 64 hex digits or a SHA256SUMS URL";
                return Some(FormProblem::missing(key, "the download's checksum", how));
            }
            if let Err(error) = (!sum.is_empty())
                .then(|| sum.parse::<Checksum>())
                .transpose()
            {
                return Some(FormProblem::new(key, "a checksum", error.to_string()));
            }
        }
        None
    }

    /// The mode's own fields: a preset's user and password, the boot command and its wait.
    fn typed_problem(&self) -> Option<FormProblem> {
        match self.form.choice("mode") {
            PRESET => {
                if self.form.text("user").is_empty() {
                    let how = "the preset creates this user, and configure logs in as it";
                    return Some(FormProblem::missing("user", "the user's name", how));
                }
                if self.password().is_none() {
                    let how = "the preset gives it to the user (never recorded)";
                    return Some(FormProblem::missing("password", "the password", how));
                }
                None
            }
            UNATTENDED => {
                if let Err(error) = self.boot_command() {
                    let needs = "a boot command without mistakes";
                    return Some(FormProblem::new("boot-command", needs, error.to_string()));
                }
                let boot_wait = self.form.text("boot-wait");
                let wait = (!boot_wait.is_empty()).then(|| boot_wait.parse::<WrittenDuration>());
                let problem = wait?.err()?;
                let message = format!("boot wait: {problem}");
                Some(FormProblem::new(
                    "boot-wait",
                    "a key wait such as 10s",
                    message,
                ))
            }
            _ => None,
        }
    }

    pub fn uses_preset(&self) -> bool {
        self.form.choice("mode") == PRESET
    }

    /// The password a preset gives the user it creates (typed this time, never recorded).
    pub fn password(&self) -> Option<String> {
        Some(self.form.raw("password")).filter(|p| !p.is_empty())
    }

    pub fn fill(&mut self, choices: &Choices) {
        if choices.starts_from_cloud_image() {
            self.form.set_choice("from", FROM_CLOUD);
            let path = |path: &Option<std::path::PathBuf>| {
                path.as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            };
            self.form.set_text("base", &path(&choices.base_image));
            self.form.set_text("user-data", &path(&choices.user_data));
            let keep = choices.keep_build_user == Some(true);
            self.form.set_checked("keep-build-user", keep);
            return;
        }
        if let Some(iso) = &choices.iso {
            self.form.set_text("iso", &iso.display().to_string());
        }
        let no_iso = choices
            .iso
            .as_ref()
            .is_none_or(|iso| iso.as_os_str().is_empty());
        let netboot = no_iso && choices.kernel.as_ref().is_some_and(|k| !k.is_empty());
        for (key, value) in [
            ("kernel", &choices.kernel),
            ("kernel-sha256", &choices.kernel_sha256),
            ("initrd", &choices.initrd),
            ("initrd-sha256", &choices.initrd_sha256),
        ] {
            if let Some(value) = value.as_ref().filter(|_| netboot) {
                self.form.set_text(key, value);
            }
        }
        let chosen_preset = choices
            .preset
            .as_deref()
            .filter(|name| PRESETS.contains(name));
        // An ISO switched off (empty) is the netboot way, files typed or the preset's own.
        let iso_off = choices
            .iso
            .as_ref()
            .is_some_and(|iso| iso.as_os_str().is_empty());
        let from_netboot = netboot || iso_off;
        self.form
            .set_choice("from", if from_netboot { FROM_NETBOOT } else { FROM_ISO });
        if let Some(sum) = &choices.iso_checksum {
            self.form.set_text("sha256", sum);
        }
        let text = |value: &Option<String>| value.clone().unwrap_or_default();
        let boot_command = choices
            .boot_command
            .as_ref()
            .map(|c| c.source().to_string());
        self.form.set_text("boot-command", &text(&boot_command));
        let boot_wait = choices.boot_wait.as_ref().map(ToString::to_string);
        self.form.set_text("boot-wait", &text(&boot_wait));
        let http_dir = choices.http_dir.as_ref().map(|d| d.display().to_string());
        self.form.set_text("http-dir", &text(&http_dir));
        let http_dir = http_dir.as_deref();
        self.form
            .set_text("kernel-args", &text(&choices.kernel_args));
        let kernel_boot = choices.kernel_boot == Some(true);
        let serial_console = choices.serial_console == Some(true);
        self.form.set_checked("kernel-boot", kernel_boot);
        self.form.set_checked("serial-console", serial_console);
        let unattended = kernel_boot
            || serial_console
            || [&boot_command, &choices.kernel_args]
                .iter()
                .any(|value| value.as_ref().is_some_and(|v| !v.is_empty()))
            || http_dir.is_some_and(|dir| !dir.is_empty());
        let preset = chosen_preset.is_some();
        if let Some(name) = chosen_preset {
            self.form.set_choice("preset", name);
        }
        if let Some(user) = choices.user.as_ref().filter(|_| preset) {
            self.form.set_text("user", user);
        }
        if let Some(mirror) = &choices.mirror {
            self.form.set_text("mirror", mirror);
        }
        self.form
            .set_checked("insecure-mirror", choices.insecure_mirror == Some(true));
        let mode = match (preset, unattended) {
            (true, _) => PRESET,
            (false, true) => UNATTENDED,
            (false, false) => BY_HAND,
        };
        self.form.set_choice("mode", mode);
    }

    /// The result panel's lines for a base copied over the disk.
    pub fn copied(copy: &BaseCopy) -> Vec<String> {
        let mut lines = vec![copy.summary()];
        // Only a cloud image is summed (a recipe's plain base is not one).
        if let Some(sum) = &copy.sha256 {
            lines.push(format!(
                "the cloud image's SHA-256: {sum} (in the session file)"
            ));
            lines.push(
                "Next: Configure — kiln gets in through a NoCloud seed of its own, no \
                 password needed — press n."
                    .into(),
            );
        }
        lines
    }

    /// The result panel's lines for a finished install.
    pub fn outcome(outcome: &InstallOutcome) -> Vec<String> {
        vec![
            format!(
                "installed: the guest powered off after {} s",
                outcome.took.as_secs()
            ),
            format!("serial log: {}", outcome.serial_log.display()),
            "Next: Configure (passwordless root, sshd_config) — press n.".into(),
        ]
    }

    /// The hint under a field while typing: is the ISO bootable, what the checksum field takes.
    pub fn hint(&self, key: &str) -> Option<(Level, String)> {
        match key {
            "iso" => {
                let iso = self.form.text("iso");
                if iso.is_empty() {
                    return Some((Level::Warn, "path of the installer ISO to boot".into()));
                }
                Some(
                    match crate::engine::files::iso::validate(std::path::Path::new(&iso)) {
                        Ok(()) => (Level::Info, "bootable ISO 9660 image".into()),
                        Err(e) => (Level::Warn, e.to_string()),
                    },
                )
            }
            "base" => Some(self.cloud_image_hint()),
            "user-data" => Some((
                Level::Info,
                "optional: your own #cloud-config, merged into kiln's seed".into(),
            )),
            "sha256" => Some((
                Level::Info,
                "optional: 64 hex digits or a SHA256SUMS file".into(),
            )),
            "boot-command" => Some(self.boot_command_hint()),
            "boot-wait" => Some((
                Level::Info,
                "before the first key (default 10s); keys 100ms apart".into(),
            )),
            "mirror" => Some((
                Level::Info,
                "http://HOST/debian; empty: this host's own Debian mirror".into(),
            )),
            "user" => Some((
                Level::Info,
                "the user the installer creates; configure logs in as it".into(),
            )),
            "kernel" | "initrd" => Some((
                Level::Info,
                "netboot file: a path, or an http(s) URL downloaded once into kiln's cache".into(),
            )),
            "kernel-sha256" | "initrd-sha256" => Some((
                Level::Info,
                "64 hex digits, or a SHA256SUMS URL or file (LIST#PATH-IN-IT); needed for a URL"
                    .into(),
            )),
            "kernel-args" => Some((
                Level::Info,
                "added to the installer's kernel command line (means direct boot), e.g. \
                 auto=true url=http://{{ .HTTPIP }}:{{ .HTTPPort }}/preseed.cfg"
                    .into(),
            )),
            _ => None,
        }
    }
}

impl InstallScreen {
    /// What the cloud image's header says: a standalone qcow2 or a raw disk is fine; one
    /// that names host files is refused by the copy, and says so here first.
    fn cloud_image_hint(&self) -> (Level, String) {
        let base = self.form.text("base");
        if base.is_empty() {
            return (
                Level::Info,
                "Debian's genericcloud, Ubuntu's cloudimg or Fedora Cloud's qcow2; only read"
                    .into(),
            );
        }
        match qcow2_header::host_file_refs(std::path::Path::new(&base)) {
            Err(error) => (Level::Warn, format!("cannot read it: {error}")),
            Ok(Some(refs)) if !refs.is_empty() => (
                Level::Warn,
                format!("its header names host files ({}): refused", refs.describe()),
            ),
            Ok(Some(_)) => (Level::Info, "a standalone qcow2 image; only read".into()),
            Ok(None) => (
                Level::Info,
                "not qcow2: copied as a raw disk; only read".into(),
            ),
        }
    }

    /// A boot command's first mistake with its column, or what the field takes.
    fn boot_command_hint(&self) -> (Level, String) {
        let source = self.form.raw("boot-command");
        if source.trim().is_empty() {
            return (
                Level::Info,
                "keys for the boot menu, Packer's syntax: <esc><wait>install … <enter>".into(),
            );
        }
        match self.boot_command() {
            Ok(_) => (Level::Info, "boot command understood".into()),
            Err(error) => (Level::Warn, error.to_string()),
        }
    }
}

/// Why `path` cannot be the file a field asks for, if it cannot.
fn not_a_file(path: &str) -> Option<String> {
    match std::fs::metadata(path) {
        Err(error) => Some(format!("cannot read {path}: {error}")),
        Ok(meta) if !meta.is_file() => Some(format!("{path} is not a file")),
        Ok(_) => None,
    }
}

/// `path` from the workbench's working directory (as typed, when that cannot be known).
fn absolute(path: &str) -> std::path::PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.into())
}

impl Default for InstallScreen {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unattended_settings_round_trip_and_by_hand_switches_them_off() {
        let mut screen = InstallScreen::new();
        screen.form.set_choice("mode", UNATTENDED);
        screen.form.set_text(
            "boot-command",
            "<esc><wait>install url=http://{{ .HTTPIP }}<enter>",
        );
        screen.form.set_text("http-dir", "/srv/answers");
        screen.form.set_checked("serial-console", true);
        let choices = screen.choices();
        assert_eq!(choices.http_dir, Some("/srv/answers".into()));
        assert_eq!(choices.serial_console, Some(true));
        assert_eq!(
            screen.boot_command_hint(),
            (Level::Info, "boot command understood".into())
        );

        // A session with these choices opens the form in unattended mode, filled in.
        let mut reopened = InstallScreen::new();
        reopened.fill(&choices);
        assert_eq!(reopened.form.choice("mode"), UNATTENDED);
        assert_eq!(reopened.choices(), choices);

        // By hand: every unattended setting is off, whatever the fields still hold.
        reopened.form.set_choice("mode", BY_HAND);
        let by_hand = reopened.choices();
        assert_eq!(
            by_hand.boot_command.as_ref().map(BootCommand::source),
            Some("")
        );
        assert_eq!(by_hand.serial_console, Some(false));
        let mut again = InstallScreen::new();
        again.fill(&by_hand);
        assert_eq!(again.form.choice("mode"), BY_HAND);
    }

    #[test]
    fn the_preset_mode_names_the_preset_and_its_user_but_records_no_password() {
        let mut screen = InstallScreen::new();
        screen.form.set_choice("mode", PRESET);
        screen.form.set_choice("preset", "fedora-41");
        screen.form.set_text("user", "builder");
        screen.form.set_text("password", "pw");
        let choices = screen.choices();
        assert_eq!(choices.preset.as_deref(), Some("fedora-41"));
        assert_eq!(choices.user.as_deref(), Some("builder"));
        assert!(!format!("{choices:?}").contains("pw\""));
        assert_eq!(screen.password().as_deref(), Some("pw"));
        let mut reopened = InstallScreen::new();
        reopened.fill(&choices);
        assert!(reopened.uses_preset());
        assert_eq!(reopened.form.choice("preset"), "fedora-41");
        assert_eq!(reopened.form.text("user"), "builder");
        // Signatures are checked unless the box is ticked, and a ticked box comes back.
        assert_eq!(choices.insecure_mirror, Some(false));
        screen.form.set_checked("insecure-mirror", true);
        reopened.fill(&screen.choices());
        assert_eq!(reopened.choices().insecure_mirror, Some(true));
        // By hand, no preset: the session's earlier one is switched off.
        reopened.form.set_choice("mode", BY_HAND);
        assert_eq!(reopened.choices().preset.as_deref(), Some(""));
    }

    #[test]
    fn every_preset_is_offered_and_netboot_files_replace_the_iso() {
        let mut screen = InstallScreen::new();
        for name in [
            "debian-12",
            "ubuntu-24.04",
            "fedora-41",
            "rhel-9",
            "opensuse-leap-15",
        ] {
            assert!(PRESETS.contains(&name), "{:?}", *PRESETS);
        }
        screen.form.set_choice("from", FROM_NETBOOT);
        let url = "http://m/images/netboot/linux";
        screen.form.set_text("kernel", url);
        screen.form.set_text("initrd", "/srv/initrd.gz");
        let problem = screen.problem().expect("a URL needs its checksum");
        assert_eq!(problem.field, "kernel-sha256");
        screen
            .form
            .set_text("kernel-sha256", "http://m/images/SHA256SUMS");
        assert!(screen.problem().is_none());
        let choices = screen.choices();
        assert_eq!(choices.iso, Some(Default::default()));
        assert_eq!(choices.kernel.as_deref(), Some(url));
        let mut reopened = InstallScreen::new();
        reopened.fill(&choices);
        assert_eq!(reopened.form.choice("from"), FROM_NETBOOT);
        assert_eq!(reopened.choices(), choices);
        // A preset that knows its netboot files needs none typed.
        screen.form.set_text("kernel", "");
        screen.form.set_text("initrd", "");
        screen.form.set_choice("mode", PRESET);
        screen.form.set_text("user", "builder");
        screen.form.set_text("password", "pw");
        assert!(screen.problem().is_none(), "{:?}", screen.problem());
    }

    #[test]
    fn a_cloud_image_asks_only_for_its_path_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let mut screen = InstallScreen::new();
        screen.form.set_choice("mode", PRESET);
        screen.form.set_choice("from", FROM_CLOUD);
        // No installer, so none of the installer's fields (a preset's included) are shown.
        let shown: Vec<&str> = (0..screen.form.fields.len())
            .filter(|&i| screen.form.is_shown(i))
            .map(|i| screen.form.fields[i].key)
            .collect();
        assert_eq!(
            shown,
            [
                "disk",
                "from",
                "base",
                "user-data",
                "keep-build-user",
                "run"
            ],
            "the button is the last"
        );
        assert_eq!(screen.problem().map(|p| p.field), Some("base"));
        let base = dir.path().join("cloud.qcow2");
        screen.form.set_text("base", &base.display().to_string());
        let problem = screen.problem().expect("a missing file");
        assert!(
            problem.message.contains("cannot read"),
            "{}",
            problem.message
        );
        // A FIFO where the image should be is named, never opened (that would wait for a
        // writer, and this runs on every frame).
        let fifo = std::ffi::CString::new(base.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo(3) on a path in this test's own directory.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let problem = screen.problem().expect("a FIFO is no image");
        assert!(
            problem.message.ends_with("is not a file"),
            "{}",
            problem.message
        );
        assert_eq!(screen.cloud_image_hint().0, Level::Warn);
        std::fs::remove_file(&base).unwrap();
        std::fs::write(&base, b"not qcow2").unwrap();
        assert!(screen.problem().is_none());
        assert_eq!(screen.cloud_image_hint().0, Level::Info);
        screen.form.set_checked("keep-build-user", true);
        let choices = screen.choices();
        assert_eq!(choices.cloud_init, Some(true));
        assert_eq!(choices.base_image.as_deref(), Some(base.as_path()));
        assert_eq!(choices.keep_build_user, Some(true));
        let mut reopened = InstallScreen::new();
        reopened.fill(&choices);
        assert!(reopened.from_cloud_image());
        assert_eq!(reopened.choices(), choices);
        // Back to an installer: the session's cloud image is switched off.
        reopened.form.set_choice("from", FROM_ISO);
        assert_eq!(reopened.choices().cloud_init, Some(false));
    }

    #[test]
    fn a_misspelt_key_is_named_under_the_field() {
        let mut screen = InstallScreen::new();
        screen.form.set_text("boot-command", "<esc><entre>");
        let (level, hint) = screen.boot_command_hint();
        assert_eq!(level, Level::Warn);
        assert!(
            hint.contains("column 6") && hint.contains("<enter>"),
            "{hint}"
        );
    }
}
