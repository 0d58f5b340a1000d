//! A named requirement with its verdict and fix: what verify reports, publish refuses on and
//! every frontend lists. It depends on nothing else in the engine, so step events can carry it.

use serde::Serialize;

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Warn,
    Fail,
    Skipped,
}

impl Verdict {
    /// `pass`, `FAIL`, `warn`, `skip`: the words every text report uses.
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "FAIL",
            Verdict::Warn => "warn",
            Verdict::Skipped => "skip",
        }
    }
}

/// One named requirement, what was found, and how to fix it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    /// Stable identifier for JSON/JUnit consumers, e.g. `qcow2-v3`.
    pub id: &'static str,
    pub name: &'static str,
    pub verdict: Verdict,
    pub detail: String,
    pub fix: Option<String>,
}

impl Check {
    /// `[FAIL] name: detail`, as logs and the checklist show a verdict.
    pub fn line(&self) -> String {
        format!("[{}] {}: {}", self.verdict.word(), self.name, self.detail)
    }

    pub fn new(
        id: &'static str,
        name: &'static str,
        verdict: Verdict,
        detail: impl Into<String>,
    ) -> Check {
        Check {
            id,
            name,
            verdict,
            detail: printable(&detail.into()),
            fix: None,
        }
    }

    pub fn fix(mut self, fix: impl Into<String>) -> Check {
        self.fix = Some(printable(&fix.into()));
        self
    }

    pub fn skipped(id: &'static str, name: &'static str, because: &str) -> Check {
        Check::new(id, name, Verdict::Skipped, format!("skipped: {because}"))
    }
}

/// Guest text (a serial console's last lines, a server's answer) as every report can carry
/// it: terminal escape sequences and other control characters become visible `\x1b`-style
/// escapes (they would drive the reader's terminal, and make JUnit XML invalid exactly when
/// it reports a failure); carriage returns go; newlines and tabs stay.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' | '\t' => out.push(c),
            '\r' => {}
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// The checks that failed outright (a publish or a boot must not go ahead).
pub fn failures(checks: &[Check]) -> Vec<&Check> {
    checks
        .iter()
        .filter(|c| c.verdict == Verdict::Fail)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_text_cannot_drive_the_terminal_or_break_xml() {
        let serial = "login: \x1b[2J\x1b]0;owned\x07root\r\nnext\tline\u{0}";
        let check = Check::new("boots", "boots", Verdict::Fail, serial).fix("see \x1b[31mred");
        assert_eq!(
            check.detail,
            "login: \\x1b[2J\\x1b]0;owned\\x07root\nnext\tline\\x00"
        );
        assert_eq!(check.fix.as_deref(), Some("see \\x1b[31mred"));
        assert!(
            !check
                .line()
                .chars()
                .any(|c| c.is_control() && c != '\n' && c != '\t')
        );
    }
}
