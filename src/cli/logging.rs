//! Logs go to a file under the data directory: stdout and stderr belong to the screen.

use std::fs::OpenOptions;
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;

use crate::engine::host::config::Dirs;

/// Marks that logging was set up; kept alive for the program's run.
pub struct LogGuard;

/// Send `tracing` output to `<data dir>/kiln.log` (level from `KILN_LOG`, default info).
pub fn init(dirs: &Dirs) -> Option<LogGuard> {
    std::fs::create_dir_all(&dirs.data_dir).ok()?;
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dirs.log_file())
        .ok()?;
    let filter = EnvFilter::try_from_env("KILN_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(Mutex::new(file))
        .try_init()
        .ok()?;
    Some(LogGuard)
}
