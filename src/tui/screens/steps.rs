//! The step list on the left: each step (or a recipe's stage) with its state.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};

use crate::engine::session::StepStatus;
use crate::tui::app::{App, Focus};

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let theme = &app.theme;
    let mut lines = Vec::new();
    for i in 0..app.rows() {
        let (name, state) = app.row(i);
        let mark = match state {
            StepStatus::Pending => "·",
            StepStatus::Running { .. } => "…",
            StepStatus::Done | StepStatus::Skipped => "✔",
            StepStatus::Failed(_) => "✘",
            StepStatus::Stale(_) | StepStatus::Interrupted | StepStatus::Stopped => "!",
        };
        // A step not begun says nothing after its title.
        let word = match state {
            StepStatus::Pending => "",
            _ => state.word(),
        };
        let label = format!(" {mark} {name:<11}");
        let style = if i == app.selected {
            theme.selected()
        } else {
            theme.step(&state)
        };
        lines.push(Line::from(vec![
            Span::styled(label, style),
            Span::styled(format!(" {word}"), theme.step(&state)),
        ]));
    }
    let block = Block::default()
        .borders(Borders::ALL)
        .title(Line::styled(" Steps ", theme.title()))
        .border_style(theme.border(app.focus == Focus::Steps));
    app.hits.steps.set(block.inner(area));
    frame.render_widget(Paragraph::new(lines).block(block), area);
}
