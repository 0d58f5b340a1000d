//! The Verify screen: which driver to imitate; then the checklist as it fills in.

use std::path::PathBuf;
use std::time::Duration;

use super::run::StepRun;
use crate::engine::driver::DriverProfile;
use crate::engine::host::Accelerator;
use crate::engine::verify::VerifyRequest;
use crate::tui::widgets::form::{Field, Form};

pub struct VerifyScreen {
    pub form: Form,
    pub run: StepRun,
}

impl VerifyScreen {
    pub fn new() -> VerifyScreen {
        VerifyScreen {
            form: Form::new(vec![
                Field::text("disk", "Disk", ""),
                Field::choice("profile", "Driver", vec!["djinn", "srht"]),
                Field::check("static", "static checks only (no boot)"),
                Field::button("Check"),
            ]),
            run: StepRun::default(),
        }
    }

    pub fn request(&self, accelerator: Accelerator, record_dir: Option<PathBuf>) -> VerifyRequest {
        let form = &self.form;
        let profile = match form.choice("profile") {
            "srht" => DriverProfile::srht(accelerator),
            _ => DriverProfile::djinn(accelerator),
        };
        VerifyRequest {
            image: PathBuf::from(form.text("disk")),
            profile: (!form.checked("static")).then_some(profile),
            deadline: Duration::from_secs(300),
            record_dir,
        }
    }
}

impl Default for VerifyScreen {
    fn default() -> Self {
        Self::new()
    }
}
