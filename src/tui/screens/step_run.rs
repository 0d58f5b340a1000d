//! Every step's screen: the form (with hints under its fields); while a machine runs, its
//! console and screen on top; then the checklist, progress, the result or the error, and the
//! newest log lines (F2 shows the whole log).

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

use super::machine;
use crate::engine::Step;
use crate::engine::check::Verdict;
use crate::engine::session::StepStatus;
use crate::engine::task::Level;
use crate::tui::app::App;
use crate::tui::steps::run::StepRun;
use crate::tui::theme::Theme;
use crate::tui::widgets::{form, progress};

pub fn draw(frame: &mut Frame, area: Rect, app: &App, step: Step, focused: bool) {
    let theme = &app.theme;
    let run = app.run(step);
    let state = app.step_state(step);
    let title = app.screen_title(step);

    let (status, rest) = match &run.machine.view {
        // While a machine runs, it takes the top of the screen; the checklist and log go below.
        Some(view) => {
            let inner = form::screen_frame(frame, area, &title, focused, theme);
            let [top, status, rest] = Layout::vertical([
                Constraint::Percentage(65),
                Constraint::Length(1),
                Constraint::Min(3),
            ])
            .areas(inner);
            let what = format!("{} running", step.title().to_lowercase());
            let picker = app.picker.as_ref();
            machine::draw(
                frame,
                top,
                &run.machine,
                view,
                &what,
                app.width,
                picker,
                theme,
            );
            (status, rest)
        }
        None => {
            // Under the step's button: what the host lacks to run it, and how to get it.
            let problem = app.problem(step);
            let hints = |key: &str| match (step, key) {
                (_, "run") => app.missing_tools(step),
                (_, form::BUTTON_NEEDS) => problem.as_ref().map(|p| (Level::Warn, p.needs.clone())),
                (_, key) if problem.as_ref().is_some_and(|p| p.field == key) => {
                    problem.as_ref().map(|p| (Level::Warn, p.message.clone()))
                }
                (Step::Create, _) => app.create.hint(key),
                (Step::Install, _) => app.install.hint(key),
                (Step::Configure, _) => app.configure.hint(key, app.install.from_cloud_image()),
                (Step::Publish, _) => app.publish.hint(key),
                _ => None,
            };
            form::framed(
                frame,
                area,
                &title,
                app.form(step),
                &hints,
                focused && !matches!(state, StepStatus::Running { .. }),
                theme,
            )
        }
    };

    match (state, &run.progress) {
        (StepStatus::Running { .. }, Some(p)) => progress::draw(frame, status, p, theme),
        (StepStatus::Stale(reason), _) => frame.render_widget(
            Paragraph::new(Line::styled(
                format!("⚠ stale: {reason} — run it again"),
                theme.warning(),
            )),
            status,
        ),
        _ => {}
    }
    frame.render_widget(
        Paragraph::new(result_lines(run, rest.height as usize, theme)).wrap(Wrap { trim: false }),
        rest,
    );
}

/// The error (and the kept-machine keys), the checks, the outcome, then the newest log lines
/// that fit.
fn result_lines<'a>(run: &'a StepRun, room: usize, theme: &Theme) -> Vec<Line<'a>> {
    let mut lines: Vec<Line> = Vec::new();
    // What went wrong (and what can be done about it) first, so it is never cut off.
    if let Some(error) = &run.held {
        lines.push(Line::styled(format!("✘ {error}"), theme.error()));
        lines.push(Line::from(vec![
            Span::styled("  machine kept: ", theme.warning()),
            Span::styled("r", theme.key_hint()),
            Span::styled(" retry  ", theme.muted()),
            Span::styled("c", theme.key_hint()),
            Span::styled(" console  ", theme.muted()),
            Span::styled("v", theme.key_hint()),
            Span::styled(" screen  ", theme.muted()),
            Span::styled("s", theme.key_hint()),
            Span::styled(" stop it", theme.muted()),
        ]));
    } else if let Some(error) = &run.error {
        lines.push(Line::styled(format!("✘ {error}"), theme.error()));
    }
    // When the checklist does not fit, the passes fold into one line so failures stay visible.
    let fold_passes = run.checks.len() + 3 > room;
    let passed = run
        .checks
        .iter()
        .filter(|c| c.verdict == Verdict::Pass)
        .count();
    if fold_passes && passed > 0 {
        lines.push(Line::styled(
            format!("[pass] {passed} checks passed (F2: the whole log)"),
            theme.ok(),
        ));
    }
    for check in &run.checks {
        if fold_passes && check.verdict == Verdict::Pass {
            continue;
        }
        let style = match check.verdict {
            Verdict::Pass => theme.ok(),
            Verdict::Fail => theme.error(),
            Verdict::Warn => theme.warning(),
            Verdict::Skipped => theme.muted(),
        };
        lines.push(Line::styled(check.line(), style));
        if let (Some(fix), Verdict::Fail | Verdict::Warn) = (&check.fix, check.verdict) {
            lines.push(Line::styled(format!("       fix: {fix}"), theme.key_hint()));
        }
    }
    for (i, line) in run.outcome.iter().enumerate() {
        lines.push(if i == 0 {
            Line::styled(format!("✔ {line}"), theme.ok())
        } else {
            Line::styled(format!("  {line}"), theme.text())
        });
    }
    let left = room.saturating_sub(lines.len());
    for (level, text) in run.log.iter().rev().take(left).rev() {
        lines.push(Line::styled(
            format!("  {text}"),
            level_style(*level, theme),
        ));
    }
    lines
}

pub fn level_style(level: Level, theme: &Theme) -> Style {
    match level {
        Level::Info => theme.muted(),
        Level::Warn => theme.warning(),
    }
}
