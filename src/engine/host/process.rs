//! Running the external tools kiln drives (qemu-img, qemu-system-x86_64): always with a
//! timeout, killed when dropped, and with their stderr kept for the error message.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

/// Why an external tool did not give us its output.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("{program} was not found on PATH; install it with `{fix}`")]
    NotFound { program: String, fix: String },
    #[error("{program} did not finish within {} s and was stopped", .after.as_secs())]
    TimedOut { program: String, after: Duration },
    #[error("{program} could not be started: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{program} failed ({status}): {stderr}")]
    Failed {
        program: String,
        status: String,
        stderr: String,
    },
}

impl ToolError {
    /// Why `program` could not be started: not installed (with the command that installs
    /// it), or another error starting it.
    pub fn not_started(program: &str, source: std::io::Error) -> ToolError {
        if source.kind() == std::io::ErrorKind::NotFound {
            ToolError::NotFound {
                program: program.into(),
                fix: install_hint(program),
            }
        } else {
            ToolError::Spawn {
                program: program.into(),
                source,
            }
        }
    }

    /// The tool's own words, when it ran and complained.
    pub fn stderr(&self) -> Option<&str> {
        match self {
            ToolError::Failed { stderr, .. } => Some(stderr),
            _ => None,
        }
    }
}

/// The Debian command that installs a tool kiln needs.
pub fn install_hint(program: &str) -> String {
    match program {
        "qemu-img" => "apt-get install qemu-utils".into(),
        p if p.starts_with("qemu-system") => "apt-get install qemu-system-x86".into(),
        "ssh" | "ssh-keygen" | "ssh-keyscan" => "apt-get install openssh-client".into(),
        other => format!("apt-get install {other}"),
    }
}

/// Where `program` lives on PATH, if anywhere.
pub fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The environment variable that carries the Djinn token; no child ever inherits it.
pub const DJINN_TOKEN_ENV: &str = "KILN_DJINN_TOKEN";

/// More variables that hold secrets (a recipe's `password_env`, `token_env`…), named at run
/// time; no child inherits them either.
static SECRET_VARIABLES: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Keep the variable `name` from every program kiln starts from now on.
pub fn hide_from_children(name: &str) {
    let mut hidden = SECRET_VARIABLES.lock().unwrap_or_else(|e| e.into_inner());
    if !hidden.iter().any(|known| known == name) {
        hidden.push(name.to_string());
    }
}

/// The one way kiln starts a program. No stdin; the Djinn token removed from its environment;
/// its own process group, so a terminal's Ctrl-C or hang-up reaches kiln alone, which then
/// stops the program in order (a writable guest is shut down, not cut off); and it dies with
/// kiln — on drop (kill-on-drop) and even if kiln is killed outright (PR_SET_PDEATHSIG).
pub fn command(program: &str) -> Command {
    let mut command = Command::new(program);
    command
        .stdin(Stdio::null())
        .env_remove(DJINN_TOKEN_ENV)
        .process_group(0)
        .kill_on_drop(true);
    for name in SECRET_VARIABLES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
    {
        command.env_remove(name);
    }
    // SAFETY: prctl is async-signal-safe; it only asks the kernel to SIGKILL the child when
    // the kiln thread that started it dies, so not even `kill -9 kiln` leaves it behind.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    command
}

/// Whether `pid` is a running kiln (its name; a pid reused by another program is not one).
pub fn is_kiln_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .is_ok_and(|comm| comm.trim_end() == "kiln" || comm.trim_end().starts_with("kiln-"))
}

/// Run `program args…` to completion and return its stdout; non-zero exit is an error that
/// carries stderr.
pub async fn run_tool<I, S>(program: &str, args: I, timeout: Duration) -> Result<String, ToolError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = command(program);
    command
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = command
        .spawn()
        .map_err(|source| ToolError::not_started(program, source))?;
    let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(result) => result.map_err(|source| ToolError::Spawn {
            program: program.into(),
            source,
        })?,
        // Dropping the future drops the child, and kill_on_drop ends it.
        Err(_) => {
            return Err(ToolError::TimedOut {
                program: program.into(),
                after: timeout,
            });
        }
    };
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(ToolError::Failed {
            program: program.into(),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_child_inherits_the_djinn_token() {
        let command = command("true");
        let removed = command
            .as_std()
            .get_envs()
            .any(|(key, value)| key == DJINN_TOKEN_ENV && value.is_none());
        assert!(removed, "QEMU and every tool would see the token");
    }

    #[test]
    fn no_child_inherits_a_variable_named_as_secret() {
        hide_from_children("KILN_TEST_RECIPE_PASSWORD");
        let command = command("true");
        let removed = command
            .as_std()
            .get_envs()
            .any(|(key, value)| key == "KILN_TEST_RECIPE_PASSWORD" && value.is_none());
        assert!(removed, "the post-build command would see the password");
    }

    #[tokio::test]
    async fn missing_program_names_the_package() {
        let err = run_tool(
            "qemu-img-does-not-exist",
            ["--version"],
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, ToolError::NotFound { .. }), "{err}");
    }

    #[tokio::test]
    async fn failure_keeps_stderr() {
        let err = run_tool(
            "sh",
            ["-c", "echo broken >&2; exit 3"],
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert_eq!(err.stderr(), Some("broken"));
    }

    #[tokio::test]
    async fn timeout_stops_the_tool() {
        let err = run_tool("sleep", ["30"], Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(matches!(err, ToolError::TimedOut { .. }));
    }

    #[test]
    fn install_hints() {
        assert_eq!(install_hint("qemu-img"), "apt-get install qemu-utils");
        assert_eq!(
            install_hint("qemu-system-x86_64"),
            "apt-get install qemu-system-x86"
        );
    }
}
