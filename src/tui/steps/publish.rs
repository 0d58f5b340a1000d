//! The Publish screen: where to, under which name, and what to do on the way.

use std::path::PathBuf;

use super::run::StepRun;
use crate::engine::config::Settings;
use crate::engine::publish::{
    self, Compaction, PublishError, PublishRequest, PublishTarget, Token,
};
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

    /// The engine request; the token comes from the field, else the environment or token file.
    pub fn request(&self, config_dir: Option<PathBuf>) -> Result<PublishRequest, PublishError> {
        let form = &self.form;
        let optional = |key: &str| {
            let text = form.text(key);
            (!text.is_empty()).then_some(text)
        };
        let replace = form.checked("replace");
        let target = match form.choice("target") {
            "offline" => PublishTarget::Offline {
                driver_conf: optional("driver-conf")
                    .map(PathBuf::from)
                    .or_else(publish::default_driver_conf)
                    .unwrap_or_default(),
                namespace: optional("namespace"),
                base: false,
                replace,
            },
            "srht" => {
                let release = form.text("release");
                let (distro, release) = release.split_once('/').unwrap_or((release.as_str(), ""));
                PublishTarget::Srht {
                    root: PathBuf::from(form.text("root")),
                    distro: distro.to_string(),
                    release: release.to_string(),
                    arch: "x86_64".into(),
                    replace,
                }
            }
            _ => PublishTarget::Djinn {
                url: form.text("url"),
                namespace: optional("namespace"),
                token: match Token::new(&form.raw("token")) {
                    Some(token) => token,
                    None => publish::load_token(config_dir.as_deref())?,
                },
            },
        };
        Ok(PublishRequest {
            image: PathBuf::from(form.text("disk")),
            name: optional("name"),
            target,
            compact: form.checked("compact").then_some(Compaction {
                compress: form.checked("compress"),
            }),
            sha256: form.checked("sha256"),
        })
    }
}
