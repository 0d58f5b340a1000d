//! The Install screen in a real terminal: the installer's console is visible and typeable,
//! the VGA screen is drawn, the step completes; Ctrl-C mid-install leaves no QEMU behind.

mod support;

use std::time::Duration;

use support::fixtures::fixtures;
use support::guest::qemu_running_with;
use support::tmux::Tmux;
use support::{Sandbox, kiln_bin};

const SCREEN: Duration = Duration::from_secs(20);
const BOOT: Duration = Duration::from_secs(300);

fn open_install_form(sandbox: &Sandbox, name: &str, width: u16) -> Tmux {
    let command = format!(
        "{} '{}' --memory 1024 --cpus 1; echo \"KILN-EXITED $?\"; sleep 120",
        sandbox.shell_prefix(),
        kiln_bin()
    );
    let tmux = Tmux::start(name, width, 40, &command);
    tmux.wait_for("Steps", SCREEN);
    tmux.keys(&["Down", "Enter"]); // Install
    tmux.wait_for("Boot installer", SCREEN);
    tmux.type_text("disk.qcow2");
    tmux.keys(&["Tab"]);
    tmux.type_text(&fixtures().iso.display().to_string());
    tmux.wait_for("bootable ISO 9660 image", SCREEN);
    tmux
}

#[test]
fn installer_console_is_visible_and_typeable_and_the_step_completes() {
    let sandbox = Sandbox::with_blank_disk();
    let tmux = open_install_form(&sandbox, "install", 100);
    tmux.keys(&["Enter"]);
    tmux.wait_for("Serial console", SCREEN);
    tmux.wait_for("VNC 127.0.0.1:", SCREEN);

    // The fixture installer waits for a line on ttyS0: type one through kiln's console pane.
    tmux.wait_for("type a line and press Enter", BOOT);
    tmux.keys(&["c"]);
    tmux.wait_for("keys → console", SCREEN);
    tmux.type_text("hello-kiln");
    tmux.keys(&["Enter"]);
    tmux.wait_for("got 'hello-kiln'", SCREEN);
    tmux.keys(&["C-]"]);
    tmux.wait_for("keys: kiln", SCREEN);

    // The VGA screen pane shows a picture with more than one colour.
    tmux.keys(&["t"]);
    let start = std::time::Instant::now();
    loop {
        let colours = tmux.distinct_colours();
        if colours >= 2 {
            break;
        }
        assert!(
            start.elapsed() < SCREEN,
            "screen pane stayed blank ({colours} colours)"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    tmux.keys(&["t"]);

    let screen = tmux.wait_for("installed: the guest powered off", BOOT);
    assert!(screen.contains("✔ 2 Install"), "{screen}");
    assert!(!qemu_running_with(&sandbox.work().display().to_string()));
    tmux.keys(&["Escape"]);
    tmux.keys(&["q"]);
    tmux.wait_for("KILN-EXITED 0", SCREEN);
}

#[test]
fn ctrl_c_during_install_leaves_no_qemu_and_restores_the_terminal() {
    let sandbox = Sandbox::with_blank_disk();
    let tmux = open_install_form(&sandbox, "ctrlc-install", 100);
    tmux.keys(&["Enter"]);
    tmux.wait_for("Serial console", SCREEN);
    let image = sandbox.work().join("disk.qcow2").display().to_string();
    tmux.wait_for("kiln-installer:", BOOT);
    assert!(
        qemu_running_with(&image),
        "the installer machine should be running"
    );
    tmux.keys(&["C-c"]);
    tmux.wait_for("KILN-EXITED 0", Duration::from_secs(30));
    assert!(!qemu_running_with(&image), "QEMU outlived kiln");
    assert_eq!(tmux.display("#{alternate_on}"), "0");
}
