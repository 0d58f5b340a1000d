//! Keys typed while kiln asked the terminal about its graphics, before the workbench reads the
//! keyboard: the query read them with the answers, and they are handed to the workbench first,
//! in order, so that a person typing at once loses nothing.

use crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};

/// The key presses `bytes` stand for, as the terminal sends them; a sequence kiln does not
/// know is left out.
pub fn key_events(bytes: &[u8]) -> Vec<Event> {
    let text = String::from_utf8_lossy(bytes);
    let mut chars = text.chars().peekable();
    let mut keys = Vec::new();
    let press = |code, modifiers| Event::Key(KeyEvent::new(code, modifiers));
    while let Some(c) = chars.next() {
        let none = KeyModifiers::NONE;
        let key = match c {
            '\x1b' => match chars.peek() {
                Some('[') => {
                    chars.next();
                    let mut sequence = String::new();
                    for c in chars.by_ref() {
                        sequence.push(c);
                        if ('\x40'..='\x7e').contains(&c) {
                            break;
                        }
                    }
                    match sequence.as_str() {
                        "A" => Some(press(KeyCode::Up, none)),
                        "B" => Some(press(KeyCode::Down, none)),
                        "C" => Some(press(KeyCode::Right, none)),
                        "D" => Some(press(KeyCode::Left, none)),
                        "H" => Some(press(KeyCode::Home, none)),
                        "F" => Some(press(KeyCode::End, none)),
                        "Z" => Some(press(KeyCode::BackTab, KeyModifiers::SHIFT)),
                        "3~" => Some(press(KeyCode::Delete, none)),
                        _ => None,
                    }
                }
                Some(&c) if c != '\x1b' => {
                    chars.next();
                    Some(press(KeyCode::Char(c), KeyModifiers::ALT))
                }
                _ => Some(press(KeyCode::Esc, none)),
            },
            '\r' | '\n' => Some(press(KeyCode::Enter, none)),
            '\t' => Some(press(KeyCode::Tab, none)),
            '\x7f' | '\x08' => Some(press(KeyCode::Backspace, none)),
            '\x01'..='\x1a' => {
                let letter = char::from(b'a' + (c as u8 - 1));
                Some(press(KeyCode::Char(letter), KeyModifiers::CONTROL))
            }
            c if !c.is_control() => Some(press(KeyCode::Char(c), none)),
            _ => None,
        };
        keys.extend(key);
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(bytes: &[u8]) -> Vec<(KeyCode, KeyModifiers)> {
        key_events(bytes)
            .into_iter()
            .map(|event| match event {
                Event::Key(key) => (key.code, key.modifiers),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn typed_text_and_keys_become_key_presses() {
        let none = KeyModifiers::NONE;
        assert_eq!(
            codes("né\t\x15\x1b[B\r\x1b".as_bytes()),
            vec![
                (KeyCode::Char('n'), none),
                (KeyCode::Char('é'), none),
                (KeyCode::Tab, none),
                (KeyCode::Char('u'), KeyModifiers::CONTROL),
                (KeyCode::Down, none),
                (KeyCode::Enter, none),
                (KeyCode::Esc, none),
            ]
        );
    }

    #[test]
    fn an_unknown_sequence_is_left_out() {
        assert_eq!(
            codes(b"\x1b[99zq"),
            vec![(KeyCode::Char('q'), KeyModifiers::NONE)]
        );
    }
}
