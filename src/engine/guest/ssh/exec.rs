//! Running commands on a logged-in guest: whole ([`Session::exec`]), streamed
//! ([`Session::exec_streaming`]) or in turns ([`Conversation`]).

use std::time::Duration;

use russh::client;
use russh::{ChannelMsg, Sig};
use tokio::sync::oneshot;
use tokio::time::{Instant, timeout};

use super::{ExecOutput, OutputStream, Session, SshError, channel_error, lost};

impl Session {
    /// Run `command`, feed it `stdin` (then EOF) and collect its output. `env` goes first as SSH
    /// `env` requests; the ones the server refuses are listed in [`ExecOutput::env_refused`].
    pub async fn exec(
        &self,
        command: &str,
        stdin: Option<&[u8]>,
        env: &[(String, String)],
        timeout: Duration,
    ) -> Result<ExecOutput, SshError> {
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let mut collect = |stream: OutputStream, bytes: &[u8]| match stream {
            OutputStream::Stdout => stdout.extend_from_slice(bytes),
            OutputStream::Stderr => stderr.extend_from_slice(bytes),
        };
        let mut output = self.run(command, stdin, env, timeout, &mut collect).await?;
        output.stdout = stdout;
        output.stderr = stderr;
        Ok(output)
    }

    /// Like [`Session::exec`] without stdin, but hands output to `on_output` as it arrives (a CI
    /// script's log) instead of keeping it: the returned stdout and stderr are empty.
    pub async fn exec_streaming(
        &self,
        command: &str,
        env: &[(String, String)],
        timeout: Duration,
        mut on_output: impl FnMut(OutputStream, &[u8]) + Send,
    ) -> Result<ExecOutput, SshError> {
        self.run(command, None, env, timeout, &mut on_output).await
    }

    async fn run(
        &self,
        command: &str,
        stdin: Option<&[u8]>,
        env: &[(String, String)],
        limit: Duration,
        on_output: &mut (dyn FnMut(OutputStream, &[u8]) + Send),
    ) -> Result<ExecOutput, SshError> {
        let shown = short_command(command);
        let started = Instant::now();
        let channel = match timeout(limit, self.handle.channel_open_session()).await {
            Err(_) => {
                return Err(SshError::ExecTimeout {
                    command: shown,
                    waited: limit,
                });
            }
            Ok(Err(e)) => return Err(channel_error(e, &shown)),
            Ok(Ok(channel)) => channel,
        };
        let (mut read, write) = channel.split();
        let remaining = limit.saturating_sub(started.elapsed());
        let work = async {
            let (started_tx, started_rx) = oneshot::channel::<()>();
            // Requests are answered in order, so the first env.len() replies are the env ones
            // and the next one is the exec's; sending them all at once saves round trips. The
            // replies are read while they are sent: russh stalls the whole connection when a
            // channel's unread messages pile up.
            let requests = async {
                for (name, value) in env {
                    write
                        .set_env(true, name.as_str(), value.as_str())
                        .await
                        .map_err(|e| lost(e, &shown))?;
                }
                write
                    .exec(true, command.as_bytes())
                    .await
                    .map_err(|e| lost(e, &shown))?;
                // stdin only once the command runs: if it is refused nobody would read it.
                if started_rx.await.is_ok() {
                    if let Some(bytes) = stdin {
                        // A command may exit without reading its stdin; that is its business.
                        let _ = write.data(bytes).await;
                    }
                    let _ = write.eof().await;
                }
                Ok(())
            };
            let reading = read_replies(&mut read, env, &shown, started_tx, on_output);
            tokio::pin!(requests, reading);
            let mut sent = false;
            loop {
                tokio::select! {
                    result = &mut reading => break result,
                    // The read side decides when we are done: stdin still waiting for window
                    // space when the command exits is simply dropped.
                    result = &mut requests, if !sent => {
                        sent = true;
                        result?;
                    }
                }
            }
        };
        match timeout(remaining, work).await {
            Ok(result) => result,
            Err(_) => {
                let _ = write.signal(Sig::KILL).await;
                let _ = write.close().await;
                Err(SshError::ExecTimeout {
                    command: shown,
                    waited: limit,
                })
            }
        }
    }

    /// Start `command` and keep its stdin open: kiln writes to it and reads its output in
    /// turns (see [`Conversation`]). Returns once the server agreed to run it.
    pub async fn converse(&self, command: &str, limit: Duration) -> Result<Conversation, SshError> {
        let shown = short_command(command);
        let starting = async {
            let mut channel = self
                .handle
                .channel_open_session()
                .await
                .map_err(|e| channel_error(e, &shown))?;
            channel
                .exec(true, command.as_bytes())
                .await
                .map_err(|e| lost(e, &shown))?;
            loop {
                match channel.wait().await {
                    Some(ChannelMsg::Success) => return Ok(channel),
                    Some(ChannelMsg::Failure) => {
                        return Err(SshError::ExecRefused {
                            command: shown.clone(),
                        });
                    }
                    Some(ChannelMsg::Close) | None => {
                        return Err(SshError::ConnectionLost {
                            during: format!("while starting `{shown}`"),
                            detail: "the channel closed".into(),
                        });
                    }
                    Some(_) => continue,
                }
            }
        };
        match timeout(limit, starting).await {
            Ok(Ok(channel)) => Ok(Conversation {
                channel,
                command: shown,
                stdout: Vec::new(),
                stderr: Vec::new(),
                exit_status: None,
                exit_signal: None,
                closed: false,
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(SshError::ExecTimeout {
                command: shown,
                waited: limit,
            }),
        }
    }
}

/// Read a command's channel until it closes: request replies, output, exit status.
async fn read_replies(
    read: &mut russh::ChannelReadHalf,
    env: &[(String, String)],
    command: &str,
    started: oneshot::Sender<()>,
    on_output: &mut (dyn FnMut(OutputStream, &[u8]) + Send),
) -> Result<ExecOutput, SshError> {
    let mut output = ExecOutput::default();
    let mut replies = 0;
    let mut started = Some(started);
    let mut closed = false;
    while let Some(message) = read.wait().await {
        match message {
            ChannelMsg::Success | ChannelMsg::Failure => {
                let refused = matches!(message, ChannelMsg::Failure);
                if let Some((name, _)) = env.get(replies) {
                    if refused {
                        output.env_refused.push(name.clone());
                    }
                } else if replies == env.len() {
                    if refused {
                        return Err(SshError::ExecRefused {
                            command: command.to_string(),
                        });
                    }
                    if let Some(started) = started.take() {
                        let _ = started.send(());
                    }
                }
                replies += 1;
            }
            ChannelMsg::Data { data } => on_output(OutputStream::Stdout, &data),
            // Extended data type 1 is stderr (RFC 4254 §5.2); there is no other in use.
            ChannelMsg::ExtendedData { data, ext: 1 } => on_output(OutputStream::Stderr, &data),
            ChannelMsg::ExitStatus { exit_status } => output.exit_status = Some(exit_status),
            ChannelMsg::ExitSignal { signal_name, .. } => {
                output.exit_signal = Some(signal_text(&signal_name));
            }
            ChannelMsg::Close => {
                closed = true;
                break;
            }
            _ => {}
        }
    }
    if !closed && output.exit_status.is_none() && output.exit_signal.is_none() {
        return Err(SshError::ConnectionLost {
            during: format!("while running `{command}`"),
            detail: "the channel ended without an exit status".into(),
        });
    }
    Ok(output)
}

fn signal_text(signal: &Sig) -> String {
    match signal {
        Sig::Custom(name) => name.clone(),
        // The signal's own name (KILL, SEGV), which is what its Debug prints.
        other => format!("{other:?}"), // words-ok
    }
}

/// A command as error messages show it: one line, at most 80 characters.
fn short_command(command: &str) -> String {
    let line = command.lines().next().unwrap_or("");
    let mut shown: String = line.chars().take(80).collect();
    if shown.len() < command.len() {
        shown.push('…');
    }
    shown
}

/// A command kiln talks to in turns: write to its stdin, read its output until what is wanted
/// arrived, write again. Configure keeps one root shell this way across its question, so sudo
/// checks the password once.
pub struct Conversation {
    channel: russh::Channel<client::Msg>,
    command: String,
    /// Output not yet taken by a [`Conversation::listen`] condition.
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    exit_status: Option<u32>,
    exit_signal: Option<String>,
    closed: bool,
}

/// What [`Conversation::listen`] heard.
#[derive(Debug)]
pub enum Heard<T> {
    /// The condition was met.
    Said(T),
    /// The command ended first; its last output is in the [`ExecOutput`].
    Ended(ExecOutput),
}

impl Conversation {
    /// Write `bytes` to the command's stdin.
    pub async fn say(&mut self, bytes: &[u8]) -> Result<(), SshError> {
        self.channel
            .data(bytes)
            .await
            .map_err(|e| lost(e, &self.command))
    }

    /// Read output until `until` (given all output not yet taken, to drain what it used)
    /// returns a value, or the command ends; an error after `limit`.
    pub async fn listen<T>(
        &mut self,
        limit: Duration,
        mut until: impl FnMut(&mut Vec<u8>, &mut Vec<u8>) -> Option<T>,
    ) -> Result<Heard<T>, SshError> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(value) = until(&mut self.stdout, &mut self.stderr) {
                return Ok(Heard::Said(value));
            }
            // Only a closed channel ends it: output may still follow the exit status.
            if self.closed {
                return Ok(Heard::Ended(ExecOutput {
                    exit_status: self.exit_status,
                    exit_signal: self.exit_signal.clone(),
                    stdout: std::mem::take(&mut self.stdout),
                    stderr: std::mem::take(&mut self.stderr),
                    env_refused: Vec::new(),
                }));
            }
            let Ok(message) = tokio::time::timeout_at(deadline, self.channel.wait()).await else {
                return Err(SshError::ExecTimeout {
                    command: self.command.clone(),
                    waited: limit,
                });
            };
            match message {
                Some(ChannelMsg::Data { data }) => self.stdout.extend_from_slice(&data),
                // Extended data type 1 is stderr (RFC 4254 §5.2).
                Some(ChannelMsg::ExtendedData { data, ext: 1 }) => {
                    self.stderr.extend_from_slice(&data)
                }
                Some(ChannelMsg::ExitStatus { exit_status }) => {
                    self.exit_status = Some(exit_status)
                }
                Some(ChannelMsg::ExitSignal { signal_name, .. }) => {
                    self.exit_signal = Some(signal_text(&signal_name))
                }
                Some(ChannelMsg::Close) | None => self.closed = true,
                Some(_) => {}
            }
        }
    }

    /// Close the command's stdin and wait (within `limit`) for it to end.
    pub async fn end(mut self, limit: Duration) -> Option<ExecOutput> {
        let _ = self.channel.eof().await;
        match self.listen(limit, |_, _| None::<()>).await {
            Ok(Heard::Ended(output)) => Some(output),
            _ => {
                let _ = self.channel.close().await;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_commands_are_shortened_in_messages() {
        assert_eq!(short_command("id -un"), "id -un");
        let long = "x".repeat(100);
        assert_eq!(short_command(&long).chars().count(), 81);
        assert_eq!(short_command("a\nb"), "a…");
    }
}
