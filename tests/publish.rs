//! `kiln publish` as a script runs it: the real binary, real qemu-img, and the fake Djinn
//! server that enforces the publish contract (docs/driver-contract.md §5).

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use support::djinn::{DjinnConfig, DjinnServer, FailMode, GOOD_TOKEN, QEMU_DISK};
use support::{Sandbox, kiln_bin, qemu_img_info, sha256sum_line, text};

/// Distinctive tokens, so a leak into any output or the log cannot be missed.
const SECRET: &str = "kiln-test-secret-9f3c2a71d4e8b605";
const READONLY_SECRET: &str = "kiln-test-readonly-5b7e1c0a33f2";
const WRONG_SECRET: &str = "kiln-test-wrong-77aa41d90c6e";

fn server(fail: FailMode) -> DjinnServer {
    DjinnServer::start(
        DjinnConfig::default()
            .token(SECRET, "tester", &["image:write", "image:read"])
            .token(READONLY_SECRET, "reader", &["image:read"])
            .fail(fail),
    )
}

/// `kiln publish ARGS…` in the sandbox, with the token (if any) in KILN_DJINN_TOKEN and every
/// log line kept (trace), so the no-leak checks see everything the libraries log too.
fn publish(sandbox: &Sandbox, token: Option<&str>, args: &[&str]) -> Output {
    publish_command(sandbox, token, args)
        .output()
        .expect("kiln runs")
}

fn publish_command(sandbox: &Sandbox, token: Option<&str>, args: &[&str]) -> Command {
    let mut command = Command::new(kiln_bin());
    command
        .arg("publish")
        .args(args)
        .current_dir(sandbox.work())
        .envs(sandbox.env())
        .env_remove("KILN_DJINN_TOKEN")
        .env("KILN_LOG", "trace");
    if let Some(token) = token {
        command.env("KILN_DJINN_TOKEN", token);
    }
    command
}

/// None of the secrets appears on stdout, stderr or in kiln's log file.
fn assert_secrets_kept(sandbox: &Sandbox, out: &Output) {
    let log = std::fs::read_to_string(sandbox.log_file()).unwrap_or_default();
    assert!(
        !log.is_empty(),
        "kiln wrote no log, so the check would prove nothing"
    );
    for secret in [SECRET, READONLY_SECRET, WRONG_SECRET] {
        for (what, content) in [
            ("stdout", text(&out.stdout)),
            ("stderr", text(&out.stderr)),
            ("log", log.clone()),
        ] {
            assert!(!content.contains(secret), "the token leaked into {what}");
        }
    }
}

fn qemu_img(args: &[&str]) {
    let out = Command::new("qemu-img").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "qemu-img {args:?}: {}",
        text(&out.stderr)
    );
}

/// A fresh qcow2 v3 image made by `kiln create` (about 200 KiB).
fn small_image(sandbox: &Sandbox, name: &str) -> PathBuf {
    let out = sandbox.kiln(&["create", name, "--size", "1G"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    sandbox.work().join(name)
}

/// A valid qcow2 v3 image whose file is `size` of allocated (zero) blocks.
fn allocated_image(dir: &Path, name: &str, size: &str) -> PathBuf {
    let path = dir.join(name);
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        "compat=1.1,preallocation=falloc",
        path.to_str().unwrap(),
        size,
    ]);
    path
}

fn posts(server: &DjinnServer) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .count()
}

/// Put an image straight into the fake (4 bytes of magic), bypassing kiln.
fn seed(server: &DjinnServer, name: &str, namespace: &str) {
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    let head = format!(
        "POST /images?name={name}&namespace={namespace} HTTP/1.1\r\nHost: fake\r\n\
         Authorization: Bearer {GOOD_TOKEN}\r\nContent-Type: {QEMU_DISK}\r\n\
         Content-Length: 4\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(b"QFI\xfb").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
}

/// kiln's temporary files in `dir` (which must exist: a wrong directory would find none).
fn temp_files(dir: &Path) -> Vec<String> {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    entries
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".kiln-"))
        .collect()
}

#[test]
fn djinn_upload_stores_exactly_the_file_and_reports_the_image() {
    let server = server(FailMode::None);
    let sandbox = Sandbox::new();
    let image = small_image(&sandbox, "debian-12.qcow2");
    let url = server.base_url();
    let out = publish(
        &sandbox,
        Some(SECRET),
        &[
            "debian-12.qcow2",
            "--to",
            "djinn",
            "--url",
            &url,
            "--namespace",
            "ci/base",
            "--sha256",
        ],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert_secrets_kept(&sandbox, &out);

    let images = server.images();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].name, "debian-12");
    assert_eq!(images[0].namespace, "ci/base");
    let id = images[0].id;
    assert_eq!(server.stored_bytes(id), std::fs::read(&image).unwrap());
    assert!(stdout.contains(&format!("id:        {id}")), "{stdout}");
    assert!(
        stdout.contains(&format!("url:       {url}/images/{id}")),
        "{stdout}"
    );
    assert!(stderr.contains(&format!("{url}/images/{id}")), "{stderr}");
    assert!(stderr.contains("plain http"), "no http warning: {stderr}");

    // One name check, then one streamed upload with the contract's headers.
    let requests = server.requests();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    assert_eq!(
        (requests[0].method.as_str(), requests[0].path()),
        ("GET", "/images")
    );
    let post = &requests[1];
    assert_eq!(post.method, "POST");
    let size = std::fs::metadata(&image).unwrap().len();
    assert_eq!(post.header("content-type"), Some(QEMU_DISK));
    assert_eq!(
        post.header("content-length"),
        Some(size.to_string().as_str())
    );
    assert_eq!(post.header("transfer-encoding"), None);
    let bearer = format!("Bearer {SECRET}");
    assert_eq!(post.header("authorization"), Some(bearer.as_str()));
    assert_eq!(post.body_bytes, size);

    // The checksum of what was sent, next to the source, named after the image.
    let sums = std::fs::read_to_string(sandbox.work().join("debian-12.sha256")).unwrap();
    let expected = sha256sum_line(&sandbox.work(), "debian-12.qcow2");
    assert_eq!(sums, expected.replace("debian-12.qcow2", "debian-12"));
}

#[test]
fn djinn_gets_the_compacted_copy_and_the_original_stays() {
    let server = server(FailMode::None);
    let sandbox = Sandbox::new();
    let image = small_image(&sandbox, "img.qcow2");
    let before = std::fs::read(&image).unwrap();
    let url = server.base_url();
    let out = publish(
        &sandbox,
        Some(SECRET),
        &[
            "img.qcow2",
            "--to",
            "djinn",
            "--url",
            &url,
            "--namespace",
            "ci",
            "--compact",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("compacted:"));
    let id = server.images()[0].id;
    let stored = server.stored_path(id).unwrap();
    let compare = Command::new("qemu-img")
        .arg("compare")
        .arg(&image)
        .arg(&stored)
        .output()
        .unwrap();
    assert!(compare.status.success(), "{}", text(&compare.stdout));
    assert_eq!(
        qemu_img_info(&stored)["format-specific"]["data"]["compat"],
        "1.1"
    );
    assert_eq!(
        std::fs::read(&image).unwrap(),
        before,
        "the original changed"
    );
    assert!(
        temp_files(&sandbox.work()).is_empty(),
        "{:?}",
        temp_files(&sandbox.work())
    );
    assert_secrets_kept(&sandbox, &out);
}

#[test]
fn rejected_tokens_fail_with_the_token_message() {
    let server = server(FailMode::None);
    let sandbox = Sandbox::new();
    small_image(&sandbox, "img.qcow2");
    let url = server.base_url();
    let args = [
        "img.qcow2",
        "--to",
        "djinn",
        "--url",
        &url,
        "--namespace",
        "ci",
    ];

    // An unknown token is caught by the name check, before the upload.
    let out = publish(&sandbox, Some(WRONG_SECRET), &args);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("token rejected or lacks image:write"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(posts(&server), 0);
    assert_secrets_kept(&sandbox, &out);

    // A read-only token can list but not upload.
    let out = publish(&sandbox, Some(READONLY_SECRET), &args);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("token rejected or lacks image:write"),
        "{}",
        text(&out.stderr)
    );
    assert!(text(&out.stdout).is_empty());
    assert!(server.images().is_empty());
    assert_secrets_kept(&sandbox, &out);
}

#[test]
fn a_taken_name_is_refused_before_the_upload_even_on_a_later_page() {
    let server = server(FailMode::None);
    // 30 other images: the name check must follow the Link header to page 2.
    for n in 0..30 {
        seed(&server, &format!("filler-{n}"), "ci/base");
    }
    seed(&server, "debian-12", "other");
    let sandbox = Sandbox::new();
    small_image(&sandbox, "debian-12.qcow2");
    let url = server.base_url();
    let args = [
        "debian-12.qcow2",
        "--to",
        "djinn",
        "--url",
        &url,
        "--namespace",
        "ci/base",
    ];
    let out = publish(&sandbox, Some(SECRET), &args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let uploads = server.upload_count();

    let out = publish(&sandbox, Some(SECRET), &args);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("already taken") && stderr.contains("ci/base"),
        "{stderr}"
    );
    assert_eq!(server.upload_count(), uploads, "a second upload was sent");
    let pages: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET")
        .map(|r| r.target)
        .collect();
    assert!(pages.iter().any(|t| t.contains("page=2")), "{pages:?}");
    assert_secrets_kept(&sandbox, &out);
}

#[test]
fn bad_names_and_namespaces_are_refused_without_a_request() {
    let server = server(FailMode::None);
    let sandbox = Sandbox::new();
    small_image(&sandbox, "img.qcow2");
    small_image(&sandbox, "bad name.qcow2");
    let url = server.base_url();
    let cases: [(&[&str], &str); 3] = [
        (
            &["img.qcow2", "--name", "debian.12"],
            "not a valid image name",
        ),
        (&["bad name.qcow2"], "not a valid image name"),
        (
            &["img.qcow2", "--namespace", "ci-base"],
            "not a valid namespace",
        ),
    ];
    for (args, message) in cases {
        let mut args = args.to_vec();
        args.extend(["--to", "djinn", "--url", &url]);
        let out = publish(&sandbox, Some(SECRET), &args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(text(&out.stderr).contains(message), "{}", text(&out.stderr));
    }
    assert!(server.requests().is_empty(), "{:#?}", server.requests());
}

#[test]
fn images_the_driver_would_refuse_never_leave_the_machine() {
    let server = server(FailMode::None);
    let sandbox = Sandbox::new();
    let url = server.base_url();
    let raw = sandbox.work().join("raw.qcow2");
    std::fs::write(&raw, vec![0u8; 1 << 20]).unwrap();
    let v2 = sandbox.work().join("old.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        "compat=0.10",
        v2.to_str().unwrap(),
        "1G",
    ]);
    for (file, expected) in [
        ("raw.qcow2", "QCOW2 magic"),
        ("old.qcow2", "qemu-img amend -f qcow2 -o compat=1.1"),
    ] {
        let out = publish(
            &sandbox,
            Some(SECRET),
            &[file, "--to", "djinn", "--url", &url, "--namespace", "ci"],
        );
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{file}: {stderr}");
        assert!(
            stderr.contains("not ready to publish") && stderr.contains(expected),
            "{file}: {stderr}"
        );
    }
    assert!(server.requests().is_empty(), "{:#?}", server.requests());
}

#[test]
fn a_connection_dropped_mid_upload_is_a_clear_failure() {
    let server = server(FailMode::CloseAfter(1 << 20));
    let sandbox = Sandbox::new();
    allocated_image(&sandbox.work(), "big.qcow2", "64M");
    let url = server.base_url();
    let out = publish(
        &sandbox,
        Some(SECRET),
        &[
            "big.qcow2",
            "--to",
            "djinn",
            "--url",
            &url,
            "--namespace",
            "ci",
        ],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("upload did not complete"), "{stderr}");
    assert!(!stderr.contains("done:"), "{stderr}");
    assert!(text(&out.stdout).is_empty(), "a result was claimed");
    assert!(server.images().is_empty());
    assert_eq!(posts(&server), 1);
    assert_secrets_kept(&sandbox, &out);
}

#[test]
fn a_server_error_is_a_clear_failure() {
    let server = server(FailMode::Status500);
    let sandbox = Sandbox::new();
    small_image(&sandbox, "img.qcow2");
    let url = server.base_url();
    let out = publish(
        &sandbox,
        Some(SECRET),
        &[
            "img.qcow2",
            "--to",
            "djinn",
            "--url",
            &url,
            "--namespace",
            "ci",
        ],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("upload did not complete") && stderr.contains("500"),
        "{stderr}"
    );
    assert!(text(&out.stdout).is_empty());
    assert_secrets_kept(&sandbox, &out);
}

#[test]
fn no_api_at_the_url_says_so() {
    let server = server(FailMode::None);
    let sandbox = Sandbox::new();
    small_image(&sandbox, "img.qcow2");
    let url = format!("{}/not-the-api", server.base_url());
    let out = publish(
        &sandbox,
        Some(SECRET),
        &[
            "img.qcow2",
            "--to",
            "djinn",
            "--url",
            &url,
            "--namespace",
            "ci",
        ],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no Djinn API at"), "{stderr}");
    assert_eq!(posts(&server), 0);
}

#[test]
fn a_token_file_must_be_private() {
    let server = server(FailMode::None);
    let sandbox = Sandbox::new();
    small_image(&sandbox, "img.qcow2");
    let url = server.base_url();
    let args = [
        "img.qcow2",
        "--to",
        "djinn",
        "--url",
        &url,
        "--namespace",
        "ci",
    ];

    let out = publish(&sandbox, None, &args);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("KILN_DJINN_TOKEN"),
        "{}",
        text(&out.stderr)
    );

    let token_file = sandbox.config_dir().join("djinn-token");
    std::fs::create_dir_all(sandbox.config_dir()).unwrap();
    std::fs::write(&token_file, format!("{SECRET}\n")).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = publish(&sandbox, None, &args);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("chmod 600 {}", token_file.display())),
        "{stderr}"
    );
    assert!(server.requests().is_empty());
    assert_secrets_kept(&sandbox, &out);

    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = publish(&sandbox, None, &args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(server.images().len(), 1);
    assert_secrets_kept(&sandbox, &out);
}

/// A sandbox with `driver.conf` pointing at `<sandbox>/disks`.
fn offline_sandbox() -> (Sandbox, PathBuf, PathBuf) {
    let sandbox = Sandbox::new();
    let disks = sandbox.path().join("disks");
    std::fs::create_dir(&disks).unwrap();
    let conf = sandbox.path().join("driver.conf");
    std::fs::write(
        &conf,
        format!(
            "# written by the test\ndriver ssh {{\n\ttimeout \"60s\"\n}}\n\n\
             driver qemu {{\n\tdisks  \"{}\" # the images\n\tcpus 2\n\tmemory 2048\n}}\n",
            disks.display()
        ),
    )
    .unwrap();
    (sandbox, disks, conf)
}

#[test]
fn offline_runner_install_lands_where_the_driver_looks() {
    let (sandbox, disks, conf) = offline_sandbox();
    let image = small_image(&sandbox, "my-image.qcow2");
    let conf = conf.to_str().unwrap();
    let args = [
        "my-image.qcow2",
        "--to",
        "offline",
        "--driver-conf",
        conf,
        "--namespace",
        "debian",
        "--name",
        "oldstable",
    ];
    let out = publish(&sandbox, None, &args);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let installed = disks.join("qemu/x86_64/debian/oldstable");
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        std::fs::read(&image).unwrap()
    );
    assert!(
        stdout.contains("driver:\n  type: qemu\n  image: debian/oldstable"),
        "{stdout}"
    );
    assert!(temp_files(installed.parent().unwrap()).is_empty());

    let out = publish(&sandbox, None, &args);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("already exists") && stderr.contains("--replace"),
        "{stderr}"
    );

    let mut replace = args.to_vec();
    replace.push("--replace");
    let out = publish(&sandbox, None, &replace);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let mut base = args.to_vec();
    base.push("--worker-base");
    let out = publish(&sandbox, None, &base);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(disks.join("_base/qemu/x86_64/debian/oldstable").is_file());
    assert!(temp_files(installed.parent().unwrap()).is_empty());
}

#[test]
fn an_interrupted_copy_leaves_no_file_behind() {
    let (sandbox, disks, conf) = offline_sandbox();
    allocated_image(&sandbox.work(), "huge.qcow2", "2G");
    let mut child = publish_command(
        &sandbox,
        None,
        &[
            "huge.qcow2",
            "--to",
            "offline",
            "--driver-conf",
            conf.to_str().unwrap(),
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let dir = disks.join("qemu/x86_64");
    // Interrupt as soon as the copy has begun.
    support::wait_while_running(&mut child, "the copy began", || {
        dir.is_dir() && !temp_files(&dir).is_empty()
    });
    let out = support::interrupt(child);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cancelled"), "{stderr}");
    assert!(!dir.join("huge").exists(), "a partial image is in place");
    assert!(temp_files(&dir).is_empty(), "{:?}", temp_files(&dir));
}

#[test]
fn srht_layout() {
    let sandbox = Sandbox::new();
    let image = small_image(&sandbox, "whatever.qcow2");
    let root = sandbox.path().join("images");
    std::fs::create_dir(&root).unwrap();
    let out = publish(
        &sandbox,
        None,
        &[
            "whatever.qcow2",
            "--to",
            "srht",
            "--root",
            root.to_str().unwrap(),
            "--distro",
            "debian",
            "--release",
            "12",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let installed = root.join("debian/12/x86_64/root.img.qcow2");
    assert_eq!(
        std::fs::read(installed).unwrap(),
        std::fs::read(image).unwrap()
    );
    assert!(text(&out.stdout).contains("image: debian/12"));

    // Flags of another target are a usage error.
    let out = publish(
        &sandbox,
        None,
        &[
            "whatever.qcow2",
            "--to",
            "srht",
            "--root",
            "x",
            "--distro",
            "d",
            "--release",
            "r",
            "--worker-base",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--worker-base only applies to --to offline"));
}

#[test]
fn compaction_shrinks_the_fixture_disk_without_changing_its_content() {
    let disk = &support::fixtures::fixtures().disk;
    let (sandbox, disks, conf) = offline_sandbox();
    let out = publish(
        &sandbox,
        None,
        &[
            disk.to_str().unwrap(),
            "--to",
            "offline",
            "--driver-conf",
            conf.to_str().unwrap(),
            "--name",
            "fixture",
            "--compact",
            "--compress",
            "--sha256",
        ],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("compacted:"), "{stdout}");
    let dir = disks.join("qemu/x86_64");
    let compacted = dir.join("fixture");

    let check = Command::new("qemu-img")
        .arg("check")
        .arg(&compacted)
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", text(&check.stdout));
    let info = qemu_img_info(&compacted);
    assert_eq!(info["format-specific"]["data"]["compat"], "1.1");
    let compare = Command::new("qemu-img")
        .arg("compare")
        .arg(disk)
        .arg(&compacted)
        .output()
        .unwrap();
    assert!(
        compare.status.success(),
        "{}{}",
        text(&compare.stdout),
        text(&compare.stderr)
    );
    let before = std::fs::metadata(disk).unwrap().len();
    let after = std::fs::metadata(&compacted).unwrap().len();
    assert!(after < before, "{after} >= {before}");

    let sums = std::fs::read_to_string(dir.join("fixture.sha256")).unwrap();
    assert_eq!(sums, sha256sum_line(&dir, "fixture"));
    assert!(temp_files(&dir).is_empty(), "{:?}", temp_files(&dir));
}
