//! The Install screen: the form; then, while the installer runs, its serial console and VGA
//! screen (side by side when the terminal is wide, else one at a time).

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};

use super::create::{level_style, message};
use crate::engine::host::Accelerator;
use crate::engine::machine::MachineView;
use crate::engine::task::Level;
use crate::tui::app::{App, StepState};
use crate::tui::steps::install::{
    InstallField, InstallScreen, KeyTarget, Pane, SIDE_BY_SIDE_WIDTH,
};
use crate::tui::theme::Theme;
use crate::tui::widgets::screen::ScreenView;
use crate::tui::widgets::{console, progress};

pub fn draw(frame: &mut Frame, area: Rect, app: &App, focused: bool) {
    let screen = &app.install;
    let theme = &app.theme;
    match &screen.machine {
        Some(view) => draw_machine(frame, area, screen, view, app.width, theme),
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

fn draw_machine(
    frame: &mut Frame,
    area: Rect,
    screen: &InstallScreen,
    view: &MachineView,
    width: u16,
    theme: &Theme,
) {
    let [status, panes] = Layout::vertical([Constraint::Length(2), Constraint::Min(3)]).areas(area);
    let accel = match view.accelerator() {
        Accelerator::Kvm => "KVM",
        Accelerator::Tcg => "TCG (no KVM)",
    };
    let vnc = view
        .vnc()
        .map_or("no VNC".to_string(), |addr| format!("VNC {addr}"));
    let keys = match screen.keys_to {
        KeyTarget::Kiln => Span::styled("keys: kiln", theme.muted()),
        KeyTarget::Serial => Span::styled("keys → console (Ctrl-] to return)", theme.warning()),
        KeyTarget::Vga => Span::styled("keys → screen (Ctrl-] to return)", theme.warning()),
    };
    frame.render_widget(
        Paragraph::new(vec![
            Line::from(vec![
                Span::styled(" installer running · ", theme.step(StepState::Running)),
                Span::styled(format!("{accel} · {vnc} · "), theme.text()),
                keys,
            ]),
            Line::styled(
                format!(" serial log: {}", view.serial_log().display()),
                theme.muted(),
            ),
        ]),
        status,
    );
    let console_title = "Serial console (c to type)";
    if width >= SIDE_BY_SIDE_WIDTH {
        let [left, right] =
            Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
                .areas(panes);
        console::draw(
            frame,
            left,
            view.console(),
            console_title,
            screen.keys_to == KeyTarget::Serial,
            theme,
        );
        draw_screen(frame, right, screen, theme);
    } else {
        match screen.pane {
            Pane::Console => console::draw(
                frame,
                panes,
                view.console(),
                console_title,
                screen.keys_to == KeyTarget::Serial,
                theme,
            ),
            Pane::Screen => draw_screen(frame, panes, screen, theme),
        }
    }
}

fn draw_screen(frame: &mut Frame, area: Rect, screen: &InstallScreen, theme: &Theme) {
    let block = Block::default()
        .borders(Borders::ALL)
        .title(Line::styled(" Screen (v to type) ", theme.title()))
        .border_style(theme.border(screen.keys_to == KeyTarget::Vga));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    match &screen.picture {
        Some(picture) => frame.render_widget(ScreenView(picture), inner),
        None => frame.render_widget(
            Paragraph::new(Line::styled(
                "waiting for the first picture…",
                theme.muted(),
            )),
            inner,
        ),
    }
}
