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

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde_with::{DeserializeFromStr, SerializeDisplay};

mod durations;
mod parser;
mod step_log;
mod suggest;
mod tags;
mod typing;

pub use durations::{WrittenDuration, human_duration, parse_duration};
pub use step_log::{Chunk, chunks};
pub(crate) use suggest::edit_distance;
pub use typing::Values;

use parser::Parser;
use suggest::closest;

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

/// A parsed boot command: checked, ready to be expanded into actions once values are known.
/// It keeps the text it was read from, which is what the session file records (serde through
/// `Display` and `FromStr`).
#[derive(Debug, Clone, PartialEq, Eq, SerializeDisplay, DeserializeFromStr)]
pub struct BootCommand {
    source: String,
    tokens: Vec<Token>,
}

impl FromStr for BootCommand {
    type Err = BootCommandError;

    fn from_str(source: &str) -> Result<BootCommand, BootCommandError> {
        BootCommand::for_install(source)
    }
}

impl fmt::Display for BootCommand {
    /// The text it was read from.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
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
        Ok(BootCommand {
            source: source.to_string(),
            tokens,
        })
    }

    /// A boot command for kiln's installs: read, and its `{{ .Name }}`s limited to the ones an
    /// install provides ([`HTTP_IP`], [`HTTP_PORT`]). Every frontend reads a person's boot
    /// command through this (its `FromStr`), so a mistake gets the same message everywhere.
    pub fn for_install(source: &str) -> Result<BootCommand, BootCommandError> {
        let command = BootCommand::parse(source)?;
        command.check_names(&[HTTP_IP, HTTP_PORT])?;
        Ok(command)
    }

    /// The text it was read from.
    pub fn source(&self) -> &str {
        &self.source
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

#[cfg(test)]
mod tests;
