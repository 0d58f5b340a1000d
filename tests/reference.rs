//! docs/reference.md is generated from kiln's own command line (its clap definition) and the
//! workbench's key table, so it cannot drift from them: this test renders it and fails with a
//! diff when the checked-in file differs. `KILN_UPDATE_DOCS=1 cargo test --test reference`
//! writes the file instead (then review the diff and commit it).

use std::fmt::Write as _;
use std::path::Path;

use clap::{Arg, ArgAction, Command, CommandFactory};
use kiln::cli::Args;
use kiln::tui::keymap::Keymap;

const REFERENCE: &str = "docs/reference.md";

#[test]
fn the_reference_is_generated_from_the_command_line_and_the_key_table() {
    let generated = reference();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(REFERENCE);
    if std::env::var_os("KILN_UPDATE_DOCS").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    if checked_in != generated {
        let diff = similar::TextDiff::from_lines(&checked_in, &generated)
            .unified_diff()
            .context_radius(2)
            .header(&format!("{REFERENCE} (checked in)"), "generated")
            .to_string();
        panic!(
            "{REFERENCE} is not what kiln's command line says; rewrite it with\n  \
             KILN_UPDATE_DOCS=1 cargo test --test reference\n\n{diff}"
        );
    }
}

/// The whole file.
fn reference() -> String {
    let mut kiln = Args::command();
    kiln.build();
    let mut out = String::new();
    out.push_str(
        "# kiln reference\n\n\
         Every command and flag, and the workbench's keys. Generated from kiln's command line \
         and key table by `tests/reference.rs` — do not edit it by hand; \
         `KILN_UPDATE_DOCS=1 cargo test --test reference` rewrites it \
         (see [testing.md](testing.md)).\n\n",
    );
    let commands: Vec<&Command> = kiln
        .get_subcommands()
        .filter(|command| command.get_name() != "help")
        .collect();
    out.push_str("- [kiln](#kiln): global options\n");
    for command in &commands {
        let name = command.get_name();
        let about = command
            .get_about()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let first = about.split(". ").next().unwrap_or_default();
        let _ = writeln!(
            out,
            "- [kiln {name}](#kiln-{name}): {}",
            markdown(first, "")
        );
    }
    out.push_str("- [Workbench keys](#workbench-keys)\n\n");

    out.push_str("## kiln\n\n");
    paragraphs(&mut out, &kiln);
    usage(&mut out, &mut kiln.clone());
    out.push_str(
        "`kiln IMAGE` opens the workbench on that image (its session file, `NAME.kiln.toml`); \
         `kiln RECIPE.toml` opens it on a recipe's plan.\n\n",
    );
    out.push_str("Global options, taken by every command:\n\n");
    for arg in kiln.get_arguments().filter(|arg| shown(arg)) {
        option(&mut out, arg);
    }
    out.push('\n');

    for command in commands {
        let _ = writeln!(out, "## kiln {}\n", command.get_name());
        paragraphs(&mut out, command);
        usage(&mut out, &mut command.clone());
        let positionals: Vec<&Arg> = command.get_positionals().filter(|a| shown(a)).collect();
        if !positionals.is_empty() {
            out.push_str("Arguments:\n\n");
            for arg in positionals {
                option(&mut out, arg);
            }
            out.push('\n');
        }
        let options: Vec<&Arg> = (command.get_arguments())
            .filter(|arg| !arg.is_positional() && !arg.is_global_set() && shown(arg))
            .filter(|arg| !matches!(arg.get_action(), ArgAction::Help | ArgAction::HelpLong))
            .collect();
        if !options.is_empty() {
            out.push_str("Options:\n\n");
            for arg in options {
                option(&mut out, arg);
            }
            out.push('\n');
        }
    }

    out.push_str(
        "## Workbench keys\n\n\
         The help overlay (`?` or F1) shows the same table.\n\n\
         | where | keys | what |\n|---|---|---|\n",
    );
    for row in Keymap::built_in().help_rows() {
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            row.place,
            cell(&row.keys),
            cell(&row.what)
        );
    }
    out
}

fn shown(arg: &Arg) -> bool {
    !arg.is_hide_set()
}

/// The command's long description, or its short one.
fn paragraphs(out: &mut String, command: &Command) {
    let about = (command.get_long_about())
        .or(command.get_about())
        .map(|text| text.to_string())
        .unwrap_or_default();
    if !about.is_empty() {
        let _ = writeln!(out, "{}\n", markdown(about.trim(), ""));
    }
}

fn usage(out: &mut String, command: &mut Command) {
    let usage = command.render_usage().to_string();
    let usage = usage.trim().trim_start_matches("Usage: ");
    let _ = writeln!(out, "    {usage}\n");
}

/// One argument as a list item: its spellings, what it does, its default, its values.
fn option(out: &mut String, arg: &Arg) {
    let mut names = Vec::new();
    let value = (arg.get_value_names())
        .map(|names| {
            let names: Vec<String> = names.iter().map(|n| format!("<{n}>")).collect();
            names.join(" ")
        })
        .unwrap_or_else(|| format!("<{}>", arg.get_id().as_str().to_uppercase()));
    let takes_value = arg.get_action().takes_values();
    if arg.is_positional() {
        names.push(format!("`{value}`"));
    } else {
        if let Some(long) = arg.get_long() {
            match takes_value {
                true => names.push(format!("`--{long} {value}`")),
                false => names.push(format!("`--{long}`")),
            }
        }
        if let Some(short) = arg.get_short() {
            names.push(format!("`-{short}`"));
        }
    }
    let help = (arg.get_long_help())
        .or(arg.get_help())
        .map(|help| help.to_string())
        .unwrap_or_default();
    let mut notes = Vec::new();
    if arg.is_required_set() {
        notes.push("required".to_string());
    }
    let defaults: Vec<String> = (arg.get_default_values().iter())
        .map(|value| format!("`{}`", value.to_string_lossy()))
        .collect();
    if !defaults.is_empty() && takes_value {
        notes.push(format!("default {}", defaults.join(", ")));
    }
    // Every other spelling clap accepts, the old ones it keeps hidden from --help included.
    let aliases: Vec<String> = (arg.get_long_and_visible_aliases().into_iter().flatten())
        .skip(1)
        .chain(arg.get_aliases().into_iter().flatten())
        .map(|alias| format!("`--{alias}`"))
        .collect();
    if !aliases.is_empty() {
        notes.push(format!("also {}", aliases.join(", ")));
    }
    let notes = match notes.is_empty() {
        true => String::new(),
        false => format!(" ({})", notes.join("; ")),
    };
    let help = markdown(help.trim(), "  ");
    let _ = write!(out, "- {}: {help}{notes}", names.join(", "));
    out.push('\n');
    let values: Vec<_> = (arg.get_possible_values().into_iter())
        .filter(|value| !value.is_hide_set())
        .collect();
    if values.iter().any(|value| value.get_help().is_some()) {
        for value in values {
            let help = value.get_help().map(|h| h.to_string()).unwrap_or_default();
            let _ = writeln!(
                out,
                "  - `{}`: {}",
                value.get_name(),
                markdown(&help, "    ")
            );
        }
    } else if !values.is_empty() && takes_value {
        let names: Vec<String> = values
            .iter()
            .map(|value| format!("`{}`", value.get_name()))
            .collect();
        let _ = writeln!(out, "  One of {}.", names.join(", "));
    }
}

/// Help text as Markdown: outside `code spans`, `<` and `*` are escaped so that `<enter>`
/// is shown rather than taken for HTML; line breaks inside a paragraph become spaces, and
/// paragraphs after the first are indented by `indent` (to stay in a list item).
fn markdown(text: &str, indent: &str) -> String {
    let paragraphs: Vec<String> = text
        .split("\n\n")
        .map(|paragraph| {
            paragraph
                .lines()
                .map(str::trim)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let text = paragraphs.join(&format!("\n\n{indent}"));
    let mut out = String::new();
    for (index, part) in text.split('`').enumerate() {
        if index > 0 {
            out.push('`');
        }
        match index % 2 {
            0 => out.push_str(&part.replace('<', "&lt;").replace('*', "\\*")),
            _ => out.push_str(part),
        }
    }
    out
}

fn cell(text: &str) -> String {
    markdown(text, "").replace('|', "\\|")
}
