//! The rsync target: the image copied to a host over SSH by the system's own `rsync` and
//! `ssh`, as image-factory's upload destinations and many teams' image hosts receive images.
//!
//! Three stages, each named in its errors. **Check**: one `ssh HOST sh -s` that says whether
//! rsync is there, the directory exists and is writable, the name is taken, how much of an
//! earlier copy is there and how much room is left. **Copy**: `rsync --inplace` into
//! `.NAME.kiln-partial` beside the final name, progress read from `--info=progress2`; a copy
//! cut off leaves its bytes there and the next one goes on from them (rsync's delta transfer
//! sends only what is missing, and its whole-file checksum still covers every byte).
//! **Place**: one more `ssh HOST sh -s` that moves the copy to its name — `ln`, which refuses
//! a name that appeared meanwhile, unless replacing — and writes `NAME.sha256` beside it.
//!
//! The user's own OpenSSH does the connecting: `~/.ssh/config`, the agent and known_hosts
//! all apply. kiln adds two options only. `BatchMode=yes`: nothing ever waits for a password
//! or a passphrase. `StrictHostKeyChecking=yes`, on the command line so that it wins over a
//! config's `accept-new` or `no`: a host key that is not already known is an error saying how
//! to add it, since an unattended publish that trusted the first key it saw would hand the
//! image to whoever answered — and on a CI runner, whose known_hosts is new every time, that
//! would be every time.

mod failure;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::compact::{checksum_line, compact, sha256};
use super::remote_path::RemotePath;
use super::{Checksum, Destination, Meter, Outcome, PublishError, PublishRequest, io_error};
use crate::engine::host::process::{self, ToolError};
use crate::engine::host::temp_file::{TempFile, parent_dir};
use crate::engine::task::{Cancelled, Reporter};
use crate::engine::units::human_bytes;
use failure::Failure;

pub use failure::{RemoteError, RemoteStage};

/// What kiln adds to the user's ssh configuration (the module's header says why).
const SSH_OPTIONS: [&str; 4] = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"];
/// How long the check may take, connecting included.
const CHECK_TIMEOUT: Duration = Duration::from_secs(90);
/// rsync's own `--timeout`: a copy that moves nothing for this long has stalled.
const STALL_SECONDS: u64 = 120;
/// How long the copy has to end after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// What a file's temporary name ends with while it is copied.
const PARTIAL: &str = ".kiln-partial";
/// The most of a tool's stderr kept for its error message.
const MAX_STDERR: usize = 64 << 10;

// ---------------------------------------------------------------------------------------------
// The plan

/// A checked rsync destination: the host, the directory and the file's name there.
#[derive(Debug)]
pub(super) struct RsyncPlan {
    remote: RemotePath,
    /// The directory on the host (`.` is the login's home directory).
    dir: String,
    file: String,
    replace: bool,
}

/// `dest` with the image named `name` (the file name when `dest` is a directory).
pub(super) fn rsync_plan(remote: &RemotePath, name: &str, replace: bool) -> RsyncPlan {
    let path = remote.path();
    let (dir, file) = match path.rsplit_once('/') {
        Some(("", file)) => ("/", file),
        Some((dir, file)) => (dir, file),
        None => (".", path),
    };
    let file = if file.is_empty() {
        format!("{name}.qcow2")
    } else {
        file.to_string()
    };
    RsyncPlan {
        remote: remote.clone(),
        dir: dir.to_string(),
        file,
        replace,
    }
}

impl RsyncPlan {
    fn in_dir(&self, file: &str) -> String {
        match self.dir.as_str() {
            "." => file.to_string(),
            "/" => format!("/{file}"),
            dir => format!("{dir}/{file}"),
        }
    }

    fn final_path(&self) -> String {
        self.in_dir(&self.file)
    }

    /// Where the copy is written, and kept when it is cut off.
    fn partial_path(&self) -> String {
        self.in_dir(&format!(".{}{PARTIAL}", self.file))
    }

    fn checksum_path(&self) -> String {
        self.in_dir(&format!("{}.sha256", self.file))
    }

    /// `host:path` of a file of this plan, for messages.
    fn shown(&self, path: &str) -> String {
        self.remote.with_path(path).to_string()
    }

    /// `host:/dir/file`: what the image is published as.
    pub(super) fn dest(&self) -> String {
        self.shown(&self.final_path())
    }
}

// ---------------------------------------------------------------------------------------------
// The step

/// Compact (if asked) and checksum locally, then check, copy and place on the host.
pub(super) async fn publish_rsync(
    request: &PublishRequest,
    plan: RsyncPlan,
    reporter: &Reporter,
) -> Result<Outcome, PublishError> {
    // Missing here is found before minutes of compaction and checksums, not after.
    for program in ["ssh", "rsync"] {
        if process::find_on_path(program).is_none() {
            let missing = std::io::Error::from(std::io::ErrorKind::NotFound);
            let error = ToolError::not_started(program, missing);
            return Err(plan.failure(RemoteStage::Check).tool(error).into());
        }
    }
    let source_dir = parent_dir(&request.image);
    let mut compacted = None;
    let compaction = match request.compact {
        Some(options) => {
            let temp = TempFile::create(&source_dir, &plan.file, "compact")
                .map_err(io_error("cannot create a file in", &source_dir))?;
            let sizes = compact(&request.image, temp.path(), options, reporter).await?;
            compacted = Some(temp);
            Some(sizes)
        }
        None => None,
    };
    let source = compacted
        .as_ref()
        .map_or(request.image.as_path(), TempFile::path);
    // Absolute, so rsync never takes a `name:` in it for a host.
    let source = std::path::absolute(source).map_err(io_error("cannot read", source))?;
    let total = std::fs::metadata(&source)
        .map_err(io_error("cannot read", &source))?
        .len();

    reporter.info(format!("checking {} over ssh", plan.dest()));
    let found = plan.check(reporter).await?;
    if let Some(problem) = plan.judge(&found, total) {
        return Err(problem.into());
    }
    if let Some(partial) = found.partial.filter(|&bytes| bytes > 0) {
        reporter.info(format!(
            "going on from an earlier copy: {} of it is already there as {}",
            human_bytes(partial),
            plan.shown(&plan.partial_path())
        ));
    }
    let checksum = if request.sha256 {
        Some(sha256(&source, reporter).await?)
    } else {
        None
    };
    let transfer = Instant::now();
    plan.copy(&source, total, reporter).await?;
    let transfer_seconds = transfer.elapsed().as_secs_f64();
    if reporter.is_cancelled() {
        return Err(Cancelled(format!(
            "the copy is complete as {} but was not put in place; the next publish finds it",
            plan.shown(&plan.partial_path())
        ))
        .into());
    }
    plan.place(checksum.as_deref(), total, reporter).await?;
    drop(compacted);
    Ok(Outcome {
        destination: Destination::Rsync {
            dest: plan.dest(),
            host: plan.remote.host().to_string(),
            path: plan.final_path(),
        },
        bytes: total,
        transfer_seconds,
        compaction,
        checksum: checksum.map(|sha256| Checksum {
            sha256,
            file: plan.shown(&plan.checksum_path()).into(),
        }),
    })
}

/// What the check found on the host.
#[derive(Debug, Default, PartialEq)]
struct Found {
    /// The check ran to its end (its last line).
    complete: bool,
    rsync: bool,
    dir: bool,
    writable: bool,
    exists: bool,
    final_is_dir: bool,
    /// The size of an earlier copy under the temporary name.
    partial: Option<u64>,
    /// Free bytes in the directory (`df -Pk`).
    free: Option<u64>,
}

impl Found {
    /// The `kiln:` lines of the check's output; anything else (a banner) is ignored.
    fn parse(stdout: &str) -> Found {
        let mut found = Found::default();
        for line in stdout.lines() {
            let Some(fact) = line.trim().strip_prefix("kiln:") else {
                continue;
            };
            let (key, value) = fact.split_once(' ').unwrap_or((fact, ""));
            let number = value.trim().parse::<u64>().ok();
            match key {
                "rsync" => found.rsync = true,
                "dir" => found.dir = true,
                "writable" => found.writable = true,
                "exists" => found.exists = true,
                "final-is-dir" => found.final_is_dir = true,
                "partial" => found.partial = number,
                "free-kib" => found.free = number.map(|kib| kib.saturating_mul(1024)),
                "end" => found.complete = true,
                _ => {}
            }
        }
        found
    }
}

impl RsyncPlan {
    fn failure(&self, stage: RemoteStage) -> Failure<'_> {
        Failure { plan: self, stage }
    }

    /// One `sh` script on the host saying what is there.
    async fn check(&self, reporter: &Reporter) -> Result<Found, PublishError> {
        let script = format!(
            "d={dir}; f={file}; t={partial}\n\
             command -v rsync >/dev/null 2>&1 && echo kiln:rsync\n\
             if [ -d \"$d\" ]; then\n\
             \x20 echo kiln:dir\n\
             \x20 [ -w \"$d\" ] && echo kiln:writable\n\
             \x20 if [ -d \"$f\" ]; then echo kiln:final-is-dir\n\
             \x20 elif [ -e \"$f\" ] || [ -L \"$f\" ]; then echo kiln:exists; fi\n\
             \x20 [ -f \"$t\" ] && echo \"kiln:partial $(wc -c < \"$t\")\"\n\
             \x20 df -Pk \"$d\" 2>/dev/null | awk 'NR == 2 {{ print \"kiln:free-kib \" $4 }}'\n\
             fi\n\
             echo kiln:end\n",
            dir = shell_quote(&self.dir),
            file = shell_quote(&self.final_path()),
            partial = shell_quote(&self.partial_path()),
        );
        let output = self
            .script(RemoteStage::Check, &script, CHECK_TIMEOUT, reporter)
            .await?;
        let found = Found::parse(&output);
        if !found.complete {
            return Err(self
                .failure(RemoteStage::Check)
                .not_a_shell("its answer did not end as the command does")
                .into());
        }
        Ok(found)
    }

    /// What the check found that makes the host unfit, refused before a byte is copied.
    fn judge(&self, found: &Found, total: u64) -> Option<RemoteError> {
        let stage = RemoteStage::Check;
        let dest = self.dest();
        let host = self.remote.host().to_string();
        if !found.dir {
            return Some(RemoteError::NoDirectory {
                stage,
                dest,
                dir: self.dir.clone(),
                host,
                login: self.remote.login(),
            });
        }
        if !found.rsync {
            return Some(RemoteError::NoRemoteRsync { stage, dest, host });
        }
        if !found.writable {
            return Some(RemoteError::NotWritable {
                stage,
                dest,
                dir: self.dir.clone(),
                login: self.remote.login(),
            });
        }
        if found.final_is_dir {
            return Some(RemoteError::IsDirectory { dest });
        }
        if found.exists && !self.replace {
            return Some(RemoteError::Exists { dest });
        }
        let need = total.saturating_sub(found.partial.unwrap_or(0));
        if let Some(free) = found.free
            && free < need
        {
            return Some(RemoteError::NoRoom {
                stage,
                dest,
                host,
                dir: self.dir.clone(),
                free: human_bytes(free),
                need: human_bytes(need),
            });
        }
        None
    }

    /// `rsync` the file into the temporary name, with progress.
    async fn copy(
        &self,
        source: &Path,
        total: u64,
        reporter: &Reporter,
    ) -> Result<(), PublishError> {
        reporter.info(format!(
            "copying {} ({}) to {} with rsync",
            source.display(),
            human_bytes(total),
            self.dest()
        ));
        let mut child = process::command("rsync")
            .args(rsync_args(
                source,
                &self.remote.rsync_arg(&self.partial_path()),
            ))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                self.failure(RemoteStage::Copy)
                    .tool(ToolError::not_started("rsync", e))
            })?;
        let group = child.id();
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let mut meter = Meter::new(Some(total));
        meter.update(reporter, 0);
        let mut done = 0u64;
        let mut stats = Stats::default();
        let read_progress = async {
            let mut pending = String::new();
            let mut buffer = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buffer).await {
                if n == 0 {
                    break;
                }
                pending.push_str(&String::from_utf8_lossy(&buffer[..n]));
                while let Some(at) = pending.find(['\r', '\n']) {
                    let line = &pending[..at];
                    // rsync repeats its last line; the end is reported once.
                    if let Some(bytes) = progress_bytes(line).map(|b| b.min(total))
                        && bytes != done
                    {
                        done = bytes;
                        meter.update(reporter, done);
                    }
                    stats.read(line);
                    pending.drain(..=at);
                }
            }
        };
        let (said, status, stopped) = {
            let finished = async {
                let (_, said, status) =
                    tokio::join!(read_progress, read_stderr(stderr), child.wait());
                (said, status)
            };
            tokio::pin!(finished);
            // Stopped on request: SIGTERM first so rsync ends cleanly, SIGKILL after a grace.
            let mut stopping: Option<Instant> = None;
            let (said, status) = loop {
                let grace_over = async {
                    match stopping {
                        Some(since) => tokio::time::sleep_until((since + STOP_GRACE).into()).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    result = &mut finished => break result,
                    _ = reporter.cancelled(), if stopping.is_none() => {
                        signal_group(group, libc::SIGTERM);
                        stopping = Some(Instant::now());
                    }
                    _ = grace_over => signal_group(group, libc::SIGKILL),
                }
            };
            (said, status, stopping.is_some())
        };
        if stopped {
            return Err(Cancelled(format!(
                "the copy stopped; nothing is under the final name and the part copied is kept as {}: the next publish goes on from it",
                self.shown(&self.partial_path())
            ))
            .into());
        }
        let status = status.map_err(|source| {
            self.failure(RemoteStage::Copy).tool(ToolError::Spawn {
                program: "rsync".into(),
                source,
            })
        })?;
        if status.success() {
            if done != total {
                meter.update(reporter, total);
            }
            if stats.matched > 0 {
                reporter.info(format!(
                    "sent {} of {}; the other {} were already there",
                    human_bytes(stats.literal),
                    human_bytes(total),
                    human_bytes(stats.matched)
                ));
            }
            return Ok(());
        }
        Err(self
            .failure(RemoteStage::Copy)
            .of_rsync(status.code(), &said, done, total)
            .await
            .into())
    }

    /// Move the copy to its name (refusing one that appeared meanwhile, unless replacing) and
    /// write the checksum file beside it.
    async fn place(
        &self,
        checksum: Option<&str>,
        total: u64,
        reporter: &Reporter,
    ) -> Result<(), PublishError> {
        let mut script = format!(
            "t={partial}; f={file}\n\
             sync \"$t\" 2>/dev/null\n",
            partial = shell_quote(&self.partial_path()),
            file = shell_quote(&self.final_path()),
        );
        if self.replace {
            script.push_str("mv -f -- \"$t\" \"$f\" || exit 1\n");
        } else {
            // A hard link never replaces; a filesystem without them gets a plain rename of
            // what was not there a moment ago.
            script.push_str(
                "if ln -- \"$t\" \"$f\" 2>/dev/null; then rm -f -- \"$t\"\n\
                 elif [ -e \"$f\" ] || [ -L \"$f\" ]; then echo kiln:exists; exit 0\n\
                 else mv -- \"$t\" \"$f\" || exit 1; fi\n",
            );
        }
        if let Some(hex) = checksum {
            let file = self.checksum_path();
            script.push_str(&format!(
                "c={file}; ct={temp}\n\
                 printf '%s' {line} > \"$ct\" && mv -f -- \"$ct\" \"$c\" || exit 1\n",
                file = shell_quote(&file),
                temp = shell_quote(&self.in_dir(&format!(".{}.sha256{PARTIAL}", self.file))),
                line = shell_quote(&checksum_line(hex, &self.file)),
            ));
        }
        script.push_str("echo kiln:end\n");
        reporter.info(format!("moving the copy to {}", self.dest()));
        // Writing back what the host still holds in memory can take a while.
        let timeout = CHECK_TIMEOUT + Duration::from_secs(total / 20_000_000);
        let output = self
            .script(RemoteStage::Place, &script, timeout, reporter)
            .await?;
        if output.lines().any(|line| line.trim() == "kiln:exists") {
            return Err(RemoteError::Exists { dest: self.dest() }.into());
        }
        if !output.lines().any(|line| line.trim() == "kiln:end") {
            return Err(self
                .failure(RemoteStage::Place)
                .not_a_shell("its answer did not end as the command does")
                .into());
        }
        Ok(())
    }

    /// Run `script` with `sh -s` on the host (the login shell only starts `sh`, so what it is
    /// does not matter); its stdout. Only the check can be stopped on request.
    async fn script(
        &self,
        stage: RemoteStage,
        script: &str,
        timeout: Duration,
        reporter: &Reporter,
    ) -> Result<String, PublishError> {
        let failure = self.failure(stage);
        let mut child = process::command("ssh")
            .args(SSH_OPTIONS)
            .arg(self.remote.login())
            .args(["sh", "-s"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| failure.tool(ToolError::not_started("ssh", e)))?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let script = script.to_string();
        let run = async {
            let feed = async move {
                // A host that ends the session early closes the pipe: its stderr says why.
                let _ = stdin.write_all(script.as_bytes()).await;
            };
            let read = async {
                let mut text = Vec::new();
                let _ = (&mut stdout).take(1 << 20).read_to_end(&mut text).await;
                String::from_utf8_lossy(&text).into_owned()
            };
            let (_, out, said, status) =
                tokio::join!(feed, read, read_stderr(stderr), child.wait());
            (out, said, status)
        };
        let (out, said, status) = tokio::select! {
            result = tokio::time::timeout(timeout, run) => match result {
                Ok(result) => result,
                Err(_) => return Err(RemoteError::TimedOut {
                    stage,
                    dest: self.dest(),
                    host: self.remote.host().to_string(),
                    after: timeout,
                }
                .into()),
            },
            // Putting the copy in place takes a moment and is not left half done.
            _ = reporter.cancelled(), if stage == RemoteStage::Check => {
                return Err(Cancelled("stopped while checking the destination; nothing was published".into()).into());
            }
        };
        let status = status.map_err(|source| {
            failure.tool(ToolError::Spawn {
                program: "ssh".into(),
                source,
            })
        })?;
        if status.success() {
            Ok(out)
        } else {
            Err(failure.of_ssh(status.code(), &said).await.into())
        }
    }
}

/// rsync's command line: into `target` in place (so a copy cut off keeps its bytes under the
/// temporary name and the next one goes on from them), every time (`--ignore-times`: a
/// leftover of the same size and time is still compared), mode 0644 like the local targets,
/// plain numbers, progress and the totals on stdout, stalls ended by rsync itself.
fn rsync_args(source: &Path, target: &str) -> Vec<std::ffi::OsString> {
    let rsh = format!("ssh {}", SSH_OPTIONS.join(" "));
    let mut args: Vec<std::ffi::OsString> = [
        "--inplace",
        "--partial",
        "--ignore-times",
        "--perms",
        "--chmod=F644",
        "--no-human-readable",
        "--info=progress2",
        "--stats",
        &format!("--timeout={STALL_SECONDS}"),
        "-e",
        &rsh,
    ]
    .iter()
    .map(Into::into)
    .collect();
    args.push(source.as_os_str().to_owned());
    args.push(target.into());
    args
}

/// The byte count at the start of a `--info=progress2` line (`  1048576  12%  …`).
fn progress_bytes(line: &str) -> Option<u64> {
    let mut words = line.split_whitespace();
    let bytes = words.next()?.parse().ok()?;
    words.next()?.ends_with('%').then_some(bytes)
}

/// The totals of `--stats`: what was sent, and what the host already had.
#[derive(Debug, Default, PartialEq)]
struct Stats {
    literal: u64,
    matched: u64,
}

impl Stats {
    fn read(&mut self, line: &str) {
        let number = |rest: &str| {
            rest.split_whitespace()
                .next()
                .and_then(|n| n.replace(',', "").parse().ok())
        };
        if let Some(rest) = line.trim().strip_prefix("Literal data:") {
            self.literal = number(rest).unwrap_or(self.literal);
        } else if let Some(rest) = line.trim().strip_prefix("Matched data:") {
            self.matched = number(rest).unwrap_or(self.matched);
        }
    }
}

/// Read all of stderr (a tool blocked on a full pipe never exits), keep its start.
async fn read_stderr(mut stderr: tokio::process::ChildStderr) -> String {
    let mut text = Vec::new();
    let mut buffer = [0u8; 4096];
    while let Ok(n) = stderr.read(&mut buffer).await {
        if n == 0 {
            break;
        }
        let keep = n.min(MAX_STDERR - text.len().min(MAX_STDERR));
        text.extend_from_slice(&buffer[..keep]);
    }
    String::from_utf8_lossy(&text).into_owned()
}

/// Send `signal` to a child's process group (`process::command` starts each child in its own
/// group, whose id is the child's pid): rsync and the ssh it started.
fn signal_group(group: Option<u32>, signal: i32) {
    if let Some(pid) = group.and_then(|pid| i32::try_from(pid).ok()) {
        // SAFETY: kill(2) with a negative pid signals that group only; no memory is touched.
        unsafe {
            libc::kill(-pid, signal);
        }
    }
}

/// `'text'` for `sh`, a `'` inside written as `'\''`.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(dest: &str, replace: bool) -> RsyncPlan {
        rsync_plan(&dest.parse().unwrap(), "debian-12", replace)
    }

    #[test]
    fn a_directory_takes_the_images_name_and_a_file_keeps_its_own() {
        let dir = plan("ci@h:/srv/images/", false);
        assert_eq!(dir.final_path(), "/srv/images/debian-12.qcow2");
        assert_eq!(
            dir.partial_path(),
            "/srv/images/.debian-12.qcow2.kiln-partial"
        );
        assert_eq!(dir.checksum_path(), "/srv/images/debian-12.qcow2.sha256");
        assert_eq!(dir.dest(), "ci@h:/srv/images/debian-12.qcow2");

        let file = plan("h:/srv/base.img", false);
        assert_eq!(file.final_path(), "/srv/base.img");
        assert_eq!(file.partial_path(), "/srv/.base.img.kiln-partial");
        assert_eq!(
            plan("h:/x.qcow2", false).partial_path(),
            "/.x.qcow2.kiln-partial"
        );
        assert_eq!(plan("h:/", false).final_path(), "/debian-12.qcow2");
        let home = plan("h:x.qcow2", false);
        assert_eq!(
            (home.final_path(), home.partial_path()),
            ("x.qcow2".into(), ".x.qcow2.kiln-partial".into())
        );
        assert_eq!(
            plan("h:images/", false).final_path(),
            "images/debian-12.qcow2"
        );
    }

    #[test]
    fn the_check_is_read_from_its_own_lines() {
        let found = Found::parse(
            "Welcome!\nkiln:rsync\nkiln:dir\nkiln:writable\nkiln:exists\nkiln:partial    1048576\nkiln:free-kib 2048\nkiln:end\n",
        );
        assert_eq!(
            found,
            Found {
                complete: true,
                rsync: true,
                dir: true,
                writable: true,
                exists: true,
                final_is_dir: false,
                partial: Some(1 << 20),
                free: Some(2 << 20),
            }
        );
        assert!(!Found::parse("kiln:rsync\n").complete);

        let taken = plan("h:/srv/", false);
        let error = taken.judge(&found, 10).unwrap();
        assert!(matches!(error, RemoteError::Exists { .. }), "{error}");
        assert!(error.to_string().contains("--replace"), "{error}");
        assert!(plan("h:/srv/", true).judge(&found, 3 << 20).is_none());
        // 2 MiB free, 1 MiB already there: 3 MiB fits, 4 MiB does not.
        let error = plan("h:/srv/", true).judge(&found, 4 << 20).unwrap();
        assert!(
            error
                .to_string()
                .contains("has 2 MiB free in /srv and the copy needs 3 MiB more"),
            "{error}"
        );
        let missing = Found {
            rsync: true,
            complete: true,
            ..Found::default()
        };
        let error = taken.judge(&missing, 1).unwrap().to_string();
        assert!(error.contains("mkdir -p /srv"), "{error}");
        assert!(
            error.starts_with("checking the destination h:/srv/debian-12.qcow2: "),
            "{error}"
        );
    }

    #[test]
    fn rsync_output_becomes_progress_and_totals() {
        assert_eq!(
            progress_bytes("       11173888  37%   10.01MB/s    0:00:01  "),
            Some(11_173_888)
        );
        assert_eq!(
            progress_bytes("       30000000 100%   10.32MB/s    0:00:02 (xfr#1, to-chk=0/1)"),
            Some(30_000_000)
        );
        assert_eq!(progress_bytes("Number of files: 1 (reg: 1)"), None);
        assert_eq!(
            progress_bytes("sent 30007403 bytes  received 35 bytes"),
            None
        );
        let mut stats = Stats::default();
        for line in [
            "Literal data: 20334144 bytes",
            "Matched data: 9,665,856 bytes",
            "Total bytes sent: 5",
        ] {
            stats.read(line);
        }
        assert_eq!(
            stats,
            Stats {
                literal: 20_334_144,
                matched: 9_665_856
            }
        );
    }

    #[test]
    fn arguments_and_scripts_are_quoted() {
        assert_eq!(shell_quote("/srv/it's here"), "'/srv/it'\\''s here'");
        let args = rsync_args(Path::new("/i/a.qcow2"), "u@h:/srv/.a.kiln-partial");
        let args: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let at = args.iter().position(|a| a == "-e").unwrap();
        assert_eq!(
            args[at + 1],
            "ssh -o BatchMode=yes -o StrictHostKeyChecking=yes"
        );
        assert_eq!(
            &args[args.len() - 2..],
            ["/i/a.qcow2", "u@h:/srv/.a.kiln-partial"]
        );
        assert!(
            args.contains(&"--inplace".to_string())
                && args.contains(&"--info=progress2".to_string())
        );
    }
}
