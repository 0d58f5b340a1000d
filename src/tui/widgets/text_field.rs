//! A one-line text input: typing appends, Backspace deletes.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Frame;
use ratatui::layout::{Position, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::tui::theme::Theme;

#[derive(Clone, Default)]
pub struct TextField {
    pub value: String,
    /// Show bullets instead of the text (passwords, tokens).
    pub masked: bool,
}

impl std::fmt::Debug for TextField {
    /// A masked field (a password, a token) never prints what was typed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = if self.masked { "<masked>" } else { &self.value };
        f.debug_struct("TextField")
            .field("value", &value)
            .field("masked", &self.masked)
            .finish()
    }
}

impl TextField {
    pub fn new(value: impl Into<String>) -> TextField {
        TextField {
            value: value.into(),
            masked: false,
        }
    }

    /// Apply an editing key; returns whether the key was used.
    pub fn edit(&mut self, key: KeyEvent) -> bool {
        match key.code {
            KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => {
                self.value.push(c);
                true
            }
            KeyCode::Backspace => {
                self.value.pop();
                true
            }
            _ => false,
        }
    }

    /// Draw `label  [value]` on one line; the cursor sits after the text when focused.
    pub fn draw(&self, frame: &mut Frame, area: Rect, label: &str, focused: bool, theme: &Theme) {
        const LABEL_WIDTH: u16 = 10;
        let shown: String = if self.masked {
            "•".repeat(self.value.chars().count())
        } else {
            self.value.clone()
        };
        let width = area.width.saturating_sub(LABEL_WIDTH + 1) as usize;
        // Keep the end of a long value visible, where typing happens.
        let count = shown.chars().count();
        let visible: String = if count >= width {
            shown.chars().skip(count + 1 - width.max(1)).collect()
        } else {
            shown
        };
        let padded = format!("{visible:<width$}");
        let line = Line::from(vec![
            Span::styled(
                format!("{label:<w$}", w = LABEL_WIDTH as usize),
                theme.text(),
            ),
            Span::styled(padded, theme.input(focused)),
        ]);
        frame.render_widget(Paragraph::new(line), area);
        if focused {
            let x = area.x + LABEL_WIDTH + visible.chars().count() as u16;
            frame.set_cursor_position(Position::new(x.min(area.right().saturating_sub(1)), area.y));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn editing() {
        let mut field = TextField::new("10");
        assert!(field.edit(key(KeyCode::Char('G'))));
        assert_eq!(field.value, "10G");
        field.edit(key(KeyCode::Backspace));
        assert_eq!(field.value, "10");
        // Control chords are not text (Ctrl-U is the keymap's ClearField).
        assert!(!field.edit(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL)));
        assert_eq!(field.value, "10");
        assert!(!field.edit(key(KeyCode::Enter)));
    }
}
