//! Files an install needs from elsewhere (a distribution's netboot kernel and initrd): a path
//! on this host is used where it is; a URL is downloaded once into kiln's cache directory,
//! resumably, checked against its SHA-256 (given, or looked up in the distribution's
//! SHA256SUMS), and reused on the next build without asking the server again.
//!
//! The cache is content-addressed (`CACHE/downloads/SHA256/NAME`): a file is there only
//! under the checksum it was verified against, so a hit needs no request and no re-hash, and
//! a release that changes its files (a new SHA256SUMS) downloads the new ones.

mod cache;
pub mod sums;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::io::AsyncWriteExt;

pub use cache::{Cache, CachedFile};

use super::iso::{IsoError, sha256_file};
use crate::engine::host::http::{self, error_chain};
use crate::engine::task::Reporter;
use crate::engine::units::human_bytes;

/// How long a server may take to connect, and to send the next part of a file.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Where a file comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    File(PathBuf),
    /// http:// or https://
    Url(String),
}

impl Location {
    /// `http://…` and `https://…` are URLs; anything else is a path on this host.
    pub fn parse(text: &str) -> Location {
        let text = text.trim();
        if text.starts_with("http://") || text.starts_with("https://") {
            Location::Url(text.to_string())
        } else {
            Location::File(PathBuf::from(text))
        }
    }

    /// The last component: the file's name in the cache and in messages.
    pub fn file_name(&self) -> String {
        let text = match self {
            Location::File(path) => return path_name(path),
            Location::Url(url) => url.split(['?', '#']).next().unwrap_or(url),
        };
        text.trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or("download")
            .to_string()
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::File(path) => write!(f, "{}", path.display()),
            Location::Url(url) => f.write_str(url),
        }
    }
}

/// The SHA-256 a file must have: given, or listed in a SHA256SUMS file (a URL or a path),
/// under `entry` — written `LIST#PATH-IN-IT`. Without `#PATH`, a URL is looked up by its
/// path below the list's directory, a file by its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checksum {
    Hex(String),
    Listed {
        list: Location,
        entry: Option<String>,
    },
}

impl FromStr for Checksum {
    type Err = DownloadError;

    fn from_str(text: &str) -> Result<Checksum, DownloadError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(DownloadError::BadChecksum(text.to_string()));
        }
        if text.chars().all(|c| c.is_ascii_hexdigit()) {
            return match text.len() {
                64 => Ok(Checksum::Hex(text.to_ascii_lowercase())),
                _ => Err(DownloadError::BadChecksum(text.to_string())),
            };
        }
        let (list, entry) = match text.rsplit_once('#') {
            Some((list, entry)) if !entry.is_empty() => (list, Some(entry.to_string())),
            _ => (text.trim_end_matches('#'), None),
        };
        Ok(Checksum::Listed {
            list: Location::parse(list),
            entry,
        })
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Checksum::Hex(hex) => f.write_str(hex),
            Checksum::Listed { list, entry: None } => write!(f, "{list}"),
            Checksum::Listed {
                list,
                entry: Some(entry),
            } => write!(f, "{list}#{entry}"),
        }
    }
}

/// Why a file could not be had; each message names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error(
        "kiln downloads {0} only with a SHA-256 to check it against (--kernel-sha256, --initrd-sha256; a recipe's kernel_sha256, initrd_sha256): 64 hex digits, or the distribution's SHA256SUMS (a URL or file, LIST#PATH-IN-IT when the path is not found by itself)"
    )]
    NeedsChecksum(String),
    #[error(
        "`{0}` is neither a SHA-256 (64 hex digits) nor a SHA256SUMS URL or file (LIST or LIST#PATH-IN-IT)"
    )]
    BadChecksum(String),
    #[error("cannot fetch {url}: {reason}")]
    Fetch { url: String, reason: String },
    #[error("{list} lists no {entry} (give its path in the list as LIST#PATH)")]
    NotListed { list: String, entry: String },
    #[error(
        "{what} does not match its checksum: {from} says {expected}, the file's SHA-256 is {actual}; nothing was kept"
    )]
    Mismatch {
        what: String,
        from: String,
        expected: String,
        actual: String,
    },
    #[error("{} does not exist", .0.display())]
    Missing(PathBuf),
    #[error("cannot write {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Read(#[from] IsoError),
    #[error(
        "kiln has no cache directory to download into (no HOME): give the file as a path on this host"
    )]
    NoCache,
    #[error("the download was cancelled; what arrived is kept and the next try resumes it")]
    Cancelled,
}

/// A path on this host where the file is, checked against `checksum` if one is given: a URL
/// from the cache, or downloaded into it.
pub async fn obtain(
    location: &Location,
    checksum: Option<&Checksum>,
    cache: Option<&Cache>,
    reporter: &Reporter,
) -> Result<PathBuf, DownloadError> {
    match location {
        Location::File(path) => {
            if !path.is_file() {
                return Err(DownloadError::Missing(path.clone()));
            }
            if let Some(checksum) = checksum {
                let (expected, from) = expected_sum(location, checksum).await?;
                let actual = sha256_file(path, reporter).await?;
                check_sum(location, &from, &expected, &actual)?;
                reporter.info(format!("{}: sha256 matches {from}", path.display()));
            }
            Ok(path.clone())
        }
        Location::Url(url) => {
            let checksum = checksum.ok_or_else(|| DownloadError::NeedsChecksum(url.clone()))?;
            let cache = cache.ok_or(DownloadError::NoCache)?;
            let (expected, from) = expected_sum(location, checksum).await?;
            let kept = cache.path_for(&expected, &location.file_name());
            if kept.is_file() {
                reporter.info(format!(
                    "{url}: from the cache, {} (sha256 {expected})",
                    kept.display()
                ));
                return Ok(kept);
            }
            download(url, &kept, reporter).await?;
            let part = cache::part_path(&kept);
            let actual = sha256_file(&part, reporter).await?;
            if let Err(error) = check_sum(location, &from, &expected, &actual) {
                cache.forget(&kept);
                return Err(error);
            }
            std::fs::rename(&part, &kept).map_err(|source| DownloadError::Write {
                path: kept.clone(),
                source,
            })?;
            reporter.info(format!(
                "{url}: sha256 matches {from}; kept as {}",
                kept.display()
            ));
            Ok(kept)
        }
    }
}

fn check_sum(
    location: &Location,
    from: &str,
    expected: &str,
    actual: &str,
) -> Result<(), DownloadError> {
    if expected == actual {
        return Ok(());
    }
    Err(DownloadError::Mismatch {
        what: location.to_string(),
        from: from.to_string(),
        expected: expected.to_string(),
        actual: actual.to_string(),
    })
}

/// The SHA-256 `location` must have, and where that was read (for messages).
async fn expected_sum(
    location: &Location,
    checksum: &Checksum,
) -> Result<(String, String), DownloadError> {
    let (list, entry) = match checksum {
        Checksum::Hex(hex) => return Ok((hex.to_ascii_lowercase(), "the given SHA-256".into())),
        Checksum::Listed { list, entry } => (list, entry),
    };
    let entry = entry.clone().unwrap_or_else(|| entry_below(list, location));
    let text = match list {
        Location::File(path) => std::fs::read_to_string(path).map_err(|source| IsoError::Read {
            path: path.clone(),
            source,
        })?,
        Location::Url(url) => fetch_text(url).await?,
    };
    let hex = sums::find_entry(&text, &entry).ok_or_else(|| DownloadError::NotListed {
        list: list.to_string(),
        entry: entry.clone(),
    })?;
    Ok((hex, format!("{list} ({entry})")))
}

/// A file's entry in a list when none is given: a URL below the list's directory by the
/// path between them (`netboot/debian-installer/amd64/linux` for Debian's
/// `…/images/SHA256SUMS`), anything else by its name.
fn entry_below(list: &Location, location: &Location) -> String {
    if let (Location::Url(list), Location::Url(url)) = (list, location)
        && let Some((directory, _)) = list.rsplit_once('/')
        && let Some(below) = url.strip_prefix(&format!("{directory}/"))
    {
        return below.to_string();
    }
    location.file_name()
}

fn client() -> Result<reqwest::Client, String> {
    http::client_builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .build()
        .map_err(|e| error_chain(&e))
}

async fn fetch_text(url: &str) -> Result<String, DownloadError> {
    let fail = |reason: String| DownloadError::Fetch {
        url: url.to_string(),
        reason,
    };
    let response = client()
        .map_err(fail)?
        .get(url)
        .send()
        .await
        .map_err(|e| fail(error_chain(&e)))?;
    if !response.status().is_success() {
        return Err(fail(format!("the server answered {}", response.status())));
    }
    let body = response.bytes().await.map_err(|e| fail(error_chain(&e)))?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// Download `url` into `kept`'s `.part` file, resuming what an earlier try left there when
/// the server supports ranges (`206 Partial Content`); otherwise from the start.
async fn download(url: &str, kept: &Path, reporter: &Reporter) -> Result<(), DownloadError> {
    let fail = |reason: String| DownloadError::Fetch {
        url: url.to_string(),
        reason,
    };
    let part = cache::part_path(kept);
    let write_error = |source| DownloadError::Write {
        path: part.clone(),
        source,
    };
    if let Some(dir) = part.parent() {
        std::fs::create_dir_all(dir).map_err(|source| DownloadError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let have = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    let mut request = client().map_err(fail)?.get(url);
    if have > 0 {
        request = request.header(reqwest::header::RANGE, format!("bytes={have}-"));
    }
    let response = request.send().await.map_err(|e| fail(error_chain(&e)))?;
    let status = response.status();
    let resumed = have > 0 && status == reqwest::StatusCode::PARTIAL_CONTENT;
    if !status.is_success() {
        return Err(fail(format!("the server answered {status}")));
    }
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(resumed)
        .truncate(!resumed)
        .open(&part)
        .await
        .map_err(write_error)?;
    let start_at = if resumed { have } else { 0 };
    let total = response.content_length().map(|length| length + start_at);
    reporter.info(match (resumed, total) {
        (true, Some(total)) => format!(
            "{url}: resuming at {} of {}",
            human_bytes(have),
            human_bytes(total)
        ),
        (_, Some(total)) => format!("downloading {url} ({})", human_bytes(total)),
        (_, None) => format!("downloading {url}"),
    });
    let started = Instant::now();
    let mut done = start_at;
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        if reporter.is_cancelled() {
            return Err(DownloadError::Cancelled);
        }
        let chunk = chunk.map_err(|e| fail(error_chain(&e)))?;
        file.write_all(&chunk).await.map_err(write_error)?;
        done += chunk.len() as u64;
        let rate = (done - start_at) as f64 / started.elapsed().as_secs_f64().max(1e-3);
        reporter.progress(done, total, rate);
    }
    file.flush().await.map_err(write_error)?;
    file.sync_all().await.map_err(write_error)?;
    reporter.info(format!(
        "{url}: {} in {:.1} s",
        human_bytes(done),
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

fn path_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
