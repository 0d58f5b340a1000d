//! The real binary in a real terminal: open the workbench, create an image through the form,
//! quit, and find the terminal restored.

mod support;

use std::time::Duration;

use support::tmux::Tmux;
use support::{Sandbox, kiln_bin, qemu_img_info};

const SCREEN: Duration = Duration::from_secs(20);

fn shell_command(sandbox: &Sandbox) -> String {
    // After kiln exits, print whether the tty is back in canonical mode, then its exit code
    // (last, so waiting for the exit line means both are on screen).
    format!(
        "{} '{}'; rc=$?; stty -a | tr ' ;' '\\n\\n' | grep -x -- '-\\?icanon'; echo \"KILN-EXITED $rc\"; sleep 60",
        sandbox.shell_prefix(),
        kiln_bin()
    )
}

#[test]
fn create_an_image_from_the_workbench_and_quit() {
    let sandbox = Sandbox::new();
    let tmux = Tmux::start("create", 100, 30, &shell_command(&sandbox));
    tmux.wait_for("Steps", SCREEN);
    assert_eq!(tmux.display("#{alternate_on}"), "1");

    tmux.keys(&["Enter"]); // open Create
    tmux.keys(&["C-u"]);
    tmux.type_text("from-tui.qcow2");
    tmux.keys(&["Tab", "C-u"]);
    tmux.type_text("3G");
    tmux.wait_for("3 GiB, allocated", SCREEN);
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("image created", SCREEN);
    assert!(screen.contains("1.1 (qcow2 v3)"), "{screen}");
    assert!(screen.contains("✔ 1 Create"), "{screen}");

    let info = qemu_img_info(&sandbox.work().join("from-tui.qcow2"));
    assert_eq!(info["format-specific"]["data"]["compat"], "1.1");
    assert_eq!(info["virtual-size"], 3u64 << 30);

    // Creating again asks before replacing; answering no keeps the file. (After a step the
    // step list has the keys: Enter opens the screen again, a second Enter runs the form.)
    let before = std::fs::read(sandbox.work().join("from-tui.qcow2")).unwrap();
    tmux.keys(&["Enter", "Enter"]);
    tmux.wait_for("Replace image?", SCREEN);
    tmux.keys(&["n"]);
    assert_eq!(
        std::fs::read(sandbox.work().join("from-tui.qcow2")).unwrap(),
        before
    );

    // Help overlay, then back out and quit.
    tmux.keys(&["Escape"]);
    tmux.keys(&["?"]);
    tmux.wait_for("this help", SCREEN);
    tmux.keys(&["Escape"]);
    tmux.keys(&["q"]);
    let screen = tmux.wait_for("KILN-EXITED 0", SCREEN);
    assert!(
        screen.lines().any(|l| l.trim() == "icanon"),
        "raw mode left on:\n{screen}"
    );
    assert!(
        !screen.contains("Steps"),
        "workbench still drawn:\n{screen}"
    );
    assert_eq!(tmux.display("#{alternate_on}"), "0");
}

#[test]
fn ctrl_c_leaves_from_inside_a_form() {
    let sandbox = Sandbox::new();
    let tmux = Tmux::start("ctrlc", 80, 24, &shell_command(&sandbox));
    tmux.wait_for("Steps", SCREEN);
    tmux.keys(&["Enter"]);
    tmux.type_text("q"); // typed into the path field, not a quit
    tmux.wait_for("my-image.qcow2q", SCREEN);
    tmux.keys(&["C-c"]);
    let screen = tmux.wait_for("KILN-EXITED 0", SCREEN);
    assert!(
        screen.lines().any(|l| l.trim() == "icanon"),
        "raw mode left on:\n{screen}"
    );
    assert_eq!(tmux.display("#{alternate_on}"), "0");
}

#[test]
fn a_broken_user_theme_is_named_and_the_workbench_still_opens() {
    let sandbox = Sandbox::new();
    let themes = sandbox.config_dir().join("themes");
    std::fs::create_dir_all(&themes).unwrap();
    std::fs::write(
        themes.join("default.toml"),
        "[styles]\nerror = { fg = \"rojo\" }\n",
    )
    .unwrap();
    let tmux = Tmux::start("theme", 160, 30, &shell_command(&sandbox));
    let screen = tmux.wait_for("using the built-in theme", SCREEN);
    assert!(screen.contains("styles.error.fg"), "{screen}");
    tmux.keys(&["q"]);
    tmux.wait_for("KILN-EXITED 0", SCREEN);
}

/// /proc/PID/stat field 22, as kiln records it.
fn start_time(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 1..];
    after.split_whitespace().nth(19).unwrap().parse().unwrap()
}

/// A paused QEMU with `extra` arguments, owned by nobody once kiln is gone.
fn paused_qemu(extra: &[String]) -> std::process::Child {
    std::process::Command::new("qemu-system-x86_64")
        .args([
            "-accel",
            "tcg",
            "-m",
            "64",
            "-nodefaults",
            "-display",
            "none",
            "-S",
        ])
        .args(extra)
        .spawn()
        .expect("qemu-system-x86_64 runs")
}

#[test]
fn a_machine_left_by_a_crashed_kiln_is_offered_for_cleanup() {
    let sandbox = Sandbox::new();
    // A real QEMU with nobody owning it (its run directory in its command line, as kiln
    // starts them), and a record naming a kiln that no longer exists.
    let run_dir = sandbox.path().join("run/kiln-configure-Ab3dE9");
    std::fs::create_dir_all(&run_dir).unwrap();
    let qmp = format!("unix:{}/qmp.sock,server=on,wait=off", run_dir.display());
    let mut qemu = paused_qemu(&["-qmp".into(), qmp]);
    // Another program's QEMU whose pid a stale record happens to name: never touched.
    let mut stranger = paused_qemu(&[]);
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = gone.id();
    gone.wait().unwrap();
    let records = sandbox.path().join("data/kiln/machines");
    std::fs::create_dir_all(&records).unwrap();
    // Wait until both have really started (their /proc entries hold the command line).
    for pid in [qemu.id(), stranger.id()] {
        let start = std::time::Instant::now();
        while !std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
            .unwrap_or_default()
            .contains("qemu")
        {
            assert!(start.elapsed() < SCREEN, "QEMU did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    for (pid, dir) in [
        (qemu.id(), run_dir.clone()),
        (stranger.id(), sandbox.path().join("run/kiln-verify-Zz9yX8")),
    ] {
        let record = serde_json::json!({
            "qemu_pid": pid,
            "kiln_pid": dead_pid,
            "purpose": "configure",
            "image": "/tmp/left.qcow2",
            "qemu_started": start_time(pid),
            "run_dir": dir,
        });
        std::fs::write(records.join(format!("{pid}.json")), record.to_string()).unwrap();
    }

    let tmux = Tmux::start("leftover", 100, 30, &shell_command(&sandbox));
    let screen = tmux.wait_for("Machines left running", SCREEN);
    assert!(
        screen.contains(&format!("QEMU pid {}", qemu.id())),
        "{screen}"
    );
    assert!(
        !screen.contains(&format!("QEMU pid {}", stranger.id())),
        "another program's QEMU was offered: {screen}"
    );
    tmux.keys(&["y"]);
    tmux.wait_for("stopped 1 machine(s)", SCREEN);
    let start = std::time::Instant::now();
    while qemu.try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < SCREEN,
            "the leftover QEMU is still running"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        stranger.try_wait().unwrap().is_none(),
        "kiln stopped a QEMU it did not start"
    );
    let _ = stranger.kill();
    let _ = stranger.wait();
    assert!(
        std::fs::read_dir(&records).unwrap().next().is_none(),
        "records removed (the stranger's as stale)"
    );
    tmux.keys(&["q"]);
    tmux.wait_for("KILN-EXITED 0", SCREEN);
}

/// `kiln RECIPE.toml` opens the workbench on the recipe's image, its forms filled in.
#[test]
fn a_recipe_opens_on_its_image_with_its_choices() {
    let sandbox = Sandbox::new();
    let work = sandbox.work();
    std::fs::write(work.join("installer.iso"), b"not really an ISO").unwrap();
    std::fs::write(
        work.join("demo.toml"),
        "name = \"demo\"\n[disk]\nsize = \"7G\"\n[install]\niso = \"installer.iso\"\n\
         [configure]\nuser = \"builder\"\n[[provision]]\nupload = \"demo.toml\"\nto = \"/etc/demo\"\n",
    )
    .unwrap();
    let command = format!(
        "{} '{}' demo.toml; sleep 60",
        sandbox.shell_prefix(),
        kiln_bin()
    );
    let tmux = Tmux::start("recipe", 160, 40, &command);
    let screen = tmux.wait_for("recipe demo:", SCREEN);
    assert!(screen.contains("b runs them"), "{screen}");
    assert!(screen.contains("kiln build"), "{screen}");
    // The step list shows the recipe's stages, its provisioning step among them.
    assert!(screen.contains("provision 1"), "{screen}");
    // Create shows the recipe's image and size.
    tmux.keys(&["Escape"]);
    tmux.keys(&["Up", "Up", "Up", "Up", "Enter"]);
    let create = tmux.wait_for("demo.qcow2", SCREEN);
    assert!(create.contains("7G"), "{create}");
    tmux.keys(&["C-c"]);
}

/// A new user's first keys on a disk just made: the Install form has no ISO yet, and Enter
/// must not start (and record) an install that can only fail. The form says what it needs
/// on its button and under the field; the session file gets no failure.
#[test]
fn enter_on_an_unfilled_install_form_starts_nothing_and_records_nothing() {
    let sandbox = Sandbox::new();
    let out = sandbox.kiln(&["create", "new.qcow2", "--size", "1G"]);
    assert!(out.status.success(), "{}", support::text(&out.stderr));
    // Headless create records no session; the workbench may start one, never with a failure.
    let session = sandbox.work().join("new.kiln.toml");
    let no_failure = || match std::fs::read_to_string(&session) {
        Ok(text) => assert!(
            !text.contains("failed") && !text.contains("[steps.install]"),
            "{text}"
        ),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound),
    };
    let command = format!(
        "{} '{}' new.qcow2; echo \"KILN-EXITED $?\"; sleep 60",
        sandbox.shell_prefix(),
        kiln_bin()
    );
    let tmux = Tmux::start("unfilled", 110, 34, &command);
    let screen = tmux.wait_for("[ Boot installer ]", SCREEN);
    assert!(screen.contains("needs the installer ISO"), "{screen}");
    tmux.keys(&["Down", "Enter"]);
    let screen = tmux.wait_for("the installer ISO is missing", SCREEN);
    assert!(
        !screen.contains("install needs an installer ISO"),
        "{screen}"
    );
    assert!(!screen.contains("✘ 2 Install"), "{screen}");
    // Typing now goes into the ISO field, which Enter focused.
    tmux.type_text("typed-here.iso");
    let screen = tmux.wait_for("typed-here.iso", SCREEN);
    assert!(screen.contains("needs a bootable ISO"), "{screen}");
    no_failure();
    tmux.keys(&["C-c"]);
    tmux.wait_for("KILN-EXITED 0", SCREEN);
    no_failure();
}
