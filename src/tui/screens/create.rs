//! The Create screen: path, size, overwrite, a Create button, messages inline, the result.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

use crate::engine::image::human_bytes;
use crate::engine::task::Level;
use crate::tui::app::StepState;
use crate::tui::steps::create::CreateScreen;
use crate::tui::theme::Theme;
use crate::tui::widgets::{form, progress};

pub fn draw(
    frame: &mut Frame,
    area: Rect,
    screen: &CreateScreen,
    state: StepState,
    focused: bool,
    theme: &Theme,
) {
    let hints = |key: &str| screen.hint(key);
    let (status, rest) = form::framed(
        frame,
        area,
        "Create — a new qcow2 v3 disk",
        &screen.form,
        &hints,
        focused,
        theme,
    );

    match (state, &screen.progress) {
        (StepState::Running, Some(p)) => progress::draw(frame, status, p, theme),
        (StepState::Running, None) => frame.render_widget(
            Paragraph::new(Line::styled("creating…", theme.step(StepState::Running))),
            status,
        ),
        _ => {}
    }

    let mut lines: Vec<Line> = Vec::new();
    if let Some(error) = &screen.error {
        lines.push(Line::styled(format!("✘ {error}"), theme.error()));
    }
    if let Some(info) = &screen.result {
        lines.push(Line::styled("✔ image created", theme.ok()));
        for (label, value) in [
            ("path", info.path.display().to_string()),
            ("format", info.format.clone()),
            (
                "compat",
                format!("{} (qcow2 v3)", info.compat.as_deref().unwrap_or("unknown")),
            ),
            ("virtual", human_bytes(info.virtual_size)),
            ("on disk", human_bytes(info.actual_size)),
        ] {
            lines.push(Line::from(vec![
                Span::styled(format!("  {label:<9}"), theme.muted()),
                Span::styled(value, theme.text()),
            ]));
        }
        lines.push(Line::styled(
            "  Next: Install (boot an installer ISO with this disk).",
            theme.muted(),
        ));
    }
    for (level, text) in screen.log.iter().rev().take(4).rev() {
        lines.push(Line::styled(
            format!("  {text}"),
            level_style(*level, theme),
        ));
    }
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), rest);
}

pub fn level_style(level: Level, theme: &Theme) -> Style {
    match level {
        Level::Info => theme.muted(),
        Level::Warn => theme.warning(),
    }
}
