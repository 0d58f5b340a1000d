//! The screens of the form-based steps (configure, verify, publish): the form, then while it
//! runs the machine (if any), the checklist, progress and log; then the outcome or the error.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};

use super::create::level_style;
use super::machine;
use crate::engine::Step;
use crate::engine::verify::Verdict;
use crate::tui::app::{App, StepState};
use crate::tui::widgets::form::Form;
use crate::tui::widgets::progress;

pub fn draw(frame: &mut Frame, area: Rect, app: &App, step: Step, form: &Form, focused: bool) {
    let theme = &app.theme;
    let run = app.run(step).expect("form steps have a run");
    let state = app.step_state(step);
    let block = Block::default()
        .borders(Borders::ALL)
        .title(Line::styled(
            format!(" {} — {} ", step.title(), step.purpose()),
            theme.title(),
        ))
        .border_style(theme.border(focused));
    let inner = block.inner(area);
    frame.render_widget(block, area);

    // While a machine runs, it takes the top of the screen; the checklist and log go below.
    let (top, rest) = match &run.machine.view {
        Some(view) => {
            let [top, rest] =
                Layout::vertical([Constraint::Percentage(60), Constraint::Min(4)]).areas(inner);
            let what = format!("{} running", step.title().to_lowercase());
            machine::draw(frame, top, &run.machine, view, &what, app.width, theme);
            (None, rest)
        }
        None => {
            let height = form.fields.len() as u16 + 1;
            let [top, rest] =
                Layout::vertical([Constraint::Length(height), Constraint::Min(2)]).areas(inner);
            (Some(top), rest)
        }
    };
    if let Some(top) = top {
        form.draw(frame, top, focused && state != StepState::Running, theme);
    }
    let [status, body] = Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(rest);
    if let (StepState::Running, Some(p)) = (state, &run.progress) {
        progress::draw(frame, status, p, theme);
    }

    let mut lines: Vec<Line> = Vec::new();
    for check in &run.checks {
        let style = match check.verdict {
            Verdict::Pass => theme.ok(),
            Verdict::Fail => theme.error(),
            Verdict::Warn => theme.warning(),
            Verdict::Skipped => theme.muted(),
        };
        lines.push(Line::styled(
            format!(
                "[{}] {}: {}",
                check.verdict.word(),
                check.name,
                check.detail
            ),
            style,
        ));
        if let (Some(fix), Verdict::Fail | Verdict::Warn) = (&check.fix, check.verdict) {
            lines.push(Line::styled(format!("       fix: {fix}"), theme.key_hint()));
        }
    }
    if let Some(error) = &run.error {
        lines.push(Line::styled(format!("✘ {error}"), theme.error()));
    }
    for (i, line) in run.outcome.iter().enumerate() {
        let style = if i == 0 { theme.ok() } else { theme.text() };
        lines.push(Line::styled(
            if i == 0 {
                format!("✔ {line}")
            } else {
                format!("  {line}")
            },
            style,
        ));
    }
    // The newest log lines that still fit under the checklist.
    let room = (body.height as usize).saturating_sub(lines.len());
    for (level, text) in run.log.iter().rev().take(room).rev() {
        lines.push(Line::styled(
            format!("  {text}"),
            level_style(*level, theme),
        ));
    }
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), body);
}
