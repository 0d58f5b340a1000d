//! `kiln publish IMAGE --to djinn|offline|srht …`: check the image, optionally compact it,
//! then upload it to Djinn or install it where a runner boots it from.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::{Exit, Format, report};
use crate::engine::config::{Dirs, Settings};
use crate::engine::publish::{
    self, Compaction, Destination, PublishError, PublishRequest, PublishTarget, Published,
};
use crate::engine::session::{Session, session_path};
use crate::engine::task;
use crate::engine::units::human_bytes;

/// Where `kiln publish` sends the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TargetKind {
    /// A Djinn server's API (`POST /images`); token from KILN_DJINN_TOKEN or the token file.
    Djinn,
    /// The disks directory of Djinn's offline runner (from ~/.config/djinn/driver.conf).
    Offline,
    /// A builds.sr.ht image tree: ROOT/DISTRO/RELEASE/ARCH/root.img.qcow2.
    Srht,
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The qcow2 image to publish (it is never modified).
    pub image: PathBuf,
    /// Where to publish it.
    #[arg(long, value_enum)]
    pub to: TargetKind,
    /// The image's name (letters, digits, `_`, `-`); default: the file name without extension.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Djinn: `path[@owner]` (default from config); offline: a path like `debian`.
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,
    /// Djinn API base URL, under which /images lives (default from config).
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Rewrite the image with `qemu-img convert` first (the original stays as it is).
    #[arg(long)]
    pub compact: bool,
    /// With --compact: compress the clusters (smaller, slower).
    #[arg(long, requires = "compact")]
    pub compress: bool,
    /// Also write NAME.sha256 (sha256sum format) beside the published file.
    #[arg(long)]
    pub sha256: bool,
    /// Offline: the runner's driver configuration [default: ~/.config/djinn/driver.conf].
    #[arg(long, value_name = "FILE")]
    pub driver_conf: Option<PathBuf>,
    /// Offline: install as a worker base image (DISKS/_base/qemu/x86_64/…).
    #[arg(long)]
    pub base: bool,
    /// Offline, srht: replace an image that is already there.
    #[arg(long)]
    pub replace: bool,
    /// srht: the image tree's root directory.
    #[arg(long, value_name = "DIR", required_if_eq("to", "srht"))]
    pub root: Option<PathBuf>,
    /// srht: the distribution directory, e.g. debian.
    #[arg(long, value_name = "D", required_if_eq("to", "srht"))]
    pub distro: Option<String>,
    /// srht: the release directory, e.g. 12.
    #[arg(long, value_name = "R", required_if_eq("to", "srht"))]
    pub release: Option<String>,
    /// srht: the architecture directory [default: x86_64].
    #[arg(long, value_name = "A")]
    pub arch: Option<String>,
    /// How to print the result on stdout.
    /// Publish even though the image's session file (NAME.kiln.toml) says verify has not
    /// passed since the image last changed.
    #[arg(long)]
    pub unverified: bool,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

pub async fn run(args: PublishArgs, settings: &Settings, dirs: Option<&Dirs>) -> Exit {
    if let Some(problem) = misplaced_flag(&args) {
        eprintln!("kiln publish: {problem}");
        return Exit::Environment;
    }
    if let Some(refusal) = session_refusal(&args) {
        eprintln!("kiln publish: {refusal}");
        return Exit::Environment;
    }
    let target = match target(&args, settings, dirs) {
        Ok(target) => target,
        Err(e) => return fail(e),
    };
    let request = PublishRequest {
        image: args.image,
        name: args.name,
        target,
        compact: args.compact.then_some(Compaction {
            compress: args.compress,
        }),
        sha256: args.sha256,
    };
    let title = format!(
        "publishing {} to {}",
        request.image.display(),
        request.target.describe()
    );
    let task = task::spawn(title, |reporter| publish::publish(request, reporter));
    match report::follow("publish", task, false).await {
        Ok(published) => {
            print(&published, args.format);
            Exit::Ok
        }
        // The failure was already printed by `follow`.
        Err(e) if e.is_usage() => Exit::Environment,
        Err(_) => Exit::Failed,
    }
}

/// A flag that means nothing for the chosen target is a mistake worth stopping for.
/// An image kiln has a session for is published only once verify passed on these bytes.
fn session_refusal(args: &PublishArgs) -> Option<String> {
    if args.unverified || !session_path(&args.image).exists() {
        return None;
    }
    match Session::open(&args.image) {
        Err(e) => Some(e.to_string()),
        Ok(session) => session.publish_allowed().err().map(|refusal| {
            format!(
                "{refusal} (`kiln check {}` or `kiln run`; --unverified publishes anyway)",
                args.image.display()
            )
        }),
    }
}

fn misplaced_flag(args: &PublishArgs) -> Option<String> {
    let given = [
        ("--url", args.url.is_some(), TargetKind::Djinn),
        (
            "--driver-conf",
            args.driver_conf.is_some(),
            TargetKind::Offline,
        ),
        ("--base", args.base, TargetKind::Offline),
        ("--root", args.root.is_some(), TargetKind::Srht),
        ("--distro", args.distro.is_some(), TargetKind::Srht),
        ("--release", args.release.is_some(), TargetKind::Srht),
        ("--arch", args.arch.is_some(), TargetKind::Srht),
    ];
    let wrong = given
        .iter()
        .find(|(_, set, kind)| *set && *kind != args.to)
        .map(|(flag, _, kind)| format!("{flag} only applies to --to {}", kind.name()));
    wrong.or_else(|| match args.to {
        TargetKind::Djinn if args.replace => Some(
            "--replace does not apply to --to djinn; delete the old image in Djinn first".into(),
        ),
        TargetKind::Srht if args.name.is_some() || args.namespace.is_some() => Some(
            "--name and --namespace do not apply to --to srht; the tree is named by --distro/--release/--arch".into(),
        ),
        _ => None,
    })
}

impl TargetKind {
    pub fn name(self) -> &'static str {
        match self {
            TargetKind::Djinn => "djinn",
            TargetKind::Offline => "offline",
            TargetKind::Srht => "srht",
        }
    }
}

/// The target with its settings resolved: flags first, then the config file.
fn target(
    args: &PublishArgs,
    settings: &Settings,
    dirs: Option<&Dirs>,
) -> Result<PublishTarget, PublishError> {
    match args.to {
        TargetKind::Djinn => {
            let url = args
                .url
                .clone()
                .or_else(|| settings.djinn_url.clone())
                .ok_or_else(|| {
                    PublishError::InvalidOption(
                        "no Djinn URL: pass --url URL or set `url` under [djinn] in the config file"
                            .into(),
                    )
                })?;
            let token = publish::load_token(dirs.map(|d| d.config_dir.as_path()))?;
            Ok(PublishTarget::Djinn {
                url,
                namespace: args
                    .namespace
                    .clone()
                    .or_else(|| settings.djinn_namespace.clone()),
                token,
            })
        }
        TargetKind::Offline => {
            let driver_conf = args
                .driver_conf
                .clone()
                .or_else(publish::default_driver_conf)
                .ok_or_else(|| {
                    PublishError::InvalidOption(
                        "no home directory to find djinn/driver.conf in; pass --driver-conf FILE"
                            .into(),
                    )
                })?;
            Ok(PublishTarget::Offline {
                driver_conf,
                namespace: args.namespace.clone(),
                base: args.base,
                replace: args.replace,
            })
        }
        TargetKind::Srht => Ok(PublishTarget::Srht {
            // clap requires these three with --to srht.
            root: args.root.clone().unwrap_or_default(),
            distro: args.distro.clone().unwrap_or_default(),
            release: args.release.clone().unwrap_or_default(),
            arch: args.arch.clone().unwrap_or_else(|| "x86_64".into()),
            replace: args.replace,
        }),
    }
}

fn print(published: &Published, format: Format) {
    if let Format::Json = format {
        println!(
            "{}",
            serde_json::to_string_pretty(published).expect("the result serialises")
        );
        return;
    }
    match &published.destination {
        Destination::Djinn {
            id,
            url,
            name,
            namespace,
        } => {
            println!(
                "id:        {}",
                id.map_or_else(|| "(not in Djinn's answer)".into(), |id| id.to_string())
            );
            println!(
                "url:       {}",
                url.as_deref().unwrap_or("(not in Djinn's answer)")
            );
            println!("name:      {name}");
            println!(
                "namespace: {}",
                namespace.as_deref().unwrap_or("(the token owner's own)")
            );
        }
        Destination::Offline { path, .. } | Destination::Srht { path, .. } => {
            println!("path:      {}", path.display());
        }
    }
    println!(
        "size:      {} ({} bytes)",
        human_bytes(published.bytes),
        published.bytes
    );
    if let Some(sizes) = &published.compaction {
        println!(
            "compacted: {} -> {}{}",
            human_bytes(sizes.before),
            human_bytes(sizes.after),
            if sizes.compressed { ", compressed" } else { "" }
        );
    }
    if let Some(checksum) = &published.checksum {
        println!(
            "sha256:    {} ({})",
            checksum.sha256,
            checksum.file.display()
        );
    }
    if let Some(manifest) = published.destination.manifest() {
        println!("\nUse it in a build manifest:\n\n{manifest}");
    }
}

fn fail(error: PublishError) -> Exit {
    eprintln!("kiln publish: {error}");
    if error.is_usage() {
        Exit::Environment
    } else {
        Exit::Failed
    }
}
