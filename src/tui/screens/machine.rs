//! A running machine on a step screen: status line, serial console and VGA screen.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};

use crate::engine::guest::machine::MachineView;
use crate::engine::host::Accelerator;
use crate::tui::graphics;
use crate::tui::steps::machine_pane::{KeyTarget, MachinePane, Pane, SIDE_BY_SIDE_WIDTH};
use crate::tui::theme::Theme;
use crate::tui::widgets::console;
use crate::tui::widgets::screen::ScreenView;
use ratatui_image::picker::Picker;

/// Draw the machine: console and screen side by side when wide, else the chosen one.
#[allow(clippy::too_many_arguments)] // the pieces of one screen, each used once
pub fn draw(
    frame: &mut Frame,
    area: Rect,
    screen: &MachinePane,
    view: &MachineView,
    what: &str,
    width: u16,
    picker: Option<&Picker>,
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
                Span::styled(format!(" {what} · "), theme.running()),
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
        draw_screen(frame, right, screen, picker, theme);
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
            Pane::Screen => draw_screen(frame, panes, screen, picker, theme),
        }
    }
}

/// The guest's screen on the whole terminal, its aspect ratio kept, with one status line:
/// the guest's resolution, how it is drawn (`graphics`, what was found about the terminal),
/// where keys go, how to come back.
pub fn draw_fullscreen(
    frame: &mut Frame,
    area: Rect,
    screen: &MachinePane,
    picker: Option<&Picker>,
    graphics: &str,
    theme: &Theme,
) {
    let [picture_area, status] =
        Layout::vertical([Constraint::Min(1), Constraint::Length(1)]).areas(area);
    let resolution = screen
        .picture
        .as_ref()
        .map_or("no picture yet".to_string(), |p| {
            format!("guest {}×{}", p.width, p.height)
        });
    let keys = match screen.keys_to {
        KeyTarget::Vga => "keys → screen (Ctrl-] to give them back, then f to return)",
        KeyTarget::Serial => "keys → console (Ctrl-] to give them back, then f to return)",
        KeyTarget::Kiln => "keys: kiln · v type into the screen · f back to the step",
    };
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(format!(" {resolution} · "), theme.title()),
            Span::styled(keys, theme.key_hint()),
            Span::styled(format!(" · {graphics}"), theme.muted()),
        ])),
        status,
    );
    draw_picture(frame, picture_area, screen, picker);
}

/// The guest's picture in `area`, its aspect ratio kept: real pixels when the terminal
/// shows them, else half blocks.
fn draw_picture(frame: &mut Frame, area: Rect, screen: &MachinePane, picker: Option<&Picker>) {
    let Some(picture) = &screen.picture else {
        return;
    };
    match picker {
        Some(picker) => graphics::draw(frame, area, picture, picker, &screen.encoded),
        None => frame.render_widget(ScreenView(picture), fit(area, picture)),
    }
}

/// The largest part of `area` that shows `picture` undistorted, centred. A half-block cell
/// is one pixel wide and two high, and about half as wide as it is high: its two pixels are
/// square.
fn fit(area: Rect, picture: &crate::engine::guest::screen::Picture) -> Rect {
    if picture.width == 0 || picture.height == 0 {
        return area;
    }
    let (pixels_wide, pixels_high) = (u64::from(area.width), u64::from(area.height) * 2);
    let (w, h) = (picture.width as u64, picture.height as u64);
    let (columns, rows) = if pixels_wide * h <= pixels_high * w {
        (pixels_wide, pixels_wide * h / w / 2)
    } else {
        (pixels_high * w / h, pixels_high / 2)
    };
    let (columns, rows) = (columns.max(1) as u16, rows.max(1) as u16);
    Rect {
        x: area.x + (area.width - columns.min(area.width)) / 2,
        y: area.y + (area.height - rows.min(area.height)) / 2,
        width: columns.min(area.width),
        height: rows.min(area.height),
    }
}

fn draw_screen(
    frame: &mut Frame,
    area: Rect,
    screen: &MachinePane,
    picker: Option<&Picker>,
    theme: &Theme,
) {
    let block = Block::default()
        .borders(Borders::ALL)
        .title(Line::styled(" Screen (v to type) ", theme.title()))
        .border_style(theme.border(screen.keys_to == KeyTarget::Vga));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    match &screen.picture {
        Some(_) => draw_picture(frame, inner, screen, picker),
        None => frame.render_widget(
            Paragraph::new(Line::styled(
                "waiting for the first picture…",
                theme.muted(),
            )),
            inner,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::guest::screen::Picture;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    fn picture(width: usize, height: usize) -> Picture {
        Picture {
            width,
            height,
            rgb: vec![200; width * height * 3],
        }
    }

    #[test]
    fn the_picture_keeps_its_aspect_ratio_centred() {
        // 4:3 in a wide terminal: full height, centred across.
        let wide = Rect::new(0, 0, 160, 47);
        assert_eq!(fit(wide, &picture(800, 600)), Rect::new(17, 0, 125, 47));
        // 4:3 in a tall, narrow terminal: full width, centred down.
        let tall = Rect::new(0, 0, 40, 40);
        assert_eq!(fit(tall, &picture(800, 600)), Rect::new(0, 12, 40, 15));
    }

    #[test]
    fn full_screen_shows_the_guest_and_how_to_come_back() {
        let mut pane = MachinePane::default();
        pane.picture = Some(picture(800, 600));
        pane.fullscreen = true;
        let mut terminal = Terminal::new(TestBackend::new(100, 30)).unwrap();
        let theme = Theme::built_in("default");
        terminal
            .draw(|frame| {
                draw_fullscreen(
                    frame,
                    frame.area(),
                    &pane,
                    None,
                    "xterm: half blocks",
                    &theme,
                )
            })
            .unwrap();
        let buffer = terminal.backend().buffer();
        let last_row: String = (0..100).map(|x| buffer[(x, 29)].symbol()).collect();
        assert!(
            last_row.contains("guest 800×600") && last_row.contains("f back to the step"),
            "{last_row}"
        );
        // The picture fills the rows above, in its own aspect (29 rows: 77 columns).
        let drawn = (0..100)
            .filter(|&x| buffer[(x, 10)].symbol() == "▀")
            .count();
        assert_eq!(drawn, 77);
    }
}
