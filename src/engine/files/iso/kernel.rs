//! Which kernel and initrd inside an installer ISO boot it, for QEMU's direct kernel boot
//! (`-kernel K -initrd I -append ARGS`): the places distributions put them, tried in order,
//! then the image's own isolinux/syslinux menu. Each layout carries the arguments its boot
//! menu would have passed, without which the installer cannot find the rest of itself.

use std::path::PathBuf;

use super::filesystem::{IsoFilesystem, IsoReadError};

/// How a person names the files themselves when no layout matches.
const EXPLICIT_HINT: &str = "--kernel PATH --initrd PATH, paths inside the ISO";
/// Boot menus read for the last try, in the places isolinux and syslinux look.
const BOOT_MENUS: &[&str] = &[
    "/isolinux/isolinux.cfg",
    "/boot/isolinux/isolinux.cfg",
    "/isolinux.cfg",
    "/syslinux/syslinux.cfg",
    "/boot/syslinux/syslinux.cfg",
    "/syslinux.cfg",
];
/// The layout of a kernel found through the image's own boot menu.
pub const BOOT_MENU_LAYOUT: &str = "isolinux/syslinux boot menu";
/// A boot menu is a few kilobytes; anything near this is not one.
const MAX_BOOT_MENU_BYTES: u64 = 256 << 10;
/// Menu entries whose files are looked up: real menus have a handful.
const MAX_BOOT_ENTRIES: usize = 32;

/// The kernel and initrd to boot an installer with, and the arguments it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallerKernel {
    /// Path inside the ISO, from its root (`/install.amd/vmlinuz`).
    pub kernel: String,
    /// Path inside the ISO, from its root (`/install.amd/initrd.gz`).
    pub initrd: String,
    /// Which layout matched, for the log ("Debian/Ubuntu installer (install.amd)").
    pub layout: &'static str,
    /// What the distribution's boot menu passes; the user's arguments go after these.
    pub base_args: String,
}

/// Why no kernel could be chosen; says where kiln looked, so a person can name the files.
#[derive(Debug, thiserror::Error)]
pub enum KernelNotFound {
    #[error("{}", no_known_layout(.iso, .looked_for))]
    NoKnownLayout {
        iso: PathBuf,
        /// Each layout's name and every path kiln looked up for it.
        looked_for: Vec<(&'static str, Vec<String>)>,
    },
    #[error("{} has no {role} {inner} (list its files with `xorriso -indev ISO -find /`)", .iso.display())]
    MissingGiven {
        iso: PathBuf,
        role: &'static str,
        inner: String,
    },
    #[error("the {role} {inner} in {} is a directory, not a file", .iso.display())]
    GivenIsDirectory {
        iso: PathBuf,
        role: &'static str,
        inner: String,
    },
    #[error(transparent)]
    Read(#[from] IsoReadError),
}

/// Where one distribution keeps its installer's kernel and initrd.
struct Layout {
    name: &'static str,
    /// Tried in order; the first that exists is used.
    kernels: &'static [&'static str],
    initrds: &'static [&'static str],
    args: Args,
}

/// The kernel arguments a layout's boot menu passes.
enum Args {
    Fixed(&'static str),
    /// These words followed by the volume id, which the installer finds its image by.
    VolumeLabel(&'static str),
}

/// The known layouts, most specific first: a Debian live image also has `/install`, and
/// the text installer is preferred to the graphical one (a serial console can drive it).
const LAYOUTS: &[Layout] = &[
    Layout {
        name: "Debian/Ubuntu installer (install.amd)",
        kernels: &["/install.amd/vmlinuz"],
        initrds: &["/install.amd/initrd.gz"],
        args: Args::Fixed(""),
    },
    Layout {
        name: "Debian/Ubuntu graphical installer (install.amd/gtk)",
        kernels: &["/install.amd/gtk/vmlinuz", "/install.amd/vmlinuz"],
        initrds: &["/install.amd/gtk/initrd.gz"],
        args: Args::Fixed("vga=788"),
    },
    Layout {
        name: "Debian live / Ubuntu alternate installer (install)",
        kernels: &["/install/vmlinuz"],
        initrds: &["/install/initrd.gz"],
        args: Args::Fixed(""),
    },
    Layout {
        name: "Ubuntu live (casper)",
        kernels: &["/casper/vmlinuz"],
        initrds: &["/casper/initrd", "/casper/initrd.gz", "/casper/initrd.lz"],
        args: Args::Fixed("boot=casper"),
    },
    Layout {
        name: "Debian live (live)",
        kernels: &["/live/vmlinuz"],
        initrds: &["/live/initrd.img"],
        args: Args::Fixed("boot=live components"),
    },
    Layout {
        name: "Debian netboot (debian-installer/amd64)",
        kernels: &["/debian-installer/amd64/linux"],
        initrds: &["/debian-installer/amd64/initrd.gz"],
        args: Args::Fixed(""),
    },
    Layout {
        name: "Ubuntu netboot (ubuntu-installer/amd64)",
        kernels: &["/ubuntu-installer/amd64/linux"],
        initrds: &["/ubuntu-installer/amd64/initrd.gz"],
        args: Args::Fixed(""),
    },
    Layout {
        name: "Debian/Ubuntu mini.iso (linux at the root)",
        kernels: &["/linux"],
        initrds: &["/initrd.gz"],
        args: Args::Fixed(""),
    },
    Layout {
        name: "Fedora/RHEL installer (images/pxeboot)",
        kernels: &["/images/pxeboot/vmlinuz"],
        initrds: &["/images/pxeboot/initrd.img"],
        args: Args::VolumeLabel("inst.stage2=hd:LABEL="),
    },
    Layout {
        name: "Fedora/RHEL/CentOS installer (isolinux)",
        kernels: &["/isolinux/vmlinuz"],
        initrds: &["/isolinux/initrd.img"],
        args: Args::VolumeLabel("inst.stage2=hd:LABEL="),
    },
    Layout {
        name: "Alpine (boot/vmlinuz-lts)",
        kernels: &["/boot/vmlinuz-lts"],
        initrds: &["/boot/initramfs-lts"],
        args: Args::Fixed("modules=loop,squashfs,sd-mod,usb-storage"),
    },
    Layout {
        name: "Alpine virt (boot/vmlinuz-virt)",
        kernels: &["/boot/vmlinuz-virt"],
        initrds: &["/boot/initramfs-virt"],
        args: Args::Fixed("modules=loop,squashfs,sd-mod,usb-storage"),
    },
    Layout {
        // linuxrc finds the installation medium (the ISO in the CD drive) by itself.
        name: "openSUSE/SLES installer (boot/x86_64/loader)",
        kernels: &["/boot/x86_64/loader/linux"],
        initrds: &["/boot/x86_64/loader/initrd"],
        args: Args::Fixed(""),
    },
    Layout {
        name: "Arch Linux (arch/boot/x86_64)",
        kernels: &["/arch/boot/x86_64/vmlinuz-linux"],
        initrds: &["/arch/boot/x86_64/initramfs-linux.img"],
        args: Args::VolumeLabel("archisobasedir=arch archisolabel="),
    },
];

/// The first known layout the ISO has, else what its isolinux/syslinux menu boots.
pub fn find_installer_kernel(iso: &IsoFilesystem) -> Result<InstallerKernel, KernelNotFound> {
    for layout in LAYOUTS {
        if let Some(found) = layout.find(iso)? {
            return Ok(found);
        }
    }
    if let Some(found) = from_boot_menu(iso)? {
        return Ok(found);
    }
    let mut looked_for: Vec<(&'static str, Vec<String>)> = LAYOUTS
        .iter()
        .map(|layout| (layout.name, layout.paths()))
        .collect();
    looked_for.push((
        BOOT_MENU_LAYOUT,
        BOOT_MENUS.iter().map(|p| p.to_string()).collect(),
    ));
    Err(KernelNotFound::NoKnownLayout {
        iso: iso.path().to_path_buf(),
        looked_for,
    })
}

impl InstallerKernel {
    /// Paths a person gave, checked to be files in the ISO; no arguments are assumed.
    pub fn explicit(
        iso: &IsoFilesystem,
        kernel: &str,
        initrd: &str,
    ) -> Result<InstallerKernel, KernelNotFound> {
        Ok(InstallerKernel {
            kernel: given_file(iso, "kernel", kernel)?,
            initrd: given_file(iso, "initrd", initrd)?,
            layout: "given explicitly",
            base_args: String::new(),
        })
    }
}

impl Layout {
    fn find(&self, iso: &IsoFilesystem) -> Result<Option<InstallerKernel>, KernelNotFound> {
        let Some(kernel) = first_file(iso, self.kernels)? else {
            return Ok(None);
        };
        let Some(initrd) = first_file(iso, self.initrds)? else {
            return Ok(None);
        };
        let base_args = match self.args {
            Args::Fixed(args) => args.to_string(),
            Args::VolumeLabel(words) => format!("{words}{}", label_for_cmdline(iso.volume_id())),
        };
        Ok(Some(InstallerKernel {
            kernel: kernel.to_string(),
            initrd: initrd.to_string(),
            layout: self.name,
            base_args,
        }))
    }

    fn paths(&self) -> Vec<String> {
        self.kernels
            .iter()
            .chain(self.initrds)
            .map(|p| p.to_string())
            .collect()
    }
}

fn first_file<'a>(iso: &IsoFilesystem, paths: &[&'a str]) -> Result<Option<&'a str>, IsoReadError> {
    for path in paths {
        if is_file(iso, path)? {
            return Ok(Some(path));
        }
    }
    Ok(None)
}

/// A file at `path` (lookup follows symbolic links, so a linked kernel counts).
fn is_file(iso: &IsoFilesystem, path: &str) -> Result<bool, IsoReadError> {
    Ok(iso.lookup(path)?.is_some_and(|entry| !entry.is_dir))
}

fn given_file(
    iso: &IsoFilesystem,
    role: &'static str,
    path: &str,
) -> Result<String, KernelNotFound> {
    let inner = format!("/{}", path.trim_start_matches('/'));
    match iso.lookup(&inner)? {
        None => Err(KernelNotFound::MissingGiven {
            iso: iso.path().to_path_buf(),
            role,
            inner,
        }),
        Some(entry) if entry.is_dir => Err(KernelNotFound::GivenIsDirectory {
            iso: iso.path().to_path_buf(),
            role,
            inner,
        }),
        Some(_) => Ok(inner),
    }
}

/// A volume id as a `LABEL=` value: udev names `/dev/disk/by-label/` links with spaces and
/// slashes escaped as `\x20` and `\x2f`, and a space would end the kernel argument anyway.
fn label_for_cmdline(label: &str) -> String {
    label.replace(' ', "\\x20").replace('/', "\\x2f")
}

/// What the first boot menu found boots: its default entry, or the first one that names a
/// kernel and initrd that the ISO has.
fn from_boot_menu(iso: &IsoFilesystem) -> Result<Option<InstallerKernel>, KernelNotFound> {
    for menu_path in BOOT_MENUS {
        let Some(menu) = iso.lookup(menu_path)? else {
            continue;
        };
        if menu.is_dir || menu.size > MAX_BOOT_MENU_BYTES {
            continue;
        }
        let text = String::from_utf8_lossy(&iso.read(&menu, MAX_BOOT_MENU_BYTES)?).into_owned();
        let menu_dir = menu_path.rsplit_once('/').map_or("", |(dir, _)| dir);
        for entry in boot_entries(&text).into_iter().take(MAX_BOOT_ENTRIES) {
            let kernel = resolve(menu_dir, &entry.kernel);
            let initrd = resolve(menu_dir, &entry.initrd);
            if is_file(iso, &kernel)? && is_file(iso, &initrd)? {
                return Ok(Some(InstallerKernel {
                    kernel,
                    initrd,
                    layout: BOOT_MENU_LAYOUT,
                    base_args: entry.args.join(" "),
                }));
            }
        }
    }
    Ok(None)
}

/// One LABEL of an isolinux/syslinux menu that boots a Linux kernel with an initrd.
#[derive(Debug, Default, PartialEq, Eq)]
struct BootEntry {
    label: String,
    kernel: String,
    initrd: String,
    args: Vec<String>,
    is_default: bool,
}

/// The menu's Linux entries, the default one first.
fn boot_entries(text: &str) -> Vec<BootEntry> {
    let mut entries: Vec<BootEntry> = Vec::new();
    let mut default_label = None;
    for line in text.lines() {
        let line = line.trim();
        let (keyword, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let rest = rest.trim();
        let keyword = keyword.to_ascii_lowercase();
        if keyword == "default" {
            default_label = rest.split_whitespace().next().map(str::to_string);
        } else if keyword == "label" {
            entries.push(BootEntry {
                label: rest.to_string(),
                ..BootEntry::default()
            });
        } else if let Some(entry) = entries.last_mut() {
            entry.read_line(&keyword, rest);
        }
    }
    for entry in &mut entries {
        entry.is_default |= default_label.as_deref() == Some(entry.label.as_str());
    }
    // Menu modules (vesamenu.c32) and chain loaders are no Linux kernels.
    entries.retain(|e| !e.kernel.is_empty() && !e.initrd.is_empty() && !e.kernel.ends_with(".c32"));
    entries.sort_by_key(|e| !e.is_default);
    entries
}

impl BootEntry {
    fn read_line(&mut self, keyword: &str, rest: &str) {
        match keyword {
            "kernel" | "linux" => {
                self.kernel = rest.split_whitespace().next().unwrap_or("").to_string()
            }
            "initrd" => self.initrd = last_initrd(rest),
            "append" => {
                for word in rest.split_whitespace() {
                    match word.strip_prefix("initrd=") {
                        Some(initrds) => self.initrd = last_initrd(initrds),
                        None => self.args.push(word.to_string()),
                    }
                }
            }
            "menu" if rest.eq_ignore_ascii_case("default") => self.is_default = true,
            _ => {}
        }
    }
}

/// `initrd=/ucode.img,/initrd.img`: microcode comes first, the installer's initrd last.
fn last_initrd(list: &str) -> String {
    list.split(',')
        .map(str::trim)
        .rfind(|s| !s.is_empty())
        .unwrap_or("")
        .to_string()
}

/// A menu's path from the ISO's root: relative ones are relative to the menu's directory.
fn resolve(menu_dir: &str, path: &str) -> String {
    if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{menu_dir}/{path}")
    }
}

fn no_known_layout(iso: &std::path::Path, looked_for: &[(&'static str, Vec<String>)]) -> String {
    let mut text = format!(
        "{} matches no installer layout kiln knows; it looked for:",
        iso.display()
    );
    for (layout, paths) in looked_for {
        text.push_str(&format!("\n  {layout}: {}", paths.join(", ")));
    }
    text.push_str(&format!(
        "\nname the kernel and initrd yourself ({EXPLICIT_HINT})"
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::files::iso::filesystem::tests::{build_iso, write_tree};

    /// An ISO holding `files` (each containing its own path), built with `options`.
    fn iso_with(files: &[&str], options: &[&str]) -> (tempfile::TempDir, IsoFilesystem) {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        let contents: Vec<(&str, &[u8])> = files.iter().map(|f| (*f, f.as_bytes())).collect();
        write_tree(&tree, &contents);
        let out = dir.path().join("layout.iso");
        build_iso(&tree, options, &out);
        let iso = IsoFilesystem::open(&out).unwrap();
        (dir, iso)
    }

    struct Case {
        files: &'static [&'static str],
        volume_id: &'static str,
        kernel: &'static str,
        initrd: &'static str,
        layout: &'static str,
        args: &'static str,
    }

    const CASES: &[Case] = &[
        Case {
            files: &[
                "install.amd/vmlinuz",
                "install.amd/initrd.gz",
                "install.amd/gtk/initrd.gz",
            ],
            volume_id: "Debian 12.5.0 amd64 n",
            kernel: "/install.amd/vmlinuz",
            initrd: "/install.amd/initrd.gz",
            layout: "Debian/Ubuntu installer (install.amd)",
            args: "",
        },
        Case {
            files: &["install.amd/vmlinuz", "install.amd/gtk/initrd.gz"],
            volume_id: "Debian",
            kernel: "/install.amd/vmlinuz",
            initrd: "/install.amd/gtk/initrd.gz",
            layout: "Debian/Ubuntu graphical installer (install.amd/gtk)",
            args: "vga=788",
        },
        Case {
            files: &[
                "install/vmlinuz",
                "install/initrd.gz",
                "live/vmlinuz",
                "live/initrd.img",
            ],
            volume_id: "d-live 12.5.0 st amd64",
            kernel: "/install/vmlinuz",
            initrd: "/install/initrd.gz",
            layout: "Debian live / Ubuntu alternate installer (install)",
            args: "",
        },
        Case {
            files: &["casper/vmlinuz", "casper/initrd"],
            volume_id: "Ubuntu-Server 24.04 LTS amd64",
            kernel: "/casper/vmlinuz",
            initrd: "/casper/initrd",
            layout: "Ubuntu live (casper)",
            args: "boot=casper",
        },
        Case {
            files: &["casper/vmlinuz", "casper/initrd.lz"],
            volume_id: "Ubuntu 16.04 LTS amd64",
            kernel: "/casper/vmlinuz",
            initrd: "/casper/initrd.lz",
            layout: "Ubuntu live (casper)",
            args: "boot=casper",
        },
        Case {
            files: &["live/vmlinuz", "live/initrd.img"],
            volume_id: "d-live",
            kernel: "/live/vmlinuz",
            initrd: "/live/initrd.img",
            layout: "Debian live (live)",
            args: "boot=live components",
        },
        Case {
            files: &[
                "debian-installer/amd64/linux",
                "debian-installer/amd64/initrd.gz",
            ],
            volume_id: "ISOIMAGE",
            kernel: "/debian-installer/amd64/linux",
            initrd: "/debian-installer/amd64/initrd.gz",
            layout: "Debian netboot (debian-installer/amd64)",
            args: "",
        },
        Case {
            files: &[
                "ubuntu-installer/amd64/linux",
                "ubuntu-installer/amd64/initrd.gz",
            ],
            volume_id: "ISOIMAGE",
            kernel: "/ubuntu-installer/amd64/linux",
            initrd: "/ubuntu-installer/amd64/initrd.gz",
            layout: "Ubuntu netboot (ubuntu-installer/amd64)",
            args: "",
        },
        Case {
            files: &["linux", "initrd.gz", "boot/grub/grub.cfg"],
            volume_id: "ISOIMAGE",
            kernel: "/linux",
            initrd: "/initrd.gz",
            layout: "Debian/Ubuntu mini.iso (linux at the root)",
            args: "",
        },
        Case {
            files: &[
                "images/pxeboot/vmlinuz",
                "images/pxeboot/initrd.img",
                "images/install.img",
            ],
            volume_id: "Fedora-S-dvd-x86_64-40",
            kernel: "/images/pxeboot/vmlinuz",
            initrd: "/images/pxeboot/initrd.img",
            layout: "Fedora/RHEL installer (images/pxeboot)",
            args: "inst.stage2=hd:LABEL=Fedora-S-dvd-x86_64-40",
        },
        Case {
            files: &["isolinux/vmlinuz", "isolinux/initrd.img"],
            volume_id: "CentOS 7 x86_64",
            kernel: "/isolinux/vmlinuz",
            initrd: "/isolinux/initrd.img",
            layout: "Fedora/RHEL/CentOS installer (isolinux)",
            args: "inst.stage2=hd:LABEL=CentOS\\x207\\x20x86_64",
        },
        Case {
            files: &["boot/vmlinuz-lts", "boot/initramfs-lts", "boot/modloop-lts"],
            volume_id: "alpine-std 3.20.0 x86_64",
            kernel: "/boot/vmlinuz-lts",
            initrd: "/boot/initramfs-lts",
            layout: "Alpine (boot/vmlinuz-lts)",
            args: "modules=loop,squashfs,sd-mod,usb-storage",
        },
        Case {
            files: &["boot/vmlinuz-virt", "boot/initramfs-virt"],
            volume_id: "alpine-virt 3.20.0 x86_64",
            kernel: "/boot/vmlinuz-virt",
            initrd: "/boot/initramfs-virt",
            layout: "Alpine virt (boot/vmlinuz-virt)",
            args: "modules=loop,squashfs,sd-mod,usb-storage",
        },
        Case {
            files: &[
                "arch/boot/x86_64/vmlinuz-linux",
                "arch/boot/x86_64/initramfs-linux.img",
            ],
            volume_id: "ARCH_202405",
            kernel: "/arch/boot/x86_64/vmlinuz-linux",
            initrd: "/arch/boot/x86_64/initramfs-linux.img",
            layout: "Arch Linux (arch/boot/x86_64)",
            args: "archisobasedir=arch archisolabel=ARCH_202405",
        },
        // The presets' distributions, with the paths and volume ids of their ISOs.
        Case {
            files: &[
                "boot/x86_64/loader/linux",
                "boot/x86_64/loader/initrd",
                "boot/x86_64/loader/isolinux.cfg",
                "EFI/BOOT/grub.cfg",
            ],
            volume_id: "openSUSE-Leap-15.6-NET-x86_64",
            kernel: "/boot/x86_64/loader/linux",
            initrd: "/boot/x86_64/loader/initrd",
            layout: "openSUSE/SLES installer (boot/x86_64/loader)",
            args: "",
        },
        Case {
            files: &[
                "images/pxeboot/vmlinuz",
                "images/pxeboot/initrd.img",
                "images/install.img",
                "boot/grub2/grub.cfg",
            ],
            volume_id: "Fedora-E-dvd-x86_64-41",
            kernel: "/images/pxeboot/vmlinuz",
            initrd: "/images/pxeboot/initrd.img",
            layout: "Fedora/RHEL installer (images/pxeboot)",
            args: "inst.stage2=hd:LABEL=Fedora-E-dvd-x86_64-41",
        },
        Case {
            files: &[
                "images/pxeboot/vmlinuz",
                "images/pxeboot/initrd.img",
                "images/install.img",
                "isolinux/vmlinuz",
                "isolinux/initrd.img",
            ],
            volume_id: "RHEL-9-4-0-BaseOS-x86_64",
            kernel: "/images/pxeboot/vmlinuz",
            initrd: "/images/pxeboot/initrd.img",
            layout: "Fedora/RHEL installer (images/pxeboot)",
            args: "inst.stage2=hd:LABEL=RHEL-9-4-0-BaseOS-x86_64",
        },
        Case {
            files: &["casper/vmlinuz", "casper/initrd", "boot/grub/grub.cfg"],
            volume_id: "Ubuntu-Server 24.04.1 LTS amd64",
            kernel: "/casper/vmlinuz",
            initrd: "/casper/initrd",
            layout: "Ubuntu live (casper)",
            args: "boot=casper",
        },
    ];

    fn assert_case_found(case: &Case, names: &[&str]) {
        let options = [names, &["-V", case.volume_id]].concat();
        let (_dir, iso) = iso_with(case.files, &options);
        let found = find_installer_kernel(&iso).unwrap_or_else(|e| panic!("{options:?}: {e}"));
        let expected = InstallerKernel {
            kernel: case.kernel.to_string(),
            initrd: case.initrd.to_string(),
            layout: case.layout,
            base_args: case.args.to_string(),
        };
        assert_eq!(found, expected, "{options:?}");
    }

    #[test]
    fn each_known_layout_is_found_with_its_arguments() {
        for case in CASES {
            assert_case_found(case, &["-R"]);
        }
        for layout in LAYOUTS {
            let tested = CASES.iter().any(|case| case.layout == layout.name);
            assert!(tested, "{} has no case", layout.name);
        }
    }

    #[test]
    fn layouts_are_found_by_joliet_and_plain_names_too() {
        for case in CASES
            .iter()
            .filter(|c| c.layout.starts_with("Alpine") || c.layout.starts_with("Arch"))
        {
            assert_case_found(case, &["--norock", "-J"]);
            assert_case_found(case, &["--norock", "-iso-level", "2"]);
        }
    }

    #[test]
    fn a_kernel_reached_through_a_symbolic_link_counts() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        write_tree(
            &tree,
            &[("casper/vmlinuz-6.8.0", b"k"), ("casper/initrd", b"i")],
        );
        std::os::unix::fs::symlink("vmlinuz-6.8.0", tree.join("casper/vmlinuz")).unwrap();
        let out = dir.path().join("link.iso");
        build_iso(&tree, &["-R"], &out);
        let found = find_installer_kernel(&IsoFilesystem::open(&out).unwrap()).unwrap();
        assert_eq!(found.kernel, "/casper/vmlinuz");
    }

    #[test]
    fn no_known_layout_lists_every_path_and_the_way_out() {
        let (_dir, iso) = iso_with(
            &["vmlinuz", "casper/vmlinuz", "boot/grub/grub.cfg"],
            &["-R"],
        );
        let error = find_installer_kernel(&iso).unwrap_err();
        let KernelNotFound::NoKnownLayout { looked_for, .. } = &error else {
            panic!("{error}");
        };
        assert_eq!(looked_for.len(), LAYOUTS.len() + 1);
        let text = error.to_string();
        let every_path = LAYOUTS
            .iter()
            .flat_map(|l| l.kernels.iter().chain(l.initrds))
            .chain(BOOT_MENUS);
        for path in every_path {
            assert!(text.contains(path), "{path} missing from: {text}");
        }
        assert!(text.contains("--kernel PATH --initrd PATH"), "{text}");
        assert!(text.contains("layout.iso"), "{text}");
    }

    const MENU: &str = "\
SERIAL 0 115200
# a comment
DEFAULT install
LABEL shell
  KERNEL /kiln/vmlinuz
  APPEND initrd=/kiln/initrd.img console=ttyS0 kiln.shell
LABEL install
  KERNEL /kiln/vmlinuz
  APPEND initrd=/kiln/initrd.img console=tty0 console=ttyS0,115200 panic=10
";

    #[test]
    fn an_unknown_layout_boots_what_its_isolinux_menu_boots() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        write_tree(
            &tree,
            &[
                ("isolinux/isolinux.cfg", MENU.as_bytes()),
                ("kiln/vmlinuz", b"k"),
                ("kiln/initrd.img", b"i"),
            ],
        );
        let out = dir.path().join("menu.iso");
        build_iso(&tree, &["-R"], &out);
        let found = find_installer_kernel(&IsoFilesystem::open(&out).unwrap()).unwrap();
        assert_eq!(
            found,
            InstallerKernel {
                kernel: "/kiln/vmlinuz".to_string(),
                initrd: "/kiln/initrd.img".to_string(),
                layout: BOOT_MENU_LAYOUT,
                base_args: "console=tty0 console=ttyS0,115200 panic=10".to_string(),
            }
        );
    }

    #[test]
    fn menu_entries_default_first_relative_paths_and_modules_skipped() {
        let menu = "default vesamenu.c32\nlabel gui\n kernel vesamenu.c32\nlabel text\n menu default\n linux vmlinuz\n initrd ucode.img,initrd.img\n append quiet\nlabel rescue\n linux vmlinuz\n append initrd=initrd.img rescue\n";
        let entries = boot_entries(menu);
        let labels: Vec<&str> = entries.iter().map(|e| e.label.as_str()).collect();
        assert_eq!(labels, ["text", "rescue"]);
        assert_eq!(entries[0].initrd, "initrd.img");
        assert_eq!(entries[0].args, ["quiet"]);
        assert_eq!(
            resolve("/syslinux", &entries[0].kernel),
            "/syslinux/vmlinuz"
        );
        assert_eq!(resolve("/syslinux", "/boot/vmlinuz"), "/boot/vmlinuz");
        assert_eq!(boot_entries(""), []);
    }

    #[test]
    fn explicit_paths_are_checked_against_the_iso() {
        let (_dir, iso) = iso_with(&["kiln/vmlinuz", "kiln/initrd.img"], &["-R"]);
        let given = InstallerKernel::explicit(&iso, "kiln/vmlinuz", "/kiln/initrd.img").unwrap();
        assert_eq!(given.kernel, "/kiln/vmlinuz");
        assert_eq!(given.initrd, "/kiln/initrd.img");
        assert_eq!(given.base_args, "");
        let missing =
            InstallerKernel::explicit(&iso, "/kiln/vmlinuz", "/kiln/initrd.gz").unwrap_err();
        assert!(
            matches!(missing, KernelNotFound::MissingGiven { role: "initrd", .. }),
            "{missing}"
        );
        assert!(missing.to_string().contains("/kiln/initrd.gz"), "{missing}");
        let directory = InstallerKernel::explicit(&iso, "/kiln", "/kiln/initrd.img").unwrap_err();
        assert!(
            matches!(
                directory,
                KernelNotFound::GivenIsDirectory { role: "kernel", .. }
            ),
            "{directory}"
        );
    }
}
