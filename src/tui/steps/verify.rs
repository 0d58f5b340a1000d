//! The Verify screen: which driver to imitate; then the checklist as it fills in.

use super::run::StepRun;
use crate::engine::driver::Profile;
use crate::engine::session::Choices;
use crate::tui::widgets::form::{Field, Form};

pub struct VerifyScreen {
    pub form: Form,
    pub run: StepRun,
}

impl VerifyScreen {
    pub fn new() -> VerifyScreen {
        VerifyScreen {
            form: Form::new(vec![
                Field::path("disk", "Disk", ""),
                Field::choice("profile", "Driver", vec!["djinn", "srht"]),
                Field::check("static", "static checks only (no boot)"),
                Field::button("Check"),
            ]),
            run: StepRun::default(),
        }
    }

    /// The choices this form makes, to carry and record.
    pub fn choices(&self) -> Choices {
        Choices {
            profile: Profile::from_name(self.form.choice("profile")),
            ..Choices::default()
        }
    }

    pub fn fill(&mut self, choices: &Choices) {
        if let Some(profile) = &choices.profile {
            self.form.set_choice("profile", profile.name());
        }
    }

    /// Static checks only: quick, but not a verify the flow can publish on.
    pub fn static_only(&self) -> bool {
        self.form.checked("static")
    }
}

impl Default for VerifyScreen {
    fn default() -> Self {
        Self::new()
    }
}
