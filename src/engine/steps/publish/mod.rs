//! The Publish step: upload an image to a Djinn server, install it for Djinn's offline runner,
//! place it in a builds.sr.ht image tree, or copy it to a host over SSH with rsync — after the
//! checks the CI driver would make, optionally compacted first and with a `NAME.sha256` beside
//! it.
//!
//! Files are never read into memory: uploads stream from the file, copies go through the
//! kernel (`copy_file_range`) or a 1 MiB buffer. A local target is written under a temporary
//! name in its final directory and renamed into place only when complete.
//!
//! This module holds the request, its result and its errors, the checks made before a byte
//! moves, and the step that ties them together. The targets live beside it: `djinn` uploads
//! to a Djinn server's API, `local` installs for the offline runner or a builds.sr.ht tree,
//! `compact` runs `qemu-img convert` and writes the checksum file, `driver_conf` reads
//! the offline runner's configuration, and `rsync` (with `remote_path`) copies to a host.

mod compact;
mod djinn;
pub mod driver_conf;
mod local;
mod remote_path;
mod rsync;

use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::header::HeaderValue;
use serde::Serialize;

use super::image::is_valid_image_name;
use super::verify;
use crate::engine::check::{self, Check, Verdict};
use crate::engine::host::process::ToolError;
use crate::engine::task::{Cancelled, Reporter, Summary, TaskPanicked};
use crate::engine::units::human_bytes;
use djinn::{Api, DjinnUpload, http_client, parse_api_url};
use local::{FilePlan, file_plan, install_file, layout_component, read_disks};
use rsync::{RsyncPlan, publish_rsync, rsync_plan};

pub use crate::engine::namespace::{Namespace, NamespaceError};
pub use djinn::QEMU_DISK;
pub use driver_conf::default_driver_conf;
pub use remote_path::{RemotePath, RemotePathError};
pub use rsync::{RemoteError, RemoteStage};

/// The environment variable that carries the Djinn API token.
pub const TOKEN_ENV: &str = crate::engine::host::process::DJINN_TOKEN_ENV;
/// The token file's name inside kiln's config directory (it must be mode 0600).
pub const TOKEN_FILE: &str = "djinn-token";
/// The architecture directory the offline runner's QEMU driver boots from.
const OFFLINE_ARCH: &str = "x86_64";
/// The file name of an image in a builds.sr.ht tree.
const SRHT_IMAGE: &str = "root.img.qcow2";
const REPORT_EVERY: Duration = Duration::from_millis(200);
const RATE_WINDOW: Duration = Duration::from_secs(3);

// ---------------------------------------------------------------------------------------------
// The request and its result

/// A Djinn API token. It prints as `***` so it cannot end up in a log line or a message.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// A token from its text (surrounding whitespace removed); `None` when nothing is left.
    pub fn new(secret: &str) -> Option<Token> {
        let secret = secret.trim();
        (!secret.is_empty()).then(|| Token(secret.to_string()))
    }

    /// `Bearer TOKEN`, marked sensitive so HTTP libraries never print it.
    fn authorization(&self) -> Result<HeaderValue, PublishError> {
        let mut value = HeaderValue::from_str(&format!("Bearer {}", self.0))
            .map_err(|_| PublishError::TokenUnusable)?;
        value.set_sensitive(true);
        Ok(value)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The token from `KILN_DJINN_TOKEN`, else from `<config_dir>/djinn-token` (mode 0600 only).
pub fn load_token(config_dir: Option<&Path>) -> Result<Token, PublishError> {
    if let Some(value) = std::env::var_os(TOKEN_ENV) {
        let value = value.to_str().ok_or(PublishError::TokenUnusable)?;
        if let Some(token) = Token::new(value) {
            return Ok(token);
        }
    }
    match config_dir {
        Some(dir) => read_token_file(&dir.join(TOKEN_FILE)),
        None => Err(PublishError::NoToken {
            file: format!("~/.config/kiln/{TOKEN_FILE}"),
        }),
    }
}

/// Read a token file, refusing one that anybody but its owner can read or write.
pub fn read_token_file(path: &Path) -> Result<Token, PublishError> {
    let unreadable = |reason: String| PublishError::TokenFile {
        path: path.to_path_buf(),
        reason,
    };
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(PublishError::NoToken {
                file: path.display().to_string(),
            });
        }
        Err(e) => return Err(unreadable(e.to_string())),
    };
    // The mode is read from the open file, so it is the mode of the file we read.
    let meta = file.metadata().map_err(|e| unreadable(e.to_string()))?;
    if !meta.is_file() {
        return Err(unreadable("not a regular file".into()));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(PublishError::TokenFileOpen {
            path: path.to_path_buf(),
            mode,
        });
    }
    let mut text = String::new();
    file.take(64 << 10)
        .read_to_string(&mut text)
        .map_err(|e| unreadable(e.to_string()))?;
    Token::new(&text).ok_or_else(|| unreadable("the file is empty".into()))
}

/// The kinds of place an image can be published to, as a person chooses them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// A Djinn server's API (`POST /images`).
    #[default]
    Djinn,
    /// The disks directory of Djinn's offline runner.
    Offline,
    /// A builds.sr.ht image tree.
    Srht,
    /// A directory on a host reached over SSH, copied to with rsync.
    Rsync,
}

impl TargetKind {
    /// The word used on command lines and in session files.
    pub fn name(self) -> &'static str {
        match self {
            TargetKind::Djinn => "djinn",
            TargetKind::Offline => "offline",
            TargetKind::Srht => "srht",
            TargetKind::Rsync => "rsync",
        }
    }

    /// The target a word names (the inverse of [`TargetKind::name`]).
    pub fn from_name(name: &str) -> Option<TargetKind> {
        [
            TargetKind::Djinn,
            TargetKind::Offline,
            TargetKind::Srht,
            TargetKind::Rsync,
        ]
        .into_iter()
        .find(|kind| kind.name() == name)
    }
}

/// Where an image is published to.
#[derive(Debug, Clone)]
pub enum PublishTarget {
    /// `POST /images` on a Djinn server.
    Djinn {
        /// The API base URL; `/images` lives under it.
        url: String,
        /// `None` is the token owner's own namespace.
        namespace: Option<Namespace>,
        token: Token,
    },
    /// `<disks>/qemu/x86_64/<namespace path>/<name>` for Djinn's offline runner.
    Offline {
        driver_conf: PathBuf,
        /// No owner: the runner has none.
        namespace: Option<Namespace>,
        /// The worker layout `<disks>/_base/qemu/x86_64/…` instead.
        base: bool,
        replace: bool,
    },
    /// `<root>/<distro>/<release>/<arch>/root.img.qcow2` for builds.sr.ht.
    Srht {
        root: PathBuf,
        distro: String,
        release: String,
        arch: String,
        replace: bool,
    },
    /// `[user@]host:dir/[file]` over SSH; a directory gets `NAME.qcow2`.
    Rsync { dest: RemotePath, replace: bool },
}

impl PublishTarget {
    /// A few words for titles: `Djinn at https://…`, `the offline runner`, `builds.sr.ht tree …`.
    pub fn describe(&self) -> String {
        match self {
            PublishTarget::Djinn { url, .. } => format!("Djinn at {url}"),
            PublishTarget::Offline { .. } => "the offline runner".into(),
            PublishTarget::Srht { root, .. } => format!("the builds.sr.ht tree {}", root.display()),
            PublishTarget::Rsync { dest, .. } => format!("{dest} over rsync"),
        }
    }
}

/// How to shrink the image before it is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compaction {
    /// `qemu-img convert -c`: zlib-compressed clusters (smaller, slower to write).
    pub compress: bool,
}

/// What `kiln publish` was asked to do.
#[derive(Debug, Clone)]
pub struct PublishRequest {
    pub image: PathBuf,
    /// The image's name; the file stem when `None`. Not used by builds.sr.ht trees.
    pub name: Option<String>,
    pub target: PublishTarget,
    pub compact: Option<Compaction>,
    /// Write `NAME.sha256` (sha256sum format) next to the published file.
    pub sha256: bool,
}

/// Where the image went.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "target", rename_all = "lowercase")]
pub enum Destination {
    Djinn {
        id: Option<u64>,
        url: Option<String>,
        name: String,
        namespace: Option<String>,
    },
    Offline {
        path: PathBuf,
        /// What a build manifest names it, e.g. `debian/oldstable`.
        image: String,
    },
    Srht {
        path: PathBuf,
        /// What a build manifest names it, e.g. `debian/12`.
        image: String,
        arch: String,
    },
    Rsync {
        /// `user@host:/dir/file`, as given to rsync.
        dest: String,
        host: String,
        /// The file's path on the host.
        path: String,
    },
}

impl Destination {
    /// The build-manifest lines that use the image, for the local targets.
    pub fn manifest(&self) -> Option<String> {
        match self {
            Destination::Djinn { .. } | Destination::Rsync { .. } => None,
            Destination::Offline { image, .. } => {
                Some(format!("driver:\n  type: qemu\n  image: {image}"))
            }
            Destination::Srht { image, arch, .. } if arch == "x86_64" => {
                Some(format!("image: {image}"))
            }
            Destination::Srht { image, arch, .. } => Some(format!("image: {image}\narch: {arch}")),
        }
    }
}

/// Sizes before and after `qemu-img convert`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CompactedSize {
    pub before: u64,
    pub after: u64,
    pub compressed: bool,
}

/// The checksum of the published bytes and the file it was written to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Checksum {
    pub sha256: String,
    pub file: PathBuf,
}

/// A published image: where it is, how big, and what was done to it on the way.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Published {
    pub destination: Destination,
    pub source: PathBuf,
    /// Bytes published (after compaction, if any).
    pub bytes: u64,
    /// The whole step, checks included.
    pub seconds: f64,
    /// Moving the bytes alone: the upload, or the copy or compaction into place.
    pub transfer_seconds: f64,
    pub compaction: Option<CompactedSize>,
    pub checksum: Option<Checksum>,
}

impl Summary for Published {
    fn summary(&self) -> String {
        let size = human_bytes(self.bytes);
        let rate = self.bytes as f64 / self.transfer_seconds.max(1e-3);
        let took = format!(
            "in {:.1} s, {:.1} s of it moving the bytes at {}/s",
            self.seconds,
            self.transfer_seconds,
            human_bytes(rate as u64)
        );
        match &self.destination {
            Destination::Djinn { id, url, .. } => format!(
                "Djinn image {} at {} ({size} {took})",
                id.map_or_else(|| "?".to_string(), |id| id.to_string()),
                url.as_deref().unwrap_or("(no URL in the answer)")
            ),
            Destination::Offline { path, image } | Destination::Srht { path, image, .. } => {
                format!(
                    "installed {} ({size} {took}); a manifest names it `image: {image}`",
                    path.display()
                )
            }
            Destination::Rsync { dest, .. } => format!("copied to {dest} ({size} {took})"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Errors

/// Why an image was not published; each message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(
        "`{0}` is not a valid image name: use letters, digits, `_` and `-` (^[a-zA-Z0-9_-]+$), e.g. --name debian-12"
    )]
    InvalidName(String),
    #[error(transparent)]
    Namespace(#[from] NamespaceError),
    #[error("{0}")]
    InvalidOption(String),
    #[error("{}", describe_failures(.0))]
    NotReady(Vec<Check>),
    #[error(
        "`{name}` is already taken in namespace {namespace} on Djinn{}; choose another --name, or delete the old image first",
        .id.map(|id| format!(" (image {id})")).unwrap_or_default()
    )]
    NameTaken {
        name: String,
        namespace: String,
        id: Option<u64>,
    },
    #[error(
        "no Djinn token: set {TOKEN_ENV} or write the token to {file} and run `chmod 600 {file}`"
    )]
    NoToken { file: String },
    #[error(
        "{} is readable or writable by others (mode {mode:04o}); a token file must be private: run `chmod 600 {}`",
        .path.display(), .path.display()
    )]
    TokenFileOpen { path: PathBuf, mode: u32 },
    #[error("cannot read the token file {}: {reason}", .path.display())]
    TokenFile { path: PathBuf, reason: String },
    #[error(
        "the Djinn token has characters that cannot be sent in an HTTP header; check {TOKEN_ENV} or the token file"
    )]
    TokenUnusable,
    #[error("cannot use the driver configuration {}: {reason}", .path.display())]
    DriverConf { path: PathBuf, reason: String },
    #[error("{} already exists; pass --replace to replace it", .0.display())]
    Exists(PathBuf),
    #[error("qemu-img is needed: {0}")]
    ToolMissing(ToolError),
    #[error(
        "Djinn answered {status}: token rejected or lacks image:write; check {TOKEN_ENV} or the token file"
    )]
    TokenRejected { status: String },
    #[error(
        "no Djinn API at {url} ({detail}); --url must be the API base under which /images lives"
    )]
    NoApi { url: String, detail: String },
    #[error("cannot reach Djinn at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("Djinn refused the image: {}", .0.join("; "))]
    Refused(Vec<String>),
    #[error("upload did not complete; {0}")]
    Incomplete(String),
    #[error("Djinn answered {status}{}", if .message.is_empty() { String::new() } else { format!(": {}", .message) })]
    Unexpected { status: String, message: String },
    #[error("qemu-img could not compact the image: {0}")]
    Compact(ToolError),
    #[error("the compacted image does not read back as qcow2 v3: {0}")]
    CompactReadBack(String),
    #[error("{action} {}: {source}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// Boxed: its messages carry many names, and every other error would grow to its size.
    #[error(transparent)]
    Remote(Box<RemoteError>),
    #[error(transparent)]
    Cancelled(#[from] Cancelled),
    #[error(transparent)]
    Panicked(#[from] TaskPanicked),
}

impl From<RemoteError> for PublishError {
    fn from(error: RemoteError) -> PublishError {
        PublishError::Remote(Box::new(error))
    }
}

impl PublishError {
    /// Errors about the request or the environment (the CLI exits 2 for these, 1 for failures
    /// while running).
    pub fn is_usage(&self) -> bool {
        if let PublishError::Remote(error) = self {
            return error.is_usage();
        }
        matches!(
            self,
            PublishError::InvalidName(_)
                | PublishError::Namespace(_)
                | PublishError::InvalidOption(_)
                | PublishError::NotReady(_)
                | PublishError::NameTaken { .. }
                | PublishError::NoToken { .. }
                | PublishError::TokenFileOpen { .. }
                | PublishError::TokenFile { .. }
                | PublishError::TokenUnusable
                | PublishError::DriverConf { .. }
                | PublishError::Exists(_)
                | PublishError::ToolMissing(_)
        )
    }
}

fn describe_failures(checks: &[Check]) -> String {
    let mut text = String::from("the image is not ready to publish (nothing was sent):");
    for check in checks {
        text.push_str(&format!("\n  - {}: {}", check.name, check.detail));
        if let Some(fix) = &check.fix {
            text.push_str(&format!("\n    fix: {fix}"));
        }
    }
    text
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> PublishError {
    let path = path.to_path_buf();
    move |source| PublishError::Io {
        action,
        path,
        source,
    }
}

// ---------------------------------------------------------------------------------------------
// Validation: everything that can be refused before a byte moves

/// The image name asked for, or the file's stem.
fn image_name(request: &PublishRequest) -> Result<String, PublishError> {
    let name = match &request.name {
        Some(name) => name.clone(),
        None => request
            .image
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    if is_valid_image_name(&name) {
        Ok(name)
    } else {
        Err(PublishError::InvalidName(name))
    }
}

/// A checked request: where the bytes go.
#[derive(Debug)]
enum Plan {
    Djinn {
        api: Api,
        name: String,
        namespace: Option<Namespace>,
        token: Token,
        plain_http: bool,
    },
    File(FilePlan),
    Rsync(RsyncPlan),
}

fn plan(request: &PublishRequest) -> Result<Plan, PublishError> {
    match &request.target {
        PublishTarget::Djinn {
            url,
            namespace,
            token,
        } => {
            let name = image_name(request)?;
            let (api, plain_http) = parse_api_url(url)?;
            Ok(Plan::Djinn {
                api,
                name,
                namespace: namespace.clone(),
                token: token.clone(),
                plain_http,
            })
        }
        PublishTarget::Offline {
            driver_conf,
            namespace,
            base,
            replace,
        } => {
            let name = image_name(request)?;
            let segments = match namespace {
                Some(namespace) => namespace.offline_segments()?,
                None => Vec::new(),
            };
            let disks = read_disks(driver_conf)?;
            let mut path = disks.clone();
            if *base {
                path.push("_base");
            }
            path.push("qemu");
            path.push(OFFLINE_ARCH);
            path.extend(&segments);
            path.push(&name);
            let image = segments
                .iter()
                .copied()
                .chain([name.as_str()])
                .collect::<Vec<_>>()
                .join("/");
            let plan = file_plan(&disks, path, *replace, |path| Destination::Offline {
                path,
                image,
            })?;
            Ok(Plan::File(plan))
        }
        PublishTarget::Srht {
            root,
            distro,
            release,
            arch,
            replace,
        } => {
            layout_component("distro", distro)?;
            layout_component("release", release)?;
            layout_component("arch", arch)?;
            let path = root.join(distro).join(release).join(arch).join(SRHT_IMAGE);
            let plan = file_plan(root, path, *replace, |path| Destination::Srht {
                path,
                image: format!("{distro}/{release}"),
                arch: arch.clone(),
            })?;
            Ok(Plan::File(plan))
        }
        PublishTarget::Rsync { dest, replace } => {
            // A file named in the destination keeps that name; a directory gets the image's.
            let name = if dest.is_directory() {
                image_name(request)?
            } else {
                String::new()
            };
            Ok(Plan::Rsync(rsync_plan(dest, &name, *replace)))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The step

/// Check the image, then publish it where the request says. Cancellable at every stage; a
/// cancelled or failed publish leaves no partial file under a final name.
pub async fn publish(
    request: PublishRequest,
    reporter: Reporter,
) -> Result<Published, PublishError> {
    let started = Instant::now();
    let plan = plan(&request)?;
    preflight(&request.image, &reporter).await?;
    let outcome = match plan {
        Plan::Djinn {
            api,
            name,
            namespace,
            token,
            plain_http,
        } => {
            if plain_http {
                reporter.warn(format!(
                    "{} is plain http: the token and the image travel unencrypted; use https unless this is a local test server",
                    api.base
                ));
            }
            let djinn = DjinnUpload {
                client: http_client(&api.base)?,
                authorization: token.authorization()?,
                api,
                name,
                namespace,
            };
            djinn.publish(&request, &reporter).await?
        }
        Plan::File(plan) => install_file(&request, plan, &reporter).await?,
        Plan::Rsync(plan) => publish_rsync(&request, plan, &reporter).await?,
    };
    Ok(Published {
        destination: outcome.destination,
        source: request.image.clone(),
        bytes: outcome.bytes,
        seconds: started.elapsed().as_secs_f64(),
        transfer_seconds: outcome.transfer_seconds,
        compaction: outcome.compaction,
        checksum: outcome.checksum,
    })
}

/// What publishing to one kind of target produced.
struct Outcome {
    destination: Destination,
    bytes: u64,
    transfer_seconds: f64,
    compaction: Option<CompactedSize>,
    checksum: Option<Checksum>,
}

/// `verify::static_checks` must have no failure; warnings are passed on.
async fn preflight(image: &Path, reporter: &Reporter) -> Result<(), PublishError> {
    reporter.info(format!("checking {}", image.display()));
    let checks = tokio::select! {
        checks = verify::static_checks(image) => checks,
        _ = reporter.cancelled() => return Err(Cancelled("nothing was published".into()).into()),
    };
    // The name is checked on the name actually used, not the file's stem.
    let checks: Vec<Check> = checks.into_iter().filter(|c| c.id != "name").collect();
    for check in checks.iter().filter(|c| c.verdict == Verdict::Warn) {
        let fix = check
            .fix
            .as_ref()
            .map(|f| format!(" (fix: {f})"))
            .unwrap_or_default();
        reporter.warn(format!("{}: {}{fix}", check.name, check.detail));
    }
    let failed: Vec<Check> = check::failures(&checks).into_iter().cloned().collect();
    if !failed.is_empty() {
        return Err(PublishError::NotReady(failed));
    }
    let passed = checks.iter().filter(|c| c.verdict == Verdict::Pass).count();
    reporter.info(format!("{passed} of {} checks passed", checks.len()));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Progress

/// Turns a growing byte count into progress events: a few per second, with the rate over the
/// last seconds (so the ETA follows the link as it is now, not as it was at the start).
struct Meter {
    total: Option<u64>,
    started: Instant,
    last_report: Option<Instant>,
    samples: VecDeque<(Instant, u64)>,
}

impl Meter {
    fn new(total: Option<u64>) -> Meter {
        Meter {
            total,
            started: Instant::now(),
            last_report: None,
            samples: VecDeque::new(),
        }
    }

    fn update(&mut self, reporter: &Reporter, done: u64) {
        let now = Instant::now();
        let complete = self.total == Some(done);
        if !complete
            && self
                .last_report
                .is_some_and(|t| now.duration_since(t) < REPORT_EVERY)
        {
            return;
        }
        self.last_report = Some(now);
        self.samples.push_back((now, done));
        while self.samples.len() > 2 && now.duration_since(self.samples[0].0) > RATE_WINDOW {
            self.samples.pop_front();
        }
        let (since, from) = match self.samples.front() {
            Some(&first) if self.samples.len() >= 2 => first,
            _ => (self.started, 0),
        };
        let seconds = now.duration_since(since).as_secs_f64();
        let rate = if seconds > 0.0 {
            done.saturating_sub(from) as f64 / seconds
        } else {
            0.0
        };
        reporter.progress(done, self.total, rate);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_never_prints() {
        let token = Token::new("  s3cret-token\n").unwrap();
        assert_eq!(format!("{token}"), "***");
        assert_eq!(format!("{token:?}"), "***");
        let target = PublishTarget::Djinn {
            url: "https://ci.example".into(),
            namespace: None,
            token,
        };
        assert!(!format!("{target:?}").contains("s3cret"));
        assert!(Token::new(" \n").is_none());
        let header = Token::new("abc").unwrap().authorization().unwrap();
        assert!(header.is_sensitive());
        assert!(matches!(
            Token::new("a\u{7}b").unwrap().authorization(),
            Err(PublishError::TokenUnusable)
        ));
    }

    #[test]
    fn token_file_must_be_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(TOKEN_FILE);
        assert!(matches!(
            read_token_file(&path),
            Err(PublishError::NoToken { .. })
        ));
        std::fs::write(&path, "tok-123\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_token_file(&path).unwrap_err();
        assert!(err.is_usage());
        let message = err.to_string();
        assert!(
            message.contains(&format!("chmod 600 {}", path.display())) && message.contains("0644"),
            "{message}"
        );
        assert!(!message.contains("tok-123"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o620)).unwrap();
        assert!(read_token_file(&path).is_err());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            read_token_file(&path).unwrap(),
            Token::new("tok-123").unwrap()
        );
    }

    fn request(image: &str, name: Option<&str>, target: PublishTarget) -> PublishRequest {
        PublishRequest {
            image: PathBuf::from(image),
            name: name.map(str::to_string),
            target,
            compact: None,
            sha256: false,
        }
    }

    fn djinn(url: &str, namespace: Option<&str>) -> PublishTarget {
        PublishTarget::Djinn {
            url: url.into(),
            namespace: namespace.map(|ns| ns.parse().unwrap()),
            token: Token::new("t").unwrap(),
        }
    }

    #[test]
    fn djinn_plans_check_name_namespace_and_url() {
        let Plan::Djinn {
            api,
            name,
            plain_http,
            ..
        } = plan(&request(
            "/x/debian-12.qcow2",
            None,
            djinn("https://ci.example/api/", Some("ci/base")),
        ))
        .unwrap()
        else {
            panic!()
        };
        assert_eq!(name, "debian-12");
        assert_eq!(api.images.as_str(), "https://ci.example/api/images");
        assert!(!plain_http);
        let plain = plan(&request(
            "/x/a.qcow2",
            None,
            djinn("http://127.0.0.1:9/", None),
        ))
        .unwrap();
        assert!(matches!(
            plain,
            Plan::Djinn {
                plain_http: true,
                ..
            }
        ));

        let cases = [
            request("/x/debian 12.qcow2", None, djinn("https://h", None)),
            request("/x/a.qcow2", Some("a.b"), djinn("https://h", None)),
            request("/x/a.qcow2", None, djinn("ftp://h", None)),
            request("/x/a.qcow2", None, djinn("https://user:pw@h", None)),
            request("/x/a.qcow2", None, djinn("not a url", None)),
        ];
        for case in cases {
            let err = plan(&case).unwrap_err();
            assert!(err.is_usage(), "{err}");
            assert!(!err.to_string().contains("pw"), "{err}");
        }
    }

    #[test]
    fn offline_and_srht_paths() {
        let dir = tempfile::tempdir().unwrap();
        let disks = dir.path().join("images");
        std::fs::create_dir(&disks).unwrap();
        let conf = dir.path().join("driver.conf");
        std::fs::write(
            &conf,
            format!("driver qemu {{\n disks \"{}\"\n}}\n", disks.display()),
        )
        .unwrap();
        let offline = |namespace: Option<&str>, base: bool| PublishTarget::Offline {
            driver_conf: conf.clone(),
            namespace: namespace.map(|ns| ns.parse().unwrap()),
            base,
            replace: false,
        };
        let Plan::File(file) = plan(&request(
            "/x/my.qcow2",
            Some("oldstable"),
            offline(Some("debian"), false),
        ))
        .unwrap() else {
            panic!()
        };
        assert_eq!(file.path, disks.join("qemu/x86_64/debian/oldstable"));
        assert_eq!(
            file.destination.manifest().unwrap(),
            "driver:\n  type: qemu\n  image: debian/oldstable"
        );
        let Plan::File(file) =
            plan(&request("/x/ci-base.qcow2", None, offline(None, true))).unwrap()
        else {
            panic!()
        };
        assert_eq!(file.path, disks.join("_base/qemu/x86_64/ci-base"));

        std::fs::create_dir_all(disks.join("qemu/x86_64")).unwrap();
        std::fs::write(disks.join("qemu/x86_64/taken"), b"x").unwrap();
        let err = plan(&request("/x/taken.qcow2", None, offline(None, false))).unwrap_err();
        assert!(matches!(err, PublishError::Exists(_)), "{err}");

        let srht = |distro: &str| PublishTarget::Srht {
            root: dir.path().to_path_buf(),
            distro: distro.into(),
            release: "12".into(),
            arch: "x86_64".into(),
            replace: false,
        };
        let Plan::File(file) =
            plan(&request("/x/whatever name.img", None, srht("debian"))).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            file.path,
            dir.path().join("debian/12/x86_64/root.img.qcow2")
        );
        assert_eq!(file.destination.manifest().unwrap(), "image: debian/12");
        for bad in ["..", "a/b", ""] {
            assert!(
                plan(&request("/x/a", None, srht(bad)))
                    .unwrap_err()
                    .is_usage()
            );
        }

        let missing = PublishTarget::Offline {
            driver_conf: dir.path().join("nope.conf"),
            namespace: None,
            base: false,
            replace: false,
        };
        let err = plan(&request("/x/a.qcow2", None, missing)).unwrap_err();
        assert!(
            matches!(err, PublishError::DriverConf { .. }) && err.is_usage(),
            "{err}"
        );
        std::fs::write(&conf, "driver qemu { disks \"relative/dir\" }\n").unwrap();
        let err = plan(&request("/x/a.qcow2", None, offline(None, false))).unwrap_err();
        assert!(err.to_string().contains("absolute"), "{err}");
    }

    #[test]
    fn failed_checks_are_listed_with_their_fixes() {
        let check = Check {
            id: "qcow2-v3",
            name: "qcow2 v3 (compat 1.1)",
            verdict: Verdict::Fail,
            detail: "compat 0.10".into(),
            fix: Some("qemu-img amend -f qcow2 -o compat=1.1 x".into()),
        };
        let err = PublishError::NotReady(vec![check]);
        let text = err.to_string();
        assert!(
            text.contains("qcow2 v3 (compat 1.1): compat 0.10"),
            "{text}"
        );
        assert!(text.contains("fix: qemu-img amend"), "{text}");
        assert!(err.is_usage());
    }
}
