//! `kiln cache`: what kiln keeps in its download cache (netboot kernels and initrds), and
//! `kiln cache --clear` to remove it.

use clap::Args;

use super::Exit;
use crate::engine::files::download::Cache;
use crate::engine::units::human_bytes;

#[derive(Debug, Args)]
pub struct CacheArgs {
    /// Remove every downloaded file (the next install downloads again).
    #[arg(long)]
    pub clear: bool,
}

pub fn run(args: CacheArgs) -> Exit {
    let Some(cache) = Cache::discover() else {
        eprintln!("kiln cache: no home directory, so no cache directory");
        return Exit::Environment;
    };
    let dir = cache.dir().display().to_string();
    if args.clear {
        return match cache.clear() {
            Ok(freed) => {
                println!("removed {dir} ({} freed)", human_bytes(freed));
                Exit::Ok
            }
            Err(error) => {
                eprintln!("kiln cache: cannot remove {dir}: {error}");
                Exit::Failed
            }
        };
    }
    let files = match cache.files() {
        Ok(files) => files,
        Err(error) => {
            eprintln!("kiln cache: cannot read {dir}: {error}");
            return Exit::Failed;
        }
    };
    for file in &files {
        let partial = if file.partial {
            "  (partial: resumed by the next download)"
        } else {
            ""
        };
        println!(
            "{:>10}  {}{partial}",
            human_bytes(file.bytes),
            file.path.display()
        );
    }
    let total: u64 = files.iter().map(|file| file.bytes).sum();
    println!("{} file(s), {} in {dir}", files.len(), human_bytes(total));
    Exit::Ok
}
