//! `kiln doctor`: the host report, one line per check, with the fix for each problem.

use clap::Args;

use super::{Exit, Format};
use crate::engine::host::config::Settings;
use crate::engine::host::{self, Verdict};
use crate::tui::graphics;

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// How to print the report on stdout.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

pub async fn run(args: DoctorArgs, settings: &Settings) -> Exit {
    let report = host::examine(settings).await;
    match args.format {
        Format::Text => {
            for check in &report.checks {
                let mark = match check.verdict {
                    Verdict::Ok => "ok  ",
                    Verdict::Warn => "warn",
                    Verdict::Fail => "FAIL",
                };
                println!("[{mark}] {:<20} {}", check.name, check.detail);
                if let Some(fix) = &check.fix {
                    println!("       {:<20} fix: {fix}", "");
                }
            }
            println!(
                "accelerator: {}",
                match report.accelerator {
                    host::Accelerator::Kvm => "KVM",
                    host::Accelerator::Tcg => "TCG (software emulation)",
                }
            );
            // What the workbench will draw guest screens with, in the terminal doctor runs in.
            let graphics = graphics::find(settings.graphics).await;
            println!("guest screens: {}", graphics.summary());
            if let Some(hint) = &graphics.hint {
                println!("       {hint}");
            }
        }
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("report serialises")
        ),
    }
    if report.has_failures() {
        Exit::Failed
    } else {
        Exit::Ok
    }
}
