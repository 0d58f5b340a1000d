//! QEMU's command line: the guest's part a person would type, and kiln's controls.

use std::path::Path;

use super::{MachineSpec, QEMU};
use crate::engine::host::Accelerator;

impl MachineSpec {
    /// The guest-facing part of the command line (what a person would type by hand), with the
    /// vCPU count chosen at power-on.
    pub fn guest_args(&self, ssh_port: Option<u16>, cpus: u32) -> Vec<String> {
        if let (Some(driver), Some(port)) = (&self.driver, ssh_port) {
            let mut args = vec!["-name".into(), format!("kiln-{}", self.purpose)];
            args.extend(driver.guest_args(&self.disk, port));
            return args;
        }
        let mut args = vec!["-name".into(), format!("kiln-{}", self.purpose)];
        match self.accelerator {
            Accelerator::Kvm => args.extend(["-accel", "kvm", "-cpu", "host"].map(String::from)),
            Accelerator::Tcg => args.extend(["-accel", "tcg"].map(String::from)),
        }
        args.extend([
            "-smp".into(),
            cpus.to_string(),
            "-m".into(),
            self.memory_mib.to_string(),
        ]);
        // The format is said, never probed: a probed header may name host files to open.
        let mut drive = format!(
            "file={},format=qcow2,media=disk,if=virtio",
            qemu_escape(&self.disk)
        );
        if self.snapshot {
            drive.push_str(",snapshot=on");
        }
        if self.discard {
            drive.push_str(",discard=unmap,detect-zeroes=unmap");
        }
        args.extend(["-drive".into(), drive]);
        if let Some(iso) = &self.cdrom {
            // `-cdrom` would probe the format, and an "ISO" that is really a qcow2 could name
            // a backing file; an installer is raw bytes, read-only.
            args.extend([
                "-drive".into(),
                format!(
                    "file={},format=raw,media=cdrom,readonly=on",
                    qemu_escape(iso)
                ),
            ]);
        }
        if let Some(direct) = &self.kernel {
            args.extend([
                "-kernel".into(),
                direct.kernel.display().to_string(),
                "-initrd".into(),
                direct.initrd.display().to_string(),
                "-append".into(),
                direct.append.clone(),
            ]);
        }
        args.extend(["-net".into(), "nic,model=virtio".into(), "-net".into()]);
        args.push(match ssh_port {
            Some(port) => format!("user,hostfwd=tcp:127.0.0.1:{port}-:22"),
            None => "user".into(),
        });
        if self.no_reboot {
            args.push("-no-reboot".into());
        }
        args
    }
}

/// `,` separates QEMU options, so a comma in a file name is written `,,`.
fn qemu_escape(path: &Path) -> String {
    path.display().to_string().replace(',', ",,")
}

/// The whole command line: the guest's part, then kiln's controls — QMP and the serial
/// console on sockets in the machine's run directory, and the guest paused until kiln has
/// attached to them.
pub(super) fn qemu_argv(
    spec: &MachineSpec,
    ssh_port: Option<u16>,
    cpus: u32,
    qmp_socket: &Path,
    serial_socket: &Path,
) -> Vec<String> {
    let mut argv = vec![QEMU.to_string()];
    argv.extend(spec.guest_args(ssh_port, cpus));
    argv.extend(["-display".into(), "none".into()]);
    if spec.vnc {
        // QEMU takes the first free display from 0 to 99 itself: no race with other
        // machines starting at the same moment.
        argv.extend(["-vnc".into(), "127.0.0.1:0,to=99".into()]);
    }
    argv.extend([
        "-qmp".into(),
        format!("unix:{},server=on,wait=off", qemu_escape(qmp_socket)),
        "-chardev".into(),
        format!(
            "socket,id=serial0,path={},server=on,wait=off,logfile={}",
            qemu_escape(serial_socket),
            qemu_escape(&spec.serial_log)
        ),
        "-serial".into(),
        "chardev:serial0".into(),
        "-S".into(),
    ]);
    argv
}

#[cfg(test)]
mod tests {
    use super::super::tests::spec;
    use crate::engine::host::Accelerator;

    #[test]
    fn guest_args_escape_commas_and_bind_forwards_to_loopback() {
        let args = spec().guest_args(Some(2222), 1).join(" ");
        assert_eq!(
            args,
            "-name kiln-install -accel tcg -smp 1 -m 1024 \
             -drive file=/images/a,,b.qcow2,format=qcow2,media=disk,if=virtio \
             -drive file=/isos/debian.iso,format=raw,media=cdrom,readonly=on \
             -net nic,model=virtio -net user,hostfwd=tcp:127.0.0.1:2222-:22 -no-reboot"
        );
        let mut kvm = spec();
        kvm.accelerator = Accelerator::Kvm;
        kvm.snapshot = true;
        let args = kvm.guest_args(None, 2).join(" ");
        assert!(args.contains("-smp 2 "));
        assert!(args.contains("-accel kvm -cpu host"));
        assert!(args.contains("if=virtio,snapshot=on"));
        assert!(args.ends_with("-net user -no-reboot"));
    }
}
