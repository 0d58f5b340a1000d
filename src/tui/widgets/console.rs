//! The serial console pane: the vt100 model drawn with tui-term.

use ratatui::Frame;
use ratatui::layout::Rect;
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
}
