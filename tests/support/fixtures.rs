//! The real test guests, built from Debian packages by tests/fixtures/build.sh (cached).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// Paths of the built fixtures and the facts in guest.env.
pub struct Fixtures {
    pub disk: PathBuf,
    pub iso: PathBuf,
    pub env: HashMap<String, String>,
}

impl Fixtures {
    pub fn var(&self, name: &str) -> &str {
        self.env
            .get(name)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("{name} in guest.env"))
    }
}

/// Build (or reuse) the fixtures once per test binary; build.sh itself locks across binaries.
pub fn fixtures() -> &'static Fixtures {
    static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/build.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg("all")
            .output()
            .expect("tests/fixtures/build.sh runs");
        assert!(
            out.status.success(),
            "fixture build failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let value = |key: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{key}=")))
                .map(PathBuf::from)
                .unwrap_or_else(|| panic!("build.sh printed no {key}:\n{stdout}"))
        };
        let env_file = value("KILN_FIXTURE_ENV");
        let env = std::fs::read_to_string(&env_file)
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| {
                (
                    k.to_string(),
                    v.trim_matches('\'').trim_matches('"').to_string(),
                )
            })
            .collect();
        Fixtures {
            disk: value("KILN_FIXTURE_DISK"),
            iso: value("KILN_FIXTURE_ISO"),
            env,
        }
    })
}

/// The broken (and one good) variants of the installed disk, from tests/fixtures/variants.sh:
/// `good` passes every check; each other one differs from it in exactly one way.
pub fn variant(name: &str) -> PathBuf {
    static VARIANTS: OnceLock<HashMap<String, PathBuf>> = OnceLock::new();
    let variants = VARIANTS.get_or_init(|| {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/variants.sh");
        let out = Command::new("bash")
            .arg(&script)
            .output()
            .expect("variants.sh runs");
        assert!(
            out.status.success(),
            "variants build failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.strip_prefix("KILN_VARIANT_"))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_ascii_lowercase().replace('_', "-"), PathBuf::from(v)))
            .collect()
    });
    variants
        .get(name)
        .unwrap_or_else(|| panic!("no variant {name}; have {:?}", variants.keys()))
        .clone()
}

/// The real Debian installer (netboot, text frontend) packed as an isolinux ISO, from
/// tests/fixtures/debian-installer.sh (cached).
pub fn debian_installer_iso() -> PathBuf {
    static ISO: OnceLock<PathBuf> = OnceLock::new();
    ISO.get_or_init(|| {
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/debian-installer.sh");
        let out = Command::new("bash")
            .arg(&script)
            .output()
            .expect("debian-installer.sh runs");
        assert!(
            out.status.success(),
            "Debian installer ISO build failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        stdout
            .lines()
            .find_map(|l| l.strip_prefix("KILN_FIXTURE_DI_ISO="))
            .map(PathBuf::from)
            .unwrap_or_else(|| panic!("debian-installer.sh printed no ISO:\n{stdout}"))
    })
    .clone()
}

/// A cloud image as distributions ship one (cloud-init, root locked, no user, no password,
/// `datasource_list: [NoCloud, None]`), from tests/fixtures/debian-cloud-image.sh (cached).
pub fn cloud_image() -> PathBuf {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE
        .get_or_init(|| {
            let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/debian-cloud-image.sh");
            let out = Command::new("bash")
                .arg(&script)
                .output()
                .expect("debian-cloud-image.sh runs");
            assert!(
                out.status.success(),
                "cloud image fixture build failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let stdout = String::from_utf8_lossy(&out.stdout);
            stdout
                .lines()
                .find_map(|l| l.strip_prefix("KILN_FIXTURE_CLOUD_IMAGE="))
                .map(PathBuf::from)
                .unwrap_or_else(|| panic!("debian-cloud-image.sh printed no image:\n{stdout}"))
        })
        .clone()
}
