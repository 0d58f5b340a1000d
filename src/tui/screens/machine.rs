//! A running machine on a step screen: status line, serial console and VGA screen.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};

use crate::engine::host::Accelerator;
use crate::engine::machine::MachineView;
use crate::tui::app::StepState;
use crate::tui::steps::machine_pane::{KeyTarget, MachinePane, Pane, SIDE_BY_SIDE_WIDTH};
use crate::tui::theme::Theme;
use crate::tui::widgets::console;
use crate::tui::widgets::screen::ScreenView;

/// Draw the machine: console and screen side by side when wide, else the chosen one.
pub fn draw(
    frame: &mut Frame,
    area: Rect,
    screen: &MachinePane,
    view: &MachineView,
    what: &str,
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
                Span::styled(format!(" {what} · "), theme.step(StepState::Running)),
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

fn draw_screen(frame: &mut Frame, area: Rect, screen: &MachinePane, theme: &Theme) {
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
