//! Loading the private key a login uses.

use std::io;
use std::path::Path;
use std::sync::Arc;

use russh::keys::PrivateKey;

use crate::engine::guest::ssh::SshError;

/// Load (and decrypt) a private key off the async runtime: bcrypt-pbkdf is deliberately slow.
pub(super) async fn load_key(
    path: &Path,
    passphrase: Option<String>,
) -> Result<Arc<PrivateKey>, SshError> {
    let owned = path.to_path_buf();
    let loaded = tokio::task::spawn_blocking(move || {
        let text = std::fs::read_to_string(&owned).map_err(|e| match e.kind() {
            io::ErrorKind::InvalidData => KeyTrouble::Invalid("not a text file".into()),
            _ => KeyTrouble::Unreadable(e),
        })?;
        // russh reads an encrypted PKCS#8 key without a passphrase as a plain one and fails
        // with a DER error; the PEM label says what is really going on.
        if passphrase.is_none() && text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
            return Err(KeyTrouble::Encrypted);
        }
        russh::keys::decode_secret_key(&text, passphrase.as_deref())
            .map_err(|e| key_trouble(passphrase.is_some(), e))
    })
    .await
    .map_err(|e| KeyTrouble::Invalid(e.to_string()))
    .and_then(|loaded| loaded);
    let path = path.to_path_buf();
    match loaded {
        Ok(key) => Ok(Arc::new(key)),
        Err(KeyTrouble::Encrypted) => Err(SshError::KeyEncrypted { path }),
        Err(KeyTrouble::WrongPassphrase) => Err(SshError::WrongPassphrase { path }),
        Err(KeyTrouble::Unreadable(source)) => Err(SshError::KeyUnreadable { path, source }),
        Err(KeyTrouble::Invalid(detail)) => Err(SshError::KeyInvalid { path, detail }),
    }
}

enum KeyTrouble {
    Encrypted,
    WrongPassphrase,
    Unreadable(io::Error),
    Invalid(String),
}

fn key_trouble(had_passphrase: bool, e: russh::keys::Error) -> KeyTrouble {
    use russh::keys::{Error, ssh_key};
    match e {
        Error::KeyIsEncrypted => KeyTrouble::Encrypted,
        // A wrong passphrase decrypts to garbage: OpenSSH keys' check words differ, PEM keys'
        // padding is bad, PKCS#8 keys fail to decrypt or parse.
        Error::SshKey(ssh_key::Error::Crypto) | Error::Unpad(_) | Error::Pkcs8(_)
            if had_passphrase =>
        {
            KeyTrouble::WrongPassphrase
        }
        other => KeyTrouble::Invalid(other.to_string()),
    }
}
