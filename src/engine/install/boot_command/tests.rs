//! Helpers shared by the boot command tests, and tests of whole commands.

use super::*;
use crate::engine::keys::key_for_char;

pub(super) fn parse(source: &str) -> BootCommand {
    BootCommand::parse(source).unwrap_or_else(|e| panic!("{source:?}: {e}"))
}

pub(super) fn parse_error(source: &str) -> BootCommandError {
    match BootCommand::parse(source) {
        Ok(command) => panic!("{source:?} parsed as {command:?}"),
        Err(error) => error,
    }
}

pub(super) fn at(line: usize, column: usize) -> Position {
    Position { line, column }
}

/// The actions of a command without placeholders.
pub(super) fn fixed_actions(source: &str) -> Vec<Action> {
    parse(source).actions(&Values::new()).unwrap()
}

pub(super) fn press(key: &'static str, name: &'static str) -> Action {
    Action::Press {
        keys: vec![key],
        shown: Shown::Key(name),
    }
}

pub(super) fn typed(text: &str) -> Vec<Action> {
    text.chars()
        .map(|c| Action::Press {
            keys: key_for_char(c).unwrap(),
            shown: Shown::Char(c),
        })
        .collect()
}

pub(super) fn log(actions: &[Action]) -> Vec<String> {
    chunks(actions)
        .into_iter()
        .map(|chunk| chunk.shown)
        .collect()
}

#[test]
fn debian_isolinux_command() {
    let source = "<esc><wait>install auto=true priority=critical \
                  url=http://{{ .HTTPIP }}:{{ .HTTPPort }}/preseed.cfg \
                  console=ttyS0,115200n8<enter>";
    let command = parse(source);
    command.check_names(&[HTTP_IP, HTTP_PORT]).unwrap();
    let values = Values::new()
        .with(HTTP_IP, "10.0.2.2")
        .with(HTTP_PORT, "8123");
    let actions = command.actions(&values).unwrap();

    let text = "install auto=true priority=critical \
                url=http://10.0.2.2:8123/preseed.cfg console=ttyS0,115200n8";
    let mut expected = vec![press("esc", "esc"), Action::Wait(Duration::from_secs(1))];
    expected.extend(typed(text));
    expected.push(press("ret", "enter"));
    assert_eq!(actions, expected);
    // Spot checks of the chords, independent of key_for_char.
    let chord = |c: char| {
        actions.iter().find_map(|action| match action {
            Action::Press { keys, shown } if *shown == Shown::Char(c) => Some(keys.clone()),
            _ => None,
        })
    };
    assert_eq!(chord(':'), Some(vec!["shift", "semicolon"]));
    assert_eq!(chord('S'), Some(vec!["shift", "s"]));
    assert_eq!(chord('='), Some(vec!["equal"]));
    assert_eq!(chord(','), Some(vec!["comma"]));
    assert_eq!(chord(' '), Some(vec!["spc"]));

    assert_eq!(
        log(&actions),
        [
            "pressed <esc>",
            "waited 1 s",
            "typed `install auto=true priority=critical \
             url=http://10.0.2.2:8123/preseed.cfg console=ttyS0,115200n8`",
            "pressed <enter>",
        ]
    );
    let chunks = chunks(&actions);
    let total: usize = chunks.iter().map(|chunk| chunk.actions.len()).sum();
    assert_eq!(total, actions.len());
    assert_eq!(chunks[2].actions, &actions[2..actions.len() - 1]);
}

#[test]
fn an_empty_command_does_nothing() {
    for source in ["", "\n", "\r\n\n"] {
        let command = parse(source);
        assert!(command.is_empty());
        assert_eq!(command.actions(&Values::new()).unwrap(), []);
    }
    assert!(!parse("a").is_empty());
}
