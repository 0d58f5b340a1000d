//! How soon after the guest's sshd starts listening does kiln notice? For several boots of the
//! good fixture image, a reference prober dials the forwarded port every 100 ms (waiting up to 2 s for each answer) and notes when
//! the first SSH banner arrives (sshd is listening: the irreducible part; systemd stops printing
//! status lines before ssh.service is up, so the serial log cannot say). Beside it: when
//! kiln's `ssh::connect` saw the banner and logged in, and what the Djinn driver's wait (sleep
//! 2 s, then dial once a second) would add. Run: `cargo bench --bench readiness` (as root).

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kiln::engine::driver::DriverProfile;
use kiln::engine::host::Accelerator;
use kiln::engine::machine::{Machine, MachineSpec};
use kiln::engine::ssh::{self, Auth, SshTarget, Stage};

const BOOTS: usize = 3;

fn good_image() -> PathBuf {
    if let Ok(path) = std::env::var("KILN_BENCH_IMAGE") {
        return PathBuf::from(path);
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/variants.sh");
    let out = Command::new("bash")
        .arg(script)
        .output()
        .expect("variants.sh runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("KILN_VARIANT_GOOD="))
        .map(PathBuf::from)
        .expect("variants.sh names the good image")
}

#[tokio::main]
async fn main() {
    let image = good_image();
    println!("image: {}", image.display());
    println!(
        "{:>4} {:>10} {:>10} {:>10} {:>12} {:>14}",
        "boot", "sshd up s", "banner s", "login s", "overhead ms", "driver wait ms"
    );
    let mut overheads = Vec::new();
    let mut driver_waits = Vec::new();
    for boot in 1..=BOOTS {
        let dir = tempfile::tempdir().unwrap();
        let spec = MachineSpec {
            purpose: "bench".into(),
            accelerator: Accelerator::Tcg,
            memory_mib: 2048,
            cpus: 1,
            disk: image.clone(),
            snapshot: true,
            discard: false,
            cdrom: None,
            kernel: None,
            ssh_forward_from: Some(2222),
            no_reboot: false,
            vnc: false,
            serial_log: dir.path().join("serial.log"),
            record_dir: None,
            driver: Some(DriverProfile::djinn(Accelerator::Tcg)),
        };
        let started = Instant::now();
        let mut machine = Machine::start(&spec).await.expect("machine starts");
        let view = machine.view();
        let port = view.ssh_port().unwrap();
        let sshd_up: Arc<Mutex<Option<Duration>>> = Arc::default();
        let prober = tokio::spawn(probe_banner(port, started, sshd_up.clone()));
        let banner: Arc<Mutex<Option<Duration>>> = Arc::default();
        let seen = banner.clone();
        let target = SshTarget {
            host: "127.0.0.1".into(),
            port,
            user: "root".into(),
            auth: Auth::Password(String::new()),
        };
        let session = ssh::connect(&target, Duration::from_secs(300), move |stage| {
            if let Stage::Banner(_) = stage {
                seen.lock().unwrap().get_or_insert(started.elapsed());
            }
        })
        .await
        .expect("the good image logs in");
        let login = started.elapsed();
        session.close().await;
        let _ = tokio::time::timeout(Duration::from_secs(10), prober).await;
        machine.shut_down(Duration::ZERO).await;
        let (Some(up), Some(banner)) = (*sshd_up.lock().unwrap(), *banner.lock().unwrap()) else {
            println!("{boot:>4} (the prober never saw a banner; skipped)");
            continue;
        };
        let overhead = banner.saturating_sub(up);
        // The driver sleeps 2 s, then dials once a second: it notices at the first tick ≥ up.
        let driver_notice = Duration::from_secs(2.max(up.as_secs_f64().ceil() as u64));
        let driver_wait = driver_notice.saturating_sub(up);
        println!(
            "{boot:>4} {:>10.2} {:>10.2} {:>10.2} {:>12} {:>14}",
            up.as_secs_f64(),
            banner.as_secs_f64(),
            login.as_secs_f64(),
            overhead.as_millis(),
            driver_wait.as_millis()
        );
        overheads.push(overhead.as_millis());
        driver_waits.push(driver_wait.as_millis());
    }
    overheads.sort_unstable();
    driver_waits.sort_unstable();
    if let (Some(o), Some(d)) = (
        overheads.get(overheads.len() / 2),
        driver_waits.get(driver_waits.len() / 2),
    ) {
        println!(
            "median: kiln notices sshd {o} ms after it starts (goal ≤ 200 ms); the driver's 1 s polling would add {d} ms"
        );
    }
}

/// Dial every 100 ms; the first SSH banner marks the moment sshd listens. (Dialling faster,
/// with shorter reads, starved the guest's sshd of start-up slots in a trial run.)
async fn probe_banner(port: u16, started: Instant, up: Arc<Mutex<Option<Duration>>>) {
    use tokio::io::AsyncReadExt;
    loop {
        if let Ok(Ok(mut stream)) = tokio::time::timeout(
            Duration::from_millis(500),
            tokio::net::TcpStream::connect(("127.0.0.1", port)),
        )
        .await
        {
            let mut buffer = [0u8; 8];
            if let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buffer)).await
                && buffer[..n].starts_with(b"SSH-")
            {
                up.lock().unwrap().get_or_insert(started.elapsed());
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
