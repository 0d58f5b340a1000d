//! The flow from blank disk to published image: each step's engine request built from the
//! session's carried [`Choices`] plus the secrets of this run. The TUI's forms and `kiln run`'s
//! flags both become `Choices`, so both frontends build requests here, the same way.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Step;
use super::configure::{Approval, ConfigureRequest, Extras, SshdConfig};
use super::driver::DriverProfile;
use super::host::Accelerator;
use super::image::CreateRequest;
use super::install::InstallRequest;
use super::iso::Expected;
use super::publish::{self, Compaction, PublishError, PublishRequest, PublishTarget, Token};
use super::session::Choices;
use super::ssh::Auth;
use super::verify::VerifyRequest;

/// The size a new disk gets when nobody said: enough for a CI image, under Djinn's 20 GB.
pub const DEFAULT_SIZE: &str = "10G";
/// How long a guest may take to answer on SSH (the Djinn driver waits 5 minutes).
pub const BOOT_DEADLINE: Duration = Duration::from_secs(300);

/// What is never written down: asked for, or read from files, on every run.
#[derive(Default, Clone)]
pub struct Secrets {
    /// The install's password for `user` (also given to sudo).
    pub password: Option<String>,
    pub passphrase: Option<String>,
    pub token: Option<Token>,
}

/// How kiln's machines are sized and where their crash records go.
#[derive(Debug, Clone)]
pub struct MachineSettings {
    pub accelerator: Accelerator,
    pub memory_mib: u32,
    pub cpus: u32,
    pub record_dir: Option<PathBuf>,
}

impl MachineSettings {
    /// The carried memory/CPU choices win over the defaults.
    fn for_choices(&self, choices: &Choices) -> (u32, u32) {
        (
            choices.memory_mib.unwrap_or(self.memory_mib),
            choices.cpus.unwrap_or(self.cpus),
        )
    }
}

pub fn create_request(image: &Path, choices: &Choices, force: bool) -> CreateRequest {
    CreateRequest {
        path: image.to_path_buf(),
        size: choices
            .size
            .clone()
            .unwrap_or_else(|| DEFAULT_SIZE.to_string()),
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
    machines: &MachineSettings,
    vnc: bool,
) -> Result<InstallRequest, String> {
    let iso = choices
        .iso
        .clone()
        .ok_or("install needs an installer ISO (--iso FILE)")?;
    let (memory_mib, cpus) = machines.for_choices(choices);
    Ok(InstallRequest {
        image: image.to_path_buf(),
        iso,
        checksum: choices.iso_checksum.as_deref().and_then(parse_checksum),
        accelerator: machines.accelerator,
        memory_mib,
        cpus,
        timeout: None,
        vnc,
        record_dir: machines.record_dir.clone(),
    })
}

/// Log in as the install's user with its password (which sudo also gets) or a key.
pub fn configure_request(
    image: &Path,
    choices: &Choices,
    secrets: &Secrets,
    machines: &MachineSettings,
    approve: Option<Approval>,
) -> ConfigureRequest {
    let password = secrets.password.clone().filter(|p| !p.is_empty());
    let auth = match &choices.key {
        Some(key) => Auth::Key {
            path: key.clone(),
            passphrase: secrets.passphrase.clone().filter(|p| !p.is_empty()),
        },
        None => Auth::Password(password.clone().unwrap_or_default()),
    };
    let (memory_mib, cpus) = machines.for_choices(choices);
    ConfigureRequest {
        image: image.to_path_buf(),
        user: choices.user.clone().unwrap_or_else(|| "root".into()),
        auth,
        sudo_password: password,
        sshd_config: match choices.variant.as_deref() {
            Some("pam") => SshdConfig::Pam,
            _ => SshdConfig::Reference,
        },
        extras: Extras {
            zero_free_space: choices.zero_free_space.unwrap_or(false),
            clear_machine_id: choices.clear_machine_id.unwrap_or(false),
            regenerate_host_keys: choices.regenerate_host_keys.unwrap_or(false),
        },
        accelerator: machines.accelerator,
        memory_mib,
        cpus,
        boot_deadline: BOOT_DEADLINE,
        record_dir: machines.record_dir.clone(),
        approve,
    }
}

/// Boot as the chosen driver does (Djinn unless srht was chosen); `static_only` skips the boot.
pub fn verify_request(
    image: &Path,
    choices: &Choices,
    machines: &MachineSettings,
    static_only: bool,
) -> VerifyRequest {
    let profile = match choices.profile.as_deref() {
        Some("srht") => DriverProfile::srht(machines.accelerator),
        _ => DriverProfile::djinn(machines.accelerator),
    };
    VerifyRequest {
        image: image.to_path_buf(),
        profile: (!static_only).then_some(profile),
        deadline: BOOT_DEADLINE,
        record_dir: machines.record_dir.clone(),
    }
}

/// Where publish goes when nobody chose: Djinn, the tool's main audience.
pub fn publish_target_name(choices: &Choices) -> &str {
    choices.target.as_deref().unwrap_or("djinn")
}

/// The publish request; the token comes from `secrets`, else KILN_DJINN_TOKEN or the token file.
pub fn publish_request(
    image: &Path,
    choices: &Choices,
    secrets: &Secrets,
    config_dir: Option<&Path>,
) -> Result<PublishRequest, PublishError> {
    let replace = choices.replace.unwrap_or(false);
    let target = match publish_target_name(choices) {
        "offline" => PublishTarget::Offline {
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
            base: false,
            replace,
        },
        "srht" => {
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
                arch: "x86_64".into(),
                replace,
            }
        }
        "djinn" => PublishTarget::Djinn {
            url: choices.url.clone().filter(|u| !u.is_empty()).ok_or_else(|| {
                PublishError::InvalidOption(
                    "no Djinn URL: give one (--url) or set `url` under [djinn] in the config file"
                        .into(),
                )
            })?,
            namespace: choices.namespace.clone().filter(|n| !n.is_empty()),
            token: match &secrets.token {
                Some(token) => token.clone(),
                None => publish::load_token(config_dir)?,
            },
        },
        other => {
            return Err(PublishError::InvalidOption(format!(
                "unknown publish target {other:?}: djinn, offline or srht"
            )));
        }
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

/// Whether `step` boots a machine (and so can keep one for inspection after a failure).
pub fn boots_a_machine(step: Step) -> bool {
    matches!(step, Step::Install | Step::Configure | Step::Verify)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machines() -> MachineSettings {
        MachineSettings {
            accelerator: Accelerator::Tcg,
            memory_mib: 1024,
            cpus: 2,
            record_dir: None,
        }
    }

    #[test]
    fn carried_choices_shape_the_requests() {
        let choices = Choices {
            iso: Some("/isos/d.iso".into()),
            iso_checksum: Some("ab".repeat(32)),
            memory_mib: Some(2048),
            user: Some("builder".into()),
            variant: Some("pam".into()),
            profile: Some("srht".into()),
            ..Choices::default()
        };
        let image = Path::new("/i/d.qcow2");
        let install = install_request(image, &choices, &machines(), false).unwrap();
        assert_eq!(install.memory_mib, 2048);
        assert_eq!(install.cpus, 2);
        assert!(matches!(install.checksum, Some(Expected::Hex(_))));

        let secrets = Secrets {
            password: Some("pw".into()),
            ..Secrets::default()
        };
        let configure = configure_request(image, &choices, &secrets, &machines(), None);
        assert_eq!(configure.user, "builder");
        assert_eq!(configure.sudo_password.as_deref(), Some("pw"));
        assert!(matches!(configure.sshd_config, SshdConfig::Pam));
        assert!(matches!(configure.auth, Auth::Password(ref p) if p == "pw"));

        let verify = verify_request(image, &choices, &machines(), false);
        assert_eq!(
            verify.profile.unwrap(),
            DriverProfile::srht(Accelerator::Tcg)
        );
    }

    #[test]
    fn missing_inputs_are_named() {
        let image = Path::new("/i/d.qcow2");
        let error = install_request(image, &Choices::default(), &machines(), false).unwrap_err();
        assert!(error.contains("--iso"), "{error}");
        let secrets = Secrets {
            token: Token::new("t0ken"),
            ..Secrets::default()
        };
        let error = publish_request(image, &Choices::default(), &secrets, None)
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
