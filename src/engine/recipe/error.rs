//! Why a recipe cannot be used, and where: each problem is placed at its line and column in
//! the file, or at the `--var` that set it, and labelled with its key as the format writes it.

use std::fmt::Display;
use std::ops::Range;
use std::path::PathBuf;

use toml::Spanned;
use toml::de::DeValue;

use super::Reader;
use crate::engine::host::config::toml_problem;
use crate::engine::steps::install::boot_command::edit_distance;

/// Why a recipe cannot be used; each names the file and, when it has one, the place.
#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    #[error("cannot read the recipe {}: {source}", .file.display())]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    /// `place` is `line L, column C` or `--var KEY`.
    #[error("{}, {place}: {problem}", .file.display())]
    At {
        file: PathBuf,
        place: String,
        problem: String,
    },
    #[error("{}: {problem}", .file.display())]
    Whole { file: PathBuf, problem: String },
    /// What the person must supply and has not — files the recipe names, variables it reads
    /// — all of it, each as `(place, problem)`.
    #[error("{}", missing_message(.file, .missing))]
    Missing {
        file: PathBuf,
        missing: Vec<(String, String)>,
    },
}

/// One item as any other placed problem; several as a list under one line.
fn missing_message(file: &std::path::Path, missing: &[(String, String)]) -> String {
    let file = file.display();
    match missing {
        [(place, problem)] => format!("{file}, {place}: {problem}"),
        items => {
            let lines: Vec<String> = (items.iter())
                .map(|(place, problem)| format!("\n  {place}: {problem}"))
                .collect();
            let count = items.len();
            format!(
                "{file}: {count} things it needs are not there yet:{}",
                lines.concat()
            )
        }
    }
}

/// What a check gives: the value, or why the recipe cannot be used.
pub(super) type Checked<T> = Result<T, RecipeError>;

impl<'a> Reader<'a> {
    /// `line L, column C`, or the `--var` that set what is there.
    fn place(&self, offset: usize) -> String {
        let var = offset.checked_sub(self.text.len() + 1);
        if let Some((key, _)) = var.and_then(|index| self.vars.get(index)) {
            return format!("--var {key}");
        }
        let before = &self.text[..offset.min(self.text.len())];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let line = before.matches('\n').count() + 1;
        let column = before[line_start..].chars().count() + 1;
        format!("line {line}, column {column}")
    }

    /// The value at `key`, or the nearest table around it, and whether `key` is written.
    pub(super) fn find(&self, key: &str) -> (&Spanned<DeValue<'a>>, bool) {
        let mut node = &self.tree;
        for name in key.split('.') {
            let child = match node.get_ref() {
                DeValue::Table(table) => table.get(name),
                DeValue::Array(items) => name.parse().ok().and_then(|i: usize| items.get(i)),
                _ => None,
            };
            match child {
                Some(child) => node = child,
                None => return (node, false),
            }
        }
        (node, true)
    }

    /// Where `key`'s value is written, or the nearest table around it.
    pub(super) fn span(&self, key: &str) -> Range<usize> {
        self.find(key).0.span()
    }

    /// A problem with `key`, placed at its value.
    pub(super) fn error(&self, key: &str, problem: impl Display) -> RecipeError {
        self.error_at(self.span(key).start, key, problem)
    }

    /// Something the person must supply for `key` and has not: noted, so that reading goes
    /// on and one message lists everything missing.
    pub(super) fn missing(&self, key: &str, problem: impl Display) {
        let offset = self.span(key).start;
        let problem = format!("{}: {problem}", label(key));
        self.missing
            .borrow_mut()
            .push((offset, self.place(offset), problem));
    }

    /// A problem with `key`, placed at `offset` in the text.
    pub(super) fn error_at(&self, offset: usize, key: &str, problem: impl Display) -> RecipeError {
        RecipeError::At {
            file: self.file.to_path_buf(),
            place: self.place(offset),
            problem: format!("{}: {problem}", label(key)),
        }
    }

    /// A TOML or format error, placed and worded by [`toml_problem`] (which never quotes
    /// the line or a string value), with a hint for an unknown name.
    pub(super) fn toml_error(&self, error: &toml::de::Error) -> RecipeError {
        let file = self.file.to_path_buf();
        let in_var = error.span().is_some_and(|s| s.start > self.text.len());
        // toml_problem places by the text; a --var's span is past its end, so it gets none
        // and only its wording is kept.
        let problem = toml_problem(if in_var { "" } else { self.text }, error);
        let hint = unknown_name_hint(error.message()).map_or(String::new(), |h| format!("; {h}"));
        match (error.span(), problem.split_once(": ")) {
            (Some(span), Some((place, message))) => RecipeError::At {
                file,
                place: match in_var {
                    true => self.place(span.start),
                    false => place.to_string(),
                },
                problem: format!("{message}{hint}"),
            },
            _ => RecipeError::Whole {
                file,
                problem: format!("{problem}{hint}"),
            },
        }
    }
}

/// `install.iso` as `[install] iso`, `provision.0.upload` as `[[provision]] #1 upload`.
fn label(key: &str) -> String {
    let mut names = key.splitn(3, '.');
    match (names.next(), names.next(), names.next()) {
        (Some(table), Some(index), rest) if index.parse::<usize>().is_ok() => {
            let number = index.parse::<usize>().unwrap_or_default() + 1;
            let rest = rest.map(|r| format!(" {r}")).unwrap_or_default();
            format!("[[{table}]] #{number}{rest}")
        }
        (Some(table), Some(name), rest) => {
            let rest = rest.map(|r| format!(".{r}")).unwrap_or_default();
            format!("[{table}] {name}{rest}")
        }
        (Some("base"), None, _) => "[base]".to_string(),
        _ => key.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Hints

/// The keys a secret would be written under, and where it comes from instead.
const SECRET_KEYS: [(&str, &str); 3] = [
    (
        "password",
        "password_file = \"FILE\" or password_env = \"VAR\"",
    ),
    (
        "passphrase",
        "passphrase_file = \"FILE\" or passphrase_env = \"VAR\"",
    ),
    (
        "token",
        "token_env = \"VAR\", or none for kiln's usual token",
    ),
];

/// For serde's "unknown field `x`, expected one of `a`, `b`" (or variant): where a secret
/// goes instead, or the known name closest to the one written.
fn unknown_name_hint(message: &str) -> Option<String> {
    let rest = (message.strip_prefix("unknown field `"))
        .or_else(|| message.strip_prefix("unknown variant `"))?;
    let mut names = rest.split('`').step_by(2);
    let written = names.next()?;
    if let Some((key, instead)) = SECRET_KEYS.iter().find(|(key, _)| *key == written) {
        return Some(format!("a {key} is never written in a recipe: {instead}"));
    }
    let (distance, closest) = names
        .filter(|name| !name.is_empty())
        .map(|name| (edit_distance(written, name), name))
        .min()?;
    (distance <= 2 && distance < written.len()).then(|| format!("did you mean `{closest}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::recipe::Recipe;
    use crate::engine::recipe::test_fixture::{Fixture, MINIMAL, assert_has};

    #[test]
    fn an_unknown_key_is_placed_and_named_with_a_suggestion() {
        let fixture = Fixture::new();
        let error = fixture.error("name = \"ci\"\ncolour = 1\n[install]\niso = \"debian.iso\"\n");
        assert_has(
            &error,
            &["recipe.toml, line 2, column 1 (`colour`): unknown field `colour`"],
        );
        let error = fixture.error(&format!("{MINIMAL}timout = \"40m\"\n"));
        assert_has(
            &error,
            &[
                "line 4, column 1 (`timout`): unknown field `timout`",
                "did you mean `timeout`?",
            ],
        );
        let text = format!("{MINIMAL}[[provision]]\nshell = \"scripts/setup.sh\"\nenvs = {{}}\n");
        let error = fixture.error(&text);
        assert_has(
            &error,
            &["line 6, column 1 (`envs`): unknown field `envs`", "`env`?"],
        );
        let error = fixture.error(&format!("{MINIMAL}[verify]\nprofiles = [\"djin\"]\n"));
        assert_has(
            &error,
            &["line 5, column 13", "unknown variant `djin`", "`djinn`?"],
        );
    }

    #[test]
    fn a_secret_written_in_the_recipe_is_refused_without_echoing_it() {
        let fixture = Fixture::new();
        let text = format!("{MINIMAL}[configure]\npassword = \"hunter2-secret\"\n");
        let error = fixture.error(&text);
        assert_has(
            &error,
            &["line 5, column 1", "password_file", "password_env"],
        );
        assert!(!error.contains("hunter2"), "{error}");
        let text = format!("{MINIMAL}[[publish]]\nto = \"djinn\"\ntoken = \"djinn_tok_abc\"\n");
        let error = fixture.error(&text);
        assert_has(&error, &["line 6, column 1", "token_env"]);
        assert!(!error.contains("djinn_tok"), "{error}");
        // A password pasted where its file's name goes is not shown either.
        let text = format!("{MINIMAL}[configure]\npassword_file = \"hunter2-secret\"\n");
        let error = fixture.error(&text);
        assert_has(
            &error,
            &["line 5, column 17: [configure] password_file: the file does not exist"],
        );
        assert!(!error.contains("hunter2"), "{error}");
    }

    #[test]
    fn a_wrong_type_is_placed_without_quoting_the_value() {
        let fixture = Fixture::new();
        let error = fixture.error(&format!("{MINIMAL}http_port = \"eighty\"\n"));
        assert_has(
            &error,
            &["line 4, column 13 (`http_port`): invalid type: string \"…\", expected u16"],
        );
        assert!(!error.contains("eighty"), "{error}");
        let error = fixture.error("name = 5\n[install]\niso = \"debian.iso\"\n");
        assert_has(
            &error,
            &["line 1, column 8 (`name`): invalid type: integer `5`"],
        );
    }

    #[test]
    fn a_broken_file_is_placed_by_toml() {
        let fixture = Fixture::new();
        let error = fixture.error("name = \"ci\"\n[install\n");
        assert_has(&error, &["recipe.toml, line 2, column"]);
        let error = fixture.error("[install]\niso = \"debian.iso\"\n");
        assert_has(&error, &["missing field `name`"]);
        let missing = Recipe::load(&fixture.path("absent.toml"), &[]).unwrap_err();
        assert_has(
            &missing.to_string(),
            &["cannot read the recipe", "absent.toml"],
        );
    }

    #[test]
    fn hints_for_unknown_names() {
        let hint = |m: &str| unknown_name_hint(m);
        assert_eq!(
            hint("unknown field `sise`, expected `size`").as_deref(),
            Some("did you mean `size`?")
        );
        assert_eq!(hint("unknown field `zzz`, expected `size`"), None);
        assert_eq!(hint("unknown field `x`, there are no fields"), None);
        assert!(
            hint("unknown field `token`, expected `to`")
                .unwrap()
                .contains("token_env")
        );
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(label("provision.0.upload"), "[[provision]] #1 upload");
        assert_eq!(label("publish.1"), "[[publish]] #2");
        assert_eq!(label("install.iso"), "[install] iso");
        assert_eq!(label("name"), "name");
    }
}
