//! The real kiln binary in a real graphical terminal: xterm on a private Xvfb display,
//! photographed with ImageMagick's `import`. For what tmux cannot show: the terminal's own
//! colours, and (later) pixels drawn by the program.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// xterm's `6x13` bitmap font: one cell is 6 pixels wide and 13 high.
pub const CELL_WIDTH: usize = 6;
pub const CELL_HEIGHT: usize = 13;

/// An X server and one xterm on it; both are killed when dropped.
pub struct Xterm {
    display: String,
    server: Child,
    terminal: Child,
}

/// A screenshot of the display: RGB pixels, row by row.
#[derive(Clone)]
pub struct Picture {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<[u8; 3]>,
}

impl Xterm {
    /// Start Xvfb on the first free display and, on it, a `columns`×`rows` xterm with the
    /// given colours running `shell_command`, at the top-left corner with no border, so cell
    /// (column, row) starts at pixel (column × 6, row × 13).
    pub fn start(
        columns: u16,
        rows: u16,
        background: &str,
        foreground: &str,
        shell_command: &str,
    ) -> Xterm {
        Xterm::start_with(columns, rows, background, foreground, &[], shell_command)
    }

    /// [`Xterm::start`] with more of xterm's own options, e.g. `-ti vt340` for sixel.
    pub fn start_with(
        columns: u16,
        rows: u16,
        background: &str,
        foreground: &str,
        xterm_options: &[&str],
        shell_command: &str,
    ) -> Xterm {
        let (server, display) = start_server();
        let terminal = Command::new("xterm")
            .args(["-display", &display, "-fn", "6x13", "-b", "0", "+sb"])
            .args(xterm_options)
            .args(["-geometry", &format!("{columns}x{rows}+0+0")])
            .args(["-bg", background, "-fg", foreground])
            .args(["-e", "sh", "-c", shell_command])
            .env_remove("TMUX")
            .stdin(Stdio::null())
            .spawn()
            .expect("xterm runs (apt-get install xterm)");
        Xterm {
            display,
            server,
            terminal,
        }
    }

    /// Press keys in the terminal, as xdotool names them ("Down", "Return", "Tab", "f").
    pub fn keys(&self, keys: &[&str]) {
        self.xdotool(&[&["key", "--delay", "50"][..], keys].concat());
    }

    /// Type text into the terminal.
    pub fn type_text(&self, text: &str) {
        self.xdotool(&["type", "--delay", "20", text]);
    }

    fn xdotool(&self, args: &[&str]) {
        // Without a window manager keys go to the window under the pointer: keep it on xterm.
        let status = Command::new("xdotool")
            .args(["mousemove", "20", "20"])
            .args(args)
            .env("DISPLAY", &self.display)
            .status()
            .expect("xdotool runs (apt-get install xdotool)");
        assert!(status.success(), "xdotool {args:?} failed");
    }

    /// The whole display, as `import` sees it.
    pub fn screenshot(&self) -> Picture {
        let output = Command::new("import")
            .args([
                "-display",
                &self.display,
                "-window",
                "root",
                "-depth",
                "8",
                "ppm:-",
            ])
            .output()
            .expect("import runs (apt-get install imagemagick)");
        assert!(
            output.status.success(),
            "import failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Picture::from_ppm(&output.stdout)
    }

    /// Take screenshots until `ready` accepts one; after `timeout`, panic with `ready`'s last
    /// complaint.
    pub fn wait_for<T>(
        &self,
        timeout: Duration,
        ready: impl Fn(&Picture) -> Result<T, String>,
    ) -> T {
        let started = Instant::now();
        loop {
            let complaint = match ready(&self.screenshot()) {
                Ok(found) => return found,
                Err(complaint) => complaint,
            };
            assert!(
                started.elapsed() < timeout,
                "after {timeout:?} in xterm: {complaint}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Xterm {
    fn drop(&mut self) {
        for child in [&mut self.terminal, &mut self.server] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Xvfb picks a free display number itself and tells it on `-displayfd`.
fn start_server() -> (Child, String) {
    let mut server = Command::new("Xvfb")
        .args([
            "-displayfd",
            "1",
            "-screen",
            "0",
            "1024x768x24",
            "-nolisten",
            "tcp",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("Xvfb runs (apt-get install xvfb)");
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("Xvfb tells its display number");
    let number = line.trim();
    assert!(
        !number.is_empty() && number.chars().all(|c| c.is_ascii_digit()),
        "Xvfb did not start (said {line:?})"
    );
    (server, format!(":{number}"))
}

impl Picture {
    /// Parse a binary PPM (P6, maxval 255): what `import … ppm:-` writes.
    fn from_ppm(bytes: &[u8]) -> Picture {
        let mut fields = Vec::new();
        let mut at = 0;
        while fields.len() < 4 {
            while bytes[at].is_ascii_whitespace() {
                at += 1;
            }
            if bytes[at] == b'#' {
                while bytes[at] != b'\n' {
                    at += 1;
                }
                continue;
            }
            let start = at;
            while !bytes[at].is_ascii_whitespace() {
                at += 1;
            }
            fields.push(String::from_utf8_lossy(&bytes[start..at]).into_owned());
        }
        assert_eq!(fields[0], "P6", "not a binary PPM");
        assert_eq!(fields[3], "255", "PPM with more than 8 bits a channel");
        let width: usize = fields[1].parse().unwrap();
        let height: usize = fields[2].parse().unwrap();
        let data = &bytes[at + 1..];
        assert_eq!(data.len(), width * height * 3, "truncated PPM");
        let pixels = data.chunks(3).map(|p| [p[0], p[1], p[2]]).collect();
        Picture {
            width,
            height,
            pixels,
        }
    }

    pub fn pixel(&self, x: usize, y: usize) -> [u8; 3] {
        self.pixels[y * self.width + x]
    }

    /// The pixels of terminal cells `columns` on `row`.
    pub fn cells(&self, row: usize, columns: std::ops::Range<usize>) -> Vec<[u8; 3]> {
        let mut pixels = Vec::new();
        for y in row * CELL_HEIGHT..(row + 1) * CELL_HEIGHT {
            for x in columns.start * CELL_WIDTH..columns.end * CELL_WIDTH {
                pixels.push(self.pixel(x, y));
            }
        }
        pixels
    }
}

/// Relative luminance, 0 (black) to 1 (white), as WCAG defines it.
pub fn luminance([r, g, b]: [u8; 3]) -> f64 {
    let linear = |c: u8| {
        let c = f64::from(c) / 255.0;
        if c <= 0.03928 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b)
}

/// The colour most of `pixels` have.
pub fn most_common(pixels: &[[u8; 3]]) -> [u8; 3] {
    let mut counts = std::collections::HashMap::new();
    for pixel in pixels {
        *counts.entry(*pixel).or_insert(0usize) += 1;
    }
    counts
        .into_iter()
        .max_by_key(|(_, count)| *count)
        .map(|(pixel, _)| pixel)
        .unwrap_or([0, 0, 0])
}
