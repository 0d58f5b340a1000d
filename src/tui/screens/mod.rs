//! Drawing: one module per screen, each a pure function of the app state.

mod doctor;
mod help;
mod machine;
mod step_run;
mod steps;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::app::{App, Focus, Overlay};
use super::keymap::{Context, FooterHint};
use super::theme::Theme;
use super::widgets::dialog;
use crate::engine::Step;

/// Draw the whole workbench for the current state.
pub fn draw(frame: &mut Frame, app: &App) {
    let theme = &app.theme;
    frame.render_widget(
        ratatui::widgets::Block::default().style(theme.text()),
        frame.area(),
    );
    if let Some(machine) = app
        .machine(app.selected_step())
        .filter(|machine| machine.is_fullscreen())
    {
        machine::draw_fullscreen(
            frame,
            frame.area(),
            machine,
            app.picker.as_ref(),
            &app.graphics,
            theme,
        );
        return;
    }
    let [header, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(5),
        Constraint::Length(1),
    ])
    .areas(frame.area());

    let accelerator = match &app.doctor {
        None => "examining host…".to_string(),
        Some(report) => format!("{:?}", report.accelerator).to_uppercase(),
    };
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(" kiln ", theme.title()),
            Span::styled("image workbench", theme.muted()),
            Span::styled(format!("   accel: {accelerator}"), theme.muted()),
        ])),
        header,
    );

    let [list, screen] =
        Layout::horizontal([Constraint::Length(28), Constraint::Min(30)]).areas(body);
    steps::draw(frame, list, app);
    let focused = app.focus == Focus::Screen;
    step_run::draw(frame, screen, app, app.selected_step(), focused);

    frame.render_widget(Paragraph::new(footer_line(app)), footer);

    match &app.overlay {
        Overlay::None => {}
        Overlay::Help => help::draw(frame, &app.keymap, theme),
        Overlay::Doctor => doctor::draw(frame, app.doctor.as_ref(), theme),
        Overlay::ConfirmOverwrite(path) => {
            let area = dialog::centred(frame.area(), 60, 7);
            dialog::draw(
                frame,
                area,
                "Replace image?",
                vec![
                    Line::raw(format!("{} already exists.", path.display())),
                    Line::raw("The old file stays until the new one is complete."),
                    Line::raw(""),
                    Line::from(vec![
                        Span::styled("y", theme.key_hint()),
                        Span::raw(" replace   "),
                        Span::styled("n", theme.key_hint()),
                        Span::raw(" keep it"),
                    ]),
                ],
                theme,
            );
        }
        Overlay::ConfirmDiff { diff, scroll } => {
            let area = dialog::centred(
                frame.area(),
                frame.area().width.saturating_sub(4),
                frame.area().height.saturating_sub(2),
            );
            let mut lines = vec![
                Line::raw(
                    "kiln will change /etc/ssh/sshd_config like this (the old file is kept as",
                ),
                Line::raw("sshd_config.kiln-backup; sshd -t checks the new one first):"),
                Line::raw(""),
            ];
            let room = usize::from(area.height.saturating_sub(8));
            app.hits.diff_rows.set(room);
            let diff_lines: Vec<&str> = diff.lines().collect();
            let first = (*scroll).min(diff_lines.len().saturating_sub(room));
            for line in diff_lines.iter().skip(first).take(room) {
                let style = match line.chars().next() {
                    Some('+') => theme.ok(),
                    Some('-') => theme.error(),
                    // An effective setting that changes (`  permitrootlogin: no → yes`).
                    _ if line.contains(" → ") => theme.key_hint(),
                    _ => theme.muted(),
                };
                lines.push(Line::styled(line.to_string(), style));
            }
            if diff_lines.len() > room {
                let last = (first + room).min(diff_lines.len());
                lines.push(Line::styled(
                    format!(
                        "lines {}–{last} of {}: ↑/↓ PgUp/PgDn scroll",
                        first + 1,
                        diff_lines.len()
                    ),
                    theme.muted(),
                ));
            }
            lines.push(Line::raw(""));
            lines.push(Line::from(vec![
                Span::styled("y", theme.key_hint()),
                Span::raw(" apply   "),
                Span::styled("n", theme.key_hint()),
                Span::raw(" change nothing and shut the guest down"),
            ]));
            dialog::draw(frame, area, "Apply this sshd_config?", lines, theme);
        }
        Overlay::ConfirmCleanLeftovers(found) => {
            let area = dialog::centred(frame.area(), 76, found.len() as u16 + 7);
            let mut lines = vec![Line::raw(
                "An earlier kiln stopped without shutting these machines down:",
            )];
            for (_, record) in found {
                lines.push(Line::styled(
                    format!(
                        "  QEMU pid {} ({}) on {}",
                        record.qemu_pid,
                        record.purpose,
                        record.image.display()
                    ),
                    theme.warning(),
                ));
            }
            lines.push(Line::raw(""));
            lines.push(Line::from(vec![
                Span::styled("y", theme.key_hint()),
                Span::raw(" stop them (the images are then free)   "),
                Span::styled("n", theme.key_hint()),
                Span::raw(" leave them running"),
            ]));
            dialog::draw(frame, area, "Machines left running", lines, theme);
        }
        Overlay::Log { step, scroll } => draw_log(frame, app, *step, *scroll),
        Overlay::ConfirmStop => {
            let area = dialog::centred(frame.area(), 60, 6);
            dialog::draw(
                frame,
                area,
                "Stop the machine?",
                vec![
                    Line::raw("The running step is stopped and its machine shut down."),
                    Line::raw(""),
                    Line::from(vec![
                        Span::styled("y", theme.key_hint()),
                        Span::raw(" stop   "),
                        Span::styled("n", theme.key_hint()),
                        Span::raw(" keep running"),
                    ]),
                ],
                theme,
            );
        }
    }
}

/// A step's whole log in a large dialog, newest at the bottom, scrolled with ↑↓ PgUp PgDn.
fn draw_log(frame: &mut Frame, app: &App, step: Step, scroll: usize) {
    let theme = &app.theme;
    let area = dialog::centred(
        frame.area(),
        frame.area().width.saturating_sub(4),
        frame.area().height.saturating_sub(2),
    );
    let log = &app.run(step).log;
    let room = area.height.saturating_sub(4) as usize;
    let end = log.len().saturating_sub(scroll);
    let start = end.saturating_sub(room);
    let mut lines: Vec<Line> = log[start..end]
        .iter()
        .map(|(level, text)| Line::styled(text.clone(), step_run::level_style(*level, theme)))
        .collect();
    if log.is_empty() {
        lines.push(Line::styled(
            "nothing logged yet for this step",
            theme.muted(),
        ));
    }
    lines.push(Line::from(hint_spans(
        &app.keymap.footer(Context::Log),
        theme,
    )));
    let title = format!(
        "{} log — lines {}–{} of {}",
        step.title(),
        start + 1,
        end,
        log.len()
    );
    dialog::draw(frame, area, &title, lines, theme);
}

/// The status notice, or the keys that work where the keys go now.
fn footer_line(app: &App) -> Line<'static> {
    let theme = &app.theme;
    if let Some(notice) = &app.notice {
        return Line::styled(format!(" {notice}"), theme.warning());
    }
    let mut spans = vec![Span::raw(" ")];
    spans.extend(hint_spans(&app.keymap.footer(app.key_context()), theme));
    Line::from(spans)
}

/// `key what` pairs, keys highlighted.
fn hint_spans(hints: &[FooterHint], theme: &Theme) -> Vec<Span<'static>> {
    let mut spans = Vec::new();
    for hint in hints {
        spans.push(Span::styled(hint.label(), theme.key_hint()));
        spans.push(Span::styled(format!(" {}  ", hint.what), theme.muted()));
    }
    spans
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod theme_matrix;
