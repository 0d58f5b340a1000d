//! A form of labelled fields — text, choice, checkbox, button — with Tab order, for the step
//! screens that ask several things before they run.

use crossterm::event::KeyEvent;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::path_completion;
use super::text_field::TextField;
use crate::engine::task::Level;
use crate::tui::theme::Theme;

/// A line of advice under a field (size parsed, file exists, ISO bootable…), by field key.
pub type Hints<'a> = &'a dyn Fn(&str) -> Option<(Level, String)>;

/// The hint key whose text the button shows on its own line, in place of "(Enter from any
/// field)": what the form still needs before the step can start.
pub const BUTTON_NEEDS: &str = "run-needs";

/// What keeps a form from starting its step: a field left empty or holding what the step
/// would refuse. The step is not started (nothing is recorded); the field is focused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormProblem {
    /// The field to fix.
    pub field: &'static str,
    /// What is missing, short, for the button: "the installer ISO".
    pub needs: String,
    /// The whole message, for under the field and the result panel.
    pub message: String,
}

impl FormProblem {
    pub fn new(field: &'static str, needs: &str, message: impl Into<String>) -> FormProblem {
        FormProblem {
            field,
            needs: needs.to_string(),
            message: message.into(),
        }
    }

    /// A field left empty.
    pub fn missing(field: &'static str, needs: &str, how: &str) -> FormProblem {
        FormProblem::new(field, needs, format!("{needs} is missing: {how}"))
    }
}

/// Rows a hint takes under its field (hints wrap).
const HINT_ROWS: u16 = 2;

/// What a field holds.
#[derive(Debug, Clone)]
pub enum FieldKind {
    Text(TextField),
    /// One of a few options; Space or ←/→ cycles.
    Choice(Vec<&'static str>, usize),
    Check(bool),
    Button,
}

/// One line of the form.
#[derive(Debug, Clone)]
pub struct Field {
    /// Stable name the step code reads the value by.
    pub key: &'static str,
    pub label: &'static str,
    pub kind: FieldKind,
    /// Shown only while the choice field named first has one of these options (a Publish
    /// target's own fields); `None`: always shown.
    pub shown_for: Option<(&'static str, &'static [&'static str])>,
    /// A file or directory path: Tab completes it, `~` means home, the hint says what is there.
    pub is_path: bool,
}

impl Field {
    pub fn text(key: &'static str, label: &'static str, value: &str) -> Field {
        Field {
            key,
            label,
            kind: FieldKind::Text(TextField::new(value)),
            shown_for: None,
            is_path: false,
        }
    }

    /// A text field holding a path (see [`Field::is_path`]).
    pub fn path(key: &'static str, label: &'static str, value: &str) -> Field {
        Field {
            is_path: true,
            ..Field::text(key, label, value)
        }
    }

    pub fn secret(key: &'static str, label: &'static str) -> Field {
        let mut field = TextField::new("");
        field.masked = true;
        Field {
            key,
            label,
            kind: FieldKind::Text(field),
            shown_for: None,
            is_path: false,
        }
    }

    pub fn choice(key: &'static str, label: &'static str, options: Vec<&'static str>) -> Field {
        Field {
            key,
            label,
            kind: FieldKind::Choice(options, 0),
            shown_for: None,
            is_path: false,
        }
    }

    pub fn check(key: &'static str, label: &'static str) -> Field {
        Field {
            key,
            label,
            kind: FieldKind::Check(false),
            shown_for: None,
            is_path: false,
        }
    }

    /// Show this field only while the choice `choice` is one of `options`.
    pub fn only_for(mut self, choice: &'static str, options: &'static [&'static str]) -> Field {
        self.shown_for = Some((choice, options));
        self
    }

    pub fn button(label: &'static str) -> Field {
        Field {
            key: "run",
            label,
            kind: FieldKind::Button,
            shown_for: None,
            is_path: false,
        }
    }
}

/// Fields in Tab order and which one has focus.
#[derive(Debug, Clone)]
pub struct Form {
    pub fields: Vec<Field>,
    pub focused: usize,
    /// Each field's row at the last draw, for mouse clicks.
    drawn: std::cell::RefCell<Vec<(Rect, usize)>>,
    /// The candidates the last Tab left in path field `.0`, shown as its hint until the text
    /// or the focus changes.
    completion_note: Option<(usize, String)>,
}

const LABEL_WIDTH: usize = 10;

impl Form {
    pub fn new(fields: Vec<Field>) -> Form {
        Form {
            fields,
            focused: 0,
            drawn: Default::default(),
            completion_note: None,
        }
    }

    /// A click at `at`: focuses the field drawn there; a checkbox toggles, a choice moves on.
    /// `Some(true)` when it was the button (run the step), `None` when it hit no field.
    pub fn click(&mut self, at: ratatui::layout::Position) -> Option<bool> {
        let index = self
            .drawn
            .borrow()
            .iter()
            .find(|(row, _)| row.contains(at))
            .map(|(_, index)| *index)?;
        self.focused = index;
        match &mut self.fields[index].kind {
            FieldKind::Button => return Some(true),
            FieldKind::Check(on) => *on = !*on,
            FieldKind::Choice(options, chosen) => *chosen = (*chosen + 1) % options.len(),
            FieldKind::Text(_) => {}
        }
        Some(false)
    }

    /// Whether field `index` is on screen now: its choice allows it, and that choice is on
    /// screen itself (a preset's fields go when the way in that offers presets does).
    pub fn is_shown(&self, index: usize) -> bool {
        match self.fields[index].shown_for {
            None => true,
            Some((choice, options)) => {
                let choice_shown = self
                    .fields
                    .iter()
                    .position(|field| field.key == choice)
                    .is_none_or(|at| at != index && self.is_shown(at));
                choice_shown && options.contains(&self.choice(choice))
            }
        }
    }

    /// The focused field, for the keys that depend on its kind.
    pub fn focused_field(&self) -> &Field {
        &self.fields[self.focused]
    }

    /// Focus the field with this key (when it is shown).
    pub fn focus(&mut self, key: &str) {
        if let Some(index) =
            (0..self.fields.len()).find(|&i| self.is_shown(i) && self.fields[i].key == key)
        {
            self.focused = index;
            self.completion_note = None;
        }
    }

    /// Put the cursor where typing is needed: the first empty text field, if any (a new
    /// user types the ISO path into the ISO field, not into the already-filled Disk).
    pub fn focus_first_empty(&mut self) {
        let empty = (0..self.fields.len()).find(|&i| {
            self.is_shown(i)
                && matches!(&self.fields[i].kind, FieldKind::Text(text) if text.value.is_empty())
        });
        if let Some(index) = empty {
            self.focused = index;
        }
    }

    pub fn next_field(&mut self) {
        self.step_focus(1);
    }

    /// Tab. In a path field: complete the path as far as the file system allows; when several
    /// entries match, list them (a second Tab moves on); with nothing (left) to complete, or
    /// nothing typed, move on.
    /// In any other field: the next field.
    pub fn complete_or_next_field(&mut self) {
        let index = self.focused;
        let Field {
            kind: FieldKind::Text(field),
            is_path: true,
            ..
        } = &mut self.fields[index]
        else {
            return self.next_field();
        };
        // Nothing typed, nothing to complete: Tab walks through an empty form as it always did.
        if field.value.trim().is_empty() {
            return self.next_field();
        }
        let completion = path_completion::complete(&field.value);
        let changed = completion.text != field.value;
        field.value = completion.text.clone();
        let listed_already = self
            .completion_note
            .as_ref()
            .is_some_and(|(i, _)| *i == index);
        if completion.candidates.len() > 1 && (changed || !listed_already) {
            self.completion_note = Some((index, completion.candidates_hint()));
        } else if !changed {
            self.next_field();
        }
    }

    pub fn prev_field(&mut self) {
        self.step_focus(self.fields.len() - 1);
    }

    /// Move the focus `by` places around the ring of fields, skipping hidden ones.
    fn step_focus(&mut self, by: usize) {
        self.completion_note = None;
        let n = self.fields.len();
        for _ in 0..n {
            self.focused = (self.focused + by) % n;
            if self.is_shown(self.focused) {
                return;
            }
        }
    }

    /// Empty the focused text field.
    pub fn clear_field(&mut self) {
        self.completion_note = None;
        if let FieldKind::Text(field) = &mut self.fields[self.focused].kind {
            field.value.clear();
        }
    }

    /// Toggle the focused checkbox, or move the focused choice to its next option.
    pub fn change_choice(&mut self) {
        match &mut self.fields[self.focused].kind {
            FieldKind::Check(on) => *on = !*on,
            FieldKind::Choice(options, index) => *index = (*index + 1) % options.len(),
            FieldKind::Text(_) | FieldKind::Button => {}
        }
    }

    /// Move the focused choice back to its previous option.
    pub fn prev_choice(&mut self) {
        if let FieldKind::Choice(options, index) = &mut self.fields[self.focused].kind {
            *index = (*index + options.len() - 1) % options.len();
        }
    }

    /// Typing into the focused text field (other fields take no text).
    pub fn type_key(&mut self, key: KeyEvent) {
        if let FieldKind::Text(field) = &mut self.fields[self.focused].kind
            && field.edit(key)
        {
            self.completion_note = None;
        }
    }

    fn field(&self, key: &str) -> &Field {
        self.fields
            .iter()
            .find(|f| f.key == key)
            .unwrap_or_else(|| panic!("form has no field {key}"))
    }

    /// The trimmed text of a text field; a path field's `~` is the home directory.
    pub fn text(&self, key: &str) -> String {
        let field = self.field(key);
        match &field.kind {
            FieldKind::Text(text) if field.is_path => {
                path_completion::expand_home(text.value.trim())
            }
            FieldKind::Text(text) => text.value.trim().to_string(),
            _ => String::new(),
        }
    }

    /// A text field's value as typed (secrets are not trimmed).
    pub fn raw(&self, key: &str) -> String {
        match &self.field(key).kind {
            FieldKind::Text(field) => field.value.clone(),
            _ => String::new(),
        }
    }

    pub fn set_checked(&mut self, key: &str, on: bool) {
        if let Some(Field {
            kind: FieldKind::Check(value),
            ..
        }) = self.fields.iter_mut().find(|f| f.key == key)
        {
            *value = on;
        }
    }

    pub fn set_text(&mut self, key: &str, value: &str) {
        if let Some(Field {
            kind: FieldKind::Text(field),
            ..
        }) = self.fields.iter_mut().find(|f| f.key == key)
        {
            field.value = value.to_string();
        }
    }

    /// Select `option` in a choice field (unknown options are ignored).
    pub fn set_choice(&mut self, key: &str, option: &str) {
        if let Some(FieldKind::Choice(options, index)) = self
            .fields
            .iter_mut()
            .find(|f| f.key == key)
            .map(|f| &mut f.kind)
            && let Some(at) = options.iter().position(|o| *o == option)
        {
            *index = at;
        }
    }

    pub fn checked(&self, key: &str) -> bool {
        matches!(self.field(key).kind, FieldKind::Check(true))
    }

    pub fn choice(&self, key: &str) -> &'static str {
        match &self.field(key).kind {
            FieldKind::Choice(options, index) => options[*index],
            _ => "",
        }
    }

    /// Rows the form needs with these hints.
    pub fn height(&self, hints: Hints) -> u16 {
        self.fields
            .iter()
            .enumerate()
            .filter(|(i, _)| self.is_shown(*i))
            .map(|(i, _)| {
                if self.hint(i, hints).is_some() {
                    1 + HINT_ROWS
                } else {
                    1
                }
            })
            .sum()
    }

    /// The line under field `index`: the candidates of the last Tab, else the screen's own
    /// hint, else (for a path) what is at the path.
    fn hint(&self, index: usize, hints: Hints) -> Option<(Level, String)> {
        if let Some((_, note)) = self.completion_note.as_ref().filter(|(i, _)| *i == index) {
            return Some((Level::Info, note.clone()));
        }
        let field = &self.fields[index];
        hints(field.key).or_else(|| {
            let typed = self.text(field.key);
            (field.is_path && !typed.is_empty())
                .then(|| (Level::Info, path_completion::describe(&typed)))
        })
    }

    /// One line per field; the focused one highlighted, the cursor in a focused text field.
    pub fn draw(&self, frame: &mut Frame, area: Rect, focused: bool, theme: &Theme) {
        self.draw_with_hints(frame, area, focused, theme, &|_| None);
    }

    /// Like [`Form::draw`], with each field's hint wrapped under it.
    pub fn draw_with_hints(
        &self,
        frame: &mut Frame,
        area: Rect,
        focused: bool,
        theme: &Theme,
        hints: Hints,
    ) {
        let mut drawn = self.drawn.borrow_mut();
        drawn.clear();
        let mut y = area.y;
        for (i, field) in self.fields.iter().enumerate() {
            if !self.is_shown(i) {
                continue;
            }
            if y >= area.bottom() {
                break;
            }
            let row = Rect {
                y,
                height: 1,
                ..area
            };
            y += 1;
            drawn.push((row, i));
            if let Some((level, text)) = self.hint(i, hints) {
                let style = match level {
                    Level::Info => theme.muted(),
                    Level::Warn => theme.warning(),
                };
                let hint = Rect {
                    x: area.x + LABEL_WIDTH as u16,
                    y,
                    width: area.width.saturating_sub(LABEL_WIDTH as u16),
                    height: HINT_ROWS.min(area.bottom().saturating_sub(y)),
                };
                frame.render_widget(
                    Paragraph::new(Line::styled(text, style))
                        .wrap(ratatui::widgets::Wrap { trim: true }),
                    hint,
                );
                y += HINT_ROWS;
            }
            let here = focused && i == self.focused;
            let pad = " ".repeat(LABEL_WIDTH);
            let line = match &field.kind {
                FieldKind::Text(text) => {
                    text.draw(frame, row, field.label, here, theme);
                    continue;
                }
                FieldKind::Choice(options, index) => {
                    let mut spans = vec![Span::styled(
                        format!("{:<LABEL_WIDTH$}", field.label),
                        theme.text(),
                    )];
                    for (j, option) in options.iter().enumerate() {
                        let style = match (j == *index, here) {
                            (true, true) => theme.input(true),
                            (true, false) => theme.selected(),
                            _ => theme.muted(),
                        };
                        spans.push(Span::styled(format!(" {option} "), style));
                        spans.push(Span::raw(" "));
                    }
                    Line::from(spans)
                }
                FieldKind::Check(on) => Line::from(vec![
                    Span::raw(pad),
                    Span::styled(
                        format!("{} {}", if *on { "[x]" } else { "[ ]" }, field.label),
                        if here {
                            theme.input(true)
                        } else {
                            theme.text()
                        },
                    ),
                ]),
                FieldKind::Button => {
                    let needs = match hints(BUTTON_NEEDS) {
                        Some((_, needs)) => {
                            Span::styled(format!("  needs {needs}"), theme.warning())
                        }
                        None => Span::styled("  (Enter from any field)", theme.muted()),
                    };
                    Line::from(vec![
                        Span::raw(pad),
                        Span::styled(
                            format!("[ {} ]", field.label),
                            if here {
                                theme.selected()
                            } else {
                                theme.key_hint()
                            },
                        ),
                        needs,
                    ])
                }
            };
            frame.render_widget(Paragraph::new(line), row);
        }
    }
}

/// A step screen's titled box; returns the area inside it.
pub fn screen_frame(
    frame: &mut Frame,
    area: Rect,
    title: &str,
    focused: bool,
    theme: &Theme,
) -> Rect {
    use ratatui::widgets::{Block, Borders};
    let block = Block::default()
        .borders(Borders::ALL)
        .title(Line::styled(format!(" {title} "), theme.title()))
        .border_style(theme.border(focused));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    inner
}

/// A step screen's frame: a titled box with the form (and its hints) at the top. Returns the
/// status row under the form and the area below it for results and the log.
pub fn framed(
    frame: &mut Frame,
    area: Rect,
    title: &str,
    form: &Form,
    hints: Hints,
    focused: bool,
    theme: &Theme,
) -> (Rect, Rect) {
    use ratatui::layout::{Constraint, Layout};
    let inner = screen_frame(frame, area, title, focused, theme);
    let [top, _, status, rest] = Layout::vertical([
        Constraint::Length(form.height(hints)),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(0),
    ])
    .areas(inner);
    form.draw_with_hints(frame, top, focused, theme, hints);
    (status, rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossterm::event::{KeyCode, KeyModifiers};

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn tab_order_editing_and_values() {
        let mut form = Form::new(vec![
            Field::text("name", "Name", "a"),
            Field::choice("to", "Target", vec!["djinn", "offline"]),
            Field::check("compact", "Compact"),
            Field::button("Go"),
        ]);
        form.type_key(key(KeyCode::Char('b')));
        assert_eq!(form.text("name"), "ab");
        form.next_field();
        form.type_key(key(KeyCode::Char('x')));
        form.change_choice();
        assert_eq!(form.choice("to"), "offline");
        form.next_field();
        form.change_choice();
        assert!(form.checked("compact"));
        form.prev_field();
        form.prev_choice();
        assert_eq!(form.choice("to"), "djinn");
        form.next_field();
        form.next_field();
        form.next_field();
        assert_eq!(form.focused_field().key, "name");
        form.clear_field();
        assert_eq!(form.text("name"), "");
    }

    #[test]
    fn tab_in_a_path_field_completes_lists_then_moves_on() {
        let dir = tempfile::tempdir().unwrap();
        for file in ["debian-12.iso", "debian-13.iso"] {
            std::fs::write(dir.path().join(file), b"x").unwrap();
        }
        let typed = format!("{}/d", dir.path().display());
        let mut form = Form::new(vec![Field::path("iso", "ISO", &typed), Field::button("Go")]);
        let no_hints: Hints = &|_| None;
        // First Tab: extended to what both names share, and both listed under the field.
        form.complete_or_next_field();
        assert_eq!(
            form.text("iso"),
            format!("{}/debian-1", dir.path().display())
        );
        assert_eq!(form.focused, 0);
        let (_, hint) = form.hint(0, no_hints).unwrap();
        assert!(hint.contains("debian-12.iso  debian-13.iso"), "{hint}");
        // Second Tab with nothing more to add: the next field.
        form.complete_or_next_field();
        assert_eq!(form.focused, 1);
        assert_eq!(form.completion_note, None);
        // Typing one more character makes the match unique.
        form.focused = 0;
        form.type_key(key(KeyCode::Char('3')));
        form.complete_or_next_field();
        assert_eq!(
            form.text("iso"),
            format!("{}/debian-13.iso", dir.path().display())
        );
        assert_eq!(form.focused, 0);
        let (_, hint) = form.hint(0, no_hints).unwrap();
        assert_eq!(hint, "a file, 1 B");
    }

    #[test]
    fn clicks_land_on_the_field_drawn_there() {
        use ratatui::{Terminal, backend::TestBackend, layout::Position};
        let mut form = Form::new(vec![
            Field::text("name", "Name", "a"),
            Field::check("compact", "Compact"),
            Field::button("Go"),
        ]);
        let theme = Theme::built_in("default");
        let mut terminal = Terminal::new(TestBackend::new(40, 6)).unwrap();
        terminal
            .draw(|f| form.draw(f, Rect::new(2, 1, 30, 4), true, &theme))
            .unwrap();
        assert_eq!(form.click(Position::new(5, 2)), Some(false));
        assert!(form.checked("compact"));
        assert_eq!(form.focused, 1);
        assert_eq!(form.click(Position::new(12, 3)), Some(true));
        assert_eq!(form.click(Position::new(5, 5)), None);
        assert_eq!(form.click(Position::new(0, 1)), None);
    }
}
