//! Reads a boot command's source, left to right, into tokens; by hand, so that every mistake is
//! reported at the line and column it was written at.

use super::tags::{is_tag_name, tag_action};
use super::{Action, BootCommandError, Position, Problem, Shown, Token};
use crate::engine::guest::keys::key_for_char;

/// Reads the source once, left to right, into tokens.
pub(super) struct Parser {
    /// The source without its line breaks (they are not typed).
    chars: Vec<char>,
    /// Where each of `chars` was written.
    at: Vec<Position>,
    next: usize,
    tokens: Vec<Token>,
    /// Keys held by `<…On>` and not released yet.
    held: Vec<Held>,
}

struct Held {
    key: &'static str,
    name: String,
    at: Position,
}

impl Parser {
    pub(super) fn new(source: &str) -> Parser {
        let mut chars = Vec::new();
        let mut at = Vec::new();
        let (mut line, mut column) = (1, 1);
        for c in source.chars() {
            match c {
                '\n' => (line, column) = (line + 1, 1),
                // The first half of a Windows line break: not typed either.
                '\r' => column += 1,
                _ => {
                    chars.push(c);
                    at.push(Position { line, column });
                    column += 1;
                }
            }
        }
        Parser {
            chars,
            at,
            next: 0,
            tokens: Vec::new(),
            held: Vec::new(),
        }
    }

    pub(super) fn run(mut self) -> Result<Vec<Token>, BootCommandError> {
        while let Some(c) = self.peek() {
            if self.looking_at("{{") {
                self.placeholder()?;
            } else if c == '<' {
                self.angle_bracket()?;
            } else {
                self.literal(self.next)?;
                self.next += 1;
            }
        }
        if let Some(held) = self.held.first() {
            return Err(self.error_at(held.at, Problem::NeverReleased(held.name.clone())));
        }
        Ok(self.tokens)
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.next).copied()
    }

    fn looking_at(&self, text: &str) -> bool {
        text.chars()
            .enumerate()
            .all(|(offset, c)| self.chars.get(self.next + offset) == Some(&c))
    }

    fn position(&self, index: usize) -> Position {
        self.at.get(index).copied().unwrap_or_else(|| self.end())
    }

    /// Just after the last character, for what is missing at the end.
    fn end(&self) -> Position {
        self.at
            .last()
            .map_or(Position { line: 1, column: 1 }, |last| Position {
                line: last.line,
                column: last.column + 1,
            })
    }

    fn error_at(&self, at: Position, problem: Problem) -> BootCommandError {
        BootCommandError { at, problem }
    }

    fn error(&self, index: usize, problem: Problem) -> BootCommandError {
        self.error_at(self.position(index), problem)
    }

    /// The character at `index`, typed as text.
    fn literal(&mut self, index: usize) -> Result<(), BootCommandError> {
        self.literal_char(self.chars[index], index)
    }

    /// `<name>`: a key, a hold, a release or a wait. Anything else starting with `<` is text.
    fn angle_bracket(&mut self) -> Result<(), BootCommandError> {
        let start = self.next;
        let Some((written, after)) = self.tag_at(start) else {
            self.reject_spaced_tag(start)?;
            self.literal(start)?;
            self.next += 1;
            return Ok(());
        };
        let action = tag_action(&written).map_err(|problem| self.error(start, problem))?;
        self.track_held(&action, start)?;
        self.tokens.push(Token::Fixed(action));
        self.next = after;
        Ok(())
    }

    /// The name inside `<…>` at `start`, and the index after its `>`, if it is a tag: letters
    /// and digits, plus the `.` and `µ` a wait's duration may have.
    fn tag_at(&self, start: usize) -> Option<(String, usize)> {
        let inside: String = self.chars[start + 1..]
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric() || **c == '.' || **c == 'µ')
            .collect();
        let close = start + 1 + inside.chars().count();
        let closed = self.chars.get(close) == Some(&'>');
        (closed && is_tag_name(&inside)).then_some((inside, close + 1))
    }

    /// `<wait 5>` or `<left Ctrl>` would be typed as text, which is never what was meant.
    fn reject_spaced_tag(&self, start: usize) -> Result<(), BootCommandError> {
        const LONGEST_TAG: usize = 24;
        let inside: String = self.chars[start + 1..]
            .iter()
            .take(LONGEST_TAG)
            .take_while(|c| **c != '>' && **c != '<')
            .collect();
        let closed = self.chars.get(start + 1 + inside.chars().count()) == Some(&'>');
        let spaced_inside = inside.contains(' ') && inside.trim() == inside;
        if !closed || !spaced_inside {
            return Ok(());
        }
        let meant: String = inside.chars().filter(|c| *c != ' ').collect();
        if is_tag_name(&meant) && tag_action(&meant).is_ok() {
            let problem = Problem::SpacesInTag {
                written: inside,
                meant,
            };
            return Err(self.error(start, problem));
        }
        Ok(())
    }

    /// Holds and releases must pair up: a key left down garbles everything typed after it.
    fn track_held(&mut self, action: &Action, start: usize) -> Result<(), BootCommandError> {
        let at = self.position(start);
        match action {
            Action::Hold { key, shown } => {
                let name = held_name(shown);
                if self.held.iter().any(|held| held.key == *key) {
                    return Err(self.error_at(at, Problem::AlreadyHeld(name)));
                }
                self.held.push(Held { key, name, at });
            }
            Action::Release { key, shown } => {
                let Some(index) = self.held.iter().position(|held| held.key == *key) else {
                    return Err(self.error_at(at, Problem::NotHeld(held_name(shown))));
                };
                self.held.remove(index);
            }
            _ => {}
        }
        Ok(())
    }

    /// `{{ .Name }}`, `{{ env "VAR" }}` or `{{ "text" }}`.
    fn placeholder(&mut self) -> Result<(), BootCommandError> {
        let start = self.next;
        let at = self.position(start);
        self.next += 2;
        self.skip_spaces();
        match self.peek() {
            None => return Err(self.error(start, Problem::UnclosedPlaceholder)),
            Some('.') => {
                self.next += 1;
                let name = self.identifier();
                if name.is_empty() {
                    self.skip_spaces();
                    let found = self.found();
                    return Err(self.error(self.next, Problem::ExpectedPlaceholder(found)));
                }
                self.tokens.push(Token::Name { name, at });
            }
            Some('"' | '`') => {
                for (c, index) in self.quoted()? {
                    self.literal_char(c, index)?;
                }
            }
            Some(c) if c.is_alphabetic() || c == '_' => {
                let function_at = self.next;
                let function = self.identifier();
                if function != "env" {
                    return Err(self.error(function_at, Problem::UnknownFunction(function)));
                }
                let variable = self.env_variable()?;
                self.tokens.push(Token::Env { variable, at });
            }
            Some(_) => {
                let found = self.found();
                return Err(self.error(self.next, Problem::ExpectedPlaceholder(found)));
            }
        }
        self.close_placeholder(start)
    }

    /// `c`, written at `index`, typed as text.
    fn literal_char(&mut self, c: char, index: usize) -> Result<(), BootCommandError> {
        let keys = key_for_char(c).ok_or_else(|| self.error(index, Problem::NoKey(c)))?;
        let shown = Shown::Char(c);
        self.tokens
            .push(Token::Fixed(Action::Press { keys, shown }));
        Ok(())
    }

    /// The `"VAR"` after `env`.
    fn env_variable(&mut self) -> Result<String, BootCommandError> {
        self.skip_spaces();
        match self.peek() {
            None => Err(self.error(self.next, Problem::UnclosedPlaceholder)),
            Some('"' | '`') => {
                let quote_at = self.next;
                let variable: String = self.quoted()?.into_iter().map(|(c, _)| c).collect();
                if variable.is_empty() {
                    let problem = Problem::ExpectedVariable("\"\"".to_string());
                    return Err(self.error(quote_at, problem));
                }
                Ok(variable)
            }
            Some(_) => {
                let found = self.found();
                Err(self.error(self.next, Problem::ExpectedVariable(found)))
            }
        }
    }

    fn close_placeholder(&mut self, start: usize) -> Result<(), BootCommandError> {
        self.skip_spaces();
        if self.looking_at("}}") {
            self.next += 2;
            return Ok(());
        }
        if self.peek().is_none() {
            return Err(self.error(start, Problem::UnclosedPlaceholder));
        }
        let found = self.found();
        Err(self.error(self.next, Problem::ExpectedClose(found)))
    }

    fn skip_spaces(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.next += 1;
        }
    }

    /// A Go identifier: letters, digits and `_`.
    fn identifier(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek().filter(|c| c.is_alphanumeric() || *c == '_') {
            name.push(c);
            self.next += 1;
        }
        name
    }

    /// The next few characters, quoted for a message about what was found instead.
    fn found(&self) -> String {
        let word: String = self.chars[self.next..]
            .iter()
            .take_while(|c| !c.is_whitespace())
            .take(12)
            .collect();
        if word.is_empty() {
            "the end".to_string()
        } else {
            format!("`{word}`")
        }
    }

    /// A Go string: `"…"` with `\"` and `\\`, or `` `…` `` taken as is. Each character comes
    /// with its index, for errors about it.
    fn quoted(&mut self) -> Result<Vec<(char, usize)>, BootCommandError> {
        let open = self.next;
        let quote = self.chars[open];
        self.next += 1;
        let mut text = Vec::new();
        loop {
            let index = self.next;
            let c = self
                .peek()
                .ok_or_else(|| self.error(open, Problem::UnclosedQuote(quote)))?;
            self.next += 1;
            match c {
                c if c == quote => return Ok(text),
                '\\' if quote == '"' => {
                    let escaped = self
                        .peek()
                        .ok_or_else(|| self.error(open, Problem::UnclosedQuote(quote)))?;
                    if escaped != '"' && escaped != '\\' {
                        return Err(self.error(index, Problem::UnknownEscape(escaped)));
                    }
                    self.next += 1;
                    text.push((escaped, index));
                }
                c => text.push((c, index)),
            }
        }
    }
}

/// The name a hold is written with, for messages: `leftCtrl` for `<leftCtrlOn>`.
fn held_name(shown: &Shown) -> String {
    match shown {
        Shown::Key(name) => name.to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{at, fixed_actions, log, parse, parse_error, press, typed};
    use super::*;

    #[test]
    fn text_is_typed_as_us_layout_chords() {
        let actions = fixed_actions("aZ9 :/");
        let keys: Vec<_> = actions
            .iter()
            .map(|action| match action {
                Action::Press { keys, .. } => keys.clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        let expected: [&[&str]; 6] = [
            &["a"],
            &["shift", "z"],
            &["9"],
            &["spc"],
            &["shift", "semicolon"],
            &["slash"],
        ];
        assert_eq!(keys, expected);
        assert_eq!(log(&actions), ["typed `aZ9 :/`"]);
    }

    #[test]
    fn holds_must_pair_with_releases() {
        let error = parse_error("<leftCtrlOn>c");
        assert_eq!(error.at, at(1, 1));
        assert_eq!(
            error.problem,
            Problem::NeverReleased("leftCtrl".to_string())
        );

        let error = parse_error("<leftCtrlOn>c<rightCtrlOff>");
        assert_eq!(error.at, at(1, 14));
        assert_eq!(error.problem, Problem::NotHeld("rightCtrl".to_string()));

        let error = parse_error("<leftAltOn><leftaltOn>");
        assert_eq!(error.at, at(1, 12));
        assert_eq!(error.problem, Problem::AlreadyHeld("leftAlt".to_string()));
    }

    #[test]
    fn a_lone_angle_bracket_is_text() {
        for source in [
            "a<b",
            "a < b > c",
            "<",
            "<>",
            "x<-y",
            "<<enter>",
            "a>b",
            "<a.b>",
        ] {
            let actions = fixed_actions(source);
            let text: String = actions
                .iter()
                .filter_map(|action| match action {
                    Action::Press {
                        shown: Shown::Char(c),
                        ..
                    } => Some(*c),
                    _ => None,
                })
                .collect();
            let expected = source.replace("<enter>", "");
            assert_eq!(text, expected, "{source}");
        }
        assert_eq!(
            fixed_actions("<<enter>").last(),
            Some(&press("ret", "enter"))
        );
        assert_eq!(
            fixed_actions("<")[0],
            Action::Press {
                keys: vec!["shift", "comma"],
                shown: Shown::Char('<'),
            }
        );
    }

    #[test]
    fn quoted_text_types_what_would_be_a_key() {
        let actions = fixed_actions(r#"{{ "<enter>" }}{{`{{ .X }}`}}{{"say \"hi\" \\"}}"#);
        let mut expected = typed("<enter>");
        expected.extend(typed("{{ .X }}"));
        expected.extend(typed(r#"say "hi" \"#));
        assert_eq!(actions, expected);
    }

    #[test]
    fn spaces_inside_a_known_tag_are_errors() {
        let error = parse_error("ab<wait 5>");
        assert_eq!(error.at, at(1, 3));
        assert_eq!(
            error.problem,
            Problem::SpacesInTag {
                written: "wait 5".to_string(),
                meant: "wait5".to_string(),
            }
        );
        let error = parse_error("<left Ctrl>");
        assert!(
            matches!(error.problem, Problem::SpacesInTag { .. }),
            "{error}"
        );
        // Not a tag once the spaces are gone, or spaces at the edges: text.
        assert_eq!(fixed_actions("<a b>").len(), 5);
        assert_eq!(fixed_actions("if a < end >").len(), 12);
    }

    #[test]
    fn malformed_placeholders_are_errors() {
        let cases = [
            ("ab{{ .HTTPIP", at(1, 3), Problem::UnclosedPlaceholder),
            ("{{", at(1, 1), Problem::UnclosedPlaceholder),
            (
                "{{ .HTTPIP }",
                at(1, 12),
                Problem::ExpectedClose("`}`".to_string()),
            ),
            (
                "{{ .HTTPIP extra }}",
                at(1, 12),
                Problem::ExpectedClose("`extra`".to_string()),
            ),
            (
                "{{ user `x` }}",
                at(1, 4),
                Problem::UnknownFunction("user".to_string()),
            ),
            (
                "{{ . }}",
                at(1, 6),
                Problem::ExpectedPlaceholder("`}}`".to_string()),
            ),
            (
                "{{ -.X }}",
                at(1, 4),
                Problem::ExpectedPlaceholder("`-.X`".to_string()),
            ),
            (
                "{{ env }}",
                at(1, 8),
                Problem::ExpectedVariable("`}}`".to_string()),
            ),
            (
                "{{ env \"\" }}",
                at(1, 8),
                Problem::ExpectedVariable("\"\"".to_string()),
            ),
            ("{{ env \"X }}", at(1, 8), Problem::UnclosedQuote('"')),
            ("{{ \"a\\nb\" }}", at(1, 6), Problem::UnknownEscape('n')),
            ("{{ \"é\" }}", at(1, 5), Problem::NoKey('é')),
        ];
        for (source, expected_at, expected) in cases {
            let error = parse_error(source);
            assert_eq!(
                (error.at, error.problem),
                (expected_at, expected),
                "{source}"
            );
        }
    }

    #[test]
    fn line_breaks_are_not_typed_and_spaces_are_kept() {
        let actions = fixed_actions("quiet\n splash \r\n<enter>");
        let mut expected = typed("quiet splash ");
        expected.push(press("ret", "enter"));
        assert_eq!(actions, expected);
        // Lines are joined before reading, as Packer joins its list: a tag may span them.
        assert_eq!(fixed_actions("<ent\ner>"), [press("ret", "enter")]);
    }

    #[test]
    fn errors_name_the_line_and_column_on_multi_line_input() {
        let cases = [
            ("<esc>\nabc <entre>", at(2, 5)),
            ("line one\r\nline two é", at(2, 10)),
            ("a\n\n  {{ .X", at(3, 3)),
            ("a\nb\n<wait1x>", at(3, 1)),
            ("<leftAltOn>\n\n<f2>", at(1, 1)),
            ("ab\n{{ env \"PW\" }}{{ nope }}", at(2, 18)),
            ("€", at(1, 1)),
        ];
        for (source, expected) in cases {
            assert_eq!(parse_error(source).at, expected, "{source:?}");
        }
        let command = parse("x\n  y {{ .Unknown }}");
        assert_eq!(command.check_names(&[]).unwrap_err().at, at(2, 5));
    }
}
