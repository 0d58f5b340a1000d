//! The real kiln binary in a real terminal: tmux on a private server socket.

use std::process::Command;
use std::time::{Duration, Instant};

/// A detached tmux session that is killed (with its server) when dropped.
pub struct Tmux {
    socket: String,
    session: String,
}

impl Tmux {
    /// Start `shell_command` in a new `width`×`height` session.
    pub fn start(name: &str, width: u16, height: u16, shell_command: &str) -> Tmux {
        let tmux = Tmux {
            socket: format!("kiln-test-{name}-{}", std::process::id()),
            session: name.to_string(),
        };
        let status = Command::new("tmux")
            .args(["-L", &tmux.socket, "-f", "/dev/null", "new-session", "-d"])
            .args([
                "-s",
                &tmux.session,
                "-x",
                &width.to_string(),
                "-y",
                &height.to_string(),
            ])
            .arg(shell_command)
            .env("TERM", "xterm-256color")
            .status()
            .expect("tmux runs (apt-get install tmux)");
        assert!(status.success(), "tmux new-session failed");
        tmux
    }

    fn tmux(&self) -> Command {
        let mut command = Command::new("tmux");
        command.args(["-L", &self.socket]);
        command
    }

    /// Send keys as tmux names them (`Enter`, `Tab`, `C-u`, `Escape`) or literal text.
    pub fn keys(&self, keys: &[&str]) {
        let status = self
            .tmux()
            .args(["send-keys", "-t", &self.session])
            .args(keys)
            .status()
            .unwrap();
        assert!(status.success());
        // Give the program a moment to read each batch as separate key events.
        std::thread::sleep(Duration::from_millis(150));
    }

    /// A left click at 0-based cell (`column`, `row`), as the terminal reports it to a program
    /// that asked for SGR mouse events: press then release.
    pub fn click(&self, column: u16, row: u16) {
        let (x, y) = (column + 1, row + 1);
        self.type_text(&format!("\x1b[<0;{x};{y}M\x1b[<0;{x};{y}m"));
    }

    /// Resize the terminal, as a person dragging the window would.
    pub fn resize(&self, width: u16, height: u16) {
        let status = self
            .tmux()
            .args(["resize-window", "-t", &self.session])
            .args(["-x", &width.to_string(), "-y", &height.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "tmux resize-window failed");
        std::thread::sleep(Duration::from_millis(300));
    }

    /// The pid of the program running in the pane (the shell's child).
    pub fn program_pid(&self) -> Option<u32> {
        let shell = self.display("#{pane_pid}");
        let out = Command::new("pgrep").args(["-P", &shell]).output().ok()?;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .and_then(|pid| pid.trim().parse().ok())
    }

    /// Type text literally (no key-name interpretation).
    pub fn type_text(&self, text: &str) {
        let status = self
            .tmux()
            .args(["send-keys", "-l", "-t", &self.session, text])
            .status()
            .unwrap();
        assert!(status.success());
        std::thread::sleep(Duration::from_millis(150));
    }

    /// The visible screen as text.
    pub fn capture(&self) -> String {
        self.capture_with(&[])
    }

    /// The screen with soft-wrapped lines joined (`capture-pane -J`): text a shell printed
    /// from wherever the program left the cursor may run over the right edge.
    fn capture_joined(&self) -> String {
        self.capture_with(&["-J"])
    }

    fn capture_with(&self, flags: &[&str]) -> String {
        let out = self
            .tmux()
            .args(["capture-pane", "-p"])
            .args(flags)
            .args(["-t", &self.session])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// How many different colours the screen uses (from a capture with escape sequences).
    pub fn distinct_colours(&self) -> usize {
        let out = self
            .tmux()
            .args(["capture-pane", "-p", "-e", "-t", &self.session])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let mut colours: Vec<&str> = text
            .split('\x1b')
            .filter(|seq| seq.starts_with("[38;2;") || seq.starts_with("[48;2;"))
            .filter_map(|seq| seq.split('m').next())
            .map(|seq| &seq[4..])
            .collect();
        colours.sort_unstable();
        colours.dedup();
        colours.len()
    }

    /// `#{alternate_on}` and friends.
    pub fn display(&self, format: &str) -> String {
        let out = self
            .tmux()
            .args(["display-message", "-p", "-t", &self.session, format])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Wait until the screen contains `needle`; panics with the screen after `timeout`.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> String {
        let start = Instant::now();
        loop {
            let screen = self.capture();
            if screen.contains(needle) {
                return screen;
            }
            // Return the capture that matched: a later one may show a later screen than `screen`.
            let joined = self.capture_joined();
            if joined.contains(needle) {
                return joined;
            }
            if start.elapsed() > timeout {
                panic!("`{needle}` did not appear within {timeout:?}; screen:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux().arg("kill-server").status();
    }
}

/// The workbench's step-list line for a step, e.g. `✔ 2 Install    done`.
pub fn step_line(screen: &str, title: &str) -> String {
    screen
        .lines()
        .find(|l| l.contains(title) && l.starts_with('│'))
        .unwrap_or_else(|| panic!("no {title} line in\n{screen}"))
        .split('│')
        .nth(1)
        .unwrap_or_default()
        .trim()
        .to_string()
}
