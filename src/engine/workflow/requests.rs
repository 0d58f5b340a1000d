//! Each step's engine request, built from the session's carried [`Choices`], this run's
//! [`Secrets`] and [`StepOptions`], and the [`Environment`] (settings resolved CLI > config
//! file > defaults). The only place requests are made: every frontend goes through here.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Environment, Secrets, StepOptions};
use crate::engine::driver::DriverProfile;
use crate::engine::files::iso::Expected;
use crate::engine::guest::ssh::Auth;
use crate::engine::host::vcpus::Vcpus;
use crate::engine::session::Choices;
use crate::engine::steps::cloud_image::CloudInit;
use crate::engine::steps::configure::{ConfigureRequest, SshdConfig, SshdVariant};
use crate::engine::steps::image::CreateRequest;
use crate::engine::steps::image::DiskSize;
use crate::engine::steps::install::boot_command::{WrittenDuration, human_duration};
use crate::engine::steps::install::mirror::Mirror;
use crate::engine::steps::install::netboot::{Netboot, NetbootFile};
use crate::engine::steps::install::preset::{Preset, PresetValues};
use crate::engine::steps::install::unattended::{KernelBoot, PresetChoice, Unattended};
use crate::engine::steps::install::{InstallRequest, Installer};
use crate::engine::steps::publish::{
    self, Compaction, PublishError, PublishRequest, PublishTarget, TargetKind,
};
use crate::engine::steps::verify::{KnownPasswords, VerifyRequest};

/// The size a new disk gets when nobody said: enough for a CI image, under Djinn's 20 GB.
pub const DEFAULT_SIZE: &str = "10G";

/// [`DEFAULT_SIZE`], read.
pub fn default_size() -> DiskSize {
    DEFAULT_SIZE.parse().expect("the default size is a size")
}
/// How long a guest may take to answer on SSH (the Djinn driver waits 5 minutes).
pub const BOOT_DEADLINE: Duration = Duration::from_secs(300);

impl Environment {
    /// The carried memory/CPU choices win over the settings.
    fn machine_size(&self, choices: &Choices) -> (u32, Vcpus) {
        (
            choices.memory_mib.unwrap_or(self.settings.memory_mib),
            choices.cpus.unwrap_or(self.settings.cpus),
        )
    }
}

pub fn create_request(image: &Path, choices: &Choices, force: bool) -> CreateRequest {
    CreateRequest {
        path: image.to_path_buf(),
        size: choices.size.clone().unwrap_or_else(default_size),
        force,
    }
}

/// `64 hex digits` is a checksum; anything else names a SHA256SUMS file.
pub fn parse_checksum(text: &str) -> Option<Expected> {
    let text = text.trim();
    if text.is_empty() {
        None
    } else if text.len() == 64 && text.chars().all(|c| c.is_ascii_hexdigit()) {
        Some(Expected::Hex(text.to_string()))
    } else {
        Some(Expected::SumsFile(PathBuf::from(text)))
    }
}

pub fn install_request(
    image: &Path,
    choices: &Choices,
    secrets: &Secrets,
    environment: &Environment,
    options: &StepOptions,
) -> Result<InstallRequest, String> {
    let (memory_mib, cpus) = environment.machine_size(choices);
    // An empty value is a setting switched off (the workbench's "by hand").
    let given = |text: &Option<String>| text.clone().filter(|t| !t.trim().is_empty());
    let preset = preset_choice(image, choices, secrets)?;
    let installer = installer(choices, preset.as_ref())?;
    let kernel_args = given(&choices.kernel_args);
    let from_iso = matches!(installer, Installer::Iso { .. });
    let kernel_boot = choices.kernel_boot.unwrap_or(false)
        || (from_iso && given(&choices.kernel).is_some())
        || kernel_args.is_some();
    let unattended = Unattended {
        boot_command: choices.boot_command.clone().filter(|c| !c.is_empty()),
        boot_wait: choices.boot_wait.as_ref().map(WrittenDuration::duration),
        key_interval: choices.key_interval.as_ref().map(WrittenDuration::duration),
        http_dir: choices
            .http_dir
            .clone()
            .filter(|dir| !dir.as_os_str().is_empty()),
        http_port: choices.http_port,
        kernel_boot: kernel_boot.then(|| KernelBoot {
            // Paths inside the ISO; netboot files are the installer itself.
            kernel: given(&choices.kernel).filter(|_| from_iso),
            initrd: given(&choices.initrd).filter(|_| from_iso),
            args: kernel_args.unwrap_or_default(),
        }),
        serial_console: choices.serial_console.unwrap_or(false),
        preset,
    };
    Ok(InstallRequest {
        image: image.to_path_buf(),
        installer,
        accelerator: environment.accelerator,
        memory_mib,
        cpus,
        timeout: options.timeout,
        vnc: !options.no_vnc,
        record_dir: environment.record_dir.clone(),
        unattended,
    })
}

/// The port a preset's answers name when they are written out rather than served.
pub const WRITTEN_ANSWERS_PORT: u16 = 8080;

/// Write a preset's answer files, filled in exactly as an install would serve them, into
/// `dir`; the kernel arguments that would start it. Nothing boots: the files are for reading
/// and for validators. The server's port is `choices.http_port`, else [`WRITTEN_ANSWERS_PORT`].
pub fn write_preset_answers(
    image: &Path,
    choices: &Choices,
    secrets: &Secrets,
    dir: &Path,
) -> Result<String, String> {
    let choice = preset_choice(image, choices, secrets)?
        .ok_or("writing answer files needs a preset (--preset NAME)")?;
    let preset = Preset::find(&choice.name).map_err(|e| e.to_string())?;
    preset.check(&choice.values).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let port = choices.http_port.unwrap_or(WRITTEN_ANSWERS_PORT);
    preset
        .write_answers(dir, &choice.values, port)
        .map_err(|e| e.to_string())?;
    Ok(preset.kernel_args_for_server(&choice.values, port))
}

/// What boots the installer: the ISO; else netboot files (a kernel and initrd given, or the
/// preset's own from its mirror).
fn installer(choices: &Choices, preset: Option<&PresetChoice>) -> Result<Installer, String> {
    let given = |text: &Option<String>| text.clone().filter(|t| !t.trim().is_empty());
    // An empty ISO is one switched off (the workbench's "netboot files").
    if let Some(path) = choices
        .iso
        .as_ref()
        .filter(|iso| !iso.as_os_str().is_empty())
    {
        return Ok(Installer::Iso {
            path: path.clone(),
            checksum: choices.iso_checksum.as_deref().and_then(parse_checksum),
        });
    }
    let file = |location: String, checksum: &Option<String>| {
        NetbootFile::parse(&location, checksum.as_deref()).map_err(|e| e.to_string())
    };
    match (given(&choices.kernel), given(&choices.initrd), preset) {
        (Some(kernel), Some(initrd), _) => Ok(Installer::Netboot(Netboot {
            kernel: file(kernel, &choices.kernel_sha256)?,
            initrd: file(initrd, &choices.initrd_sha256)?,
        })),
        (Some(_), None, _) | (None, Some(_), _) => {
            Err("netboot files go together: give both the kernel and the initrd".into())
        }
        (None, None, Some(choice)) => {
            let preset = Preset::find(&choice.name).map_err(|e| e.to_string())?;
            match preset.netboot(&choice.values) {
                Some(netboot) => netboot.map(Installer::Netboot).map_err(|e| e.to_string()),
                None => Err(format!(
                    "the {} preset knows no netboot files: give its installer ISO (--iso FILE)",
                    choice.name
                )),
            }
        }
        (None, None, None) => Err("install needs an installer: an ISO (--iso FILE), netboot \
                                   files (--kernel and --initrd), or a preset (--preset NAME)"
            .into()),
    }
}

/// What a headless install (no person at its screen) is told before it boots when nothing
/// will answer the installer: no preset, no boot command, no kernel arguments, no installer
/// on the serial console. An ISO that installs by itself is fine; one whose boot menu waits
/// for a key waits until `timeout`.
pub fn headless_install_warning(choices: &Choices, timeout: Duration) -> Option<String> {
    let given = |text: &Option<String>| text.as_deref().is_some_and(|t| !t.trim().is_empty());
    let answered = given(&choices.preset)
        || choices.boot_command.as_ref().is_some_and(|c| !c.is_empty())
        || given(&choices.kernel_args)
        || choices.serial_console == Some(true);
    let iso = choices
        .iso
        .as_ref()
        .filter(|iso| !iso.as_os_str().is_empty())?;
    (!answered).then(|| {
        format!(
            "nothing will answer the installer of {} (no --preset, --boot-command, --kernel-args \
             or --serial-console), and a headless install has nobody at its screen: if its boot \
             menu or a question waits for a key, the install waits until it is stopped after {}. \
             Choose --preset debian-12, --boot-command KEYS, or install in the workbench (kiln IMAGE)",
            iso.display(),
            human_duration(timeout)
        )
    })
}

/// The preset and the values it is filled with: the image's name as hostname, the user and
/// password configure logs in with, the chosen mirror or this host's own.
fn preset_choice(
    image: &Path,
    choices: &Choices,
    secrets: &Secrets,
) -> Result<Option<PresetChoice>, String> {
    let Some(name) = choices.preset.clone().filter(|name| !name.is_empty()) else {
        return Ok(None);
    };
    let user = choices
        .user
        .clone()
        .filter(|user| user != "root")
        .ok_or_else(|| {
            format!("the {name} preset creates a user: give its name (User, or --user NAME)")
        })?;
    let archive = Preset::find(&name).map_err(|e| e.to_string())?.archive;
    let mirror = match (&choices.mirror, &archive) {
        (Some(url), _) => Mirror::parse(url),
        (None, Some(archive)) => Mirror::from_host_apt(archive),
        (None, None) => {
            return Err(format!(
                "the {name} preset installs from its distribution's mirror: give one (Mirror, or --mirror http://HOST/DIR)"
            ));
        }
    }
    .map_err(|e| e.to_string())?;
    let hostname: String = image
        .file_stem()
        .unwrap_or_default()
        .to_string_lossy()
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    Ok(Some(PresetChoice {
        name,
        values: PresetValues {
            hostname: hostname.trim_matches('-').to_string(),
            user,
            password: secrets.password.clone().unwrap_or_default(),
            mirror,
            insecure_mirror: choices.insecure_mirror == Some(true),
        },
    }))
}

/// Log in as the install's user with its password (which sudo also gets) or a key.
pub fn configure_request(
    image: &Path,
    choices: &Choices,
    secrets: &Secrets,
    environment: &Environment,
    options: &StepOptions,
) -> Result<ConfigureRequest, String> {
    let password = secrets.password.clone().filter(|p| !p.is_empty());
    let auth = match &choices.key {
        Some(key) => Auth::Key {
            path: key.clone(),
            passphrase: secrets.passphrase.clone().filter(|p| !p.is_empty()),
        },
        None => Auth::Password(password.clone().unwrap_or_default()),
    };
    let (memory_mib, cpus) = environment.machine_size(choices);
    let sshd_config = match (&choices.sshd_config, choices.variant.unwrap_or_default()) {
        (Some(file), _) => SshdConfig::Custom(
            std::fs::read_to_string(file)
                .map_err(|e| format!("cannot read {}: {e}", file.display()))?,
        ),
        (None, SshdVariant::Reference) => SshdConfig::Reference,
        (None, SshdVariant::Pam) => SshdConfig::Pam,
    };
    Ok(ConfigureRequest {
        image: image.to_path_buf(),
        user: choices.user.clone().unwrap_or_else(|| "root".into()),
        auth,
        sudo_password: password,
        sshd_config,
        cleanup: choices.cleanup.clone().unwrap_or_default(),
        accelerator: environment.accelerator,
        memory_mib,
        cpus,
        boot_deadline: options.timeout.unwrap_or(BOOT_DEADLINE),
        record_dir: environment.record_dir.clone(),
        cloud_init: choices.cloud_init.unwrap_or(false).then(|| CloudInit {
            // Empty: switched off (the workbench's field left empty).
            user_data: choices
                .user_data
                .clone()
                .filter(|file| !file.as_os_str().is_empty()),
            keep_build_user: choices.keep_build_user.unwrap_or(false),
        }),
    })
}

/// Boot as the chosen driver does (Djinn unless srht was chosen); `static_only` skips the boot.
pub fn verify_request(
    image: &Path,
    choices: &Choices,
    secrets: &Secrets,
    environment: &Environment,
    options: &StepOptions,
) -> VerifyRequest {
    let profile = DriverProfile::of(choices.profile.unwrap_or_default(), environment.accelerator);
    VerifyRequest {
        image: image.to_path_buf(),
        profile: (!options.static_only).then_some(profile),
        deadline: options.timeout.unwrap_or(BOOT_DEADLINE),
        record_dir: environment.record_dir.clone(),
        // The password configure logged in with must not be left in a file of the image.
        passwords: KnownPasswords::new(secrets.password.clone()),
    }
}

/// The publish request. The Djinn URL and namespace: the choice, else the config file; the
/// token: `secrets`, else KILN_DJINN_TOKEN or the token file.
pub fn publish_request(
    image: &Path,
    choices: &Choices,
    secrets: &Secrets,
    environment: &Environment,
) -> Result<PublishRequest, PublishError> {
    let replace = choices.replace.unwrap_or(false);
    let settings = &environment.settings;
    let target = match choices.target.unwrap_or_default() {
        TargetKind::Offline => PublishTarget::Offline {
            driver_conf: choices
                .driver_conf
                .clone()
                .or_else(publish::default_driver_conf)
                .ok_or_else(|| {
                    PublishError::InvalidOption(
                        "no home directory to find djinn/driver.conf in; choose the runner's driver.conf".into(),
                    )
                })?,
            namespace: choices.namespace.clone(),
            base: choices.base.unwrap_or(false),
            replace,
        },
        TargetKind::Srht => {
            let release = choices.release.clone().unwrap_or_default();
            let (distro, release) = release.split_once('/').ok_or_else(|| {
                PublishError::InvalidOption(
                    "a builds.sr.ht tree needs distro/release, e.g. debian/12".into(),
                )
            })?;
            PublishTarget::Srht {
                root: choices.root.clone().ok_or_else(|| {
                    PublishError::InvalidOption("a builds.sr.ht tree needs its root directory".into())
                })?,
                distro: distro.to_string(),
                release: release.to_string(),
                arch: choices.arch.clone().unwrap_or_else(|| "x86_64".into()),
                replace,
            }
        }
        TargetKind::Rsync => PublishTarget::Rsync {
            dest: choices.dest.clone().ok_or_else(|| {
                PublishError::InvalidOption(
                    "an rsync destination needs user@host:/path/ (--dest, or dest in the recipe)"
                        .into(),
                )
            })?,
            replace,
        },
        TargetKind::Djinn => PublishTarget::Djinn {
            url: non_empty(&choices.url).or_else(|| non_empty(&settings.djinn_url)).ok_or_else(|| {
                PublishError::InvalidOption(
                    "no Djinn URL: give one (--url) or set `url` under [djinn] in the config file"
                        .into(),
                )
            })?,
            // The one place the config file's namespace fills in for every frontend.
            namespace: choices.namespace.clone().or_else(|| settings.djinn_namespace.clone()),
            token: match &secrets.token {
                Some(token) => token.clone(),
                None => publish::load_token(environment.config_dir.as_deref())?,
            },
        },
    };
    Ok(PublishRequest {
        image: image.to_path_buf(),
        name: choices.name.clone().filter(|n| !n.is_empty()),
        target,
        compact: choices.compact.unwrap_or(false).then_some(Compaction {
            compress: choices.compress.unwrap_or(false),
        }),
        sha256: choices.sha256.unwrap_or(false),
    })
}

fn non_empty(text: &Option<String>) -> Option<String> {
    text.clone().filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::driver::Profile;
    use crate::engine::host::Accelerator;
    use crate::engine::host::config::Settings;

    #[test]
    fn a_headless_install_is_warned_only_when_nothing_answers_its_installer() {
        let hour = Duration::from_secs(3600);
        let with_iso = Choices {
            iso: Some("netinst.iso".into()),
            ..Choices::default()
        };
        let warning = headless_install_warning(&with_iso, hour).unwrap();
        assert!(warning.contains("netinst.iso"), "{warning}");
        assert!(
            warning.ends_with("or install in the workbench (kiln IMAGE)"),
            "{warning}"
        );
        assert!(warning.contains("stopped after 1 h"), "{warning}");
        let answered = [
            Choices {
                preset: Some("debian-12".into()),
                ..with_iso.clone()
            },
            Choices {
                boot_command: Some("<enter>".parse().unwrap()),
                ..with_iso.clone()
            },
            Choices {
                kernel_args: Some("auto=true".into()),
                ..with_iso.clone()
            },
            Choices {
                serial_console: Some(true),
                ..with_iso.clone()
            },
        ];
        for choices in answered {
            assert_eq!(
                headless_install_warning(&choices, hour),
                None,
                "{choices:?}"
            );
        }
        // Switched off in the workbench (empty) is not an answer; no ISO is no install.
        let switched_off = Choices {
            preset: Some(String::new()),
            ..with_iso
        };
        assert!(headless_install_warning(&switched_off, hour).is_some());
        assert_eq!(headless_install_warning(&Choices::default(), hour), None);
    }

    fn environment() -> Environment {
        Environment {
            settings: Settings {
                memory_mib: 1024,
                cpus: Vcpus::Exactly(2),
                image_dir: PathBuf::from("/i"),
                theme: "default".into(),
                graphics: crate::engine::host::config::Graphics::Auto,
                djinn_url: Some("https://ci.example/api".into()),
                djinn_namespace: Some("fromconfig".parse().unwrap()),
            },
            accelerator: Accelerator::Tcg,
            record_dir: None,
            config_dir: None,
        }
    }

    #[test]
    fn carried_choices_shape_the_requests() {
        let choices = Choices {
            iso: Some("/isos/d.iso".into()),
            iso_checksum: Some("ab".repeat(32)),
            memory_mib: Some(2048),
            user: Some("builder".into()),
            variant: Some(SshdVariant::Pam),
            profile: Some(Profile::Srht),
            ..Choices::default()
        };
        let image = Path::new("/i/d.qcow2");
        let options = StepOptions::default();
        let install = install_request(
            image,
            &choices,
            &Secrets::default(),
            &environment(),
            &options,
        )
        .unwrap();
        assert_eq!(install.memory_mib, 2048);
        assert_eq!(install.cpus, Vcpus::Exactly(2));
        assert!(install.vnc);
        assert!(matches!(
            install.installer,
            Installer::Iso {
                checksum: Some(Expected::Hex(_)),
                ..
            }
        ));

        let secrets = Secrets {
            password: Some("pw".into()),
            ..Secrets::default()
        };
        let configure =
            configure_request(image, &choices, &secrets, &environment(), &options).unwrap();
        assert_eq!(configure.user, "builder");
        assert_eq!(configure.sudo_password.as_deref(), Some("pw"));
        assert!(matches!(configure.sshd_config, SshdConfig::Pam));
        assert!(matches!(configure.auth, Auth::Password(ref p) if p == "pw"));
        assert_eq!(configure.boot_deadline, BOOT_DEADLINE);
        // Logs may print requests and secrets with {:?}; the password never shows.
        for printed in [format!("{configure:?}"), format!("{secrets:?}")] {
            assert!(!printed.contains("pw\""), "{printed}");
            assert!(
                printed.contains("redacted") || printed.contains("<given>"),
                "{printed}"
            );
        }

        let verify = verify_request(image, &choices, &secrets, &environment(), &options);
        assert_eq!(
            verify.profile.unwrap(),
            DriverProfile::srht(Accelerator::Tcg)
        );
    }

    #[test]
    fn djinn_url_and_namespace_come_from_the_choice_else_the_config_file() {
        let image = Path::new("/i/d.qcow2");
        let secrets = Secrets {
            token: publish::Token::new("t0ken"),
            ..Secrets::default()
        };
        let namespace =
            |choices: &Choices| match publish_request(image, choices, &secrets, &environment())
                .unwrap()
                .target
            {
                PublishTarget::Djinn { url, namespace, .. } => {
                    (url, namespace.map(|ns| ns.to_string()))
                }
                other => panic!("{other:?}"),
            };
        assert_eq!(
            namespace(&Choices::default()),
            (
                "https://ci.example/api".to_string(),
                Some("fromconfig".to_string())
            )
        );
        let chosen = Choices {
            namespace: Some("chosen".parse().unwrap()),
            ..Choices::default()
        };
        assert_eq!(namespace(&chosen).1.as_deref(), Some("chosen"));
    }

    #[test]
    fn missing_inputs_are_named() {
        let image = Path::new("/i/d.qcow2");
        let options = StepOptions::default();
        let error = install_request(
            image,
            &Choices::default(),
            &Secrets::default(),
            &environment(),
            &options,
        )
        .unwrap_err();
        assert!(error.contains("--iso"), "{error}");
        let secrets = Secrets {
            token: publish::Token::new("t0ken"),
            ..Secrets::default()
        };
        let mut no_url = environment();
        no_url.settings.djinn_url = None;
        let error = publish_request(image, &Choices::default(), &secrets, &no_url)
            .unwrap_err()
            .to_string();
        assert!(error.contains("no Djinn URL"), "{error}");
        assert_eq!(
            parse_checksum("SHA256SUMS").map(|e| matches!(e, Expected::SumsFile(_))),
            Some(true)
        );
        assert!(parse_checksum("  ").is_none());
    }
}
