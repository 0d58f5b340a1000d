//! The session file: what kiln has done to one image, so a person (or `kiln run`) can stop and
//! come back. It sits next to the image as `NAME.kiln.toml` and records each step's outcome,
//! the choices made (ISO, user, variant, target…) and the image's fingerprint when the step
//! ended — never a password, passphrase or token.
//!
//! A step is *stale* when what it vouched for no longer holds: an earlier step ran again after
//! it, or (for verify and publish, which do not change the image) the image changed since.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_with::{DeserializeFromStr, SerializeDisplay};

use super::Step;
use super::driver::Profile;
use crate::engine::files::qcow2_header;
use crate::engine::host::config::toml_problem;
use crate::engine::host::temp_file::{TempFile, parent_dir};
use crate::engine::host::vcpus::Vcpus;
use crate::engine::steps::configure::{Cleanup, SshdVariant};
use crate::engine::steps::image::DiskSize;
use crate::engine::steps::install::boot_command::{BootCommand, WrittenDuration};
use crate::engine::steps::publish::{Namespace, RemotePath, TargetKind};

/// The session file of `image`: `disk.qcow2` → `disk.kiln.toml` beside it.
pub fn session_path(image: &Path) -> PathBuf {
    let name = image
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(".qcow2").unwrap_or(&name);
    image.with_file_name(format!("{stem}.kiln.toml"))
}

/// Size and modification time: cheap to read, and changed by anything that writes the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub size: u64,
    pub modified_ns: i64,
}

impl Fingerprint {
    pub fn of(image: &Path) -> Option<Fingerprint> {
        let meta = std::fs::metadata(image).ok()?;
        let modified = meta.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
        Some(Fingerprint {
            size: meta.len(),
            modified_ns: i64::try_from(modified.as_nanos()).ok()?,
        })
    }
}

/// How a step's last run ended, as written in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Started and not yet ended (or the kiln running it died: see `pid`).
    Running,
    Done,
    Failed,
    /// The person (or a signal) stopped it: not a failure; resume runs it again.
    Stopped,
    /// Not run by kiln: the image existed already, or it came installed.
    Skipped,
}

/// What a record in the session file is about: one of the five steps, or a stage only a
/// plan with more in it runs (a recipe's provisioning, its cleanup, its post-build command).
/// Written as the step's name, `provision-N` (counted from 1), `cleanup` or `post-build`, so a
/// session file written before these existed still loads.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, SerializeDisplay, DeserializeFromStr,
)]
pub enum StageKey {
    Step(Step),
    Provision(usize),
    Cleanup,
    PostBuild,
}

impl From<Step> for StageKey {
    fn from(step: Step) -> StageKey {
        StageKey::Step(step)
    }
}

impl std::fmt::Display for StageKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StageKey::Step(step) => f.write_str(step.name()),
            StageKey::Provision(number) => write!(f, "provision-{number}"),
            StageKey::Cleanup => f.write_str("cleanup"),
            StageKey::PostBuild => f.write_str("post-build"),
        }
    }
}

impl std::str::FromStr for StageKey {
    type Err = String;

    fn from_str(text: &str) -> Result<StageKey, String> {
        if let Some(step) = Step::ALL.into_iter().find(|s| s.name() == text) {
            return Ok(StageKey::Step(step));
        }
        match text {
            "cleanup" => return Ok(StageKey::Cleanup),
            "post-build" => return Ok(StageKey::PostBuild),
            _ => {}
        }
        text.strip_prefix("provision-")
            .and_then(|n| n.parse().ok())
            .filter(|n| *n > 0)
            .map(StageKey::Provision)
            .ok_or_else(|| format!("unknown stage `{text}`"))
    }
}

/// One step's (or stage's) last run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    pub outcome: Outcome,
    /// Order of runs within this session: a larger number started later.
    pub seq: u64,
    /// Seconds since the Unix epoch.
    pub started: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<u64>,
    /// The kiln process running the step, while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// The image when the step ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<Fingerprint>,
    /// The result or the error, in one line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// A digest of what the stage ran with (a provisioning script's bytes, its variables…):
    /// a changed input makes a done stage run again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<String>,
}

/// The choices a person made, carried from step to step and from one kiln run to the next.
/// Secrets are deliberately absent: they are asked for (or read from files) each time.
// Every choice is optional and only those made are written (`skip_serializing_none`).
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Choices {
    #[serde(deserialize_with = "parsed_if_valid")]
    pub size: Option<DiskSize>,
    pub iso: Option<PathBuf>,
    /// 64 hex digits or a SHA256SUMS file, as given.
    pub iso_checksum: Option<String>,
    /// Keys typed into the installer's boot menu (Packer's syntax; secrets only by
    /// `{{ env "VAR" }}`, never as text). Empty: none, even where one was recorded before.
    #[serde(deserialize_with = "parsed_if_valid")]
    pub boot_command: Option<BootCommand>,
    /// Before the first key.
    #[serde(deserialize_with = "parsed_if_valid")]
    pub boot_wait: Option<WrittenDuration>,
    #[serde(deserialize_with = "parsed_if_valid")]
    pub key_interval: Option<WrittenDuration>,
    /// Served to the installer at http://10.0.2.2:PORT/.
    pub http_dir: Option<PathBuf>,
    pub http_port: Option<u16>,
    /// Boot the installer's kernel from the ISO directly.
    pub kernel_boot: Option<bool>,
    /// Kernel and initrd paths inside the ISO (found by its layout when unset); without an
    /// ISO, netboot files: paths on this host or URLs.
    pub kernel: Option<String>,
    pub initrd: Option<String>,
    /// The netboot files' checksums: 64 hex digits, or a SHA256SUMS URL/file (`LIST#PATH`).
    pub kernel_sha256: Option<String>,
    pub initrd_sha256: Option<String>,
    pub kernel_args: Option<String>,
    /// The installer on the serial console (`console=ttyS0,115200n8`).
    pub serial_console: Option<bool>,
    /// A built-in answer file (`debian-12`), filled in with the user and password.
    pub preset: Option<String>,
    /// The package mirror a preset installs from (http://HOST/DIR).
    pub mirror: Option<String>,
    /// Install from an unsigned mirror (a local test mirror): signature checks off.
    pub insecure_mirror: Option<bool>,
    pub memory_mib: Option<u32>,
    pub cpus: Option<Vcpus>,
    pub user: Option<String>,
    pub key: Option<PathBuf>,
    /// sshd_config variant: reference or pam.
    pub variant: Option<SshdVariant>,
    /// An sshd_config file of the person's own, instead of a variant.
    pub sshd_config: Option<PathBuf>,
    /// The clean-ups after configure, virt-sysprep's words: `defaults,-ssh-hostkeys`.
    pub cleanup: Option<Cleanup>,
    /// Driver to imitate when verifying: djinn or srht.
    pub profile: Option<Profile>,
    /// Publish target: djinn, offline, srht or rsync.
    pub target: Option<TargetKind>,
    pub name: Option<String>,
    #[serde(deserialize_with = "parsed_if_valid")]
    pub namespace: Option<Namespace>,
    pub url: Option<String>,
    pub driver_conf: Option<PathBuf>,
    pub root: Option<PathBuf>,
    /// builds.sr.ht `distro/release`.
    pub release: Option<String>,
    /// builds.sr.ht architecture directory (x86_64 when not chosen).
    pub arch: Option<String>,
    /// Offline runner: install as a worker base image.
    pub base: Option<bool>,
    pub compact: Option<bool>,
    pub compress: Option<bool>,
    pub sha256: Option<bool>,
    /// Replace an image of the same name (every target but Djinn).
    pub replace: Option<bool>,
    /// rsync: `[user@]host:path`, a directory when it ends with `/`.
    #[serde(deserialize_with = "parsed_if_valid")]
    pub dest: Option<RemotePath>,
    /// A cloud image the image was copied from (`kiln run --base`); only ever read.
    pub base_image: Option<PathBuf>,
    /// The base's SHA-256 when it was copied.
    pub base_sha256: Option<String>,
    /// Configure through a NoCloud seed kiln writes (the image is a cloud image).
    pub cloud_init: Option<bool>,
    /// The person's own user-data, merged into kiln's seed.
    pub user_data: Option<PathBuf>,
    /// Leave the seed's build user in the published image.
    pub keep_build_user: Option<bool>,
}

impl Choices {
    /// Whether the system comes from a distribution's cloud image copied over the disk (and
    /// configure gets in through kiln's NoCloud seed), not from an installer.
    pub fn starts_from_cloud_image(&self) -> bool {
        self.cloud_init == Some(true)
    }

    /// Take every choice `newer` makes; keep ours where it says nothing.
    pub fn update(&mut self, newer: &Choices) {
        macro_rules! take {
            ($($field:ident),*) => {
                $( if newer.$field.is_some() { self.$field = newer.$field.clone(); } )*
            };
        }
        take!(
            size,
            iso,
            iso_checksum,
            boot_command,
            boot_wait,
            key_interval,
            http_dir,
            http_port,
            kernel_boot,
            kernel,
            initrd,
            kernel_sha256,
            initrd_sha256,
            kernel_args,
            serial_console,
            preset,
            mirror,
            insecure_mirror,
            memory_mib,
            cpus,
            user,
            key,
            variant,
            sshd_config,
            cleanup,
            profile,
            target,
            name,
            namespace,
            url,
            driver_conf,
            root,
            release,
            arch,
            base,
            compact,
            compress,
            sha256,
            replace,
            dest,
            base_image,
            base_sha256,
            cloud_init,
            user_data,
            keep_build_user
        );
    }
}

/// A recorded choice that is checked where it is typed (a namespace, a boot command), or none
/// when a session file from before that check holds one that does not parse: the person is
/// asked again rather than the whole session refused.
fn parsed_if_valid<'de, D: serde::Deserializer<'de>, T: std::str::FromStr>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    let text = Option::<String>::deserialize(deserializer)?;
    Ok(text.and_then(|text| text.parse().ok()))
}

/// Where a step stands now, as the step list and `kiln run` see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepStatus {
    Pending,
    /// Another live kiln is running it.
    Running {
        pid: u32,
    },
    /// A kiln started it and died (killed, crashed, machine lost power).
    Interrupted,
    /// Stopped on request (Esc, Ctrl-C, SIGTERM) before it ended.
    Stopped,
    Done,
    Skipped,
    Failed(String),
    /// It ran, but what it vouched for no longer holds; the reason says why.
    Stale(String),
}

impl StepStatus {
    /// Done (or skipped) and still true: the flow can go past it.
    pub fn is_settled(&self) -> bool {
        matches!(self, StepStatus::Done | StepStatus::Skipped)
    }

    /// One word for lists and logs.
    pub fn word(&self) -> &'static str {
        match self {
            StepStatus::Pending => "pending",
            StepStatus::Running { .. } => "running",
            StepStatus::Interrupted => "interrupted",
            StepStatus::Stopped => "stopped",
            StepStatus::Done => "done",
            StepStatus::Skipped => "skipped",
            StepStatus::Failed(_) => "failed",
            StepStatus::Stale(_) => "stale",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("no image path given")]
    NoImage,
    #[error("cannot read the session file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("the session file {0} is not valid ({1}); move it away to start over")]
    Parse(PathBuf, String),
    #[error("cannot write the session file {0}: {1}")]
    Write(PathBuf, std::io::Error),
    #[error("{stage} is already running in kiln pid {pid} on this image")]
    Busy { stage: String, pid: u32 },
}

/// What kiln knows about one image's journey.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// Where this session is saved (not written into the file).
    #[serde(skip)]
    path: PathBuf,
    /// The image, as it was given.
    #[serde(skip)]
    image: PathBuf,
    /// Whether changes are written to the file (a one-off command on an image without a
    /// session keeps its record in memory and leaves no file behind).
    #[serde(skip)]
    persist: bool,
    #[serde(default)]
    pub choices: Choices,
    #[serde(default)]
    steps: BTreeMap<StageKey, StepRecord>,
}

impl Session {
    /// The session of `image`: read from its file, or new (nothing done yet) if there is none.
    pub fn open(image: &Path) -> Result<Session, SessionError> {
        // An empty path would name `.kiln.toml` in the working directory: no image's record.
        if image.as_os_str().is_empty() {
            return Err(SessionError::NoImage);
        }
        let path = session_path(image);
        let mut session = match std::fs::read(&path) {
            Ok(bytes) => {
                let text = String::from_utf8(bytes).map_err(|_| {
                    SessionError::Parse(path.clone(), "it is not UTF-8 text".into())
                })?;
                toml::from_str::<Session>(&text)
                    .map_err(|e| SessionError::Parse(path.clone(), toml_problem(&text, &e)))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Session::default(),
            Err(e) => return Err(SessionError::Read(path, e)),
        };
        session.path = path;
        session.image = image.to_path_buf();
        session.persist = true;
        Ok(session)
    }

    /// The session of `image` if it has a file; otherwise one kept in memory only.
    pub fn open_if_exists(image: &Path) -> Result<Session, SessionError> {
        let mut session = Session::open(image)?;
        session.persist = session.path.exists();
        Ok(session)
    }

    /// Forget every record and choice, keeping where the session lives (a fresh build).
    pub fn start_over(&mut self) {
        self.steps.clear();
        self.choices = Choices::default();
    }

    /// Whether this session is written to its file.
    pub fn is_persistent(&self) -> bool {
        self.persist
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn image(&self) -> &Path {
        &self.image
    }

    /// Whether any step was ever recorded (a file existed or has been written).
    pub fn is_new(&self) -> bool {
        self.steps.is_empty()
    }

    pub fn record(&self, stage: impl Into<StageKey>) -> Option<&StepRecord> {
        self.steps.get(&stage.into())
    }

    /// Where `step` stands now, judged against the image on disk.
    pub fn status(&self, step: Step) -> StepStatus {
        self.stage_status(step)
    }

    /// Where a step or stage stands now. The five steps are judged against the image on disk
    /// and each other; other stages by their record alone (the plan knows what they follow).
    pub fn stage_status(&self, stage: impl Into<StageKey>) -> StepStatus {
        let stage = stage.into();
        let Some(record) = self.steps.get(&stage) else {
            return StepStatus::Pending;
        };
        match record.outcome {
            Outcome::Running => {
                return match record.pid {
                    Some(pid)
                        if pid == std::process::id()
                            || crate::engine::host::process::is_kiln_running(pid) =>
                    {
                        StepStatus::Running { pid }
                    }
                    _ => StepStatus::Interrupted,
                };
            }
            Outcome::Failed => {
                return StepStatus::Failed(record.summary.clone().unwrap_or_default());
            }
            Outcome::Stopped => return StepStatus::Stopped,
            Outcome::Done | Outcome::Skipped => {}
        }
        if let StageKey::Step(step) = stage
            && let Some(reason) = self.staleness(step, record)
        {
            return StepStatus::Stale(reason);
        }
        match record.outcome {
            Outcome::Skipped => StepStatus::Skipped,
            _ => StepStatus::Done,
        }
    }

    fn staleness(&self, step: Step, record: &StepRecord) -> Option<String> {
        let current = Fingerprint::of(&self.image);
        if current.is_none() {
            return Some(format!("{} no longer exists", self.image.display()));
        }
        for earlier in Step::ALL.iter().take_while(|s| **s != step) {
            if let Some(other) = self.steps.get(&(*earlier).into())
                && other.seq > record.seq
            {
                return Some(format!(
                    "{} ran again after it",
                    earlier.title().to_lowercase()
                ));
            }
        }
        // Verify and publish vouch for the exact bytes they saw; they never change them.
        let vouches_for_bytes = matches!(step, Step::Verify | Step::Publish);
        if vouches_for_bytes && record.image.is_some() && record.image != current {
            return Some("the image changed since".into());
        }
        None
    }

    /// The first step that is not done (or no longer true): where the flow resumes.
    pub fn resume_at(&self) -> Option<Step> {
        Step::ALL
            .into_iter()
            .find(|step| !self.status(*step).is_settled())
    }

    /// Publish only what was verified, as it is now.
    pub fn publish_allowed(&self) -> Result<(), String> {
        match self.status(Step::Verify) {
            StepStatus::Done => Ok(()),
            StepStatus::Stale(reason) => Err(format!(
                "verify is stale ({reason}): run verify again before publishing"
            )),
            StepStatus::Failed(_) => {
                Err("verify failed: fix the image and verify it again before publishing".into())
            }
            other => Err(format!(
                "verify has not passed yet ({}): run verify before publishing",
                other.word()
            )),
        }
    }

    /// A step (or stage) starts in this process; refused if a live kiln is already on it.
    pub fn begin(&mut self, stage: impl Into<StageKey>) -> Result<(), SessionError> {
        let stage = stage.into();
        if let Some(pid) = self.steps.get(&stage).and_then(running_elsewhere) {
            let name = match stage {
                StageKey::Step(step) => step.title().to_string(),
                other => other.to_string(),
            };
            return Err(SessionError::Busy { stage: name, pid });
        }
        let seq = self.next_seq();
        self.steps.insert(
            stage,
            StepRecord {
                outcome: Outcome::Running,
                seq,
                started: now(),
                ended: None,
                pid: Some(std::process::id()),
                image: None,
                summary: None,
                inputs: None,
            },
        );
        self.save()
    }

    /// A step ended: done with its summary, or failed with its error.
    pub fn end(
        &mut self,
        stage: impl Into<StageKey>,
        result: Result<String, String>,
    ) -> Result<(), SessionError> {
        self.end_with_inputs(stage, result, None)
    }

    /// A stage ended, with the digest of what it ran with (see [`StepRecord::inputs`]).
    pub fn end_with_inputs(
        &mut self,
        stage: impl Into<StageKey>,
        result: Result<String, String>,
        inputs: Option<String>,
    ) -> Result<(), SessionError> {
        let (outcome, summary) = match result {
            Ok(summary) => (Outcome::Done, summary),
            Err(error) => (Outcome::Failed, error),
        };
        self.close(stage.into(), outcome, &summary, inputs)
    }

    /// A step was stopped on request; `summary` says what was (not) left behind.
    pub fn stopped(
        &mut self,
        stage: impl Into<StageKey>,
        summary: &str,
    ) -> Result<(), SessionError> {
        self.close(stage.into(), Outcome::Stopped, summary, None)
    }

    /// Record how a step's run ended, in memory first, then in the file (one write).
    fn close(
        &mut self,
        stage: StageKey,
        outcome: Outcome,
        summary: &str,
        inputs: Option<String>,
    ) -> Result<(), SessionError> {
        let image = Fingerprint::of(&self.image);
        let seq = self.next_seq();
        let record = self.steps.entry(stage).or_insert_with(|| StepRecord {
            outcome: Outcome::Running,
            seq,
            started: now(),
            ended: None,
            pid: None,
            image: None,
            summary: None,
            inputs: None,
        });
        record.outcome = outcome;
        record.ended = Some(now());
        record.pid = None;
        record.image = image;
        record.summary = Some(first_line(summary));
        record.inputs = inputs;
        self.save()
    }

    /// Record a step kiln did not run (the image was made elsewhere), with why.
    pub fn skip(&mut self, step: Step, reason: &str) -> Result<(), SessionError> {
        let seq = self.next_seq();
        self.steps.insert(
            step.into(),
            StepRecord {
                outcome: Outcome::Skipped,
                seq,
                started: now(),
                ended: Some(now()),
                pid: None,
                image: Fingerprint::of(&self.image),
                summary: Some(reason.to_string()),
                inputs: None,
            },
        );
        self.save()
    }

    /// A disk kiln did not create (no session yet): create is recorded as skipped, and so is
    /// install unless an installer was chosen (an ISO, netboot files, a preset) — people
    /// bring installed images to configure, verify and publish.
    pub fn adopt_existing_image(&mut self) -> Result<(), SessionError> {
        if !self.is_new() || !self.image.exists() {
            return Ok(());
        }
        // Both records are kept in memory even when the file cannot be written. A disk with
        // no guest data at all (fresh from `qemu-img create`) has not been installed.
        let created = self.skip(Step::Create, "the image existed before kiln's session");
        let blank = qcow2_header::has_guest_data(&self.image).ok().flatten() == Some(false);
        // Netboot files, a preset that fetches its own, or a cloud image to copy over the
        // disk install as an ISO does.
        let given = |text: &Option<String>| text.as_ref().is_some_and(|t| !t.is_empty());
        let installer = self.choices.iso.is_some()
            || given(&self.choices.kernel)
            || given(&self.choices.preset)
            || self.choices.starts_from_cloud_image();
        let installed = match installer {
            true => Ok(()),
            false if blank => Ok(()),
            false => self.skip(
                Step::Install,
                "no installer ISO given: the disk is taken as installed",
            ),
        };
        created.and(installed)
    }

    fn next_seq(&self) -> u64 {
        self.steps.values().map(|r| r.seq).max().unwrap_or(0) + 1
    }

    /// Write the file whole: to a temporary name, then renamed over the old one.
    pub fn save(&self) -> Result<(), SessionError> {
        if !self.persist {
            return Ok(());
        }
        // TOML holds only UTF-8: a path that is not cannot be recorded (the work goes on).
        let body = toml::to_string(self).map_err(|e| {
            SessionError::Write(self.path.clone(), std::io::Error::other(e.to_string()))
        })?;
        let text = format!(
            "# kiln's record of {} — safe to delete (kiln then starts over).\n{body}",
            self.image
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default(),
        );
        // Written whole beside the file, then renamed over it: never half a session file.
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        TempFile::create(&parent_dir(&self.path), &name, "tmp")
            .and_then(|temp| {
                std::fs::write(temp.path(), text)?;
                temp.rename_to(&self.path)
            })
            .map_err(|e| SessionError::Write(self.path.clone(), e))
    }
}

/// The pid of another live kiln running this record's stage, if one is.
fn running_elsewhere(record: &StepRecord) -> Option<u32> {
    let pid = record.pid.filter(|_| record.outcome == Outcome::Running)?;
    (pid != std::process::id() && crate::engine::host::process::is_kiln_running(pid)).then_some(pid)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_image_path_has_no_session() {
        // It would otherwise be `.kiln.toml` in the working directory, for no image at all.
        assert!(matches!(
            Session::open(Path::new("")),
            Err(SessionError::NoImage)
        ));
        assert!(matches!(
            Session::open_if_exists(Path::new("")),
            Err(SessionError::NoImage)
        ));
    }

    #[test]
    fn a_stopped_step_is_not_a_failure_and_runs_again_on_resume() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("d.qcow2");
        std::fs::write(&image, b"QFI\xfb fake image").unwrap();
        let mut session = Session::open(&image).unwrap();
        session.begin(Step::Create).unwrap();
        session.end(Step::Create, Ok("created".into())).unwrap();
        session.begin(Step::Install).unwrap();
        session
            .stopped(Step::Install, "cancelled; the machine was stopped")
            .unwrap();
        let reread = Session::open(&image).unwrap();
        assert_eq!(reread.status(Step::Install), StepStatus::Stopped);
        assert_eq!(reread.status(Step::Install).word(), "stopped");
        assert!(!reread.status(Step::Install).is_settled());
        assert_eq!(reread.resume_at(), Some(Step::Install));
        let text = std::fs::read_to_string(session_path(&image)).unwrap();
        assert!(text.contains("outcome = \"stopped\""), "{text}");
    }

    #[test]
    fn a_blank_disk_is_not_taken_as_installed() {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("blank.qcow2");
        let made = std::process::Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&disk)
            .arg("1G")
            .status()
            .unwrap();
        assert!(made.success());
        let mut session = Session::open(&disk).unwrap();
        session.adopt_existing_image().unwrap();
        assert_eq!(session.status(Step::Create), StepStatus::Skipped);
        assert_eq!(session.status(Step::Install), StepStatus::Pending);
        assert_eq!(session.resume_at(), Some(Step::Install));
    }

    fn image_in(dir: &Path) -> PathBuf {
        let image = dir.join("disk.qcow2");
        std::fs::write(&image, b"QFI\xfb fake image").unwrap();
        image
    }

    /// Make the image look written to later (mtime granularity is not to be trusted).
    fn modify(image: &Path) {
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(image)
            .unwrap();
        file.set_len(4096).unwrap();
    }

    #[test]
    fn session_file_sits_next_to_the_image() {
        assert_eq!(
            session_path(Path::new("/i/debian-12.qcow2")),
            Path::new("/i/debian-12.kiln.toml")
        );
        assert_eq!(
            session_path(Path::new("/i/disk.img")),
            Path::new("/i/disk.img.kiln.toml")
        );
    }

    #[test]
    fn a_new_image_resumes_at_create_and_steps_carry_over_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let image = image_in(dir.path());
        let mut session = Session::open(&image).unwrap();
        assert!(session.is_new());
        assert_eq!(session.resume_at(), Some(Step::Create));
        session.choices.iso = Some("/isos/debian.iso".into());
        session.begin(Step::Create).unwrap();
        assert_eq!(
            session.status(Step::Create),
            StepStatus::Running {
                pid: std::process::id()
            }
        );
        session.end(Step::Create, Ok("created".into())).unwrap();
        session.begin(Step::Install).unwrap();
        session
            .end(
                Step::Install,
                Err("the guest did not power off\nmore".into()),
            )
            .unwrap();

        let again = Session::open(&image).unwrap();
        assert_eq!(again.status(Step::Create), StepStatus::Done);
        assert_eq!(
            again.status(Step::Install),
            StepStatus::Failed("the guest did not power off".into())
        );
        assert_eq!(again.resume_at(), Some(Step::Install));
        assert_eq!(again.choices.iso, Some(PathBuf::from("/isos/debian.iso")));
    }

    #[test]
    fn a_step_whose_kiln_died_is_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        let image = image_in(dir.path());
        let mut session = Session::open(&image).unwrap();
        session.skip(Step::Create, "existing image").unwrap();
        session.begin(Step::Configure).unwrap();
        // Pretend another process wrote it and died: a pid no kiln has.
        session.steps.get_mut(&Step::Configure.into()).unwrap().pid = Some(u32::MAX - 1);
        assert_eq!(session.status(Step::Configure), StepStatus::Interrupted);
        assert_eq!(session.status(Step::Create), StepStatus::Skipped);
    }

    #[test]
    fn verify_goes_stale_when_the_image_changes_and_publish_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let image = image_in(dir.path());
        let mut session = Session::open(&image).unwrap();
        for step in [Step::Create, Step::Install, Step::Configure, Step::Verify] {
            session.begin(step).unwrap();
            session.end(step, Ok("ok".into())).unwrap();
        }
        assert_eq!(session.publish_allowed(), Ok(()));
        assert_eq!(session.resume_at(), Some(Step::Publish));

        modify(&image);
        let session = Session::open(&image).unwrap();
        assert_eq!(
            session.status(Step::Verify),
            StepStatus::Stale("the image changed since".into())
        );
        // Configure changed the image itself; a later change does not undo it.
        assert_eq!(session.status(Step::Configure), StepStatus::Done);
        assert_eq!(session.resume_at(), Some(Step::Verify));
        let refused = session.publish_allowed().unwrap_err();
        assert!(refused.contains("verify is stale"), "{refused}");
    }

    #[test]
    fn running_an_earlier_step_again_makes_later_ones_stale() {
        let dir = tempfile::tempdir().unwrap();
        let image = image_in(dir.path());
        let mut session = Session::open(&image).unwrap();
        for step in [Step::Create, Step::Install, Step::Configure, Step::Verify] {
            session.begin(step).unwrap();
            session.end(step, Ok("ok".into())).unwrap();
        }
        session.begin(Step::Configure).unwrap();
        session.end(Step::Configure, Ok("again".into())).unwrap();
        assert_eq!(session.status(Step::Configure), StepStatus::Done);
        assert_eq!(
            session.status(Step::Verify),
            StepStatus::Stale("configure ran again after it".into())
        );
        assert!(session.publish_allowed().is_err());
    }

    #[test]
    fn an_image_made_elsewhere_is_adopted_and_a_missing_one_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let image = image_in(dir.path());
        let mut session = Session::open(&image).unwrap();
        session.adopt_existing_image().unwrap();
        assert_eq!(session.status(Step::Create), StepStatus::Skipped);
        assert_eq!(session.status(Step::Install), StepStatus::Skipped);
        assert_eq!(session.resume_at(), Some(Step::Configure));

        let other = dir.path().join("other.qcow2");
        std::fs::write(&other, b"QFI\xfb").unwrap();
        let mut with_iso = Session::open(&other).unwrap();
        with_iso.choices.iso = Some("/isos/d.iso".into());
        with_iso.adopt_existing_image().unwrap();
        assert_eq!(with_iso.resume_at(), Some(Step::Install));
        // Netboot files install as an ISO does.
        let third = dir.path().join("third.qcow2");
        std::fs::write(&third, b"QFI\xfb").unwrap();
        let mut netboot = Session::open(&third).unwrap();
        netboot.choices.kernel = Some("http://mirror/linux".into());
        netboot.adopt_existing_image().unwrap();
        assert_eq!(netboot.resume_at(), Some(Step::Install));

        let missing = dir.path().join("typo.qcow2");
        let mut none = Session::open(&missing).unwrap();
        none.adopt_existing_image().unwrap();
        assert_eq!(none.resume_at(), Some(Step::Create));
        assert!(!session_path(&missing).exists());
    }

    #[test]
    fn the_file_holds_choices_but_no_secret_field_and_a_broken_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let image = image_in(dir.path());
        let mut session = Session::open(&image).unwrap();
        session.choices.user = Some("builder".into());
        session.choices.update(&Choices {
            target: Some(TargetKind::Djinn),
            ..Choices::default()
        });
        session.save().unwrap();
        let text = std::fs::read_to_string(session.path()).unwrap();
        assert!(text.contains("user = \"builder\""), "{text}");
        assert!(text.contains("target = \"djinn\""), "{text}");
        for secret in ["password", "token", "passphrase"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(!dir.path().join("disk.kiln.toml.tmp").exists());

        std::fs::write(session.path(), "steps = 3").unwrap();
        let error = Session::open(&image).unwrap_err().to_string();
        assert!(error.contains("disk.kiln.toml"), "{error}");
    }

    /// A session file as kiln wrote it before choices were typed and stages recorded (at
    /// 850eb75): it loads, its records and choices intact; a namespace that would not parse
    /// today is dropped rather than the whole session refused.
    #[test]
    fn a_session_file_from_before_typed_choices_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("old.qcow2");
        std::fs::write(&image, b"QFI\xfb an image").unwrap();
        let modified = Fingerprint::of(&image).unwrap();
        let written = format!(
            "# kiln's record of old.qcow2 — safe to delete (kiln then starts over).\n\
             [choices]\nsize = \"10G\"\n\
             boot_command = \"<esc><wait>install url=http://{{{{ .HTTPIP }}}}:{{{{ .HTTPPort }}}}/p.cfg<enter>\"\n\
             boot_wait = \"10s\"\nuser = \"builder\"\ntarget = \"djinn\"\nnamespace = \"team-1\"\n\
             [steps.create]\noutcome = \"done\"\nseq = 1\nstarted = 1\nended = 2\n\
             summary = \"created\"\n\
             [steps.create.image]\nsize = {}\nmodified_ns = {}\n\
             [steps.install]\noutcome = \"failed\"\nseq = 2\nstarted = 3\nended = 4\n\
             summary = \"the installer stopped\"\n",
            modified.size, modified.modified_ns
        );
        std::fs::write(session_path(&image), written).unwrap();
        let session = Session::open(&image).unwrap();
        assert_eq!(session.status(Step::Create), StepStatus::Done);
        assert_eq!(
            session.status(Step::Install),
            StepStatus::Failed("the installer stopped".into())
        );
        let choices = &session.choices;
        assert_eq!(choices.user.as_deref(), Some("builder"));
        assert_eq!(
            choices.boot_command.as_ref().map(BootCommand::source),
            Some("<esc><wait>install url=http://{{ .HTTPIP }}:{{ .HTTPPort }}/p.cfg<enter>")
        );
        assert_eq!(choices.namespace, None, "`team-1` is no namespace");
        assert_eq!(session.resume_at(), Some(Step::Install));
    }
}
