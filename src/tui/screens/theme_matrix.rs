//! Every screen in every built-in theme at 80×24 and 160×48: one snapshot per combination (the
//! text, then the colours it was drawn in), and a legibility check of every drawn cell.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::{Color, Modifier, Style};

use crate::engine::Step;
use crate::engine::check::{Check, Verdict};
use crate::engine::host::config::{CliOverrides, FileConfig, HostResources, resolve};
use crate::engine::session::StepStatus;
use crate::engine::task::{Level, Progress};
use crate::tui::app::{App, Focus, Overlay};
use crate::tui::theme::Theme;

/// The smallest terminal kiln supports, and a roomy one.
const SIZES: [(u16, u16); 2] = [(80, 24), (160, 48)];

/// The WCAG 2 contrast every drawn cell must reach. 3:1 is the level for large or bold text
/// (SC 1.4.3) and for UI parts such as borders and marks (SC 1.4.11); body text should reach
/// 4.5:1, but the themes' accents (bold red errors on black, for one) sit between the two.
const MIN_CONTRAST: f64 = 3.0;

type Rgb = [u8; 3];

/// What `Color::Reset` shows: the terminal's own colours, which kiln cannot know. Every theme
/// is judged on both a dark terminal (the xterm default of light grey on black) and a light
/// one (black on white): no text may rely on the terminal's own colours.
#[derive(Clone, Copy, Debug)]
enum TerminalColours {
    Dark,
    Light,
}

impl TerminalColours {
    const BOTH: [TerminalColours; 2] = [TerminalColours::Dark, TerminalColours::Light];

    /// The terminal a theme is made for, which the snapshots' legends assume.
    fn made_for(theme: &str) -> TerminalColours {
        match theme {
            "light" => TerminalColours::Light,
            _ => TerminalColours::Dark,
        }
    }

    /// Foreground and background that `Color::Reset` stands for.
    fn colours(self) -> (Rgb, Rgb) {
        match self {
            TerminalColours::Dark => ([229, 229, 229], [0, 0, 0]),
            TerminalColours::Light => ([0, 0, 0], [255, 255, 255]),
        }
    }
}

fn app(theme: &str) -> App {
    let host = HostResources {
        cpus: 2,
        memory_mib: 8192,
        software_emulation: false,
    };
    let settings = resolve(CliOverrides::default(), FileConfig::default(), host);
    App::new(settings, Theme::built_in(theme))
}

/// Step `index`'s screen open, its form focused.
fn step_open(theme: &str, index: usize) -> App {
    let mut app = app(theme);
    app.selected = index;
    app.focus = Focus::Screen;
    app
}

/// A few log lines, a warning among them, as a machine-booting step writes them.
fn sample_log() -> Vec<(Level, String)> {
    [
        (Level::Info, "booting debian-12.qcow2 with 2 CPUs, 2048 MiB"),
        (Level::Info, "serial: login prompt after 14 s"),
        (Level::Warn, "sshd -t: UsePrivilegeSeparation is deprecated"),
        (Level::Info, "ssh root@127.0.0.1:2222: connected"),
        (Level::Info, "powering off"),
    ]
    .map(|(level, text)| (level, text.to_string()))
    .into()
}

/// What configure asks before it changes sshd_config: kept, added and removed lines.
const SSHD_DIFF: &str = "\
--- sshd_config
+++ sshd_config (kiln)
 Include /etc/ssh/sshd_config.d/*.conf
-#PermitRootLogin prohibit-password
+PermitRootLogin prohibit-password
+PermitEmptyPasswords no
 UsePAM yes
";

/// Every state the matrix draws, by snapshot name. `tmp` holds the session-backed image.
fn screens(theme: &str, tmp: &Path) -> Vec<(String, App)> {
    let mut screens: Vec<(String, App)> = Step::ALL
        .iter()
        .enumerate()
        .map(|(i, step)| (format!("{}_form", step.name()), step_open(theme, i)))
        .collect();

    let mut done = step_open(theme, 2);
    done.configure.run.outcome = vec![
        "configured: root logs in with the key, sshd_config is the reference".into(),
        "machine-id cleared, host keys regenerate at first boot".into(),
    ];
    done.configure.run.log = sample_log();
    screens.push(("configure_done".into(), done));

    let mut failed = step_open(theme, 3);
    failed.verify.run.checks = vec![
        Check::new("qcow2-v3", "qcow2 v3", Verdict::Pass, "compat 1.1"),
        Check::new("size", "virtual size", Verdict::Warn, "24 GiB, above 20 GB")
            .fix("qemu-img resize --shrink disk.qcow2 20G"),
        Check::new("root-login", "root login", Verdict::Fail, "refused")
            .fix("run Configure with the reference sshd_config"),
        Check::skipped("runner", "offline runner", "root login failed"),
    ];
    failed.verify.run.error = Some("1 check failed: root login".into());
    screens.push(("verify_failed".into(), failed));

    let mut held = step_open(theme, 1);
    held.install.run.held = Some("the installer stopped at the partitioning prompt".into());
    held.install.run.log = sample_log();
    screens.push(("install_held".into(), held));

    screens.push(("session_steps".into(), session_backed(theme, tmp)));

    let mut log = app(theme);
    log.configure.run.log = sample_log();
    log.overlay = Overlay::Log {
        step: Step::Configure,
        scroll: 0,
    };
    screens.push(("log_overlay".into(), log));
    for (name, overlay) in [
        ("help", Overlay::Help),
        ("doctor", Overlay::Doctor),
        ("confirm_stop", Overlay::ConfirmStop),
        (
            "confirm_overwrite",
            Overlay::ConfirmOverwrite(PathBuf::from("./my-image.qcow2")),
        ),
        (
            "confirm_diff",
            Overlay::ConfirmDiff {
                diff: SSHD_DIFF.into(),
                scroll: 0,
            },
        ),
    ] {
        let mut app = app(theme);
        app.overlay = overlay;
        screens.push((name.into(), app));
    }
    screens
}

/// A disk opened as `kiln disk.qcow2` does, then taken through the flow so the step list shows
/// every kind of state: create and install skipped, configure done, verify failed, publish
/// running (this process, so it counts as alive) with its progress bar.
fn session_backed(theme: &str, tmp: &Path) -> App {
    let disk = tmp.join("disk.qcow2");
    std::fs::write(&disk, b"QFI\xfb not really an image").unwrap();
    let mut session = crate::engine::session::Session::open(&disk).unwrap();
    session.adopt_existing_image().unwrap();
    for (step, result) in [
        (Step::Configure, Ok("configured".into())),
        (Step::Verify, Err("root login refused".into())),
    ] {
        session.begin(step).unwrap();
        session.end(step, result).unwrap();
    }
    session.begin(Step::Publish).unwrap();
    let mut app = app(theme);
    app.open_image(&disk);
    assert!(matches!(
        app.step_state(Step::Publish),
        StepStatus::Running { .. }
    ));
    app.publish.run.progress = Some(Progress {
        done: 3 << 29,
        total: Some(4 << 30),
        rate: (80 << 20) as f64,
    });
    app.selected = 4;
    app.focus = Focus::Steps;
    app
}

/// Every screen of `theme` drawn at every size, with its name and size.
fn drawn_matrix(theme: &str, tmp: &Path) -> Vec<(String, (u16, u16), Buffer)> {
    let mut drawn = Vec::new();
    for (screen, mut app) in screens(theme, tmp) {
        for (width, height) in SIZES {
            app.width = width;
            let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
            terminal.draw(|frame| super::draw(frame, &app)).unwrap();
            let buffer = terminal.backend().buffer().clone();
            drawn.push((screen.clone(), (width, height), buffer));
        }
    }
    drawn
}

/// The named colours as xterm shows them by default, in palette order (indices 0–15).
const XTERM_16: [(Color, u32); 16] = [
    (Color::Black, 0x000000),
    (Color::Red, 0xcd0000),
    (Color::Green, 0x00cd00),
    (Color::Yellow, 0xcdcd00),
    (Color::Blue, 0x0000ee),
    (Color::Magenta, 0xcd00cd),
    (Color::Cyan, 0x00cdcd),
    (Color::Gray, 0xe5e5e5),
    (Color::DarkGray, 0x7f7f7f),
    (Color::LightRed, 0xff0000),
    (Color::LightGreen, 0x00ff00),
    (Color::LightYellow, 0xffff00),
    (Color::LightBlue, 0x5c5cff),
    (Color::LightMagenta, 0xff00ff),
    (Color::LightCyan, 0x00ffff),
    (Color::White, 0xffffff),
];

/// The RGB a terminal shows for `color`; `default` is what `Reset` means there.
fn rgb(color: Color, default: Rgb) -> Rgb {
    let bytes = |hex: u32| [(hex >> 16) as u8, (hex >> 8) as u8, hex as u8];
    let cube = |level: u8| if level == 0 { 0 } else { 55 + 40 * level };
    match color {
        Color::Reset => default,
        Color::Rgb(r, g, b) => [r, g, b],
        Color::Indexed(n @ 0..=15) => bytes(XTERM_16[n as usize].1),
        Color::Indexed(n @ 16..=231) => {
            let n = n - 16;
            [cube(n / 36), cube(n / 6 % 6), cube(n % 6)]
        }
        Color::Indexed(n) => [8 + 10 * (n - 232); 3],
        named => {
            let (_, hex) = XTERM_16.iter().find(|(c, _)| *c == named).unwrap();
            bytes(*hex)
        }
    }
}

/// WCAG 2 relative luminance.
fn luminance([r, g, b]: Rgb) -> f64 {
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

fn contrast(a: Rgb, b: Rgb) -> f64 {
    let (la, lb) = (luminance(a), luminance(b));
    (la.max(lb) + 0.05) / (la.min(lb) + 0.05)
}

/// How one drawn cell looks: its colours as set, and as the terminal shows them.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Ink {
    fg: Color,
    bg: Color,
    modifier: Modifier,
}

impl Ink {
    /// Foreground and background as shown: `Reset` resolved, `REVERSED` applied.
    fn shown(self, terminal: TerminalColours) -> (Rgb, Rgb) {
        let (default_fg, default_bg) = terminal.colours();
        let (fg, bg) = (rgb(self.fg, default_fg), rgb(self.bg, default_bg));
        if self.modifier.contains(Modifier::REVERSED) {
            (bg, fg)
        } else {
            (fg, bg)
        }
    }

    fn contrast(self, terminal: TerminalColours) -> f64 {
        let (fg, bg) = self.shown(terminal);
        contrast(fg, bg)
    }

    fn describe(self, terminal: TerminalColours) -> String {
        let (fg, bg) = self.shown(terminal);
        let colour = |set: Color, [r, g, b]: Rgb| match set {
            Color::Rgb(..) => format!("{set}"),
            _ => format!("{set}=#{r:02X}{g:02X}{b:02X}"),
        };
        format!(
            "fg {} on bg {} {:?}",
            colour(self.fg, fg),
            colour(self.bg, bg),
            self.modifier
        )
    }
}

/// Every cell with something drawn in it (blank cells carry no text to read), with its ink.
fn drawn_cells(buffer: &Buffer) -> impl Iterator<Item = (u16, u16, &str, Ink)> {
    let cells = buffer.content().iter().enumerate();
    cells
        .filter(|(_, cell)| !cell.symbol().trim().is_empty())
        .map(|(i, cell)| {
            let (x, y) = buffer.pos_of(i);
            let ink = Ink {
                fg: cell.fg,
                bg: cell.bg,
                modifier: cell.modifier,
            };
            (x, y, cell.symbol(), ink)
        })
}

/// The screen's text, then each ink its drawn cells use with its contrast and cell count.
fn snapshot_text(buffer: &Buffer, theme: &str) -> String {
    let mut text = String::new();
    for row in buffer.content().chunks(usize::from(buffer.area.width)) {
        let row: String = row.iter().map(|cell| cell.symbol()).collect();
        text.push_str(row.trim_end());
        text.push('\n');
    }
    let mut inks: HashMap<Ink, usize> = HashMap::new();
    for (_, _, _, ink) in drawn_cells(buffer) {
        *inks.entry(ink).or_default() += 1;
    }
    // Sorted by the description, so the legend reads the same every time.
    let mut legend: Vec<(String, f64, usize)> = inks
        .into_iter()
        .map(|(ink, cells)| {
            let terminal = TerminalColours::made_for(theme);
            (ink.describe(terminal), ink.contrast(terminal), cells)
        })
        .collect();
    legend.sort_by(|a, b| a.0.cmp(&b.0));
    text.push_str("── inks of drawn cells: contrast, cells\n");
    for (ink, ratio, cells) in legend {
        text.push_str(&format!("{ratio:5.2}  {cells:5}  {ink}\n"));
    }
    text
}

/// Replace `path` in snapshots by `[TMP]`, as a literal (regex-escaped) pattern.
fn redacting(path: &Path) -> insta::Settings {
    let literal: String = path
        .display()
        .to_string()
        .chars()
        .flat_map(|c| {
            let escape = "\\.+*?()|[]{}^$#&-~".contains(c);
            escape.then_some('\\').into_iter().chain([c])
        })
        .collect();
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(&literal, "[TMP]");
    settings
}

#[test]
fn every_screen_in_every_theme_and_size() {
    for theme in Theme::names() {
        let tmp = tempfile::tempdir().unwrap();
        let _redacted = redacting(tmp.path()).bind_to_scope();
        for (screen, (width, height), buffer) in drawn_matrix(theme, tmp.path()) {
            let name = format!("{screen}_{theme}_{width}x{height}");
            insta::assert_snapshot!(name, snapshot_text(&buffer, theme));
        }
    }
}

/// The roles of `theme` whose fg or bg is `color`, to point at the line of the theme file.
fn roles_with(theme: &Theme, color: Color) -> String {
    let roles: [(&str, Style); 19] = [
        ("text", theme.text()),
        ("muted", theme.muted()),
        ("title", theme.title()),
        ("border", theme.border(false)),
        ("border_focused", theme.border(true)),
        ("selected", theme.selected()),
        ("step_pending", theme.step(&StepStatus::Pending)),
        ("step_running", theme.running()),
        ("step_done", theme.step(&StepStatus::Done)),
        (
            "step_failed",
            theme.step(&StepStatus::Failed(String::new())),
        ),
        ("input", theme.input(false)),
        ("input_focused", theme.input(true)),
        ("ok", theme.ok()),
        ("warning", theme.warning()),
        ("error", theme.error()),
        ("key_hint", theme.key_hint()),
        ("progress", theme.progress()),
        ("console_bg", theme.console()),
        ("dialog", theme.dialog()),
    ];
    if color == Color::Reset {
        return "terminal default".into();
    }
    let mut named = Vec::new();
    for (role, style) in roles {
        for (which, set) in [("fg", style.fg), ("bg", style.bg)] {
            if set == Some(color) {
                named.push(format!("{role}.{which}"));
            }
        }
    }
    named.join(" ")
}

/// Where an illegible ink was drawn: how often, first where, on which screens.
struct Sightings {
    ink: Ink,
    cells: usize,
    first: String,
    screens: BTreeSet<String>,
}

/// Draw every screen in `theme` and fail, naming each ink below `MIN_CONTRAST` on a dark or a
/// light terminal, if any is.
fn assert_legible(theme_name: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let theme = Theme::built_in(theme_name);
    let drawn = drawn_matrix(theme_name, tmp.path());
    let mut report: Vec<String> = Vec::new();
    for terminal in TerminalColours::BOTH {
        let mut illegible: BTreeMap<String, Sightings> = BTreeMap::new();
        let mut lowest = (f64::INFINITY, String::new());
        for (screen, (width, height), buffer) in &drawn {
            for (x, y, symbol, ink) in drawn_cells(buffer) {
                let ratio = ink.contrast(terminal);
                let place = format!("{screen} {width}x{height} at x {x}, y {y} {symbol:?}");
                if ratio < lowest.0 {
                    lowest = (ratio, format!("{place}, {}", ink.describe(terminal)));
                }
                if ratio < MIN_CONTRAST {
                    let seen =
                        illegible
                            .entry(ink.describe(terminal))
                            .or_insert_with(|| Sightings {
                                ink,
                                cells: 0,
                                first: place,
                                screens: BTreeSet::new(),
                            });
                    seen.cells += 1;
                    seen.screens.insert(screen.clone());
                }
            }
        }
        println!(
            "theme {theme_name} on a {terminal:?} terminal: lowest contrast {:.2} ({})",
            lowest.0, lowest.1
        );
        report.extend(illegible.values().map(|seen| {
            let ink = seen.ink;
            format!(
                "  on a {terminal:?} terminal: {:.2}:1  {}\n    fg is {}; bg is {}\n    \
                 {} cells, first on {}; screens: {}",
                ink.contrast(terminal),
                ink.describe(terminal),
                roles_with(&theme, ink.fg),
                roles_with(&theme, ink.bg),
                seen.cells,
                seen.first,
                seen.screens.iter().cloned().collect::<Vec<_>>().join(", ")
            )
        }));
    }
    assert!(
        report.is_empty(),
        "theme `{theme_name}` (themes/{theme_name}.toml) draws {} colour combination(s) below \
         {MIN_CONTRAST}:1 contrast:\n{}",
        report.len(),
        report.join("\n")
    );
}

#[test]
fn default_theme_is_legible() {
    assert_legible("default");
}

#[test]
fn light_theme_is_legible() {
    assert_legible("light");
}

#[test]
fn high_contrast_theme_is_legible() {
    assert_legible("high-contrast");
}
