//! The key help overlay (F1, or `?` from the step list), drawn from the keymap.

use ratatui::Frame;
use ratatui::text::{Line, Span};

use crate::tui::keymap::{HelpRow, Keymap};
use crate::tui::theme::Theme;
use crate::tui::widgets::dialog;

pub fn draw(frame: &mut Frame, keymap: &Keymap, theme: &Theme) {
    let mut rows = keymap.help_rows();
    // Not a key, so not in the keymap; it sits with the other things that work anywhere.
    let mouse = HelpRow {
        place: "anywhere",
        keys: "mouse".into(),
        what: "click a step, a field or a button".into(),
    };
    let after_anywhere = rows.iter().take_while(|r| r.place == "anywhere").count();
    rows.insert(after_anywhere, mouse);
    let area = dialog::centred(frame.area(), 78, rows.len() as u16 + 2);
    let lines = rows
        .into_iter()
        .map(|row| {
            Line::from(vec![
                Span::styled(format!("{:<10}", row.place), theme.muted()),
                Span::styled(format!("{:<21}", row.keys), theme.key_hint()),
                Span::raw(row.what),
            ])
        })
        .collect();
    dialog::draw(frame, area, "Keys", lines, theme);
}
