//! Semantic styles. Widgets ask for `theme.step(state)` or `theme.error()`, never for a colour.
//! Built-in themes are TOML files in `themes/`; a user file `~/.config/kiln/themes/NAME.toml`
//! overrides only the roles it names.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use ratatui::style::{Color, Modifier, Style};
use serde::Deserialize;

use crate::engine::session::StepStatus;

/// The theme name that means "the one made for this terminal's background".
pub const AUTO: &str = "auto";

/// How long the terminal gets to answer the background-colour query (OSC 11). Terminals that
/// do not support it are recognised sooner, by their answer to a device-attributes query.
const BACKGROUND_QUERY_TIMEOUT: Duration = Duration::from_millis(500);

const BUILT_IN: [(&str, &str); 3] = [
    ("default", include_str!("../../themes/default.toml")),
    ("light", include_str!("../../themes/light.toml")),
    (
        "high-contrast",
        include_str!("../../themes/high-contrast.toml"),
    ),
];

/// Every role a theme must style, by its name in the TOML files.
pub const ROLES: [&str; 19] = [
    "text",
    "muted",
    "title",
    "border",
    "border_focused",
    "selected",
    "step_pending",
    "step_running",
    "step_done",
    "step_failed",
    "input",
    "input_focused",
    "ok",
    "warning",
    "error",
    "key_hint",
    "progress",
    "console_bg",
    "dialog",
];

/// A resolved theme: one style per role.
#[derive(Debug, Clone)]
pub struct Theme {
    pub name: String,
    styles: HashMap<String, Style>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ThemeFile {
    #[serde(default)]
    styles: HashMap<String, StyleSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StyleSpec {
    fg: Option<String>,
    bg: Option<String>,
    #[serde(default)]
    bold: bool,
    #[serde(default)]
    italic: bool,
    #[serde(default)]
    underline: bool,
    #[serde(default)]
    reversed: bool,
}

/// A theme file that could not be used; the message names the file and the key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("theme {file}: {problem}")]
pub struct ThemeError {
    pub file: String,
    pub problem: String,
}

impl Theme {
    /// Load theme `name`: the built-in one (or `default` for a user-only theme) with the user's
    /// file layered over it. A broken user file falls back to the built-in and says why.
    pub fn load(name: &str, user_dir: Option<&Path>) -> (Theme, Option<ThemeError>) {
        let base_name = if built_in(name).is_some() {
            name
        } else {
            "default"
        };
        let mut theme = Theme::built_in(base_name);
        let user_file: Option<PathBuf> = user_dir
            .map(|dir| dir.join(format!("{name}.toml")))
            .filter(|path| path.exists());
        match user_file {
            Some(path) => {
                let result = std::fs::read_to_string(&path)
                    .map_err(|e| ThemeError {
                        file: path.display().to_string(),
                        problem: e.to_string(),
                    })
                    .and_then(|text| parse(&path.display().to_string(), &text));
                match result {
                    Ok(overrides) => {
                        theme.styles.extend(overrides);
                        theme.name = name.to_string();
                        (theme, None)
                    }
                    Err(e) => (theme, Some(e)),
                }
            }
            None if built_in(name).is_none() => (
                theme,
                Some(ThemeError {
                    file: format!("{name}.toml"),
                    problem: format!(
                        "no such theme (built in: auto, default, light, high-contrast; \
                         user themes go in {})",
                        user_dir
                            .map_or("~/.config/kiln/themes".into(), |d| d.display().to_string())
                    ),
                }),
            ),
            None => (theme, None),
        }
    }

    /// The theme `auto` stands for: `light` when the terminal answers that its background is
    /// light, `default` otherwise (a dark background, or no answer). Other names are returned
    /// as they are. Call before the terminal enters raw mode: the query reads its answer.
    pub fn resolve_auto(name: &str) -> String {
        if name != AUTO {
            return name.to_string();
        }
        let mut options = terminal_colorsaurus::QueryOptions::default();
        options.timeout = BACKGROUND_QUERY_TIMEOUT;
        let chosen = match terminal_colorsaurus::theme_mode(options) {
            Ok(terminal_colorsaurus::ThemeMode::Light) => "light",
            Ok(terminal_colorsaurus::ThemeMode::Dark) => "default",
            Err(error) => {
                tracing::info!(%error, "the terminal did not tell its background colour");
                "default"
            }
        };
        tracing::info!("theme auto: {chosen}");
        chosen.to_string()
    }

    /// A built-in theme by name; unknown names give the default.
    pub fn built_in(name: &str) -> Theme {
        let (name, text) = BUILT_IN
            .iter()
            .find(|(n, _)| *n == name)
            .copied()
            .unwrap_or(BUILT_IN[0]);
        let styles = parse(&format!("themes/{name}.toml"), text)
            .expect("built-in themes are checked by tests");
        Theme {
            name: name.to_string(),
            styles,
        }
    }

    pub fn names() -> impl Iterator<Item = &'static str> {
        BUILT_IN.iter().map(|(n, _)| *n)
    }

    fn role(&self, role: &str) -> Style {
        self.styles.get(role).copied().unwrap_or_default()
    }

    pub fn text(&self) -> Style {
        self.role("text")
    }
    pub fn muted(&self) -> Style {
        self.role("muted")
    }
    pub fn title(&self) -> Style {
        self.role("title")
    }
    pub fn border(&self, focused: bool) -> Style {
        self.role(if focused { "border_focused" } else { "border" })
    }
    pub fn selected(&self) -> Style {
        self.role("selected")
    }
    pub fn step(&self, state: &StepStatus) -> Style {
        match state {
            StepStatus::Pending => self.role("step_pending"),
            StepStatus::Running { .. } => self.running(),
            StepStatus::Done | StepStatus::Skipped => self.role("step_done"),
            StepStatus::Failed(_) => self.role("step_failed"),
            StepStatus::Stale(_) | StepStatus::Interrupted | StepStatus::Stopped => {
                self.role("warning")
            }
        }
    }
    /// Something under way: a running step, a running machine.
    pub fn running(&self) -> Style {
        self.role("step_running")
    }
    pub fn input(&self, focused: bool) -> Style {
        self.role(if focused { "input_focused" } else { "input" })
    }
    pub fn ok(&self) -> Style {
        self.role("ok")
    }
    pub fn warning(&self) -> Style {
        self.role("warning")
    }
    pub fn error(&self) -> Style {
        self.role("error")
    }
    pub fn key_hint(&self) -> Style {
        self.role("key_hint")
    }
    pub fn progress(&self) -> Style {
        self.role("progress")
    }
    pub fn console(&self) -> Style {
        self.role("console_bg")
    }
    pub fn dialog(&self) -> Style {
        self.role("dialog")
    }
}

fn built_in(name: &str) -> Option<&'static str> {
    BUILT_IN.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

fn parse(file: &str, text: &str) -> Result<HashMap<String, Style>, ThemeError> {
    let error = |problem: String| ThemeError {
        file: file.to_string(),
        problem,
    };
    let parsed: ThemeFile = toml::from_str(text)
        .map_err(|e| error(crate::engine::host::config::toml_problem(text, &e)))?;
    let mut styles = HashMap::new();
    for (role, spec) in parsed.styles {
        if !ROLES.contains(&role.as_str()) {
            return Err(error(format!(
                "unknown style `{role}` (known: {})",
                ROLES.join(", ")
            )));
        }
        let colour = |which: &str, value: &Option<String>| -> Result<Option<Color>, ThemeError> {
            value
                .as_deref()
                .map(|v| {
                    Color::from_str(v).map_err(|_| {
                        error(format!(
                            "styles.{role}.{which}: `{v}` is not a colour (a name like \"red\" or \"#rrggbb\")"
                        ))
                    })
                })
                .transpose()
        };
        let mut style = Style::default();
        if let Some(fg) = colour("fg", &spec.fg)? {
            style = style.fg(fg);
        }
        if let Some(bg) = colour("bg", &spec.bg)? {
            style = style.bg(bg);
        }
        for (on, modifier) in [
            (spec.bold, Modifier::BOLD),
            (spec.italic, Modifier::ITALIC),
            (spec.underline, Modifier::UNDERLINED),
            (spec.reversed, Modifier::REVERSED),
        ] {
            if on {
                style = style.add_modifier(modifier);
            }
        }
        styles.insert(role, style);
    }
    Ok(styles)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_theme_styles_every_role() {
        for (name, text) in BUILT_IN {
            let styles = parse(name, text).unwrap();
            for role in ROLES {
                assert!(styles.contains_key(role), "theme {name} lacks `{role}`");
            }
        }
    }

    #[test]
    fn user_theme_overrides_only_what_it_names() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("light.toml"),
            "[styles]\nerror = { fg = \"#ff00ff\", bold = true }\n",
        )
        .unwrap();
        let (theme, problem) = Theme::load("light", Some(dir.path()));
        assert!(problem.is_none());
        assert_eq!(
            theme.error(),
            Style::default()
                .fg(Color::Rgb(255, 0, 255))
                .add_modifier(Modifier::BOLD)
        );
        assert_eq!(theme.ok(), Theme::built_in("light").ok());
    }

    #[test]
    fn user_only_theme_layers_over_default() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("mine.toml"),
            "[styles]\nok = { fg = \"blue\" }\n",
        )
        .unwrap();
        let (theme, problem) = Theme::load("mine", Some(dir.path()));
        assert!(problem.is_none());
        assert_eq!(theme.name, "mine");
        assert_eq!(theme.ok(), Style::default().fg(Color::Blue));
        assert_eq!(theme.error(), Theme::built_in("default").error());
    }

    #[test]
    fn broken_user_theme_names_file_and_key_and_falls_back() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("default.toml"),
            "[styles]\nstep_done = { fg = \"greenish\" }\n",
        )
        .unwrap();
        let (theme, problem) = Theme::load("default", Some(dir.path()));
        let problem = problem.expect("a broken theme is reported");
        assert!(problem.file.ends_with("default.toml"));
        assert!(problem.problem.contains("styles.step_done.fg"), "{problem}");
        assert_eq!(
            theme.step(&StepStatus::Done),
            Theme::built_in("default").step(&StepStatus::Done)
        );

        std::fs::write(dir.path().join("default.toml"), "[styles]\nshiny = {}\n").unwrap();
        let (_, problem) = Theme::load("default", Some(dir.path()));
        assert!(problem.unwrap().problem.contains("`shiny`"));
    }

    #[test]
    fn unknown_theme_is_reported_and_default_used() {
        let (theme, problem) = Theme::load("nope", None);
        assert_eq!(theme.name, "default");
        assert!(problem.unwrap().problem.contains("no such theme"));
    }
}
