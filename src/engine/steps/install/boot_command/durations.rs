//! Durations as boot commands write them (Go's `1m30s`, `500ms`) and as the step log shows them.

use std::time::Duration;

use serde_with::{DeserializeFromStr, SerializeDisplay};

use super::Problem;

/// The duration of `<wait…>` (`written` includes the `wait`).
pub(super) fn wait(written: &str) -> Result<Duration, Problem> {
    let spec = written[4..].to_lowercase();
    let bad = |reason: String| Problem::BadWait {
        written: written.to_string(),
        reason,
    };
    let duration = if spec.is_empty() {
        Duration::from_secs(1)
    } else if spec.chars().all(|c| c.is_ascii_digit()) {
        // Packer reads a bare number as seconds: <wait5>, <wait10>.
        let seconds = spec
            .parse()
            .map_err(|_| bad(format!("{spec} seconds is too long")))?;
        Duration::from_secs(seconds)
    } else {
        go_duration(&spec).map_err(bad)?
    };
    if duration.is_zero() {
        return Err(Problem::ZeroWait(written.to_string()));
    }
    Ok(duration)
}

/// The boot wait or the key interval as a person wrote it (`10s`, `1m30s`), read once where
/// it is typed: the duration, and the text the session file records.
#[derive(Debug, Clone, PartialEq, Eq, SerializeDisplay, DeserializeFromStr)]
pub struct WrittenDuration {
    written: String,
    duration: Duration,
}

impl WrittenDuration {
    pub fn duration(&self) -> Duration {
        self.duration
    }
}

impl std::str::FromStr for WrittenDuration {
    type Err = String;

    fn from_str(text: &str) -> Result<WrittenDuration, String> {
        Ok(WrittenDuration {
            written: text.trim().to_string(),
            duration: parse_duration(text)?,
        })
    }
}

impl std::fmt::Display for WrittenDuration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.written)
    }
}

/// A duration as boot commands write them (`10s`, `1m30s`, `500ms`; a bare number is
/// seconds), for the boot wait and the key interval.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim().to_lowercase();
    if !text.is_empty() && text.chars().all(|c| c.is_ascii_digit()) {
        return text
            .parse()
            .map(Duration::from_secs)
            .map_err(|_| format!("{text} seconds is too long"));
    }
    if text.is_empty() {
        return Err("a duration is missing (e.g. 10s, 1m30s, 500ms)".into());
    }
    go_duration(&text)
}

/// Go's `time.ParseDuration` for what a wait needs: numbers with an optional fraction, each
/// followed by a unit (`1m30s`, `1.5h`, `500ms`), no sign.
fn go_duration(spec: &str) -> Result<Duration, String> {
    let mut rest = spec;
    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let number_length = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_length);
        let unit_length = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_length);
        total_nanos += term_nanos(number, unit)?;
        rest = after;
    }
    let nanos = u64::try_from(total_nanos).map_err(|_| format!("{spec} is too long"))?;
    Ok(Duration::from_nanos(nanos))
}

/// Nanoseconds in one `number unit` term of a duration.
fn term_nanos(number: &str, unit: &str) -> Result<u128, String> {
    let unit_nanos: u128 = match unit {
        "h" => 3_600_000_000_000,
        "m" => 60_000_000_000,
        "s" => 1_000_000_000,
        "ms" => 1_000_000,
        "us" | "µs" => 1_000,
        "ns" => 1,
        "" => return Err(format!("{number} needs a unit (h, m, s or ms)")),
        unit => return Err(format!("unknown unit `{unit}` (h, m, s or ms)")),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return Err(format!("a number is missing before `{unit}`"));
    }
    if fraction.contains('.') {
        return Err(format!("`{number}` is not a number"));
    }
    let too_long = || format!("{number}{unit} is too long");
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| too_long())?
    };
    let mut nanos = whole.checked_mul(unit_nanos).ok_or_else(too_long)?;
    // Each fraction digit is worth a tenth of the one before; past a nanosecond it is dropped,
    // as Go does.
    let mut digit_worth = unit_nanos;
    for digit in fraction.chars().filter_map(|c| c.to_digit(10)) {
        digit_worth /= 10;
        nanos += u128::from(digit) * digit_worth;
    }
    Ok(nanos)
}

/// `500 ms`, `5 s`, `1.5 s`, `1 min 30 s`, `2 h`.
pub fn human_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if duration < Duration::from_secs(1) && !duration.subsec_nanos().is_multiple_of(1_000_000) {
        return format!("{duration:?}");
    }
    if millis < 1000 {
        return format!("{millis} ms");
    }
    let hours = millis / 3_600_000;
    let minutes = millis / 60_000 % 60;
    let seconds = millis % 60_000;
    let mut parts = Vec::new();
    if hours > 0 {
        parts.push(format!("{hours} h"));
    }
    if minutes > 0 {
        parts.push(format!("{minutes} min"));
    }
    if seconds > 0 {
        let fraction = format!("{:03}", seconds % 1000);
        let fraction = fraction.trim_end_matches('0');
        let point = if fraction.is_empty() { "" } else { "." };
        parts.push(format!("{}{point}{fraction} s", seconds / 1000));
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::super::Action;
    use super::super::tests::{at, fixed_actions, parse_error};
    use super::*;

    fn wait_of(source: &str) -> Duration {
        match fixed_actions(source).as_slice() {
            [Action::Wait(duration)] => *duration,
            other => panic!("{source}: {other:?}"),
        }
    }

    #[test]
    fn waits_in_every_form() {
        let cases = [
            ("<wait>", Duration::from_secs(1)),
            ("<wait5>", Duration::from_secs(5)),
            ("<wait10>", Duration::from_secs(10)),
            ("<wait3>", Duration::from_secs(3)),
            ("<WAIT10>", Duration::from_secs(10)),
            ("<wait2s>", Duration::from_secs(2)),
            ("<wait500ms>", Duration::from_millis(500)),
            ("<wait1m30s>", Duration::from_secs(90)),
            ("<wait1h>", Duration::from_secs(3600)),
            ("<wait1h2m3s4ms>", Duration::from_millis(3_723_004)),
            ("<wait1.5s>", Duration::from_millis(1500)),
            ("<wait.5m>", Duration::from_secs(30)),
            ("<wait250us>", Duration::from_micros(250)),
            ("<wait250µs>", Duration::from_micros(250)),
            ("<wait7ns>", Duration::from_nanos(7)),
            ("<Wait2M>", Duration::from_secs(120)),
        ];
        for (source, expected) in cases {
            assert_eq!(wait_of(source), expected, "{source}");
        }
    }

    #[test]
    fn malformed_waits_are_errors() {
        let cases = [
            ("<wait1x>", "unknown unit `x`"),
            ("<waitms>", "a number is missing before `ms`"),
            ("<wait1m30>", "30 needs a unit"),
            ("<wait1.2.3s>", "`1.2.3` is not a number"),
            ("<wait.s>", "a number is missing before `s`"),
            ("<waitOn>", "unknown unit `on`"),
            ("<wait99999999999999999999>", "too long"),
            ("<wait9999999999h>", "too long"),
        ];
        for (source, reason_part) in cases {
            let error = parse_error(source);
            assert_eq!(error.at, at(1, 1), "{source}");
            match &error.problem {
                Problem::BadWait { reason, .. } => {
                    assert!(reason.contains(reason_part), "{source}: {reason}")
                }
                other => panic!("{source}: {other:?}"),
            }
        }
        for source in ["<wait0>", "<wait0s>", "<wait0.0001ns>"] {
            let error = parse_error(source);
            assert!(matches!(error.problem, Problem::ZeroWait(_)), "{error}");
        }
    }

    #[test]
    fn durations_read_naturally() {
        let cases = [
            (Duration::from_millis(500), "500 ms"),
            (Duration::from_secs(5), "5 s"),
            (Duration::from_millis(1500), "1.5 s"),
            (Duration::from_millis(1050), "1.05 s"),
            (Duration::from_secs(90), "1 min 30 s"),
            (Duration::from_secs(3600), "1 h"),
            (Duration::from_secs(3601), "1 h 1 s"),
            (Duration::from_micros(250), "250µs"),
        ];
        for (duration, expected) in cases {
            assert_eq!(human_duration(duration), expected);
        }
    }
}
