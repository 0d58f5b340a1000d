//! The package mirror a preset installs from: given as a URL or found in this host's apt
//! sources, and examined from this host before anything boots — is it the distribution's
//! archive for the preset's release, and is it signed? The installer checks signatures
//! itself; kiln asks first so that a wrong or unsigned mirror is a clear error in a second
//! rather than an installer stopped at a question half an hour in.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::answer_server::GUEST_HOST_ADDRESS;
use crate::engine::host::http::{self, error_chain};

/// How long the mirror may take to answer each request of the examination.
const EXAMINE_TIMEOUT: Duration = Duration::from_secs(30);

/// The archive a preset installs from, as its Release file names it (`preset.toml`'s
/// `[archive]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Archive {
    /// `Origin:` of the archive's Release file, e.g. `Debian`.
    pub origin: String,
    /// The suite the installer asks for, e.g. `bookworm`.
    pub suite: String,
}

/// A mirror as the installer asks for it: `host[:port]` and the archive's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    pub host: String,
    pub directory: String,
}

/// How the mirror's Release file is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signature {
    /// `InRelease`: the Release file with its signature inline.
    Inline,
    /// `Release` with a detached `Release.gpg`.
    Detached,
    /// `Release` alone.
    Unsigned,
}

#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error(
        "the mirror must be an http:// URL such as http://HOST/debian (the installer fetches over plain HTTP), not `{0}`"
    )]
    NotHttp(String),
    #[error(
        "this host's apt sources name no {origin} `{suite}` archive to install from: give a {origin} mirror with --mirror http://HOST/DIR (recipe: [install] mirror)"
    )]
    NoHostMirror { origin: String, suite: String },
    #[error(
        "cannot reach the mirror {url} from this host ({reason}); the installer reaches the network through this host and would not reach it either"
    )]
    Unreachable { url: String, reason: String },
    #[error("{url} is not the {origin} archive for `{suite}`: {why}")]
    NotTheArchive {
        url: String,
        origin: String,
        suite: String,
        why: String,
    },
    #[error(
        "{url} serves an unsigned Release (no InRelease, no Release.gpg), which the installer refuses: use a signed mirror, or for a local test mirror only, --insecure-mirror (recipe: [install] insecure_mirror = true)"
    )]
    Unsigned { url: String },
}

impl Mirror {
    /// `http://HOST[:PORT]/DIR` as the installer's host and directory.
    pub fn parse(url: &str) -> Result<Mirror, MirrorError> {
        let rest = url
            .trim()
            .strip_prefix("http://")
            .ok_or_else(|| MirrorError::NotHttp(url.to_string()))?;
        let (host, directory) = rest.split_once('/').unwrap_or((rest, ""));
        if host.is_empty() || host.contains(char::is_whitespace) {
            return Err(MirrorError::NotHttp(url.to_string()));
        }
        let directory = format!("/{}", directory.trim_end_matches('/'));
        Ok(Mirror {
            host: host.to_string(),
            directory,
        })
    }

    /// The first mirror in this host's apt sources that carries `archive`'s suite: one the
    /// host already trusts and reaches. A host of another distribution (or release) has
    /// none, and the person names one.
    pub fn from_host_apt(archive: &Archive) -> Result<Mirror, MirrorError> {
        let mut sources = Vec::new();
        let mut read = |path: &Path| {
            if let Ok(text) = std::fs::read_to_string(path) {
                let deb822 = path.extension().is_some_and(|e| e == "sources");
                sources.extend(apt_sources(&text, deb822));
            }
        };
        if let Ok(entries) = std::fs::read_dir("/etc/apt/sources.list.d") {
            let mut paths: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
            paths.sort();
            paths.iter().for_each(|path| read(path));
        }
        read(Path::new("/etc/apt/sources.list"));
        sources
            .iter()
            .filter(|source| source.suites.contains(&archive.suite))
            .find_map(|source| Mirror::parse(&source.uri).ok())
            .ok_or_else(|| MirrorError::NoHostMirror {
                origin: archive.origin.clone(),
                suite: archive.suite.clone(),
            })
    }

    /// The URL as the installer uses it.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.host, self.directory)
    }

    /// The URL as this host reaches it: the guest's 10.0.2.2 is this host's loopback.
    pub fn url_from_host(&self) -> String {
        let host = match self.host.strip_prefix(&GUEST_HOST_ADDRESS.to_string()) {
            Some(port) if port.is_empty() || port.starts_with(':') => format!("127.0.0.1{port}"),
            _ => self.host.clone(),
        };
        format!("http://{host}{}", self.directory)
    }

    /// Is this `archive`'s mirror, and how is its Release signed? An unsigned one is refused
    /// unless `insecure` (a local test mirror), since the installer would refuse it.
    pub async fn examine(
        &self,
        archive: &Archive,
        insecure: bool,
    ) -> Result<Signature, MirrorError> {
        let dists = format!("{}/dists/{}", self.url_from_host(), archive.suite);
        let client = http::client_builder()
            .timeout(EXAMINE_TIMEOUT)
            .build()
            .map_err(|e| self.unreachable(error_chain(&e)))?;
        let (release, signature) = match self.fetch(&client, &format!("{dists}/InRelease")).await? {
            Some(text) => (text, Signature::Inline),
            None => {
                let Some(text) = self.fetch(&client, &format!("{dists}/Release")).await? else {
                    return Err(self.not_the_archive(
                        archive,
                        format!("it has no dists/{}/InRelease or Release", archive.suite),
                    ));
                };
                match self.fetch(&client, &format!("{dists}/Release.gpg")).await? {
                    Some(_) => (text, Signature::Detached),
                    None => (text, Signature::Unsigned),
                }
            }
        };
        match release_field(&release, "Origin") {
            Some(origin) if origin == archive.origin => {}
            Some(origin) => {
                let why = format!("its Release file says `Origin: {origin}`");
                return Err(self.not_the_archive(archive, why));
            }
            None => {
                let why = "its Release file names no Origin".to_string();
                return Err(self.not_the_archive(archive, why));
            }
        }
        if signature == Signature::Unsigned && !insecure {
            return Err(MirrorError::Unsigned { url: self.url() });
        }
        Ok(signature)
    }

    /// A file's text; `None` when the mirror says it has no such file.
    async fn fetch(
        &self,
        client: &reqwest::Client,
        url: &str,
    ) -> Result<Option<String>, MirrorError> {
        let response = client
            .get(url)
            .send()
            .await
            .map_err(|e| self.unreachable(error_chain(&e)))?;
        let status = response.status();
        if matches!(status.as_u16(), 403 | 404 | 410) {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(self.unreachable(format!("{url} answered {status}")));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| self.unreachable(error_chain(&e)))?;
        Ok(Some(String::from_utf8_lossy(&body).into_owned()))
    }

    fn unreachable(&self, reason: String) -> MirrorError {
        MirrorError::Unreachable {
            url: self.url(),
            reason,
        }
    }

    fn not_the_archive(&self, archive: &Archive, why: String) -> MirrorError {
        MirrorError::NotTheArchive {
            url: self.url(),
            origin: archive.origin.clone(),
            suite: archive.suite.clone(),
            why,
        }
    }
}

impl std::fmt::Display for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Signature::Inline => "signed (InRelease)",
            Signature::Detached => "signed (Release.gpg)",
            Signature::Unsigned => "UNSIGNED",
        })
    }
}

/// A field of a Release file, e.g. `Origin: Debian` (the file lists in it are indented, so
/// a line that starts with the name is the field).
fn release_field<'a>(release: &'a str, name: &str) -> Option<&'a str> {
    release.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(':')?;
        Some(value.trim())
    })
}

/// One archive of an apt sources file: its URI and suites.
#[derive(Debug, PartialEq, Eq)]
struct AptSource {
    uri: String,
    suites: Vec<String>,
}

/// The archives of an apt sources file: the deb822 format's stanzas (`URIs:` × `Suites:`),
/// or each `deb` line of the one-line format (after any `[options]`).
fn apt_sources(text: &str, deb822: bool) -> Vec<AptSource> {
    if deb822 {
        return text
            .split("\n\n")
            .flat_map(|stanza| {
                let field = |name: &str| {
                    stanza
                        .lines()
                        .find_map(|line| line.trim().strip_prefix(name))
                        .map(|value| value.split_whitespace().map(String::from).collect())
                        .unwrap_or_else(Vec::new)
                };
                let (uris, suites) = (field("URIs:"), field("Suites:"));
                let is_deb = field("Types:").iter().any(|kind| kind == "deb");
                uris.into_iter()
                    .filter(move |_| is_deb)
                    .map(move |uri| AptSource {
                        uri,
                        suites: suites.clone(),
                    })
            })
            .collect();
    }
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("deb "))
        .filter_map(|rest| {
            let rest = match rest.trim_start().strip_prefix('[') {
                Some(options) => options.split_once(']')?.1,
                None => rest,
            };
            let mut words = rest.split_whitespace();
            Some(AptSource {
                uri: words.next()?.to_string(),
                suites: words.next().map(String::from).into_iter().collect(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_are_read_from_urls() {
        assert_eq!(
            Mirror::parse("http://mirror.example:3142/debian/").unwrap(),
            Mirror {
                host: "mirror.example:3142".into(),
                directory: "/debian".into()
            }
        );
        assert!(Mirror::parse("https://mirror.example/debian").is_err());
        assert!(Mirror::parse("http:///debian").is_err());
        let guest = Mirror::parse("http://10.0.2.2:8080/debian").unwrap();
        assert_eq!(guest.url(), "http://10.0.2.2:8080/debian");
        assert_eq!(guest.url_from_host(), "http://127.0.0.1:8080/debian");
        let other = Mirror::parse("http://10.0.2.20/debian").unwrap();
        assert_eq!(other.url_from_host(), "http://10.0.2.20/debian");
    }

    #[test]
    fn apt_sources_give_each_archive_with_its_suites() {
        let deb822 = "Types: deb\nURIs: http://a.example/debian\nSuites: bookworm bookworm-updates\n\
                      Components: main\n\nTypes: deb-src\nURIs: http://src.example/debian\n\
                      Suites: bookworm\n\nTypes: deb\nURIs: http://a.example/debian-security\n\
                      Suites: bookworm-security\n";
        assert_eq!(
            apt_sources(deb822, true),
            [
                AptSource {
                    uri: "http://a.example/debian".into(),
                    suites: vec!["bookworm".into(), "bookworm-updates".into()],
                },
                AptSource {
                    uri: "http://a.example/debian-security".into(),
                    suites: vec!["bookworm-security".into()],
                },
            ]
        );
        let one_line = "# comment\ndeb [arch=amd64] http://b.example/ubuntu noble main\n\
                        deb http://c.example/debian bookworm main\n";
        let uris: Vec<_> = apt_sources(one_line, false)
            .into_iter()
            .map(|s| (s.uri, s.suites))
            .collect();
        assert_eq!(
            uris,
            [
                ("http://b.example/ubuntu".into(), vec!["noble".to_string()]),
                (
                    "http://c.example/debian".into(),
                    vec!["bookworm".to_string()]
                ),
            ]
        );
    }

    #[test]
    fn the_release_header_gives_its_fields_even_when_signed_inline() {
        let inline = "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nOrigin: Debian\n\
                      Label: Debian\nSuite: stable\nCodename: bookworm\nSHA256:\n abc 1 main/x\n\
                      -----BEGIN PGP SIGNATURE-----\n";
        assert_eq!(release_field(inline, "Origin"), Some("Debian"));
        assert_eq!(release_field(inline, "Codename"), Some("bookworm"));
        assert_eq!(release_field("Origin: Ubuntu\n", "Origin"), Some("Ubuntu"));
        assert_eq!(release_field("Label: kiln\n", "Origin"), None);
    }

    /// A mirror directory served on 127.0.0.1, named as the guest names it (10.0.2.2).
    struct Served {
        dir: tempfile::TempDir,
        server: super::super::answer_server::AnswerServer,
    }

    impl Served {
        fn new(files: &[(&str, &str)]) -> Served {
            let dir = tempfile::tempdir().unwrap();
            for (name, text) in files {
                let path = dir.path().join("debian/dists/bookworm").join(name);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, text).unwrap();
            }
            let (sender, _requests) = tokio::sync::mpsc::unbounded_channel();
            let server =
                super::super::answer_server::AnswerServer::start(dir.path(), None, sender).unwrap();
            Served { dir, server }
        }

        async fn examine(&self, insecure: bool) -> Result<Signature, MirrorError> {
            let url = format!("http://10.0.2.2:{}/debian", self.server.port());
            let debian = Archive {
                origin: "Debian".into(),
                suite: "bookworm".into(),
            };
            let _ = &self.dir;
            Mirror::parse(&url)
                .unwrap()
                .examine(&debian, insecure)
                .await
        }
    }

    const SIGNED: &str = "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nOrigin: Debian\n\
                          Codename: bookworm\n-----BEGIN PGP SIGNATURE-----\n";

    #[tokio::test]
    async fn a_signed_debian_mirror_passes_and_an_unsigned_one_only_when_asked() {
        let inline = Served::new(&[("InRelease", SIGNED)]);
        assert_eq!(inline.examine(false).await.unwrap(), Signature::Inline);
        let release = "Origin: Debian\nCodename: bookworm\n";
        let detached = Served::new(&[("Release", release), ("Release.gpg", "sig")]);
        assert_eq!(detached.examine(false).await.unwrap(), Signature::Detached);
        let unsigned = Served::new(&[("Release", release)]);
        let refused = unsigned.examine(false).await.unwrap_err().to_string();
        assert!(refused.contains("unsigned"), "{refused}");
        assert!(refused.contains("--insecure-mirror"), "{refused}");
        assert_eq!(unsigned.examine(true).await.unwrap(), Signature::Unsigned);
    }

    #[tokio::test]
    async fn another_distribution_or_no_archive_at_all_is_refused_with_the_reason() {
        let ubuntu = Served::new(&[("InRelease", &SIGNED.replace("Debian", "Ubuntu"))]);
        let refused = ubuntu.examine(true).await.unwrap_err().to_string();
        assert!(
            refused.contains("is not the Debian archive for `bookworm`"),
            "{refused}"
        );
        assert!(refused.contains("Origin: Ubuntu"), "{refused}");
        let empty = Served::new(&[]);
        let refused = empty.examine(true).await.unwrap_err().to_string();
        assert!(
            refused.contains("no dists/bookworm/InRelease or Release"),
            "{refused}"
        );
        let nobody = Mirror::parse("http://127.0.0.1:9/debian").unwrap();
        let debian = Archive {
            origin: "Debian".into(),
            suite: "bookworm".into(),
        };
        let refused = nobody.examine(&debian, true).await.unwrap_err().to_string();
        assert!(
            refused.starts_with("cannot reach the mirror http://127.0.0.1:9/debian"),
            "{refused}"
        );
    }
}
