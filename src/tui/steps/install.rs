//! The Install screen's state: the form, then the running machine's console and screen.

use super::machine_pane::MachinePane;
use crate::engine::install::InstallOutcome;
use crate::engine::task::{Level, Progress};
use crate::tui::widgets::form::{Field, Form};

pub struct InstallScreen {
    pub form: Form,
    pub log: Vec<(Level, String)>,
    pub progress: Option<Progress>,
    pub error: Option<String>,
    pub outcome: Option<InstallOutcome>,
    pub machine: MachinePane,
}

impl InstallScreen {
    pub fn new() -> InstallScreen {
        InstallScreen {
            form: Form::new(vec![
                Field::text("disk", "Disk", ""),
                Field::text("iso", "ISO", ""),
                Field::text("sha256", "SHA-256", ""),
                Field::button("Boot installer"),
            ]),
            log: Vec::new(),
            progress: None,
            error: None,
            outcome: None,
            machine: MachinePane::default(),
        }
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
