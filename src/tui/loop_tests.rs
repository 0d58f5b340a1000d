//! The real workbench loop on a `TestBackend`, with a real QEMU whose screendump hangs (the
//! process is stopped with SIGSTOP): keys still take effect, because the loop only starts
//! screendumps and never waits for one.

use std::time::Duration;

use crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use super::app::{App, Overlay};
use super::event_loop;
use crate::engine::guest::machine::{Machine, MachineSpec};
use crate::engine::host::Accelerator;

/// Long enough for a loaded 2-core machine; the old loop, which awaited the screendump
/// inline, never got to the key at all.
const LIVELY: Duration = Duration::from_secs(20);

async fn stopped_machine(dir: &std::path::Path) -> Machine {
    let disk = dir.join("disk.qcow2");
    let created = tokio::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&disk)
        .arg("64M")
        .status()
        .await
        .expect("qemu-img runs");
    assert!(created.success());
    let spec = MachineSpec {
        purpose: "loop-test".into(),
        accelerator: Accelerator::Tcg,
        memory_mib: 64,
        cpus: crate::engine::host::vcpus::Vcpus::Exactly(1),
        disk,
        snapshot: true,
        discard: false,
        cdrom: None,
        kernel: None,
        ssh_forward_from: None,
        no_reboot: true,
        vnc: false,
        serial_log: dir.join("serial.log"),
        record_dir: None,
        driver: None,
    };
    let machine = Machine::start(&spec).await.expect("QEMU starts");
    let pid = machine.pid().expect("QEMU runs") as i32;
    // SAFETY: kill(2) on the child we just started; SIGSTOP freezes it until SIGCONT.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    machine
}

#[tokio::test]
async fn a_key_takes_effect_while_a_screendump_hangs() {
    let dir = tempfile::tempdir().unwrap();
    let mut machine = stopped_machine(dir.path()).await;
    let view = machine.view();

    let mut app = App::for_tests("default");
    app.selected = 2; // Configure: a step with a machine pane
    app.configure.run.machine.view = Some(view.clone());
    // Wide enough that console and screen are side by side: the screen is visible.
    let mut terminal = Terminal::new(TestBackend::new(160, 48)).unwrap();

    let (keys, inputs) = futures::channel::mpsc::unbounded();
    let person = async move {
        // The loop asks the frozen QEMU for a screendump as soon as it starts.
        while view.qmp().awaiting_replies() == 0 {
            tokio::task::yield_now().await;
        }
        let f1 = KeyEvent::new(KeyCode::F(1), KeyModifiers::NONE);
        keys.unbounded_send(Ok(TermEvent::Key(f1))).unwrap();
        // Closing the input ends the loop (as a closed terminal does) after the key.
        drop(keys);
        view
    };
    let looping = event_loop(&mut terminal, &mut app, inputs, std::future::pending());
    let (ended, view) = tokio::time::timeout(LIVELY, async { tokio::join!(looping, person) })
        .await
        .expect("the loop went on while the screendump hung");
    ended.unwrap();
    assert_eq!(app.overlay, Overlay::Help, "F1 took effect");
    assert_eq!(
        view.qmp().awaiting_replies(),
        1,
        "the screendump was still hanging when the key took effect"
    );
    let help = format!("{:?}", terminal.backend());
    assert!(help.contains("this help"), "{help}");

    let pid = machine.pid().expect("QEMU still runs") as i32;
    // SAFETY: as above; let QEMU go on so it can be shut down cleanly.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    machine.shut_down(Duration::from_secs(1)).await;
}
