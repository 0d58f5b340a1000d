//! The CI drivers kiln imitates: the exact command line each boots an image with, and the
//! user it logs in as (docs/driver-contract.md §1–§2).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::host::Accelerator;

/// Which CI system's driver to imitate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    #[default]
    /// Djinn CI's QEMU driver and its offline runner.
    Djinn,
    /// builds.sr.ht-style runners.
    Srht,
}

impl Profile {
    /// The word used on command lines, in forms and in session files.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Djinn => "djinn",
            Profile::Srht => "srht",
        }
    }

    /// The driver a word names (the inverse of [`Profile::name`]).
    pub fn from_name(name: &str) -> Option<Profile> {
        [Profile::Djinn, Profile::Srht]
            .into_iter()
            .find(|profile| profile.name() == name)
    }
}

/// A driver with its machine size and the accelerator this host can give it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DriverProfile {
    pub profile: Profile,
    pub cpus: u32,
    pub memory_mib: u32,
    pub accelerator: Accelerator,
}

impl DriverProfile {
    /// The named driver's machine on this host's accelerator.
    pub fn of(profile: Profile, accelerator: Accelerator) -> DriverProfile {
        match profile {
            Profile::Djinn => DriverProfile::djinn(accelerator),
            Profile::Srht => DriverProfile::srht(accelerator),
        }
    }

    /// The Djinn driver's defaults (`cpus 1`, `memory 2048` in dist/driver.conf).
    pub fn djinn(accelerator: Accelerator) -> DriverProfile {
        DriverProfile {
            profile: Profile::Djinn,
            cpus: 1,
            memory_mib: 2048,
            accelerator,
        }
    }

    pub fn srht(accelerator: Accelerator) -> DriverProfile {
        DriverProfile {
            profile: Profile::Srht,
            cpus: 2,
            memory_mib: 4096,
            accelerator,
        }
    }

    /// The user the driver logs in as, with an empty password.
    pub fn user(&self) -> &'static str {
        match self.profile {
            Profile::Djinn => "root",
            Profile::Srht => "build",
        }
    }

    /// The command line the CI driver itself runs, verbatim (for showing to the person).
    pub fn driver_argv(&self, image: &Path, port: u16) -> Vec<String> {
        let image = image.display();
        let words: Vec<String> = match self.profile {
            Profile::Djinn => vec![
                "qemu-system-x86_64".into(),
                "-enable-kvm".into(),
                "-daemonize".into(),
                "-display".into(),
                "none".into(),
                "-pidfile".into(),
                "FILE".into(),
                "-smp".into(),
                self.cpus.to_string(),
                "-m".into(),
                self.memory_mib.to_string(),
                "-net".into(),
                "nic,model=virtio".into(),
                "-net".into(),
                format!("user,hostfwd=tcp:127.0.0.1:{port}-:22"),
                "-drive".into(),
                format!("file={image},media=disk,snapshot=on,if=virtio"),
            ],
            Profile::Srht => {
                let mut words = vec![
                    "qemu-system-x86_64".into(),
                    "-m".into(),
                    self.memory_mib.to_string(),
                    "-smp".into(),
                    self.cpus.to_string(),
                    "-net".into(),
                    "nic,model=virtio".into(),
                    "-net".into(),
                    format!("user,hostfwd=tcp::{port}-:22"),
                    "-display".into(),
                    "none".into(),
                    "-device".into(),
                    "virtio-rng-pci".into(),
                    "-drive".into(),
                    format!("file={image},media=disk,snapshot=on,if=virtio"),
                ];
                if self.accelerator == Accelerator::Kvm {
                    words.extend(["-cpu".into(), "host".into(), "-enable-kvm".into()]);
                }
                words
            }
        };
        words
    }

    /// The guest-facing arguments kiln boots with: the driver's own, with the accelerator
    /// this host can really use and every forward on loopback.
    pub fn guest_args(&self, image: &Path, port: u16) -> Vec<String> {
        let image = image.display().to_string().replace(',', ",,");
        let accel: Vec<String> = match (self.profile, self.accelerator) {
            (Profile::Djinn, Accelerator::Kvm) => vec!["-enable-kvm".into()],
            (Profile::Srht, Accelerator::Kvm) => {
                vec!["-cpu".into(), "host".into(), "-enable-kvm".into()]
            }
            (_, Accelerator::Tcg) => vec!["-accel".into(), "tcg".into()],
        };
        let mut args = accel;
        args.extend([
            "-smp".into(),
            self.cpus.to_string(),
            "-m".into(),
            self.memory_mib.to_string(),
            "-net".into(),
            "nic,model=virtio".into(),
            "-net".into(),
            format!("user,hostfwd=tcp:127.0.0.1:{port}-:22"),
        ]);
        if self.profile == Profile::Srht {
            args.extend(["-device".into(), "virtio-rng-pci".into()]);
        }
        // format=qcow2: said, never probed (the driver probes; kiln boots only checked qcow2).
        args.extend([
            "-drive".into(),
            format!("file={image},format=qcow2,media=disk,snapshot=on,if=virtio"),
        ]);
        args
    }

    /// What kiln's boot differs in from the driver's, and why; shown next to the argv.
    pub fn differences(&self) -> Vec<String> {
        let mut notes = vec![
            "no -daemonize/-pidfile: kiln keeps QEMU as its child so it can never be orphaned"
                .into(),
            "adds -qmp, a serial console socket and -S (start paused) to watch the boot".into(),
            "says format=qcow2 on -drive: QEMU never guesses the format of an untrusted file"
                .into(),
        ];
        if self.accelerator == Accelerator::Tcg {
            notes.push("KVM is not usable here: software emulation (TCG) instead of -enable-kvm; boot is slower".into());
        }
        if self.profile == Profile::Srht {
            notes.push(
                "the SSH forward binds 127.0.0.1 only (builds.sr.ht binds every interface)".into(),
            );
        }
        notes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn djinn_argv_is_the_drivers_exactly() {
        let profile = DriverProfile::djinn(Accelerator::Kvm);
        assert_eq!(
            profile
                .driver_argv(Path::new("/i/img.qcow2"), 2222)
                .join(" "),
            "qemu-system-x86_64 -enable-kvm -daemonize -display none -pidfile FILE -smp 1 -m 2048 \
             -net nic,model=virtio -net user,hostfwd=tcp:127.0.0.1:2222-:22 \
             -drive file=/i/img.qcow2,media=disk,snapshot=on,if=virtio"
        );
        assert_eq!(
            profile
                .guest_args(Path::new("/i/img.qcow2"), 2222)
                .join(" "),
            "-enable-kvm -smp 1 -m 2048 -net nic,model=virtio \
             -net user,hostfwd=tcp:127.0.0.1:2222-:22 \
             -drive file=/i/img.qcow2,format=qcow2,media=disk,snapshot=on,if=virtio"
        );
    }

    #[test]
    fn tcg_swaps_only_the_accelerator() {
        let kvm = DriverProfile::djinn(Accelerator::Kvm).guest_args(Path::new("x"), 2300);
        let tcg = DriverProfile::djinn(Accelerator::Tcg).guest_args(Path::new("x"), 2300);
        assert_eq!(kvm[1..], tcg[2..]);
        assert_eq!(tcg[..2], ["-accel", "tcg"]);
    }

    #[test]
    fn srht_logs_in_as_build_with_rng_and_loopback_forward() {
        let profile = DriverProfile::srht(Accelerator::Tcg);
        assert_eq!(profile.user(), "build");
        let args = profile.guest_args(Path::new("x"), 2222).join(" ");
        assert!(args.contains("-device virtio-rng-pci"));
        assert!(args.contains("hostfwd=tcp:127.0.0.1:2222-:22"));
        assert!(
            profile
                .driver_argv(Path::new("x"), 2222)
                .join(" ")
                .contains("hostfwd=tcp::2222-:22")
        );
    }
}
