//! The terminal while the workbench runs: raw mode, the alternate screen and mouse capture,
//! given back on every way out. A return, an error or a signal (the event loop quits) drops
//! the guard; a panic restores it in the hook, before the message prints on a sane screen.

use std::io::{self, Stdout, Write};
use std::ops::{Deref, DerefMut};
use std::sync::Once;

use crossterm::cursor::Show;
use crossterm::event::{DisableMouseCapture, EnableMouseCapture};
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

use super::quiet_backend::QuietBackend;

/// The workbench's terminal; dropping it gives the terminal back as it was found.
pub struct TerminalGuard {
    terminal: Terminal<QuietBackend<CrosstermBackend<Stdout>>>,
}

impl TerminalGuard {
    /// Enter raw mode, the alternate screen and mouse capture (clicks on steps and fields).
    pub fn enter() -> io::Result<TerminalGuard> {
        install_panic_hook();
        enable_raw_mode()?;
        let terminal = enter(&mut io::stdout())
            .and_then(|()| Terminal::new(QuietBackend::new(CrosstermBackend::new(io::stdout()))));
        match terminal {
            Ok(terminal) => Ok(TerminalGuard { terminal }),
            Err(e) => {
                restore();
                Err(e)
            }
        }
    }
}

impl Deref for TerminalGuard {
    type Target = Terminal<QuietBackend<CrosstermBackend<Stdout>>>;

    fn deref(&self) -> &Self::Target {
        &self.terminal
    }
}

impl DerefMut for TerminalGuard {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.terminal
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
    }
}

fn enter(out: &mut impl Write) -> io::Result<()> {
    crossterm::execute!(out, EnterAlternateScreen, EnableMouseCapture)
}

/// What undoes [`enter`]; the cursor too, which a draw may have hidden.
fn leave(out: &mut impl Write) -> io::Result<()> {
    crossterm::execute!(out, DisableMouseCapture, LeaveAlternateScreen, Show)
}

/// Give the terminal back; each part is tried even if another fails (nothing is left to tell).
fn restore() {
    let _ = disable_raw_mode();
    let _ = leave(&mut io::stdout());
}

/// Restore the terminal before the previous hook prints the panic (once per process).
fn install_panic_hook() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALTERNATE_SCREEN_ON: &str = "\x1b[?1049h";
    const ALTERNATE_SCREEN_OFF: &str = "\x1b[?1049l";
    /// Mouse click reports (the other mouse modes are switched with it).
    const MOUSE_CLICKS_ON: &str = "\x1b[?1000h";
    const MOUSE_CLICKS_OFF: &str = "\x1b[?1000l";

    fn written(write: fn(&mut Vec<u8>) -> io::Result<()>) -> String {
        let mut out = Vec::new();
        write(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn leaving_turns_off_what_entering_turned_on() {
        let entered = written(enter);
        assert!(entered.contains(ALTERNATE_SCREEN_ON), "{entered:?}");
        assert!(entered.contains(MOUSE_CLICKS_ON), "{entered:?}");
        let left = written(leave);
        assert!(left.contains(ALTERNATE_SCREEN_OFF), "{left:?}");
        assert!(left.contains(MOUSE_CLICKS_OFF), "{left:?}");
        assert!(left.contains("\x1b[?25h"), "the cursor is shown: {left:?}");
    }

    #[test]
    fn mouse_capture_ends_before_the_main_screen_is_back() {
        // Otherwise a click in the shell after kiln would print escape codes there.
        let left = written(leave);
        let mouse_off = left.find(MOUSE_CLICKS_OFF).unwrap();
        let screen_off = left.find(ALTERNATE_SCREEN_OFF).unwrap();
        assert!(mouse_off < screen_off, "{left:?}");
    }
}
