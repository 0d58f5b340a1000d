//! Compaction with `qemu-img convert` (its `-p` progress passed on) and the `NAME.sha256`
//! file written beside a published image.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use super::{Checksum, CompactedSize, Compaction, Meter, PublishError, io_error};
use crate::engine::files::iso::{self, IsoError};
use crate::engine::host::process::{self, ToolError};
use crate::engine::host::temp_file::TempFile;
use crate::engine::steps::image;
use crate::engine::task::{Cancelled, Reporter};
use crate::engine::units::human_bytes;

/// `qemu-img convert -p -O qcow2 -o compat=1.1 [-c] IN OUT`, with its progress passed on.
pub(super) async fn compact(
    source: &Path,
    out: &Path,
    options: Compaction,
    reporter: &Reporter,
) -> Result<CompactedSize, PublishError> {
    let before = std::fs::metadata(source)
        .map_err(io_error("cannot read", source))?
        .len();
    let mut args: Vec<&std::ffi::OsStr> = ["convert", "-p", "-O", "qcow2", "-o", "compat=1.1"]
        .iter()
        .map(|s| s.as_ref())
        .collect();
    if options.compress {
        args.push("-c".as_ref());
    }
    args.push(source.as_os_str());
    args.push(out.as_os_str());
    reporter.info(format!(
        "compacting: qemu-img convert -O qcow2 -o compat=1.1{} {} {}",
        if options.compress { " -c" } else { "" },
        source.display(),
        out.display()
    ));
    let timeout = compact_timeout(before);
    let run = run_with_progress("qemu-img", &args, timeout, before, reporter);
    tokio::select! {
        result = run => result.map_err(tool_error)?,
        _ = reporter.cancelled() => {
            return Err(PublishError::Cancelled(Cancelled("compaction stopped; nothing was published".into())));
        }
    }
    let info = image::image_info(out)
        .await
        .map_err(|e| PublishError::CompactReadBack(e.to_string()))?;
    if info.format != "qcow2" || info.compat.as_deref() != Some("1.1") {
        return Err(PublishError::CompactReadBack(format!(
            "format {}, compat {}",
            info.format,
            info.compat.as_deref().unwrap_or("unknown")
        )));
    }
    let after = std::fs::metadata(out)
        .map_err(io_error("cannot read", out))?
        .len();
    let change = if after <= before {
        format!(
            "{:.0}% smaller",
            (before - after) as f64 * 100.0 / before.max(1) as f64
        )
    } else {
        "larger: the image had nothing to reclaim".to_string()
    };
    reporter.info(format!(
        "compacted {} to {} ({change})",
        human_bytes(before),
        human_bytes(after)
    ));
    Ok(CompactedSize {
        before,
        after,
        compressed: options.compress,
    })
}

/// Ten minutes, plus a second for every 10 MB of the file (compression runs at ~40 MB/s).
fn compact_timeout(bytes: u64) -> Duration {
    Duration::from_secs(600 + bytes / 10_000_000)
}

/// `(12.50/100%)` in qemu-img's `-p` output, as a fraction.
fn parse_convert_progress(text: &str) -> Option<f64> {
    let end = text.rfind("/100%)")?;
    let start = text[..end].rfind('(')?;
    let percent: f64 = text[start + 1..end].trim().parse().ok()?;
    Some((percent / 100.0).clamp(0.0, 1.0))
}

/// Run a tool that prints `-p` progress on stdout: progress is reported as a share of
/// `total`, stderr is kept for the error, and the tool is killed on timeout or when dropped.
async fn run_with_progress(
    program: &str,
    args: &[&std::ffi::OsStr],
    timeout: Duration,
    total: u64,
    reporter: &Reporter,
) -> Result<(), ToolError> {
    let mut child = process::command(program)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| ToolError::not_started(program, source))?;
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let progress = reporter.clone();
    let read_progress = async move {
        let mut meter = Meter::new(Some(total));
        let mut pending = String::new();
        let mut buffer = [0u8; 512];
        while let Ok(n) = stdout.read(&mut buffer).await {
            if n == 0 {
                break;
            }
            pending.push_str(&String::from_utf8_lossy(&buffer[..n]));
            while let Some(at) = pending.find(['\r', '\n']) {
                if let Some(fraction) = parse_convert_progress(&pending[..at]) {
                    meter.update(&progress, (fraction * total as f64) as u64);
                }
                pending.drain(..=at);
            }
        }
    };
    let read_errors = async move {
        // Read all of it (a tool blocked on a full pipe never exits), keep the start.
        let mut text = Vec::new();
        let mut buffer = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buffer).await {
            if n == 0 {
                break;
            }
            let keep = n.min((64 << 10) - text.len().min(64 << 10));
            text.extend_from_slice(&buffer[..keep]);
        }
        String::from_utf8_lossy(&text).trim().to_string()
    };
    let finished = async {
        let (_, errors, status) = tokio::join!(read_progress, read_errors, child.wait());
        (errors, status)
    };
    let (errors, status) =
        tokio::time::timeout(timeout, finished)
            .await
            .map_err(|_| ToolError::TimedOut {
                program: program.into(),
                after: timeout,
            })?;
    let status = status.map_err(|source| ToolError::Spawn {
        program: program.into(),
        source,
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(ToolError::Failed {
            program: program.into(),
            status: status.to_string(),
            stderr: errors,
        })
    }
}

fn tool_error(error: ToolError) -> PublishError {
    match error {
        ToolError::NotFound { .. } => PublishError::ToolMissing(error),
        other => PublishError::Compact(other),
    }
}

pub(super) async fn sha256(path: &Path, reporter: &Reporter) -> Result<String, PublishError> {
    reporter.info(format!("computing the SHA-256 of {}", path.display()));
    iso::sha256_file(path, reporter)
        .await
        .map_err(|e| checksum_error(path, e))
}

fn checksum_error(path: &Path, error: IsoError) -> PublishError {
    match error {
        IsoError::Cancelled => PublishError::Cancelled(Cancelled("nothing was published".into())),
        IsoError::Read { path, source } => PublishError::Io {
            action: "cannot read",
            path,
            source,
        },
        other => PublishError::Io {
            action: "cannot checksum",
            path: path.to_path_buf(),
            source: std::io::Error::other(other.to_string()),
        },
    }
}

/// `NAME.sha256` in `dir`, in `sha256sum` format, written atomically.
pub(super) fn write_checksum(
    dir: &Path,
    name: &str,
    hex: String,
) -> Result<Checksum, PublishError> {
    let file = dir.join(format!("{name}.sha256"));
    let temp = TempFile::create(dir, &format!("{name}.sha256"), "tmp")
        .map_err(io_error("cannot create a file in", dir))?;
    std::fs::write(temp.path(), checksum_line(&hex, name))
        .map_err(io_error("cannot write", temp.path()))?;
    temp.rename_to(&file)
        .map_err(io_error("cannot write", &file))?;
    Ok(Checksum { sha256: hex, file })
}

/// One line of `sha256sum` output: `HEX  NAME`.
pub(super) fn checksum_line(hex: &str, name: &str) -> String {
    format!("{hex}  {name}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_img_progress() {
        assert_eq!(parse_convert_progress("    (12.50/100%)"), Some(0.125));
        assert_eq!(parse_convert_progress("    (100.00/100%)"), Some(1.0));
        assert_eq!(parse_convert_progress("qemu-img: error"), None);
        assert_eq!(
            checksum_line("ab12", "root.img.qcow2"),
            "ab12  root.img.qcow2\n"
        );
        assert!(compact_timeout(20 << 30) > Duration::from_secs(2000));
    }
}
