//! A base image copied into place instead of created and installed: a recipe's `[base]` as
//! it is, or a distribution's cloud image as a standalone qcow2 v3 — the way in of
//! `kiln run --base`, of a recipe with `cloud_init = true`, and of the workbench's Install
//! "cloud image". One copy for all of them, so the base is treated the same everywhere.

use std::path::{Path, PathBuf};

use super::StepError;
use crate::engine::build;
use crate::engine::session::Choices;
use crate::engine::steps::cloud_image;
use crate::engine::task::{Cancelled, Reporter, Summary};

/// What was copied where; a cloud image's SHA-256, for the session file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseCopy {
    pub base: PathBuf,
    pub image: PathBuf,
    pub sha256: Option<String>,
}

impl Summary for BaseCopy {
    fn summary(&self) -> String {
        format!("copied {} to {}", self.base.display(), self.image.display())
    }
}

/// Copy `base` over `image`. A cloud image (`choices.cloud_init`) becomes a standalone qcow2
/// v3 grown to the chosen size; a recipe's plain base is copied byte for byte. The base is
/// only ever read, and `image` changes only when the whole copy is there.
pub async fn copy_base(
    base: &Path,
    image: &Path,
    choices: &Choices,
    reporter: &Reporter,
) -> Result<BaseCopy, StepError> {
    let cannot = |e: String| StepError::Failed(format!("cannot copy {}: {e}", base.display()));
    if is_same_file(base, image) {
        return Err(StepError::Usage(format!(
            "{} is the base itself: kiln never writes the base, so the image needs another name",
            image.display()
        )));
    }
    let mut copy = BaseCopy {
        base: base.to_path_buf(),
        image: image.to_path_buf(),
        sha256: None,
    };
    if !choices.starts_from_cloud_image() {
        build::copy_base(base, image)
            .await
            .map_err(|e| cannot(e.to_string()))?;
        return Ok(copy);
    }
    let grown = choices
        .size
        .as_ref()
        .map_or(String::new(), |size| format!(", grown to {size}"));
    reporter.info(format!(
        "qemu-img convert -O qcow2 -o compat=1.1 {} (only read) to a standalone copy{grown}",
        base.display(),
    ));
    let copying = cloud_image::copy_base(base, image, choices.size.as_ref(), reporter);
    let sha256 = tokio::select! {
        copied = copying => copied.map_err(cannot)?,
        _ = reporter.cancelled() => {
            let left = format!("no copy of {} was left", base.display());
            return Err(StepError::Cancelled(Cancelled(left)));
        }
    };
    reporter.info(format!("{}: SHA-256 {sha256}", base.display()));
    copy.sha256 = Some(sha256);
    Ok(copy)
}

/// Whether both paths name one file (a link or another spelling of the base included).
fn is_same_file(base: &Path, image: &Path) -> bool {
    match (std::fs::canonicalize(base), std::fs::canonicalize(image)) {
        (Ok(base), Ok(image)) => base == image,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::task::test_reporter;

    #[tokio::test]
    async fn the_base_is_never_its_own_copy() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.qcow2");
        std::fs::write(&base, b"QFI\xfbbase").unwrap();
        let link = dir.path().join("ci.qcow2");
        std::os::unix::fs::symlink(&base, &link).unwrap();
        let cloud = Choices {
            cloud_init: Some(true),
            ..Choices::default()
        };
        let error = copy_base(&base, &link, &cloud, &test_reporter())
            .await
            .unwrap_err();
        assert!(matches!(error, StepError::Usage(_)), "{error}");
        assert!(error.to_string().contains("is the base itself"), "{error}");
        assert_eq!(std::fs::read(&base).unwrap(), b"QFI\xfbbase");
    }

    #[tokio::test]
    async fn a_plain_base_is_copied_as_it_is_without_a_sum() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.img");
        std::fs::write(&base, b"bytes").unwrap();
        let image = dir.path().join("ci.img");
        let copy = copy_base(&base, &image, &Choices::default(), &test_reporter())
            .await
            .unwrap();
        assert_eq!(copy.sha256, None);
        assert_eq!(std::fs::read(&image).unwrap(), b"bytes");
        assert!(copy.summary().starts_with("copied "), "{}", copy.summary());
    }
}
