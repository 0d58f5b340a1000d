//! Turning key presses into input for the guest: bytes for the serial console, QKeyCode
//! names for the VGA keyboard. The keys kiln keeps for itself (Ctrl-]) are in the keymap.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::engine::guest::qmp::{key_for_char, key_for_name};

/// Bytes a terminal would send for this key, for the serial console.
pub fn serial_bytes(key: &KeyEvent) -> Option<Vec<u8>> {
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    let alt = key.modifiers.contains(KeyModifiers::ALT);
    let mut bytes = match key.code {
        KeyCode::Char(c) if ctrl && c.is_ascii_alphabetic() => {
            vec![(c.to_ascii_lowercase() as u8) & 0x1f]
        }
        KeyCode::Char(c) => c.to_string().into_bytes(),
        KeyCode::Enter => b"\r".to_vec(),
        KeyCode::Tab => b"\t".to_vec(),
        KeyCode::BackTab => b"\x1b[Z".to_vec(),
        KeyCode::Backspace => vec![0x7f],
        KeyCode::Esc => vec![0x1b],
        KeyCode::Up => b"\x1b[A".to_vec(),
        KeyCode::Down => b"\x1b[B".to_vec(),
        KeyCode::Right => b"\x1b[C".to_vec(),
        KeyCode::Left => b"\x1b[D".to_vec(),
        KeyCode::Home => b"\x1b[H".to_vec(),
        KeyCode::End => b"\x1b[F".to_vec(),
        KeyCode::PageUp => b"\x1b[5~".to_vec(),
        KeyCode::PageDown => b"\x1b[6~".to_vec(),
        KeyCode::Delete => b"\x1b[3~".to_vec(),
        KeyCode::Insert => b"\x1b[2~".to_vec(),
        KeyCode::F(n @ 1..=4) => format!("\x1bO{}", (b'P' + n - 1) as char).into_bytes(),
        KeyCode::F(n @ 5..=12) => {
            let code = [15, 17, 18, 19, 20, 21, 23, 24][(n - 5) as usize];
            format!("\x1b[{code}~").into_bytes()
        }
        _ => return None,
    };
    if alt {
        bytes.insert(0, 0x1b);
    }
    Some(bytes)
}

/// QKeyCode names pressed together for this key, for the VGA keyboard.
pub fn vga_keys(key: &KeyEvent) -> Option<Vec<&'static str>> {
    let mut chord: Vec<&'static str> = Vec::new();
    if key.modifiers.contains(KeyModifiers::CONTROL) {
        chord.push("ctrl");
    }
    if key.modifiers.contains(KeyModifiers::ALT) {
        chord.push("alt");
    }
    let main = match key.code {
        KeyCode::Char(c) => key_for_char(c)?,
        KeyCode::Enter => vec![key_for_name("Enter")?],
        KeyCode::Tab => vec![key_for_name("Tab")?],
        KeyCode::BackTab => vec!["shift", key_for_name("Tab")?],
        KeyCode::Backspace => vec![key_for_name("Backspace")?],
        KeyCode::Esc => vec![key_for_name("Esc")?],
        KeyCode::Up => vec![key_for_name("Up")?],
        KeyCode::Down => vec![key_for_name("Down")?],
        KeyCode::Left => vec![key_for_name("Left")?],
        KeyCode::Right => vec![key_for_name("Right")?],
        KeyCode::Home => vec![key_for_name("Home")?],
        KeyCode::End => vec![key_for_name("End")?],
        KeyCode::PageUp => vec![key_for_name("PageUp")?],
        KeyCode::PageDown => vec![key_for_name("PageDown")?],
        KeyCode::Delete => vec![key_for_name("Delete")?],
        KeyCode::Insert => vec![key_for_name("Insert")?],
        KeyCode::F(n) => vec![key_for_name(&format!("F{n}"))?],
        _ => return None,
    };
    for name in main {
        if !chord.contains(&name) {
            chord.push(name);
        }
    }
    Some(chord)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode, modifiers: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, modifiers)
    }

    #[test]
    fn serial_bytes_match_a_terminal() {
        let none = KeyModifiers::NONE;
        assert_eq!(
            serial_bytes(&key(KeyCode::Char('a'), none)),
            Some(b"a".to_vec())
        );
        assert_eq!(
            serial_bytes(&key(KeyCode::Enter, none)),
            Some(b"\r".to_vec())
        );
        assert_eq!(
            serial_bytes(&key(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Some(vec![3])
        );
        assert_eq!(
            serial_bytes(&key(KeyCode::Up, none)),
            Some(b"\x1b[A".to_vec())
        );
        assert_eq!(
            serial_bytes(&key(KeyCode::F(1), none)),
            Some(b"\x1bOP".to_vec())
        );
        assert_eq!(
            serial_bytes(&key(KeyCode::F(5), none)),
            Some(b"\x1b[15~".to_vec())
        );
        assert_eq!(
            serial_bytes(&key(KeyCode::Char('x'), KeyModifiers::ALT)),
            Some(b"\x1bx".to_vec())
        );
    }

    #[test]
    fn vga_chords() {
        assert_eq!(
            vga_keys(&key(KeyCode::Char('A'), KeyModifiers::SHIFT)),
            Some(vec!["shift", "a"])
        );
        assert_eq!(
            vga_keys(&key(
                KeyCode::F(2),
                KeyModifiers::CONTROL | KeyModifiers::ALT
            )),
            Some(vec!["ctrl", "alt", "f2"])
        );
        assert_eq!(
            vga_keys(&key(KeyCode::Enter, KeyModifiers::NONE)),
            Some(vec!["ret"])
        );
    }
}
