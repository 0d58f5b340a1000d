//! The Configure screen: credentials from the install, the sshd_config variant, the extras.

use std::path::PathBuf;

use super::run::StepRun;
use crate::engine::session::Choices;
use crate::engine::steps::configure::SshdVariant;
use crate::engine::workflow::Secrets;
use crate::tui::widgets::form::{Field, Form};

pub struct ConfigureScreen {
    pub form: Form,
    pub run: StepRun,
}

impl ConfigureScreen {
    pub fn new() -> ConfigureScreen {
        ConfigureScreen {
            form: Form::new(vec![
                Field::path("disk", "Disk", ""),
                Field::text("user", "User", "root"),
                Field::secret("password", "Password"),
                Field::path("key", "Key file", ""),
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

    /// The choices this form makes, to carry and record (the password is not one).
    pub fn choices(&self) -> Choices {
        let form = &self.form;
        let key = form.text("key");
        Choices {
            user: Some(form.text("user")),
            key: (!key.is_empty()).then(|| PathBuf::from(key)),
            variant: SshdVariant::from_name(form.choice("variant")),
            zero_free_space: Some(form.checked("zero")),
            clear_machine_id: Some(form.checked("machine-id")),
            regenerate_host_keys: Some(form.checked("host-keys")),
            ..Choices::default()
        }
    }

    /// The password (sudo's too) and key passphrase typed this time.
    pub fn secrets(&self) -> Secrets {
        let nonempty = |key: &str| Some(self.form.raw(key)).filter(|t| !t.is_empty());
        Secrets {
            password: nonempty("password"),
            passphrase: nonempty("passphrase"),
            token: None,
        }
    }

    pub fn fill(&mut self, choices: &Choices) {
        let form = &mut self.form;
        if let Some(user) = &choices.user {
            form.set_text("user", user);
        }
        if let Some(key) = &choices.key {
            form.set_text("key", &key.display().to_string());
        }
        if let Some(variant) = &choices.variant {
            form.set_choice("variant", variant.name());
        }
        for (field, value) in [
            ("zero", choices.zero_free_space),
            ("machine-id", choices.clear_machine_id),
            ("host-keys", choices.regenerate_host_keys),
        ] {
            if let Some(on) = value {
                form.set_checked(field, on);
            }
        }
    }
}

impl Default for ConfigureScreen {
    fn default() -> Self {
        Self::new()
    }
}
