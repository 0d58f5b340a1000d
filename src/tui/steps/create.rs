//! The Create screen's state: the form, inline hints, what the last run said.

use std::path::PathBuf;

use super::run::StepRun;
use crate::engine::host::config::Settings;
use crate::engine::session::Choices;
use crate::engine::steps::image::{self, DiskSize, ImageInfo, ImageSize, image_name_problem};
use crate::engine::task::Level;
use crate::engine::units::human_bytes;
use crate::tui::widgets::form::{Field, Form, FormProblem};

/// The Create screen: its form and what the last run said.
#[derive(Clone)]
pub struct CreateScreen {
    pub form: Form,
    pub run: StepRun,
}

impl CreateScreen {
    pub fn new(settings: &Settings) -> CreateScreen {
        let path = settings.image_dir.join("my-image.qcow2");
        CreateScreen {
            form: Form::new(vec![
                Field::path("path", "Path", &path.display().to_string()),
                Field::text("size", "Size", "10G"),
                Field::check("overwrite", "replace an existing file"),
                Field::button("Create"),
            ]),
            run: StepRun::default(),
        }
    }

    /// The choices this form makes, to carry and record.
    pub fn choices(&self) -> Choices {
        Choices {
            size: self.form.text("size").parse().ok(),
            ..Choices::default()
        }
    }

    /// Pre-fill from a session: the image it is about and the size chosen then.
    pub fn fill(&mut self, image: &str, choices: &Choices) {
        self.form.set_text("path", image);
        if let Some(size) = &choices.size {
            self.form.set_text("size", &size.to_string());
        }
    }

    /// The result panel's lines for a created image.
    pub fn outcome(info: &ImageInfo) -> Vec<String> {
        vec![
            "image created".into(),
            format!("path     {}", info.path.display()),
            format!("format   {}", info.format),
            format!(
                "compat   {} (qcow2 v3)",
                info.compat.as_deref().unwrap_or("unknown")
            ),
            format!("virtual  {}", human_bytes(info.virtual_size)),
            format!("on disk  {}", human_bytes(info.actual_size)),
            "Next: Install (an installer or a cloud image onto this disk) — press n.".into(),
        ]
    }

    /// The hint under a field while typing: the size as understood, the path's problems.
    pub fn hint(&self, key: &str) -> Option<(Level, String)> {
        match key {
            "path" => Some(self.path_message().unwrap_or((Level::Info, String::new()))),
            "size" => Some(self.size_message()),
            _ => None,
        }
    }

    /// What the form holds that create would refuse (a size that is not one): the step is not
    /// started, and the message is the one every frontend gives.
    pub fn problem(&self) -> Option<FormProblem> {
        let error = self.size().err()?;
        Some(FormProblem::new("size", "a size", error))
    }

    fn size(&self) -> Result<ImageSize, String> {
        let size: DiskSize = self.form.raw("size").parse()?;
        Ok(size.size())
    }

    fn size_message(&self) -> (Level, String) {
        match self.size() {
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
