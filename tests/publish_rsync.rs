//! `kiln publish --to rsync` against a real OpenSSH server on 127.0.0.1 (a private sshd with
//! its own host key, root let in with a key made for the test) with the real rsync and ssh:
//! the bytes arrive under their name with their checksum; an unknown host key, a refused
//! login, a host that is down, a missing directory and a taken name are refused with what to
//! do, before anything is copied; and a copy cut off by killing the server leaves nothing
//! under the final name and is finished, not started over, by the next publish.
//!
//! The client side lives in the sandbox: its own key, `~/.ssh/config` and known_hosts
//! (`support::sshd`). Nothing in these tests changes what kiln runs: no rsync or ssh option is
//! added for them.

mod support;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::sshd::{SshClient, SshServer, processes_mentioning};
use support::{Sandbox, kiln_bin, sha256sum_line, text};

/// `kiln publish IMAGE --to rsync ARGS…` in the sandbox, with its ssh config on PATH and no
/// agent from the developer's session.
fn publish_command(sandbox: &Sandbox, client: &SshClient, args: &[&str]) -> Command {
    let mut command = Command::new(kiln_bin());
    command
        .arg("publish")
        .args(args)
        .current_dir(sandbox.work())
        .envs(sandbox.env())
        .env("PATH", client.path_var())
        .env_remove("SSH_AUTH_SOCK")
        .env("KILN_LOG", "debug");
    command
}

fn publish(sandbox: &Sandbox, client: &SshClient, args: &[&str]) -> Output {
    publish_command(sandbox, client, args)
        .output()
        .expect("kiln runs")
}

/// A qcow2 v3 image of `mib` MiB of data that does not repeat (so rsync can match nothing
/// by accident), made from a raw file by `qemu-img convert`.
fn image(dir: &Path, name: &str, mib: usize) -> PathBuf {
    let raw = dir.join(format!("{name}.raw"));
    let mut file = std::io::BufWriter::new(std::fs::File::create(&raw).unwrap());
    let mut state = 0x9e37_79b9_7f4a_7c15_u64 ^ (mib as u64) ^ name.len() as u64;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..mib {
        for chunk in block.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes());
        }
        file.write_all(&block).unwrap();
    }
    file.flush().unwrap();
    drop(file);
    let path = dir.join(name);
    let out = Command::new("qemu-img")
        .args([
            "convert",
            "-q",
            "-f",
            "raw",
            "-O",
            "qcow2",
            "-o",
            "compat=1.1",
        ])
        .arg(&raw)
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "qemu-img: {}", text(&out.stderr));
    std::fs::remove_file(raw).unwrap();
    path
}

/// The names in `dir` (which must exist: a wrong directory would hold none).
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn assert_same_file(a: &Path, b: &Path) {
    let (a_bytes, b_bytes) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    assert!(
        a_bytes == b_bytes,
        "{} ({} bytes) differs from {} ({} bytes)",
        a.display(),
        a_bytes.len(),
        b.display(),
        b_bytes.len()
    );
}

/// A server, a sandbox whose ssh knows it and may log in, an image in the sandbox and the
/// directory on the "host" it goes to.
struct Setup {
    server: SshServer,
    sandbox: Sandbox,
    client: SshClient,
    host_dir: tempfile::TempDir,
}

impl Setup {
    fn new(authorized: bool, known: bool, extra_config: &str) -> Setup {
        let server = SshServer::start();
        let sandbox = Sandbox::new();
        let client = SshClient::new(&sandbox, &server, authorized, known, extra_config);
        Setup {
            server,
            sandbox,
            client,
            host_dir: tempfile::tempdir().unwrap(),
        }
    }

    fn dir(&self) -> PathBuf {
        self.host_dir.path().join("images")
    }

    /// `kiln-test-host:<dir>/<rest>`
    fn dest(&self, rest: &str) -> String {
        format!("{}:{}/{rest}", self.client.alias, self.dir().display())
    }

    fn publish(&self, args: &[&str]) -> Output {
        publish(&self.sandbox, &self.client, args)
    }

    /// Why a publish failed or passed: its output and the server's log.
    fn explain(&self, out: &Output) -> String {
        format!(
            "exit {:?}\nstdout:\n{}\nstderr:\n{}\nsshd:\n{}",
            out.status.code(),
            text(&out.stdout),
            text(&out.stderr),
            self.server.log()
        )
    }
}

#[test]
fn the_image_arrives_under_its_name_with_its_checksum_and_progress() {
    let setup = Setup::new(true, true, "");
    std::fs::create_dir(setup.dir()).unwrap();
    let source = image(&setup.sandbox.work(), "debian-12.qcow2", 24);
    let dest = setup.dest("");
    let out = setup.publish(&[
        "debian-12.qcow2",
        "--to",
        "rsync",
        "--dest",
        &dest,
        "--write-sha256",
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{}", setup.explain(&out));

    let published = setup.dir().join("debian-12.qcow2");
    assert_same_file(&source, &published);
    assert_eq!(
        names(&setup.dir()),
        ["debian-12.qcow2", "debian-12.qcow2.sha256"],
        "a temporary file was left"
    );
    // sha256sum's format, naming the file beside it: `sha256sum -c` works in that directory.
    assert_eq!(
        std::fs::read_to_string(setup.dir().join("debian-12.qcow2.sha256")).unwrap(),
        sha256sum_line(&setup.dir(), "debian-12.qcow2")
    );
    let mode = std::fs::metadata(&published).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644, "{mode:o}");
    let shown = format!("{}:{}", setup.client.alias, published.display());
    assert!(stdout.contains(&format!("dest:      {shown}")), "{stdout}");
    assert!(stdout.contains("sha256:"), "{stdout}");
    // The copy's progress in the Djinn upload's words, ending once at the whole file.
    let size = std::fs::metadata(&source).unwrap().len();
    let copying = stderr.find("with rsync\n").expect("the copy is announced");
    let progress = &stderr[copying..];
    assert_eq!(
        progress
            .matches("kiln publish: 100% 24.3 MiB of 24.3 MiB at ")
            .count(),
        1,
        "{stderr}"
    );
    assert!(stderr.contains(&format!("copied to {shown}")), "{stderr}");

    // A directory takes --name; a file named in the destination keeps its own name.
    let out = setup.publish(&[
        "debian-12.qcow2",
        "--to",
        "rsync",
        "--dest",
        &dest,
        "--name",
        "ci",
    ]);
    assert!(out.status.success(), "{}", setup.explain(&out));
    assert_same_file(&source, &setup.dir().join("ci.qcow2"));
    let file = setup.dest("root.img");
    let out = setup.publish(&[
        "debian-12.qcow2",
        "--to",
        "rsync",
        "--dest",
        &file,
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "{}", setup.explain(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["destination"]["target"], "rsync");
    assert_eq!(json["destination"]["dest"], file);
    assert_eq!(json["bytes"], size);
    assert_same_file(&source, &setup.dir().join("root.img"));
    let out = setup.publish(&[
        "debian-12.qcow2",
        "--to",
        "rsync",
        "--dest",
        &file,
        "--name",
        "x",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", setup.explain(&out));
    assert!(text(&out.stderr).contains("--dest names the file already"));
}

#[test]
fn an_unknown_host_key_is_refused_even_where_the_config_accepts_new_ones() {
    let setup = Setup::new(true, false, "  StrictHostKeyChecking accept-new\n");
    std::fs::create_dir(setup.dir()).unwrap();
    image(&setup.sandbox.work(), "img.qcow2", 1);
    let out = setup.publish(&["img.qcow2", "--to", "rsync", "--dest", &setup.dest("")]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}", setup.explain(&out));
    let known_hosts = setup.client.ssh_dir.join("known_hosts");
    let keyscan = format!("ssh-keyscan -p {} 127.0.0.1", setup.server.port);
    let add = format!("`{keyscan} >> {}`", known_hosts.display());
    for words in [
        "checking the destination",
        "never accepts a host key it does not know",
        &add,
        "ssh-keygen -lf -",
        "ssh kiln-test-host",
        "Host key verification failed",
    ] {
        assert!(stderr.contains(words), "{words}: {stderr}");
    }
    assert!(names(&setup.dir()).is_empty(), "{:?}", names(&setup.dir()));
    assert_eq!(
        std::fs::read_to_string(&known_hosts).unwrap(),
        "",
        "the key was accepted"
    );

    // Doing what the message says is enough.
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{keyscan} >> '{}' 2>/dev/null",
            known_hosts.display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
    let out = setup.publish(&["img.qcow2", "--to", "rsync", "--dest", &setup.dest("")]);
    assert!(out.status.success(), "{}", setup.explain(&out));
    assert_eq!(names(&setup.dir()), ["img.qcow2"]);
}

#[test]
fn a_host_key_that_changed_is_refused_and_known_hosts_left_alone() {
    let setup = Setup::new(true, false, "  StrictHostKeyChecking no\n");
    std::fs::create_dir(setup.dir()).unwrap();
    image(&setup.sandbox.work(), "img.qcow2", 1);
    // known_hosts names another key for the server's address.
    let other = setup.sandbox.path().join("other_host_key");
    support::sshd::keygen(&other, "not the server");
    let other_key = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let mut words = other_key.split_whitespace();
    let known_hosts = setup.client.ssh_dir.join("known_hosts");
    let line = format!(
        "[127.0.0.1]:{} {} {}\n",
        setup.server.port,
        words.next().unwrap(),
        words.next().unwrap()
    );
    std::fs::write(&known_hosts, &line).unwrap();
    let out = setup.publish(&["img.qcow2", "--to", "rsync", "--dest", &setup.dest("")]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}", setup.explain(&out));
    let remove = format!(
        "ssh-keygen -R '[127.0.0.1]:{}' -f {}",
        setup.server.port,
        known_hosts.display()
    );
    assert!(
        stderr.contains("is not the one in") && stderr.contains(&remove),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&known_hosts).unwrap(), line);
    assert!(names(&setup.dir()).is_empty());
}

#[test]
fn a_refused_login_and_a_host_that_is_down_are_named_before_anything_is_copied() {
    let mut setup = Setup::new(false, true, "");
    std::fs::create_dir(setup.dir()).unwrap();
    image(&setup.sandbox.work(), "img.qcow2", 1);
    let args = ["img.qcow2", "--to", "rsync", "--dest", &setup.dest("")];
    let out = setup.publish(&args);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}", setup.explain(&out));
    assert!(
        stderr.contains("checking the destination")
            && stderr.contains("kiln-test-host refused the login")
            && stderr.contains("Permission denied (publickey)")
            && stderr.contains("ssh-add"),
        "{stderr}"
    );
    assert!(names(&setup.dir()).is_empty());

    setup.server.kill();
    let out = setup.publish(&args);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", setup.explain(&out));
    assert!(
        stderr.contains("checking the destination")
            && stderr.contains("cannot reach kiln-test-host")
            && stderr.contains("Connection refused"),
        "{stderr}"
    );
}

#[test]
fn a_missing_directory_is_named_and_not_made() {
    let setup = Setup::new(true, true, "");
    image(&setup.sandbox.work(), "img.qcow2", 1);
    let out = setup.publish(&["img.qcow2", "--to", "rsync", "--dest", &setup.dest("")]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}", setup.explain(&out));
    let dir = setup.dir().display().to_string();
    assert!(
        stderr.contains(&format!(
            "the directory {dir} does not exist on kiln-test-host"
        )) && stderr.contains(&format!("ssh kiln-test-host mkdir -p {dir}")),
        "{stderr}"
    );
    assert!(!setup.dir().exists(), "the directory was made");
}

#[test]
fn a_taken_name_is_kept_unless_replace() {
    let setup = Setup::new(true, true, "");
    std::fs::create_dir(setup.dir()).unwrap();
    let source = image(&setup.sandbox.work(), "img.qcow2", 2);
    let existing = setup.dir().join("img.qcow2");
    std::fs::write(&existing, "the image published last week").unwrap();
    let dest = setup.dest("");
    let out = setup.publish(&[
        "img.qcow2",
        "--to",
        "rsync",
        "--dest",
        &dest,
        "--write-sha256",
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}", setup.explain(&out));
    let shown = format!("{}:{}", setup.client.alias, existing.display());
    assert!(
        stderr.contains(&format!("{shown} already exists; pass --replace")),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(&existing).unwrap(),
        "the image published last week"
    );
    assert_eq!(names(&setup.dir()), ["img.qcow2"]);

    let out = setup.publish(&[
        "img.qcow2",
        "--to",
        "rsync",
        "--dest",
        &dest,
        "--write-sha256",
        "--replace",
    ]);
    assert!(out.status.success(), "{}", setup.explain(&out));
    assert_same_file(&source, &existing);
    assert_eq!(names(&setup.dir()), ["img.qcow2", "img.qcow2.sha256"]);
}

#[test]
fn a_copy_cut_off_leaves_no_final_file_and_the_next_publish_goes_on_from_it() {
    let mut setup = Setup::new(true, true, "");
    std::fs::create_dir(setup.dir()).unwrap();
    let source = image(&setup.sandbox.work(), "big.qcow2", 200);
    let total = std::fs::metadata(&source).unwrap().len();
    let dest = setup.dest("");
    let args = ["big.qcow2", "--to", "rsync", "--dest", &dest];
    let partial = setup.dir().join(".big.qcow2.kiln-partial");
    let published = setup.dir().join("big.qcow2");

    let mut child = publish_command(&setup.sandbox, &setup.client, &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill the server once a part has arrived, long before all of it.
    let size = || std::fs::metadata(&partial).map_or(0, |m| m.len());
    support::wait_while_running(&mut child, "16 MiB arrived", || size() >= 16 << 20);
    setup.server.kill();
    let arrived = size();
    assert!(
        arrived < total,
        "the whole copy arrived before the server was killed"
    );
    let out = child.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", setup.explain(&out));
    assert!(
        stderr.contains("copying to kiln-test-host:")
            && stderr.contains("the connection to kiln-test-host dropped during the copy")
            && stderr.contains("nothing is under the final name")
            && stderr.contains(".big.qcow2.kiln-partial")
            && stderr.contains("run the same command again"),
        "{stderr}"
    );
    assert!(
        !published.exists(),
        "a partial image is under the final name"
    );

    // The host's rsync finds out its connection is gone and ends; what it wrote stays.
    let dir = setup.dir().display().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !processes_mentioning(&dir).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the host's rsync is still running"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let kept = std::fs::metadata(&partial).unwrap().len();
    assert!(kept > 0, "nothing of the copy was kept");

    setup.server.restart();
    let out = setup.publish(&args);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{}", setup.explain(&out));
    assert!(stderr.contains("going on from an earlier copy"), "{stderr}");
    // rsync sent only what was missing: its totals say how much the host already had.
    let sent = stderr
        .lines()
        .find_map(|l| l.split_once("sent ").map(|(_, rest)| rest.to_string()))
        .unwrap_or_else(|| panic!("no `sent … were already there` line: {stderr}"));
    assert!(sent.contains("were already there"), "{sent}");
    assert_same_file(&source, &published);
    assert_eq!(
        names(&setup.dir()),
        ["big.qcow2"],
        "the partial copy is left"
    );
}

#[test]
fn stopping_kiln_mid_copy_stops_rsync_and_keeps_the_part_for_the_next_publish() {
    let setup = Setup::new(true, true, "");
    std::fs::create_dir(setup.dir()).unwrap();
    image(&setup.sandbox.work(), "big.qcow2", 100);
    let dest = setup.dest("");
    let partial = setup.dir().join(".big.qcow2.kiln-partial");
    let mut child = publish_command(
        &setup.sandbox,
        &setup.client,
        &["big.qcow2", "--to", "rsync", "--dest", &dest],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    support::wait_while_running(&mut child, "8 MiB arrived", || {
        std::fs::metadata(&partial).map_or(0, |m| m.len()) >= 8 << 20
    });
    let out = support::interrupt(child);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", setup.explain(&out));
    assert!(
        stderr.contains("cancelled") && stderr.contains("the next publish goes on from it"),
        "{stderr}"
    );
    assert!(!setup.dir().join("big.qcow2").exists());
    // Neither kiln's rsync and ssh nor the host's rsync goes on writing.
    let dir = setup.dir().display().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !processes_mentioning(&dir).is_empty() {
        assert!(
            Instant::now() < deadline,
            "still running: {:?}",
            processes_mentioning(&dir)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(std::fs::metadata(&partial).unwrap().len() >= 8 << 20);
    assert_eq!(names(&setup.dir()), [".big.qcow2.kiln-partial"]);
}
