//! The screen of a step this build of kiln does not have yet: says so plainly.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};

use crate::engine::Step;
use crate::tui::theme::Theme;

pub fn draw(frame: &mut Frame, area: Rect, step: Step, focused: bool, theme: &Theme) {
    let block = Block::default()
        .borders(Borders::ALL)
        .title(Line::styled(format!(" {} ", step.title()), theme.title()))
        .border_style(theme.border(focused));
    let lines = vec![
        Line::styled(
            format!("{}: {}.", step.title(), step.purpose()),
            theme.text(),
        ),
        Line::raw(""),
        Line::styled(
            "This step is not built yet in this version of kiln.",
            theme.warning(),
        ),
        Line::styled(
            "Until it is, see the manual procedure in the README (\"By hand\").",
            theme.muted(),
        ),
    ];
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false }),
        area,
    );
}
