//! `kiln create PATH --size 10G [--force]`

use std::path::PathBuf;

use clap::Args;

use super::{Exit, Format, report};
use crate::engine::Step;
use crate::engine::host::config::{Dirs, Settings};
use crate::engine::session::Choices;
use crate::engine::steps::image::DiskSize;
use crate::engine::task::{Answers, TaskOptions};
use crate::engine::units::human_bytes;
use crate::engine::workflow::{Secrets, StepOptions, StepResult};

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The image file to create, e.g. debian-12.qcow2.
    pub path: PathBuf,
    /// Virtual size with a unit (K, M, G, T; binary). Keep it under 20G.
    #[arg(long, short, default_value = "10G")]
    pub size: DiskSize,
    /// Replace the file if it exists (the old one stays until the new one is complete).
    #[arg(long)]
    pub force: bool,
    /// How to print the created image's details on stdout.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

pub async fn run(args: CreateArgs, settings: &Settings, dirs: Option<&Dirs>) -> Exit {
    let workflow = match super::one_step("create", &args.path, false, settings, dirs).await {
        Ok(workflow) => workflow,
        Err(exit) => return exit,
    };
    workflow.choose(&Choices {
        size: Some(args.size),
        ..Choices::default()
    });
    let options = StepOptions {
        task: TaskOptions {
            answers: Answers {
                replace_file: Some(args.force),
                ..Answers::default()
            },
            ..TaskOptions::default()
        },
        ..StepOptions::default()
    };
    let task = workflow.start(Step::Create, Secrets::default(), options);
    match report::follow("create", task, false).await {
        Ok(StepResult::Created(info)) => {
            match args.format {
                Format::Text => {
                    println!("path:         {}", info.path.display());
                    println!("format:       {}", info.format);
                    println!("compat:       {}", info.compat.as_deref().unwrap_or("n/a"));
                    println!(
                        "virtual size: {} ({} bytes)",
                        human_bytes(info.virtual_size),
                        info.virtual_size
                    );
                    println!("disk size:    {}", human_bytes(info.actual_size));
                }
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&info).expect("image info serialises")
                ),
            }
            Exit::Ok
        }
        Ok(_) => Exit::Failed,
        // The failure was already printed by `follow`.
        Err(e) => Exit::for_step(&e),
    }
}
