//! The guest's serial console as a terminal model: bytes in, a screen with scrollback out.
//! Frontends draw the screen (the TUI) or stream the raw bytes (headless).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Lines kept above the visible screen.
pub const SCROLLBACK: usize = 5000;

/// A shared terminal model of one serial port.
#[derive(Clone)]
pub struct Console {
    inner: Arc<ConsoleInner>,
}

struct ConsoleInner {
    parser: Mutex<vt100::Parser>,
    /// Bumped on every change, so a frontend redraws only when there is something new.
    version: AtomicU64,
    /// Whether the last byte fed was a carriage return (for LF-only output).
    last_was_cr: Mutex<bool>,
}

impl Console {
    pub fn new(rows: u16, cols: u16) -> Console {
        Console {
            inner: Arc::new(ConsoleInner {
                parser: Mutex::new(vt100::Parser::new(rows, cols, SCROLLBACK)),
                version: AtomicU64::new(0),
                last_was_cr: Mutex::new(false),
            }),
        }
    }

    /// Feed bytes from the guest. A bare LF becomes CR LF: many guests (kernels, initramfs
    /// scripts) write LF only, which a terminal would draw as a staircase.
    pub fn feed(&self, bytes: &[u8]) {
        let mut last_was_cr = self.inner.last_was_cr.lock().expect("console lock");
        let mut normalised = Vec::with_capacity(bytes.len() + 16);
        for &b in bytes {
            if b == b'\n' && !*last_was_cr {
                normalised.push(b'\r');
            }
            normalised.push(b);
            *last_was_cr = b == b'\r';
        }
        self.parser().process(&normalised);
        self.inner.version.fetch_add(1, Ordering::Relaxed);
    }

    /// Resize the model to the pane it is drawn in.
    pub fn resize(&self, rows: u16, cols: u16) {
        let mut parser = self.parser();
        if parser.screen().size() != (rows, cols) {
            parser.screen_mut().set_size(rows, cols);
            self.inner.version.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Scroll the view back by `lines` (0 follows the newest output).
    pub fn set_scrollback(&self, lines: usize) {
        self.parser().screen_mut().set_scrollback(lines);
        self.inner.version.fetch_add(1, Ordering::Relaxed);
    }

    pub fn version(&self) -> u64 {
        self.inner.version.load(Ordering::Relaxed)
    }

    /// Lock the model to draw it.
    pub fn parser(&self) -> MutexGuard<'_, vt100::Parser> {
        self.inner.parser.lock().expect("console lock")
    }

    /// The visible text, row by row (for tests and plain-text reports).
    pub fn text(&self) -> String {
        self.parser().screen().contents()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lf_only_output_does_not_staircase() {
        let console = Console::new(5, 20);
        console.feed(b"one\ntwo\nthree\r\nfour\n");
        let text = console.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines, ["one", "two", "three", "four"]);
    }

    #[test]
    fn cr_split_across_chunks_is_not_doubled() {
        let console = Console::new(4, 20);
        console.feed(b"a\r");
        console.feed(b"\nb\n");
        assert_eq!(console.text().lines().collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn scrollback_keeps_old_lines() {
        let console = Console::new(3, 20);
        for i in 0..10 {
            console.feed(format!("line {i}\n").as_bytes());
        }
        assert!(!console.text().contains("line 0"));
        console.set_scrollback(8);
        assert!(console.text().contains("line 0"), "{}", console.text());
        let before = console.version();
        console.feed(b"x");
        assert!(console.version() > before);
    }
}
