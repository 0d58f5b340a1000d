//! A recipe's directory for the tests, with the files the examples name, and what the tests
//! check errors with.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use super::{Install, Recipe, RecipeError, Source, load};

/// A recipe's directory with the files the examples name, and a home directory.
pub(super) struct Fixture {
    pub(super) dir: tempfile::TempDir,
}

impl Fixture {
    pub(super) fn new() -> Fixture {
        let fixture = Fixture {
            dir: tempfile::tempdir().unwrap(),
        };
        for file in [
            "debian.iso",
            "debian-12-netinst.iso",
            "SHA256SUMS",
            "secrets/pw.txt",
            "files/motd",
            "scripts/setup.sh",
            "scripts/notify.sh",
            "base.qcow2",
            "home/.config/djinn/driver.conf",
            "home/.ssh/id_ed25519",
            "http/preseed.cfg",
        ] {
            fixture.write(file, "x\n");
        }
        let notify = fixture.path("scripts/notify.sh");
        std::fs::set_permissions(notify, std::fs::Permissions::from_mode(0o755)).unwrap();
        fixture
    }

    pub(super) fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    pub(super) fn write(&self, relative: &str, text: &str) {
        let path = self.path(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    pub(super) fn load(&self, text: &str, vars: &[(&str, &str)]) -> Result<Recipe, RecipeError> {
        self.write("recipe.toml", text);
        let vars: Vec<_> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        load(&self.path("recipe.toml"), &vars, Some(&self.path("home")))
    }

    pub(super) fn error(&self, text: &str) -> String {
        self.error_with(text, &[])
    }

    pub(super) fn error_with(&self, text: &str, vars: &[(&str, &str)]) -> String {
        match self.load(text, vars) {
            Ok(recipe) => panic!("loaded: {recipe:?}"),
            Err(error) => error.to_string(),
        }
    }
}

pub(super) const MINIMAL: &str = "name = \"ci\"\n[install]\niso = \"debian.iso\"\n";

pub(super) fn install(recipe: &Recipe) -> &Install {
    match &recipe.source {
        Source::Install(install) => install,
        Source::Base(base) => panic!("a base image: {base:?}"),
    }
}

pub(super) fn assert_has(error: &str, parts: &[&str]) {
    for part in parts {
        assert!(error.contains(part), "{part:?} not in: {error}");
    }
}
