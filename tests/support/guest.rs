//! Booting a disk the way a person would check it by hand, independently of kiln's code.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A QEMU the test started itself; killed on drop.
pub struct TestGuest {
    child: Child,
    pub ssh_port: u16,
}

impl Drop for TestGuest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free TCP port on loopback (best effort: another process could take it meanwhile).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Boot `disk` read-only (snapshot=on) under TCG with SSH forwarded to a free loopback port.
pub fn boot(disk: &Path, serial_log: &Path) -> TestGuest {
    let ssh_port = free_port();
    let child = Command::new("qemu-system-x86_64")
        .args([
            "-accel", "tcg", "-m", "1024", "-smp", "1", "-display", "none",
        ])
        .args(["-net", "nic,model=virtio", "-net"])
        .arg(format!("user,hostfwd=tcp:127.0.0.1:{ssh_port}-:22"))
        .arg("-drive")
        .arg(format!(
            "file={},media=disk,if=virtio,snapshot=on",
            disk.display()
        ))
        .arg("-serial")
        .arg(format!("file:{}", serial_log.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("qemu-system-x86_64 runs");
    TestGuest { child, ssh_port }
}

/// Wait until the port answers with an SSH banner; returns the banner line.
pub fn wait_for_ssh_banner(port: u16, timeout: Duration) -> Option<String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut buffer = [0u8; 256];
            if let Ok(n) = stream.read(&mut buffer)
                && n > 0
            {
                let text = String::from_utf8_lossy(&buffer[..n]).to_string();
                if text.starts_with("SSH-2.0-") {
                    return Some(text.lines().next().unwrap_or_default().to_string());
                }
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    None
}

/// Whether any qemu-system process mentions `needle` on its command line.
pub fn qemu_running_with(needle: &str) -> bool {
    let out = Command::new("pgrep")
        .args(["-af", "qemu-system"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.contains(needle))
}

/// Run `command` in the guest with OpenSSH's own client (not kiln's), password via sshpass.
/// Retries while sshd is still coming up; returns the last attempt's output.
pub fn openssh(
    port: u16,
    user: &str,
    password: &str,
    command: &str,
    timeout: Duration,
) -> std::process::Output {
    let start = Instant::now();
    loop {
        let out = Command::new("sshpass")
            .args(["-p", password, "ssh"])
            .args(OPENSSH_OPTIONS)
            .args([
                "-p",
                &port.to_string(),
                &format!("{user}@127.0.0.1"),
                command,
            ])
            .output()
            .expect("sshpass and ssh run (apt-get install sshpass openssh-client)");
        // 255 is ssh's own failure (connection refused, auth failed); retry those until the deadline.
        if out.status.code() != Some(255) || start.elapsed() > timeout {
            return out;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// `sftp` with OpenSSH: put a file, list it back. Returns sftp's output.
pub fn openssh_sftp(port: u16, user: &str, password: &str, batch: &str) -> std::process::Output {
    let mut child = Command::new("sshpass")
        .args(["-p", password, "sftp"])
        .args(OPENSSH_OPTIONS)
        .args([
            "-b",
            "-",
            "-P",
            &port.to_string(),
            &format!("{user}@127.0.0.1"),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sftp runs");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(batch.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

const OPENSSH_OPTIONS: [&str; 12] = [
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "PreferredAuthentications=password",
    "-o",
    "PubkeyAuthentication=no",
    "-o",
    "ConnectTimeout=5",
    "-o",
    "LogLevel=ERROR",
];
