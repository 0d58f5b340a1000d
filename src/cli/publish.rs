//! `kiln publish IMAGE --to djinn|offline|srht|rsync …`: check the image, optionally compact
//! it, then upload it to Djinn, install it where a runner boots it from, or copy it to a host.

use std::path::PathBuf;

use clap::Args;

use super::flags::{DestinationArgs, TargetArg};
use super::{Exit, Format, report};
use crate::engine::Step;
use crate::engine::host::config::{Dirs, Settings};
use crate::engine::steps::publish::{Destination, Published, TargetKind};
use crate::engine::units::human_bytes;
use crate::engine::workflow::{Secrets, StepOptions, StepResult};

#[derive(Debug, Args)]
#[command(
    mut_arg("to", |to| to.required(true)),
    mut_arg("root", |root| root.required_if_eq("to", "srht")),
    mut_arg("distro", |distro| distro.required_if_eq("to", "srht")),
    mut_arg("release", |release| release.required_if_eq("to", "srht")),
    mut_arg("dest", |dest| dest.required_if_eq("to", "rsync"))
)]
pub struct PublishArgs {
    /// The qcow2 image to publish (it is never modified).
    pub image: PathBuf,
    #[command(flatten)]
    pub destination: DestinationArgs,
    /// Publish even though the image's session file (NAME.kiln.toml) says verify has not
    /// passed since the image last changed.
    #[arg(long)]
    pub unverified: bool,
    /// How to print the result on stdout.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

pub async fn run(
    args: PublishArgs,
    settings: &Settings,
    dirs: Option<&Dirs>,
) -> Result<Exit, Exit> {
    let destination = &args.destination;
    let to = destination.to.expect("clap requires --to on kiln publish");
    if let Some(problem) = misplaced_flag(to, destination) {
        return Err(super::refused("publish", problem));
    }
    let choices = destination
        .choices()
        .map_err(|e| super::refused("publish", e))?;
    let workflow = super::one_step("publish", &args.image, false, settings, dirs).await?;
    workflow.choose(&choices);
    let options = StepOptions {
        unverified: args.unverified,
        ..StepOptions::default()
    };
    // The token is read by the workflow (KILN_DJINN_TOKEN or the token file), never a flag.
    let task = workflow.start(Step::Publish, Secrets::default(), options);
    Ok(match report::follow("publish", task, false).await {
        Ok(StepResult::Published(published)) => {
            print(&published, args.format);
            Exit::Ok
        }
        Ok(_) => Exit::Failed,
        // The failure was already printed by `follow`.
        Err(e) => Exit::for_step(&e),
    })
}

/// A flag that means nothing for the chosen target is a mistake worth stopping for.
fn misplaced_flag(to: TargetArg, flags: &DestinationArgs) -> Option<String> {
    let given = [
        ("--url", flags.url.is_some(), TargetArg::Djinn),
        (
            "--driver-conf",
            flags.driver_conf.is_some(),
            TargetArg::Offline,
        ),
        ("--worker-base", flags.worker_base, TargetArg::Offline),
        ("--root", flags.root.is_some(), TargetArg::Srht),
        ("--distro", flags.distro.is_some(), TargetArg::Srht),
        ("--release", flags.release.is_some(), TargetArg::Srht),
        ("--arch", flags.arch.is_some(), TargetArg::Srht),
        ("--dest", flags.dest.is_some(), TargetArg::Rsync),
    ];
    let wrong = given
        .iter()
        .find(|(_, set, kind)| *set && *kind != to)
        .map(|(flag, _, kind)| {
            format!(
                "{flag} only applies to --to {}",
                TargetKind::from(*kind).name()
            )
        });
    wrong.or_else(|| match to {
        TargetArg::Djinn if flags.replace => Some(
            "--replace does not apply to --to djinn; delete the old image in Djinn first".into(),
        ),
        TargetArg::Srht if flags.name.is_some() || flags.namespace.is_some() => Some(
            "--name and --namespace do not apply to --to srht; the tree is named by --distro/--release/--arch".into(),
        ),
        TargetArg::Rsync if flags.namespace.is_some() => {
            Some("--namespace does not apply to --to rsync; --dest says where the image goes".into())
        }
        TargetArg::Rsync
            if flags.name.is_some() && flags.dest.as_ref().is_some_and(|d| !d.is_directory()) =>
        {
            Some(
                "--dest names the file already; give --name only with a directory (--dest user@host:/dir/)"
                    .into(),
            )
        }
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
        Destination::Rsync { dest, .. } => println!("dest:      {dest}"),
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
