//! Boot commands in Packer's syntax: the keys typed into an installer's boot menu (before the
//! installer can fetch its answer file), written the way Packer users already write them.
//!
//! Parsing is pure and finds every mistake in the text before QEMU starts; nothing here
//! touches QMP. The caller turns a [`BootCommand`] into [`Action`]s with [`BootCommand::actions`]
//! and performs them in order, pausing [`DEFAULT_KEY_INTERVAL`] between key events; [`chunks`]
//! groups the actions into lines for the step log.
//!
//! # Syntax
//!
//! - Text is typed as written, one key chord per character on a US layout (`A` is Shift+a).
//!   A character with no key there (`é`, `€`) is an error naming its line and column.
//! - Keys in angle brackets, names compared without case: `<enter>` `<return>` `<tab>` `<esc>`
//!   `<bs>` `<del>` `<spacebar>` `<insert>` `<home>` `<end>` `<pageUp>` `<pageDown>` `<up>`
//!   `<down>` `<left>` `<right>` `<menu>` `<f1>`…`<f12>`, and the modifiers `<leftAlt>`
//!   `<rightAlt>` `<leftCtrl>` `<rightCtrl>` `<leftShift>` `<rightShift>` `<leftSuper>`
//!   `<rightSuper>`.
//! - Holding: any key name followed by `On` presses it and keeps it down, `Off` releases it
//!   (`<leftCtrlOn>c<leftCtrlOff>` is Ctrl+C); so does a lowercase letter or a digit (`<cOn>`).
//!   A key held and never released, released without being held, or held twice is an error:
//!   a stuck modifier would garble everything typed into the installer afterwards.
//! - Waits: `<wait>` is 1 s, `<waitN>` N seconds (`<wait5>`, `<wait10>`), and `<waitDURATION>`
//!   a Go duration (`<wait500ms>`, `<wait1m30s>`, `<wait1.5h>`; units `h` `m` `s` `ms` `us`
//!   `µs` `ns`). A wait must be longer than zero.
//! - Placeholders, Go-template style, spaces inside the braces optional: `{{ .Name }}` types the
//!   value the caller gives for `Name` (by convention [`HTTP_IP`] and [`HTTP_PORT`], the
//!   answer-file server); `{{ env "VAR" }}` types the environment variable `VAR`; `{{ "text" }}`
//!   types `text` literally, the way to type what would otherwise be a key (`{{ "<enter>" }}`).
//!   Values are typed as text, never read as keys or placeholders.
//!
//! # Decisions where Packer leaves room
//!
//! - Line breaks in the source are not typed and the lines are joined as written, the way
//!   Packer joins the strings of its `boot_command` list; only `<enter>` presses Enter.
//!   Spaces at the start or end of a line are kept (a kernel command line needs the space
//!   between its arguments), so `quiet\n splash` types `quiet splash`.
//! - A `<` that does not start a `<name>` (letters and digits, then `>`) is typed as `<`, so
//!   `a<b` and `a < b` type themselves. A `<name>` with an unknown name is an error, not text
//!   as in Packer: a misspelt key typed as text goes unnoticed until the install fails.
//!   So is `<wait 5>`, a known tag with spaces inside.
//! - Secrets: a value given with [`Values::with_secret`] and every `{{ env "VAR" }}` is typed
//!   but never shown: [`Shown::Secret`] in the actions, `•••` in the log (whatever its length),
//!   and error messages about it do not quote it. `Debug` of [`Action`] and [`Values`] hides
//!   secrets too.
//! - A value containing a line break is an error rather than an Enter: it is nearly always the
//!   trailing newline of a variable read from a file.
//!
//! # Use
//!
//! ```text
//! let command = BootCommand::parse(&source)?;        // when the settings are read
//! command.check_names(&[HTTP_IP, HTTP_PORT])?;       // before anything starts
//! let values = Values::new().with(HTTP_IP, "10.0.2.2").with(HTTP_PORT, port.to_string());
//! let actions = command.actions(&values)?;           // reads the environment; still before typing
//! sleep(DEFAULT_BOOT_WAIT);
//! for chunk in chunks(&actions) {
//!     perform(chunk.actions);                        // DEFAULT_KEY_INTERVAL between key events
//!     log(chunk.shown);                              // "typed `install …`", "pressed <enter>"
//! }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::engine::keys::{PACKER_KEYS, familiar_name, key_for_char, packer_key};

/// How long to let the firmware and boot menu come up before typing: Packer's `boot_wait`
/// default, which boot commands written for Packer were tuned against.
pub const DEFAULT_BOOT_WAIT: Duration = Duration::from_secs(10);

/// The pause between two key events: Packer's default for QEMU (`boot_key_interval`). Boot
/// menus on a busy host drop or repeat keys sent faster.
pub const DEFAULT_KEY_INTERVAL: Duration = Duration::from_millis(100);

/// The placeholder name Packer uses for the answer-file server's address (`{{ .HTTPIP }}`).
pub const HTTP_IP: &str = "HTTPIP";

/// The placeholder name Packer uses for the answer-file server's port (`{{ .HTTPPort }}`).
pub const HTTP_PORT: &str = "HTTPPort";

/// What the log shows for a key: the character typed, a masked secret, or a key's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    /// A character of text that is not secret.
    Char(char),
    /// A character of a secret value; shown as `•`, and a run of them as `•••`.
    Secret,
    /// A named key as Packer spells it (`enter`, `leftCtrl`), shown as `<enter>`.
    Key(&'static str),
}

impl fmt::Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shown::Char(c) => write!(f, "{c}"),
            Shown::Secret => f.write_str(SECRET_CHAR),
            Shown::Key(name) => write!(f, "<{name}>"),
        }
    }
}

/// One character of a secret in the log.
const SECRET_CHAR: &str = "•";

/// A secret value in the log, the same whatever its length.
const SECRET_MASK: &str = "•••";

/// One thing to do to the guest's keyboard, in order; the keys are QKeyCode names for QMP's
/// `send-key`.
#[derive(Clone, PartialEq, Eq)]
pub enum Action {
    /// Press these keys together and release them (a chord: `["shift", "a"]` types `A`).
    Press {
        keys: Vec<&'static str>,
        shown: Shown,
    },
    /// Press a key and keep it down until the matching `Release` (from `<leftCtrlOn>`).
    Hold { key: &'static str, shown: Shown },
    /// Let go of a key held by `Hold` (from `<leftCtrlOff>`).
    Release { key: &'static str, shown: Shown },
    /// Do nothing for this long: the guest is drawing a menu or loading a kernel.
    Wait(Duration),
}

impl fmt::Debug for Action {
    /// Like a derived `Debug`, except that a secret's keys are not shown: they spell it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Press {
                shown: Shown::Secret,
                ..
            } => f
                .debug_struct("Press")
                .field("keys", &SECRET_MASK)
                .field("shown", &Shown::Secret)
                .finish(),
            Action::Press { keys, shown } => f
                .debug_struct("Press")
                .field("keys", keys)
                .field("shown", shown)
                .finish(),
            Action::Hold { key, shown } => f
                .debug_struct("Hold")
                .field("key", key)
                .field("shown", shown)
                .finish(),
            Action::Release { key, shown } => f
                .debug_struct("Release")
                .field("key", key)
                .field("shown", shown)
                .finish(),
            Action::Wait(duration) => f.debug_tuple("Wait").field(duration).finish(),
        }
    }
}

/// Where something was written in the boot command's source; both count from 1, columns in
/// characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// A mistake in a boot command, and where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("boot command, line {}, column {}: {}", .at.line, .at.column, .problem)]
pub struct BootCommandError {
    pub at: Position,
    pub problem: Problem,
}

/// What is wrong in a boot command; each message says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("{0:?} has no key on a US keyboard, so it cannot be typed")]
    NoKey(char),
    #[error("unknown key <{written}>; {}", unknown_key_hint(.written, .suggestion.as_deref()))]
    UnknownKey {
        written: String,
        suggestion: Option<String>,
    },
    #[error("no spaces inside <{written}>: write <{meant}>")]
    SpacesInTag { written: String, meant: String },
    #[error("<{written}> is not a wait: {reason}; write e.g. <wait5>, <wait500ms> or <wait1m30s>")]
    BadWait { written: String, reason: String },
    #[error("<{0}> waits for no time; leave it out or give a duration")]
    ZeroWait(String),
    #[error("<{0}> would hold Shift as well; hold <leftShiftOn> and the lowercase key instead")]
    UppercaseHeld(String),
    #[error("<{0}On> is already held (no <{0}Off> since the last <{0}On>)")]
    AlreadyHeld(String),
    #[error("<{0}Off> releases a key that is not held; add <{0}On> before it or remove it")]
    NotHeld(String),
    #[error(
        "<{0}On> is never released, so the key would stay down; add <{0}Off> after the keys it goes with"
    )]
    NeverReleased(String),
    #[error("this {{{{ is never closed with }}}}")]
    UnclosedPlaceholder,
    #[error("this quoted text is never closed with {0}")]
    UnclosedQuote(char),
    #[error("unknown escape \\{0} in quoted text; only \\\" and \\\\ are understood")]
    UnknownEscape(char),
    #[error("expected .Name, env \"VAR\" or \"text\" after {{{{, found {0}")]
    ExpectedPlaceholder(String),
    #[error("expected }}}} to close the placeholder, found {0}")]
    ExpectedClose(String),
    #[error(
        "expected a variable name in quotes after env, found {0} (write {{{{ env \"VAR\" }}}})"
    )]
    ExpectedVariable(String),
    #[error("unknown function `{0}`; the only function is env, as in {{{{ env \"VAR\" }}}}")]
    UnknownFunction(String),
    #[error("{{{{ .{name} }}}} is not a value kiln provides here; {}", unknown_name_hint(.suggestion.as_deref(), .known))]
    UnknownName {
        name: String,
        suggestion: Option<String>,
        known: Vec<String>,
    },
    #[error("{{{{ env \"{0}\" }}}}: {0} is not set in kiln's environment")]
    EnvNotSet(String),
    #[error("{{{{ env \"{0}\" }}}}: the value of {0} is not valid UTF-8")]
    EnvNotUnicode(String),
    #[error("the value of {placeholder} cannot be typed: its character {index}{} has no key on a US keyboard", shown_char(*.char))]
    ValueNoKey {
        placeholder: String,
        /// Which character of the value, from 1.
        index: usize,
        /// The character, or None when the value is secret.
        char: Option<char>,
    },
    #[error(
        "the value of {0} contains a line break, which kiln does not type from a value (press Enter with <enter>)"
    )]
    ValueLineBreak(String),
}

fn unknown_key_hint(written: &str, suggestion: Option<&str>) -> String {
    match suggestion {
        Some(name) => format!("did you mean <{name}>?"),
        None => format!("to type it as text, write {{{{ \"<{written}>\" }}}}"),
    }
}

fn unknown_name_hint(suggestion: Option<&str>, known: &[String]) -> String {
    match (suggestion, known) {
        (Some(name), _) => format!("did you mean {{{{ .{name} }}}}?"),
        (None, []) => "none are".to_string(),
        (None, known) => format!("these are: {}", known.join(", ")),
    }
}

fn shown_char(c: Option<char>) -> String {
    c.map(|c| format!(" ({c:?})")).unwrap_or_default()
}

/// The values placeholders stand for: names the caller provides (some secret) and where
/// `{{ env "VAR" }}` reads from.
#[derive(Clone, Default)]
pub struct Values {
    named: BTreeMap<String, Value>,
    /// None: the process environment. Some: these variables only (tests, a replayed run).
    environment: Option<BTreeMap<String, String>>,
}

#[derive(Clone)]
struct Value {
    text: String,
    secret: bool,
}

impl Values {
    /// No names; `{{ env "VAR" }}` reads the process environment.
    pub fn new() -> Values {
        Values::default()
    }

    /// `{{ .name }}` types `text`, and the log shows it.
    pub fn with(self, name: &str, text: impl Into<String>) -> Values {
        self.with_value(name, text.into(), false)
    }

    /// `{{ .name }}` types `text`, and the log shows `•••` instead.
    pub fn with_secret(self, name: &str, text: impl Into<String>) -> Values {
        self.with_value(name, text.into(), true)
    }

    /// `{{ env "VAR" }}` reads these variables instead of the process environment.
    pub fn with_environment<K, V>(mut self, variables: impl IntoIterator<Item = (K, V)>) -> Values
    where
        K: Into<String>,
        V: Into<String>,
    {
        let variables = variables
            .into_iter()
            .map(|(name, value)| (name.into(), value.into()));
        self.environment = Some(variables.collect());
        self
    }

    /// The names `{{ .Name }}` can use, for [`BootCommand::check_names`].
    pub fn names(&self) -> Vec<&str> {
        self.named.keys().map(String::as_str).collect()
    }

    fn with_value(mut self, name: &str, text: String, secret: bool) -> Values {
        self.named.insert(name.to_string(), Value { text, secret });
        self
    }

    fn env(&self, variable: &str) -> Result<String, Problem> {
        match &self.environment {
            Some(variables) => variables
                .get(variable)
                .cloned()
                .ok_or_else(|| Problem::EnvNotSet(variable.to_string())),
            None => match std::env::var(variable) {
                Ok(value) => Ok(value),
                Err(std::env::VarError::NotPresent) => {
                    Err(Problem::EnvNotSet(variable.to_string()))
                }
                Err(std::env::VarError::NotUnicode(_)) => {
                    Err(Problem::EnvNotUnicode(variable.to_string()))
                }
            },
        }
    }
}

impl fmt::Debug for Values {
    /// Shows what is not secret; secrets and environment values only by name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let named: BTreeMap<&str, &str> = self
            .named
            .iter()
            .map(|(name, value)| {
                let shown = if value.secret {
                    SECRET_MASK
                } else {
                    &value.text
                };
                (name.as_str(), shown)
            })
            .collect();
        let environment: Option<Vec<&String>> =
            self.environment.as_ref().map(|vars| vars.keys().collect());
        f.debug_struct("Values")
            .field("named", &named)
            .field("environment", &environment)
            .finish()
    }
}

/// A parsed boot command: checked, ready to be expanded into actions once values are known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootCommand {
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// Known when parsing: text, keys, holds and waits.
    Fixed(Action),
    /// `{{ .name }}`, written at `at` (its `{{`).
    Name { name: String, at: Position },
    /// `{{ env "variable" }}`, written at `at` (its `{{`).
    Env { variable: String, at: Position },
}

impl BootCommand {
    /// Read a boot command; every mistake in the text is found here, with its line and column.
    pub fn parse(source: &str) -> Result<BootCommand, BootCommandError> {
        let tokens = Parser::new(source).run()?;
        Ok(BootCommand { tokens })
    }

    /// True when there is nothing to type or wait for.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Check that every `{{ .Name }}` is one of `known`, before the values themselves exist
    /// (the answer-file server's port is picked later).
    pub fn check_names(&self, known: &[&str]) -> Result<(), BootCommandError> {
        for token in &self.tokens {
            if let Token::Name { name, at } = token
                && !known.contains(&name.as_str())
            {
                return Err(unknown_name(name, *at, known));
            }
        }
        Ok(())
    }

    /// Everything to do, in order, with the placeholders filled in from `values`.
    pub fn actions(&self, values: &Values) -> Result<Vec<Action>, BootCommandError> {
        let mut actions = Vec::new();
        for token in &self.tokens {
            match token {
                Token::Fixed(action) => actions.push(action.clone()),
                Token::Name { name, at } => {
                    let value = values
                        .named
                        .get(name)
                        .ok_or_else(|| unknown_name(name, *at, &values.names()))?;
                    let placeholder = format!("{{{{ .{name} }}}}");
                    type_value(&mut actions, &value.text, value.secret, &placeholder)
                        .map_err(|problem| BootCommandError { at: *at, problem })?;
                }
                Token::Env { variable, at } => {
                    let placeholder = format!("{{{{ env \"{variable}\" }}}}");
                    values
                        .env(variable)
                        .and_then(|text| type_value(&mut actions, &text, true, &placeholder))
                        .map_err(|problem| BootCommandError { at: *at, problem })?;
                }
            }
        }
        Ok(actions)
    }
}

fn unknown_name(name: &str, at: Position, known: &[&str]) -> BootCommandError {
    let suggestion = closest(name, known.iter().copied()).map(str::to_string);
    BootCommandError {
        at,
        problem: Problem::UnknownName {
            name: name.to_string(),
            suggestion,
            known: known.iter().map(|name| name.to_string()).collect(),
        },
    }
}

/// Append the key presses that type `text`; secret text is shown masked, in errors too.
fn type_value(
    actions: &mut Vec<Action>,
    text: &str,
    secret: bool,
    placeholder: &str,
) -> Result<(), Problem> {
    for (index, c) in text.chars().enumerate() {
        // An environment variable read from a file often ends in a newline nobody meant to type.
        if c == '\n' || c == '\r' {
            return Err(Problem::ValueLineBreak(placeholder.to_string()));
        }
        let keys = key_for_char(c).ok_or_else(|| Problem::ValueNoKey {
            placeholder: placeholder.to_string(),
            index: index + 1,
            char: (!secret).then_some(c),
        })?;
        let shown = if secret {
            Shown::Secret
        } else {
            Shown::Char(c)
        };
        actions.push(Action::Press { keys, shown });
    }
    Ok(())
}

/// Consecutive actions that make one line of a step log, e.g. "typed `install auto=true`".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk<'a> {
    pub actions: &'a [Action],
    /// What was done, in the past tense; secrets masked.
    pub shown: String,
}

/// Group actions into log lines: a run of typed text, a run of named keys, and each hold,
/// release and wait on its own. Perform a chunk's actions, then log its `shown`.
pub fn chunks(actions: &[Action]) -> Vec<Chunk<'_>> {
    let mut chunks = Vec::new();
    let mut rest = actions;
    while let Some(first) = rest.first() {
        let kind = ChunkKind::of(first);
        let length = if kind.groups() {
            rest.iter()
                .take_while(|action| ChunkKind::of(action) == kind)
                .count()
        } else {
            1
        };
        let (taken, left) = rest.split_at(length);
        chunks.push(Chunk {
            actions: taken,
            shown: describe(kind, taken),
        });
        rest = left;
    }
    chunks
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkKind {
    /// Presses that type characters (secret or not).
    Text,
    /// Presses of named keys.
    Keys,
    Hold(Shown),
    Release(Shown),
    Wait(Duration),
}

impl ChunkKind {
    fn of(action: &Action) -> ChunkKind {
        match action {
            Action::Press {
                shown: Shown::Char(_) | Shown::Secret,
                ..
            } => ChunkKind::Text,
            Action::Press {
                shown: Shown::Key(_),
                ..
            } => ChunkKind::Keys,
            Action::Hold { shown, .. } => ChunkKind::Hold(*shown),
            Action::Release { shown, .. } => ChunkKind::Release(*shown),
            Action::Wait(duration) => ChunkKind::Wait(*duration),
        }
    }

    /// Text and key presses read well as one line; holds and waits are worth a line each.
    fn groups(self) -> bool {
        matches!(self, ChunkKind::Text | ChunkKind::Keys)
    }
}

fn describe(kind: ChunkKind, actions: &[Action]) -> String {
    match kind {
        ChunkKind::Text => format!("typed `{}`", masked_text(actions)),
        ChunkKind::Keys => format!("pressed {}", masked_text(actions)),
        ChunkKind::Hold(shown) => format!("holding {shown} down"),
        ChunkKind::Release(shown) => format!("released {shown}"),
        ChunkKind::Wait(duration) => format!("waited {}", human_duration(duration)),
    }
}

/// What presses show, each run of secret characters as one `•••` so its length stays hidden.
fn masked_text(actions: &[Action]) -> String {
    let mut text = String::new();
    let mut in_secret = false;
    for action in actions {
        let Action::Press { shown, .. } = action else {
            continue;
        };
        match shown {
            Shown::Secret if in_secret => {}
            Shown::Secret => text.push_str(SECRET_MASK),
            shown => text.push_str(&shown.to_string()),
        }
        in_secret = *shown == Shown::Secret;
    }
    text
}

/// `500 ms`, `5 s`, `1.5 s`, `1 min 30 s`, `2 h`.
fn human_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if duration < Duration::from_secs(1) && !duration.subsec_nanos().is_multiple_of(1_000_000) {
        return format!("{duration:?}");
    }
    if millis < 1000 {
        return format!("{millis} ms");
    }
    let hours = millis / 3_600_000;
    let minutes = millis / 60_000 % 60;
    let seconds = millis % 60_000;
    let mut parts = Vec::new();
    if hours > 0 {
        parts.push(format!("{hours} h"));
    }
    if minutes > 0 {
        parts.push(format!("{minutes} min"));
    }
    if seconds > 0 {
        let fraction = format!("{:03}", seconds % 1000);
        let fraction = fraction.trim_end_matches('0');
        let point = if fraction.is_empty() { "" } else { "." };
        parts.push(format!("{}{point}{fraction} s", seconds / 1000));
    }
    parts.join(" ")
}

/// Reads the source once, left to right, into tokens.
struct Parser {
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
    fn new(source: &str) -> Parser {
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

    fn run(mut self) -> Result<Vec<Token>, BootCommandError> {
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

/// Whether `<inside>` is a tag rather than text: letters and digits, and for a wait also the
/// `.` and `µ` of a duration.
fn is_tag_name(inside: &str) -> bool {
    let is_wait = inside
        .get(..4)
        .is_some_and(|w| w.eq_ignore_ascii_case("wait"));
    let allowed = |c: char| c.is_ascii_alphanumeric() || is_wait && (c == '.' || c == 'µ');
    !inside.is_empty() && inside.chars().all(allowed)
}

/// The name a hold is written with, for messages: `leftCtrl` for `<leftCtrlOn>`.
fn held_name(shown: &Shown) -> String {
    match shown {
        Shown::Key(name) => name.to_string(),
        other => other.to_string(),
    }
}

/// What `<written>` does, or why it is wrong.
fn tag_action(written: &str) -> Result<Action, Problem> {
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

/// Names people bring from elsewhere for a wait, for suggesting `<wait>` only.
const WAIT_NAMES: &[&str] = &["sleep", "pause"];

/// The closest valid tag to a misspelt one, keeping an `On`/`Off` the person wrote.
fn suggest_key(written: &str) -> Option<String> {
    let lower = written.to_ascii_lowercase();
    for suffix in ["On", "Off"] {
        let suffix_lower = suffix.to_ascii_lowercase();
        if let Some(base) = lower.strip_suffix(&suffix_lower)
            && let Some(name) = suggest_key_name(base)
        {
            return Some(format!("{name}{suffix}"));
        }
    }
    suggest_key_name(&lower).map(str::to_string)
}

fn suggest_key_name(written: &str) -> Option<&'static str> {
    if let Some(name) = familiar_name(written) {
        return Some(name);
    }
    if WAIT_NAMES
        .iter()
        .any(|name| name.eq_ignore_ascii_case(written))
    {
        return Some("wait");
    }
    let names = PACKER_KEYS.iter().map(|(name, _)| *name).chain(["wait"]);
    closest(written, names)
}

/// The candidate nearest to `written` (ignoring case), if it is near enough to be a typo.
fn closest<'a>(written: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let written = written.to_lowercase();
    // One slip per three letters: `<br>` is not a misspelt `<bs>`, `<entre>` is `<enter>`.
    let typo_limit = (written.chars().count() / 3).min(3);
    candidates
        .map(|candidate| {
            (
                edit_distance(&written, &candidate.to_lowercase()),
                candidate,
            )
        })
        .filter(|(distance, _)| *distance <= typo_limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Edits (insert, delete, replace, swap two neighbours) that turn `a` into `b`: how close a
/// misspelt name is to a known one.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut rows = vec![vec![0; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let replace = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + replace);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

/// The duration of `<wait…>` (`written` includes the `wait`).
fn wait(written: &str) -> Result<Duration, Problem> {
    let spec = written[4..].to_lowercase();
    let bad = |reason: String| Problem::BadWait {
        written: written.to_string(),
        reason,
    };
    let duration = if spec.is_empty() {
        Duration::from_secs(1)
    } else if spec.chars().all(|c| c.is_ascii_digit()) {
        // Packer reads a bare number as seconds: <wait5>, <wait10>.
        let seconds = spec
            .parse()
            .map_err(|_| bad(format!("{spec} seconds is too long")))?;
        Duration::from_secs(seconds)
    } else {
        go_duration(&spec).map_err(bad)?
    };
    if duration.is_zero() {
        return Err(Problem::ZeroWait(written.to_string()));
    }
    Ok(duration)
}

/// A duration as boot commands write them (`10s`, `1m30s`, `500ms`; a bare number is
/// seconds), for the boot wait and the key interval.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim().to_lowercase();
    if !text.is_empty() && text.chars().all(|c| c.is_ascii_digit()) {
        return text
            .parse()
            .map(Duration::from_secs)
            .map_err(|_| format!("{text} seconds is too long"));
    }
    if text.is_empty() {
        return Err("a duration is missing (e.g. 10s, 1m30s, 500ms)".into());
    }
    go_duration(&text)
}

/// Go's `time.ParseDuration` for what a wait needs: numbers with an optional fraction, each
/// followed by a unit (`1m30s`, `1.5h`, `500ms`), no sign.
fn go_duration(spec: &str) -> Result<Duration, String> {
    let mut rest = spec;
    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let number_length = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_length);
        let unit_length = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_length);
        total_nanos += term_nanos(number, unit)?;
        rest = after;
    }
    let nanos = u64::try_from(total_nanos).map_err(|_| format!("{spec} is too long"))?;
    Ok(Duration::from_nanos(nanos))
}

/// Nanoseconds in one `number unit` term of a duration.
fn term_nanos(number: &str, unit: &str) -> Result<u128, String> {
    let unit_nanos: u128 = match unit {
        "h" => 3_600_000_000_000,
        "m" => 60_000_000_000,
        "s" => 1_000_000_000,
        "ms" => 1_000_000,
        "us" | "µs" => 1_000,
        "ns" => 1,
        "" => return Err(format!("{number} needs a unit (h, m, s or ms)")),
        unit => return Err(format!("unknown unit `{unit}` (h, m, s or ms)")),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return Err(format!("a number is missing before `{unit}`"));
    }
    if fraction.contains('.') {
        return Err(format!("`{number}` is not a number"));
    }
    let too_long = || format!("{number}{unit} is too long");
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| too_long())?
    };
    let mut nanos = whole.checked_mul(unit_nanos).ok_or_else(too_long)?;
    // Each fraction digit is worth a tenth of the one before; past a nanosecond it is dropped,
    // as Go does.
    let mut digit_worth = unit_nanos;
    for digit in fraction.chars().filter_map(|c| c.to_digit(10)) {
        digit_worth /= 10;
        nanos += u128::from(digit) * digit_worth;
    }
    Ok(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(source: &str) -> BootCommand {
        BootCommand::parse(source).unwrap_or_else(|e| panic!("{source:?}: {e}"))
    }

    fn parse_error(source: &str) -> BootCommandError {
        match BootCommand::parse(source) {
            Ok(command) => panic!("{source:?} parsed as {command:?}"),
            Err(error) => error,
        }
    }

    fn at(line: usize, column: usize) -> Position {
        Position { line, column }
    }

    /// The actions of a command without placeholders.
    fn fixed_actions(source: &str) -> Vec<Action> {
        parse(source).actions(&Values::new()).unwrap()
    }

    fn press(key: &'static str, name: &'static str) -> Action {
        Action::Press {
            keys: vec![key],
            shown: Shown::Key(name),
        }
    }

    fn typed(text: &str) -> Vec<Action> {
        text.chars()
            .map(|c| Action::Press {
                keys: key_for_char(c).unwrap(),
                shown: Shown::Char(c),
            })
            .collect()
    }

    fn wait_of(source: &str) -> Duration {
        match fixed_actions(source).as_slice() {
            [Action::Wait(duration)] => *duration,
            other => panic!("{source}: {other:?}"),
        }
    }

    fn log(actions: &[Action]) -> Vec<String> {
        chunks(actions)
            .into_iter()
            .map(|chunk| chunk.shown)
            .collect()
    }

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
    fn waits_in_every_form() {
        let cases = [
            ("<wait>", Duration::from_secs(1)),
            ("<wait5>", Duration::from_secs(5)),
            ("<wait10>", Duration::from_secs(10)),
            ("<wait3>", Duration::from_secs(3)),
            ("<WAIT10>", Duration::from_secs(10)),
            ("<wait2s>", Duration::from_secs(2)),
            ("<wait500ms>", Duration::from_millis(500)),
            ("<wait1m30s>", Duration::from_secs(90)),
            ("<wait1h>", Duration::from_secs(3600)),
            ("<wait1h2m3s4ms>", Duration::from_millis(3_723_004)),
            ("<wait1.5s>", Duration::from_millis(1500)),
            ("<wait.5m>", Duration::from_secs(30)),
            ("<wait250us>", Duration::from_micros(250)),
            ("<wait250µs>", Duration::from_micros(250)),
            ("<wait7ns>", Duration::from_nanos(7)),
            ("<Wait2M>", Duration::from_secs(120)),
        ];
        for (source, expected) in cases {
            assert_eq!(wait_of(source), expected, "{source}");
        }
    }

    #[test]
    fn malformed_waits_are_errors() {
        let cases = [
            ("<wait1x>", "unknown unit `x`"),
            ("<waitms>", "a number is missing before `ms`"),
            ("<wait1m30>", "30 needs a unit"),
            ("<wait1.2.3s>", "`1.2.3` is not a number"),
            ("<wait.s>", "a number is missing before `s`"),
            ("<waitOn>", "unknown unit `on`"),
            ("<wait99999999999999999999>", "too long"),
            ("<wait9999999999h>", "too long"),
        ];
        for (source, reason_part) in cases {
            let error = parse_error(source);
            assert_eq!(error.at, at(1, 1), "{source}");
            match &error.problem {
                Problem::BadWait { reason, .. } => {
                    assert!(reason.contains(reason_part), "{source}: {reason}")
                }
                other => panic!("{source}: {other:?}"),
            }
        }
        for source in ["<wait0>", "<wait0s>", "<wait0.0001ns>"] {
            let error = parse_error(source);
            assert!(matches!(error.problem, Problem::ZeroWait(_)), "{error}");
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
    fn unknown_keys_are_errors_with_a_suggestion() {
        let cases = [
            ("<entre>", Some("enter")),
            ("<Enterr>", Some("enter")),
            ("<pgup>", Some("pageUp")),
            ("<space>", Some("spacebar")),
            ("<backspace>", Some("bs")),
            ("<escape>", Some("esc")),
            ("<ctrl>", Some("leftCtrl")),
            ("<leftCtlOn>", Some("leftCtrlOn")),
            ("<rihgtAltOff>", Some("rightAltOff")),
            ("<sleep>", Some("wait")),
            ("<br>", None),
            ("<xyzzy>", None),
        ];
        for (source, suggestion) in cases {
            let error = parse_error(source);
            let written = source.trim_matches(|c| c == '<' || c == '>').to_string();
            let expected = Problem::UnknownKey {
                written,
                suggestion: suggestion.map(str::to_string),
            };
            assert_eq!(error.problem, expected, "{source}");
        }
        let message = parse_error("go <entre>").to_string();
        assert_eq!(
            message,
            "boot command, line 1, column 4: unknown key <entre>; did you mean <enter>?"
        );
        let message = parse_error("<br>").to_string();
        assert!(message.ends_with(r#"write {{ "<br>" }}"#), "{message}");
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
    fn placeholders_take_the_values_given() {
        let values = Values::new()
            .with(HTTP_IP, "10.0.2.2")
            .with(HTTP_PORT, "8123");
        for source in [
            "{{ .HTTPIP }}:{{ .HTTPPort }}",
            "{{.HTTPIP}}:{{.HTTPPort}}",
            "{{   .HTTPIP\t}}:{{.HTTPPort   }}",
            "{{ .HTTPIP\n}}:{{\n.HTTPPort }}",
        ] {
            let actions = parse(source).actions(&values).unwrap();
            assert_eq!(actions, typed("10.0.2.2:8123"), "{source:?}");
        }
    }

    #[test]
    fn unknown_names_are_errors_at_the_placeholder() {
        let command = parse("url=http://{{ .HTTPIP }}:{{ .HttpPort }}/");
        assert_eq!(command.check_names(&[HTTP_IP, "HttpPort", "Name"]), Ok(()));
        let error = command.check_names(&[HTTP_IP, HTTP_PORT]).unwrap_err();
        assert_eq!(error.at, at(1, 26));
        assert_eq!(
            error.problem,
            Problem::UnknownName {
                name: "HttpPort".to_string(),
                suggestion: Some(HTTP_PORT.to_string()),
                known: vec![HTTP_IP.to_string(), HTTP_PORT.to_string()],
            }
        );
        assert_eq!(
            error.to_string(),
            "boot command, line 1, column 26: {{ .HttpPort }} is not a value kiln provides \
             here; did you mean {{ .HTTPPort }}?"
        );
        let values = Values::new().with(HTTP_IP, "10.0.2.2");
        let error = command.actions(&values).unwrap_err();
        assert_eq!(error.at, at(1, 26));
        assert!(matches!(error.problem, Problem::UnknownName { .. }));
        let error = parse("{{ .Disk }}").check_names(&[]).unwrap_err();
        assert!(error.to_string().ends_with("none are"), "{error}");
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
    fn env_values_are_typed_and_always_secret() {
        let values = Values::new().with_environment([("KILN_TEST_ROOT_PW", "Hunter2!")]);
        let command = parse("pw={{ env \"KILN_TEST_ROOT_PW\" }}<enter>");
        let actions = command.actions(&values).unwrap();
        let keys: Vec<Vec<&str>> = actions
            .iter()
            .filter_map(|action| match action {
                Action::Press {
                    keys,
                    shown: Shown::Secret,
                } => Some(keys.clone()),
                _ => None,
            })
            .collect();
        let expected: Vec<Vec<&str>> = "Hunter2!"
            .chars()
            .map(|c| key_for_char(c).unwrap())
            .collect();
        assert_eq!(keys, expected);
        assert_eq!(actions.len(), 3 + 8 + 1);
        assert_eq!(log(&actions), ["typed `pw=•••`", "pressed <enter>"]);
        let shown = format!("{actions:?} {values:?}");
        assert!(!shown.contains("Hunter2"), "{shown}");
        assert!(!shown.contains("\"h\""), "a secret's keys in {shown}");

        let error = command.actions(&Values::new().with_environment([("OTHER", "x")]));
        assert_eq!(
            error.unwrap_err(),
            BootCommandError {
                at: at(1, 4),
                problem: Problem::EnvNotSet("KILN_TEST_ROOT_PW".to_string()),
            }
        );
    }

    /// Only the process environment is read without `with_environment`. Setting a variable in
    /// this process is unsafe (other test threads read the environment), so this test runs
    /// itself again as a child process with the variable set.
    #[test]
    fn env_values_come_from_the_process_environment() {
        const VARIABLE: &str = "KILN_BOOT_COMMAND_TEST_ENV_7F3A";
        const VALUE: &str = "s3cret Pw";
        if std::env::var_os(VARIABLE).is_some() {
            let command = parse(&format!("{{{{ env \"{VARIABLE}\" }}}}"));
            let actions = command.actions(&Values::new()).unwrap();
            let secret: Vec<Action> = typed(VALUE)
                .into_iter()
                .map(|action| match action {
                    Action::Press { keys, .. } => Action::Press {
                        keys,
                        shown: Shown::Secret,
                    },
                    other => other,
                })
                .collect();
            assert_eq!(actions, secret);
            return;
        }
        let module = module_path!().split_once("::").map_or("", |(_, path)| path);
        let test = format!("{module}::env_values_come_from_the_process_environment");
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args([test.as_str(), "--exact", "--test-threads=1"])
            .env(VARIABLE, VALUE)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stdout}\n{stderr}");
        assert!(
            stdout.contains("1 passed"),
            "the child ran no test: {stdout}"
        );
    }

    #[test]
    fn secret_values_are_masked_in_the_log_and_errors() {
        let values = Values::new()
            .with_secret("Password", "tiny")
            .with_secret("Other", "x")
            .with("User", "root");
        let actions = parse("{{ .User }}:{{ .Password }}{{ .Other }} {{.Password}}")
            .actions(&values)
            .unwrap();
        assert_eq!(log(&actions), ["typed `root:••• •••`"]);
        assert!(!format!("{values:?}").contains("tiny"));

        let values = Values::new().with_secret("Password", "pässword");
        let error = parse("{{ .Password }}").actions(&values).unwrap_err();
        assert_eq!(
            error.problem,
            Problem::ValueNoKey {
                placeholder: "{{ .Password }}".to_string(),
                index: 2,
                char: None,
            }
        );
        assert!(!error.to_string().contains('ä'), "{error}");
        let values = Values::new().with("Name", "hé");
        let error = parse("{{ .Name }}").actions(&values).unwrap_err();
        assert!(error.to_string().contains("character 2 ('é')"), "{error}");
    }

    #[test]
    fn a_line_break_in_a_value_is_an_error() {
        let values = Values::new().with_environment([("PW", "secret\n")]);
        let error = parse("x {{ env \"PW\" }}").actions(&values).unwrap_err();
        assert_eq!(error.at, at(1, 3));
        assert_eq!(
            error.problem,
            Problem::ValueLineBreak("{{ env \"PW\" }}".to_string())
        );
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
    fn named_keys_in_a_row_make_one_log_line() {
        let actions = fixed_actions("<esc><esc><enter><wait500ms>e<down><wait1m30s>");
        assert_eq!(
            log(&actions),
            [
                "pressed <esc><esc><enter>",
                "waited 500 ms",
                "typed `e`",
                "pressed <down>",
                "waited 1 min 30 s",
            ]
        );
    }

    #[test]
    fn durations_read_naturally() {
        let cases = [
            (Duration::from_millis(500), "500 ms"),
            (Duration::from_secs(5), "5 s"),
            (Duration::from_millis(1500), "1.5 s"),
            (Duration::from_millis(1050), "1.05 s"),
            (Duration::from_secs(90), "1 min 30 s"),
            (Duration::from_secs(3600), "1 h"),
            (Duration::from_secs(3601), "1 h 1 s"),
            (Duration::from_micros(250), "250µs"),
        ];
        for (duration, expected) in cases {
            assert_eq!(human_duration(duration), expected);
        }
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
}
