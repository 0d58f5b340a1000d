//! The NoCloud seed kiln writes for one boot of a cloud image: an ephemeral ed25519 key pair,
//! a build user with passwordless sudo that logs in with it, the person's own user-data merged
//! in — on a `cidata` ISO 9660 volume made by xorriso (no root needed).
//!
//! Everything lives in a private directory (mode 0700) that is removed when the [`Seed`] is
//! dropped; the private key is only ever written there, never into the ISO or a log.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use russh::keys::ssh_key::{LineEnding, PrivateKey, private::Ed25519Keypair};

use super::CloudImageError;
use crate::engine::files::open_regular;
use crate::engine::host::process::run_tool;

/// The user kiln's seed creates, and removes again after the build unless asked to keep it.
pub const BUILD_USER: &str = "kiln-build";
/// Between the parts of a multi-part user-data (RFC 2046); no user-data line starts with it.
const BOUNDARY: &str = "==kiln-nocloud-seed-boundary==";
const XORRISO_TIMEOUT: Duration = Duration::from_secs(60);

/// A seed on disk: the ISO to attach, the private key that logs in as [`BUILD_USER`].
#[derive(Debug)]
pub struct Seed {
    dir: tempfile::TempDir,
    /// Random per boot, so cloud-init treats every seeded boot as a new instance and creates
    /// the build user with this boot's key even on an image it has seen before.
    pub instance_id: String,
}

/// The person's user-data: a regular file only (a FIFO would block the read for good).
fn read_user_data(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    open_regular(path)?.read_to_end(&mut bytes)?;
    Ok(bytes)
}

impl Seed {
    /// Write the key pair, `user-data` (the person's own `own_user_data` merged in when
    /// given) and `meta-data`, and pack them as a `cidata` volume.
    pub async fn write(own_user_data: Option<&Path>) -> Result<Seed, CloudImageError> {
        let own = match own_user_data {
            Some(path) => Some(read_user_data(path).map_err(|e| CloudImageError::UserData {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?),
            None => None,
        };
        let dir = private_dir().map_err(CloudImageError::Seed)?;
        let random = random_bytes::<40>().map_err(CloudImageError::Seed)?;
        let (key_seed, id) = random.split_at(32);
        let keypair = Ed25519Keypair::from_seed(key_seed.try_into().expect("32 bytes"));
        let private = PrivateKey::from(keypair);
        let key_text = private
            .to_openssh(LineEnding::LF)
            .map_err(|e| CloudImageError::Seed(std::io::Error::other(e.to_string())))?;
        let public = private
            .public_key()
            .to_openssh()
            .map_err(|e| CloudImageError::Seed(std::io::Error::other(e.to_string())))?;
        let seed = Seed {
            dir,
            instance_id: format!("kiln-{}", hex::encode(id)),
        };
        write_private(&seed.key(), key_text.as_bytes()).map_err(CloudImageError::Seed)?;

        let volume = seed.dir.path().join("cidata");
        std::fs::create_dir(&volume).map_err(CloudImageError::Seed)?;
        let meta_data = format!("instance-id: {}\n", seed.instance_id);
        std::fs::write(volume.join("meta-data"), meta_data).map_err(CloudImageError::Seed)?;
        std::fs::write(volume.join("user-data"), user_data(&public, own.as_deref()))
            .map_err(CloudImageError::Seed)?;
        let iso = seed.iso();
        run_tool(
            "xorriso",
            [
                "-as".as_ref(),
                "mkisofs".as_ref(),
                "-quiet".as_ref(),
                "-o".as_ref(),
                iso.as_os_str(),
                "-V".as_ref(),
                "cidata".as_ref(),
                "-J".as_ref(),
                "-r".as_ref(),
                volume.as_os_str(),
            ],
            XORRISO_TIMEOUT,
        )
        .await
        .map_err(|e| CloudImageError::SeedVolume(e.to_string()))?;
        Ok(seed)
    }

    /// The `cidata` volume to attach as the guest's CD-ROM.
    pub fn iso(&self) -> PathBuf {
        self.dir.path().join("seed.iso")
    }

    /// The private key that logs in as [`BUILD_USER`] (mode 0600, in the private directory).
    pub fn key(&self) -> PathBuf {
        self.dir.path().join("id_ed25519")
    }
}

/// kiln's own cloud-config: the build user with this boot's key and passwordless sudo. Its
/// `merge_how` appends to lists and keeps what is there, so a `users:` list of the person's
/// own keeps its users and gains this one.
fn kiln_cloud_config(public_key: &str) -> String {
    format!(
        "#cloud-config\n\
         merge_how:\n\
         \x20 - name: list\n\
         \x20   settings: [append]\n\
         \x20 - name: dict\n\
         \x20   settings: [no_replace, recurse_list]\n\
         users:\n\
         \x20 - name: {BUILD_USER}\n\
         \x20   gecos: kiln build user (removed after the build)\n\
         \x20   shell: /bin/sh\n\
         \x20   lock_passwd: true\n\
         \x20   sudo: \"ALL=(ALL) NOPASSWD:ALL\"\n\
         \x20   ssh_authorized_keys:\n\
         \x20     - {public_key}\n"
    )
}

/// The user-data cloud-init reads: kiln's cloud-config alone, or a MIME multi-part with the
/// person's own part first, passed through unread (`text/plain` makes cloud-init sort it by its
/// first line, `#cloud-config`, `#!`…, exactly as if it were the whole user-data) — so a
/// broken part fails in cloud-init, with cloud-init's own words, and kiln's part last.
fn user_data(public_key: &str, own: Option<&[u8]>) -> Vec<u8> {
    let kiln = kiln_cloud_config(public_key);
    let Some(own) = own else {
        return kiln.into_bytes();
    };
    let mut text = format!(
        "Content-Type: multipart/mixed; boundary=\"{BOUNDARY}\"\nMIME-Version: 1.0\n\n\
         --{BOUNDARY}\nContent-Type: text/plain; charset=\"utf-8\"\n\
         Content-Disposition: attachment; filename=\"user-data\"\n\n"
    )
    .into_bytes();
    text.extend_from_slice(own);
    if !own.ends_with(b"\n") {
        text.push(b'\n');
    }
    text.extend_from_slice(
        format!(
            "--{BOUNDARY}\nContent-Type: text/cloud-config; charset=\"utf-8\"\n\
             Content-Disposition: attachment; filename=\"kiln.cfg\"\n\n{kiln}--{BOUNDARY}--\n"
        )
        .as_bytes(),
    );
    text
}

/// A new directory only we can enter, under `$XDG_RUNTIME_DIR` when set (a tmpfs of our own),
/// else the temp dir.
fn private_dir() -> std::io::Result<tempfile::TempDir> {
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|dir| dir.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    tempfile::Builder::new()
        .prefix("kiln-seed-")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(base)
}

/// Created with mode 0600 before a byte is written.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}

fn random_bytes<const N: usize>() -> std::io::Result<[u8; N]> {
    let mut bytes = [0u8; N];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_persons_user_data_goes_first_unread_and_kilns_part_last() {
        let own = b"#cloud-config\npackages: [git\n";
        let text = String::from_utf8(user_data("ssh-ed25519 AAAA test", Some(own))).unwrap();
        let own_at = text.find("packages: [git\n").unwrap();
        let kiln_at = text.find(&format!("name: {BUILD_USER}")).unwrap();
        assert!(own_at < kiln_at, "{text}");
        assert!(text.contains("Content-Type: text/plain"), "{text}");
        assert!(text.ends_with(&format!("--{BOUNDARY}--\n")), "{text}");
        let alone = String::from_utf8(user_data("ssh-ed25519 AAAA test", None)).unwrap();
        assert!(alone.starts_with("#cloud-config\n"), "{alone}");
        assert!(alone.contains("      - ssh-ed25519 AAAA test\n"), "{alone}");
        assert!(alone.contains("NOPASSWD:ALL"), "{alone}");
    }

    #[tokio::test]
    async fn the_private_key_stays_in_a_private_directory_that_goes_away() {
        if crate::engine::host::process::find_on_path("xorriso").is_none() {
            panic!("xorriso is needed (apt-get install xorriso)");
        }
        let seed = Seed::write(None).await.unwrap();
        let dir = seed.dir.path().to_path_buf();
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&seed.key()), 0o600);
        let key = std::fs::read_to_string(seed.key()).unwrap();
        assert!(key.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
        let iso = std::fs::read(seed.iso()).unwrap();
        // ISO 9660's primary volume descriptor carries the label at byte 40 of sector 16.
        assert_eq!(&iso[0x8000 + 40..0x8000 + 46], b"cidata");
        let body = &key.lines().nth(1).unwrap()[..20];
        assert!(
            !iso.windows(body.len()).any(|w| w == body.as_bytes()),
            "the private key is in the ISO"
        );
        drop(seed);
        assert!(!dir.exists());
    }
}
