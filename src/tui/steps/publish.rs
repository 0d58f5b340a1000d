//! The Publish screen: where to, under which name, and what to do on the way.

use std::path::PathBuf;

use super::run::StepRun;
use crate::engine::host::config::Settings;
use crate::engine::session::Choices;
use crate::engine::steps::publish::{
    Namespace, NamespaceError, RemotePath, RemotePathError, TargetKind, Token,
};
use crate::engine::task::Level;
use crate::engine::workflow::Secrets;
use crate::tui::widgets::form::{Field, Form, FormProblem};

pub struct PublishScreen {
    pub form: Form,
    pub run: StepRun,
    /// The config file's `[djinn]` URL and namespace: what an empty field means (the engine
    /// fills them in when the step runs; the form only says so).
    config_url: Option<String>,
    config_namespace: Option<Namespace>,
}

impl PublishScreen {
    pub fn new(settings: &Settings) -> PublishScreen {
        PublishScreen {
            form: Form::new(vec![
                Field::path("disk", "Disk", ""),
                Field::choice("target", "To", vec!["djinn", "offline", "srht", "rsync"]),
                Field::text("dest", "Destination", "").only_for("target", &["rsync"]),
                Field::text("name", "Name", "").only_for("target", &["djinn", "offline", "rsync"]),
                Field::text("namespace", "Namespace", "").only_for("target", &["djinn", "offline"]),
                Field::text("url", "Djinn URL", "").only_for("target", &["djinn"]),
                Field::secret("token", "Token").only_for("target", &["djinn"]),
                Field::path("driver-conf", "Runner cf", "").only_for("target", &["offline"]),
                Field::path("root", "srht root", "").only_for("target", &["srht"]),
                Field::text("release", "Release", "debian/12").only_for("target", &["srht"]),
                Field::check("compact", "compact (qemu-img convert)"),
                Field::check("compress", "compress while compacting (-c)"),
                Field::check("sha256", "write NAME.sha256"),
                Field::check("replace", "replace an existing image")
                    .only_for("target", &["offline", "srht", "rsync"]),
                Field::button("Publish"),
            ]),
            run: StepRun::default(),
            config_url: settings.djinn_url.clone(),
            config_namespace: settings.djinn_namespace.clone(),
        }
    }

    /// What the form holds that cannot be published as it is (a namespace or a destination
    /// that is not one): the step is not started, and the message is the one every frontend
    /// gives.
    pub fn problem(&self) -> Option<FormProblem> {
        if self.form.choice("target") == TargetKind::Rsync.name() {
            return match self.dest() {
                Ok(Some(_)) => None,
                Ok(None) => Some(FormProblem::missing(
                    "dest",
                    "the destination",
                    "type user@host:/dir/ (the image keeps its name) or user@host:/dir/FILE",
                )),
                Err(error) => Some(FormProblem::new(
                    "dest",
                    "a valid destination",
                    error.to_string(),
                )),
            };
        }
        let error = self.namespace().err()?;
        Some(FormProblem::new(
            "namespace",
            "a valid namespace",
            error.to_string(),
        ))
    }

    /// The Destination field, parsed; empty is none.
    fn dest(&self) -> Result<Option<RemotePath>, RemotePathError> {
        let text = self.form.text("dest");
        match text.is_empty() {
            true => Ok(None),
            false => text.parse().map(Some),
        }
    }

    /// The Namespace field, parsed; empty is none.
    fn namespace(&self) -> Result<Option<Namespace>, NamespaceError> {
        let text = self.form.text("namespace");
        match text.is_empty() {
            true => Ok(None),
            false => text.parse().map(Some),
        }
    }

    /// The choices this form makes, to carry and record (the token is not one).
    pub fn choices(&self) -> Choices {
        let form = &self.form;
        let optional = |key: &str| Some(form.text(key)).filter(|t| !t.is_empty());
        Choices {
            target: TargetKind::from_name(form.choice("target")),
            name: optional("name"),
            namespace: self.namespace().ok().flatten(),
            url: optional("url"),
            driver_conf: optional("driver-conf").map(PathBuf::from),
            root: optional("root").map(PathBuf::from),
            release: optional("release"),
            dest: self.dest().ok().flatten(),
            compact: Some(form.checked("compact")),
            compress: Some(form.checked("compress")),
            sha256: Some(form.checked("sha256")),
            replace: Some(form.checked("replace")),
            ..Choices::default()
        }
    }

    /// The hint under a field: what an empty field means, and how to fill it.
    pub fn hint(&self, key: &str) -> Option<(Level, String)> {
        let empty = self.form.text(key).is_empty();
        let rsync = self.form.choice("target") == TargetKind::Rsync.name();
        match key {
            "name"
                if rsync
                    && self
                        .dest()
                        .ok()
                        .flatten()
                        .is_some_and(|d| !d.is_directory()) =>
            {
                Some((
                    Level::Info,
                    "not used: the destination names the file".into(),
                ))
            }
            "name" if empty && rsync => {
                let disk = PathBuf::from(self.form.text("disk"));
                let stem = disk.file_stem()?.to_string_lossy().into_owned();
                Some((
                    Level::Info,
                    format!("empty: a directory destination gets `{stem}.qcow2`"),
                ))
            }
            "name" if empty => {
                let disk = PathBuf::from(self.form.text("disk"));
                let stem = disk.file_stem()?.to_string_lossy().into_owned();
                Some((
                    Level::Info,
                    format!("empty: published as `{stem}` (the file name)"),
                ))
            }
            "url" if empty => Some(match &self.config_url {
                Some(url) => (Level::Info, format!("empty: {url}, from config.toml")),
                None => (
                    Level::Warn,
                    "the Djinn API base URL, or `url` under [djinn] in config.toml".into(),
                ),
            }),
            "namespace" => match (self.namespace(), &self.config_namespace) {
                (Err(error), _) => Some((Level::Warn, error.to_string())),
                (Ok(None), Some(namespace)) => Some((
                    Level::Info,
                    format!("empty: {namespace}, from config.toml (Djinn)"),
                )),
                (Ok(_), _) => None,
            },
            "dest" => match self.dest() {
                Err(error) => Some((Level::Warn, error.to_string())),
                Ok(None) => Some((
                    Level::Info,
                    "user@host:/dir/ over your ssh (~/.ssh/config, agent, known_hosts)".into(),
                )),
                Ok(Some(_)) => None,
            },
            "token" if self.form.raw("token").is_empty() => Some((
                Level::Info,
                "empty: from KILN_DJINN_TOKEN or ~/.config/kiln/djinn-token (mode 0600)".into(),
            )),
            _ => None,
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
            (
                "namespace",
                choices.namespace.as_ref().map(ToString::to_string),
            ),
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
            ("dest", choices.dest.as_ref().map(ToString::to_string)),
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
