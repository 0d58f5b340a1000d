//! The Install screen: the form; then, while the installer runs, its serial console and VGA
//! screen (side by side when the terminal is wide, else one at a time).

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::{Paragraph, Wrap};

use super::create::level_style;
use super::machine;
use crate::tui::app::{App, StepState};
use crate::tui::steps::install::InstallScreen;
use crate::tui::theme::Theme;
use crate::tui::widgets::{form, progress};

pub fn draw(frame: &mut Frame, area: Rect, app: &App, focused: bool) {
    let screen = &app.install;
    let theme = &app.theme;
    match &screen.machine.view {
        Some(view) => machine::draw(
            frame,
            area,
            &screen.machine,
            view,
            "installer running",
            app.width,
            theme,
        ),
        None => draw_form(
            frame,
            area,
            screen,
            app.step_state(crate::engine::Step::Install),
            focused,
            theme,
        ),
    }
}

fn draw_form(
    frame: &mut Frame,
    area: Rect,
    screen: &InstallScreen,
    state: StepState,
    focused: bool,
    theme: &Theme,
) {
    let hints = |key: &str| screen.hint(key);
    let (status, rest) = form::framed(
        frame,
        area,
        "Install — boot an installer with the disk",
        &screen.form,
        &hints,
        focused,
        theme,
    );
    if let (StepState::Running, Some(p)) = (state, &screen.progress) {
        progress::draw(frame, status, p, theme);
    }
    let mut lines = Vec::new();
    if let Some(error) = &screen.error {
        lines.push(Line::styled(format!("✘ {error}"), theme.error()));
    }
    if let Some(outcome) = &screen.outcome {
        lines.push(Line::styled(
            format!(
                "✔ installed: the guest powered off after {} s",
                outcome.took.as_secs()
            ),
            theme.ok(),
        ));
        lines.push(Line::styled(
            format!("  serial log: {}", outcome.serial_log.display()),
            theme.muted(),
        ));
        lines.push(Line::styled(
            "  Next: Configure (passwordless root, sshd_config).",
            theme.muted(),
        ));
    }
    for (level, text) in screen.log.iter().rev().take(6).rev() {
        lines.push(Line::styled(
            format!("  {text}"),
            level_style(*level, theme),
        ));
    }
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), rest);
}
