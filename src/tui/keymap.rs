//! Keys as data: what each key does in each part of the workbench, in one table that the key
//! handler, the help overlay and the footer all read, so the three cannot disagree.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use serde::Deserialize;

/// Everything a key can ask of the workbench (a user keymap names these in snake_case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Quit,
    Help,
    ShowLog,
    Doctor,
    StepUp,
    StepDown,
    OpenStep,
    NextStep,
    NextField,
    PrevField,
    /// Tab: complete the path typed so far in a path field (listing the matches); with
    /// nothing to complete, or in any other field, the next field.
    CompleteOrNextField,
    ClearField,
    /// Toggle a checkbox or move a choice to its next option.
    ChangeChoice,
    PrevChoice,
    RunStep,
    /// From a step's screen back to the step list.
    Back,
    /// Stop the running step (after asking).
    Cancel,
    /// Type into the serial console.
    ConsoleKeys,
    /// Type into the VGA screen.
    ScreenKeys,
    SwitchPane,
    /// The guest's screen on the whole terminal, and back.
    FullScreen,
    /// Save the guest's screen as kiln shows it, as a PNG beside the image.
    SavePicture,
    ReleaseKeyboard,
    Retry,
    /// Run the open recipe's stages from the first not done.
    Build,
    /// Stop a failed step's kept machine.
    StopKept,
    Yes,
    No,
    /// Close the help, the doctor or the log.
    Close,
    ScrollUp,
    ScrollDown,
    PageUp,
    PageDown,
    ScrollEnd,
}

/// Where keys go: each has its own entries, searched after those of [`Context::layers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// Keys that work everywhere but while the guest has the keyboard.
    Anywhere,
    StepList,
    /// A step's form, whatever field has focus.
    Form,
    /// A form with a text field focused: other keys edit the text.
    TextField,
    ChoiceField,
    Checkbox,
    /// A step's screen while another step runs.
    Waiting,
    /// A step running without a machine (create, publish).
    Running,
    /// A step running with a machine on screen.
    Machine,
    /// A failed step whose machine is kept for a look.
    Held,
    /// The guest has the keyboard: every other key is typed into it.
    Guest,
    /// A yes/no question.
    Confirm,
    /// The sshd_config diff configure asks about: a question that scrolls.
    Diff,
    /// The help or the doctor.
    Overlay,
    Log,
}

impl Context {
    /// Every context, for tests and tools that walk the table.
    pub const ALL: [Context; 15] = [
        Context::Anywhere,
        Context::StepList,
        Context::Form,
        Context::TextField,
        Context::ChoiceField,
        Context::Checkbox,
        Context::Waiting,
        Context::Running,
        Context::Machine,
        Context::Held,
        Context::Guest,
        Context::Confirm,
        Context::Diff,
        Context::Overlay,
        Context::Log,
    ];

    /// The contexts searched for a key here, first match wins; the guest gets all but its own.
    pub fn layers(self) -> &'static [Context] {
        use Context::*;
        match self {
            Anywhere => &[Anywhere],
            Guest => &[Guest],
            TextField => &[Anywhere, Form, TextField],
            ChoiceField => &[Anywhere, Form, ChoiceField],
            Checkbox => &[Anywhere, Form, Checkbox],
            StepList => &[Anywhere, StepList],
            Form => &[Anywhere, Form],
            Waiting => &[Anywhere, Waiting],
            Running => &[Anywhere, Running],
            Machine => &[Anywhere, Machine],
            Held => &[Anywhere, Held],
            Confirm => &[Anywhere, Confirm],
            Diff => &[Anywhere, Confirm, Diff],
            Overlay => &[Anywhere, Overlay],
            Log => &[Anywhere, Log],
        }
    }

    /// Keys that work anywhere and that this context's footer repeats, where there is room.
    fn footer_also(self) -> &'static [Action] {
        use Context::*;
        match self {
            StepList | Machine | Held => &[Action::ShowLog],
            Form | TextField | ChoiceField | Checkbox => &[Action::ShowLog, Action::Help],
            Waiting | Running => &[Action::ShowLog, Action::Quit],
            Anywhere | Guest | Confirm | Diff | Overlay | Log => &[],
        }
    }

    /// The help overlay's first column.
    fn place(self) -> &'static str {
        use Context::*;
        match self {
            Anywhere => "anywhere",
            StepList => "step list",
            Form | TextField | ChoiceField | Checkbox | Waiting => "form",
            Running => "running",
            Machine | Guest => "machine",
            Held => "failed",
            Confirm | Diff => "dialogs",
            Overlay => "overlays",
            Log => "log",
        }
    }
}

/// One key: a key code and the modifiers it needs (others may be held too, as Shift for `?`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyBinding {
    pub code: KeyCode,
    pub modifiers: KeyModifiers,
    /// Named in the help and the footer; an unlisted key is a variant terminals send (`Y`).
    pub listed: bool,
}

impl KeyBinding {
    const fn key(code: KeyCode) -> KeyBinding {
        KeyBinding {
            code,
            modifiers: KeyModifiers::NONE,
            listed: true,
        }
    }

    const fn char(c: char) -> KeyBinding {
        KeyBinding::key(KeyCode::Char(c))
    }

    const fn ctrl(c: char) -> KeyBinding {
        KeyBinding {
            code: KeyCode::Char(c),
            modifiers: KeyModifiers::CONTROL,
            listed: true,
        }
    }

    const fn unlisted(self) -> KeyBinding {
        KeyBinding {
            listed: false,
            ..self
        }
    }

    /// Whether a key press is this key.
    pub fn matches(&self, key: &KeyEvent) -> bool {
        key.code == self.code && key.modifiers.contains(self.modifiers)
    }

    /// The key press this binding is, as a terminal would send it.
    pub fn event(&self) -> KeyEvent {
        KeyEvent::new(self.code, self.modifiers)
    }

    /// How the help and the footer write the key.
    pub fn label(&self) -> String {
        let name = match self.code {
            KeyCode::Up => "↑".to_string(),
            KeyCode::Down => "↓".to_string(),
            KeyCode::Left => "←".to_string(),
            KeyCode::Right => "→".to_string(),
            KeyCode::BackTab => "Shift-Tab".to_string(),
            KeyCode::PageUp => "PgUp".to_string(),
            KeyCode::PageDown => "PgDn".to_string(),
            KeyCode::Char(' ') => "Space".to_string(),
            KeyCode::Char(c) if self.modifiers.contains(KeyModifiers::CONTROL) => {
                c.to_ascii_uppercase().to_string()
            }
            other => other.to_string(),
        };
        if self.modifiers.contains(KeyModifiers::CONTROL) {
            format!("Ctrl-{name}")
        } else {
            name
        }
    }
}

/// How an entry shows in the help overlay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Help {
    /// A row of its own saying this.
    Row(&'static str),
    /// On the row above: its keys after a " / ", and this after the row's text (if not empty).
    SameRow(&'static str),
    /// Not in the help: a row above lists the same keys doing the same elsewhere, or the
    /// overlay the keys work in shows them itself (the log).
    Hidden,
}

/// How an entry shows in the footer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Footer {
    /// Its first key and this word.
    Hint(&'static str),
    /// Its first key added to the hint before (`↑↓ step`).
    WithPrevious,
    Hidden,
}

/// One thing keys do in one context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub context: Context,
    /// Alternative keys for the same thing, in the order the help lists them.
    pub keys: Vec<KeyBinding>,
    pub action: Action,
    pub help: Help,
    pub footer: Footer,
}

/// A row of the help overlay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelpRow {
    pub place: &'static str,
    pub keys: String,
    pub what: String,
}

/// A hint in the footer: keys and what they do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FooterHint {
    pub keys: Vec<KeyBinding>,
    pub what: &'static str,
}

impl FooterHint {
    /// The keys as the footer writes them: one-character keys run together (`↑↓`).
    pub fn label(&self) -> String {
        let single = |s: &str| s.chars().count() == 1;
        let mut label = String::new();
        let mut previous = String::new();
        for key in &self.keys {
            let name = key.label();
            let arrows = single(&previous) && single(&name);
            if !previous.is_empty() && !arrows {
                label.push(' ');
            }
            label.push_str(&name);
            previous = name;
        }
        label
    }
}

/// Every key binding, by context, in the order the help lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keymap {
    entries: Vec<Entry>,
}

impl Default for Keymap {
    fn default() -> Self {
        Keymap::built_in()
    }
}

impl Keymap {
    /// kiln's own keys.
    #[rustfmt::skip] // one entry a line: the table reads as a table
    pub fn built_in() -> Keymap {
        use Action::*;
        use Context::*;
        use KeyCode::{BackTab, Down, End, Enter, Esc, F, Left, Right, Tab, Up};
        let key = KeyBinding::key;
        let ch = KeyBinding::char;
        let entry = |context, keys: &[KeyBinding], action, help, footer| Entry {
            context,
            keys: keys.to_vec(),
            action,
            help,
            footer,
        };
        let row = self::Help::Row;
        let same = self::Help::SameRow;
        let hint = Footer::Hint;
        let (hidden, no_hint, with_previous) = (self::Help::Hidden, Footer::Hidden, Footer::WithPrevious);
        Keymap {
            entries: vec![
                entry(Anywhere, &[KeyBinding::ctrl('c')], Quit, row("quit (stops a running step first)"), hint("quit")),
                entry(Anywhere, &[key(F(1))], Help, row("this help"), hint("help")),
                entry(Anywhere, &[key(F(2))], ShowLog, row("the whole log of the step on screen"), hint("log")),
                entry(StepList, &[key(Up), ch('k')], StepUp, row("previous / next step"), hint("step")),
                entry(StepList, &[key(Down), ch('j')], StepDown, same(""), with_previous),
                entry(StepList, &[key(Enter), key(Right), key(Tab), ch('l')], OpenStep, row("open the step's screen"), hint("open")),
                entry(StepList, &[ch('n')], NextStep, row("next step, with the choices carried"), hint("next step")),
                entry(StepList, &[ch('d')], Doctor, row("doctor: what this host can do"), hint("doctor")),
                entry(StepList, &[ch('?')], Help, same("this help"), hint("help")),
                entry(StepList, &[ch('b')], Build, row("run the open recipe's stages"), no_hint),
                entry(StepList, &[ch('q')], Quit, row("quit (the session file keeps your place)"), hint("quit")),
                entry(Form, &[key(Tab)], CompleteOrNextField, row("next field (a path: completes it first)"), hint("next field")),
                entry(Form, &[key(Down)], NextField, row("next / previous field"), no_hint),
                entry(Form, &[key(BackTab), key(Up)], PrevField, same(""), no_hint),
                entry(TextField, &[KeyBinding::ctrl('u')], ClearField, row("clear the field (typing edits it)"), no_hint),
                entry(ChoiceField, &[ch(' '), key(Right)], ChangeChoice, row("toggle a checkbox, change a choice"), hint("toggle")),
                entry(ChoiceField, &[key(Left)], PrevChoice, same(""), no_hint),
                entry(Checkbox, &[ch(' ')], ChangeChoice, hidden, hint("toggle")),
                entry(Form, &[key(Enter)], RunStep, row("run the step"), hint("run")),
                entry(Form, &[key(Esc)], Back, row("back to the steps"), hint("back")),
                entry(Waiting, &[key(Esc)], Back, hidden, hint("back")),
                entry(Machine, &[ch('c')], ConsoleKeys, row("type into the serial console"), hint("type into console")),
                entry(Machine, &[ch('v')], ScreenKeys, same("VGA screen"), hint("type into screen")),
                entry(Guest, &[KeyBinding::ctrl(']'), KeyBinding::ctrl('5').unlisted()], ReleaseKeyboard, row("give the keyboard back to kiln"), hint("give the keyboard back to kiln")),
                entry(Machine, &[ch('t')], SwitchPane, row("switch panes"), hint("toggle pane")),
                entry(Machine, &[ch('f')], FullScreen, same("full screen"), hint("full screen")),
                entry(Machine, &[ch('p')], SavePicture, same("save it as PNG"), hint("save picture")),
                entry(Running, &[key(Esc)], Cancel, row("stop the step (asks first)"), hint("stop")),
                entry(Machine, &[key(Esc)], Cancel, hidden, hint("stop")),
                entry(Held, &[ch('r')], Retry, row("retry the step"), hint("retry")),
                entry(Held, &[ch('s'), key(Esc)], StopKept, same("stop its kept machine"), hint("stop machine")),
                entry(Held, &[ch('c')], ConsoleKeys, hidden, hint("console")),
                entry(Held, &[ch('v')], ScreenKeys, hidden, hint("screen")),
                entry(Held, &[ch('t')], SwitchPane, hidden, no_hint),
                entry(Held, &[ch('f')], FullScreen, hidden, no_hint),
                entry(Held, &[ch('p')], SavePicture, hidden, no_hint),
                entry(Confirm, &[ch('y'), ch('Y').unlisted()], Yes, row("yes"), hint("yes")),
                entry(Confirm, &[ch('n'), ch('N').unlisted(), key(Esc)], No, same("no"), hint("no")),
                // Hidden from the help, like the log's: the diff dialog names its keys.
                entry(Diff, &[key(Up), ch('k')], ScrollUp, hidden, hint("scroll")),
                entry(Diff, &[key(Down), ch('j')], ScrollDown, hidden, with_previous),
                entry(Diff, &[key(KeyCode::PageUp)], PageUp, hidden, with_previous),
                entry(Diff, &[key(KeyCode::PageDown)], PageDown, hidden, with_previous),
                entry(Overlay, &[key(Esc), ch('?'), ch('q'), ch('d')], Close, row("close this help or the doctor"), hint("close")),
                entry(Log, &[key(Up), ch('k')], ScrollUp, hidden, hint("scroll")),
                entry(Log, &[key(Down), ch('j')], ScrollDown, hidden, with_previous),
                entry(Log, &[key(KeyCode::PageUp)], PageUp, hidden, with_previous),
                entry(Log, &[key(KeyCode::PageDown)], PageDown, hidden, with_previous),
                entry(Log, &[key(End)], ScrollEnd, hidden, no_hint),
                entry(Log, &[key(Esc), ch('q')], Close, hidden, hint("close log")),
            ],
        }
    }

    /// Every entry, in the order the help lists them.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// What a key press does in `context`, if anything (else it is input, or nothing).
    pub fn action(&self, context: Context, key: &KeyEvent) -> Option<Action> {
        context.layers().iter().find_map(|layer| {
            self.entries
                .iter()
                .find(|e| e.context == *layer && e.keys.iter().any(|k| k.matches(key)))
                .map(|e| e.action)
        })
    }

    /// The help overlay's rows.
    pub fn help_rows(&self) -> Vec<HelpRow> {
        let mut rows: Vec<HelpRow> = Vec::new();
        for entry in &self.entries {
            let keys = listed_labels(&entry.keys).join(" ");
            match (entry.help, rows.last_mut()) {
                (Help::Row(what), _) => rows.push(HelpRow {
                    place: entry.context.place(),
                    keys,
                    what: what.to_string(),
                }),
                (Help::SameRow(what), Some(row)) => {
                    row.keys = format!("{} / {keys}", row.keys);
                    if !what.is_empty() {
                        row.what = format!("{} / {what}", row.what);
                    }
                }
                (Help::SameRow(_), None) | (Help::Hidden, _) => {}
            }
        }
        rows
    }

    /// The footer's hints in `context`: its own keys, then the keys from anywhere it repeats.
    pub fn footer(&self, context: Context) -> Vec<FooterHint> {
        let own = context
            .layers()
            .iter()
            .filter(|layer| **layer != Context::Anywhere || context == Context::Anywhere)
            .flat_map(|layer| self.entries.iter().filter(move |e| e.context == *layer));
        let also = context.footer_also().iter().filter_map(|action| {
            self.entries
                .iter()
                .find(|e| e.context == Context::Anywhere && e.action == *action)
        });
        let mut hints: Vec<FooterHint> = Vec::new();
        for entry in own.chain(also) {
            let Some(first) = entry.keys.iter().find(|k| k.listed) else {
                continue;
            };
            match (entry.footer, hints.last_mut()) {
                (Footer::Hint(what), _) => hints.push(FooterHint {
                    keys: vec![*first],
                    what,
                }),
                (Footer::WithPrevious, Some(hint)) => hint.keys.push(*first),
                (Footer::WithPrevious, None) | (Footer::Hidden, _) => {}
            }
        }
        hints
    }
}

fn listed_labels(keys: &[KeyBinding]) -> Vec<String> {
    keys.iter()
        .filter(|k| k.listed)
        .map(KeyBinding::label)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_two_entries_of_a_context_share_a_key() {
        let keymap = Keymap::built_in();
        for context in Context::ALL {
            let mut seen: Vec<(KeyBinding, Action)> = Vec::new();
            for layer in context.layers() {
                for entry in keymap.entries().iter().filter(|e| e.context == *layer) {
                    for key in &entry.keys {
                        // A key found earlier that matches every press of this one hides it.
                        // (Ctrl-C before `c` is fine: plain `c` still reaches the later one.)
                        let clash = seen.iter().find(|(earlier, _)| {
                            earlier.code == key.code && key.modifiers.contains(earlier.modifiers)
                        });
                        assert!(
                            clash.is_none(),
                            "{context:?}: {} is both {:?} and {:?}",
                            key.label(),
                            clash.map(|c| c.1),
                            entry.action
                        );
                        seen.push((*key, entry.action));
                    }
                }
            }
        }
    }

    #[test]
    fn every_key_reaches_its_own_entry() {
        let keymap = Keymap::built_in();
        for entry in keymap.entries() {
            for context in Context::ALL
                .into_iter()
                .filter(|c| c.layers().contains(&entry.context))
            {
                for key in &entry.keys {
                    assert_eq!(
                        keymap.action(context, &key.event()),
                        Some(entry.action),
                        "{} in {context:?}",
                        key.label()
                    );
                }
            }
        }
    }

    #[test]
    fn footers_name_only_keys_of_their_context() {
        let keymap = Keymap::built_in();
        for context in Context::ALL {
            for hint in keymap.footer(context) {
                for key in &hint.keys {
                    assert!(
                        keymap.action(context, &key.event()).is_some(),
                        "the {context:?} footer shows {}, which does nothing there",
                        key.label()
                    );
                }
            }
        }
    }

    #[test]
    fn labels_and_footer_look_as_before() {
        let keymap = Keymap::built_in();
        let footer: Vec<String> = keymap
            .footer(Context::StepList)
            .iter()
            .map(|h| format!("{} {}", h.label(), h.what))
            .collect();
        assert_eq!(
            footer,
            [
                "↑↓ step",
                "Enter open",
                "n next step",
                "d doctor",
                "? help",
                "q quit",
                "F2 log"
            ]
        );
        let log: Vec<String> = keymap
            .footer(Context::Log)
            .iter()
            .map(FooterHint::label)
            .collect();
        assert_eq!(log, ["↑↓ PgUp PgDn", "Esc"]);
        let rows = keymap.help_rows();
        let row = |keys: &str| rows.iter().find(|r| r.keys == keys).map(|r| r.what.clone());
        assert_eq!(row("↑ k / ↓ j").as_deref(), Some("previous / next step"));
        assert_eq!(
            row("Ctrl-]").as_deref(),
            Some("give the keyboard back to kiln")
        );
        assert_eq!(row("y / n Esc").as_deref(), Some("yes / no"));
    }

    #[test]
    fn actions_have_snake_case_names_for_a_user_keymap() {
        #[derive(Deserialize)]
        struct Binding {
            action: Action,
        }
        let parsed: Binding = toml::from_str("action = \"stop_kept\"").unwrap();
        assert_eq!(parsed.action, Action::StopKept);
    }
}

#[cfg(test)]
mod dispatch_tests;
