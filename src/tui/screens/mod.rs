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
use super::steps::machine_pane::KeyTarget;
use super::widgets::dialog;
use crate::engine::Step;

/// Draw the whole workbench for the current state.
pub fn draw(frame: &mut Frame, app: &App) {
    let theme = &app.theme;
    frame.render_widget(
        ratatui::widgets::Block::default().style(theme.text()),
        frame.area(),
    );
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
        Overlay::Help => help::draw(frame, theme),
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
        Overlay::ConfirmDiff(diff) => {
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
            let room = area.height.saturating_sub(8) as usize;
            let diff_lines: Vec<&str> = diff.lines().collect();
            for line in diff_lines.iter().take(room) {
                let style = match line.chars().next() {
                    Some('+') => theme.ok(),
                    Some('-') => theme.error(),
                    _ => theme.muted(),
                };
                lines.push(Line::styled(line.to_string(), style));
            }
            if diff_lines.len() > room {
                lines.push(Line::styled(
                    format!(
                        "… {} more lines (all of it is in the log)",
                        diff_lines.len() - room
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
    lines.push(Line::from(vec![
        Span::styled("↑↓ PgUp PgDn", theme.key_hint()),
        Span::styled(" scroll   ", theme.muted()),
        Span::styled("Esc", theme.key_hint()),
        Span::styled(" close", theme.muted()),
    ]));
    let title = format!(
        "{} log — lines {}–{} of {}",
        step.title(),
        start + 1,
        end,
        log.len()
    );
    dialog::draw(frame, area, &title, lines, theme);
}

fn footer_line(app: &App) -> Line<'static> {
    let theme = &app.theme;
    if let Some(notice) = &app.notice {
        return Line::styled(format!(" {notice}"), theme.warning());
    }
    let machine = app.machine(app.selected_step());
    let held = app.run(app.selected_step()).held.is_some();
    let hints: &[(&str, &str)] = match (app.focus, app.is_running()) {
        _ if machine.is_some_and(|m| m.keys_to != KeyTarget::Kiln) => {
            &[("Ctrl-]", "give the keyboard back to kiln")]
        }
        _ if matches!(app.overlay, Overlay::Log { .. }) => {
            &[("↑↓", "scroll"), ("Esc", "close log")]
        }
        (Focus::Screen, true) if held => &[
            ("r", "retry"),
            ("c", "console"),
            ("v", "screen"),
            ("s", "stop machine"),
            ("F2", "log"),
        ],
        (Focus::Screen, true) if machine.is_some_and(|m| m.view.is_some()) => &[
            ("c", "type into console"),
            ("v", "type into screen"),
            ("t", "toggle pane"),
            ("F2", "log"),
            ("Esc", "stop"),
        ],
        (_, true) => &[("F2", "log"), ("Esc", "stop"), ("Ctrl-C", "quit")],
        (Focus::Steps, _) => &[
            ("↑↓", "step"),
            ("Enter", "open"),
            ("n", "next step"),
            ("F2", "log"),
            ("d", "doctor"),
            ("?", "help"),
            ("q", "quit"),
        ],
        (Focus::Screen, _) => &[
            ("Tab", "next field"),
            ("Space", "toggle"),
            ("Enter", "run"),
            ("F2", "log"),
            ("Esc", "back"),
            ("F1", "help"),
        ],
    };
    let mut spans = vec![Span::raw(" ")];
    for (key, what) in hints {
        spans.push(Span::styled(*key, theme.key_hint()));
        spans.push(Span::styled(format!(" {what}  "), theme.muted()));
    }
    Line::from(spans)
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod theme_matrix;
