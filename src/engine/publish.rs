//! The Publish step: upload an image to a Djinn server, install it for Djinn's offline runner,
//! or place it in a builds.sr.ht image tree — after the checks the CI driver would make,
//! optionally compacted first and with a `NAME.sha256` beside it.
//!
//! Files are never read into memory: uploads stream from the file, copies go through the
//! kernel (`copy_file_range`) or a 1 MiB buffer. A local target is written under a temporary
//! name in its final directory and renamed into place only when complete.

use std::collections::VecDeque;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, LINK};
use reqwest::{StatusCode, Url};
use serde::Serialize;
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio_util::bytes::Bytes;

use super::image::{self, human_bytes, is_valid_image_name};
use super::iso::{self, IsoError};
use super::process::{ToolError, install_hint};
use super::task::{Reporter, Summary, TaskPanicked};
use super::verify::{self, Check, Verdict};

/// The environment variable that carries the Djinn API token.
pub const TOKEN_ENV: &str = "KILN_DJINN_TOKEN";
/// The token file's name inside kiln's config directory (it must be mode 0600).
pub const TOKEN_FILE: &str = "djinn-token";
/// The content type of a raw qcow2 upload (driver-contract.md §5).
pub const QEMU_DISK: &str = "application/x-qemu-disk";
/// The architecture directory the offline runner's QEMU driver boots from.
const OFFLINE_ARCH: &str = "x86_64";
/// The file name of an image in a builds.sr.ht tree.
const SRHT_IMAGE: &str = "root.img.qcow2";

/// Uploads read the file in blocks this large (the benchmark compares against `curl -T`).
const UPLOAD_BUFFER: usize = 1 << 20;
/// Upload blocks in existence at once: one being read, the others queued or being sent.
const UPLOAD_BUFFERS: usize = 4;
/// Copies move this much per step, so progress and Ctrl-C are noticed several times a second.
const COPY_CHUNK: usize = 8 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a `GET /images` page may take.
const LIST_TIMEOUT: Duration = Duration::from_secs(60);
/// An upload that moves no byte for this long has stalled.
const STALL_TIMEOUT: Duration = Duration::from_secs(120);
/// How long Djinn may take to answer once it has every byte (it stores and checks the file).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// The most of a response body kiln reads (error messages, one page of the image list).
const MAX_ANSWER: usize = 16 << 20;
/// A bound on `Link: rel="next"` pages, against a server that links in circles.
const MAX_PAGES: usize = 10_000;
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

/// Where the offline runner's driver configuration lives (`~/.config/djinn/driver.conf`).
pub fn default_driver_conf() -> Option<PathBuf> {
    directories::BaseDirs::new().map(|dirs| dirs.config_dir().join("djinn/driver.conf"))
}

/// Where an image is published to.
#[derive(Debug, Clone)]
pub enum PublishTarget {
    /// `POST /images` on a Djinn server.
    Djinn {
        /// The API base URL; `/images` lives under it.
        url: String,
        /// `path[@owner]`; `None` is the token owner's own namespace.
        namespace: Option<String>,
        token: Token,
    },
    /// `<disks>/qemu/x86_64/<namespace path>/<name>` for Djinn's offline runner.
    Offline {
        driver_conf: PathBuf,
        /// A path of letters and `/` (no owner: the runner has none).
        namespace: Option<String>,
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
}

impl PublishTarget {
    /// A few words for titles: `Djinn at https://…`, `the offline runner`, `builds.sr.ht tree …`.
    pub fn describe(&self) -> String {
        match self {
            PublishTarget::Djinn { url, .. } => format!("Djinn at {url}"),
            PublishTarget::Offline { .. } => "the offline runner".into(),
            PublishTarget::Srht { root, .. } => format!("the builds.sr.ht tree {}", root.display()),
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
}

impl Destination {
    /// The build-manifest lines that use the image, for the local targets.
    pub fn manifest(&self) -> Option<String> {
        match self {
            Destination::Djinn { .. } => None,
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
    #[error(
        "`{0}` is not a valid namespace: a path of letters and `/`, optionally followed by @owner (e.g. ci/base or ci/base@team)"
    )]
    InvalidNamespace(String),
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
    #[error("cancelled; {0}")]
    Cancelled(String),
    #[error(transparent)]
    Panicked(#[from] TaskPanicked),
}

impl PublishError {
    /// Errors about the request or the environment (the CLI exits 2 for these, 1 for failures
    /// while running).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            PublishError::InvalidName(_)
                | PublishError::InvalidNamespace(_)
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

fn tool_error(error: ToolError) -> PublishError {
    match error {
        ToolError::NotFound { .. } => PublishError::ToolMissing(error),
        other => PublishError::Compact(other),
    }
}

fn checksum_error(error: IsoError) -> PublishError {
    match error {
        IsoError::Cancelled => PublishError::Cancelled("nothing was published".into()),
        IsoError::Read { path, source } => PublishError::Io {
            action: "cannot read",
            path,
            source,
        },
        other => PublishError::Io {
            action: "cannot checksum",
            path: PathBuf::new(),
            source: std::io::Error::other(other.to_string()),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Validation: everything that can be refused before a byte moves

/// `^[a-zA-Z/]+(@[a-zA-Z0-9_-]+)?$`, the namespace syntax Djinn accepts.
pub fn is_valid_namespace(namespace: &str) -> bool {
    let (path, owner) = match namespace.split_once('@') {
        Some((path, owner)) => (path, Some(owner)),
        None => (namespace, None),
    };
    !path.is_empty()
        && path.chars().all(|c| c.is_ascii_alphabetic() || c == '/')
        && owner.is_none_or(is_valid_image_name)
}

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

/// A checked Djinn API base: `…/images` is where images live.
#[derive(Debug, Clone)]
struct Api {
    base: String,
    images: Url,
}

fn parse_api_url(url: &str) -> Result<(Api, bool), PublishError> {
    let invalid = |why: &str| PublishError::InvalidOption(format!("--url {url}: {why}"));
    let parsed = Url::parse(url.trim()).map_err(|e| invalid(&e.to_string()))?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        // Not echoed: the URL holds a secret.
        return Err(PublishError::InvalidOption(format!(
            "--url: credentials do not belong in the URL; put the token in {TOKEN_ENV} or the token file"
        )));
    }
    let plain = match parsed.scheme() {
        "https" => false,
        "http" => true,
        other => return Err(invalid(&format!("`{other}` is not http or https"))),
    };
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid("no host"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(invalid("give the API base without a query or fragment"));
    }
    let base = parsed.as_str().trim_end_matches('/').to_string();
    let images = Url::parse(&format!("{base}/images")).map_err(|e| invalid(&e.to_string()))?;
    Ok((Api { base, images }, plain))
}

/// `a/b/c` with non-empty segments of letters, for paths on disk.
fn namespace_segments(namespace: &str) -> Result<Vec<&str>, PublishError> {
    if namespace.contains('@') {
        return Err(PublishError::InvalidOption(format!(
            "namespace `{namespace}`: the offline runner has no namespace owners; drop the @owner part"
        )));
    }
    let segments: Vec<&str> = namespace.split('/').collect();
    let valid = segments
        .iter()
        .all(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphabetic()));
    if valid {
        Ok(segments)
    } else {
        Err(PublishError::InvalidNamespace(namespace.to_string()))
    }
}

/// One directory name of a builds.sr.ht tree (`debian`, `12`, `x86_64`).
fn layout_component(flag: &str, value: &str) -> Result<(), PublishError> {
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

/// A checked request: where the bytes go.
#[derive(Debug)]
enum Plan {
    Djinn {
        api: Api,
        name: String,
        namespace: Option<String>,
        token: Token,
        plain_http: bool,
    },
    File(FilePlan),
}

#[derive(Debug)]
struct FilePlan {
    path: PathBuf,
    replace: bool,
    destination: Destination,
}

fn plan(request: &PublishRequest) -> Result<Plan, PublishError> {
    match &request.target {
        PublishTarget::Djinn {
            url,
            namespace,
            token,
        } => {
            let name = image_name(request)?;
            let namespace = namespace.clone().filter(|n| !n.is_empty());
            if let Some(ns) = &namespace
                && !is_valid_namespace(ns)
            {
                return Err(PublishError::InvalidNamespace(ns.clone()));
            }
            let (api, plain_http) = parse_api_url(url)?;
            Ok(Plan::Djinn {
                api,
                name,
                namespace,
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
            let segments = match namespace.as_deref().filter(|n| !n.is_empty()) {
                Some(ns) => namespace_segments(ns)?,
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
    }
}

fn file_plan(
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
fn read_disks(driver_conf: &Path) -> Result<PathBuf, PublishError> {
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
                client: http_client()?,
                authorization: token.authorization()?,
                api,
                name,
                namespace,
            };
            djinn.publish(&request, &reporter).await?
        }
        Plan::File(plan) => install_file(&request, plan, &reporter).await?,
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
        _ = reporter.cancelled() => return Err(PublishError::Cancelled("nothing was published".into())),
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
    let failed: Vec<Check> = verify::failures(&checks).into_iter().cloned().collect();
    if !failed.is_empty() {
        return Err(PublishError::NotReady(failed));
    }
    let passed = checks.iter().filter(|c| c.verdict == Verdict::Pass).count();
    reporter.info(format!("{passed} of {} checks passed", checks.len()));
    Ok(())
}

/// A file removed when dropped, unless it was already moved away.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `.NAME.kiln-SUFFIX-PID` in `dir`: hidden, and unique to this process.
fn temp_path(dir: &Path, name: &str, suffix: &str) -> PathBuf {
    dir.join(format!(".{name}.kiln-{suffix}-{}", std::process::id()))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Offline runner and builds.sr.ht: compact or copy into a temporary file beside the final
/// one, checksum it, then move it into place.
async fn install_file(
    request: &PublishRequest,
    plan: FilePlan,
    reporter: &Reporter,
) -> Result<Outcome, PublishError> {
    let dir = parent_dir(&plan.path);
    std::fs::create_dir_all(&dir).map_err(io_error("cannot create", &dir))?;
    let name = file_name(&plan.path);
    let temp = TempFile(temp_path(&dir, &name, "tmp"));
    // A leftover of a crashed run with the same process id.
    let _ = std::fs::remove_file(&temp.0);
    let transfer = Instant::now();
    let compaction = match request.compact {
        Some(options) => {
            let sizes = compact(&request.image, &temp.0, options, reporter).await?;
            // qemu-img does not sync; the rename below must not expose a file still in memory.
            let sync = OpenOptions::new().write(true).open(&temp.0);
            sync.and_then(|f| f.sync_all())
                .map_err(io_error("cannot write", &temp.0))?;
            Some(sizes)
        }
        None => {
            reporter.info(format!(
                "copying {} to {}",
                request.image.display(),
                plan.path.display()
            ));
            let (from, to, progress) = (request.image.clone(), temp.0.clone(), reporter.clone());
            tokio::task::spawn_blocking(move || copy_file(&from, &to, &progress))
                .await
                .map_err(|e| TaskPanicked(e.to_string()))??;
            None
        }
    };
    let transfer_seconds = transfer.elapsed().as_secs_f64();
    let checksum = if request.sha256 {
        Some(sha256(&temp.0, reporter).await?)
    } else {
        None
    };
    if reporter.is_cancelled() {
        return Err(PublishError::Cancelled("nothing was installed".into()));
    }
    put_in_place(&temp.0, &plan.path, plan.replace)?;
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
    let mut target = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
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
            return Err(PublishError::Cancelled(format!(
                "stopped after copying {} of {}; nothing was installed",
                human_bytes(done),
                human_bytes(total)
            )));
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

async fn sha256(path: &Path, reporter: &Reporter) -> Result<String, PublishError> {
    reporter.info(format!("computing the SHA-256 of {}", path.display()));
    iso::sha256_file(path, reporter)
        .await
        .map_err(checksum_error)
}

/// `NAME.sha256` in `dir`, in `sha256sum` format, written atomically.
fn write_checksum(dir: &Path, name: &str, hex: String) -> Result<Checksum, PublishError> {
    let file = dir.join(format!("{name}.sha256"));
    let temp = TempFile(temp_path(dir, &format!("{name}.sha256"), "tmp"));
    std::fs::write(&temp.0, checksum_line(&hex, name))
        .map_err(io_error("cannot write", &temp.0))?;
    std::fs::rename(&temp.0, &file).map_err(io_error("cannot write", &file))?;
    Ok(Checksum { sha256: hex, file })
}

/// One line of `sha256sum` output: `HEX  NAME`.
fn checksum_line(hex: &str, name: &str) -> String {
    format!("{hex}  {name}\n")
}

// ---------------------------------------------------------------------------------------------
// Compaction

/// `qemu-img convert -p -O qcow2 -o compat=1.1 [-c] IN OUT`, with its progress passed on.
async fn compact(
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
            return Err(PublishError::Cancelled("compaction stopped; nothing was published".into()));
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
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .env_remove(TOKEN_ENV)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Its own process group: a terminal's Ctrl-C reaches kiln, which stops it cleanly.
        .process_group(0)
        .spawn()
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                ToolError::NotFound {
                    program: program.into(),
                    fix: install_hint(program),
                }
            } else {
                ToolError::Spawn {
                    program: program.into(),
                    source,
                }
            }
        })?;
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

// ---------------------------------------------------------------------------------------------
// Djinn API

fn http_client() -> Result<reqwest::Client, PublishError> {
    static PROVIDER: std::sync::Once = std::sync::Once::new();
    // reqwest is built with `rustls-no-provider`: it takes the process-wide provider. An error
    // means one is installed already, which is as good.
    PROVIDER.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder()
        // A redirected POST cannot replay a streamed body, and must not carry the token away.
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        // One long stream: HTTP/2 flow-control windows would only slow it down.
        .http1_only()
        .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| PublishError::Unreachable {
            url: String::new(),
            reason: format!("cannot set up HTTPS: {}", error_chain(&e)),
        })
}

/// An error and its causes, `outer: inner: innermost` (reqwest's own Display stops at the top).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Read at most `limit` bytes of a response body.
async fn read_limited(mut response: reqwest::Response, limit: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = limit - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= limit {
            break;
        }
    }
    body
}

/// Djinn's `{"message": "…"}`, or the start of whatever else the body says.
fn server_message(body: &[u8]) -> String {
    if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body)
        && let Some(Value::String(message)) = map.get("message")
    {
        return message.clone();
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// A 400's `{"field": ["message", …]}` as `field: message` lines.
fn field_errors(body: &[u8]) -> Vec<String> {
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else {
        let message = server_message(body);
        return vec![if message.is_empty() {
            "400 Bad Request".to_string()
        } else {
            message
        }];
    };
    let mut lines = Vec::new();
    for (field, value) in &map {
        let messages: Vec<String> = match value {
            Value::Array(items) => items
                .iter()
                .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string))
                .collect(),
            Value::String(s) => vec![s.clone()],
            other => vec![other.to_string()],
        };
        for message in messages {
            if field == "message" {
                lines.push(message);
            } else {
                lines.push(format!("{field}: {message}"));
            }
        }
    }
    lines
}

/// The `rel="next"` target of a `Link` header.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|link| {
        let link = link.trim();
        let url = link.strip_prefix('<')?.split_once('>')?;
        let is_next = url.1.split(';').any(|param| {
            param.trim().split_once('=').is_some_and(|(key, value)| {
                key.trim().eq_ignore_ascii_case("rel")
                    && value
                        .trim()
                        .trim_matches('"')
                        .split_whitespace()
                        .any(|rel| rel.eq_ignore_ascii_case("next"))
            })
        });
        is_next.then(|| url.0.to_string())
    })
}

/// The same scheme, host and port: the token is only ever sent to the server it was given for.
fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// A status with its reason, `401 Unauthorized`.
fn status_text(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

/// An image of the same name already in the namespace.
#[derive(Debug, PartialEq)]
struct Taken {
    id: Option<u64>,
}

/// Find `name` in `namespace` on one page of `GET /images`; `Err` if the page is not a list.
fn find_in_page(page: &Value, name: &str, namespace: &str) -> Result<Option<Taken>, String> {
    let Value::Array(images) = page else {
        return Err("GET /images did not answer with a list of images".into());
    };
    Ok(images.iter().find_map(|image| {
        let same_name = image.get("name").and_then(Value::as_str) == Some(name);
        let same_namespace = image.get("namespace").and_then(Value::as_str) == Some(namespace);
        (same_name && same_namespace).then(|| Taken {
            id: image.get("id").and_then(Value::as_u64),
        })
    }))
}

/// Counts bytes handed to the HTTP client and reports them as progress.
struct UploadProgress {
    sent: Arc<AtomicU64>,
    meter: Meter,
    reporter: Reporter,
}

impl UploadProgress {
    fn add(&mut self, n: usize) {
        let done = self.sent.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        self.meter.update(&self.reporter, done);
    }
}

/// One image on its way to a Djinn server.
struct DjinnUpload {
    client: reqwest::Client,
    authorization: HeaderValue,
    api: Api,
    name: String,
    namespace: Option<String>,
}

impl DjinnUpload {
    async fn publish(
        &self,
        request: &PublishRequest,
        reporter: &Reporter,
    ) -> Result<Outcome, PublishError> {
        match &self.namespace {
            Some(namespace) => {
                reporter.info(format!(
                    "looking for `{}` in {namespace} on {}",
                    self.name, self.api.base
                ));
                let found = tokio::select! {
                    found = self.find_existing(namespace, reporter) => found?,
                    _ = reporter.cancelled() => {
                        return Err(PublishError::Cancelled("nothing was published".into()));
                    }
                };
                if let Some(Taken { id }) = found {
                    return Err(PublishError::NameTaken {
                        name: self.name.clone(),
                        namespace: namespace.clone(),
                        id,
                    });
                }
            }
            None => reporter.info(
                "no namespace given: the image goes to the token owner's own namespace, where Djinn checks the name",
            ),
        }

        let source_dir = parent_dir(&request.image);
        let mut compacted = None;
        let compaction = match request.compact {
            Some(options) => {
                let temp = TempFile(temp_path(&source_dir, &self.name, "compact"));
                let sizes = compact(&request.image, &temp.0, options, reporter).await?;
                compacted = Some(temp);
                Some(sizes)
            }
            None => None,
        };
        let upload_path = compacted
            .as_ref()
            .map_or(request.image.as_path(), |temp| temp.0.as_path());
        let checksum = if request.sha256 {
            Some(sha256(upload_path, reporter).await?)
        } else {
            None
        };
        let transfer = Instant::now();
        let (id, url, bytes) = self.upload(upload_path, reporter).await?;
        let transfer_seconds = transfer.elapsed().as_secs_f64();
        drop(compacted);
        let checksum = match checksum {
            Some(hex) => Some(write_checksum(&source_dir, &self.name, hex)?),
            None => None,
        };
        let destination = Destination::Djinn {
            id,
            url,
            name: self.name.clone(),
            namespace: self.namespace.clone(),
        };
        Ok(Outcome {
            destination,
            bytes,
            transfer_seconds,
            compaction,
            checksum,
        })
    }

    fn unreachable(&self, error: &reqwest::Error) -> PublishError {
        let mut reason = error_chain(error);
        if reason.contains("certificate") {
            reason.push_str(
                "; the server's certificate is not trusted here: add its CA to the system trust store (update-ca-certificates)",
            );
        }
        PublishError::Unreachable {
            url: self.api.base.clone(),
            reason,
        }
    }

    fn no_api(&self, detail: impl Into<String>) -> PublishError {
        PublishError::NoApi {
            url: self.api.base.clone(),
            detail: detail.into(),
        }
    }

    /// Page through `GET /images` (the server has no search) for `name` in `namespace`.
    async fn find_existing(
        &self,
        namespace: &str,
        reporter: &Reporter,
    ) -> Result<Option<Taken>, PublishError> {
        let mut next = Some(self.api.images.clone());
        let mut seen = Vec::new();
        while let Some(url) = next.take() {
            if seen.contains(&url) || seen.len() >= MAX_PAGES {
                break;
            }
            seen.push(url.clone());
            let response = self
                .client
                .get(url.clone())
                .header(AUTHORIZATION, self.authorization.clone())
                .header(ACCEPT, "application/json")
                .timeout(LIST_TIMEOUT)
                .send()
                .await
                .map_err(|e| self.unreachable(&e))?;
            let status = response.status();
            let link = response
                .headers()
                .get(LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(next_link);
            match status {
                StatusCode::OK => {}
                StatusCode::UNAUTHORIZED => {
                    return Err(PublishError::TokenRejected {
                        status: status_text(status),
                    });
                }
                StatusCode::FORBIDDEN => {
                    reporter.warn(
                        "the token may not list images (no image:read scope), so kiln cannot check the name first; Djinn will check it after the upload",
                    );
                    return Ok(None);
                }
                StatusCode::NOT_FOUND => {
                    return Err(self.no_api(format!("GET {url} answered 404 Not Found")));
                }
                other => {
                    let body = read_limited(response, MAX_ANSWER).await;
                    return Err(PublishError::Unexpected {
                        status: format!("{} to GET /images", status_text(other)),
                        message: server_message(&body),
                    });
                }
            }
            let body = read_limited(response, MAX_ANSWER).await;
            let page: Value = serde_json::from_slice(&body)
                .map_err(|_| self.no_api("GET /images did not answer with JSON"))?;
            if let Some(taken) =
                find_in_page(&page, &self.name, namespace).map_err(|e| self.no_api(e))?
            {
                return Ok(Some(taken));
            }
            if let Some(link) = link {
                let target = url.join(&link).map_err(|_| {
                    self.no_api(format!(
                        "GET /images linked to a next page kiln cannot read: {link}"
                    ))
                })?;
                if !same_origin(&target, &self.api.images) {
                    reporter.warn(format!(
                        "GET /images links its next page to another server ({target}); not following it with the token, so the name check is incomplete"
                    ));
                    return Ok(None);
                }
                next = Some(target);
            }
        }
        Ok(None)
    }

    /// `POST /images?name=…&namespace=…` with the file streamed as the body.
    async fn upload(
        &self,
        path: &Path,
        reporter: &Reporter,
    ) -> Result<(Option<u64>, Option<String>, u64), PublishError> {
        let file = File::open(path).map_err(io_error("cannot read", path))?;
        let total = file
            .metadata()
            .map_err(io_error("cannot read", path))?
            .len();
        let mut url = self.api.images.clone();
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("name", &self.name);
            if let Some(namespace) = &self.namespace {
                query.append_pair("namespace", namespace);
            }
        }
        reporter.info(format!(
            "uploading {} ({}) to {}",
            path.display(),
            human_bytes(total),
            self.api.base
        ));
        let sent = Arc::new(AtomicU64::new(0));
        let mut progress = UploadProgress {
            sent: Arc::clone(&sent),
            meter: Meter::new(Some(total)),
            reporter: reporter.clone(),
        };
        progress.meter.update(reporter, 0);
        let body = file_blocks(file).map(move |chunk| {
            if let Ok(bytes) = &chunk {
                progress.add(bytes.len());
            }
            chunk
        });
        let send = self
            .client
            .post(url)
            .header(AUTHORIZATION, self.authorization.clone())
            .header(CONTENT_TYPE, QEMU_DISK)
            .header(CONTENT_LENGTH, total)
            .header(ACCEPT, "application/json")
            .body(reqwest::Body::wrap_stream(body))
            .send();
        let sent_so_far = || {
            format!(
                "{} of {} sent",
                human_bytes(sent.load(Ordering::Relaxed)),
                human_bytes(total)
            )
        };
        let response = tokio::select! {
            response = send => response,
            _ = reporter.cancelled() => {
                return Err(PublishError::Cancelled(format!(
                    "the upload stopped with {}; Djinn discards an incomplete upload, nothing was published",
                    sent_so_far()
                )));
            }
            error = watch_upload(&sent, total) => return Err(error),
        };
        let response = match response {
            Ok(response) => response,
            Err(error) => {
                let done = sent.load(Ordering::Relaxed);
                let reason = error_chain(&error);
                return Err(if error.is_connect() {
                    self.unreachable(&error)
                } else if done < total {
                    PublishError::Incomplete(format!(
                        "the connection failed with {} ({reason}); nothing was published, run the command again",
                        sent_so_far()
                    ))
                } else {
                    PublishError::Incomplete(format!(
                        "every byte was sent but the connection ended before Djinn answered ({reason}); run the command again: its name check shows whether the image arrived"
                    ))
                });
            }
        };
        let status = response.status();
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = read_limited(response, MAX_ANSWER).await;
        match status {
            StatusCode::CREATED | StatusCode::OK => {
                let image: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let id = image.get("id").and_then(Value::as_u64);
                let url = image
                    .get("url")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .or(location);
                if id.is_none() {
                    reporter.warn("Djinn accepted the image but its answer has no image id");
                }
                Ok((id, url, total))
            }
            StatusCode::BAD_REQUEST => Err(PublishError::Refused(field_errors(&body))),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(PublishError::TokenRejected {
                status: status_text(status),
            }),
            StatusCode::NOT_FOUND => Err(self.no_api("POST /images answered 404 Not Found")),
            s if s.is_server_error() => {
                let message = server_message(&body);
                Err(PublishError::Incomplete(format!(
                    "Djinn answered {}{}; run the command again later: its name check shows whether the image arrived",
                    status_text(s),
                    if message.is_empty() {
                        String::new()
                    } else {
                        format!(" ({message})")
                    }
                )))
            }
            s if s.is_redirection() => Err(PublishError::Unexpected {
                status: status_text(s),
                message: format!(
                    "a redirect to {}; give that as --url",
                    location.as_deref().unwrap_or("an unnamed place")
                ),
            }),
            s => Err(PublishError::Unexpected {
                status: status_text(s),
                message: server_message(&body),
            }),
        }
    }
}

/// A block of the file on its way to the server; dropping it hands the buffer back to the reader.
struct Block {
    data: Vec<u8>,
    len: usize,
    recycle: std::sync::mpsc::Sender<Vec<u8>>,
}

impl AsRef<[u8]> for Block {
    fn as_ref(&self) -> &[u8] {
        &self.data[..self.len]
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        let _ = self.recycle.send(std::mem::take(&mut self.data));
    }
}

/// The file as a stream of blocks, read on a blocking thread a few blocks ahead of the network
/// through [`UPLOAD_BUFFERS`] reused buffers: the bytes are copied once out of the page cache
/// and once into the socket, never in between, and nothing is allocated per block. Dropping
/// the stream stops the reader.
fn file_blocks(mut file: File) -> impl futures::Stream<Item = std::io::Result<Bytes>> {
    let (blocks, receiver) = tokio::sync::mpsc::channel(UPLOAD_BUFFERS);
    let (recycle, returned) = std::sync::mpsc::channel::<Vec<u8>>();
    tokio::task::spawn_blocking(move || {
        let mut made = 0;
        loop {
            let mut data = match returned.try_recv() {
                Ok(data) => data,
                Err(_) if made < UPLOAD_BUFFERS => {
                    made += 1;
                    vec![0u8; UPLOAD_BUFFER]
                }
                // Every buffer is out: wait until the network is done with one.
                Err(_) => match returned.recv() {
                    Ok(data) => data,
                    Err(_) => break,
                },
            };
            match read_full(&mut file, &mut data) {
                Ok(0) => break,
                Ok(len) => {
                    let block = Block {
                        data,
                        len,
                        recycle: recycle.clone(),
                    };
                    if blocks.blocking_send(Ok(Bytes::from_owner(block))).is_err() {
                        break; // the upload ended
                    }
                }
                Err(e) => {
                    let _ = blocks.blocking_send(Err(e));
                    break;
                }
            }
        }
    });
    futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|block| (block, receiver))
    })
}

/// Fill `buffer` from `file`; fewer bytes only at the end of the file.
fn read_full(file: &mut File, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Resolves with an error when the upload stops moving: no byte for [`STALL_TIMEOUT`] while
/// sending, or no answer for [`ANSWER_TIMEOUT`] once everything was sent.
async fn watch_upload(sent: &AtomicU64, total: u64) -> PublishError {
    let mut last = sent.load(Ordering::Relaxed);
    let mut since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = sent.load(Ordering::Relaxed);
        if now != last {
            last = now;
            since = Instant::now();
        } else if now < total && since.elapsed() >= STALL_TIMEOUT {
            return PublishError::Incomplete(format!(
                "nothing moved for {} s after {} of {}; nothing was published, run the command again",
                STALL_TIMEOUT.as_secs(),
                human_bytes(now),
                human_bytes(total)
            ));
        } else if now >= total && since.elapsed() >= ANSWER_TIMEOUT {
            return PublishError::Incomplete(format!(
                "Djinn did not answer within {} min of receiving the last byte; run the command again: its name check shows whether the image arrived",
                ANSWER_TIMEOUT.as_secs() / 60
            ));
        }
    }
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

// ---------------------------------------------------------------------------------------------
// driver.conf

/// A reader for Djinn's driver.conf: nginx-like `key [label] value` lines, where a value is a
/// quoted string, a bare word (number, size, duration, boolean), a `{ … }` block or a
/// `[ … ]` array; `#` starts a comment; `;` or a newline ends a line.
pub mod driver_conf {
    use std::fmt;

    /// One `key [label] value` line.
    #[derive(Debug, Clone, PartialEq)]
    pub struct Entry {
        pub key: String,
        pub label: Option<String>,
        pub value: ConfValue,
        pub line: usize,
    }

    /// The value of a line.
    #[derive(Debug, Clone, PartialEq)]
    pub enum ConfValue {
        String(String),
        /// Numbers, sizes (`2GB`), durations (`30m`), booleans and names, as written.
        Bare(String),
        Block(Vec<Entry>),
        Array(Vec<ConfValue>),
    }

    /// Where and why a driver.conf does not parse.
    #[derive(Debug, Clone, PartialEq)]
    pub struct ParseError {
        pub line: usize,
        pub message: String,
    }

    impl fmt::Display for ParseError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "line {}: {}", self.line, self.message)
        }
    }

    #[derive(Debug, Clone, PartialEq)]
    enum Tok {
        Word(String),
        Str(String),
        Open,
        Close,
        OpenList,
        CloseList,
        Comma,
        End,
    }

    fn tokens(text: &str) -> Result<Vec<(Tok, usize)>, ParseError> {
        let mut out = Vec::new();
        let mut line = 1;
        let mut chars = text.chars().peekable();
        let special = |c: char| "{}[],;\"#".contains(c) || c.is_whitespace();
        while let Some(c) = chars.next() {
            match c {
                '\n' => {
                    out.push((Tok::End, line));
                    line += 1;
                }
                ';' => out.push((Tok::End, line)),
                c if c.is_whitespace() => {}
                '#' => {
                    while chars.peek().is_some_and(|&c| c != '\n') {
                        chars.next();
                    }
                }
                '{' => out.push((Tok::Open, line)),
                '}' => out.push((Tok::Close, line)),
                '[' => out.push((Tok::OpenList, line)),
                ']' => out.push((Tok::CloseList, line)),
                ',' => out.push((Tok::Comma, line)),
                '"' => {
                    let mut value = String::new();
                    loop {
                        match chars.next() {
                            Some('"') => break,
                            Some('\\') => match chars.next() {
                                Some('"') => value.push('"'),
                                Some('\\') => value.push('\\'),
                                Some(other) => {
                                    value.push('\\');
                                    value.push(other);
                                }
                                None => break,
                            },
                            Some('\n') | None => {
                                return Err(ParseError {
                                    line,
                                    message: "a quoted string is not closed on its line".into(),
                                });
                            }
                            Some(other) => value.push(other),
                        }
                    }
                    out.push((Tok::Str(value), line));
                }
                c => {
                    let mut word = String::from(c);
                    while let Some(&next) = chars.peek() {
                        if special(next) {
                            break;
                        }
                        word.push(next);
                        chars.next();
                    }
                    out.push((Tok::Word(word), line));
                }
            }
        }
        Ok(out)
    }

    struct Parser {
        tokens: Vec<(Tok, usize)>,
        at: usize,
    }

    impl Parser {
        fn peek(&self) -> Option<&Tok> {
            self.tokens.get(self.at).map(|(t, _)| t)
        }

        fn line(&self) -> usize {
            self.tokens
                .get(self.at)
                .or(self.tokens.last())
                .map_or(1, |(_, l)| *l)
        }

        fn next(&mut self) -> Option<Tok> {
            let tok = self.tokens.get(self.at).map(|(t, _)| t.clone());
            self.at += 1;
            tok
        }

        fn error<T>(&self, message: impl Into<String>) -> Result<T, ParseError> {
            Err(ParseError {
                line: self.line(),
                message: message.into(),
            })
        }

        fn skip_ends(&mut self) {
            while self.peek() == Some(&Tok::End) {
                self.at += 1;
            }
        }

        /// Lines until `}` (inside a block opened on line `opened`) or the end of the text.
        fn entries(&mut self, opened: Option<usize>) -> Result<Vec<Entry>, ParseError> {
            let mut entries = Vec::new();
            loop {
                self.skip_ends();
                match self.peek() {
                    None => {
                        return match opened {
                            Some(line) => Err(ParseError {
                                line,
                                message: "this `{` block is not closed".into(),
                            }),
                            None => Ok(entries),
                        };
                    }
                    Some(Tok::Close) if opened.is_some() => {
                        self.at += 1;
                        return Ok(entries);
                    }
                    Some(Tok::Close) => return self.error("`}` without a block to close"),
                    Some(Tok::Word(_)) => entries.push(self.entry()?),
                    Some(other) => {
                        return self.error(format!("expected a name, found {}", describe(other)));
                    }
                }
            }
        }

        fn entry(&mut self) -> Result<Entry, ParseError> {
            let line = self.line();
            let Some(Tok::Word(key)) = self.next() else {
                unreachable!("entry starts at a word")
            };
            let mut words = Vec::new();
            while let Some(Tok::Word(word)) = self.peek() {
                words.push(word.clone());
                self.at += 1;
            }
            let value = match self.peek() {
                Some(Tok::Open | Tok::OpenList | Tok::Str(_)) => Some(self.value()?),
                _ => None,
            };
            let (label, value) = match (value, words.len()) {
                (Some(value), 0) => (None, value),
                (Some(value), 1) => (words.pop(), value),
                (None, 1) => (None, ConfValue::Bare(words.remove(0))),
                (None, 2) => {
                    let value = ConfValue::Bare(words.remove(1));
                    (words.pop(), value)
                }
                (None, 0) => return self.error(format!("`{key}` has no value")),
                _ => return self.error(format!("`{key}` has too many words before its value")),
            };
            match self.peek() {
                None | Some(Tok::End | Tok::Close) => {}
                Some(other) => {
                    return self.error(format!(
                        "unexpected {} after the value of `{key}`",
                        describe(other)
                    ));
                }
            }
            Ok(Entry {
                key,
                label,
                value,
                line,
            })
        }

        fn value(&mut self) -> Result<ConfValue, ParseError> {
            let line = self.line();
            match self.next() {
                Some(Tok::Str(s)) => Ok(ConfValue::String(s)),
                Some(Tok::Word(w)) => Ok(ConfValue::Bare(w)),
                Some(Tok::Open) => Ok(ConfValue::Block(self.entries(Some(line))?)),
                Some(Tok::OpenList) => {
                    let mut items = Vec::new();
                    loop {
                        self.skip_ends();
                        if self.peek() == Some(&Tok::CloseList) {
                            self.at += 1;
                            return Ok(ConfValue::Array(items));
                        }
                        items.push(self.value()?);
                        self.skip_ends();
                        match self.next() {
                            Some(Tok::Comma) => {}
                            Some(Tok::CloseList) => return Ok(ConfValue::Array(items)),
                            _ => {
                                self.at -= 1;
                                return self.error("expected `,` or `]` in an array");
                            }
                        }
                    }
                }
                Some(other) => {
                    self.at -= 1;
                    self.error(format!("expected a value, found {}", describe(&other)))
                }
                None => self.error("expected a value, found the end of the file"),
            }
        }
    }

    fn describe(tok: &Tok) -> String {
        match tok {
            Tok::Word(w) => format!("`{w}`"),
            Tok::Str(s) => format!("\"{s}\""),
            Tok::Open => "`{`".into(),
            Tok::Close => "`}`".into(),
            Tok::OpenList => "`[`".into(),
            Tok::CloseList => "`]`".into(),
            Tok::Comma => "`,`".into(),
            Tok::End => "the end of the line".into(),
        }
    }

    /// Parse a whole driver.conf.
    pub fn parse(text: &str) -> Result<Vec<Entry>, ParseError> {
        let mut parser = Parser {
            tokens: tokens(text)?,
            at: 0,
        };
        parser.entries(None)
    }

    /// The `disks` directory of the `driver qemu { … }` block.
    pub fn qemu_disks(entries: &[Entry]) -> Result<String, String> {
        let block = entries
            .iter()
            .find_map(|e| match &e.value {
                ConfValue::Block(body)
                    if e.key == "driver" && e.label.as_deref() == Some("qemu") =>
                {
                    Some(body)
                }
                _ => None,
            })
            .ok_or("it has no `driver qemu { … }` block")?;
        match block.iter().find(|e| e.key == "disks").map(|e| &e.value) {
            Some(ConfValue::String(dir) | ConfValue::Bare(dir)) if !dir.is_empty() => {
                Ok(dir.clone())
            }
            Some(_) => Err("`disks` in `driver qemu` must be a directory in quotes".into()),
            None => Err("`driver qemu { … }` has no `disks \"DIR\"` line".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::driver_conf::{ConfValue, parse, qemu_disks};
    use super::*;
    use crate::engine::task;

    const DIST_CONF: &str = r#"# The driver.cfg file details global configuration for drivers.

driver ssh {
	# Timeout is how long an SSH connection waits.
	timeout "60s"
	user "root"
}

driver docker {
	host "unix:///var/run/docker.sock"
	version "1.40"
}

driver qemu {
	# Disks denotes the location of the QCOW2 images.
	disks  "/var/lib/djinn/images"
	cpus 2
	memory 2048
}
"#;

    #[test]
    fn reads_disks_from_the_distributed_driver_conf() {
        let entries = parse(DIST_CONF).unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[2].key, "driver");
        assert_eq!(entries[2].label.as_deref(), Some("qemu"));
        assert_eq!(entries[2].line, 14);
        let ConfValue::Block(qemu) = &entries[2].value else {
            panic!("{:?}", entries[2]);
        };
        assert_eq!(qemu[1].value, ConfValue::Bare("2".into()));
        assert_eq!(qemu_disks(&entries).unwrap(), "/var/lib/djinn/images");
    }

    #[test]
    fn parses_the_rest_of_the_language() {
        let text = r#"
pidfile "/run/djinn.pid"; parallelism 0
log info "/var/log/djinn/worker.log"
provider github
timeout 1h30m
limit 2GB
nested {
    deeper label { value "a \"quoted\" \\ word" }   # comment after a block
    list [ "a", 1,
           true, { x 1 } ]
    empty []
}
"#;
        let entries = parse(text).unwrap();
        let keys: Vec<_> = entries.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "pidfile",
                "parallelism",
                "log",
                "provider",
                "timeout",
                "limit",
                "nested"
            ]
        );
        assert_eq!(entries[2].label.as_deref(), Some("info"));
        assert_eq!(entries[3].value, ConfValue::Bare("github".into()));
        assert_eq!(entries[4].value, ConfValue::Bare("1h30m".into()));
        let ConfValue::Block(nested) = &entries[6].value else {
            panic!()
        };
        let ConfValue::Block(deeper) = &nested[0].value else {
            panic!()
        };
        assert_eq!(nested[0].label.as_deref(), Some("label"));
        assert_eq!(
            deeper[0].value,
            ConfValue::String(r#"a "quoted" \ word"#.into())
        );
        let ConfValue::Array(list) = &nested[1].value else {
            panic!()
        };
        assert_eq!(list.len(), 4);
        assert!(matches!(&list[3], ConfValue::Block(b) if b[0].key == "x"));
        assert_eq!(nested[2].value, ConfValue::Array(vec![]));
    }

    #[test]
    fn broken_files_say_where() {
        for (text, line, words) in [
            ("\ndriver qemu {\n disks \"/x\"\n", 2, "not closed"),
            ("driver qemu {\n disks \"/x\n}\n", 2, "not closed"),
            ("}\n", 1, "without a block"),
            ("a\n", 1, "has no value"),
            ("a b c d\n", 1, "too many words"),
            ("a [1 2]\n", 1, "`,` or `]`"),
            ("a \"x\" y\n", 1, "unexpected"),
        ] {
            let err = parse(text).unwrap_err();
            assert_eq!(err.line, line, "{text:?}: {err}");
            assert!(err.message.contains(words), "{text:?}: {err}");
        }
        let err = qemu_disks(&parse("driver ssh { user \"root\" }").unwrap()).unwrap_err();
        assert!(err.contains("driver qemu"), "{err}");
        let err = qemu_disks(&parse("driver qemu { cpus 1 }").unwrap()).unwrap_err();
        assert!(err.contains("disks"), "{err}");
    }

    #[test]
    fn env_vars_in_disks_are_expanded() {
        let home = std::env::var("HOME").unwrap_or_default();
        assert_eq!(expand_env("${HOME}/img").unwrap(), format!("{home}/img"));
        assert_eq!(expand_env("/plain").unwrap(), "/plain");
        assert!(expand_env("${KILN_SURELY_UNSET_VARIABLE}/x").is_err());
        assert!(expand_env("${HOME").is_err());
    }

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

    #[test]
    fn names_and_namespaces() {
        for good in ["ci", "ci/base", "a/b/c", "ci/base@team-1", "x@y_z"] {
            assert!(is_valid_namespace(good), "{good}");
        }
        for bad in [
            "", "ci-base", "ci/base2", "@team", "ci@", "ci@a/b", "ci base",
        ] {
            assert!(!is_valid_namespace(bad), "{bad}");
        }
        assert_eq!(
            namespace_segments("debian/stable").unwrap(),
            ["debian", "stable"]
        );
        for bad in ["/debian", "debian/", "a//b", "deb1an"] {
            assert!(namespace_segments(bad).is_err(), "{bad}");
        }
        assert!(
            namespace_segments("ci@team")
                .unwrap_err()
                .to_string()
                .contains("owner")
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
            namespace: namespace.map(str::to_string),
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
            request("/x/a.qcow2", None, djinn("https://h", Some("ci-base"))),
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
            namespace: namespace.map(str::to_string),
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
    fn link_headers() {
        assert_eq!(
            next_link(r#"<https://h/images?page=2>; rel="next""#).as_deref(),
            Some("https://h/images?page=2")
        );
        assert_eq!(
            next_link(
                r#"<https://h/images?page=1>; rel="prev", <https://h/images?page=3>; rel=next"#
            )
            .as_deref(),
            Some("https://h/images?page=3")
        );
        assert_eq!(next_link(r#"<https://h/images?page=1>; rel="prev""#), None);
        assert_eq!(next_link("garbage"), None);
        let a = Url::parse("https://h/images").unwrap();
        assert!(same_origin(
            &a,
            &Url::parse("https://h:443/images?page=2").unwrap()
        ));
        assert!(!same_origin(
            &a,
            &Url::parse("https://evil/images").unwrap()
        ));
        assert!(!same_origin(&a, &Url::parse("http://h/images").unwrap()));
    }

    #[test]
    fn server_answers_become_messages() {
        let lines = field_errors(br#"{"name":["image already exists"],"namespace":["a","b"]}"#);
        assert_eq!(
            lines,
            ["name: image already exists", "namespace: a", "namespace: b"]
        );
        assert_eq!(field_errors(b"<html>bad</html>"), ["<html>bad</html>"]);
        assert_eq!(
            server_message(br#"{"message":"invalid token"}"#),
            "invalid token"
        );
        let err = PublishError::Refused(lines);
        assert!(
            err.to_string()
                .contains("name: image already exists; namespace: a")
        );

        let page: Value = serde_json::json!([
            {"id": 1, "name": "debian", "namespace": "ci/base"},
            {"id": 2, "name": "debian", "namespace": "ci"},
        ]);
        assert_eq!(
            find_in_page(&page, "debian", "ci").unwrap(),
            Some(Taken { id: Some(2) })
        );
        assert_eq!(find_in_page(&page, "alpine", "ci").unwrap(), None);
        assert!(find_in_page(&serde_json::json!({"images": []}), "a", "b").is_err());
    }

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

    #[tokio::test]
    async fn copy_reports_progress_and_stops_when_cancelled() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("from");
        let data: Vec<u8> = (0..(COPY_CHUNK * 2 + 12_345))
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(&from, &data).unwrap();

        let to = dir.path().join("to");
        let mut task = task::spawn("copy", {
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
        assert!(
            copy_file(&from, &to, &test_reporter()).is_err(),
            "an existing file is never overwritten"
        );

        let to = dir.path().join("cancelled");
        let task = task::spawn("copy", {
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
        assert!(matches!(err, PublishError::Cancelled(_)), "{err}");
    }

    #[tokio::test]
    async fn upload_blocks_carry_the_whole_file_through_reused_buffers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("image");
        // More blocks than buffers, and a short last block.
        let data: Vec<u8> = (0..(UPLOAD_BUFFER * (UPLOAD_BUFFERS + 3) + 777))
            .map(|i| (i % 253) as u8)
            .collect();
        std::fs::write(&path, &data).unwrap();
        let mut blocks = std::pin::pin!(file_blocks(File::open(&path).unwrap()));
        let mut received = Vec::new();
        let mut count = 0;
        while let Some(block) = blocks.next().await {
            let block = block.unwrap();
            assert!(block.len() == UPLOAD_BUFFER || received.len() + block.len() == data.len());
            received.extend_from_slice(&block);
            count += 1;
        }
        assert_eq!(count, UPLOAD_BUFFERS + 4);
        assert!(received == data, "the blocks differ from the file");

        // Dropping the stream mid-file stops the reader instead of leaving it blocked.
        let mut blocks = Box::pin(file_blocks(File::open(&path).unwrap()));
        let first = blocks.next().await.unwrap().unwrap();
        drop(blocks);
        drop(first);
    }

    #[derive(Debug)]
    struct Copied(u64);
    impl Summary for Copied {
        fn summary(&self) -> String {
            format!("{} bytes", self.0)
        }
    }

    fn test_reporter() -> Reporter {
        let mut reporter = None;
        let _ = task::spawn("probe", |r: Reporter| {
            reporter = Some(r);
            async { Ok::<_, PublishError>(Copied(0)) }
        });
        reporter.unwrap()
    }
}
