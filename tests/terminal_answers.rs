//! What kiln asks the terminal at start (its graphics, in one bounded round trip) and what it
//! does with the answers, in terminals that answer differently: an xterm without sixel, a
//! terminal with nothing behind it that never answers, and tmux that lets no pictures through.

mod support;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::tmux::Tmux;
use support::xterm::{CELL_HEIGHT, CELL_WIDTH, Xterm, luminance, most_common};
use support::{Sandbox, kiln_bin};

const SCREEN: Duration = Duration::from_secs(30);

/// The log line that says how guest screens will be drawn, once kiln wrote it.
fn guest_screens_line(sandbox: &Sandbox) -> String {
    let started = Instant::now();
    loop {
        let log = std::fs::read_to_string(sandbox.log_file()).unwrap_or_default();
        if let Some(line) = log.lines().find(|l| l.contains("guest screens:")) {
            return line.to_string();
        }
        assert!(
            started.elapsed() < SCREEN,
            "kiln logged no guest screens line"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn an_xterm_without_sixel_stays_on_half_blocks_and_keeps_every_key() {
    let sandbox = Sandbox::new();
    let command = format!(
        "{} {} --theme light; sleep 600",
        sandbox.shell_prefix(),
        kiln_bin()
    );
    let xterm = Xterm::start_with(100, 30, "white", "black", &["-ti", "vt100"], &command);
    // The step list is drawn: its first rows have dark text.
    xterm.wait_for(SCREEN, |shot| {
        let text = (2 * CELL_HEIGHT..7 * CELL_HEIGHT)
            .flat_map(|y| (CELL_WIDTH..14 * CELL_WIDTH).map(move |x| (x, y)))
            .filter(|&(x, y)| luminance(shot.pixel(x, y)) < 0.3)
            .count();
        (text > 60)
            .then_some(())
            .ok_or(format!("{text} text pixels in the step list"))
    });
    // Typed as soon as the workbench shows: every key reaches the Create form.
    xterm.keys(&["Return", "ctrl+u"]);
    xterm.type_text("typed-at-once.qcow2");
    xterm.keys(&["Tab", "ctrl+u"]);
    xterm.type_text("1G");
    xterm.keys(&["Return"]);
    let image = sandbox.work().join("typed-at-once.qcow2");
    let started = Instant::now();
    while !image.exists() {
        assert!(
            started.elapsed() < SCREEN,
            "the typed name did not reach the form"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let line = guest_screens_line(&sandbox);
    assert!(
        line.contains("XTerm(") && line.contains("half blocks"),
        "{line}"
    );
    // After quitting, the terminal's own screen is as kiln found it, empty: no answer to a
    // query was echoed there (only xterm's cursor, one cell, stands out).
    xterm.keys(&["Escape", "q"]);
    xterm.wait_for(SCREEN, |shot| {
        // Inside xterm's one-pixel edge.
        let pixels: Vec<[u8; 3]> = (2..30 * CELL_HEIGHT)
            .flat_map(|y| (2..100 * CELL_WIDTH).map(move |x| (x, y)))
            .map(|(x, y)| shot.pixel(x, y))
            .collect();
        let background = most_common(&pixels);
        let marked = pixels.iter().filter(|&&p| p != background).count();
        (marked <= CELL_WIDTH * CELL_HEIGHT)
            .then_some(())
            .ok_or(format!("{marked} pixels drawn on the terminal after kiln"))
    });
}

#[test]
fn a_terminal_that_never_answers_gets_the_workbench_and_every_key_typed_meanwhile() {
    // `script` gives kiln a terminal whose output goes to this test: nothing answers there.
    let sandbox = Sandbox::new();
    let command = format!(
        "stty cols 100 rows 30; {} {}",
        sandbox.shell_prefix(),
        kiln_bin()
    );
    let mut script = Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("script runs (util-linux)");
    let output = Arc::new(Mutex::new(Vec::new()));
    let mut stdout = script.stdout.take().unwrap();
    let collected = output.clone();
    let reader = std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(n @ 1..) = stdout.read(&mut buffer) {
            collected.lock().unwrap().extend_from_slice(&buffer[..n]);
        }
    });
    let shown = |needle: &str| String::from_utf8_lossy(&output.lock().unwrap()).contains(needle);
    let started = Instant::now();
    // Once kiln has asked about graphics (the kitty query is among the questions), it waits
    // for answers that never come: keys typed now reach the Create form all the same.
    while !shown("\x1b_Gi=31") {
        assert!(
            started.elapsed() < SCREEN,
            "kiln did not ask the terminal: {:?}",
            String::from_utf8_lossy(&output.lock().unwrap())
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    script
        .stdin
        .as_mut()
        .unwrap()
        .write_all(b"\r\x15typed-ahead.qcow2\t\x151G\r")
        .unwrap();
    let image = sandbox.work().join("typed-ahead.qcow2");
    while !image.exists() {
        assert!(
            started.elapsed() < SCREEN,
            "the keys typed while kiln waited did not create the image: {:?}",
            String::from_utf8_lossy(&output.lock().unwrap())
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let line = guest_screens_line(&sandbox);
    assert!(line.contains("half blocks"), "{line}");
    // It works on: Ctrl-C leaves, from the form too.
    script.stdin.as_mut().unwrap().write_all(b"\x03").unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = script.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > SCREEN {
            let _ = script.kill();
            panic!("Ctrl-C did not end kiln");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "kiln ended with {status}");
    reader.join().unwrap();
}

#[test]
fn tmux_without_passthrough_says_why_it_is_half_blocks() {
    let sandbox = Sandbox::new();
    let command = format!("{} {}", sandbox.shell_prefix(), kiln_bin());
    // The whole hint fits the status line of a 100-column terminal.
    let tmux = Tmux::start("no-passthrough", 100, 30, &command);
    let screen = tmux.wait_for("allow-passthrough on` in ~/.tmux.conf", SCREEN);
    assert!(screen.contains("tmux blocks pictures"), "{screen}");
    let line = guest_screens_line(&sandbox);
    assert!(
        line.contains("tmux") && line.contains("half blocks"),
        "{line}"
    );
    tmux.keys(&["q"]);
}
