//! The `no-passwords-left` check: a password hash or an installer's password answer left in a
//! file of the image is published with it, into every clone. It runs in the test boot (static
//! checks cannot read the guest's filesystem), through the session the driver's procedure
//! opened, and names each file.

use std::time::Duration;

use crate::engine::check::{Check, Verdict};
use crate::engine::guest::ssh::Session;
use crate::engine::task::Reporter;

/// Its id and name (the last of the boot checks).
pub const NO_PASSWORDS_LEFT: (&str, &str) =
    ("no-passwords-left", "no password left in the image's files");

/// Searching a few hundred MB of /etc and /var under TCG takes a while.
const SEARCH_TIMEOUT: Duration = Duration::from_secs(300);
/// Shorter known passwords are not searched for: they would match ordinary text.
const SHORTEST_SEARCHED: usize = 6;

/// Passwords the flow knows (the one configure logged in with), searched for as plain text.
/// Kept out of `Debug` output and sent to the guest on stdin only, never in a command line.
#[derive(Clone, Default)]
pub struct KnownPasswords(Vec<String>);

impl KnownPasswords {
    pub fn new(passwords: impl IntoIterator<Item = String>) -> KnownPasswords {
        KnownPasswords(
            passwords
                .into_iter()
                .filter(|p| p.chars().count() >= SHORTEST_SEARCHED && !p.contains('\n'))
                .collect(),
        )
    }
}

impl std::fmt::Debug for KnownPasswords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KnownPasswords({} redacted)", self.0.len())
    }
}

/// Where leftovers of a build live: not /usr (packaged files), and not the account database
/// itself (/etc/shadow, /etc/gshadow hold the hashes a system needs). Its backup /etc/shadow-
/// is judged against it: a hash there that /etc/shadow no longer has is an old password.
const SEARCHED: &str = "/etc /root /home /var /srv /opt /tmp /boot";

/// Prints `FILE\tWHAT` per finding, then `searched N`. Known passwords come on stdin, one a
/// line. Binary files (the journal) are not read.
const SEARCH: &str = r#"known=/run/kiln-known.$$; cat > "$known"; trap 'rm -f "$known" "$known.files"' EXIT
roots=""; for d in /etc /root /home /var /srv /opt /tmp /boot; do [ -d "$d" ] && roots="$roots $d"; done
find $roots -xdev \( -path /var/lib/apt/lists -o -path /var/cache/apt -o -path /var/lib/dpkg -o -path /proc -o -path /sys \) -prune \
  -o -type f -size -20M ! -path /etc/shadow ! -path /etc/gshadow ! -path /etc/shadow- -print > "$known.files"
files() { tr '\n' '\0' < "$known.files" | xargs -0 -r "$@" 2>/dev/null; }
files grep -IlE '\$(1|2[abxy]|5|6|7|y|gy)\$[./0-9A-Za-z=,]+\$[./0-9A-Za-z$=]{16,}' | sed 's/$/\ta password hash/'
files grep -IlE 'passwd/(root|user)-password(-again|-crypted)?[[:space:]]+password[[:space:]]+[^[:space:]]' | sed 's/$/\ta preseed password answer/'
files grep -IlE '^Name: passwd/.*password' | while IFS= read -r f; do
  awk '/^Name: passwd\/.*password/ { q = 1; next } /^$/ { q = 0 } q && /^Value: ./ { found = 1 } END { exit !found }' "$f" \
    && printf '%s\ta debconf password answer\n' "$f"
done
[ -f /etc/shadow- ] && awk -F: 'NR == FNR { now[$1] = $2; next } $2 ~ /^\$/ && now[$1] != $2 { old = 1 } END { exit !old }' /etc/shadow /etc/shadow- \
  && printf '%s\tan old password hash (not the one in /etc/shadow)\n' /etc/shadow-
[ -s "$known" ] && files grep -IlFf "$known" | sed "s/\$/\tthe password configure logged in with/"
echo "searched $(wc -l < "$known.files")"
"#;

/// One file and what was found in it.
#[derive(Debug, PartialEq)]
struct Finding {
    file: String,
    what: String,
}

/// The findings (one file once, with everything found in it) and the number of files searched.
fn parse(output: &str) -> (Vec<Finding>, Option<usize>) {
    let mut findings: Vec<Finding> = Vec::new();
    let mut searched = None;
    for line in output.lines() {
        if let Some(count) = line.strip_prefix("searched ") {
            searched = count.trim().parse().ok();
        } else if let Some((file, what)) = line.split_once('\t') {
            match findings.iter_mut().find(|f| f.file == file) {
                Some(found) if !found.what.contains(what) => {
                    found.what = format!("{}, {what}", found.what)
                }
                Some(_) => {}
                None => findings.push(Finding {
                    file: file.to_string(),
                    what: what.to_string(),
                }),
            }
        }
    }
    (findings, searched)
}

/// The check, from a search run through `session` as `user` (`sudo -n` when not root).
pub async fn no_passwords_left(
    session: &Session,
    user: &str,
    known: &KnownPasswords,
    reporter: &Reporter,
) -> Check {
    let (id, name) = NO_PASSWORDS_LEFT;
    reporter.info(format!(
        "searching {SEARCHED} for password hashes and installer password answers…"
    ));
    let command = match user {
        "root" => format!("sh -c {}", quote(SEARCH)),
        _ => format!("sudo -n sh -c {}", quote(SEARCH)),
    };
    let stdin: String = known.0.iter().map(|p| format!("{p}\n")).collect();
    let out = match session
        .exec(&command, Some(stdin.as_bytes()), &[], SEARCH_TIMEOUT)
        .await
    {
        Ok(out) => out,
        Err(e) => {
            return Check::new(
                id,
                name,
                Verdict::Warn,
                format!("the search did not run: {e}"),
            )
            .fix("run the check again; the guest may be short of memory or time");
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let (findings, searched) = parse(&stdout);
    let Some(searched) = searched else {
        let why = out.stderr_text();
        return match user {
            "root" => Check::new(id, name, Verdict::Warn, format!("the search failed: {why}")),
            _ => Check::skipped(
                id,
                name,
                &format!("{user} cannot read the whole filesystem (sudo -n refused: {why})"),
            ),
        };
    };
    if findings.is_empty() {
        return Check::new(
            id,
            name,
            Verdict::Pass,
            format!(
                "no password hash or installer password answer in {searched} files under {SEARCHED} (besides /etc/shadow)"
            ),
        );
    }
    let listed: Vec<String> = findings
        .iter()
        .map(|f| format!("{} ({})", f.file, f.what))
        .collect();
    Check::new(
        id,
        name,
        Verdict::Fail,
        format!(
            "the image would be published with passwords in it: {}",
            listed.join("; ")
        ),
    )
    .fix("configure with --clean (logfiles removes /var/log/installer, passwd-backups /etc/shadow-) or delete these files in the image; then change every password they reveal")
}

fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn findings_name_each_file_once_with_everything_found_in_it() {
        let output = "/etc/shadow-\ta password hash\n\
                      /var/log/installer/cdebconf/questions.dat\ta debconf password answer\n\
                      /etc/shadow-\ta password hash\n\
                      /root/preseed.cfg\ta password hash\n\
                      /root/preseed.cfg\ta preseed password answer\n\
                      searched 1234\n";
        let (findings, searched) = parse(output);
        assert_eq!(searched, Some(1234));
        assert_eq!(
            findings,
            vec![
                Finding {
                    file: "/etc/shadow-".into(),
                    what: "a password hash".into()
                },
                Finding {
                    file: "/var/log/installer/cdebconf/questions.dat".into(),
                    what: "a debconf password answer".into()
                },
                Finding {
                    file: "/root/preseed.cfg".into(),
                    what: "a password hash, a preseed password answer".into()
                },
            ]
        );
        assert_eq!(parse("sudo: a password is required\n").1, None);
    }

    #[test]
    fn known_passwords_are_redacted_and_short_ones_not_searched() {
        let known = KnownPasswords::new(["builder-pass".to_string(), "abc".to_string()]);
        assert_eq!(known.0, vec!["builder-pass"]);
        assert!(!format!("{known:?}").contains("builder"));
    }

    /// The patterns, run by the host's own grep and awk on the forms they must catch (and on
    /// what they must not).
    #[test]
    fn the_search_catches_hashes_and_preseed_and_debconf_answers() {
        let dir = std::env::temp_dir().join(format!("kiln-leftovers-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();
        let hash = |salt: &str| format!("$y$j9T${salt}$0123456789abcdefghijklmnopqrstuvwxyzABCDE");
        file(
            "stray-hash",
            &format!("root:{}:19000:0:99999:7:::\n", hash("abcdefghijklmnop")),
        );
        // The account database and its backup: builder's hash is in both, root's old one only
        // in the backup.
        file(
            "etc-shadow",
            &format!(
                "root::19000::::::\nbuilder:{}:19000::::::\n",
                hash("buildersaltsalt1")
            ),
        );
        file(
            "etc-shadow-",
            &format!(
                "root:{}:19000::::::\nbuilder:{}:19000::::::\n",
                hash("oldrootsaltsalt1"),
                hash("buildersaltsalt1")
            ),
        );
        file(
            "preseed.cfg",
            "d-i passwd/user-password password builder-pass\nd-i passwd/user-password-again password builder-pass\n",
        );
        file(
            "questions.dat",
            "Name: passwd/root-password\nTemplate: passwd/root-password\nValue: kiln-root\nOwners: d-i\n\nName: x\nValue: y\n",
        );
        file(
            "blanked.dat",
            "Name: passwd/root-password\nTemplate: passwd/root-password\nValue: \nOwners: d-i\n",
        );
        file(
            "script.sh",
            "echo \"$1$2\"; x=$6$HOME\nd-i passwd/root-password password\n",
        );
        file("known.txt", "the builder-pass was here\n");
        let script = SEARCH
            .replace(
                "/etc /root /home /var /srv /opt /tmp /boot",
                &dir.display().to_string(),
            )
            .replace("/etc/shadow", &format!("{}/etc-shadow", dir.display()))
            .replace("/run/kiln-known", &format!("{}-known", dir.display()));
        let out = std::process::Command::new("sh")
            .args(["-c", &script])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child.stdin.take().unwrap().write_all(b"builder-pass\n")?;
                child.wait_with_output()
            })
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        std::fs::remove_dir_all(&dir).unwrap();
        let (findings, searched) = parse(&stdout);
        // Eight files, less the account database and its backup (judged apart).
        assert_eq!(searched, Some(6), "{stdout}");
        let what = |name: &str| {
            findings
                .iter()
                .find(|f| f.file.ends_with(name))
                .map(|f| f.what.clone())
        };
        assert_eq!(
            what("/stray-hash").as_deref(),
            Some("a password hash"),
            "{stdout}"
        );
        assert!(
            what("/etc-shadow-").is_some_and(|w| w.starts_with("an old password hash")),
            "{stdout}"
        );
        assert_eq!(what("/etc-shadow"), None, "{stdout}");
        assert!(
            what("/preseed.cfg").is_some_and(|w| w.contains("a preseed password answer")
                && w.contains("the password configure logged in with")),
            "{stdout}"
        );
        assert_eq!(
            what("/questions.dat").as_deref(),
            Some("a debconf password answer"),
            "{stdout}"
        );
        assert_eq!(what("/blanked.dat"), None, "{stdout}");
        assert_eq!(what("/script.sh"), None, "{stdout}");
        assert_eq!(
            what("/known.txt").as_deref(),
            Some("the password configure logged in with"),
            "{stdout}"
        );
    }
}
