//! The key help overlay (`?` or F1).

use ratatui::Frame;
use ratatui::text::{Line, Span};

use crate::tui::theme::Theme;
use crate::tui::widgets::dialog;

/// Every key the workbench knows, by where it works.
pub const KEYS: [(&str, &str, &str); 20] = [
    ("anywhere", "Ctrl-C", "quit (stops a running step first)"),
    ("anywhere", "F1  ?", "this help (? from the step list)"),
    ("anywhere", "F2", "the whole log of the step on screen"),
    ("anywhere", "mouse", "click a step, a field or a button"),
    ("step list", "↑ ↓  k j", "choose a step"),
    ("step list", "Enter → Tab", "open the step's screen"),
    ("step list", "n", "next step, with the choices carried"),
    ("step list", "d", "doctor: what this host can do"),
    ("step list", "q", "quit (the session file keeps your place)"),
    ("form", "Tab ↓ / Shift-Tab ↑", "next / previous field"),
    ("form", "typing  Ctrl-U", "edit the field / clear it"),
    ("form", "Space ← →", "toggle a checkbox, change a choice"),
    ("form", "Enter", "run the step"),
    ("form", "Esc", "back to the steps; cancel a run"),
    (
        "machine",
        "c / v",
        "type into the serial console / VGA screen",
    ),
    ("machine", "Ctrl-]", "give the keyboard back to kiln"),
    (
        "machine",
        "t",
        "switch console and screen (narrow terminals)",
    ),
    ("machine", "Esc", "stop the machine (asks first)"),
    ("failed", "r / s", "retry the step / stop its kept machine"),
    ("dialogs", "y / n, Esc", "answer; close an overlay"),
];

pub fn draw(frame: &mut Frame, theme: &Theme) {
    let area = dialog::centred(frame.area(), 78, KEYS.len() as u16 + 3);
    let mut lines = Vec::new();
    for (place, key, what) in KEYS {
        lines.push(Line::from(vec![
            Span::styled(format!("{place:<10}"), theme.muted()),
            Span::styled(format!("{key:<21}"), theme.key_hint()),
            Span::raw(what),
        ]));
    }
    lines.push(Line::styled("Esc or ? closes this help.", theme.muted()));
    dialog::draw(frame, area, "Keys", lines, theme);
}
