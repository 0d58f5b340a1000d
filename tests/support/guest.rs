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
