//! The Install screen: the form; then, while the installer runs, its serial console and VGA
//! screen (side by side when the terminal is wide, else one at a time).

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};

use super::create::{level_style, message};
use super::machine;
use crate::engine::task::Level;
use crate::tui::app::{App, StepState};
use crate::tui::steps::install::{InstallField, InstallScreen};
use crate::tui::theme::Theme;
use crate::tui::widgets::progress;

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
    let block = Block::default()
        .borders(Borders::ALL)
        .title(Line::styled(
            " Install — boot an installer with the disk ",
            theme.title(),
        ))
        .border_style(theme.border(focused));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [
        image,
        _,
        iso,
        iso_msg,
        sha,
        sha_msg,
        button,
        _,
        status,
        rest,
    ] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(2),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(0),
    ])
    .areas(inner);
    let at = |field: InstallField| focused && screen.field == field;
    screen
        .image
        .draw(frame, image, "Disk", at(InstallField::Image), theme);
    screen
        .iso
        .draw(frame, iso, "ISO", at(InstallField::Iso), theme);
    message(frame, iso_msg, screen.iso_message(), theme);
    screen
        .sha256
        .draw(frame, sha, "SHA-256", at(InstallField::Sha256), theme);
    message(
        frame,
        sha_msg,
        Some((
            Level::Info,
            "optional: 64 hex digits or a SHA256SUMS file".into(),
        )),
        theme,
    );
    let button_style = if at(InstallField::Button) {
        theme.selected()
    } else {
        theme.key_hint()
    };
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::raw(" ".repeat(10)),
            Span::styled("[ Boot installer ]", button_style),
            Span::styled("  (Enter from any field)", theme.muted()),
        ])),
        button,
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
