//! The Install screen's state: the form, then the running machine's console and screen.

use crossterm::event::{KeyCode, KeyEvent};

use super::machine_pane::MachinePane;
use crate::engine::install::InstallOutcome;
use crate::engine::task::{Level, Progress};
use crate::tui::widgets::text_field::TextField;

/// The fields of the Install form, in Tab order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallField {
    Image,
    Iso,
    Sha256,
    Button,
}

impl InstallField {
    const ORDER: [InstallField; 4] = [
        InstallField::Image,
        InstallField::Iso,
        InstallField::Sha256,
        InstallField::Button,
    ];

    fn step(self, forward: bool) -> InstallField {
        let i = Self::ORDER.iter().position(|f| *f == self).unwrap_or(0);
        let n = Self::ORDER.len();
        Self::ORDER[if forward {
            (i + 1) % n
        } else {
            (i + n - 1) % n
        }]
    }
}

pub struct InstallScreen {
    pub image: TextField,
    pub iso: TextField,
    pub sha256: TextField,
    pub field: InstallField,
    pub log: Vec<(Level, String)>,
    pub progress: Option<Progress>,
    pub error: Option<String>,
    pub outcome: Option<InstallOutcome>,
    pub machine: MachinePane,
}

impl InstallScreen {
    pub fn new() -> InstallScreen {
        InstallScreen {
            image: TextField::new(""),
            iso: TextField::new(""),
            sha256: TextField::new(""),
            field: InstallField::Image,
            log: Vec::new(),
            progress: None,
            error: None,
            outcome: None,
            machine: MachinePane::default(),
        }
    }

    /// Form keys; `true` from Enter means "start the install".
    pub fn handle_form_key(&mut self, key: KeyEvent) -> bool {
        match key.code {
            KeyCode::Tab | KeyCode::Down => self.field = self.field.step(true),
            KeyCode::BackTab | KeyCode::Up => self.field = self.field.step(false),
            KeyCode::Enter => return true,
            _ => {
                let field = match self.field {
                    InstallField::Image => &mut self.image,
                    InstallField::Iso => &mut self.iso,
                    InstallField::Sha256 => &mut self.sha256,
                    InstallField::Button => return false,
                };
                field.edit(key);
            }
        }
        false
    }

    /// Hint under the ISO field while typing.
    pub fn iso_message(&self) -> Option<(Level, String)> {
        let iso = self.iso.value.trim();
        if iso.is_empty() {
            return Some((Level::Warn, "path of the installer ISO to boot".into()));
        }
        match crate::engine::iso::validate(std::path::Path::new(iso)) {
            Ok(()) => Some((Level::Info, "bootable ISO 9660 image".into())),
            Err(e) => Some((Level::Warn, e.to_string())),
        }
    }
}

impl Default for InstallScreen {
    fn default() -> Self {
        Self::new()
    }
}
