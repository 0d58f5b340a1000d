//! The local targets, Djinn's offline runner and a builds.sr.ht image tree: where the file
//! goes, and getting it there under a temporary name that is renamed into place only when
//! complete.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::compact::{compact, sha256, write_checksum};
use super::{Destination, Meter, Outcome, PublishError, PublishRequest, driver_conf, io_error};
use crate::engine::host::temp_file::{self, TempFile, parent_dir};
use crate::engine::task::{Cancelled, Reporter, TaskPanicked};
use crate::engine::units::human_bytes;

/// Copies move this much per step, so progress and Ctrl-C are noticed several times a second.
const COPY_CHUNK: usize = 8 << 20;

/// One directory name of a builds.sr.ht tree (`debian`, `12`, `x86_64`).
pub(super) fn layout_component(flag: &str, value: &str) -> Result<(), PublishError> {
    let valid = !value.is_empty()
        && value != "."
        && value != ".."
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+'));
    if valid {
        Ok(())
    } else {
        Err(PublishError::InvalidOption(format!(
            "--{flag} `{value}`: use letters, digits, `.`, `_`, `-` or `+` (one directory name)"
        )))
    }
}

#[derive(Debug)]
pub(super) struct FilePlan {
    pub(super) path: PathBuf,
    replace: bool,
    pub(super) destination: Destination,
}

pub(super) fn file_plan(
    root: &Path,
    path: PathBuf,
    replace: bool,
    destination: impl FnOnce(PathBuf) -> Destination,
) -> Result<FilePlan, PublishError> {
    if !root.is_dir() {
        return Err(PublishError::InvalidOption(format!(
            "{} does not exist or is not a directory; create it first (mkdir -p)",
            root.display()
        )));
    }
    if path.is_dir() {
        return Err(PublishError::InvalidOption(format!(
            "{} is a directory, not an image file",
            path.display()
        )));
    }
    if path.exists() && !replace {
        return Err(PublishError::Exists(path));
    }
    Ok(FilePlan {
        destination: destination(path.clone()),
        path,
        replace,
    })
}

/// The `disks` directory of the `driver qemu { … }` block in a driver.conf.
pub(super) fn read_disks(driver_conf: &Path) -> Result<PathBuf, PublishError> {
    let bad = |reason: String| PublishError::DriverConf {
        path: driver_conf.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(driver_conf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            bad("the file does not exist; pass --driver-conf FILE".into())
        } else {
            bad(e.to_string())
        }
    })?;
    let entries = driver_conf::parse(&text).map_err(|e| bad(e.to_string()))?;
    let disks = driver_conf::qemu_disks(&entries).map_err(bad)?;
    let disks = expand_env(&disks).map_err(bad)?;
    let disks = PathBuf::from(disks);
    if !disks.is_absolute() {
        return Err(bad(format!(
            "disks \"{}\" is relative, so it depends on where djinn runs; make it absolute",
            disks.display()
        )));
    }
    Ok(disks)
}

/// `${NAME}` replaced by the environment variable NAME (as Djinn's config reader does).
fn expand_env(text: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unclosed ${{ in \"{text}\""))?;
        let name = &after[..end];
        let value = std::env::var(name)
            .map_err(|_| format!("\"{text}\" uses ${{{name}}}, which is not set"))?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Offline runner and builds.sr.ht: compact or copy into a temporary file beside the final
/// one, checksum it, then move it into place.
pub(super) async fn install_file(
    request: &PublishRequest,
    plan: FilePlan,
    reporter: &Reporter,
) -> Result<Outcome, PublishError> {
    let dir = parent_dir(&plan.path);
    std::fs::create_dir_all(&dir).map_err(io_error("cannot create", &dir))?;
    for leftover in temp_file::sweep(&dir) {
        reporter.info(format!(
            "removed {}, left by a kiln that was killed",
            leftover.display()
        ));
    }
    let name = file_name(&plan.path);
    let temp =
        TempFile::create(&dir, &name, "tmp").map_err(io_error("cannot create a file in", &dir))?;
    let transfer = Instant::now();
    let compaction = match request.compact {
        Some(options) => {
            let sizes = compact(&request.image, temp.path(), options, reporter).await?;
            // qemu-img does not sync; the rename below must not expose a file still in memory.
            let sync = OpenOptions::new().write(true).open(temp.path());
            sync.and_then(|f| f.sync_all())
                .map_err(io_error("cannot write", temp.path()))?;
            Some(sizes)
        }
        None => {
            reporter.info(format!(
                "copying {} to {}",
                request.image.display(),
                plan.path.display()
            ));
            let (from, to, progress) = (
                request.image.clone(),
                temp.path().to_path_buf(),
                reporter.clone(),
            );
            tokio::task::spawn_blocking(move || copy_file(&from, &to, &progress))
                .await
                .map_err(|e| TaskPanicked(e.to_string()))??;
            None
        }
    };
    let transfer_seconds = transfer.elapsed().as_secs_f64();
    let checksum = if request.sha256 {
        Some(sha256(temp.path(), reporter).await?)
    } else {
        None
    };
    if reporter.is_cancelled() {
        return Err(PublishError::Cancelled(Cancelled(
            "nothing was installed".into(),
        )));
    }
    put_in_place(temp.path(), &plan.path, plan.replace)?;
    drop(temp);
    let bytes = std::fs::metadata(&plan.path)
        .map_err(io_error("cannot read", &plan.path))?
        .len();
    let checksum = match checksum {
        Some(hex) => Some(write_checksum(&dir, &name, hex)?),
        None => None,
    };
    Ok(Outcome {
        destination: plan.destination,
        bytes,
        transfer_seconds,
        compaction,
        checksum,
    })
}

/// Rename `temp` to `dest`. Without `replace`, a hard link refuses a file that appeared since
/// the plan was checked, so it is never clobbered.
fn put_in_place(temp: &Path, dest: &Path, replace: bool) -> Result<(), PublishError> {
    if replace {
        std::fs::rename(temp, dest).map_err(io_error("cannot move the image to", dest))?;
    } else {
        match std::fs::hard_link(temp, dest) {
            Ok(()) => {
                let _ = std::fs::remove_file(temp);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(PublishError::Exists(dest.to_path_buf()));
            }
            // Filesystems without hard links: the plan already saw no file there.
            Err(_) if !dest.exists() => {
                std::fs::rename(temp, dest).map_err(io_error("cannot move the image to", dest))?;
            }
            Err(_) => return Err(PublishError::Exists(dest.to_path_buf())),
        }
    }
    // Make the new directory entry durable too.
    if let Ok(dir) = File::open(parent_dir(dest)) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Copy `from` to the new file `to` with progress, through the kernel where it can
/// (`copy_file_range`, which also shares blocks on filesystems that can), else a buffer.
fn copy_file(from: &Path, to: &Path, reporter: &Reporter) -> Result<u64, PublishError> {
    let mut source = File::open(from).map_err(io_error("cannot read", from))?;
    let total = source
        .metadata()
        .map_err(io_error("cannot read", from))?
        .len();
    // `to` is the temporary file kiln made exclusively; never follow a link put in its place.
    let mut target = OpenOptions::new()
        .write(true)
        .truncate(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(to)
        .map_err(io_error("cannot create", to))?;
    let write_error = io_error("cannot write", to);
    let mut meter = Meter::new(Some(total));
    let mut done = 0u64;
    let mut kernel_copy = true;
    let mut buffer = Vec::new();
    meter.update(reporter, 0);
    while done < total {
        if reporter.is_cancelled() {
            return Err(PublishError::Cancelled(Cancelled(format!(
                "stopped after copying {} of {}; nothing was installed",
                human_bytes(done),
                human_bytes(total)
            ))));
        }
        let want = (total - done).min(COPY_CHUNK as u64) as usize;
        let copied = if kernel_copy {
            match copy_range(&source, &target, want) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                // Not supported here (another filesystem, an old kernel): copy through memory.
                Err(_) if done == 0 => {
                    kernel_copy = false;
                    continue;
                }
                Err(e) => return Err(write_error(e)),
            }
        } else {
            if buffer.is_empty() {
                buffer = vec![0u8; 1 << 20];
            }
            let limit = want.min(buffer.len());
            let n = match source.read(&mut buffer[..limit]) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_error("cannot read", from)(e)),
            };
            target
                .write_all(&buffer[..n])
                .map_err(io_error("cannot write", to))?;
            n
        };
        if copied == 0 {
            return Err(PublishError::Io {
                action: "cannot copy",
                path: from.to_path_buf(),
                source: std::io::Error::other("the file got shorter while it was copied"),
            });
        }
        done += copied as u64;
        meter.update(reporter, done);
    }
    target.sync_all().map_err(io_error("cannot write", to))?;
    Ok(done)
}

fn copy_range(source: &File, target: &File, len: usize) -> std::io::Result<usize> {
    // SAFETY: both descriptors stay open for the call; null offsets mean "use and advance each
    // file's own position", which the buffered fallback then continues from.
    let n = unsafe {
        libc::copy_file_range(
            source.as_raw_fd(),
            std::ptr::null_mut(),
            target.as_raw_fd(),
            std::ptr::null_mut(),
            len,
            0,
        )
    };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::task::{self, Summary, TaskOptions, test_reporter};

    #[test]
    fn env_vars_in_disks_are_expanded() {
        let home = std::env::var("HOME").unwrap_or_default();
        assert_eq!(expand_env("${HOME}/img").unwrap(), format!("{home}/img"));
        assert_eq!(expand_env("/plain").unwrap(), "/plain");
        assert!(expand_env("${KILN_SURELY_UNSET_VARIABLE}/x").is_err());
        assert!(expand_env("${HOME").is_err());
    }

    #[tokio::test]
    async fn copy_reports_progress_and_stops_when_cancelled() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("from");
        let data: Vec<u8> = (0..(COPY_CHUNK * 2 + 12_345))
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(&from, &data).unwrap();

        // copy_file writes into the temporary file install_file made exclusively.
        let to = dir.path().join("to");
        std::fs::File::create(&to).unwrap();
        let mut task = task::spawn("copy", TaskOptions::default(), {
            let (from, to) = (from.clone(), to.clone());
            move |reporter: Reporter| async move {
                tokio::task::spawn_blocking(move || copy_file(&from, &to, &reporter))
                    .await
                    .unwrap()
                    .map(Copied)
            }
        });
        let mut last = None;
        while let Some(event) = task.next_event().await {
            if let task::Event::Progress(p) = event {
                last = Some(p);
            }
        }
        assert_eq!(task.result().await.unwrap().0, data.len() as u64);
        assert_eq!(last.unwrap().done, data.len() as u64);
        assert_eq!(std::fs::read(&to).unwrap(), data);
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep me").unwrap();
        let planted = dir.path().join("planted");
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        assert!(
            copy_file(&from, &planted, &test_reporter()).is_err(),
            "a symlink put in the temporary file's place was followed"
        );
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");

        let to = dir.path().join("cancelled");
        std::fs::File::create(&to).unwrap();
        let task = task::spawn("copy", TaskOptions::default(), {
            let (from, to) = (from.clone(), to.clone());
            move |reporter: Reporter| async move {
                reporter.cancelled().await;
                tokio::task::spawn_blocking(move || copy_file(&from, &to, &reporter))
                    .await
                    .unwrap()
                    .map(Copied)
            }
        });
        task.cancel();
        let err = task.result().await.unwrap_err();
        assert!(
            matches!(err, PublishError::Cancelled(Cancelled(_))),
            "{err}"
        );
    }

    #[derive(Debug)]
    struct Copied(u64);
    impl Summary for Copied {
        fn summary(&self) -> String {
            format!("{} bytes", self.0)
        }
    }
}
