//! Disk image files: size syntax, Djinn image names, `qemu-img create` and `qemu-img info`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_with::{DeserializeFromStr, SerializeDisplay};

use crate::engine::host::free_space;
use crate::engine::host::process::{ToolError, run_tool};
use crate::engine::host::temp_file::{TempFile, parent_dir};
use crate::engine::task::{Cancelled, Reporter, Summary, TaskPanicked};
use crate::engine::units::human_bytes;

const GIB: u64 = 1 << 30;
/// The Djinn image guide recommends a virtual size under 20 GB; we warn above 20 GiB so that
/// typing the documented `20G` does not warn.
pub const RECOMMENDED_MAX_SIZE: u64 = 20 * GIB;
const QEMU_IMG_TIMEOUT: Duration = Duration::from_secs(60);

/// A virtual disk size as `qemu-img` understands it (binary units).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ImageSize(pub u64);

impl ImageSize {
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ImageSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&human_bytes(self.0))
    }
}

/// A new disk's size as a person wrote it (`10G`), read once where it is typed: what it
/// means in bytes, and the text the session file records.
#[derive(Debug, Clone, PartialEq, Eq, SerializeDisplay, DeserializeFromStr)]
pub struct DiskSize {
    written: String,
    size: ImageSize,
}

impl DiskSize {
    pub fn size(&self) -> ImageSize {
        self.size
    }
}

impl std::str::FromStr for DiskSize {
    type Err = String;

    fn from_str(text: &str) -> Result<DiskSize, String> {
        Ok(DiskSize {
            written: text.trim().to_string(),
            size: parse_size(text)?,
        })
    }
}

impl fmt::Display for DiskSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.written)
    }
}

/// `10G`, `512M`, `1.5G`, `20GiB`, `1T`, `65536K` (case-insensitive, binary units).
pub fn parse_size(text: &str) -> Result<ImageSize, String> {
    let text = text.trim();
    let hint = "write a number with a unit, e.g. 10G or 512M";
    if text.is_empty() {
        return Err(format!("size is empty; {hint}"));
    }
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("`{text}` has no unit; {hint}"))?;
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return Err(format!("`{text}` does not start with a number; {hint}"));
    }
    let multiplier: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => GIB,
        "T" | "TB" | "TIB" => 1 << 40,
        _ => return Err(format!("`{unit}` is not a size unit; {hint}")),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{number}` is not a number; {hint}"))?;
    let bytes = (value * multiplier as f64).round();
    if bytes < (1u64 << 20) as f64 {
        return Err("size must be at least 1M".into());
    }
    if bytes > (64u64 << 40) as f64 {
        return Err("size must be at most 64T".into());
    }
    // qcow2 sizes are whole 512-byte sectors; round up as qemu-img would.
    let bytes = (bytes as u64).div_ceil(512) * 512;
    Ok(ImageSize(bytes))
}

/// Djinn accepts image names matching `^[a-zA-Z0-9_-]+$`.
pub fn is_valid_image_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The image name Djinn would get from this file (its stem), if it is valid.
pub fn image_name_problem(path: &Path) -> Option<String> {
    let stem = path.file_stem()?.to_string_lossy();
    (!is_valid_image_name(&stem)).then(|| {
        format!("`{stem}` is not a valid Djinn image name: use letters, digits, `_` and `-`")
    })
}

/// What `kiln create` was asked to do.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    pub path: PathBuf,
    pub size: DiskSize,
    pub force: bool,
}

/// A create request that passed validation, with what the person should know before it runs.
#[derive(Debug, Clone)]
pub struct CreatePlan {
    pub path: PathBuf,
    pub size: ImageSize,
    pub replaces_existing: bool,
    pub free_space: Option<u64>,
    pub warnings: Vec<String>,
}

/// Why an image could not be created; each message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("no image path given")]
    NoPath,
    #[error("{} already exists; pass --force to replace it", .0.display())]
    Exists(PathBuf),
    #[error("{} is a directory, not an image file", .0.display())]
    IsDirectory(PathBuf),
    #[error("directory {} does not exist; create it first (mkdir -p)", .0.display())]
    NoDirectory(PathBuf),
    #[error("cannot write in {}: {reason}", .dir.display())]
    NotWritable { dir: PathBuf, reason: String },
    #[error("{} is in use by a running QEMU; stop that machine before replacing it", .0.display())]
    InUse(PathBuf),
    #[error("qemu-img could not create the image: {0}")]
    Tool(#[from] ToolError),
    #[error("could not put the new image in place: {0}")]
    Io(#[from] std::io::Error),
    #[error("the new image does not read back as qcow2 v3: {0}")]
    ReadBack(String),
    #[error(transparent)]
    Cancelled(#[from] Cancelled),
    #[error(transparent)]
    Panicked(#[from] TaskPanicked),
}

impl CreateError {
    /// Errors about the request itself (the CLI exits 2 for these, 1 for failures while running).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            CreateError::NoPath
                | CreateError::Exists(_)
                | CreateError::IsDirectory(_)
                | CreateError::NoDirectory(_)
                | CreateError::NotWritable { .. }
                | CreateError::InUse(_)
                | CreateError::Tool(ToolError::NotFound { .. })
        )
    }
}

/// Check a create request without touching anything but a probe file.
pub async fn plan_create(request: &CreateRequest) -> Result<CreatePlan, CreateError> {
    if request.path.as_os_str().is_empty() {
        return Err(CreateError::NoPath);
    }
    let size = request.size.size();
    let path = request.path.clone();
    let dir = parent_dir(&path);
    if !dir.is_dir() {
        return Err(CreateError::NoDirectory(dir));
    }
    if path.is_dir() {
        return Err(CreateError::IsDirectory(path));
    }
    let replaces_existing = path.exists();
    if replaces_existing {
        if !request.force {
            return Err(CreateError::Exists(path));
        }
        if is_locked(&path).await {
            return Err(CreateError::InUse(path));
        }
    }
    probe_writable(&dir)?;
    let free_space = free_space(&dir);
    let mut warnings = Vec::new();
    if size.bytes() > RECOMMENDED_MAX_SIZE {
        warnings.push(format!(
            "{size} is above the recommended 20 GB; CI workers copy and boot this image for every build"
        ));
    }
    if let Some(problem) = image_name_problem(&path) {
        warnings.push(problem);
    }
    if let Some(free) = free_space
        && free < 5 * GIB
    {
        warnings.push(format!(
            "only {} free in {}; an installed system needs 2–5 GiB",
            human_bytes(free),
            dir.display()
        ));
    }
    if replaces_existing {
        warnings.push(format!("{} will be replaced", path.display()));
    }
    Ok(CreatePlan {
        path,
        size,
        replaces_existing,
        free_space,
        warnings,
    })
}

/// Run `qemu-img create -f qcow2 -o compat=1.1` for a checked plan and read the result back.
///
/// The image is written under a temporary name in the same directory and moved into place
/// only when complete, so a failure or Ctrl-C never leaves a half file where a good one was.
pub async fn create(plan: CreatePlan, reporter: Reporter) -> Result<ImageInfo, CreateError> {
    for warning in &plan.warnings {
        reporter.warn(warning.clone());
    }
    let name = plan
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // qemu-img writes into a file kiln made exclusively, never one found under a known name.
    let temp = TempFile::create(&parent_dir(&plan.path), &name, "tmp")?;
    reporter.info(format!(
        "qemu-img create -f qcow2 -o compat=1.1 {} {}",
        plan.path.display(),
        plan.size.bytes()
    ));
    let size = plan.size.bytes().to_string();
    let run = run_tool(
        "qemu-img",
        [
            "create".as_ref(),
            "-q".as_ref(),
            "-f".as_ref(),
            "qcow2".as_ref(),
            "-o".as_ref(),
            "compat=1.1".as_ref(),
            temp.path().as_os_str(),
            size.as_ref(),
        ],
        QEMU_IMG_TIMEOUT,
    );
    tokio::select! {
        result = run => { result?; }
        _ = reporter.cancelled() => return Err(Cancelled("no image was created".into()).into()),
    }
    let info = image_info(temp.path()).await?;
    if info.format != "qcow2" || info.compat.as_deref() != Some("1.1") {
        return Err(CreateError::ReadBack(format!(
            "format {}, compat {}",
            info.format,
            info.compat.as_deref().unwrap_or("unknown")
        )));
    }
    if plan.replaces_existing {
        temp.rename_to(&plan.path)?;
    } else {
        // A hard link fails if the name was taken meanwhile, so we never clobber a file that
        // appeared after validation.
        std::fs::hard_link(temp.path(), &plan.path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                CreateError::Exists(plan.path.clone())
            } else {
                CreateError::Io(e)
            }
        })?;
        drop(temp);
    }
    let info = ImageInfo {
        path: plan.path.clone(),
        ..info
    };
    Ok(info)
}

fn probe_writable(dir: &Path) -> Result<(), CreateError> {
    // Created exclusively and removed at once (dropped).
    match TempFile::create(dir, "kiln", "probe") {
        Ok(_) => Ok(()),
        Err(e) => Err(CreateError::NotWritable {
            dir: dir.to_path_buf(),
            reason: e.to_string(),
        }),
    }
}

/// True when a running QEMU holds the image's write lock.
pub async fn is_locked(path: &Path) -> bool {
    match run_tool(
        "qemu-img",
        ["info".as_ref(), "--output=json".as_ref(), path.as_os_str()],
        QEMU_IMG_TIMEOUT,
    )
    .await
    {
        Err(e) => e.stderr().is_some_and(|s| s.contains("lock")),
        Ok(_) => false,
    }
}

/// What `qemu-img info` says about an image, in the terms kiln checks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageInfo {
    pub path: PathBuf,
    pub format: String,
    pub compat: Option<String>,
    pub virtual_size: u64,
    pub actual_size: u64,
    pub backing_file: Option<String>,
    pub encrypted: bool,
}

impl Summary for ImageInfo {
    fn summary(&self) -> String {
        format!(
            "{}: {} (compat {}), virtual size {}, {} on disk",
            self.path.display(),
            self.format,
            self.compat.as_deref().unwrap_or("n/a"),
            human_bytes(self.virtual_size),
            human_bytes(self.actual_size)
        )
    }
}

#[derive(Deserialize)]
struct RawInfo {
    format: String,
    #[serde(rename = "virtual-size")]
    virtual_size: u64,
    #[serde(rename = "actual-size", default)]
    actual_size: u64,
    #[serde(rename = "backing-filename")]
    backing_filename: Option<String>,
    #[serde(default)]
    encrypted: bool,
    #[serde(rename = "format-specific")]
    format_specific: Option<RawFormatSpecific>,
}

#[derive(Deserialize)]
struct RawFormatSpecific {
    data: Option<RawQcow2Data>,
}

#[derive(Deserialize)]
struct RawQcow2Data {
    compat: Option<String>,
    #[serde(default)]
    encrypt: Option<serde_json::Value>,
}

/// Parse `qemu-img info --output=json` (QEMU 7.2 and 10.x write the same keys).
pub fn parse_info(path: &Path, json: &str) -> Result<ImageInfo, String> {
    let raw: RawInfo =
        serde_json::from_str(json).map_err(|e| format!("unexpected qemu-img info output: {e}"))?;
    let data = raw.format_specific.and_then(|f| f.data);
    let encrypted = raw.encrypted || data.as_ref().is_some_and(|d| d.encrypt.is_some());
    Ok(ImageInfo {
        path: path.to_path_buf(),
        format: raw.format,
        compat: data.and_then(|d| d.compat),
        virtual_size: raw.virtual_size,
        actual_size: raw.actual_size,
        backing_file: raw.backing_filename,
        encrypted,
    })
}

/// Run `qemu-img info --output=json` on an image.
pub async fn image_info(path: &Path) -> Result<ImageInfo, CreateError> {
    let json = run_tool(
        "qemu-img",
        ["info".as_ref(), "--output=json".as_ref(), path.as_os_str()],
        QEMU_IMG_TIMEOUT,
    )
    .await?;
    parse_info(path, &json).map_err(CreateError::ReadBack)
}

/// `qemu-img info -U`: reads the header even while a running QEMU holds the image.
pub async fn image_info_shared(path: &Path) -> Result<ImageInfo, CreateError> {
    let json = run_tool(
        "qemu-img",
        [
            "info".as_ref(),
            "-U".as_ref(),
            "--output=json".as_ref(),
            path.as_os_str(),
        ],
        QEMU_IMG_TIMEOUT,
    )
    .await?;
    parse_info(path, &json).map_err(CreateError::ReadBack)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn sizes_in_binary_units() {
        assert_eq!(parse_size("10G"), Ok(ImageSize(10 * GIB)));
        assert_eq!(parse_size("512M"), Ok(ImageSize(512 << 20)));
        assert_eq!(parse_size("512m"), Ok(ImageSize(512 << 20)));
        assert_eq!(parse_size("20GiB"), Ok(ImageSize(20 * GIB)));
        assert_eq!(parse_size(" 1.5G "), Ok(ImageSize(3 * GIB / 2)));
        assert_eq!(parse_size("1T"), Ok(ImageSize(1 << 40)));
        assert_eq!(parse_size("1025K"), Ok(ImageSize(1025 * 1024)));
    }

    #[test]
    fn size_rounds_up_to_whole_sectors() {
        assert_eq!(parse_size("1.0001M").unwrap().bytes() % 512, 0);
    }

    #[test]
    fn bad_sizes_say_what_to_write() {
        for bad in [
            "", "10", "ten G", "10X", "G", "0G", "100K", "1.2.3G", "999T",
        ] {
            let err = parse_size(bad).unwrap_err();
            assert!(!err.is_empty(), "{bad}");
        }
        assert!(parse_size("10").unwrap_err().contains("10G"));
    }

    #[test]
    fn djinn_names() {
        assert!(is_valid_image_name("debian-12_ci"));
        assert!(is_valid_image_name("A9"));
        for bad in ["", "debian.12", "deb ian", "a/b", "é", "x+y"] {
            assert!(!is_valid_image_name(bad), "{bad}");
        }
        assert!(image_name_problem(Path::new("/tmp/debian-12.qcow2")).is_none());
        assert!(image_name_problem(Path::new("/tmp/debian 12.qcow2")).is_some());
    }

    #[test]
    fn info_from_qemu_7_and_10() {
        let qemu7 = r#"{"virtual-size": 10737418240, "filename": "a.qcow2", "cluster-size": 65536,
            "format": "qcow2", "actual-size": 200704, "format-specific": {"type": "qcow2",
            "data": {"compat": "1.1", "compression-type": "zlib", "lazy-refcounts": false,
            "refcount-bits": 16, "corrupt": false, "extended-l2": false}}, "dirty-flag": false}"#;
        let info = parse_info(Path::new("a.qcow2"), qemu7).unwrap();
        assert_eq!(info.compat.as_deref(), Some("1.1"));
        assert_eq!(info.virtual_size, 10 * GIB);
        assert!(!info.encrypted && info.backing_file.is_none());

        let with_backing = r#"{"virtual-size": 1048576, "format": "qcow2", "actual-size": 1,
            "backing-filename": "base.qcow2", "encrypted": true,
            "format-specific": {"type": "qcow2", "data": {"compat": "0.10"}}}"#;
        let info = parse_info(Path::new("b"), with_backing).unwrap();
        assert_eq!(info.backing_file.as_deref(), Some("base.qcow2"));
        assert_eq!(info.compat.as_deref(), Some("0.10"));
        assert!(info.encrypted);
    }

    #[tokio::test]
    async fn plan_refuses_existing_file_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("taken.qcow2");
        std::fs::write(&path, b"keep me").unwrap();
        let request = CreateRequest {
            path: path.clone(),
            size: "1G".parse().unwrap(),
            force: false,
        };
        assert!(matches!(
            plan_create(&request).await,
            Err(CreateError::Exists(_))
        ));
    }

    #[tokio::test]
    async fn plan_refuses_missing_directory_and_warns_on_size_and_name() {
        let dir = tempfile::tempdir().unwrap();
        let request = CreateRequest {
            path: dir.path().join("nope/x.qcow2"),
            size: "1G".parse().unwrap(),
            force: false,
        };
        assert!(matches!(
            plan_create(&request).await,
            Err(CreateError::NoDirectory(_))
        ));
        let request = CreateRequest {
            path: dir.path().join("bad name.qcow2"),
            size: "30G".parse().unwrap(),
            force: false,
        };
        let plan = plan_create(&request).await.unwrap();
        assert_eq!(plan.warnings.len(), 2, "{:?}", plan.warnings);
        assert!(plan.free_space.is_some());
    }
}
