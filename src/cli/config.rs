//! `kiln config`: the effective settings, where the file lives, or the commented template.

use std::path::PathBuf;

use clap::Args;

use super::Exit;
use crate::engine::host::config::{Settings, TEMPLATE};

#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Print the commented configuration template.
    #[arg(long, conflicts_with = "path")]
    pub print_template: bool,
    /// Print the path of the configuration file kiln reads.
    #[arg(long)]
    pub path: bool,
}

pub fn run(args: ConfigArgs, settings: &Settings, config_path: Option<PathBuf>) -> Exit {
    if args.print_template {
        print!("{TEMPLATE}");
    } else if args.path {
        match config_path {
            Some(path) => println!("{}", path.display()),
            None => {
                eprintln!("kiln config: no home directory, so no config file location");
                return Exit::Environment;
            }
        }
    } else {
        print!(
            "{}",
            toml::to_string(settings).expect("settings serialise to TOML")
        );
    }
    Exit::Ok
}
