//! `kiln create PATH --size 10G [--force]`

use std::path::PathBuf;

use clap::Args;

use super::{Exit, Format, report};
use crate::engine::image::{self, CreateError, CreateRequest};
use crate::engine::task;
use crate::engine::units::human_bytes;

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The image file to create, e.g. debian-12.qcow2.
    pub path: PathBuf,
    /// Virtual size with a unit (K, M, G, T; binary). Keep it under 20G.
    #[arg(long, short, default_value = "10G")]
    pub size: String,
    /// Replace the file if it exists (the old one stays until the new one is complete).
    #[arg(long)]
    pub force: bool,
    /// How to print the created image's details on stdout.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

pub async fn run(args: CreateArgs) -> Exit {
    let request = CreateRequest {
        path: args.path,
        size: args.size,
        force: args.force,
    };
    let plan = match image::plan_create(&request).await {
        Ok(plan) => plan,
        Err(e) => return fail(e),
    };
    if let Some(free) = plan.free_space {
        eprintln!(
            "kiln create: {} free in the target directory",
            human_bytes(free)
        );
    }
    let task = task::spawn(
        format!("creating {} ({})", plan.path.display(), plan.size),
        |reporter| image::create(plan, reporter),
    );
    match report::follow("create", task, false).await {
        Ok(info) => {
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
        // The failure was already printed by `follow`.
        Err(e) if e.is_usage() => Exit::Environment,
        Err(_) => Exit::Failed,
    }
}

fn fail(error: CreateError) -> Exit {
    eprintln!("kiln create: {error}");
    if error.is_usage() {
        Exit::Environment
    } else {
        Exit::Failed
    }
}
