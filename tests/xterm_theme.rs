//! The workbench in a real xterm (under Xvfb) with a white and with a black background: kiln
//! asks the terminal for its background colour (OSC 11) and picks the theme made for it, and
//! every step in the step list can be read whatever the terminal's own colours are.

mod support;

use std::time::Duration;

use support::Sandbox;
use support::xterm::{Picture, Xterm, luminance, most_common};

const COLUMNS: u16 = 100;
const ROWS: u16 = 30;
/// Where the step list draws "· 1 Create" … "· 5 Publish": rows 2–6, from column 1.
const STEP_ROWS: std::ops::Range<usize> = 2..7;
const STEP_COLUMNS: std::ops::Range<usize> = 1..14;
/// A glyph of the 6x13 font lights at least this many pixels; a word, many more.
const MIN_TEXT_PIXELS: usize = 12;

/// How many pixels of `row`'s step name stand out from that row's background.
fn text_pixels(picture: &Picture, row: usize) -> usize {
    let pixels = picture.cells(row, STEP_COLUMNS);
    let background = luminance(most_common(&pixels));
    pixels
        .iter()
        .filter(|pixel| (luminance(**pixel) - background).abs() > 0.25)
        .count()
}

/// Every step's name is drawn in a colour that stands out from its background.
fn every_step_readable(picture: &Picture) -> Result<(), String> {
    let unreadable: Vec<String> = STEP_ROWS
        .map(|row| (row, text_pixels(picture, row)))
        .filter(|(_, pixels)| *pixels < MIN_TEXT_PIXELS)
        .map(|(row, pixels)| format!("row {row} ({pixels} text pixels)"))
        .collect();
    if unreadable.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the step list has unreadable rows: {}",
            unreadable.join(", ")
        ))
    }
}

/// The luminance of the colour most of the terminal's area shows.
fn main_background(picture: &Picture) -> f64 {
    let mut pixels = Vec::new();
    for row in 0..usize::from(ROWS) {
        pixels.extend(picture.cells(row, 0..usize::from(COLUMNS)));
    }
    luminance(most_common(&pixels))
}

/// Open the workbench (with `flags`) in an xterm of the given colours, wait until every step
/// is readable, and return the main background's luminance.
fn workbench_background(background: &str, foreground: &str, flags: &str) -> f64 {
    let sandbox = Sandbox::new();
    let command = format!("{} {} {flags}", sandbox.shell_prefix(), support::kiln_bin());
    let xterm = Xterm::start(COLUMNS, ROWS, background, foreground, &command);
    xterm.wait_for(Duration::from_secs(30), |picture| {
        every_step_readable(picture).map(|()| main_background(picture))
    })
}

#[test]
fn a_white_terminal_gets_the_light_theme() {
    let background = workbench_background("white", "black", "");
    assert!(
        background > 0.7,
        "on a white xterm kiln drew a dark background (luminance {background:.2}): \
         it did not pick the light theme"
    );
}

#[test]
fn a_black_terminal_gets_the_dark_theme() {
    let background = workbench_background("black", "grey90", "");
    assert!(
        background < 0.1,
        "on a black xterm kiln drew a light background (luminance {background:.2})"
    );
}

#[test]
fn a_chosen_dark_theme_stays_readable_on_a_white_terminal() {
    // The default theme paints its own background, so a person who chose it on a white
    // terminal still reads every step.
    let background = workbench_background("white", "black", "--theme default");
    assert!(background < 0.1, "luminance {background:.2}");
}
