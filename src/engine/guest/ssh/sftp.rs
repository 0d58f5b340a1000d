//! Moving files to and from a guest over SFTP, the way the CI driver copies its script.

use std::fmt;
use std::time::Duration;

use russh::ChannelMsg;
use russh_sftp::client::SftpSession;
use russh_sftp::protocol::FileAttributes;
use tokio::io::AsyncWriteExt;
use tokio::time::timeout;

use super::{CLOSE_TIMEOUT, Session, SshError, channel_error, lost, seconds};

/// Opening the SFTP subsystem, and each SFTP operation unless [`Sftp::set_timeout`] says otherwise.
const SFTP_TIMEOUT: Duration = Duration::from_secs(60);

impl Session {
    /// Open the `sftp` subsystem (the CI driver copies its script this way).
    pub async fn sftp(&self) -> Result<Sftp, SshError> {
        let opening = async {
            let mut channel = self
                .handle
                .channel_open_session()
                .await
                .map_err(|e| channel_error(e, "sftp"))?;
            channel
                .request_subsystem(true, "sftp")
                .await
                .map_err(|e| lost(e, "sftp"))?;
            loop {
                match channel.wait().await {
                    Some(ChannelMsg::Success) => break,
                    Some(ChannelMsg::Failure) => {
                        return Err(SshError::SftpUnavailable {
                            detail: "the server refused the `sftp` subsystem request".into(),
                        });
                    }
                    Some(ChannelMsg::Eof | ChannelMsg::Close) | None => {
                        return Err(SshError::SftpUnavailable {
                            detail: "EOF".into(),
                        });
                    }
                    Some(_) => continue,
                }
            }
            let config = russh_sftp::client::Config {
                request_timeout_secs: SFTP_TIMEOUT.as_secs(),
                ..Default::default()
            };
            SftpSession::new_with_config(channel.into_stream(), config)
                .await
                .map_err(|e| SshError::SftpUnavailable {
                    detail: sftp_reason(&e),
                })
        };
        match timeout(SFTP_TIMEOUT, opening).await {
            Ok(Ok(session)) => Ok(Sftp {
                session,
                timeout: SFTP_TIMEOUT,
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(SshError::SftpUnavailable {
                detail: format!("no answer within {}", seconds(SFTP_TIMEOUT)),
            }),
        }
    }
}

fn sftp_reason(e: &russh_sftp::client::error::Error) -> String {
    use russh_sftp::client::error::Error;
    match e {
        Error::Status(status) if status.error_message.is_empty() => status.status_code.to_string(),
        // OpenSSH's message is often the code's own name ("Failure (Failure)"): say it once.
        Error::Status(status) if status.error_message == status.status_code.to_string() => {
            status.error_message.clone()
        }
        Error::Status(status) => format!("{} ({})", status.status_code, status.error_message),
        // russh-sftp reports a closed channel as an I/O or "unexpected" error; say it plainly.
        Error::IO(detail) | Error::UnexpectedBehavior(detail)
            if detail.contains("EOF") || detail.contains("eof") || detail.contains("closed") =>
        {
            format!("EOF: {detail}")
        }
        other => other.to_string(),
    }
}

/// An open SFTP session on a guest; every operation has a timeout.
pub struct Sftp {
    session: SftpSession,
    timeout: Duration,
}

impl fmt::Debug for Sftp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sftp")
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Sftp {
    /// How long each later operation may take (default 60 s); big transfers need more.
    pub fn set_timeout(&mut self, limit: Duration) {
        self.timeout = limit;
        self.session.set_timeout(limit.as_secs().max(1));
    }

    async fn bounded<T>(
        &self,
        op: &'static str,
        path: &str,
        work: impl Future<Output = Result<T, String>>,
    ) -> Result<T, SshError> {
        match timeout(self.timeout, work).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(detail)) => Err(SshError::Sftp {
                op,
                path: path.to_string(),
                detail,
            }),
            Err(_) => Err(SshError::SftpTimeout {
                op,
                path: path.to_string(),
                waited: self.timeout,
            }),
        }
    }

    /// Create or truncate `path` and write `bytes` to it.
    pub async fn write(&self, path: &str, bytes: &[u8]) -> Result<(), SshError> {
        self.bounded("write", path, async {
            let mut file = self
                .session
                .create(path)
                .await
                .map_err(|e| sftp_reason(&e))?;
            file.write_all(bytes).await.map_err(|e| e.to_string())?;
            // Shutdown waits for every pending write to be acknowledged.
            file.shutdown().await.map_err(|e| e.to_string())
        })
        .await
    }

    /// Set `path`'s permission bits, e.g. 0o755 for a script.
    pub async fn chmod(&self, path: &str, mode: u32) -> Result<(), SshError> {
        self.bounded("chmod", path, async {
            let attributes = FileAttributes {
                permissions: Some(mode),
                ..FileAttributes::empty()
            };
            self.session
                .set_metadata(path, attributes)
                .await
                .map_err(|e| sftp_reason(&e))
        })
        .await
    }

    /// The whole content of `path`.
    pub async fn read(&self, path: &str) -> Result<Vec<u8>, SshError> {
        self.bounded("read", path, async {
            self.session.read(path).await.map_err(|e| sftp_reason(&e))
        })
        .await
    }

    /// Whether `path` exists (following symbolic links).
    pub async fn exists(&self, path: &str) -> Result<bool, SshError> {
        self.bounded("stat", path, async {
            self.session
                .try_exists(path)
                .await
                .map_err(|e| sftp_reason(&e))
        })
        .await
    }

    /// Names in `dir` (without "." and ".."), sorted.
    pub async fn list(&self, dir: &str) -> Result<Vec<String>, SshError> {
        self.bounded("list", dir, async {
            let entries = self
                .session
                .read_dir(dir)
                .await
                .map_err(|e| sftp_reason(&e))?;
            let mut names: Vec<String> = entries.map(|entry| entry.file_name()).collect();
            names.sort();
            Ok(names)
        })
        .await
    }

    /// Delete the file `path`.
    pub async fn remove(&self, path: &str) -> Result<(), SshError> {
        self.bounded("remove", path, async {
            self.session
                .remove_file(path)
                .await
                .map_err(|e| sftp_reason(&e))
        })
        .await
    }

    /// The login's home directory (where the CI driver puts its script): `.` made absolute.
    pub async fn home(&self) -> Result<String, SshError> {
        self.bounded("canonicalize", ".", async {
            self.session
                .canonicalize(".")
                .await
                .map_err(|e| sftp_reason(&e))
        })
        .await
    }

    /// End the SFTP session (the SSH session stays open).
    pub async fn close(self) {
        let _ = timeout(CLOSE_TIMEOUT, self.session.close()).await;
    }
}
