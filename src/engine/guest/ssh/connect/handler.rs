//! What russh calls back into while connected, and what the server said besides replies.

use std::sync::{Arc, Mutex};

use russh::client::{self, DisconnectReason};
use russh::keys::PublicKeyOrCertificate;

use super::io_reason;

/// A russh error, with the server's disconnect message when it sent one.
pub(super) fn russh_reason(e: &russh::Error, notes: &Mutex<ServerNotes>) -> String {
    let base = match e {
        russh::Error::IO(e) => io_reason(e),
        other => other.to_string(),
    };
    match notes.lock().expect("notes lock").disconnect.clone() {
        Some(note) => format!("{base} ({note})"),
        None => base,
    }
}

pub(super) fn note_or(notes: &Mutex<ServerNotes>, fallback: &str) -> String {
    let notes = notes.lock().expect("notes lock");
    notes
        .disconnect
        .clone()
        .or_else(|| notes.auth_banner.clone())
        .unwrap_or_else(|| fallback.to_string())
}

/// What the server told us besides protocol replies; kept for error messages.
#[derive(Default)]
pub(super) struct ServerNotes {
    pub(super) auth_banner: Option<String>,
    pub(super) disconnect: Option<String>,
}

/// The russh handler of one connection: it takes any host key and keeps what the server said.
pub(in crate::engine::guest::ssh) struct Client {
    pub(super) notes: Arc<Mutex<ServerNotes>>,
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        _server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        // Not checked, on purpose: the CI driver does not check host keys either, and these are
        // throwaway test VMs on loopback whose keys change with every image.
        Ok(true)
    }

    async fn auth_banner(
        &mut self,
        banner: &str,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        self.notes.lock().expect("notes lock").auth_banner = Some(banner.to_string());
        Ok(())
    }

    async fn disconnected(
        &mut self,
        reason: DisconnectReason<Self::Error>,
    ) -> Result<(), Self::Error> {
        match reason {
            DisconnectReason::ReceivedDisconnect(info) => {
                let code = spaced_words(&format!("{:?}", info.reason_code)); // words-ok
                let note = format!("server said: {code}: {}", info.message);
                self.notes.lock().expect("notes lock").disconnect = Some(note);
                Ok(())
            }
            DisconnectReason::Error(e) => Err(e),
        }
    }
}

/// An enum's name as words: `TooManyConnections` → "too many connections".
fn spaced_words(name: &str) -> String {
    let mut words = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            words.push(' ');
        }
        words.extend(c.to_lowercase());
    }
    words
}
