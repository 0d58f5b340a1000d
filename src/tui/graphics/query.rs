//! One bounded round trip to the terminal, before raw mode, asking what it can draw: the kitty
//! graphics query, XTSMGRAPHICS (sixel geometry and colour registers), XTVERSION (its name),
//! the cell size in pixels (`CSI 16t`) and, last, Primary Device Attributes (`CSI c`, which
//! every terminal answers; attribute 4 is sixel). The answers are read one byte at a time on
//! this thread, with `poll` bounding the wait, and reading stops at the last DA1 answer: a key
//! typed after it stays queued for the workbench, one typed before it is kept with the reply
//! (see [`crate::tui::typed_ahead`]), and no thread is left reading the keyboard.
//!
//! Inside tmux the queries go to tmux itself (its name, and its DA1 ends the first part) and,
//! when passthrough is allowed, a second time wrapped in passthrough to the terminal outside,
//! whose DA1 ends the round trip.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

/// What one terminal (tmux, or the one outside it) answered.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Answers {
    /// Its name and version (XTVERSION), e.g. `XTerm(379)`.
    pub name: Option<String>,
    /// Its Primary Device Attributes; 4 means sixel.
    pub attributes: Option<Vec<u16>>,
    /// Sixel geometry in pixels (XTSMGRAPHICS), when it draws sixel.
    pub sixel_geometry: Option<(u16, u16)>,
    /// Sixel colour registers (XTSMGRAPHICS).
    pub colour_registers: Option<u16>,
    /// It answered the kitty graphics query with OK.
    pub kitty: bool,
    /// Its cell size in pixels, width × height (`CSI 16t`).
    pub cell: Option<(u16, u16)>,
}

impl Answers {
    pub fn sixel(&self) -> bool {
        self.attributes.as_ref().is_some_and(|a| a.contains(&4))
    }
}

/// The round trip's result: the first terminal's answers and, inside tmux with passthrough,
/// the outer terminal's. `complete` is false when the wait ran out before the last DA1.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Reply {
    pub first: Answers,
    pub outer: Option<Answers>,
    pub complete: bool,
    /// Bytes that were no answer: keys typed before the answers came, in order.
    pub typed: Vec<u8>,
}

/// The kitty graphics query: a 1×1 RGB picture, `a=q` asks to check it without keeping it.
const KITTY_QUERY: &str = "\x1b_Gi=31,s=1,v=1,a=q,t=d,f=24;AAAA\x1b\\";
const SIXEL_GEOMETRY: &str = "\x1b[?2;1;0S";
const COLOUR_REGISTERS: &str = "\x1b[?1;1;0S";
const VERSION: &str = "\x1b[>q";
const CELL_SIZE: &str = "\x1b[16t";
const DEVICE_ATTRIBUTES: &str = "\x1b[c";

/// Whom the queries are for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Asking {
    /// The terminal kiln runs in.
    Terminal,
    /// tmux, for its name only: it takes the other queries for something else (a kitty query
    /// would become the pane's title).
    Tmux,
    /// tmux for its name, then (wrapped in passthrough) the terminal outside it.
    ThroughTmux,
}

impl Asking {
    pub fn new(in_tmux: bool, passthrough: bool) -> Asking {
        match (in_tmux, passthrough) {
            (false, _) => Asking::Terminal,
            (true, false) => Asking::Tmux,
            (true, true) => Asking::ThroughTmux,
        }
    }

    /// The bytes to send, DA1 last; for the outer terminal after tmux's own, so tmux's DA1
    /// comes back first.
    fn queries(self) -> String {
        let all = [
            KITTY_QUERY,
            SIXEL_GEOMETRY,
            COLOUR_REGISTERS,
            VERSION,
            CELL_SIZE,
            DEVICE_ATTRIBUTES,
        ]
        .concat();
        let tmux_own = [VERSION, DEVICE_ATTRIBUTES].concat();
        match self {
            Asking::Terminal => all,
            Asking::Tmux => tmux_own,
            Asking::ThroughTmux => format!(
                "{tmux_own}\x1bPtmux;{}\x1b\\",
                all.replace('\x1b', "\x1b\x1b")
            ),
        }
    }

    /// How many DA1 answers end the round trip.
    fn terminals(self) -> usize {
        if self == Asking::ThroughTmux { 2 } else { 1 }
    }
}

/// Ask the controlling terminal and wait at most `limit` for the answers; `None` when there
/// is no terminal to ask.
pub fn ask(asking: Asking, limit: Duration) -> Option<Reply> {
    let mut tty = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open("/dev/tty")
        .ok()?;
    let quiet = Quiet::enter(&tty)?;
    let reply = tty
        .write_all(asking.queries().as_bytes())
        .and_then(|()| tty.flush())
        .ok()
        .map(|()| read_answers(&mut tty, asking.terminals(), limit));
    drop(quiet);
    reply
}

/// Read byte by byte until `expected` DA1 answers came or `limit` ran out.
fn read_answers(tty: &mut File, expected: usize, limit: Duration) -> Reply {
    let deadline = Instant::now() + limit;
    let mut parser = Parser::default();
    while parser.attributes_seen() < expected {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || !readable(tty, left) {
            break;
        }
        let mut byte = [0u8];
        match tty.read(&mut byte) {
            Ok(1) => parser.push(byte[0]),
            _ => break,
        }
    }
    parser.reply(expected)
}

fn readable(tty: &File, within: Duration) -> bool {
    let mut poll = libc::pollfd {
        fd: tty.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let millis = within.as_millis().clamp(1, i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd, its count 1.
    let ready = unsafe { libc::poll(&mut poll, 1, millis) };
    ready == 1 && poll.revents & libc::POLLIN != 0
}

/// The terminal without line editing and echo for the query (the answers are read as they
/// come, not shown); restored as it was when dropped. Changed and restored without flushing,
/// so typed keys stay queued.
struct Quiet {
    fd: i32,
    saved: libc::termios,
}

impl Quiet {
    fn enter(tty: &File) -> Option<Quiet> {
        let fd = tty.as_raw_fd();
        // SAFETY: termios is plain data, filled by tcgetattr on a valid descriptor.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
            return None;
        }
        let mut quiet = saved;
        quiet.c_lflag &= !(libc::ICANON | libc::ECHO);
        quiet.c_cc[libc::VMIN] = 1;
        quiet.c_cc[libc::VTIME] = 0;
        // SAFETY: a valid descriptor and termios.
        if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) } != 0 {
            return None;
        }
        Some(Quiet { fd, saved })
    }
}

impl Drop for Quiet {
    fn drop(&mut self) {
        // SAFETY: the descriptor outlives this guard (it is dropped first in `ask`).
        unsafe { libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved) };
    }
}

/// The answers' grammar: CSI (`ESC [` … final byte), DCS (`ESC P` … ST) and APC (`ESC _` …
/// ST). Each DA1 answer closes one terminal's answers and starts the next one's.
#[derive(Default)]
struct Parser {
    state: State,
    body: Vec<u8>,
    terminals: Vec<Answers>,
    current: Answers,
    typed: Vec<u8>,
}

#[derive(Default, PartialEq)]
enum State {
    #[default]
    Ground,
    Escape,
    Csi,
    /// DCS or APC, until the string terminator; `true` once its ESC came.
    String(bool),
}

/// An answer longer than this is no answer kiln asked for.
const LONGEST_ANSWER: usize = 512;

impl Parser {
    fn attributes_seen(&self) -> usize {
        self.terminals.len()
    }

    fn push(&mut self, byte: u8) {
        match self.state {
            State::Ground if byte == 0x1b => self.state = State::Escape,
            State::Ground => self.typed.push(byte),
            State::Escape => {
                self.body.clear();
                self.body.push(byte);
                self.state = match byte {
                    b'[' => State::Csi,
                    b'P' | b'_' => State::String(false),
                    _ => {
                        self.typed.extend([0x1b, byte]);
                        State::Ground
                    }
                };
            }
            State::Csi => {
                self.body.push(byte);
                if (0x40..=0x7e).contains(&byte) {
                    self.state = State::Ground;
                    self.csi();
                }
            }
            State::String(escaped) => {
                if escaped && byte == b'\\' || byte == 0x07 {
                    self.state = State::Ground;
                    self.string();
                } else {
                    self.state = State::String(byte == 0x1b);
                    if byte != 0x1b {
                        self.body.push(byte);
                    }
                }
            }
        }
        if self.body.len() > LONGEST_ANSWER {
            self.body.clear();
            self.state = State::Ground;
        }
    }

    /// A complete control sequence `ESC [ …`, its final byte last.
    fn csi(&mut self) {
        let text = String::from_utf8_lossy(&self.body[1..]).into_owned();
        let (params, last) = text.split_at(text.len() - 1);
        let numbers =
            |s: &str| -> Vec<u16> { s.split(';').filter_map(|n| n.parse().ok()).collect() };
        match (params.strip_prefix('?'), last) {
            (Some(attributes), "c") => {
                self.current.attributes = Some(numbers(attributes));
                self.terminals.push(std::mem::take(&mut self.current));
            }
            (Some(graphics), "S") => match numbers(graphics)[..] {
                [2, 0, width, height] => self.current.sixel_geometry = Some((width, height)),
                [1, 0, registers] => self.current.colour_registers = Some(registers),
                _ => {}
            },
            (None, "t") => {
                if let [6, height, width] = numbers(params)[..] {
                    self.current.cell = Some((width, height));
                }
            }
            // A key's sequence (an arrow, F5…), typed during the query.
            _ => {
                self.typed.push(0x1b);
                self.typed.extend_from_slice(&self.body);
            }
        }
    }

    /// A complete string `ESC P …` or `ESC _ …`, without its terminator.
    fn string(&mut self) {
        let text = String::from_utf8_lossy(&self.body[1..]).into_owned();
        match self.body[0] {
            b'P' => {
                if let Some(name) = text.strip_prefix(">|") {
                    self.current.name = Some(name.to_string());
                }
            }
            _ => {
                // `Gi=31;OK`; a terminal that cannot draw it answers an error instead.
                if text.starts_with("Gi=31;") && text.ends_with("OK") {
                    self.current.kitty = true;
                }
            }
        }
    }

    fn reply(mut self, expected: usize) -> Reply {
        if self.state == State::Escape {
            // Escape pressed last.
            self.typed.push(0x1b);
        }
        let complete = self.terminals.len() >= expected;
        if !complete && self.current != Answers::default() {
            self.terminals.push(std::mem::take(&mut self.current));
        }
        let mut terminals = self.terminals.into_iter();
        Reply {
            first: terminals.next().unwrap_or_default(),
            outer: if expected > 1 { terminals.next() } else { None },
            complete,
            typed: self.typed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8], expected: usize) -> (Reply, usize) {
        let mut parser = Parser::default();
        let mut used = 0;
        for &byte in bytes {
            if parser.attributes_seen() >= expected {
                break;
            }
            parser.push(byte);
            used += 1;
        }
        (parser.reply(expected), used)
    }

    /// What `xterm -ti vt340` (XTerm 379) answered here, byte for byte.
    const XTERM_VT340: &[u8] =
        b"\x1b[?2;0;480;312S\x1b[?1;0;1024S\x1bP>|XTerm(379)\x1b\\\x1b[?63;1;2;4;6;9;15;16;22;28c";

    #[test]
    fn xterm_as_a_vt340_draws_sixel() {
        let (reply, _) = parse(XTERM_VT340, 1);
        assert!(reply.complete);
        let xterm = reply.first;
        assert_eq!(xterm.name.as_deref(), Some("XTerm(379)"));
        assert!(xterm.sixel() && !xterm.kitty);
        assert_eq!(xterm.sixel_geometry, Some((480, 312)));
        assert_eq!(xterm.colour_registers, Some(1024));
    }

    #[test]
    fn xterm_as_a_vt100_draws_no_pictures() {
        // What `xterm -ti vt100` answered here: XTSMGRAPHICS status 3, "failure".
        let (reply, _) = parse(b"\x1b[?2;3S\x1b[?1;3S\x1bP>|XTerm(379)\x1b\\\x1b[?1;2c", 1);
        assert!(reply.complete);
        assert!(!reply.first.sixel() && !reply.first.kitty);
        assert_eq!(reply.first.sixel_geometry, None);
    }

    #[test]
    fn a_key_typed_after_the_answer_is_not_read() {
        let mut bytes = XTERM_VT340.to_vec();
        bytes.extend_from_slice(b"x");
        let (reply, used) = parse(&bytes, 1);
        assert_eq!(used, XTERM_VT340.len(), "read past the DA1 answer");
        assert!(reply.typed.is_empty());
    }

    #[test]
    fn keys_typed_before_the_answer_are_kept_in_order() {
        let mut bytes = b"ab\x1b[A".to_vec();
        bytes.extend_from_slice(&XTERM_VT340[..15]);
        bytes.extend_from_slice(b"\r");
        bytes.extend_from_slice(&XTERM_VT340[15..]);
        let (reply, _) = parse(&bytes, 1);
        assert!(reply.first.sixel());
        assert_eq!(reply.typed, b"ab\x1b[A\r");
    }

    #[test]
    fn kitty_says_ok_and_its_cell_size() {
        let (reply, _) = parse(
            b"\x1b_Gi=31;OK\x1b\\\x1b[6;20;10t\x1bP>|kitty(0.39.1)\x1b\\\x1b[?62;c",
            1,
        );
        assert!(reply.first.kitty);
        assert_eq!(reply.first.cell, Some((10, 20)));
        assert_eq!(reply.first.name.as_deref(), Some("kitty(0.39.1)"));
    }

    #[test]
    fn inside_tmux_the_outer_terminal_answers_second() {
        // What tmux 3.3a with allow-passthrough on, inside `xterm -ti vt340`, gave here.
        let mut bytes = b"\x1bP>|tmux 3.3a\x1b\\\x1b[?1;2c".to_vec();
        bytes.extend_from_slice(XTERM_VT340);
        let (reply, _) = parse(&bytes, 2);
        assert!(reply.complete);
        assert_eq!(reply.first.name.as_deref(), Some("tmux 3.3a"));
        assert!(!reply.first.sixel());
        let outer = reply.outer.expect("the outer terminal's answers");
        assert_eq!(outer.name.as_deref(), Some("XTerm(379)"));
        assert!(outer.sixel());
    }

    #[test]
    fn no_answer_is_an_incomplete_reply() {
        let (reply, _) = parse(b"", 1);
        assert!(!reply.complete);
        assert_eq!(reply.first, Answers::default());
    }

    #[test]
    fn the_queries_end_on_device_attributes_and_tmux_wraps_a_copy() {
        assert!(Asking::Terminal.queries().ends_with("\x1b[c"));
        assert_eq!(Asking::Tmux.queries(), "\x1b[>q\x1b[c");
        let tmux = Asking::ThroughTmux.queries();
        assert!(tmux.starts_with("\x1b[>q\x1b[c\x1bPtmux;"), "{tmux:?}");
        assert!(tmux.ends_with("\x1b\x1b[c\x1b\\"), "{tmux:?}");
    }
}
