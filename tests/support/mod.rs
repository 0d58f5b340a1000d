//! Shared pieces of the integration tests: the real kiln binary in an isolated home.
#![allow(dead_code)] // each test binary uses a different part of this module

pub mod djinn;
pub mod fixtures;
pub mod guest;
pub mod installer;
pub mod sshd;
pub mod static_http;
pub mod tmux;
pub mod xterm;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

/// A private HOME/XDG tree so tests never read or write the developer's config.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let dir = tempfile::tempdir().expect("temp dir");
        for sub in ["config", "data", "work", "cache"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        // The machines' socket directories live here, so even a kiln a test kills outright
        // leaves nothing in the host's temp dir; private, as a real XDG_RUNTIME_DIR is.
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(dir.path().join("run"))
            .unwrap();
        Sandbox { dir }
    }

    /// A sandbox whose work dir holds `disk.qcow2`, a blank 4 GiB disk made by `kiln create`.
    pub fn with_blank_disk() -> Sandbox {
        let sandbox = Sandbox::new();
        let out = sandbox.kiln(&["create", "disk.qcow2", "--size", "4G"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        sandbox
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    pub fn config_dir(&self) -> PathBuf {
        self.dir.path().join("config/kiln")
    }

    /// kiln's download cache (netboot files).
    pub fn download_cache(&self) -> PathBuf {
        self.dir.path().join("cache/kiln/downloads")
    }

    pub fn log_file(&self) -> PathBuf {
        self.dir.path().join("data/kiln/kiln.log")
    }

    /// Environment for a kiln process living in this sandbox.
    pub fn env(&self) -> Vec<(String, String)> {
        let p = self.dir.path();
        vec![
            ("HOME".into(), p.display().to_string()),
            (
                "XDG_CONFIG_HOME".into(),
                p.join("config").display().to_string(),
            ),
            ("XDG_DATA_HOME".into(), p.join("data").display().to_string()),
            (
                "XDG_CACHE_HOME".into(),
                p.join("cache").display().to_string(),
            ),
            (
                "XDG_RUNTIME_DIR".into(),
                p.join("run").display().to_string(),
            ),
        ]
    }

    /// `cd WORK && env HOME=… XDG_…=…`: the start of a shell command (for tmux) that runs a
    /// program in the sandbox.
    pub fn shell_prefix(&self) -> String {
        let env: Vec<String> = self
            .env()
            .into_iter()
            .map(|(k, v)| format!("{k}='{v}'"))
            .collect();
        format!("cd '{}' && env {}", self.work().display(), env.join(" "))
    }

    /// `kiln ARGS…` run in the sandbox's work directory.
    pub fn kiln(&self, args: &[&str]) -> Output {
        Command::new(kiln_bin())
            .args(args)
            .current_dir(self.work())
            .envs(self.env())
            .output()
            .expect("kiln runs")
    }
}

pub fn kiln_bin() -> &'static str {
    env!("CARGO_BIN_EXE_kiln")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Holds an image's write lock the way a running QEMU does (qemu-io keeps it open); released
/// when dropped.
pub struct ImageLock(std::process::Child);

impl ImageLock {
    pub fn hold(image: &Path) -> ImageLock {
        let child = Command::new("qemu-io")
            .arg(image)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("qemu-io (qemu-utils) runs");
        // qemu-io takes the lock as it opens the image; give it a moment.
        std::thread::sleep(std::time::Duration::from_millis(500));
        ImageLock(child)
    }
}

impl Drop for ImageLock {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `qemu-img info --output=json` read by the test itself, not through kiln.
pub fn qemu_img_info(path: &Path) -> serde_json::Value {
    let out = Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(path)
        .output()
        .expect("qemu-img runs");
    assert!(out.status.success(), "qemu-img info: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// An offline runner whose disks directory is in the sandbox: its driver.conf and that
/// directory.
pub fn offline_runner(sandbox: &Sandbox) -> (PathBuf, PathBuf) {
    let disks = sandbox.path().join("disks");
    std::fs::create_dir_all(&disks).unwrap();
    let conf = sandbox.path().join("driver.conf");
    std::fs::write(
        &conf,
        format!("driver qemu {{\n\tdisks  \"{}\"\n}}\n", disks.display()),
    )
    .unwrap();
    (conf, disks)
}

/// Write an executable script.
pub fn write_script(path: &Path, body: &str) {
    std::fs::write(path, body).unwrap();
    let mut permissions = std::fs::metadata(path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(path, permissions).unwrap();
}

/// The stages of `assets/recipes/fixture-ci.toml`, in order, as the build report and the
/// workbench's step list name them.
pub const FIXTURE_CI_STAGES: [&str; 10] = [
    "create",
    "install",
    "configure",
    "provision 1",
    "provision 2",
    "cleanup",
    "verify djinn",
    "publish djinn",
    "publish offline",
    "post-build",
];

/// The image as published by `assets/recipes/fixture-ci.toml`: the Djinn fake holds its bytes,
/// and so does the offline runner's directory, as `debian/NAME`.
pub fn assert_published_twice(djinn: &djinn::DjinnServer, disks: &Path, image: &Path, name: &str) {
    let bytes = std::fs::read(image).unwrap();
    let stored = djinn.images();
    assert_eq!(stored.len(), 1, "{:?}", djinn.requests());
    assert_eq!(stored[0].namespace, "team");
    assert_eq!(djinn.stored_bytes(stored[0].id), bytes);
    let runner_copy = disks.join("qemu/x86_64/debian").join(name);
    assert_eq!(std::fs::read(runner_copy).unwrap(), bytes);
}

/// Poll (every millisecond, for at most 2 minutes) until `began` holds while `child` still
/// runs: the moment a test interrupts work that has started (`what`, for the message).
pub fn wait_while_running(child: &mut Child, what: &str, began: impl Fn() -> bool) {
    let start = Instant::now();
    while !began() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "kiln ended before {what}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no {what} within 2 min"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Ctrl-C for `child` (SIGINT, as a terminal sends it), then all it wrote and how it ended.
pub fn interrupt(child: Child) -> Output {
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    child.wait_with_output().unwrap()
}

/// What `sha256sum FILE` prints in `dir`: the line a checksum file kiln writes must equal.
pub fn sha256sum_line(dir: &Path, file: &str) -> String {
    let out = Command::new("sha256sum")
        .arg(file)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    text(&out.stdout)
}
