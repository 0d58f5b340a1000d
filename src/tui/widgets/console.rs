//! The serial console pane: the vt100 model drawn with tui-term.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Color;
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders};
use tui_term::widget::PseudoTerminal;

use crate::engine::guest::console::Console;
use crate::tui::theme::Theme;

/// Draw the console in `area`, resizing the model to fit the pane first.
pub fn draw(
    frame: &mut Frame,
    area: Rect,
    console: &Console,
    title: &str,
    focused: bool,
    theme: &Theme,
) {
    let block = Block::default()
        .borders(Borders::ALL)
        .title(Line::styled(format!(" {title} "), theme.title()))
        .border_style(theme.border(focused))
        .style(theme.console());
    let inner = block.inner(area);
    console.resize(inner.height.max(1), inner.width.max(1));
    let parser = console.parser();
    let terminal = PseudoTerminal::new(parser.screen())
        .block(block)
        .style(theme.console());
    frame.render_widget(terminal, area);
    paint_default_colours(frame, inner, theme);
}

/// tui-term gives the guest's default colours as the terminal's own (`Reset`), over the
/// pane's style: on a theme that paints its own background (the dark one on a white
/// terminal, chosen when the background query got no answer) the console was a white hole.
/// The guest's default colours are the theme's console colours.
fn paint_default_colours(frame: &mut Frame, area: Rect, theme: &Theme) {
    let console = theme.console();
    let buffer = frame.buffer_mut();
    for y in area.top()..area.bottom() {
        for x in area.left()..area.right() {
            let cell = &mut buffer[(x, y)];
            if let (Color::Reset, Some(bg)) = (cell.bg, console.bg) {
                cell.bg = bg;
            }
            if let (Color::Reset, Some(fg)) = (cell.fg, console.fg) {
                cell.fg = fg;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    #[test]
    fn empty_and_default_coloured_cells_take_the_theme_colours() {
        let console = Console::new(4, 38);
        console.feed(b"login: \x1b[31mred\x1b[0m plain");
        let theme = Theme::built_in("default");
        let expected = theme.console();
        let mut terminal = Terminal::new(TestBackend::new(40, 6)).unwrap();
        terminal
            .draw(|frame| draw(frame, frame.area(), &console, "Serial", false, &theme))
            .unwrap();
        let buffer = terminal.backend().buffer();
        for y in 1..5 {
            for x in 1..39 {
                let cell = &buffer[(x, y)];
                assert_eq!(Some(cell.bg), expected.bg, "background at {x},{y}");
                assert_ne!(cell.fg, Color::Reset, "foreground at {x},{y}");
            }
        }
        // The guest's own colours stay.
        assert!((1..39).any(|x| buffer[(x, 1)].fg == Color::Indexed(1)));
    }
}
