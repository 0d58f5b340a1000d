//! What a name in angle brackets means: a key, a hold or release of one, or a wait.

use super::durations::wait;
use super::suggest::suggest_key;
use super::{Action, Problem, Shown};
use crate::engine::guest::keys::{key_for_char, packer_key};

/// Whether `<inside>` is a tag rather than text: letters and digits, and for a wait also the
/// `.` and `µ` of a duration.
pub(super) fn is_tag_name(inside: &str) -> bool {
    let is_wait = inside
        .get(..4)
        .is_some_and(|w| w.eq_ignore_ascii_case("wait"));
    let allowed = |c: char| c.is_ascii_alphanumeric() || is_wait && (c == '.' || c == 'µ');
    !inside.is_empty() && inside.chars().all(allowed)
}

/// What `<written>` does, or why it is wrong.
pub(super) fn tag_action(written: &str) -> Result<Action, Problem> {
    if written
        .get(..4)
        .is_some_and(|w| w.eq_ignore_ascii_case("wait"))
    {
        return wait(written).map(Action::Wait);
    }
    if let Some((name, key)) = packer_key(written) {
        let shown = Shown::Key(name);
        return Ok(Action::Press {
            keys: vec![key],
            shown,
        });
    }
    if let Some(action) = hold_or_release(written)? {
        return Ok(action);
    }
    Err(Problem::UnknownKey {
        written: written.to_string(),
        suggestion: suggest_key(written),
    })
}

/// `<leftCtrlOn>`, `<leftCtrlOff>`, `<cOn>`: None when `written` is neither.
fn hold_or_release(written: &str) -> Result<Option<Action>, Problem> {
    let lower = written.to_ascii_lowercase();
    let (base, hold) = if let Some(base) = lower.strip_suffix("on") {
        (&written[..base.len()], true)
    } else if let Some(base) = lower.strip_suffix("off") {
        (&written[..base.len()], false)
    } else {
        return Ok(None);
    };
    let (key, shown) = if let Some((name, key)) = packer_key(base) {
        (key, Shown::Key(name))
    } else if let Some(c) = single_char(base).filter(char::is_ascii_alphanumeric) {
        if c.is_ascii_uppercase() {
            return Err(Problem::UppercaseHeld(written.to_string()));
        }
        // Letters and digits: always one unshifted key.
        let key = match key_for_char(c).as_deref() {
            Some(&[key]) => key,
            _ => return Ok(None),
        };
        (key, Shown::Char(c))
    } else {
        return Ok(None);
    };
    Ok(Some(if hold {
        Action::Hold { key, shown }
    } else {
        Action::Release { key, shown }
    }))
}

fn single_char(text: &str) -> Option<char> {
    let mut chars = text.chars();
    let c = chars.next()?;
    chars.next().is_none().then_some(c)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{at, fixed_actions, log, parse_error, press, typed};
    use super::*;
    use crate::engine::guest::keys::PACKER_KEYS;

    #[test]
    fn every_key_name_presses_its_qkeycode() {
        let expected = [
            ("enter", "ret"),
            ("return", "ret"),
            ("tab", "tab"),
            ("esc", "esc"),
            ("bs", "backspace"),
            ("del", "delete"),
            ("spacebar", "spc"),
            ("insert", "insert"),
            ("home", "home"),
            ("end", "end"),
            ("pageUp", "pgup"),
            ("pageDown", "pgdn"),
            ("up", "up"),
            ("down", "down"),
            ("left", "left"),
            ("right", "right"),
            ("menu", "menu"),
            ("f1", "f1"),
            ("f2", "f2"),
            ("f3", "f3"),
            ("f4", "f4"),
            ("f5", "f5"),
            ("f6", "f6"),
            ("f7", "f7"),
            ("f8", "f8"),
            ("f9", "f9"),
            ("f10", "f10"),
            ("f11", "f11"),
            ("f12", "f12"),
            ("leftAlt", "alt"),
            ("rightAlt", "alt_r"),
            ("leftCtrl", "ctrl"),
            ("rightCtrl", "ctrl_r"),
            ("leftShift", "shift"),
            ("rightShift", "shift_r"),
            ("leftSuper", "meta_l"),
            ("rightSuper", "meta_r"),
        ];
        assert_eq!(expected.len(), PACKER_KEYS.len(), "a key without a test");
        for (name, key) in expected {
            for written in [
                name.to_string(),
                name.to_uppercase(),
                name.to_ascii_lowercase(),
            ] {
                let source = format!("<{written}>");
                assert_eq!(fixed_actions(&source), [press(key, name)], "{source}");
            }
        }
    }

    #[test]
    fn modifiers_are_pressed_held_and_released() {
        let actions =
            fixed_actions("<leftCtrlOn>c<LEFTCTRLOFF><leftAlt><rightSuperOn><rightSuperOff>");
        let expected = vec![
            Action::Hold {
                key: "ctrl",
                shown: Shown::Key("leftCtrl"),
            },
            typed("c").remove(0),
            Action::Release {
                key: "ctrl",
                shown: Shown::Key("leftCtrl"),
            },
            press("alt", "leftAlt"),
            Action::Hold {
                key: "meta_r",
                shown: Shown::Key("rightSuper"),
            },
            Action::Release {
                key: "meta_r",
                shown: Shown::Key("rightSuper"),
            },
        ];
        assert_eq!(actions, expected);
        assert_eq!(
            log(&actions),
            [
                "holding <leftCtrl> down",
                "typed `c`",
                "released <leftCtrl>",
                "pressed <leftAlt>",
                "holding <rightSuper> down",
                "released <rightSuper>",
            ]
        );
    }

    #[test]
    fn every_modifier_can_be_held() {
        let modifiers = [
            ("Alt", "alt", "alt_r"),
            ("Ctrl", "ctrl", "ctrl_r"),
            ("Shift", "shift", "shift_r"),
            ("Super", "meta_l", "meta_r"),
        ];
        for (modifier, left, right) in modifiers {
            for (side, key) in [("left", left), ("right", right)] {
                let source = format!("<{side}{modifier}On><{side}{modifier}Off>");
                let keys: Vec<_> = fixed_actions(&source)
                    .into_iter()
                    .map(|action| match action {
                        Action::Hold { key, .. } => ("hold", key),
                        Action::Release { key, .. } => ("release", key),
                        other => panic!("{source}: {other:?}"),
                    })
                    .collect();
                assert_eq!(keys, [("hold", key), ("release", key)], "{source}");
            }
        }
    }

    #[test]
    fn letters_and_digits_can_be_held() {
        let actions = fixed_actions("<aOn><1On><1Off><aOff>");
        let expected = vec![
            Action::Hold {
                key: "a",
                shown: Shown::Char('a'),
            },
            Action::Hold {
                key: "1",
                shown: Shown::Char('1'),
            },
            Action::Release {
                key: "1",
                shown: Shown::Char('1'),
            },
            Action::Release {
                key: "a",
                shown: Shown::Char('a'),
            },
        ];
        assert_eq!(actions, expected);
        let error = parse_error("x<AOn>");
        assert_eq!(error.at, at(1, 2));
        assert_eq!(error.problem, Problem::UppercaseHeld("AOn".to_string()));
    }
}
