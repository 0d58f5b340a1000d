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
            detail: detail.into(),
            fix: None,
        }
    }

    pub fn fix(mut self, fix: impl Into<String>) -> Check {
        self.fix = Some(fix.into());
        self
    }

    pub fn skipped(id: &'static str, name: &'static str, because: &str) -> Check {
        Check::new(id, name, Verdict::Skipped, format!("skipped: {because}"))
    }
}

/// The checks that failed outright (a publish or a boot must not go ahead).
pub fn failures(checks: &[Check]) -> Vec<&Check> {
    checks
        .iter()
        .filter(|c| c.verdict == Verdict::Fail)
        .collect()
}
