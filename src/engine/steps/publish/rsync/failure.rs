//! How a publish over rsync fails: the stage, and ssh's or rsync's own words turned into a
//! message that says what to do.

use std::fmt;
use std::time::Duration;

use super::{RsyncPlan, STALL_SECONDS};
use crate::engine::host::process::{self, ToolError};
use crate::engine::units::human_bytes;

/// The stage of a publish over rsync that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteStage {
    Check,
    Copy,
    Place,
}

impl fmt::Display for RemoteStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RemoteStage::Check => "checking the destination",
            RemoteStage::Copy => "copying to",
            RemoteStage::Place => "putting the copy in place at",
        })
    }
}

/// Why an image did not reach its rsync destination; each message names the stage and says
/// what to do.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error(
        "{stage} {dest}: the host key of {host} is not in {known_hosts}, and kiln never accepts a host key it does not know (not even where your ssh config says StrictHostKeyChecking accept-new or no). Compare its fingerprint (`{keyscan} | ssh-keygen -lf -`) with the one the host's owner gives you, then add it: `{keyscan} >> {known_hosts}` — or run `ssh {login}` once by hand and answer yes. ssh said: {said}"
    )]
    UnknownHostKey {
        stage: RemoteStage,
        dest: String,
        host: String,
        login: String,
        keyscan: String,
        known_hosts: String,
        said: String,
    },
    #[error(
        "{stage} {dest}: the host key of {host} is not the one in {known_hosts}: someone may be in between, or the host was reinstalled. Only if you know it was: remove the old key (`ssh-keygen -R {hostname} -f {known_hosts}`) and add the new one after checking its fingerprint. ssh said: {said}"
    )]
    HostKeyChanged {
        stage: RemoteStage,
        dest: String,
        host: String,
        hostname: String,
        known_hosts: String,
        said: String,
    },
    #[error(
        "{stage} {dest}: {login} refused the login ({said}); kiln runs ssh without asking for passwords or passphrases: load the key into your agent (ssh-add) or name it with IdentityFile for this host in ~/.ssh/config"
    )]
    AuthRefused {
        stage: RemoteStage,
        dest: String,
        login: String,
        said: String,
    },
    #[error("{stage} {dest}: cannot reach {host}: {said}")]
    Unreachable {
        stage: RemoteStage,
        dest: String,
        host: String,
        said: String,
    },
    #[error("{stage} {dest}: {host} did not answer within {} s", .after.as_secs())]
    TimedOut {
        stage: RemoteStage,
        dest: String,
        host: String,
        after: Duration,
    },
    #[error(
        "{stage} {dest}: the directory {dir} does not exist on {host}; create it first (ssh {login} mkdir -p {dir})"
    )]
    NoDirectory {
        stage: RemoteStage,
        dest: String,
        dir: String,
        host: String,
        login: String,
    },
    #[error("{stage} {dest}: {login} may not write in {dir}")]
    NotWritable {
        stage: RemoteStage,
        dest: String,
        dir: String,
        login: String,
    },
    #[error("{dest} already exists; pass --replace to replace it")]
    Exists { dest: String },
    #[error("{dest} is a directory; end the destination with / to publish into it")]
    IsDirectory { dest: String },
    #[error(
        "{stage} {dest}: rsync is not installed on {host}; install it there (apt-get install rsync)"
    )]
    NoRemoteRsync {
        stage: RemoteStage,
        dest: String,
        host: String,
    },
    #[error(
        "{stage} {dest}: {host} has {free} free in {dir} and the copy needs {need} more; make room there"
    )]
    NoRoom {
        stage: RemoteStage,
        dest: String,
        host: String,
        dir: String,
        free: String,
        need: String,
    },
    #[error(
        "{stage} {dest}: the disk on {host} is full ({said}); nothing is under the final name and the part copied is kept as {partial}: make room, then run the same command again to go on from it"
    )]
    DiskFull {
        stage: RemoteStage,
        dest: String,
        host: String,
        partial: String,
        said: String,
    },
    #[error(
        "{stage} {dest}: the connection to {host} dropped during the copy (rsync had last counted {done} of {total}: {said}); nothing is under the final name and the part copied is kept as {partial}: run the same command again to go on from it"
    )]
    Dropped {
        stage: RemoteStage,
        dest: String,
        host: String,
        done: String,
        total: String,
        partial: String,
        said: String,
    },
    #[error(
        "{stage} {dest}: {host} did not run kiln's command as a shell would ({said}); kiln needs an account there whose login shell runs commands (sh, test, ln, mv) and rsync, without a ForceCommand such as rrsync and without startup files that print"
    )]
    NotAShell {
        stage: RemoteStage,
        dest: String,
        host: String,
        said: String,
    },
    #[error("{stage} {dest}: {0}", .source)]
    Tool {
        stage: RemoteStage,
        dest: String,
        source: ToolError,
    },
}

impl RemoteError {
    /// Problems with the request or the hosts' setup (exit 2), not failures while running.
    pub fn is_usage(&self) -> bool {
        !matches!(
            self,
            RemoteError::Unreachable { .. }
                | RemoteError::TimedOut { .. }
                | RemoteError::DiskFull { .. }
                | RemoteError::Dropped { .. }
                | RemoteError::Tool {
                    source: ToolError::Failed { .. } | ToolError::TimedOut { .. },
                    ..
                }
        )
    }
}

/// The lines of ssh's or rsync's stderr worth quoting, joined.
fn said(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("@@@") && !l.starts_with("Pseudo-terminal"))
        .collect();
    let start = lines.len().saturating_sub(3);
    let text = lines[start..].join("; ");
    if text.is_empty() {
        "no message".into()
    } else {
        text
    }
}

/// What ssh's own message says went wrong, if it is one of the failures kiln explains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SshProblem {
    UnknownHostKey,
    HostKeyChanged,
    AuthRefused,
    Unreachable,
}

fn ssh_problem(stderr: &str) -> Option<SshProblem> {
    let has = |text: &str| stderr.contains(text);
    if has("REMOTE HOST IDENTIFICATION HAS CHANGED") || has("Host key for") && has("has changed") {
        Some(SshProblem::HostKeyChanged)
    } else if has("host key is known for") || has("Host key verification failed") {
        Some(SshProblem::UnknownHostKey)
    } else if has("Permission denied (") || has("Too many authentication failures") {
        Some(SshProblem::AuthRefused)
    } else if [
        "Could not resolve hostname",
        "Connection refused",
        "Connection timed out",
        "No route to host",
        "Network is unreachable",
        "kex_exchange_identification",
    ]
    .iter()
    .any(|text| has(text))
    {
        Some(SshProblem::Unreachable)
    } else {
        None
    }
}

/// Whether rsync's stderr says the connection went away under it.
fn connection_lost(stderr: &str) -> bool {
    [
        "connection unexpectedly closed",
        "closed by remote host",
        "Connection closed by",
        "Connection reset",
        "Broken pipe",
        "error in rsync protocol data stream",
    ]
    .iter()
    .any(|text| stderr.contains(text))
}

/// The ssh settings that name the host in messages (`ssh -G`: the user's config applied, no
/// connection made).
struct HostSettings {
    hostname: String,
    port: String,
    known_hosts: String,
}

async fn host_settings(login: &str, host: &str) -> HostSettings {
    let mut settings = HostSettings {
        hostname: host.to_string(),
        port: "22".into(),
        known_hosts: "~/.ssh/known_hosts".into(),
    };
    let Ok(text) = process::run_tool("ssh", ["-G", login], Duration::from_secs(10)).await else {
        return settings;
    };
    for line in text.lines() {
        match line.split_once(' ') {
            Some(("hostname", value)) => settings.hostname = value.trim().to_string(),
            Some(("port", value)) => settings.port = value.trim().to_string(),
            Some(("userknownhostsfile", value)) => {
                if let Some(first) = value.split_whitespace().next() {
                    settings.known_hosts = first.to_string();
                }
            }
            _ => {}
        }
    }
    settings
}

/// Turns a tool's failure into the error of the stage it happened in.
pub(super) struct Failure<'a> {
    pub(super) plan: &'a RsyncPlan,
    pub(super) stage: RemoteStage,
}

impl Failure<'_> {
    pub(super) fn tool(&self, source: ToolError) -> RemoteError {
        RemoteError::Tool {
            stage: self.stage,
            dest: self.plan.dest(),
            source,
        }
    }

    pub(super) fn not_a_shell(&self, said: &str) -> RemoteError {
        RemoteError::NotAShell {
            stage: self.stage,
            dest: self.plan.dest(),
            host: self.plan.remote.host().to_string(),
            said: said.to_string(),
        }
    }

    /// An ssh failure kiln explains, if it is one.
    async fn explained(&self, stderr: &str) -> Option<RemoteError> {
        let (stage, dest) = (self.stage, self.plan.dest());
        let remote = &self.plan.remote;
        let host = remote.host().to_string();
        let said = said(stderr);
        Some(match ssh_problem(stderr)? {
            SshProblem::UnknownHostKey => {
                let settings = host_settings(&remote.login(), &host).await;
                let port = match settings.port.as_str() {
                    "22" => String::new(),
                    port => format!("-p {port} "),
                };
                RemoteError::UnknownHostKey {
                    stage,
                    dest,
                    host,
                    login: remote.login(),
                    keyscan: format!("ssh-keyscan {port}{}", settings.hostname),
                    known_hosts: settings.known_hosts,
                    said,
                }
            }
            SshProblem::HostKeyChanged => {
                let settings = host_settings(&remote.login(), &host).await;
                let hostname = match settings.port.as_str() {
                    "22" => settings.hostname,
                    port => format!("'[{}]:{port}'", settings.hostname),
                };
                RemoteError::HostKeyChanged {
                    stage,
                    dest,
                    host,
                    hostname,
                    known_hosts: settings.known_hosts,
                    said,
                }
            }
            SshProblem::AuthRefused => RemoteError::AuthRefused {
                stage,
                dest,
                login: remote.login(),
                said,
            },
            SshProblem::Unreachable => RemoteError::Unreachable {
                stage,
                dest,
                host,
                said,
            },
        })
    }

    /// `ssh HOST sh -s` ended with `code`.
    pub(super) async fn of_ssh(&self, code: Option<i32>, stderr: &str) -> RemoteError {
        if let Some(error) = self.explained(stderr).await {
            return error;
        }
        if code == Some(255) && connection_lost(stderr) {
            return RemoteError::Unreachable {
                stage: self.stage,
                dest: self.plan.dest(),
                host: self.plan.remote.host().to_string(),
                said: said(stderr),
            };
        }
        self.tool(ToolError::Failed {
            program: "ssh".into(),
            status: code.map_or_else(|| "killed".into(), |c| format!("exit status {c}")),
            stderr: said(stderr),
        })
    }

    /// `rsync` ended with `code` after `done` of `total` bytes.
    pub(super) async fn of_rsync(
        &self,
        code: Option<i32>,
        stderr: &str,
        done: u64,
        total: u64,
    ) -> RemoteError {
        let (stage, dest) = (self.stage, self.plan.dest());
        let host = self.plan.remote.host().to_string();
        let partial = self.plan.shown(&self.plan.partial_path());
        if stderr.contains("No space left on device") || stderr.contains("Disk quota exceeded") {
            return RemoteError::DiskFull {
                stage,
                dest,
                host,
                partial,
                said: said(stderr),
            };
        }
        if let Some(error) = self.explained(stderr).await {
            return error;
        }
        if stderr.contains("is your shell clean") {
            return self.not_a_shell(&said(stderr));
        }
        if code == Some(127) || stderr.contains("rsync: command not found") {
            return RemoteError::NoRemoteRsync { stage, dest, host };
        }
        let stalled = code == Some(30);
        if stalled || matches!(code, Some(12 | 255) | None) || connection_lost(stderr) {
            let said = if stalled {
                format!("nothing moved for {STALL_SECONDS} s")
            } else {
                said(stderr)
            };
            return RemoteError::Dropped {
                stage,
                dest,
                host,
                done: human_bytes(done),
                total: human_bytes(total),
                partial,
                said,
            };
        }
        self.tool(ToolError::Failed {
            program: "rsync".into(),
            status: code.map_or_else(|| "killed".into(), |c| format!("exit status {c}")),
            stderr: said(stderr),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::steps::publish::rsync::rsync_plan;

    fn plan(dest: &str, replace: bool) -> RsyncPlan {
        rsync_plan(&dest.parse().unwrap(), "debian-12", replace)
    }

    #[test]
    fn ssh_messages_are_told_apart() {
        let unknown = "No ED25519 host key is known for [127.0.0.1]:2991 and you have requested strict checking.\nHost key verification failed.\n";
        assert_eq!(ssh_problem(unknown), Some(SshProblem::UnknownHostKey));
        let changed = "@@@@@@@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\nHost key verification failed.\n";
        assert_eq!(ssh_problem(changed), Some(SshProblem::HostKeyChanged));
        assert_eq!(
            ssh_problem("root@127.0.0.1: Permission denied (publickey)."),
            Some(SshProblem::AuthRefused)
        );
        assert_eq!(
            ssh_problem("ssh: connect to host 127.0.0.1 port 22: Connection refused\r\n"),
            Some(SshProblem::Unreachable)
        );
        assert_eq!(
            ssh_problem("rsync: [sender] write error: Broken pipe (32)"),
            None
        );
        assert!(connection_lost(
            "Connection to 127.0.0.1 closed by remote host."
        ));
        assert_eq!(
            said(changed),
            "@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @; Host key verification failed."
        );
        assert_eq!(said("\n\n"), "no message");
    }

    #[tokio::test]
    async fn rsync_failures_name_the_stage_and_what_is_kept() {
        let plan = plan("ci@h:/srv/", false);
        let copy = plan.failure(RemoteStage::Copy);
        let full = copy
            .of_rsync(
                Some(11),
                "rsync: [receiver] write failed on \"/srv/.x\": No space left on device (28)\n",
                5,
                10,
            )
            .await
            .to_string();
        assert!(
            full.starts_with("copying to ci@h:/srv/debian-12.qcow2: the disk on h is full"),
            "{full}"
        );
        assert!(
            full.contains("ci@h:/srv/.debian-12.qcow2.kiln-partial"),
            "{full}"
        );
        let dropped = copy
            .of_rsync(
                Some(255),
                "Connection to 127.0.0.1 closed by remote host.\nrsync: [sender] write error: Broken pipe (32)\nrsync error: unexplained error (code 255) at io.c(949) [sender=3.2.7]\n",
                3 << 20,
                10 << 20,
            )
            .await;
        assert!(matches!(dropped, RemoteError::Dropped { .. }), "{dropped}");
        assert!(!dropped.is_usage());
        let text = dropped.to_string();
        assert!(
            text.contains(
                "dropped during the copy (rsync had last counted 3 MiB of 10 MiB: Connection to"
            ) && text.contains("run the same command again"),
            "{text}"
        );
        let stalled = copy
            .of_rsync(
                Some(30),
                "rsync error: timeout in data send/receive (code 30)",
                0,
                1,
            )
            .await;
        assert!(
            stalled.to_string().contains("nothing moved for 120 s"),
            "{stalled}"
        );
        let missing = copy
            .of_rsync(
                Some(127),
                "sh: 1: rsync: not found\nrsync error: remote command not found (code 127)",
                0,
                1,
            )
            .await;
        assert!(
            matches!(missing, RemoteError::NoRemoteRsync { .. }),
            "{missing}"
        );
        let refused = copy
            .of_rsync(Some(255), "ci@h: Permission denied (publickey).\n", 0, 1)
            .await;
        assert!(
            refused
                .to_string()
                .contains("ci@h refused the login (ci@h: Permission denied (publickey).)"),
            "{refused}"
        );
        assert!(refused.is_usage());
    }
}
