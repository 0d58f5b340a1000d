//! Real pixels for a guest's screen where the terminal can show them (kitty, sixel, iTerm2
//! inline images, through ratatui-image), chosen at start: found by asking the terminal
//! (`auto`, see [`query`]; environment variables are a shortcut) or named (`--graphics`, the
//! `graphics` config key). Elsewhere the half-block renderer draws it. Inside tmux pictures go
//! through tmux's passthrough when tmux allows it.
//!
//! ratatui-image draws the pictures (and wraps them for tmux); its own terminal query is not
//! used: it leaves a thread reading stdin when the terminal does not answer, reads past its
//! answers (keys typed then are lost), and switches tmux's passthrough on by itself.

mod query;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use image::{DynamicImage, RgbImage};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui_image::picker::{Picker, ProtocolType};
use ratatui_image::protocol::StatefulProtocol;
use ratatui_image::{FilterType, FontSize, Resize, StatefulImage};

use crate::engine::guest::screen::Picture;
use crate::engine::host::config::Graphics;
use crate::engine::host::process::run_tool;

/// A picture encoded for the terminal, kept until the picture or its area changes: a guest
/// screen that stays the same costs nothing on the terminal's line.
pub type Encoded = Arc<Mutex<Option<StatefulProtocol>>>;

/// How long the terminal gets to answer the graphics queries. Every terminal answers the last
/// one (DA1) at once; only a line with nothing behind it, or a very busy machine, waits this.
/// Generous: answers that come after it are read by the workbench's input as if typed. With
/// 1 s, tests/terminal_answers.rs lost its typed keys once on a loaded machine; a late answer
/// is the suspected cause (not proven).
const QUERY_TIMEOUT: Duration = Duration::from_millis(3000);

/// What kiln found out about the terminal, for the workbench, its status line and `kiln doctor`.
#[derive(Debug, Clone, Default)]
pub struct Found {
    /// The terminal's name and version as it answered (XTVERSION) or as its environment says.
    pub terminal: Option<String>,
    /// The protocol pictures are drawn with; `None` is half blocks.
    pub protocol: Option<ProtocolType>,
    /// The cell size in pixels, when the terminal or the kernel told it.
    pub cell: Option<(u16, u16)>,
    /// Inside tmux: pictures go through its passthrough.
    pub through_tmux: bool,
    /// Why it is half blocks, and what to set, when a setting would give real pixels.
    pub hint: Option<String>,
    /// Keys typed while the terminal was asked, read with its answers (bytes, in order).
    pub typed: Vec<u8>,
}

impl Found {
    /// One line for people: `XTerm(379): sixel, cells 6×13 px`.
    pub fn summary(&self) -> String {
        let terminal = self.terminal.as_deref().unwrap_or("terminal unnamed");
        let protocol = match self.protocol {
            None => "half blocks",
            Some(ProtocolType::Sixel) => "sixel",
            Some(ProtocolType::Kitty) => "kitty graphics",
            Some(ProtocolType::Iterm2) => "iTerm2 images",
            Some(ProtocolType::Halfblocks) => "half blocks",
        };
        let tmux = if self.through_tmux {
            " through tmux passthrough"
        } else {
            ""
        };
        let cell = self.cell.map_or("cell size unknown".to_string(), |(w, h)| {
            format!("cells {w}×{h} px")
        });
        format!("{terminal}: {protocol}{tmux}, {cell}")
    }

    /// The picker that draws with the protocol found, `None` for half blocks.
    pub fn picker(&self) -> Option<Picker> {
        let protocol = self.protocol?;
        let (width, height) = self.cell.unwrap_or((10, 20));
        // Deprecated in favour of ratatui-image's own stdin query (see the module's comment);
        // it also notices tmux from TERM/TERM_PROGRAM and then wraps pictures for passthrough.
        #[allow(deprecated)]
        let mut picker = Picker::from_fontsize(FontSize { width, height });
        picker.set_protocol_type(protocol);
        Some(picker)
    }
}

/// Find the graphics to use: the one named, or (`auto`) what the environment announces, else
/// what the terminal answers. Call before raw mode: the answers are read from the terminal.
pub async fn find(graphics: Graphics) -> Found {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let mut found = Found {
        cell: kernel_cell_size(),
        ..Found::default()
    };
    let named = match graphics {
        Graphics::Blocks => return found,
        Graphics::Auto => None,
        Graphics::Kitty => Some(ProtocolType::Kitty),
        Graphics::Sixel => Some(ProtocolType::Sixel),
        Graphics::Iterm2 => Some(ProtocolType::Iterm2),
    };
    let in_tmux = env("TMUX").is_some();
    if let Some(protocol) = named.or_else(|| announced_protocol(env)) {
        found.protocol = Some(protocol);
        found.through_tmux = in_tmux;
        found.terminal = env("TERM_PROGRAM").or_else(|| env("TERM"));
        return found;
    }
    let passthrough = if in_tmux {
        match tmux_passthrough().await {
            Ok(on) => on,
            Err(hint) => {
                found.hint = Some(hint);
                false
            }
        }
    } else {
        false
    };
    let Some(reply) = query::ask(query::Asking::new(in_tmux, passthrough), QUERY_TIMEOUT) else {
        return found;
    };
    tracing::info!(
        first = ?reply.first,
        outer = ?reply.outer,
        complete = reply.complete,
        typed = reply.typed.len(),
        "the terminal's answers to the graphics queries"
    );
    let outer = if passthrough {
        reply.outer.clone()
    } else {
        None
    };
    let drawing = outer.as_ref().unwrap_or(&reply.first);
    found.protocol = if drawing.kitty {
        Some(ProtocolType::Kitty)
    } else if drawing.sixel() {
        Some(ProtocolType::Sixel)
    } else {
        None
    };
    found.cell = found.cell.or(drawing.cell);
    found.through_tmux = passthrough && found.protocol.is_some();
    found.typed = reply.typed;
    found.terminal = match (&reply.first.name, &outer) {
        (Some(tmux), Some(outer)) => Some(format!(
            "{} in {tmux}",
            outer.name.as_deref().unwrap_or("a terminal")
        )),
        (name, _) => name.clone(),
    };
    if in_tmux && !passthrough && found.hint.is_none() {
        found.hint = Some(
            "guest screens in half blocks: tmux blocks pictures; \
             `set -g allow-passthrough on` in ~/.tmux.conf"
                .to_string(),
        );
    }
    if !reply.complete {
        tracing::info!("the terminal did not answer the graphics queries in time");
    }
    found
}

/// Whether tmux lets this pane's pictures through to the terminal outside; the hint to give
/// when it cannot tell (a tmux older than 3.3 has no such option).
async fn tmux_passthrough() -> Result<bool, String> {
    match run_tool(
        "tmux",
        ["show-options", "-pAv", "allow-passthrough"],
        Duration::from_secs(2),
    )
    .await
    {
        Ok(value) => Ok(matches!(value.trim(), "on" | "all")),
        Err(error) => {
            tracing::info!(%error, "tmux did not say whether it allows passthrough");
            Err(
                "guest screens in half blocks: tmux blocks pictures (3.3 and later can let \
                 them through)"
                    .to_string(),
            )
        }
    }
}

/// The graphics protocol a terminal's environment variables announce, if any; not inside
/// tmux, where they describe the terminal tmux was started from, not necessarily this one.
fn announced_protocol(variable: impl Fn(&str) -> Option<String>) -> Option<ProtocolType> {
    if variable("TMUX").is_some() {
        return None;
    }
    let term = variable("TERM").unwrap_or_default();
    let program = variable("TERM_PROGRAM").unwrap_or_default();
    if variable("KITTY_WINDOW_ID").is_some() || term == "xterm-kitty" || term == "xterm-ghostty" {
        Some(ProtocolType::Kitty)
    } else if ["iTerm.app", "WezTerm"].contains(&program.as_str())
        || variable("KONSOLE_VERSION").is_some()
    {
        Some(ProtocolType::Iterm2)
    } else if term.starts_with("foot") || term.starts_with("mlterm") {
        Some(ProtocolType::Sixel)
    } else {
        None
    }
}

/// A terminal cell's size in pixels, from the window's as the kernel knows it (TIOCGWINSZ),
/// when the terminal gives it.
fn kernel_cell_size() -> Option<(u16, u16)> {
    match crossterm::terminal::window_size() {
        Ok(size) if size.width > 0 && size.height > 0 && size.columns > 0 && size.rows > 0 => {
            Some((
                (size.width / size.columns).max(1),
                (size.height / size.rows).max(1),
            ))
        }
        _ => None,
    }
}

/// Draw `picture` with real pixels into `area`, its aspect ratio kept, re-encoding only when
/// `encoded` was cleared (a new picture) or the area changed.
pub fn draw(frame: &mut Frame, area: Rect, picture: &Picture, picker: &Picker, encoded: &Encoded) {
    let mut encoded = encoded.lock().unwrap_or_else(|e| e.into_inner());
    let protocol = encoded.get_or_insert_with(|| picker.new_resize_protocol(to_image(picture)));
    // Area-averaging when shrinking keeps thin text strokes readable.
    let widget = StatefulImage::default().resize(Resize::Fit(Some(FilterType::Triangle)));
    frame.render_stateful_widget(widget, area, protocol);
    if picker.tmux_detected() && picker.protocol_type() == ProtocolType::Sixel {
        escape_for_tmux(frame, area);
    }
}

/// ratatui-image 11 wraps a sixel picture in tmux's passthrough but leaves the picture's own
/// string terminator (`ESC \`) single: tmux ends the passthrough there and the terminal gets
/// a cut picture (a blank area). Every escape inside the passthrough is doubled here.
fn escape_for_tmux(frame: &mut Frame, area: Rect) {
    const START: &str = "\x1bPtmux;";
    const END: &str = "\x1b\\";
    let buffer = frame.buffer_mut();
    for y in area.top()..area.bottom() {
        for x in area.left()..area.right() {
            let cell = &mut buffer[(x, y)];
            let symbol = cell.symbol();
            let Some(inner) = symbol
                .strip_prefix(START)
                .and_then(|rest| rest.strip_suffix(END))
            else {
                continue;
            };
            let escaped = inner
                .replace("\x1b\x1b", "\x1b")
                .replace('\x1b', "\x1b\x1b");
            let wrapped = format!("{START}{escaped}{END}");
            cell.set_symbol(&wrapped);
        }
    }
}

fn to_image(picture: &Picture) -> DynamicImage {
    let image = RgbImage::from_raw(
        picture.width as u32,
        picture.height as u32,
        picture.rgb.clone(),
    )
    .unwrap_or_else(|| RgbImage::new(1, 1));
    DynamicImage::ImageRgb8(image)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use ratatui::Terminal;
    use ratatui::backend::CrosstermBackend;

    use crate::tui::recorder::Recorder;

    /// 40×20 pixels (4×1 cells of the fallback 10×20 font: drawn at its own size), every
    /// pixel a different colour.
    fn picture() -> Picture {
        let rgb = (0..40 * 20)
            .flat_map(|i: u32| [(i % 256) as u8, (i / 4) as u8, 255 - (i % 200) as u8])
            .collect();
        Picture {
            width: 40,
            height: 20,
            rgb,
        }
    }

    fn picker(protocol: ProtocolType) -> Picker {
        #[allow(deprecated)]
        let mut picker = Picker::from_fontsize(FontSize {
            width: 10,
            height: 20,
        });
        picker.set_protocol_type(protocol);
        picker
    }

    /// Draw the picture as `protocol` into a terminal that records every byte sent to it;
    /// the bytes each frame wrote.
    fn frames(protocol: ProtocolType, pictures: &[Picture]) -> Vec<String> {
        let picker = picker(protocol);
        let encoded = Encoded::default();
        let recorder = Recorder::default();
        let mut terminal = Terminal::new(CrosstermBackend::new(recorder.clone())).unwrap();
        terminal.resize(Rect::new(0, 0, 20, 6)).unwrap();
        let mut shown: Option<&Picture> = None;
        let mut written = Vec::new();
        for picture in pictures {
            // What MachinePane::show does: a new picture is encoded again, the same one not.
            if shown != Some(picture) {
                *encoded.lock().unwrap() = None;
                shown = Some(picture);
            }
            let before = recorder.len();
            terminal
                .draw(|frame| draw(frame, frame.area(), picture, &picker, &encoded))
                .unwrap();
            written.push(recorder.since(before));
        }
        written
    }

    /// ratatui-image 10 under ratatui 0.30 left every cell after the picture's first one (in
    /// reading order) unsent for good: the console beside the picture and the footer froze.
    #[test]
    fn text_after_the_picture_is_still_redrawn() {
        for protocol in [
            ProtocolType::Sixel,
            ProtocolType::Kitty,
            ProtocolType::Iterm2,
        ] {
            let picker = picker(protocol);
            let encoded = Encoded::default();
            let recorder = Recorder::default();
            let mut terminal = Terminal::new(CrosstermBackend::new(recorder.clone())).unwrap();
            terminal.resize(Rect::new(0, 0, 30, 6)).unwrap();
            for tick in ["tick-one", "tick-two"] {
                let before = recorder.len();
                terminal
                    .draw(|frame| {
                        draw(frame, Rect::new(0, 0, 20, 6), &picture(), &picker, &encoded);
                        let beside = Rect::new(21, 0, 9, 1);
                        let below = Rect::new(21, 4, 9, 1);
                        frame.render_widget(ratatui::text::Line::raw(tick), beside);
                        frame.render_widget(ratatui::text::Line::raw(tick), below);
                    })
                    .unwrap();
                let written = recorder.since(before);
                assert_eq!(
                    written.matches(&tick[5..]).count(),
                    2,
                    "{protocol:?}: `{tick}` beside and below the picture was not sent"
                );
            }
        }
    }

    #[test]
    fn terminals_are_known_by_their_environment() {
        let with = |pairs: &[(&str, &str)]| {
            let pairs: Vec<(String, String)> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            announced_protocol(move |name| {
                pairs
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            })
        };
        assert_eq!(with(&[("TERM", "xterm-kitty")]), Some(ProtocolType::Kitty));
        assert_eq!(
            with(&[("TERM_PROGRAM", "WezTerm")]),
            Some(ProtocolType::Iterm2)
        );
        assert_eq!(with(&[("TERM", "foot")]), Some(ProtocolType::Sixel));
        assert_eq!(with(&[("TERM", "xterm-256color")]), None);
        // Inside tmux the variables may describe another terminal: tmux and the terminal
        // outside are asked instead.
        assert_eq!(
            with(&[("TERM", "xterm-kitty"), ("TMUX", "/tmp/t,1,0")]),
            None
        );
    }

    #[test]
    fn the_summary_names_terminal_protocol_and_cell_size() {
        let found = Found {
            terminal: Some("XTerm(379) in tmux 3.3a".into()),
            protocol: Some(ProtocolType::Sixel),
            cell: Some((6, 13)),
            through_tmux: true,
            hint: None,
            typed: Vec::new(),
        };
        assert_eq!(
            found.summary(),
            "XTerm(379) in tmux 3.3a: sixel through tmux passthrough, cells 6×13 px"
        );
        assert_eq!(
            Found::default().summary(),
            "terminal unnamed: half blocks, cell size unknown"
        );
        assert!(Found::default().picker().is_none());
    }

    #[test]
    fn escapes_inside_tmux_passthrough_are_all_doubled() {
        let mut terminal = Terminal::new(ratatui::backend::TestBackend::new(4, 2)).unwrap();
        terminal
            .draw(|frame| {
                // What ratatui-image 11 wrote for a sixel picture inside tmux, shortened.
                frame.buffer_mut()[(0, 0)]
                    .set_symbol("\x1bPtmux;\x1b\x1b[1;1H\x1b\x1bPq#0;2;0;0;0~\x1b\\\x1b\\");
                escape_for_tmux(frame, frame.area());
            })
            .unwrap();
        assert_eq!(
            terminal.backend().buffer()[(0, 0)].symbol(),
            "\x1bPtmux;\x1b\x1b[1;1H\x1b\x1bPq#0;2;0;0;0~\x1b\x1b\\\x1b\\"
        );
    }

    #[test]
    fn the_iterm2_picture_decodes_back_to_the_screendump() {
        let frame = &frames(ProtocolType::Iterm2, &[picture()])[0];
        let start = frame.find("]1337;File=").expect("an iTerm2 inline image");
        let payload = &frame[start..];
        assert!(payload.contains("width=40px;height=20px"), "{payload:.80}");
        let data = &payload[payload.find(':').unwrap() + 1..payload.find('\x07').unwrap()];
        let png = base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap();
        let decoded = image::load_from_memory(&png).unwrap().to_rgb8();
        assert_eq!((decoded.width(), decoded.height()), (40, 20));
        assert_eq!(
            decoded.into_raw(),
            picture().rgb,
            "the pixels changed on the way"
        );
    }

    #[test]
    fn a_sixel_picture_is_sent_once_while_the_screen_stays_the_same() {
        let still = picture();
        let mut changed = picture();
        changed.rgb[0] ^= 0xff;
        let written = frames(
            ProtocolType::Sixel,
            &[still.clone(), still.clone(), still, changed],
        );
        let sixel = |frame: &String| frame.contains("\x1bP") && frame.contains('#');
        assert!(sixel(&written[0]), "no sixel image in the first frame");
        assert!(
            !sixel(&written[1]) && !sixel(&written[2]),
            "an unchanged screen was sent again: {} and {} bytes",
            written[1].len(),
            written[2].len()
        );
        assert!(written[1].len() < 64, "{:?}", written[1]);
        assert!(sixel(&written[3]), "a changed screen was not sent");
    }
}
