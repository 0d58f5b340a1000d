//! A progress bar for long jobs: bytes done, rate and time left.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::widgets::Gauge;

use crate::engine::task::Progress;
use crate::tui::theme::Theme;

pub fn draw(frame: &mut Frame, area: Rect, progress: &Progress, theme: &Theme) {
    let ratio = match progress.total {
        Some(total) if total > 0 => (progress.done as f64 / total as f64).clamp(0.0, 1.0),
        _ => 0.0,
    };
    frame.render_widget(
        Gauge::default()
            .gauge_style(theme.progress())
            .ratio(ratio)
            .label(progress.describe()),
        area,
    );
}
