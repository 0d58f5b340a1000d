//! The end of a recipe: the finished image's facts (size, virtual size, SHA-256), then the
//! recipe's post-build command with those facts in its environment.

use std::path::{Path, PathBuf};

use serde::Serialize;

/// What the post-build command and the summary say about the finished image.
#[derive(Debug, Clone, Serialize)]
pub struct ImageFacts {
    pub name: String,
    pub path: PathBuf,
    pub size: u64,
    pub virtual_size: u64,
    pub sha256: String,
}

impl ImageFacts {
    /// The post-build command's environment.
    pub fn environment(&self) -> Vec<(&'static str, String)> {
        vec![
            ("KILN_IMAGE_NAME", self.name.clone()),
            ("KILN_IMAGE_PATH", self.path.display().to_string()),
            ("KILN_IMAGE_SIZE", self.size.to_string()),
            ("KILN_IMAGE_VIRTUAL_SIZE", self.virtual_size.to_string()),
            ("KILN_IMAGE_SHA256", self.sha256.clone()),
        ]
    }
}

/// The end of a build: the image's facts, then the post-build command with them.
#[derive(Debug, Clone)]
pub struct Finished {
    pub facts: ImageFacts,
    pub post_build: Option<PathBuf>,
}

impl crate::engine::task::Summary for Finished {
    fn summary(&self) -> String {
        let ran = match &self.post_build {
            Some(command) => format!("; {} ran", command.display()),
            None => String::new(),
        };
        format!(
            "{} is {} (sha256 {}){ran}",
            self.facts.path.display(),
            crate::engine::units::human_bytes(self.facts.size),
            self.facts.sha256
        )
    }
}

/// Why the end of a build failed.
#[derive(Debug, thiserror::Error)]
pub enum FinishError {
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Panicked(#[from] crate::engine::task::TaskPanicked),
}

impl From<String> for FinishError {
    fn from(problem: String) -> FinishError {
        FinishError::Failed(problem)
    }
}

/// The end of a recipe: the name its facts carry, and the command to run with them.
#[derive(Debug, Clone)]
pub struct PostBuildCommand {
    pub name: String,
    /// Where the command runs: the recipe's directory.
    pub dir: PathBuf,
    pub command: Option<PathBuf>,
}

/// Read the finished image's facts and run the post-build command (in the recipe's
/// directory, its output in the log); a failing command fails the build.
pub async fn finish(
    post_build: &PostBuildCommand,
    image: &Path,
    reporter: crate::engine::task::Reporter,
) -> Result<Finished, FinishError> {
    let info = super::image::image_info(image)
        .await
        .map_err(|e| e.to_string())?;
    reporter.info("computing the image's SHA-256…");
    let sha256 = crate::engine::files::iso::sha256_file(image, &reporter)
        .await
        .map_err(|e| e.to_string())?;
    let facts = ImageFacts {
        name: post_build.name.clone(),
        path: image.to_path_buf(),
        size: info.actual_size,
        virtual_size: info.virtual_size,
        sha256,
    };
    let Some(post_build_command) = &post_build.command else {
        return Ok(Finished {
            facts,
            post_build: None,
        });
    };
    let command = post_build_command.display().to_string();
    reporter.info(format!("running {command}"));
    let output = crate::engine::host::process::command(&command)
        .current_dir(&post_build.dir)
        .envs(facts.environment())
        .output()
        .await
        .map_err(|e| format!("cannot run {command}: {e}"))?;
    for line in String::from_utf8_lossy(&output.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&output.stderr).lines())
    {
        reporter.info(format!("[post-build] {line}"));
    }
    if !output.status.success() {
        return Err(format!("{command} failed ({})", output.status).into());
    }
    Ok(Finished {
        facts,
        post_build: Some(post_build_command.clone()),
    })
}
