use std::process::ExitCode;

use clap::Parser;
use kiln::cli::{self, Args, Command, Exit};
use kiln::engine::host;
use kiln::engine::host::config::{self, Dirs};
use kiln::tui;

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kiln: cannot start the async runtime: {e}");
            return Exit::Environment.into();
        }
    };
    runtime.block_on(run(args)).into()
}

/// Build the settings once, then hand them to the frontend the command line asked for.
async fn run(args: Args) -> Exit {
    let dirs = Dirs::discover();
    let _log_guard = dirs.as_ref().and_then(cli::logging::init);
    let config_path = args
        .config
        .clone()
        .or_else(|| dirs.as_ref().map(Dirs::config_file));
    let file = match config_path.as_deref().map(config::load_file).transpose() {
        Ok(file) => file.unwrap_or_default(),
        Err(e) => {
            eprintln!("kiln: {e}");
            return Exit::Environment;
        }
    };
    let overrides = args.overrides();
    let settings = config::resolve(overrides.clone(), file, host::resources());
    match args.command {
        None => workbench(settings, dirs, tui::Opening::Nothing).await,
        Some(Command::Open(words)) => match words.as_slice() {
            [recipe]
                if std::path::Path::new(recipe)
                    .extension()
                    .is_some_and(|e| e == "toml") =>
            {
                match kiln::engine::recipe::Recipe::load(recipe.as_ref(), &[]) {
                    Ok(recipe) => {
                        workbench(settings, dirs, tui::Opening::Recipe(Box::new(recipe))).await
                    }
                    Err(e) => {
                        eprintln!("kiln: {e}");
                        Exit::Environment
                    }
                }
            }
            [image] if looks_like_an_image(image.as_ref()) => {
                workbench(settings, dirs, tui::Opening::Image(image.into())).await
            }
            _ => {
                eprintln!(
                    "kiln: {words:?} is neither a command nor an image; `kiln IMAGE` opens an image, `kiln --help` lists the commands"
                );
                Exit::Environment
            }
        },
        Some(Command::Run(run)) => {
            cli::exit_code(cli::run::run(*run, &settings, &overrides, dirs.as_ref()).await)
        }
        Some(Command::Build(build)) => {
            cli::exit_code(cli::build::run(build, &settings, dirs.as_ref()).await)
        }
        Some(Command::Create(create)) => cli::create::run(create, &settings, dirs.as_ref()).await,
        Some(Command::Install(install)) => {
            cli::exit_code(cli::install::run(install, &settings, dirs.as_ref()).await)
        }
        Some(Command::Check(check)) => cli::check::run(check, &settings, dirs.as_ref()).await,
        Some(Command::Configure(configure)) => {
            cli::exit_code(cli::configure::run(configure, &settings, dirs.as_ref()).await)
        }
        Some(Command::Publish(publish)) => {
            cli::exit_code(cli::publish::run(publish, &settings, dirs.as_ref()).await)
        }
        Some(Command::Doctor(doctor)) => cli::doctor::run(doctor, &settings).await,
        Some(Command::Config(options)) => cli::config::run(options, &settings, config_path),
        Some(Command::Cache(options)) => cli::cache::run(options),
    }
}

/// The workbench, and the exit code its ending means.
async fn workbench(settings: config::Settings, dirs: Option<Dirs>, opening: tui::Opening) -> Exit {
    match tui::run(settings, dirs, opening).await {
        tui::Ending::Quit => Exit::Ok,
        tui::Ending::NoTerminal | tui::Ending::TerminalError => Exit::Environment,
    }
}

/// `kiln IMAGE` takes an existing file, or a new path that names a file (has a dot or a
/// slash); a bare unknown word is more likely a mistyped command.
fn looks_like_an_image(word: &std::path::Path) -> bool {
    let text = word.to_string_lossy();
    word.exists() || text.contains('.') || text.contains('/')
}
