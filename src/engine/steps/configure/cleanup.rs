//! Clean-ups for cloning, last in the guest: what the build left in the image would otherwise
//! leak into every clone (shell history, the installer's logs with the preseed's answers, apt
//! caches, DHCP leases, shared host keys, cloud-init's state).
//!
//! The operations are virt-sysprep's (libguestfs), by the same names, that apply to a Debian-like
//! CI image, plus `zero-free-space` (virt-sparsify's job there). kiln runs them in the booted
//! guest as root, not on a mounted disk: it has the guest's own tools (`cloud-init clean`,
//! `journalctl`, systemd for the host-key unit) and needs no libguestfs appliance. Each one
//! prints one line saying what it removed, which the step log shows.

use std::collections::BTreeSet;
use std::fmt;

use serde_with::{DeserializeFromStr, SerializeDisplay};

use super::CLEANUP_TIMEOUT;
use crate::engine::guest::ssh::{Session, SshError};
use crate::engine::task::Reporter;

/// One clean-up, by virt-sysprep's name. Declared in the order they run: `ssh-hostkeys` late
/// (nothing after it may need them), `zero-free-space` last (it zeroes what the others freed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CleanupOperation {
    CloudInit,
    Logfiles,
    BashHistory,
    PackageManagerCache,
    DhcpClientState,
    TmpFiles,
    UdevPersistentNet,
    NetHwaddr,
    PasswdBackups,
    MachineId,
    SshHostkeys,
    ZeroFreeSpace,
}

impl CleanupOperation {
    pub const ALL: [CleanupOperation; 12] = [
        CleanupOperation::CloudInit,
        CleanupOperation::Logfiles,
        CleanupOperation::BashHistory,
        CleanupOperation::PackageManagerCache,
        CleanupOperation::DhcpClientState,
        CleanupOperation::TmpFiles,
        CleanupOperation::UdevPersistentNet,
        CleanupOperation::NetHwaddr,
        CleanupOperation::PasswdBackups,
        CleanupOperation::MachineId,
        CleanupOperation::SshHostkeys,
        CleanupOperation::ZeroFreeSpace,
    ];

    /// The name on command lines, in recipes and in the step log (virt-sysprep's where it has one).
    pub fn name(self) -> &'static str {
        match self {
            CleanupOperation::CloudInit => "cloud-init",
            CleanupOperation::Logfiles => "logfiles",
            CleanupOperation::BashHistory => "bash-history",
            CleanupOperation::PackageManagerCache => "package-manager-cache",
            CleanupOperation::DhcpClientState => "dhcp-client-state",
            CleanupOperation::TmpFiles => "tmp-files",
            CleanupOperation::UdevPersistentNet => "udev-persistent-net",
            CleanupOperation::NetHwaddr => "net-hwaddr",
            CleanupOperation::PasswdBackups => "passwd-backups",
            CleanupOperation::MachineId => "machine-id",
            CleanupOperation::SshHostkeys => "ssh-hostkeys",
            CleanupOperation::ZeroFreeSpace => "zero-free-space",
        }
    }

    /// What it does, in a person's words (help texts, the workbench).
    pub fn describe(self) -> &'static str {
        match self {
            CleanupOperation::CloudInit => "cloud-init's state and logs (cloud-init clean --logs)",
            CleanupOperation::Logfiles => {
                "log files, the journal and the installer's logs (/var/log/installer)"
            }
            CleanupOperation::BashHistory => "shell histories of root and every user",
            CleanupOperation::PackageManagerCache => "downloaded packages and apt's caches",
            CleanupOperation::DhcpClientState => "DHCP client leases",
            CleanupOperation::TmpFiles => "everything under /tmp and /var/tmp",
            CleanupOperation::UdevPersistentNet => "udev's persistent network-name rules",
            CleanupOperation::NetHwaddr => "MAC addresses written into network configuration",
            CleanupOperation::PasswdBackups => {
                "/etc/shadow- and the other account backups (the old root password hash)"
            }
            CleanupOperation::MachineId => "/etc/machine-id emptied (each clone makes its own)",
            CleanupOperation::SshHostkeys => {
                "SSH host keys, regenerated at first boot by a unit that runs before sshd"
            }
            CleanupOperation::ZeroFreeSpace => "free space zeroed and trimmed (for compaction)",
        }
    }

    fn from_name(name: &str) -> Option<CleanupOperation> {
        Self::ALL.into_iter().find(|op| op.name() == name)
    }

    /// The shell that does it; it prints one line saying what it removed.
    fn script(self) -> &'static str {
        match self {
            CleanupOperation::CloudInit => CLOUD_INIT,
            CleanupOperation::Logfiles => LOGFILES,
            CleanupOperation::BashHistory => BASH_HISTORY,
            CleanupOperation::PackageManagerCache => PACKAGE_MANAGER_CACHE,
            CleanupOperation::DhcpClientState => DHCP_CLIENT_STATE,
            CleanupOperation::TmpFiles => TMP_FILES,
            CleanupOperation::UdevPersistentNet => UDEV_PERSISTENT_NET,
            CleanupOperation::NetHwaddr => NET_HWADDR,
            CleanupOperation::PasswdBackups => PASSWD_BACKUPS,
            CleanupOperation::MachineId => MACHINE_ID,
            CleanupOperation::SshHostkeys => SSH_HOSTKEYS,
            CleanupOperation::ZeroFreeSpace => ZERO_FREE_SPACE,
        }
    }
}

impl fmt::Display for CleanupOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which clean-ups to run; written like virt-sysprep's `--operations`: `defaults`, names, and
/// `-name` to leave one out (`defaults,-ssh-hostkeys,zero-free-space`). Empty: none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, SerializeDisplay, DeserializeFromStr)]
pub struct Cleanup(BTreeSet<CleanupOperation>);

impl Cleanup {
    /// What a CI image wants: everything but zeroing the free space, which takes minutes on a
    /// big disk under TCG and only matters to `publish --compact`.
    pub fn defaults() -> Cleanup {
        Cleanup(
            CleanupOperation::ALL
                .into_iter()
                .filter(|op| *op != CleanupOperation::ZeroFreeSpace)
                .collect(),
        )
    }

    pub fn none() -> Cleanup {
        Cleanup::default()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, op: CleanupOperation) -> bool {
        self.0.contains(&op)
    }

    pub fn insert(&mut self, op: CleanupOperation) {
        self.0.insert(op);
    }

    pub fn remove(&mut self, op: CleanupOperation) {
        self.0.remove(&op);
    }

    /// The shortest way to write it: `defaults` and what differs from them, else the names.
    pub fn written(&self) -> String {
        let defaults = Cleanup::defaults();
        if self.0.is_empty() {
            return "none".into();
        }
        let mut words = Vec::new();
        if defaults.0.is_subset(&self.0) || defaults.0.difference(&self.0).count() <= 3 {
            words.push("defaults".to_string());
            words.extend(defaults.0.difference(&self.0).map(|op| format!("-{op}")));
            words.extend(self.0.difference(&defaults.0).map(|op| op.to_string()));
        } else {
            words.extend(self.operations().map(|op| op.to_string()));
        }
        words.join(",")
    }

    /// In the order they run.
    pub fn operations(&self) -> impl Iterator<Item = CleanupOperation> + '_ {
        self.0.iter().copied()
    }

    /// Read `defaults,-ssh-hostkeys,zero-free-space` (commas or spaces between; `none` alone:
    /// nothing). Later words win, so `defaults,-logfiles` and `-logfiles,defaults` differ.
    pub fn parse(text: &str) -> Result<Cleanup, String> {
        let mut set = BTreeSet::new();
        let words: Vec<&str> = text
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|w| !w.is_empty())
            .collect();
        for word in words {
            let (remove, name) = match word.strip_prefix('-') {
                Some(name) => (true, name),
                None => (false, word),
            };
            let named: Vec<CleanupOperation> = match name {
                "defaults" => Cleanup::defaults().0.into_iter().collect(),
                "all" => CleanupOperation::ALL.to_vec(),
                "none" if !remove => {
                    set.clear();
                    continue;
                }
                _ => vec![CleanupOperation::from_name(name).ok_or_else(|| {
                    format!(
                        "no clean-up is called `{name}`; the clean-ups are defaults, all, none, {}",
                        CleanupOperation::ALL.map(CleanupOperation::name).join(", ")
                    )
                })?],
            };
            for op in named {
                match remove {
                    true => set.remove(&op),
                    false => set.insert(op),
                };
            }
        }
        Ok(Cleanup(set))
    }
}

impl fmt::Display for Cleanup {
    /// As [`Cleanup::written`] (session files, the workbench's field); `parse` reads it back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.written())
    }
}

impl std::str::FromStr for Cleanup {
    type Err = String;
    fn from_str(text: &str) -> Result<Cleanup, String> {
        Cleanup::parse(text)
    }
}

/// A clean-up that failed in the guest.
#[derive(Debug, thiserror::Error)]
pub enum CleanupFailed {
    #[error("clean-up `{op}`: {error}")]
    Ssh {
        op: CleanupOperation,
        error: SshError,
    },
    #[error("clean-up `{op}` failed in the guest: {stderr}")]
    Guest {
        op: CleanupOperation,
        stderr: String,
    },
}

/// Run `cleanup` through root's `session`, each operation on its own so a failure names it;
/// every operation's line goes to the step log. Returns a one-line summary.
pub async fn run_cleanup(
    session: &Session,
    cleanup: &Cleanup,
    reporter: &Reporter,
) -> Result<String, CleanupFailed> {
    let mut done = Vec::new();
    for op in cleanup.operations() {
        if op == CleanupOperation::ZeroFreeSpace {
            reporter.info("cleanup zero-free-space: zeroing free space and trimming (this takes a while on a large disk)…");
        }
        let script = format!("{PRELUDE}\n{}", op.script());
        let out = session
            .exec(&script, None, &[], CLEANUP_TIMEOUT)
            .await
            .map_err(|error| CleanupFailed::Ssh { op, error })?;
        if !out.success() {
            return Err(CleanupFailed::Guest {
                op,
                stderr: out.stderr_text(),
            });
        }
        let said = String::from_utf8_lossy(&out.stdout);
        let said = said.trim();
        reporter.info(format!("cleanup {op}: {said}"));
        done.push(op.name());
    }
    Ok(format!("cleanup: {}", done.join(", ")))
}

/// `removed PATH…`: remove those that exist and say how many and which (the first ten).
const PRELUDE: &str = r#"set -u
removed() {
  n=0; shown=""
  for p in "$@"; do
    [ -e "$p" ] || [ -L "$p" ] || continue
    rm -rf -- "$p" || { echo "cannot remove $p" >&2; exit 1; }
    n=$((n + 1)); [ "$n" -le 10 ] && shown="$shown $p"
  done
  [ "$n" -gt 10 ] && shown="$shown …"
  if [ "$n" -eq 0 ]; then echo "nothing to remove"; else echo "removed $n:$shown"; fi
}"#;

const CLOUD_INIT: &str = r#"if command -v cloud-init >/dev/null 2>&1; then
  had=$(ls -A /var/lib/cloud 2>/dev/null | wc -l)
  cloud-init clean --logs --seed >/dev/null || exit 1
  echo "cloud-init clean --logs --seed (/var/lib/cloud held $had entries)"
else
  removed /var/lib/cloud/instance /var/lib/cloud/instances /var/lib/cloud/data /var/lib/cloud/seed /var/log/cloud-init.log /var/log/cloud-init-output.log
fi"#;

/// The journal moves to /run first (`--relinquish-var`), and systemd-update-utmp is stopped
/// (it writes its shutdown record now, not after the clean-up), so what the rest of this boot
/// logs (these sessions, the poweroff) is not written back to the disk.
const LOGFILES: &str = r#"systemctl stop rsyslog.service syslog.socket systemd-update-utmp.service 2>/dev/null
journalctl --relinquish-var 2>/dev/null
removed /var/log/installer /var/log/*.log /var/log/*.log.* /var/log/*.gz /var/log/*.[0-9] \
  /var/log/apt/* /var/log/journal/* /var/log/syslog* /var/log/messages* /var/log/debug* \
  /var/log/btmp* /var/log/wtmp* /var/log/lastlog* /var/log/faillog* /var/log/private/* \
  /var/log/unattended-upgrades/* /var/lib/logrotate/status /root/install.log* \
  /root/anaconda-ks.cfg /root/original-ks.cfg"#;

const BASH_HISTORY: &str = r#"removed /root/.bash_history /home/*/.bash_history /root/.zsh_history \
  /home/*/.zsh_history /root/.python_history /home/*/.python_history /root/.lesshst \
  /home/*/.lesshst /root/.viminfo /home/*/.viminfo /root/.wget-hsts /home/*/.wget-hsts"#;

const PACKAGE_MANAGER_CACHE: &str = r#"removed /var/cache/apt/archives/*.deb /var/cache/apt/archives/lock \
  /var/cache/apt/archives/partial/* /var/cache/apt/*.bin /var/lib/apt/lists/partial/* \
  /var/cache/debconf/*-old /var/cache/dnf/* /var/cache/yum/*"#;

const DHCP_CLIENT_STATE: &str = r#"removed /var/lib/dhcp/*.leases /var/lib/dhcp/*.lease \
  /var/lib/dhclient/* /var/lib/NetworkManager/*.lease /var/lib/NetworkManager/*.leases"#;

const TMP_FILES: &str =
    r#"removed /tmp/* /tmp/.[!.]* /tmp/..?* /var/tmp/* /var/tmp/.[!.]* /var/tmp/..?*"#;

const UDEV_PERSISTENT_NET: &str = r#"removed /etc/udev/rules.d/70-persistent-net.rules \
  /etc/udev/rules.d/75-persistent-net-generator.rules"#;

/// A MAC address pinned in an interface's configuration breaks the network of every clone.
const NET_HWADDR: &str = r#"n=0; shown=""
for f in /etc/sysconfig/network-scripts/ifcfg-* /etc/network/interfaces /etc/network/interfaces.d/*; do
  [ -f "$f" ] || continue
  if grep -Eqi '^[[:space:]]*(HWADDR=|hwaddress )' "$f"; then
    sed -Ei '/^[[:space:]]*(HWADDR=|hwaddress )/Id' "$f" || exit 1
    n=$((n + 1)); shown="$shown $f"
  fi
done
if [ "$n" -eq 0 ]; then echo "no MAC address in ifcfg-* or /etc/network/interfaces"; else echo "removed the MAC address from $n:$shown"; fi"#;

const PASSWD_BACKUPS: &str =
    r#"removed /etc/passwd- /etc/shadow- /etc/group- /etc/gshadow- /etc/subuid- /etc/subgid-"#;

const MACHINE_ID: &str = r##"[ -s /etc/machine-id ] && was="was set" || was="was already empty"
truncate -s 0 /etc/machine-id || exit 1
rm -f /var/lib/dbus/machine-id
echo "emptied /etc/machine-id ($was); removed /var/lib/dbus/machine-id""##;

/// Debian's ssh.service does not make missing host keys (its `sshd -t` fails and sshd stays
/// down), so removing them needs a unit that runs `ssh-keygen -A` before sshd at first boot.
const SSH_HOSTKEYS: &str = r##"[ -d /run/systemd/system ] || { echo 'needs systemd to regenerate the host keys at boot' >&2; exit 1; }
printf '%s\n' '[Unit]' 'Description=Regenerate SSH host keys (kiln)' 'Before=ssh.service sshd.service' \
  'ConditionPathExistsGlob=!/etc/ssh/ssh_host_*_key' '[Service]' 'Type=oneshot' 'ExecStart=/usr/bin/ssh-keygen -A' \
  '[Install]' 'WantedBy=multi-user.target' 'RequiredBy=ssh.service' > /etc/systemd/system/kiln-ssh-host-keys.service || exit 1
systemctl enable kiln-ssh-host-keys.service >/dev/null 2>&1 || exit 1
set -- /etc/ssh/ssh_host_*
said=$(removed "$@") || exit 1
echo "$said; kiln-ssh-host-keys.service makes new ones at first boot""##;

const ZERO_FREE_SPACE: &str = r##"dd if=/dev/zero of=/kiln-zero bs=1M 2>/dev/null; rm -f /kiln-zero; sync
trimmed=$(fstrim -av 2>/dev/null | tr '\n' ' ')
echo "zeroed the free space; ${trimmed:-fstrim: nothing trimmed}""##;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_written_like_virt_sysprep_operations() {
        let defaults = Cleanup::parse("defaults").unwrap();
        assert_eq!(defaults, Cleanup::defaults());
        assert!(!defaults.contains(CleanupOperation::ZeroFreeSpace));
        assert!(defaults.contains(CleanupOperation::SshHostkeys));

        let chosen = Cleanup::parse("defaults,-ssh-hostkeys, zero-free-space").unwrap();
        assert!(!chosen.contains(CleanupOperation::SshHostkeys));
        assert!(chosen.contains(CleanupOperation::ZeroFreeSpace));
        assert_eq!(Cleanup::parse(&chosen.to_string()).unwrap(), chosen);

        assert_eq!(chosen.written(), "defaults,-ssh-hostkeys,zero-free-space");
        assert_eq!(
            Cleanup::parse("machine-id").unwrap().written(),
            "machine-id"
        );
        assert!(Cleanup::parse("none").unwrap().is_empty());
        assert!(Cleanup::parse("").unwrap().is_empty());
        assert_eq!(Cleanup::none().to_string(), "none");
        assert_eq!(
            Cleanup::parse("machine-id logfiles").unwrap().to_string(),
            "logfiles,machine-id"
        );
        let error = Cleanup::parse("defaults,bash-histroy").unwrap_err();
        assert!(
            error.contains("`bash-histroy`") && error.contains("bash-history"),
            "{error}"
        );
    }

    /// zero-free-space zeroes what the others freed; nothing after ssh-hostkeys needs the keys.
    #[test]
    fn they_run_in_an_order_where_each_is_still_true_at_the_end() {
        let order: Vec<CleanupOperation> = Cleanup::parse("all").unwrap().operations().collect();
        assert_eq!(order, CleanupOperation::ALL);
        assert_eq!(order.last(), Some(&CleanupOperation::ZeroFreeSpace));
        assert_eq!(order[order.len() - 2], CleanupOperation::SshHostkeys);
    }

    /// `sh -n`: each script, with the prelude, is whole shell (a lost quote fails here, not in
    /// a guest).
    #[test]
    fn every_script_is_valid_shell() {
        for op in CleanupOperation::ALL {
            let script = format!("{PRELUDE}\n{}", op.script());
            let out = std::process::Command::new("sh")
                .args(["-n", "-c", &script])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{op}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    #[test]
    fn every_script_says_what_it_did() {
        for op in CleanupOperation::ALL {
            assert!(
                op.script().contains("echo") || op.script().contains("removed "),
                "{op}"
            );
        }
        assert!(LOGFILES.contains("/var/log/installer"));
    }
}
