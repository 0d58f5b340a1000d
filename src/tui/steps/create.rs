//! The Create screen's state: the form, inline hints, what the last run said.

use std::path::PathBuf;

use crate::engine::config::Settings;
use crate::engine::image::{self, ImageInfo, image_name_problem, parse_size};
use crate::engine::task::{Level, Progress};
use crate::tui::widgets::form::{Field, Form};

/// The Create screen: its form, what the last run said, and its result.
#[derive(Debug, Clone)]
pub struct CreateScreen {
    pub form: Form,
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
            form: Form::new(vec![
                Field::text("path", "Path", &path.display().to_string()),
                Field::text("size", "Size", "10G"),
                Field::check("overwrite", "replace an existing file"),
                Field::button("Create"),
            ]),
            log: Vec::new(),
            progress: None,
            error: None,
            result: None,
        }
    }

    /// The hint under a field while typing: the size as understood, the path's problems.
    pub fn hint(&self, key: &str) -> Option<(Level, String)> {
        match key {
            "path" => Some(self.path_message().unwrap_or((Level::Info, String::new()))),
            "size" => Some(self.size_message()),
            _ => None,
        }
    }

    fn size_message(&self) -> (Level, String) {
        match parse_size(&self.form.raw("size")) {
            Err(e) => (Level::Warn, e),
            Ok(size) if size.bytes() > image::RECOMMENDED_MAX_SIZE => {
                (Level::Warn, format!("{size}: above the recommended 20 GB"))
            }
            Ok(size) => (
                Level::Info,
                format!("{size}, allocated as the guest writes"),
            ),
        }
    }

    /// Hints about the path as typed: an existing file, a name Djinn would refuse.
    fn path_message(&self) -> Option<(Level, String)> {
        let text = self.form.text("path");
        let path = PathBuf::from(&text);
        if text.is_empty() {
            return Some((Level::Warn, "type where the image should go".into()));
        }
        if path.is_dir() {
            return Some((Level::Warn, "that is a directory; add a file name".into()));
        }
        if path.exists() {
            let note = if self.form.checked("overwrite") {
                "exists and will be replaced"
            } else {
                "exists; creating will ask before replacing it"
            };
            return Some((Level::Warn, note.into()));
        }
        image_name_problem(&path).map(|p| (Level::Warn, p))
    }
}
