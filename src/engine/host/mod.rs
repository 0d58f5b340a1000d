//! What this host can do: QEMU binaries and versions, whether KVM really works, CPUs, memory
//! and disk space. `kiln doctor` prints it; every step asks it which accelerator to use.
//! Its modules hold the rest of what kiln knows and does on this machine: settings, free
//! CPUs, tools and processes, temporary files.

pub mod config;
pub mod http;
pub mod process;
pub mod temp_file;
pub mod vcpus;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde::Serialize;

use self::config::{HostResources, Settings};
use self::process::{find_on_path, install_hint, run_tool};
use self::vcpus::Vcpus;
use super::units::human_bytes;

const VERSION_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a KVM probe machine must survive to count as working.
const KVM_PROBE_TIME: Duration = Duration::from_millis(1500);

/// One line of the doctor's report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    Warn,
    Fail,
}

/// A named fact about the host, its verdict, and the command that fixes a problem.
#[derive(Debug, Clone, Serialize)]
pub struct HostCheck {
    pub name: String,
    pub verdict: Verdict,
    pub detail: String,
    pub fix: Option<String>,
}

/// Which accelerator machines will use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Accelerator {
    Kvm,
    Tcg,
}

/// The doctor's whole answer.
#[derive(Debug, Clone, Serialize)]
pub struct HostReport {
    pub checks: Vec<HostCheck>,
    pub accelerator: Accelerator,
}

impl HostReport {
    pub fn has_failures(&self) -> bool {
        self.checks.iter().any(|c| c.verdict == Verdict::Fail)
    }
}

/// CPUs and memory, read with sysinfo.
pub fn resources() -> HostResources {
    // If sysinfo cannot read the host, assume a small machine rather than a big one.
    let memory_mib = sysinfo::System::new()
        .map(|mut system| {
            system.refresh_memory();
            system.total_memory() / (1024 * 1024)
        })
        .unwrap_or(2048);
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1);
    HostResources {
        cpus,
        memory_mib,
        software_emulation: kvm_ruled_out().is_some(),
    }
}

/// Look at everything kiln depends on. Takes a couple of seconds when KVM needs a probe boot.
pub async fn examine(settings: &Settings) -> HostReport {
    let mut checks = vec![
        tool_check("qemu-img").await,
        tool_check("qemu-system-x86_64").await,
    ];
    let kvm = kvm_usability().await;
    let accelerator = if kvm.is_ok() {
        Accelerator::Kvm
    } else {
        Accelerator::Tcg
    };
    checks.push(match kvm {
        Ok(detail) => HostCheck {
            name: "KVM".into(),
            verdict: Verdict::Ok,
            detail,
            fix: None,
        },
        Err(KvmProblem { reason, fix }) => HostCheck {
            name: "KVM".into(),
            verdict: Verdict::Warn,
            detail: format!(
                "{reason}; kiln uses TCG (software emulation): slower, but guests boot"
            ),
            fix,
        },
    });
    let host = resources();
    checks.push(HostCheck {
        name: "CPUs and memory".into(),
        verdict: Verdict::Ok,
        detail: format!(
            "{} CPUs, {} memory; machines get {} and {} MiB",
            host.cpus,
            human_bytes(host.memory_mib * 1024 * 1024),
            match settings.cpus {
                Vcpus::Exactly(count) => format!("{count} vCPU(s)"),
                Vcpus::ByIdleCores =>
                    "1 or 2 vCPUs (as many as host cores are idle at power-on)".into(),
            },
            settings.memory_mib
        ),
        fix: None,
    });
    checks.push(disk_check(&settings.image_dir));
    HostReport {
        checks,
        accelerator,
    }
}

/// The accelerator machines should use, and a sentence saying why.
pub async fn choose_accelerator() -> (Accelerator, String) {
    match kvm_usability().await {
        Ok(detail) => (Accelerator::Kvm, format!("accelerator: KVM ({detail})")),
        Err(problem) => (
            Accelerator::Tcg,
            format!("accelerator: TCG (software emulation): {}", problem.reason),
        ),
    }
}

async fn tool_check(program: &str) -> HostCheck {
    let Some(path) = find_on_path(program) else {
        return HostCheck {
            name: program.into(),
            verdict: Verdict::Fail,
            detail: "not found on PATH".into(),
            fix: Some(install_hint(program)),
        };
    };
    match run_tool(program, ["--version"], VERSION_TIMEOUT).await {
        Ok(out) => HostCheck {
            name: program.into(),
            verdict: Verdict::Ok,
            detail: format!(
                "{} ({})",
                parse_qemu_version(&out).unwrap_or("unknown version"),
                path.display()
            ),
            fix: None,
        },
        Err(e) => HostCheck {
            name: program.into(),
            verdict: Verdict::Fail,
            detail: format!("found at {} but does not run: {e}", path.display()),
            fix: Some(install_hint(program)),
        },
    }
}

/// `qemu-img version 7.2.22 (Debian …)` → `7.2.22`.
pub fn parse_qemu_version(output: &str) -> Option<&str> {
    let first = output.lines().next()?;
    let rest = first.split(" version ").nth(1)?;
    rest.split_whitespace().next()
}

fn disk_check(image_dir: &Path) -> HostCheck {
    let name = "disk space".to_string();
    match free_space(image_dir) {
        None => HostCheck {
            name,
            verdict: Verdict::Warn,
            detail: format!("cannot read free space of {}", image_dir.display()),
            fix: Some(format!("mkdir -p {}", image_dir.display())),
        },
        Some(free) => {
            let low = free < 5 << 30;
            HostCheck {
                name,
                verdict: if low { Verdict::Warn } else { Verdict::Ok },
                detail: format!("{} free in {}", human_bytes(free), image_dir.display()),
                fix: low.then(|| "free some space or set image_dir in config.toml".into()),
            }
        }
    }
}

struct KvmProblem {
    reason: String,
    fix: Option<String>,
}

/// KVM that opens is not KVM that works: kvm_pvm and nested hosts open /dev/kvm, then guests
/// crash or stall. We rule those out by what the host says, then by a short real boot.
async fn kvm_usability() -> Result<String, KvmProblem> {
    match kvm_ruled_out() {
        Some(problem) => Err(problem),
        None => probe_boot().await,
    }
}

/// Why KVM cannot work here, from what the host says without booting anything; `None` when
/// only a probe boot can tell.
fn kvm_ruled_out() -> Option<KvmProblem> {
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        return Some(KvmProblem {
            reason: format!("/dev/kvm cannot be opened ({e})"),
            fix: Some("enable virtualisation in firmware, or add your user to group kvm".into()),
        });
    }
    if Path::new("/sys/module/kvm_pvm").exists() {
        return Some(KvmProblem {
            reason: "/dev/kvm is provided by kvm_pvm (no hardware virtualisation); \
                     stock kernels crash under it"
                .into(),
            fix: None,
        });
    }
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    if !cpu_has_virtualisation(&cpuinfo) {
        return Some(KvmProblem {
            reason: "/dev/kvm opens but the CPU shows no vmx/svm flag (nested virtualisation)"
                .into(),
            fix: None,
        });
    }
    None
}

fn cpu_has_virtualisation(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"))
}

/// Start a tiny KVM machine with no disk; if QEMU gives up within the probe time, KVM does not
/// work here.
async fn probe_boot() -> Result<String, KvmProblem> {
    let mut child = process::command("qemu-system-x86_64")
        .args([
            "-accel",
            "kvm",
            "-cpu",
            "host",
            "-m",
            "64",
            "-nodefaults",
            "-display",
            "none",
            "-no-reboot",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| KvmProblem {
            reason: format!("cannot start qemu-system-x86_64 for a KVM probe ({e})"),
            fix: Some(install_hint("qemu-system-x86_64")),
        })?;
    match tokio::time::timeout(KVM_PROBE_TIME, child.wait()).await {
        Err(_) => {
            let _ = child.kill().await;
            Ok("a probe machine ran under KVM".into())
        }
        Ok(_) => {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                use tokio::io::AsyncReadExt;
                let _ = pipe.read_to_string(&mut stderr).await;
            }
            Err(KvmProblem {
                reason: format!(
                    "a probe machine under KVM stopped at once: {}",
                    stderr.trim()
                ),
                fix: None,
            })
        }
    }
}

/// Bytes available to us on the filesystem holding `dir`.
pub fn free_space(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c_path is a valid NUL-terminated string and stat a properly sized out-parameter.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) };
    (rc == 0).then(|| stat.f_bavail as u64 * stat.f_frsize as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_of_7_and_10() {
        assert_eq!(
            parse_qemu_version("qemu-img version 7.2.22 (Debian 1:7.2+dfsg-7)\nCopyright"),
            Some("7.2.22")
        );
        assert_eq!(
            parse_qemu_version("QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2)"),
            Some("10.0.2")
        );
        assert_eq!(parse_qemu_version("garbage"), None);
    }

    #[test]
    fn virtualisation_flags() {
        assert!(cpu_has_virtualisation("flags\t\t: fpu vme vmx sse\n"));
        assert!(cpu_has_virtualisation("flags\t\t: fpu svm\n"));
        assert!(!cpu_has_virtualisation(
            "flags\t\t: fpu vme sse hypervisor\n"
        ));
    }

    #[tokio::test]
    async fn this_machine_reports_tools_and_an_accelerator() {
        let settings = super::config::resolve(Default::default(), Default::default(), resources());
        let report = examine(&settings).await;
        let names: Vec<_> = report.checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "qemu-img",
                "qemu-system-x86_64",
                "KVM",
                "CPUs and memory",
                "disk space"
            ]
        );
        // On kvm_pvm hosts (this project's machines) KVM must never be reported usable.
        if Path::new("/sys/module/kvm_pvm").exists() {
            assert_eq!(report.accelerator, Accelerator::Tcg);
        }
    }
}
