//! Paths as a recipe writes them, made absolute and checked to exist, and the names of the
//! variables it reads.

use std::path::{Path, PathBuf};

use super::error::Checked;
use super::{Reader, Reading};

impl Reader<'_> {
    /// Relative to the recipe's directory; `~` and `~/…` in the home directory.
    fn path(&self, key: &str, written: &Path) -> Checked<PathBuf> {
        match (written.strip_prefix("~"), self.home) {
            (Ok(rest), Some(home)) => Ok(home.join(rest)),
            (Ok(_), None) => Err(self.error(key, "HOME is not set, so ~ means nothing")),
            (Err(_), _) if written.as_os_str().is_empty() => Err(self.error(key, "is empty")),
            (Err(_), _) => Ok(self.dir.join(written)),
        }
    }

    /// `written` made absolute, and an existing file. One that is not there is noted as
    /// missing ([`Reader::missing`]) and its path returned, so reading goes on.
    pub(super) fn file(&self, key: &str, written: &Path) -> Checked<PathBuf> {
        self.existing(key, written, true, Path::is_file, "a directory, not a file")
    }

    /// `written` made absolute, and an existing directory.
    pub(super) fn dir(&self, key: &str, written: &Path) -> Checked<PathBuf> {
        self.existing(key, written, true, Path::is_dir, "a file, not a directory")
    }

    /// A secret's file, named in no message: the person may have pasted the secret itself.
    pub(super) fn secret_file(&self, key: &str, written: &Path) -> Checked<PathBuf> {
        self.existing(key, written, false, Path::is_file, "not a file")
    }

    fn existing(
        &self,
        key: &str,
        written: &Path,
        shown: bool,
        is_right_kind: fn(&Path) -> bool,
        wrong_kind: &str,
    ) -> Checked<PathBuf> {
        let path = self.path(key, written)?;
        let named = match shown {
            true => format!("{} ", written.display()),
            false => "the file ".to_string(),
        };
        match (path.exists(), is_right_kind(&path)) {
            (_, true) => Ok(path),
            (true, false) => Err(self.error(key, format!("{named}is {wrong_kind}"))),
            (false, _) if path.starts_with(self.dir) => {
                let dir = self.dir.display();
                self.missing(key, format!("{named}does not exist (in {dir})"));
                Ok(path)
            }
            (false, _) => {
                self.missing(key, format!("{named}does not exist"));
                Ok(path)
            }
        }
    }

    /// A variable a secret is read from (`password_env`, `token_env`…): a valid name, and
    /// for a build about to start, set (else noted as missing).
    pub(super) fn secret_variable(&self, key: &str, name: &str) -> Checked<()> {
        self.env_name(key, name)?;
        if self.reading == Reading::ToBuild && std::env::var_os(name).is_none() {
            self.missing(key, format!("the variable {name} is not set"));
        }
        Ok(())
    }

    /// `name` must be a variable's: letters, digits and `_`, not starting with a digit.
    pub(super) fn env_name(&self, key: &str, name: &str) -> Checked<()> {
        let valid = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        match valid {
            true => Ok(()),
            false => Err(self.error(key, "a variable's name is letters, digits and `_`")),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::recipe::load;
    use crate::engine::recipe::test_fixture::{Fixture, MINIMAL, assert_has, install};

    #[test]
    fn paths_are_relative_to_the_recipe_and_tilde_is_home() {
        let fixture = Fixture::new();
        fixture.write("sub/recipe-files/my.iso", "x");
        let text = "name = \"ci\"\n[install]\niso = \"recipe-files/my.iso\"\n\
                    http_dir = \"../http\"\n[configure]\nkey = \"~/.ssh/id_ed25519\"\n";
        fixture.write("sub/recipe.toml", text);
        let recipe = load(
            &fixture.path("sub/recipe.toml"),
            &[],
            Some(&fixture.path("home")),
        )
        .unwrap();
        assert_eq!(
            install(&recipe).iso,
            Some(fixture.path("sub/recipe-files/my.iso"))
        );
        assert_eq!(install(&recipe).http_dir, Some(fixture.path("sub/../http")));
        assert_eq!(
            recipe.configure.key,
            Some(fixture.path("home/.ssh/id_ed25519"))
        );
        let absolute = fixture.path("debian.iso").display().to_string();
        let text = format!("name = \"ci\"\n[install]\niso = \"{absolute}\"\n");
        let recipe = fixture.load(&text, &[]).unwrap();
        assert_eq!(
            install(&recipe).iso.as_ref().unwrap().display().to_string(),
            absolute
        );
    }

    #[test]
    fn a_missing_file_is_placed_at_its_value() {
        let fixture = Fixture::new();
        let error = fixture.error("name = \"ci\"\n[install]\niso  =  \"debian-11.iso\"\n");
        let dir = fixture.dir.path().display().to_string();
        assert_has(
            &error,
            &[&format!(
                "recipe.toml, line 3, column 9: [install] iso: debian-11.iso does not exist (in {dir})"
            )],
        );
        let error = fixture.error(&format!("{MINIMAL}http_dir = \"debian.iso\"\n"));
        assert_has(
            &error,
            &["[install] http_dir: debian.iso is a file, not a directory"],
        );
        let error = fixture.error(&format!("{MINIMAL}iso_sha256 = \"SUMS\"\n"));
        assert_has(
            &error,
            &["line 4, column 14: [install] iso_sha256: SUMS does not exist"],
        );
        let error = fixture.error(&format!("{MINIMAL}iso_sha256 = \"abc123\"\n"));
        assert_has(
            &error,
            &["[install] iso_sha256: a SHA-256 is 64 hex digits, not 6"],
        );
        let error = fixture.error(&format!(
            "{MINIMAL}[post_build]\ncommand = \"scripts/setup.sh\"\n"
        ));
        assert_has(
            &error,
            &["line 5, column 11: [post_build] command:", "not executable"],
        );
        let error = fixture.error(&format!("{MINIMAL}[configure]\nkey = \"~/.ssh/id_rsa\"\n"));
        assert_has(&error, &["[configure] key: ~/.ssh/id_rsa does not exist"]);
    }
}
