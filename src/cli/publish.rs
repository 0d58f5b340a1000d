//! `kiln publish IMAGE --to djinn|offline|srht …`: check the image, optionally compact it,
//! then upload it to Djinn or install it where a runner boots it from.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::{Exit, Format, report};
use crate::engine::Step;
use crate::engine::config::{Dirs, Settings};
use crate::engine::publish::{Destination, Published, TargetKind};
use crate::engine::session::Choices;
use crate::engine::units::human_bytes;
use crate::engine::workflow::{Secrets, StepOptions, StepResult};

/// Where `kiln publish` sends the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TargetArg {
    /// A Djinn server's API (`POST /images`); token from KILN_DJINN_TOKEN or the token file.
    Djinn,
    /// The disks directory of Djinn's offline runner (from ~/.config/djinn/driver.conf).
    Offline,
    /// A builds.sr.ht image tree: ROOT/DISTRO/RELEASE/ARCH/root.img.qcow2.
    Srht,
}

impl From<TargetArg> for TargetKind {
    fn from(target: TargetArg) -> TargetKind {
        match target {
            TargetArg::Djinn => TargetKind::Djinn,
            TargetArg::Offline => TargetKind::Offline,
            TargetArg::Srht => TargetKind::Srht,
        }
    }
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The qcow2 image to publish (it is never modified).
    pub image: PathBuf,
    /// Where to publish it.
    #[arg(long, value_enum)]
    pub to: TargetArg,
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
    /// Publish even though the image's session file (NAME.kiln.toml) says verify has not
    /// passed since the image last changed.
    #[arg(long)]
    pub unverified: bool,
    /// How to print the result on stdout.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

pub async fn run(args: PublishArgs, settings: &Settings, dirs: Option<&Dirs>) -> Exit {
    if let Some(problem) = misplaced_flag(&args) {
        eprintln!("kiln publish: {problem}");
        return Exit::Environment;
    }
    let workflow = match super::one_step("publish", &args.image, false, settings, dirs).await {
        Ok(workflow) => workflow,
        Err(exit) => return exit,
    };
    workflow.choose(&choices(&args));
    let options = StepOptions {
        unverified: args.unverified,
        ..StepOptions::default()
    };
    // The token is read by the workflow (KILN_DJINN_TOKEN or the token file), never a flag.
    let task = workflow.start(Step::Publish, Secrets::default(), options);
    match report::follow("publish", task, false).await {
        Ok(StepResult::Published(published)) => {
            print(&published, args.format);
            Exit::Ok
        }
        Ok(_) => Exit::Failed,
        // The failure was already printed by `follow`.
        Err(e) => Exit::for_step(&e),
    }
}

/// What this command line chooses; the config file fills in the Djinn URL and namespace.
fn choices(args: &PublishArgs) -> Choices {
    let on = |flag: bool| flag.then_some(true);
    Choices {
        target: Some(args.to.into()),
        name: args.name.clone(),
        namespace: args.namespace.clone(),
        url: args.url.clone(),
        driver_conf: args.driver_conf.as_deref().map(super::absolute),
        base: on(args.base),
        replace: on(args.replace),
        root: args.root.as_deref().map(super::absolute),
        release: match (&args.distro, &args.release) {
            (Some(distro), Some(release)) => Some(format!("{distro}/{release}")),
            _ => None,
        },
        arch: args.arch.clone(),
        compact: on(args.compact),
        compress: on(args.compress),
        sha256: on(args.sha256),
        ..Choices::default()
    }
}

/// A flag that means nothing for the chosen target is a mistake worth stopping for.
fn misplaced_flag(args: &PublishArgs) -> Option<String> {
    let given = [
        ("--url", args.url.is_some(), TargetArg::Djinn),
        (
            "--driver-conf",
            args.driver_conf.is_some(),
            TargetArg::Offline,
        ),
        ("--base", args.base, TargetArg::Offline),
        ("--root", args.root.is_some(), TargetArg::Srht),
        ("--distro", args.distro.is_some(), TargetArg::Srht),
        ("--release", args.release.is_some(), TargetArg::Srht),
        ("--arch", args.arch.is_some(), TargetArg::Srht),
    ];
    let wrong = given
        .iter()
        .find(|(_, set, kind)| *set && *kind != args.to)
        .map(|(flag, _, kind)| {
            format!(
                "{flag} only applies to --to {}",
                TargetKind::from(*kind).name()
            )
        });
    wrong.or_else(|| match args.to {
        TargetArg::Djinn if args.replace => Some(
            "--replace does not apply to --to djinn; delete the old image in Djinn first".into(),
        ),
        TargetArg::Srht if args.name.is_some() || args.namespace.is_some() => Some(
            "--name and --namespace do not apply to --to srht; the tree is named by --distro/--release/--arch".into(),
        ),
        _ => None,
    })
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
