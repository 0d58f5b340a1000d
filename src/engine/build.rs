//! `kiln build`: what a recipe means for the stages. A recipe becomes the workflow's choices
//! (create, install, configure, each publish destination), the secrets it names (read from
//! files or the environment when the build starts), provisioning requests, and the
//! post-build command with the image's facts. The plan (`plan.rs`) puts them in order.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::engine::steps::post_build::PostBuildCommand;

use super::recipe::{Publish, Recipe, Source};
use super::session::Choices;
use super::workflow::{Secrets, Workflow, secret_from_file};
use crate::engine::host::vcpus::Vcpus;
use crate::engine::steps::configure::Cleanup;
use crate::engine::steps::provision::{ProvisionRequest, ProvisionStep};

/// How long a provisioning machine may take to offer SSH.
const PROVISION_BOOT_DEADLINE: Duration = Duration::from_secs(300);

/// Where the build writes the image: NAME.qcow2 beside the recipe.
pub fn image_path(recipe: &Recipe) -> PathBuf {
    recipe_dir(recipe).join(format!("{}.qcow2", recipe.name))
}

/// NAME.build.log and NAME.build.json beside the image.
pub fn report_paths(recipe: &Recipe) -> (PathBuf, PathBuf) {
    let dir = recipe_dir(recipe);
    (
        dir.join(format!("{}.build.log", recipe.name)),
        dir.join(format!("{}.build.json", recipe.name)),
    )
}

/// NAME.verify-PROFILE.junit.xml beside the image: one profile's verdicts.
pub fn junit_path(recipe: &Recipe, profile: &str) -> PathBuf {
    recipe_dir(recipe).join(format!("{}.verify-{profile}.junit.xml", recipe.name))
}

fn recipe_dir(recipe: &Recipe) -> PathBuf {
    recipe
        .file
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The choices for create, install and configure. The cleanups wait for provisioning, so
/// they run last in the guest; verify takes the first profile (see [`verify_choices`]).
pub fn choices(recipe: &Recipe) -> Choices {
    let mut choices = Choices {
        size: recipe.disk.size.clone(),
        memory_mib: recipe.machine.memory_mib.map(Into::into),
        cpus: recipe.machine.cpus.map(|n| Vcpus::Exactly(n.get())),
        user: Some(
            recipe
                .configure
                .user
                .clone()
                .unwrap_or_else(|| "root".into()),
        ),
        key: recipe.configure.key.clone(),
        variant: recipe.configure.variant,
        sshd_config: recipe.configure.sshd_config.clone(),
        cleanup: Some(Cleanup::none()),
        ..Choices::default()
    };
    if let Source::Base(base) = &recipe.source
        && base.cloud_init
    {
        choices.update(&Choices {
            base_image: Some(base.image.clone()),
            cloud_init: Some(true),
            user_data: base.user_data.clone(),
            keep_build_user: Some(base.keep_build_user),
            ..Choices::default()
        });
    }
    if let Source::Install(install) = &recipe.source {
        let on = |flag: bool| Some(flag);
        choices.update(&Choices {
            iso: install.iso.clone(),
            iso_checksum: install.iso_sha256.clone(),
            boot_command: install.boot_command.clone(),
            boot_wait: install.boot_wait.clone(),
            key_interval: install.key_interval.clone(),
            http_dir: install.http_dir.clone(),
            http_port: install.http_port,
            kernel_boot: on(install.kernel_boot),
            kernel: install.kernel.clone(),
            initrd: install.initrd.clone(),
            kernel_sha256: install.kernel_sha256.clone(),
            initrd_sha256: install.initrd_sha256.clone(),
            kernel_args: install.kernel_args.clone(),
            serial_console: on(install.serial_console),
            preset: install.preset.clone(),
            mirror: install.mirror.clone(),
            insecure_mirror: on(install.insecure_mirror),
            ..Choices::default()
        });
    }
    choices
}

/// The choices of one publish destination (each starts from none of the previous one's).
pub fn publish_choices(recipe: &Recipe, publish: &Publish) -> Choices {
    Choices {
        target: Some(publish.target),
        url: publish.url.clone(),
        namespace: publish.namespace.clone(),
        name: Some(publish.name.clone().unwrap_or_else(|| recipe.name.clone())),
        driver_conf: publish.driver_conf.clone(),
        root: publish.root.clone(),
        release: publish.release.clone(),
        arch: publish.arch.clone(),
        dest: publish.dest.clone(),
        base: Some(publish.base),
        compact: Some(publish.compact),
        compress: Some(publish.compress),
        sha256: Some(publish.sha256),
        replace: Some(publish.replace),
        ..Choices::default()
    }
}

/// The secrets the recipe names, read now: a file's first line or a variable. Every
/// variable the recipe names is hidden from the programs kiln starts (QEMU, the post-build
/// command).
pub fn secrets(recipe: &Recipe) -> Result<Secrets, String> {
    let configure = &recipe.configure;
    let variables = [&configure.password_env, &configure.passphrase_env]
        .into_iter()
        .chain(recipe.publish.iter().map(|publish| &publish.token_env));
    for name in variables.flatten() {
        crate::engine::host::process::hide_from_children(name);
    }
    Ok(Secrets {
        password: secret(
            &configure.password_file,
            &configure.password_env,
            "password",
        )?,
        passphrase: secret(
            &configure.passphrase_file,
            &configure.passphrase_env,
            "key passphrase",
        )?,
        token: None,
    })
}

/// A publish destination's token, from the variable it names (else kiln's usual token).
pub fn token(publish: &Publish) -> Result<Option<crate::engine::steps::publish::Token>, String> {
    Ok(secret(&None, &publish.token_env, "Djinn token")?
        .as_deref()
        .and_then(crate::engine::steps::publish::Token::new))
}

fn secret(
    file: &Option<PathBuf>,
    variable: &Option<String>,
    what: &str,
) -> Result<Option<String>, String> {
    if let Some(file) = file {
        return secret_from_file(file)
            .map(Some)
            .map_err(|e| format!("cannot read the {what} file {}: {e}", file.display()));
    }
    match variable {
        Some(name) => std::env::var(name)
            .map(Some)
            .map_err(|_| format!("the {what} variable {name} is not set")),
        None => Ok(None),
    }
}

/// Provisioning `steps`, then `cleanup`, on the workflow's image, in the machine size the
/// session chose (a recipe's `[machine]`) or the settings'.
pub fn provision_request(
    workflow: &Workflow,
    steps: Vec<ProvisionStep>,
    cleanup: Cleanup,
) -> ProvisionRequest {
    let choices = workflow.choices();
    let environment = &workflow.environment;
    ProvisionRequest {
        image: workflow.image(),
        accelerator: environment.accelerator,
        memory_mib: choices
            .memory_mib
            .unwrap_or(environment.settings.memory_mib),
        cpus: choices.cpus.unwrap_or(environment.settings.cpus),
        steps,
        cleanup,
        boot_deadline: PROVISION_BOOT_DEADLINE,
        record_dir: environment.record_dir.clone(),
    }
}

/// Copy a base image to the build's image (into a temporary name, then renamed: never a
/// half-written image). The base itself is only read.
pub async fn copy_base(base: &Path, image: &Path) -> std::io::Result<()> {
    let dir = crate::engine::host::temp_file::parent_dir(image);
    let name = image
        .file_name()
        .map_or_else(|| "image".into(), |n| n.to_string_lossy().into_owned());
    let temp = crate::engine::host::temp_file::TempFile::create(&dir, &name, "copy")?;
    tokio::fs::copy(base, temp.path()).await?;
    temp.rename_to(image)
}

/// The recipe's post-build command (none: only the image's facts are taken).
pub fn post_build_command(recipe: &Recipe) -> PostBuildCommand {
    PostBuildCommand {
        name: recipe.name.clone(),
        dir: recipe_dir(recipe),
        command: recipe.post_build.as_ref().map(|p| p.command.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference recipes in assets/recipes load beside the files that ship with them,
    /// once the person's own (an ISO, a password, a driver.conf) are there too.
    #[test]
    fn the_reference_recipes_load() {
        let recipes = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/recipes");
        let dir = tempfile::tempdir().unwrap();
        let at = |name: &str| dir.path().join(name);
        copy_dir(&recipes, dir.path());
        std::fs::create_dir(at("secrets")).unwrap();
        for supplied in [
            "installer.iso",
            "password.txt",
            "driver.conf",
            "debian-12-netinst.iso",
            "SHA256SUMS",
            "secrets/builder-password.txt",
        ] {
            std::fs::write(at(supplied), "x\n").unwrap();
        }
        for (name, destinations) in [("fixture-ci.toml", 2), ("debian-12.toml", 0)] {
            let recipe = Recipe::load(&at(name), &[])
                .unwrap_or_else(|e| panic!("assets/recipes/{name}: {e}"));
            assert!(!recipe.provision.is_empty(), "{name}");
            assert_eq!(recipe.publish.len(), destinations, "{name}");
            assert_eq!(image_path(&recipe), at(&format!("{}.qcow2", recipe.name)));
        }
    }

    fn copy_dir(from: &Path, to: &Path) {
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                std::fs::create_dir(&target).unwrap();
                copy_dir(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    }
}
