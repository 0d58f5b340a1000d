//! One root shell kept open for the whole change. sudo checks the user's password once — a
//! yescrypt hash, a second or more under TCG — and every script after that runs in the same
//! shell, including the rollback, across the person's question.

use std::time::Duration;

use base64::Engine;

use super::{ConfigureError, REJECTED};
use crate::engine::guest::ssh::{Conversation, Heard, Session, SshError};

/// Printed by the shell once it runs, so no script is sent before sudo accepted the password:
/// after a wrong one sudo reads the next line as another try.
const READY: &str = "kiln-root-shell-ready";
/// Printed after each script with its exit status (stdout) and alone (stderr): where that
/// script's output ends.
const DONE: &str = "kiln-script-done";
/// How long one script (or sudo's password check) may take.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The command that starts the shell: directly for root, else through `sudo -S`, which reads
/// the password from stdin — never from argv, where `ps` in the guest would show it.
pub fn shell_command(user: &str) -> String {
    let shell = format!("sh -c 'echo {READY}; exec sh -s'");
    match user {
        "root" => shell,
        _ => format!("sudo -S -p '' {shell}"),
    }
}

/// A shell running as root in the guest, reading scripts from kiln.
pub struct RootShell {
    talk: Conversation,
    scripts: u32,
}

impl RootShell {
    /// Start the shell as `user` (through sudo unless root) and wait until it runs.
    pub async fn open(
        session: &Session,
        user: &str,
        sudo_password: Option<&str>,
    ) -> Result<RootShell, ConfigureError> {
        let started = |error: SshError| guest_error("starting a root shell", error.to_string());
        let mut talk = session
            .converse(&shell_command(user), SCRIPT_TIMEOUT)
            .await
            .map_err(started)?;
        if user != "root" {
            let password = format!("{}\n", sudo_password.unwrap_or_default());
            talk.say(password.as_bytes()).await.map_err(started)?;
        }
        let heard = talk
            .listen(SCRIPT_TIMEOUT, |stdout, stderr| {
                if let Some(end) = ready_end(stdout) {
                    // Whatever came before (a chatty shell startup file, sudo's first-use
                    // lecture) is not a script's.
                    stdout.drain(..end);
                    stderr.clear();
                    return Some(true);
                }
                is_sudo_refusal(&String::from_utf8_lossy(stderr)).then_some(false)
            })
            .await
            .map_err(started)?;
        let refusal = match heard {
            Heard::Said(true) => return Ok(RootShell { talk, scripts: 0 }),
            // sudo waits for another try; end its stdin so it gives up and says so.
            Heard::Said(false) => talk.end(CLOSE_TIMEOUT).await.unwrap_or_default(),
            Heard::Ended(output) => output,
        };
        let stderr = refusal.stderr_text();
        Err(match user {
            "root" => guest_error("starting a root shell", stderr),
            _ => ConfigureError::Sudo {
                user: user.to_string(),
                stderr,
            },
        })
    }

    /// Run `script` and return its stdout. A non-zero exit is an error naming `what` and, for
    /// scripts that announce their steps (`kiln-step: …` on stderr), the step that failed;
    /// [`REJECTED`] means sshd rejected the new file.
    pub async fn run(&mut self, script: &str, what: &str) -> Result<String, ConfigureError> {
        self.run_within(script, what, SCRIPT_TIMEOUT).await
    }

    /// [`RootShell::run`] with its own time limit, for work that grows with the disk.
    pub async fn run_within(
        &mut self,
        script: &str,
        what: &str,
        limit: Duration,
    ) -> Result<String, ConfigureError> {
        self.scripts += 1;
        let done = format!("{DONE}-{}", self.scripts);
        let encoded = base64::engine::general_purpose::STANDARD.encode(script);
        // A subshell, so the script's `exit` and `set -e` end only the script; stdin from
        // /dev/null, so nothing it runs reads the scripts that follow.
        let line = format!(
            "(eval \"$(echo {encoded} | base64 -d)\") </dev/null; printf '\\n{done} %s\\n' $?; echo {done} >&2\n"
        );
        let lost = |error: SshError| guest_error(what, error.to_string());
        self.talk.say(line.as_bytes()).await.map_err(lost)?;
        let heard = self
            .talk
            .listen(limit, |stdout, stderr| {
                script_finished(stdout, stderr, &done)
            })
            .await
            .map_err(lost)?;
        match heard {
            Heard::Said(finished) => finished.into_result(what),
            Heard::Ended(output) => Err(guest_error(
                what,
                format!(
                    "the root shell ended ({}): {}",
                    output.ending(),
                    output.stderr_text()
                ),
            )),
        }
    }

    /// End the shell (its stdin closes, so `sh` exits).
    pub async fn close(self) {
        let _ = self.talk.end(CLOSE_TIMEOUT).await;
    }
}

/// Where the shell's ready line ends in its output, once it came: it need not be first, as the
/// login shell may run startup files that print (bash's .bashrc under sshd, say).
fn ready_end(stdout: &[u8]) -> Option<usize> {
    let line = format!("{READY}\n");
    let at = find(stdout, line.as_bytes())?;
    (at == 0 || stdout[at - 1] == b'\n').then_some(at + line.len())
}

/// One script's end, as the shell reported it.
#[derive(Debug, PartialEq, Eq)]
struct Finished {
    status: u32,
    stdout: String,
    stderr: String,
}

impl Finished {
    fn into_result(self, what: &str) -> Result<String, ConfigureError> {
        let step = self
            .stderr
            .lines()
            .rev()
            .find_map(|line| line.strip_prefix("kiln-step: "));
        let words = self
            .stderr
            .lines()
            .filter(|line| !line.starts_with("kiln-step: "))
            .collect::<Vec<_>>()
            .join("\n")
            .trim()
            .to_string();
        match self.status {
            0 => Ok(self.stdout),
            REJECTED => Err(ConfigureError::InvalidConfig(words)),
            _ => Err(guest_error(
                &match step {
                    Some(step) => format!("{what}: {step}"),
                    None => what.to_string(),
                },
                words,
            )),
        }
    }
}

/// Once both of a script's end markers arrived: its status and output, drained from the
/// buffers. Stdout's marker follows a newline the shell added (`\n{done} STATUS\n`).
fn script_finished(stdout: &mut Vec<u8>, stderr: &mut Vec<u8>, done: &str) -> Option<Finished> {
    let out_marker = format!("\n{done} ");
    let err_marker = format!("{done}\n");
    let out_at = find(stdout, out_marker.as_bytes())?;
    let status_at = out_at + out_marker.len();
    let status_len = stdout[status_at..].iter().position(|&b| b == b'\n')?;
    let err_at = find(stderr, err_marker.as_bytes())?;
    let status = String::from_utf8_lossy(&stdout[status_at..status_at + status_len])
        .parse()
        .unwrap_or(u32::MAX);
    let finished = Finished {
        status,
        stdout: String::from_utf8_lossy(&stdout[..out_at]).into_owned(),
        stderr: String::from_utf8_lossy(&stderr[..err_at]).into_owned(),
    };
    stdout.drain(..status_at + status_len + 1);
    stderr.drain(..err_at + err_marker.len());
    Some(finished)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn guest_error(what: &str, stderr: String) -> ConfigureError {
    ConfigureError::Guest {
        command: what.to_string(),
        stderr,
    }
}

fn is_sudo_refusal(stderr: &str) -> bool {
    stderr.contains("incorrect password")
        || stderr.contains("is not in the sudoers")
        || stderr.contains("a password is required")
        || stderr.contains("Sorry, try again")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sudo_reads_the_password_from_stdin_never_argv() {
        assert_eq!(
            shell_command("builder"),
            "sudo -S -p '' sh -c 'echo kiln-root-shell-ready; exec sh -s'"
        );
        assert_eq!(
            shell_command("root"),
            "sh -c 'echo kiln-root-shell-ready; exec sh -s'"
        );
    }

    #[test]
    fn the_shell_is_ready_after_its_line_even_behind_a_chatty_startup_file() {
        assert_eq!(ready_end(b"kiln-root-shell-ready\n"), Some(22));
        assert_eq!(
            ready_end(b"Welcome!\nkiln-root-shell-ready\nrest"),
            Some(31)
        );
        assert_eq!(ready_end(b"kiln-root-shell-rea"), None);
        assert_eq!(ready_end(b"echo kiln-root-shell-ready\n"), None);
    }

    #[test]
    fn a_script_ends_when_both_markers_arrived_and_only_its_output_is_taken() {
        let mut stdout = b"root-hash $y$abc\nno newline".to_vec();
        let mut stderr = b"kiln-step: one\n".to_vec();
        assert_eq!(script_finished(&mut stdout, &mut stderr, "d-1"), None);
        stdout.extend_from_slice(b"\nd-1 3\nnext");
        // stdout's marker alone is not the end: stderr may still be on its way.
        assert_eq!(script_finished(&mut stdout, &mut stderr, "d-1"), None);
        stderr.extend_from_slice(b"oops\nd-1\nlater");
        assert_eq!(
            script_finished(&mut stdout, &mut stderr, "d-1"),
            Some(Finished {
                status: 3,
                stdout: "root-hash $y$abc\nno newline".into(),
                stderr: "kiln-step: one\noops\n".into(),
            })
        );
        assert_eq!((&stdout[..], &stderr[..]), (&b"next"[..], &b"later"[..]));
        // Another script's marker is not this one's.
        let (mut stdout, mut stderr) = (b"\nd-12 0\n".to_vec(), b"d-12\n".to_vec());
        assert_eq!(script_finished(&mut stdout, &mut stderr, "d-1"), None);
    }

    #[test]
    fn a_failed_script_names_its_step_and_rejected_means_invalid_config() {
        let failed = |status: u32| Finished {
            status,
            stdout: String::new(),
            stderr: "kiln-step: installing sshd_config\nmv: cannot move\n".into(),
        };
        match failed(1).into_result("changing sshd_config") {
            Err(ConfigureError::Guest { command, stderr }) => {
                assert_eq!(command, "changing sshd_config: installing sshd_config");
                assert_eq!(stderr, "mv: cannot move");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            failed(REJECTED).into_result("x"),
            Err(ConfigureError::InvalidConfig(words)) if words == "mv: cannot move"
        ));
    }
}
