//! Why a step of the driver's procedure failed, found before the message is written: the
//! cheapest decisive probes through whatever still works — a probe command (when commands
//! run at all), SFTP (OpenSSH's internal-sftp needs no shell), the serial console. When no
//! probe is decisive, the message says what was ruled out instead of guessing.

use std::time::Duration;

use crate::engine::guest::ssh::{ExecOutput, Session, Sftp, SshError};

/// How long a probe command may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

/// A cause: what the detail says, and the fix for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Cause {
    pub why: String,
    pub fix: String,
}

impl Cause {
    fn new(why: impl Into<String>, fix: impl Into<String>) -> Cause {
        Cause {
            why: why.into(),
            fix: fix.into(),
        }
    }
}

/// What a probe command did.
enum Echo {
    /// The command ran as given: commands work.
    Ran,
    /// Something else ran in its place (a ForceCommand): its output.
    Replaced(String),
    /// It ran and failed, or the server refused it: how.
    Failed(String),
}

/// The probes one logged-in session allows.
pub(super) struct Probes<'a> {
    pub session: &'a Session,
    pub sftp: Option<&'a Sftp>,
    pub user: &'a str,
}

impl Probes<'_> {
    /// A command of the procedure did not run: a login shell that runs no commands, a
    /// ForceCommand, a session limit, a noexec home — in the order that decides fastest.
    pub async fn command(&self, failed: &Result<ExecOutput, SshError>, home: &str) -> Cause {
        if let Err(SshError::ChannelRefused(reason)) = failed {
            let said = self.config("maxsessions").await.quoted();
            return Cause::new(
                format!(
                    "the server refused another session on the same connection ({reason}); {said}: the driver keeps SFTP open while it runs the script, which needs at least two (MaxSessions)"
                ),
                "remove MaxSessions from /etc/ssh/sshd_config (the default is 10) or set it to 2 or more",
            );
        }
        if let Some(cause) = self.login_shell().await {
            return cause;
        }
        let mut ruled_out = vec![format!("{}'s login shell runs commands", self.user)];
        match self.echo().await {
            Echo::Replaced(output) => return self.force_command(&output).await,
            Echo::Failed(how) => ruled_out = vec![format!("even a probe command failed ({how})")],
            Echo::Ran => ruled_out.push("no ForceCommand replaces commands".into()),
        }
        let output = failed.as_ref().ok();
        let denied = output.is_some_and(|o| {
            o.exit_status == Some(126) || o.stderr_text().contains("Permission denied")
        });
        if let Some(mount) = self.mount_of(home).await {
            if mount.has_option("noexec") {
                return Cause::new(
                    format!(
                        "{home} is on a noexec mount ({} mounted with {}), so the uploaded script cannot be executed",
                        mount.point, mount.options
                    ),
                    format!(
                        "remove noexec from the options of {} in /etc/fstab (the driver runs the script from the home directory)",
                        mount.point
                    ),
                );
            }
            ruled_out.push(format!("{} is not mounted noexec", mount.point));
        }
        let said = match output {
            Some(output) if denied => format!("it was denied ({})", output.ending()),
            Some(output) => format!("it ended with {}", output.ending()),
            None => "it did not run".into(),
        };
        Cause::new(
            format!("{said}; ruled out: {}", ruled_out.join(", ")),
            format!(
                "log in to the image and run a script from {home} as {} to see why",
                self.user
            ),
        )
    }

    /// The upload into `home` failed: a full or read-only filesystem, or else what was
    /// ruled out.
    pub async fn write(&self, home: &str) -> Option<Cause> {
        let mount = self.mount_of(home).await?;
        if mount.has_option("ro") {
            return Some(Cause::new(
                format!(
                    "the filesystem holding {home} is read-only ({} mounted with {})",
                    mount.point, mount.options
                ),
                format!(
                    "mount {} read-write: check its options in /etc/fstab (rw, or errors=remount-ro after a filesystem error: fsck it)",
                    mount.point
                ),
            ));
        }
        match mount.free_kib {
            Some(0) => Some(Cause::new(
                format!(
                    "no space left on the filesystem holding {home} ({} has 0 KiB free)",
                    mount.point
                ),
                "free space in the image (apt-get clean, remove files) or grow it: qemu-img resize, then growpart and resize2fs in the guest",
            )),
            Some(free) => Some(Cause::new(
                format!(
                    "ruled out: {} is mounted read-write with {free} KiB free",
                    mount.point
                ),
                format!("check that {home} is writable by {}", self.user),
            )),
            None => None,
        }
    }

    /// The sftp subsystem did not open: a ForceCommand, a subsystem program that is not
    /// there, or none configured.
    pub async fn sftp(&self) -> Cause {
        let ran = match self.echo().await {
            Echo::Replaced(output) => return self.force_command(&output).await,
            Echo::Ran => true,
            Echo::Failed(_) => false,
        };
        let settings = self.config("subsystem").await;
        let lines = &settings.lines;
        let program = lines.iter().find_map(|line| {
            let mut words = line.split_whitespace().skip(1);
            (words.next() == Some("sftp")).then(|| words.next().map(str::to_string))?
        });
        match program {
            None if lines.is_empty() && ran => Cause::new(
                format!(
                    "no `Subsystem sftp` line is configured: {}",
                    settings.quoted()
                ),
                "add `Subsystem sftp internal-sftp` to /etc/ssh/sshd_config",
            ),
            Some(program) if program != "internal-sftp" && ran => {
                let test = format!("test -e '{program}'");
                match self.run(&test).await {
                    Ok(output) if output.exit_status == Some(1) => Cause::new(
                        format!(
                            "the sftp subsystem is {program}, which does not exist in the guest"
                        ),
                        "install openssh-sftp-server, or use `Subsystem sftp internal-sftp` in /etc/ssh/sshd_config",
                    ),
                    _ => Cause::new(
                        format!(
                            "the sftp subsystem {program} exists but did not start an SFTP server"
                        ),
                        "use `Subsystem sftp internal-sftp` in /etc/ssh/sshd_config",
                    ),
                }
            }
            _ => Cause::new(
                settings.quoted(),
                "add `Subsystem sftp internal-sftp` to /etc/ssh/sshd_config",
            ),
        }
    }

    /// The server refused to pass `variable`: what AcceptEnv really says.
    pub async fn refused_variable(&self, variable: &str) -> Cause {
        let settings = self.config("acceptenv").await;
        let patterns: Vec<&str> = settings
            .lines
            .iter()
            .flat_map(|line| line.split_whitespace().skip(1))
            .collect();
        let fix = "add `AcceptEnv *` to /etc/ssh/sshd_config";
        if patterns
            .iter()
            .any(|pattern| glob_matches(pattern, variable))
        {
            let why = format!(
                "the server refused the Setenv request for {variable} although AcceptEnv matches it ({}): a Match block or a second sshd_config may override it",
                settings.quoted()
            );
            return Cause::new(
                why,
                "check the Match blocks and Include files of sshd_config",
            );
        }
        Cause::new(
            format!(
                "the server refused the Setenv request for {variable}, so build variables are silently lost; {}",
                settings.quoted()
            ),
            fix,
        )
    }

    /// Logging in took `took`: whether sshd looked the client's name up first (`UseDNS
    /// yes`) — with PAM it does so before it answers the first authentication request, and a
    /// resolver that does not answer holds every login of every job for its whole timeout.
    /// Nothing when UseDNS is off: then the time was the guest's, not a setting's.
    pub async fn slow_login(&self, took: Duration) -> Option<Cause> {
        let settings = self.config("usedns").await;
        let on = settings.lines.iter().any(|line| {
            let mut words = line.split_whitespace().skip(1);
            words
                .next()
                .is_some_and(|value| value.eq_ignore_ascii_case("yes"))
        });
        if !on {
            return None;
        }
        let resolvers = match self.run("cat /etc/resolv.conf").await {
            Ok(output) if output.success() => nameservers(&output.stdout_text()),
            _ => Vec::new(),
        };
        let resolver = match resolvers.is_empty() {
            true => "the guest's resolver".to_string(),
            false => format!(
                "the guest's resolver ({} in /etc/resolv.conf)",
                resolvers.join(", ")
            ),
        };
        Some(Cause::new(
            format!(
                "authentication took {:.1} s: sshd looks up the client's name before it lets anyone in ({}), and {resolver} is slow to answer or does not answer; every job waits that long to log in",
                took.as_secs_f64(),
                settings.quoted()
            ),
            "set `UseDNS no` in /etc/ssh/sshd_config (OpenSSH's default): the driver connects from QEMU's 10.0.2.2, which has no name to look up",
        ))
    }

    /// The user's login shell, when it is why commands cannot run (from /etc/passwd, read
    /// over SFTP: a shell that runs nothing cannot be asked).
    async fn login_shell(&self) -> Option<Cause> {
        let sftp = self.sftp?;
        let passwd = sftp.read("/etc/passwd").await.ok()?;
        let passwd = String::from_utf8_lossy(&passwd);
        let shell = passwd.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.len() == 7 && fields[0] == self.user).then(|| fields[6].to_string())
        })?;
        let fix = format!(
            "give {} a shell: usermod -s /bin/bash {}",
            self.user, self.user
        );
        let name = shell.rsplit('/').next().unwrap_or_default();
        if shell.is_empty() || ["false", "nologin", "true"].contains(&name) {
            let why = format!(
                "{}'s login shell {shell} (in /etc/passwd) runs no commands, and sshd runs every command through it",
                self.user
            );
            return Some(Cause::new(why, fix));
        }
        if let Ok(false) = sftp.exists(&shell).await {
            let why = format!(
                "{}'s login shell {shell} (in /etc/passwd) does not exist in the guest",
                self.user
            );
            return Some(Cause::new(why, fix));
        }
        None
    }

    /// A ForceCommand ran in place of what was asked: quote it from sshd_config if it can
    /// be read (over SFTP: commands are replaced too).
    async fn force_command(&self, output: &str) -> Cause {
        let lines = self.config_file_lines("forcecommand").await;
        let found = match lines.is_empty() {
            true => "a ForceCommand in sshd_config".to_string(),
            false => format!("sshd_config: {}", lines.join("; ")),
        };
        Cause::new(
            format!(
                "the server runs something else than the command it is given — asked to echo a marker, it printed `{}`: {found} replaces every command, the SFTP subsystem too",
                output.trim()
            ),
            "remove ForceCommand from /etc/ssh/sshd_config (or put it in a Match block that leaves the CI user out)",
        )
    }

    /// Run `echo MARKER` and see what came back.
    async fn echo(&self) -> Echo {
        const MARKER: &str = "kiln-probe-7f3a";
        match self.run(&format!("echo {MARKER}")).await {
            Ok(output) if output.stdout_text().trim() == MARKER => Echo::Ran,
            Ok(output) if output.success() || !output.stdout.is_empty() => {
                let text = output.stdout_text();
                let shown = if text.trim().is_empty() {
                    "nothing"
                } else {
                    &text
                };
                Echo::Replaced(shown.chars().take(120).collect())
            }
            Ok(output) => {
                let stderr = output.stderr_text();
                Echo::Failed(match stderr.is_empty() {
                    true => output.ending(),
                    false => format!("{}: {}", output.ending(), stderr.trim()),
                })
            }
            Err(error) => Echo::Failed(error.to_string()),
        }
    }

    async fn run(&self, command: &str) -> Result<ExecOutput, SshError> {
        self.session.exec(command, None, &[], PROBE_TIMEOUT).await
    }

    /// The effective settings named `name` (`sshd -T`, lowercase), or, when commands do not
    /// run, the lines of sshd_config and its drop-ins that set it.
    async fn config(&self, name: &'static str) -> Settings {
        let effective = self.run("/usr/sbin/sshd -T 2>/dev/null || sshd -T").await;
        match effective {
            Ok(output) if output.success() => Settings {
                name,
                from: "sshd -T",
                lines: output
                    .stdout_text()
                    .lines()
                    .filter(|line| line.split_whitespace().next() == Some(name))
                    .map(str::to_string)
                    .collect(),
            },
            _ => Settings {
                name,
                from: "sshd_config",
                lines: self.config_file_lines(name).await,
            },
        }
    }

    /// The lines of /etc/ssh/sshd_config and /etc/ssh/sshd_config.d/*.conf that set `name`,
    /// read over SFTP.
    async fn config_file_lines(&self, name: &str) -> Vec<String> {
        let Some(sftp) = self.sftp else {
            return Vec::new();
        };
        let mut files = vec!["/etc/ssh/sshd_config".to_string()];
        if let Ok(names) = sftp.list("/etc/ssh/sshd_config.d").await {
            files.extend(
                names
                    .iter()
                    .filter(|n| n.ends_with(".conf"))
                    .map(|n| format!("/etc/ssh/sshd_config.d/{n}")),
            );
        }
        let mut lines = Vec::new();
        for file in files {
            let Ok(text) = sftp.read(&file).await else {
                continue;
            };
            lines.extend(String::from_utf8_lossy(&text).lines().filter_map(|line| {
                let line = line.trim();
                let first = line.split_whitespace().next()?;
                first.eq_ignore_ascii_case(name).then(|| line.to_string())
            }));
        }
        lines
    }

    /// The mount that holds `path`: from /proc/mounts (over SFTP or a command), with the
    /// free space when `df` can run.
    async fn mount_of(&self, path: &str) -> Option<Mount> {
        let mounts = match self.sftp {
            Some(sftp) => sftp.read("/proc/mounts").await.ok(),
            None => None,
        };
        let mounts = match mounts {
            Some(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            None => self.run("cat /proc/mounts").await.ok()?.stdout_text(),
        };
        let mut mount = holding(&mounts, path)?;
        let df = self.run(&format!("df -Pk '{path}'")).await;
        mount.free_kib = df.ok().and_then(|output| {
            let last = output.stdout_text().lines().last()?.to_string();
            last.split_whitespace().nth(3)?.parse().ok()
        });
        Some(mount)
    }
}

/// The `nameserver` addresses of a resolv.conf.
fn nameservers(resolv_conf: &str) -> Vec<String> {
    resolv_conf
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver")).then(|| words.next())?
        })
        .map(str::to_string)
        .collect()
}

/// `*` and `?` globbing, as the driver matches artifact patterns and sshd AcceptEnv's.
pub fn glob_matches(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}

/// A mount point and its options, as /proc/mounts lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mount {
    point: String,
    options: String,
    free_kib: Option<u64>,
}

impl Mount {
    fn has_option(&self, option: &str) -> bool {
        self.options.split(',').any(|o| o == option)
    }
}

/// The mount that holds `path`: the longest mount point it is under (the last one listed wins
/// a tie: it is mounted over the others).
fn holding(mounts: &str, path: &str) -> Option<Mount> {
    let under = |point: &str| {
        point == "/"
            || path == point
            || path.starts_with(&format!("{}/", point.trim_end_matches('/')))
    };
    mounts
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.len() >= 4 && under(fields[1])).then(|| Mount {
                point: fields[1].to_string(),
                options: fields[3].to_string(),
                free_kib: None,
            })
        })
        // max_by_key keeps the last of equals: the mount listed last is on top.
        .max_by_key(|mount| mount.point.len())
}

/// The lines that set one sshd setting, and where they were read.
struct Settings {
    name: &'static str,
    /// `sshd -T` (the effective settings) or `sshd_config` (the files, read over SFTP).
    from: &'static str,
    lines: Vec<String>,
}

impl Settings {
    /// "sshd -T says: LINE; LINE", or that the setting is not set there.
    fn quoted(&self) -> String {
        match self.lines.is_empty() {
            true => format!("`{}` is not set ({})", self.name, self.from),
            false => format!("{} says: {}", self.from, self.lines.join("; ")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mount_holding_a_path_is_the_deepest_one_last_mounted() {
        let mounts = "/dev/vda1 / ext4 rw,relatime 0 0\nproc /proc proc rw 0 0\n\
                      tmpfs /root tmpfs rw,nosuid 0 0\n/dev/vda1 /root ext4 rw,noexec 0 0\n";
        let root = holding(mounts, "/root").unwrap();
        assert_eq!(root.point, "/root");
        assert!(root.has_option("noexec") && !root.has_option("ro"));
        assert_eq!(holding(mounts, "/rootfs").unwrap().point, "/");
        assert_eq!(holding(mounts, "/home/ci").unwrap().options, "rw,relatime");
        let read_only = holding("/dev/vda1 / ext4 ro,relatime 0 0\n", "/root").unwrap();
        assert!(read_only.has_option("ro"));
    }

    #[test]
    fn nameservers_are_read_from_resolv_conf() {
        let conf = "# by hand\nsearch example.org\nnameserver 198.51.100.1\nnameserver  10.0.2.3 \nnameserverx 1.2.3.4\n";
        assert_eq!(nameservers(conf), ["198.51.100.1", "10.0.2.3"]);
        assert!(nameservers("").is_empty());
    }
}
