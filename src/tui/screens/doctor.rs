//! The doctor panel (`d`): the host report with a fix for each problem.

use ratatui::Frame;
use ratatui::text::{Line, Span};

use crate::engine::host::{HostReport, Verdict};
use crate::tui::theme::Theme;
use crate::tui::widgets::dialog;

pub fn draw(frame: &mut Frame, report: Option<&HostReport>, theme: &Theme) {
    let area = dialog::centred(frame.area(), 90, 16);
    let mut lines = Vec::new();
    match report {
        None => lines.push(Line::styled("examining this host…", theme.muted())),
        Some(report) => {
            for check in &report.checks {
                let (mark, style) = match check.verdict {
                    Verdict::Ok => ("ok  ", theme.ok()),
                    Verdict::Warn => ("warn", theme.warning()),
                    Verdict::Fail => ("FAIL", theme.error()),
                };
                lines.push(Line::from(vec![
                    Span::styled(format!("{mark} "), style),
                    Span::styled(format!("{:<19}", check.name), theme.text()),
                    Span::raw(check.detail.clone()),
                ]));
                if let Some(fix) = &check.fix {
                    lines.push(Line::styled(format!("     fix: {fix}"), theme.key_hint()));
                }
            }
        }
    }
    lines.push(Line::styled("Esc or d closes this panel.", theme.muted()));
    dialog::draw(frame, area, "Doctor", lines, theme);
}
