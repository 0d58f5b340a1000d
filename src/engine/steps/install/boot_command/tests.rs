//! Helpers shared by the boot command tests, and tests of whole commands.

use super::*;
use crate::engine::guest::keys::key_for_char;

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

/// What every frontend reads a person's boot command with: a misspelt key is refused with its
/// line, column and the key meant; a placeholder an install does not provide is refused; the
/// text is kept for the session file.
#[test]
fn an_install_boot_command_is_read_once_with_its_mistakes_placed() {
    let error = BootCommand::for_install("<esc><wait>install\n<entre>").unwrap_err();
    let message = error.to_string();
    assert!(message.contains("line 2, column 1"), "{message}");
    assert!(message.contains("<enter>"), "{message}");
    let error = "{{ .Nope }}".parse::<BootCommand>().unwrap_err();
    assert!(error.to_string().contains("Nope"), "{error}");
    let source = "<esc>auto url=http://{{ .HTTPIP }}:{{ .HTTPPort }}/p.cfg<enter>";
    let command: BootCommand = source.parse().unwrap();
    assert_eq!(command.source(), source);
}
