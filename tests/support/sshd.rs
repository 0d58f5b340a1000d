//! A real OpenSSH server on 127.0.0.1 for the rsync destination's tests: a private `sshd -f
//! CONFIG -D -e` on a free port with its own host key, letting root in with a key made for
//! the test (the tests run as root; nothing under /root/.ssh is read or written), and the
//! client side of a sandbox: its own key, `~/.ssh/config` and known_hosts.
//!
//! OpenSSH finds `~/.ssh` through the password database, not `$HOME`, so a sandbox's
//! `~/.ssh/config` is read only through a `-F`: the sandbox's `bin/ssh` does that and nothing
//! else, and kiln (and the rsync it starts) find it first on PATH. Every sshd process of a
//! server, and every program its sessions started, is killed when the server is dropped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Sandbox, text, write_script};

const SSHD: &str = "/usr/sbin/sshd";

/// One private sshd. Restartable on the same port with the same host key.
pub struct SshServer {
    dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
    log: Arc<Mutex<Vec<String>>>,
}

impl SshServer {
    /// A server with a new ed25519 host key, on a port that was free; waits until it listens.
    pub fn start() -> SshServer {
        assert!(
            Path::new(SSHD).exists(),
            "{SSHD} is missing: run .ci/setup (apt-get install openssh-server rsync)"
        );
        let dir = tempfile::tempdir().unwrap();
        keygen(&dir.path().join("host_key"), "kiln test host");
        std::fs::write(dir.path().join("authorized_keys"), "").unwrap();
        // sshd refuses to start without its privilege separation directory.
        std::fs::create_dir_all("/run/sshd").unwrap();
        let mut server = SshServer {
            dir,
            port: 0,
            child: None,
            log: Arc::new(Mutex::new(Vec::new())),
        };
        // Another test may take the port between its probe and sshd's bind: try another.
        for _ in 0..5 {
            server.port = free_port();
            if server.launch() {
                return server;
            }
        }
        panic!("sshd did not start:\n{}", server.log());
    }

    fn config(&self) -> PathBuf {
        let config = self.dir.path().join("sshd_config");
        let dir = self.dir.path().display();
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {dir}/host_key\nPidFile none\n\
                 AuthorizedKeysFile {dir}/authorized_keys\nPermitRootLogin prohibit-password\n\
                 PubkeyAuthentication yes\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n\
                 MaxStartups 50\nLogLevel VERBOSE\n",
                port = self.port
            ),
        )
        .unwrap();
        config
    }

    /// Start sshd on `self.port`; whether it listens.
    fn launch(&mut self) -> bool {
        let config = self.config();
        let mut child = Command::new(SSHD)
            .arg("-f")
            .arg(&config)
            .args(["-D", "-e"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sshd starts");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::clone(&self.log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log.lock().unwrap().push(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let listening = format!("Server listening on 127.0.0.1 port {}", self.port);
        loop {
            if self.log().contains(&listening) {
                self.child = Some(child);
                return true;
            }
            if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Let a public key (one line of a `.pub` file) in as root.
    pub fn authorize(&self, public_key: &str) {
        let file = self.dir.path().join("authorized_keys");
        let mut keys = std::fs::read_to_string(&file).unwrap();
        keys.push_str(public_key.trim());
        keys.push('\n');
        std::fs::write(file, keys).unwrap();
    }

    /// The known_hosts line for this server's host key.
    pub fn known_hosts_line(&self) -> String {
        let key = std::fs::read_to_string(self.dir.path().join("host_key.pub")).unwrap();
        let mut words = key.split_whitespace();
        let (kind, blob) = (words.next().unwrap(), words.next().unwrap());
        format!("[127.0.0.1]:{} {kind} {blob}\n", self.port)
    }

    /// Everything sshd logged so far (for failure messages).
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Kill the server the hard way, mid-whatever: the listener and every connection's sshd
    /// (SIGKILL, so no session is closed cleanly). The programs sessions started are left to
    /// notice their connection is gone, as they would on a real host.
    pub fn kill(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pids = descendants(child.id());
        let _ = child.kill();
        let _ = child.wait();
        for pid in pids {
            if comm(pid).as_deref() == Some("sshd") {
                signal(pid, "KILL");
            }
        }
    }

    /// Start again on the same port with the same host key.
    pub fn restart(&mut self) {
        self.kill();
        for _ in 0..50 {
            if self.launch() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("sshd did not start again:\n{}", self.log());
    }
}

impl Drop for SshServer {
    fn drop(&mut self) {
        let Some(child) = &self.child else {
            return;
        };
        // Sessions first (they are not the listener's process group), then the listener.
        for pid in descendants(child.id()).into_iter().rev() {
            signal(pid, "KILL");
        }
        self.kill();
    }
}

/// The client side of a sandbox: its key, `~/.ssh/config` and known_hosts, and `bin/ssh`
/// that makes ssh read that config.
pub struct SshClient {
    pub ssh_dir: PathBuf,
    pub bin: PathBuf,
    /// The Host alias the config gives the server.
    pub alias: String,
}

impl SshClient {
    /// `~/.ssh` in the sandbox for `server`: a new key (authorized on the server when
    /// `authorized`), a config naming the server `kiln-test-host` with `extra` lines, and a
    /// known_hosts that knows the server's key when `known`.
    pub fn new(
        sandbox: &Sandbox,
        server: &SshServer,
        authorized: bool,
        known: bool,
        extra: &str,
    ) -> SshClient {
        let ssh_dir = sandbox.path().join(".ssh");
        std::fs::create_dir_all(&ssh_dir).unwrap();
        let key = ssh_dir.join("id_ed25519");
        keygen(&key, "kiln test user");
        if authorized {
            server.authorize(&std::fs::read_to_string(ssh_dir.join("id_ed25519.pub")).unwrap());
        }
        let known_hosts = ssh_dir.join("known_hosts");
        let line = if known {
            server.known_hosts_line()
        } else {
            String::new()
        };
        std::fs::write(&known_hosts, line).unwrap();
        let alias = "kiln-test-host".to_string();
        std::fs::write(
            ssh_dir.join("config"),
            format!(
                "Host {alias}\n  HostName 127.0.0.1\n  Port {port}\n  User root\n\
                 \x20 IdentityFile {key}\n  IdentitiesOnly yes\n\
                 \x20 UserKnownHostsFile {known_hosts}\n{extra}",
                port = server.port,
                key = key.display(),
                known_hosts = known_hosts.display()
            ),
        )
        .unwrap();
        let bin = sandbox.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        write_script(
            &bin.join("ssh"),
            &format!(
                "#!/bin/sh\nexec /usr/bin/ssh -F '{}' \"$@\"\n",
                ssh_dir.join("config").display()
            ),
        );
        SshClient {
            ssh_dir,
            bin,
            alias,
        }
    }

    /// PATH with the sandbox's `bin/ssh` first.
    pub fn path_var(&self) -> String {
        format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_default()
        )
    }
}

/// `ssh-keygen` a new ed25519 key without a passphrase at `path` (and `path.pub`).
pub fn keygen(path: &Path, comment: &str) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .output()
        .expect("ssh-keygen (openssh-client) runs");
    assert!(out.status.success(), "ssh-keygen: {}", text(&out.stderr));
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `pid`'s descendants, parents before children.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut children: Vec<(u32, u32)> = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(child) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        if let Some(parent) = parent_of(child) {
            children.push((parent, child));
        }
    }
    let mut found = Vec::new();
    let mut queue = vec![pid];
    while let Some(parent) = queue.pop() {
        for &(p, child) in &children {
            if p == parent && !found.contains(&child) {
                found.push(child);
                queue.push(child);
            }
        }
    }
    found
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The name is in parentheses and may hold spaces: the fields after the last `)`.
    let after = &stat[stat.rfind(')')? + 2..];
    after.split_whitespace().nth(1)?.parse().ok()
}

fn comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|c| c.trim().to_string())
}

fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// The processes whose command line holds `needle` (a test's own directory): the rsync a
/// session started on the server's side, still writing after its connection went away.
pub fn processes_mentioning(needle: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) && pid != std::process::id() {
            pids.push(pid);
        }
    }
    pids
}
