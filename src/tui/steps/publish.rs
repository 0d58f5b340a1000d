//! The Publish screen: where to, under which name, and what to do on the way.

use std::path::PathBuf;

use super::run::StepRun;
use crate::engine::config::Settings;
use crate::engine::publish::{TargetKind, Token};
use crate::engine::session::Choices;
use crate::engine::workflow::Secrets;
use crate::tui::widgets::form::{Field, Form};

pub struct PublishScreen {
    pub form: Form,
    pub run: StepRun,
}

impl PublishScreen {
    pub fn new(settings: &Settings) -> PublishScreen {
        PublishScreen {
            form: Form::new(vec![
                Field::text("disk", "Disk", ""),
                Field::choice("target", "To", vec!["djinn", "offline", "srht"]),
                Field::text("name", "Name", ""),
                Field::text(
                    "namespace",
                    "Namespace",
                    settings.djinn_namespace.as_deref().unwrap_or(""),
                ),
                Field::text(
                    "url",
                    "Djinn URL",
                    settings.djinn_url.as_deref().unwrap_or(""),
                ),
                Field::secret("token", "Token"),
                Field::text("driver-conf", "Runner cf", ""),
                Field::text("root", "srht root", ""),
                Field::text("release", "Release", "debian/12"),
                Field::check("compact", "compact (qemu-img convert)"),
                Field::check("compress", "compress while compacting (-c)"),
                Field::check("sha256", "write NAME.sha256"),
                Field::check("replace", "replace an existing image (local targets)"),
                Field::button("Publish"),
            ]),
            run: StepRun::default(),
        }
    }

    /// The choices this form makes, to carry and record (the token is not one).
    pub fn choices(&self) -> Choices {
        let form = &self.form;
        let optional = |key: &str| Some(form.text(key)).filter(|t| !t.is_empty());
        Choices {
            target: TargetKind::from_name(form.choice("target")),
            name: optional("name"),
            namespace: optional("namespace"),
            url: optional("url"),
            driver_conf: optional("driver-conf").map(PathBuf::from),
            root: optional("root").map(PathBuf::from),
            release: optional("release"),
            compact: Some(form.checked("compact")),
            compress: Some(form.checked("compress")),
            sha256: Some(form.checked("sha256")),
            replace: Some(form.checked("replace")),
            ..Choices::default()
        }
    }

    /// The token typed this time, if any (else the environment or the token file).
    pub fn secrets(&self) -> Secrets {
        Secrets {
            token: Token::new(&self.form.raw("token")),
            ..Secrets::default()
        }
    }

    pub fn fill(&mut self, choices: &Choices) {
        let form = &mut self.form;
        if let Some(target) = &choices.target {
            form.set_choice("target", target.name());
        }
        for (field, value) in [
            ("name", choices.name.clone()),
            ("namespace", choices.namespace.clone()),
            ("url", choices.url.clone()),
            (
                "driver-conf",
                choices
                    .driver_conf
                    .as_ref()
                    .map(|p| p.display().to_string()),
            ),
            (
                "root",
                choices.root.as_ref().map(|p| p.display().to_string()),
            ),
            ("release", choices.release.clone()),
        ] {
            if let Some(value) = value {
                form.set_text(field, &value);
            }
        }
        for (field, value) in [
            ("compact", choices.compact),
            ("compress", choices.compress),
            ("sha256", choices.sha256),
            ("replace", choices.replace),
        ] {
            if let Some(on) = value {
                form.set_checked(field, on);
            }
        }
    }
}
