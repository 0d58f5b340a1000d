//! The guest's screen in a real graphical terminal, as a person sees it: kiln runs in xterm
//! (VT340 mode, so it draws sixel graphics) on a private Xvfb display and installs from the
//! fixture installer ISO; the Screen pane is put on the whole terminal (`f`), kiln saves the
//! very picture it draws (`p`), and the xterm window, photographed with ImageMagick, must show
//! that picture: found by asking the terminal (no `--graphics`), directly and through tmux's
//! passthrough; the same for the half-block fallback, with a lower bar.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::fixtures::fixtures;
use support::guest::qemu_running_with;
use support::xterm::{CELL_HEIGHT, CELL_WIDTH, Picture, Xterm, luminance, most_common};
use support::{Sandbox, kiln_bin};

const COLUMNS: u16 = 160;
const ROWS: u16 = 48;
const SCREEN: Duration = Duration::from_secs(30);
const BOOT: Duration = Duration::from_secs(300);
/// Both pictures are compared at this size, area-averaged: fine enough that text lines and
/// words stand apart, coarse enough that sixel's palette and the terminal's cell grid blur out.
const COMPARE: (usize, usize) = (64, 40);

/// A grey picture, row by row, values 0–1.
type Grey = Vec<f64>;

/// Area-average `width`×`height` pixels (read through `pixel`) down to [`COMPARE`].
fn shrink(width: usize, height: usize, pixel: impl Fn(usize, usize) -> f64) -> Grey {
    let (w, h) = COMPARE;
    let mut out = Vec::with_capacity(w * h);
    for by in 0..h {
        for bx in 0..w {
            let (x0, x1) = (
                bx * width / w,
                ((bx + 1) * width / w).max(bx * width / w + 1),
            );
            let (y0, y1) = (
                by * height / h,
                ((by + 1) * height / h).max(by * height / h + 1),
            );
            let mut sum = 0.0;
            for y in y0..y1 {
                for x in x0..x1 {
                    sum += pixel(x, y);
                }
            }
            out.push(sum / ((x1 - x0) * (y1 - y0)) as f64);
        }
    }
    out
}

/// Pearson correlation of two pictures of the same size: 1 is the same picture whatever its
/// brightness and contrast, 0 unrelated.
fn correlation(a: &Grey, b: &Grey) -> f64 {
    let mean = |v: &Grey| v.iter().sum::<f64>() / v.len() as f64;
    let (ma, mb) = (mean(a), mean(b));
    let (mut cov, mut va, mut vb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        cov += (x - ma) * (y - mb);
        va += (x - ma).powi(2);
        vb += (y - mb).powi(2);
    }
    cov / (va.sqrt() * vb.sqrt()).max(f64::EPSILON)
}

/// The guest picture's rectangle in the screenshot: on the light theme's background the
/// guest's black text console is the one large dark area above the status line.
fn picture_rect(shot: &Picture) -> Option<(usize, usize, usize, usize)> {
    let bottom = (usize::from(ROWS) - 1) * CELL_HEIGHT;
    let right = usize::from(COLUMNS) * CELL_WIDTH;
    let dark = |x: usize, y: usize| luminance(shot.pixel(x, y)) < 0.2;
    // The longest run of mostly dark pixel rows (xterm's own edge can be a dark line too).
    let (mut top, mut last, mut run_start) = (0, 0, None);
    for y in 0..=bottom {
        let is_dark = y < bottom && (0..right).filter(|&x| dark(x, y)).count() > right / 4;
        match (is_dark, run_start) {
            (true, None) => run_start = Some(y),
            (false, Some(start)) => {
                if y - start > last + 1 - top {
                    (top, last) = (start, y - 1);
                }
                run_start = None;
            }
            _ => {}
        }
    }
    let columns: Vec<usize> = (0..right)
        .filter(|&x| (top..=last).filter(|&y| dark(x, y)).count() > (last - top) / 2)
        .collect();
    let (left, end) = (*columns.first()?, *columns.last()?);
    ((end - left) > 100 && (last - top) > 100).then_some((left, top, end + 1, last + 1))
}

fn shot_grey(shot: &Picture, (left, top, right, bottom): (usize, usize, usize, usize)) -> Grey {
    shrink(right - left, bottom - top, |x, y| {
        luminance(shot.pixel(left + x, top + y))
    })
}

fn png_grey(path: &Path) -> Grey {
    let png = image::open(path).unwrap().to_rgb8();
    shrink(png.width() as usize, png.height() as usize, |x, y| {
        let p = png.get_pixel(x as u32, y as u32).0;
        luminance(p)
    })
}

/// The guest picture's rectangle on the dark theme, whose background is as black as the
/// guest's console: where the picture is drawn, at the top left of the terminal, scaled to fit
/// above the status line.
fn fitted_rect(saved: &Path) -> (usize, usize, usize, usize) {
    let (width, height) = image::image_dimensions(saved).unwrap();
    let (room_x, room_y) = (
        f64::from(COLUMNS) * CELL_WIDTH as f64,
        f64::from(ROWS - 1) * CELL_HEIGHT as f64,
    );
    // Fitted, never enlarged.
    let scale = (room_x / f64::from(width))
        .min(room_y / f64::from(height))
        .min(1.0);
    (
        0,
        0,
        (f64::from(width) * scale) as usize,
        (f64::from(height) * scale) as usize,
    )
}

/// How kiln is started for one photograph.
struct Run {
    /// kiln's own flags (no `--graphics`: it asks the terminal).
    flags: &'static str,
    /// Inside tmux, with `allow-passthrough on`, inside the xterm.
    in_tmux: bool,
}

/// A private tmux server, killed with everything in it when dropped (the xterm's end only
/// detaches its client).
struct TmuxServer(String);

impl Drop for TmuxServer {
    fn drop(&mut self) {
        let _ = std::process::Command::new("tmux")
            .args(["-L", &self.0, "kill-server"])
            .status();
    }
}

/// Open kiln in an xterm, start the install from the fixture ISO, show the guest's screen
/// full-screen, and once the installer waits at its prompt, save kiln's picture and
/// photograph the terminal. The picture's correlation with the photograph, and (to show the
/// measure tells pictures apart) with the same picture upside down.
fn shown_versus_saved(run: Run) -> (f64, f64) {
    let sandbox = Sandbox::with_blank_disk();
    let mut command = format!(
        "{} {} {} --memory 1024 --cpus 1",
        sandbox.shell_prefix(),
        kiln_bin(),
        run.flags
    );
    let mut tmux = None;
    if run.in_tmux {
        let socket = format!("kiln-xterm-{}", std::process::id());
        let config = sandbox.path().join("tmux.conf");
        std::fs::write(&config, "set -g allow-passthrough on\nset -g status off\n").unwrap();
        command = format!(
            "tmux -L {socket} -f {} new-session \"{}\"",
            config.display(),
            command.replace('"', "\\\"")
        );
        tmux = Some(TmuxServer(socket));
    }
    let xterm = Xterm::start_with(
        COLUMNS,
        ROWS,
        "white",
        "black",
        &["-ti", "vt340", "-xrm", "XTerm*numColorRegisters: 256"],
        &command,
    );
    // The step list is drawn: its first rows have text that stands out from the background.
    xterm.wait_for(SCREEN, |shot| {
        let background = luminance(shot.pixel(0, 0));
        let text = (2 * CELL_HEIGHT..7 * CELL_HEIGHT)
            .flat_map(|y| (CELL_WIDTH..14 * CELL_WIDTH).map(move |x| (x, y)))
            .filter(|&(x, y)| (luminance(shot.pixel(x, y)) - background).abs() > 0.3)
            .count();
        (text > 60)
            .then_some(())
            .ok_or(format!("{text} text pixels in the step list"))
    });
    xterm.keys(&["Down", "Return"]);
    xterm.type_text("disk.qcow2");
    xterm.keys(&["Tab"]);
    xterm.type_text(&fixtures().iso.display().to_string());
    xterm.keys(&["Return"]);

    // The installer asks on its serial console and waits 8 s: its VGA text console is still.
    let serial_log = sandbox.work().join("disk.install.serial.log");
    let started = Instant::now();
    while !std::fs::read_to_string(&serial_log)
        .unwrap_or_default()
        .contains("type a line and press Enter")
    {
        assert!(started.elapsed() < BOOT, "the installer never asked");
        std::thread::sleep(Duration::from_millis(100));
    }
    if run.in_tmux {
        // tmux answers no background query: the dark default theme on this white xterm. The
        // serial console (the left half under the step's status) is the theme's black, not
        // the terminal's white.
        let (row, columns) = (12, 10..60);
        let background = xterm.wait_for(SCREEN, |shot| {
            let colour = luminance(most_common(&shot.cells(row, columns.clone())));
            (colour < 0.1).then_some(colour).ok_or(format!(
                "the serial console pane's background is not the theme's: luminance {colour:.2}"
            ))
        });
        eprintln!("serial console pane background: luminance {background:.2}");
    }
    xterm.keys(&["f", "p"]);
    let saved = sandbox.work().join("disk.screen-1.png");
    let started = Instant::now();
    while !saved.exists() {
        assert!(started.elapsed() < SCREEN, "kiln saved no picture");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (shot, rect) = xterm.wait_for(SCREEN, |shot| {
        let rect = if run.in_tmux {
            fitted_rect(&saved)
        } else {
            picture_rect(shot).ok_or("no guest picture on the terminal".to_string())?
        };
        Ok((shot.clone(), rect))
    });
    let shown = shot_grey(&shot, rect);
    let kiln_saw = png_grey(&saved);
    let mut upside_down = kiln_saw.clone();
    upside_down.reverse();
    let result = (
        correlation(&shown, &kiln_saw),
        correlation(&shown, &upside_down),
    );
    eprintln!(
        "{}{}: picture at {rect:?} on the terminal; correlation with kiln's screendump {:.3}, with it upside down {:.3}",
        run.flags,
        if run.in_tmux { " in tmux" } else { "" },
        result.0,
        result.1
    );
    xterm.keys(&["ctrl+c"]);
    drop(xterm);
    drop(tmux);
    let disk = sandbox.work().join("disk.qcow2");
    let started = Instant::now();
    while qemu_running_with(&disk.display().to_string()) {
        assert!(started.elapsed() < SCREEN, "QEMU outlived kiln");
        std::thread::sleep(Duration::from_millis(100));
    }
    result
}

#[test]
fn sixel_found_by_asking_shows_the_guest_screen_as_kiln_captured_it() {
    let (same, upside_down) = shown_versus_saved(Run {
        flags: "--theme light",
        in_tmux: false,
    });
    // Sixel carries the picture's own pixels (256 colours, scaled to the pane): nearly 1.
    assert!(
        same > 0.9,
        "the terminal's picture is not the guest's screen: correlation {same:.3}"
    );
    assert!(
        upside_down < same - 0.3,
        "the measure does not tell pictures apart: {upside_down:.3} vs {same:.3}"
    );
}

#[test]
fn half_blocks_show_the_guest_screen_coarsely() {
    let (same, upside_down) = shown_versus_saved(Run {
        flags: "--graphics blocks --theme light",
        in_tmux: false,
    });
    // Two area-averaged pixels per 6×13 cell: text becomes grey bands, lines stay apart.
    assert!(
        same > 0.6,
        "the half-block picture is not the guest's screen: correlation {same:.3}"
    );
    assert!(
        upside_down < same - 0.2,
        "the measure does not tell pictures apart: {upside_down:.3} vs {same:.3}"
    );
}

#[test]
fn sixel_goes_through_tmux_passthrough_and_the_console_keeps_the_theme() {
    let (same, upside_down) = shown_versus_saved(Run {
        flags: "",
        in_tmux: true,
    });
    assert!(
        same > 0.9,
        "through tmux the terminal's picture is not the guest's screen: correlation {same:.3}"
    );
    assert!(
        upside_down < same - 0.3,
        "the measure does not tell pictures apart: {upside_down:.3} vs {same:.3}"
    );
}
