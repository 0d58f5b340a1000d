//! The Configure screen: credentials from the install, the sshd_config variant, the extras.

use std::path::PathBuf;
use std::time::Duration;

use super::run::StepRun;
use crate::engine::configure::{Approval, ConfigureRequest, Extras, SshdConfig};
use crate::engine::host::Accelerator;
use crate::engine::ssh::Auth;
use crate::tui::widgets::form::{Field, Form};

pub struct ConfigureScreen {
    pub form: Form,
    pub run: StepRun,
}

impl ConfigureScreen {
    pub fn new() -> ConfigureScreen {
        ConfigureScreen {
            form: Form::new(vec![
                Field::text("disk", "Disk", ""),
                Field::text("user", "User", "root"),
                Field::secret("password", "Password"),
                Field::text("key", "Key file", ""),
                Field::secret("passphrase", "Key pass"),
                Field::choice("variant", "sshd", vec!["reference", "pam"]),
                Field::check("zero", "zero free space + fstrim (for compaction)"),
                Field::check(
                    "machine-id",
                    "clear /etc/machine-id (each clone gets its own)",
                ),
                Field::check(
                    "host-keys",
                    "remove SSH host keys, regenerate at first boot",
                ),
                Field::button("Configure"),
            ]),
            run: StepRun::default(),
        }
    }

    /// The engine request from the form; the password doubles as sudo's.
    pub fn request(
        &self,
        accelerator: Accelerator,
        memory_mib: u32,
        cpus: u32,
        record_dir: Option<PathBuf>,
        approve: Approval,
    ) -> ConfigureRequest {
        let form = &self.form;
        let password = form.raw("password");
        let key = form.text("key");
        let auth = if key.is_empty() {
            Auth::Password(password.clone())
        } else {
            let passphrase = form.raw("passphrase");
            Auth::Key {
                path: PathBuf::from(key),
                passphrase: (!passphrase.is_empty()).then_some(passphrase),
            }
        };
        ConfigureRequest {
            image: PathBuf::from(form.text("disk")),
            user: form.text("user"),
            auth,
            sudo_password: (!password.is_empty()).then_some(password),
            sshd_config: match form.choice("variant") {
                "pam" => SshdConfig::Pam,
                _ => SshdConfig::Reference,
            },
            extras: Extras {
                zero_free_space: form.checked("zero"),
                clear_machine_id: form.checked("machine-id"),
                regenerate_host_keys: form.checked("host-keys"),
            },
            accelerator,
            memory_mib,
            cpus,
            boot_deadline: Duration::from_secs(300),
            record_dir,
            approve: Some(approve),
        }
    }
}

impl Default for ConfigureScreen {
    fn default() -> Self {
        Self::new()
    }
}
