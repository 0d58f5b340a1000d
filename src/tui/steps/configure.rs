//! The Configure screen: credentials from the install, the sshd_config variant, the clean-ups.

use std::path::PathBuf;

use super::run::StepRun;
use crate::engine::session::Choices;
use crate::engine::steps::configure::{Cleanup, CleanupOperation, SshdVariant};
use crate::engine::task::Level;
use crate::engine::workflow::Secrets;
use crate::tui::widgets::form::{Field, Form, FormProblem};

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
                // virt-sysprep's words, as `kiln configure --clean=` takes them.
                Field::text("clean", "Clean", "defaults"),
                Field::check("zero", "zero free space + fstrim (for compaction)"),
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
            cleanup: self.cleanup().ok(),
            ..Choices::default()
        }
    }

    /// The clean-ups typed, with the zero-free-space box.
    fn cleanup(&self) -> Result<Cleanup, String> {
        let mut cleanup = Cleanup::parse(&self.form.text("clean"))?;
        if self.form.checked("zero") {
            cleanup.insert(CleanupOperation::ZeroFreeSpace);
        }
        Ok(cleanup)
    }

    /// A clean-up list configure would refuse: the step is not started.
    pub fn problem(&self) -> Option<FormProblem> {
        let error = self.cleanup().err()?;
        Some(FormProblem::new("clean", "known clean-ups", error))
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

    /// The hint under a field: for a cloud image, that its login fields are not needed.
    pub fn hint(&self, key: &str, cloud_image: bool) -> Option<(Level, String)> {
        match key {
            "user" | "password" if cloud_image => Some((
                Level::Info,
                "not needed for a cloud image: kiln's own seed lets it in (once configured, \
                 root's empty password)"
                    .into(),
            )),
            _ => None,
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
        if let Some(cleanup) = &choices.cleanup {
            let zero = cleanup.contains(CleanupOperation::ZeroFreeSpace);
            let mut rest = cleanup.clone();
            rest.remove(CleanupOperation::ZeroFreeSpace);
            form.set_text("clean", &rest.written());
            form.set_checked("zero", zero);
        }
    }
}

impl Default for ConfigureScreen {
    fn default() -> Self {
        Self::new()
    }
}
