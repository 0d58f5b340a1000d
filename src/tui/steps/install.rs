//! The Install screen's state: the form, then the running machine's console and screen.

use super::run::StepRun;
use crate::engine::install::InstallOutcome;
use crate::engine::session::Choices;
use crate::engine::task::Level;
use crate::tui::widgets::form::{Field, Form};

pub struct InstallScreen {
    pub form: Form,
    pub run: StepRun,
}

impl InstallScreen {
    pub fn new() -> InstallScreen {
        InstallScreen {
            form: Form::new(vec![
                Field::path("disk", "Disk", ""),
                Field::path("iso", "ISO", ""),
                Field::path("sha256", "SHA-256", ""),
                Field::button("Boot installer"),
            ]),
            run: StepRun::default(),
        }
    }

    /// The choices this form makes, to carry and record.
    pub fn choices(&self) -> Choices {
        let optional = |key: &str| Some(self.form.text(key)).filter(|t| !t.is_empty());
        Choices {
            iso: optional("iso").map(Into::into),
            iso_checksum: optional("sha256"),
            ..Choices::default()
        }
    }

    pub fn fill(&mut self, choices: &Choices) {
        if let Some(iso) = &choices.iso {
            self.form.set_text("iso", &iso.display().to_string());
        }
        if let Some(sum) = &choices.iso_checksum {
            self.form.set_text("sha256", sum);
        }
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
                    match crate::engine::iso::validate(std::path::Path::new(&iso)) {
                        Ok(()) => (Level::Info, "bootable ISO 9660 image".into()),
                        Err(e) => (Level::Warn, e.to_string()),
                    },
                )
            }
            "sha256" => Some((
                Level::Info,
                "optional: 64 hex digits or a SHA256SUMS file".into(),
            )),
            _ => None,
        }
    }
}

impl Default for InstallScreen {
    fn default() -> Self {
        Self::new()
    }
}
