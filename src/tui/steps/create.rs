//! The Create screen's state: the form, inline hints, what the last run said.

use std::path::PathBuf;

use crossterm::event::{KeyCode, KeyEvent};

use crate::engine::config::Settings;
use crate::engine::image::{self, ImageInfo, image_name_problem, parse_size};
use crate::engine::task::{Level, Progress};
use crate::tui::widgets::text_field::TextField;

/// The fields of the Create form, in Tab order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateField {
    Path,
    Size,
    Overwrite,
    Button,
}

impl CreateField {
    const ORDER: [CreateField; 4] = [
        CreateField::Path,
        CreateField::Size,
        CreateField::Overwrite,
        CreateField::Button,
    ];

    fn step(self, forward: bool) -> CreateField {
        let i = Self::ORDER.iter().position(|f| *f == self).unwrap_or(0);
        let n = Self::ORDER.len();
        Self::ORDER[if forward {
            (i + 1) % n
        } else {
            (i + n - 1) % n
        }]
    }
}

/// The Create screen: its form, what the last run said, and its result.
#[derive(Debug, Clone)]
pub struct CreateScreen {
    pub path: TextField,
    pub size: TextField,
    pub overwrite: bool,
    pub field: CreateField,
    /// Log lines of the current or last run.
    pub log: Vec<(Level, String)>,
    pub progress: Option<Progress>,
    pub error: Option<String>,
    pub result: Option<ImageInfo>,
}

impl CreateScreen {
    pub fn new(settings: &Settings) -> CreateScreen {
        let path = settings.image_dir.join("my-image.qcow2");
        CreateScreen {
            path: TextField::new(path.display().to_string()),
            size: TextField::new("10G"),
            overwrite: false,
            field: CreateField::Path,
            log: Vec::new(),
            progress: None,
            error: None,
            result: None,
        }
    }

    /// Problems with the size as typed, shown under the field while typing.
    pub fn size_message(&self) -> Option<(Level, String)> {
        match parse_size(&self.size.value) {
            Err(e) => Some((Level::Warn, e)),
            Ok(size) if size.bytes() > image::RECOMMENDED_MAX_SIZE => {
                Some((Level::Warn, format!("{size}: above the recommended 20 GB")))
            }
            Ok(size) => Some((
                Level::Info,
                format!("{size}, allocated as the guest writes"),
            )),
        }
    }

    /// Hints about the path as typed: an existing file, a name Djinn would refuse.
    pub fn path_message(&self) -> Option<(Level, String)> {
        let path = PathBuf::from(&self.path.value);
        if self.path.value.trim().is_empty() {
            return Some((Level::Warn, "type where the image should go".into()));
        }
        if path.is_dir() {
            return Some((Level::Warn, "that is a directory; add a file name".into()));
        }
        if path.exists() {
            let note = if self.overwrite {
                "exists and will be replaced"
            } else {
                "exists; creating will ask before replacing it"
            };
            return Some((Level::Warn, note.into()));
        }
        image_name_problem(&path).map(|p| (Level::Warn, p))
    }
}

impl CreateScreen {
    /// Keys while the form has focus; `true` from Enter means "run the step".
    pub fn handle_key(&mut self, key: KeyEvent) -> bool {
        match key.code {
            KeyCode::Tab | KeyCode::Down => self.field = self.field.step(true),
            KeyCode::BackTab | KeyCode::Up => self.field = self.field.step(false),
            KeyCode::Enter => return true,
            _ => match self.field {
                CreateField::Path => {
                    self.path.edit(key);
                }
                CreateField::Size => {
                    self.size.edit(key);
                }
                CreateField::Overwrite if key.code == KeyCode::Char(' ') => {
                    self.overwrite = !self.overwrite
                }
                _ => {}
            },
        }
        false
    }
}
