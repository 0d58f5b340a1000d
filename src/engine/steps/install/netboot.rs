//! Installing without an ISO, the way image builders do: a distribution's netboot kernel and
//! initrd (files on this host, or URLs downloaded once into kiln's cache and checked against
//! their SHA-256), booted directly with the kernel arguments that point the installer at its
//! answer file.

use std::path::PathBuf;

use crate::engine::files::download::{self, Cache, Checksum, DownloadError, Location};
use crate::engine::task::Reporter;

/// One of the two files, and the checksum it must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetbootFile {
    pub location: Location,
    pub checksum: Option<Checksum>,
}

impl NetbootFile {
    /// Read as written: a path or URL, and a checksum (64 hex digits, or `LIST[#PATH]`).
    pub fn parse(location: &str, checksum: Option<&str>) -> Result<NetbootFile, DownloadError> {
        let checksum = checksum
            .map(str::trim)
            .filter(|text| !text.is_empty())
            .map(str::parse)
            .transpose()?;
        Ok(NetbootFile {
            location: Location::parse(location),
            checksum,
        })
    }
}

/// The installer's kernel and initrd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Netboot {
    pub kernel: NetbootFile,
    pub initrd: NetbootFile,
}

impl Netboot {
    /// Both files on this host, downloaded or taken from the cache as needed, checked.
    pub async fn obtain(&self, reporter: &Reporter) -> Result<(PathBuf, PathBuf), DownloadError> {
        let cache = Cache::discover();
        let mut paths = Vec::new();
        for file in [&self.kernel, &self.initrd] {
            let path = download::obtain(
                &file.location,
                file.checksum.as_ref(),
                cache.as_ref(),
                reporter,
            )
            .await?;
            paths.push(std::fs::canonicalize(&path).unwrap_or(path));
        }
        let initrd = paths.pop().expect("two files");
        let kernel = paths.pop().expect("two files");
        Ok((kernel, initrd))
    }
}
