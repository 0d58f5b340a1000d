//! How many virtual CPUs a machine kiln owns gets.
//!
//! Under TCG each vCPU is a host thread (QEMU's multi-threaded TCG), so a second vCPU only
//! helps while a second host core is free for it. Measured with `benches/tcg.sh` on the
//! 2-core project machine: with the host otherwise idle, two vCPUs reached SSH in 0.74× the
//! time of one (login + sudo and the power-off were faster too); while other work held the
//! cores, they took 1.22× as long. So the default under TCG is decided when the machine
//! powers on, from how many host cores are idle at that moment.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How long the host's idle time is sampled before a machine powers on.
const SAMPLE: Duration = Duration::from_millis(150);
/// Idle cores needed for a second vCPU: one for each vCPU thread, less a margin for the
/// sampling's noise (a core that was 75 % idle is taken as free).
const IDLE_CORES_FOR_TWO: f64 = 1.5;

/// A machine's vCPU count, as the person, a recipe or the default set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vcpus {
    Exactly(u32),
    /// Two when two host cores are idle at power-on, else one (the default under TCG).
    ByIdleCores,
}

/// The count a machine got, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct VcpuChoice {
    pub count: u32,
    /// For a count decided at power-on: what the host looked like, e.g. `1.9 of 2 host cores idle`.
    pub reason: Option<String>,
}

impl VcpuChoice {
    /// `2 vCPUs (1.9 of 2 host cores idle)`.
    pub fn describe(&self) -> String {
        let plural = if self.count == 1 { "" } else { "s" };
        match &self.reason {
            Some(reason) => format!("{} vCPU{plural} ({reason})", self.count),
            None => format!("{} vCPU{plural}", self.count),
        }
    }
}

impl Vcpus {
    /// The count for a machine powering on now; [`Vcpus::ByIdleCores`] samples the host.
    pub async fn choose(self) -> VcpuChoice {
        match self {
            Vcpus::Exactly(count) => VcpuChoice {
                count,
                reason: None,
            },
            Vcpus::ByIdleCores => match idle_cores(SAMPLE).await {
                Some(idle) => VcpuChoice {
                    count: count_for_idle_cores(idle.idle),
                    reason: Some(format!(
                        "{:.1} of {} host cores idle",
                        idle.idle, idle.cores
                    )),
                },
                None => VcpuChoice {
                    count: 1,
                    reason: Some("the host's CPU use could not be read".into()),
                },
            },
        }
    }
}

fn count_for_idle_cores(idle: f64) -> u32 {
    if idle >= IDLE_CORES_FOR_TWO { 2 } else { 1 }
}

impl std::fmt::Display for Vcpus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Vcpus::Exactly(count) => write!(f, "{count}"),
            Vcpus::ByIdleCores => f.write_str("auto"),
        }
    }
}

impl std::str::FromStr for Vcpus {
    type Err = String;

    fn from_str(text: &str) -> Result<Vcpus, String> {
        match text {
            "auto" => Ok(Vcpus::ByIdleCores),
            _ => match text.parse::<u32>() {
                Ok(count) if count > 0 => Ok(Vcpus::Exactly(count)),
                _ => Err(format!(
                    "`{text}` is not a vCPU count (a number from 1, or auto)"
                )),
            },
        }
    }
}

/// `cpus = 2` or `cpus = "auto"`, in config.toml and in `kiln config`'s output.
impl Serialize for Vcpus {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Vcpus::Exactly(count) => serializer.serialize_u32(*count),
            Vcpus::ByIdleCores => serializer.serialize_str("auto"),
        }
    }
}

impl<'de> Deserialize<'de> for Vcpus {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Vcpus, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Count(u32),
            Word(String),
        }
        let text = match Written::deserialize(deserializer)? {
            Written::Count(count) => count.to_string(),
            Written::Word(word) => word,
        };
        // The value is not echoed: config errors must never repeat what was pasted there.
        text.parse()
            .map_err(|_| serde::de::Error::custom("expected a vCPU count from 1, or auto"))
    }
}

/// The host's idle cores over a sample.
#[derive(Debug, Clone, Copy, PartialEq)]
struct IdleCores {
    idle: f64,
    cores: usize,
}

/// How many host cores sat idle over `window`, counting kiln's own CPU time (and that of the
/// tools it ran and waited for) as idle: the machine about to start replaces that work.
async fn idle_cores(window: Duration) -> Option<IdleCores> {
    let before = CpuTimes::read()?;
    tokio::time::sleep(window).await;
    let after = CpuTimes::read()?;
    after.idle_cores_since(&before)
}

/// Clock ticks from `/proc/stat` (all cores) and `/proc/self/stat` (this process).
#[derive(Debug, Clone, PartialEq)]
struct CpuTimes {
    busy: u64,
    total: u64,
    own: u64,
    cores: usize,
}

impl CpuTimes {
    fn read() -> Option<CpuTimes> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let own = std::fs::read_to_string("/proc/self/stat").ok()?;
        CpuTimes::parse(&stat, &own)
    }

    fn parse(stat: &str, own: &str) -> Option<CpuTimes> {
        let mut lines = stat.lines();
        // user nice system idle iowait irq softirq steal (guest time is inside user)
        let all: Vec<u64> = lines
            .next()?
            .strip_prefix("cpu ")?
            .split_whitespace()
            .take(8)
            .map(|field| field.parse().ok())
            .collect::<Option<_>>()?;
        if all.len() < 5 {
            return None;
        }
        let total: u64 = all.iter().sum();
        let idle = all[3] + all[4];
        let cores = lines
            .filter(|line| {
                line.strip_prefix("cpu")
                    .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
            })
            .count();
        // The command name may hold spaces and parentheses: fields are counted after the
        // last `)`. utime, stime, cutime and cstime are fields 14–17, i.e. 12–15 after it.
        let after_name = &own[own.rfind(')')? + 1..];
        let own_ticks: u64 = after_name
            .split_whitespace()
            .skip(11)
            .take(4)
            .map(|field| field.parse::<u64>().ok())
            .sum::<Option<u64>>()?;
        Some(CpuTimes {
            busy: total - idle,
            total,
            own: own_ticks,
            cores: cores.max(1),
        })
    }

    fn idle_cores_since(&self, before: &CpuTimes) -> Option<IdleCores> {
        let total = self.total.checked_sub(before.total)?;
        if total == 0 {
            return None;
        }
        let others = self
            .busy
            .saturating_sub(before.busy)
            .saturating_sub(self.own.saturating_sub(before.own));
        let idle_share = 1.0 - (others as f64 / total as f64).min(1.0);
        Some(IdleCores {
            idle: idle_share * self.cores as f64,
            cores: self.cores,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 50 0 25 400 25 0 0 0 0 0\ncpu1 50 0 25 400 25 0 0 0 0 0\nintr 1 2 3\n";
    const OWN: &str = "4242 (kiln (x) y) S 1 1 1 0 -1 4194560 10 0 0 0 7 3 2 1 20 0 5 0";

    #[test]
    fn the_host_and_own_ticks_are_read_from_proc() {
        assert_eq!(
            CpuTimes::parse(STAT, OWN),
            Some(CpuTimes {
                busy: 150,
                total: 1000,
                own: 13,
                cores: 2,
            })
        );
        assert_eq!(CpuTimes::parse("intr 1\n", OWN), None);
        assert_eq!(CpuTimes::parse(STAT, "4242 kiln S"), None);
    }

    #[test]
    fn kiln_s_own_work_counts_as_idle_and_other_work_as_busy() {
        let at = |busy, total, own| CpuTimes {
            busy,
            total,
            own,
            cores: 2,
        };
        // 30 ticks of 200 busy, 20 of them kiln's own: 0.1 of two cores busy.
        let idle = at(130, 1200, 33).idle_cores_since(&at(100, 1000, 13));
        assert_eq!(idle.map(|i| (i.idle * 10.0).round()), Some(19.0));
        // Another program held one core of two the whole time.
        let idle = at(200, 1200, 13).idle_cores_since(&at(100, 1000, 13));
        assert_eq!(idle.map(|i| i.idle), Some(1.0));
        assert_eq!(at(100, 1000, 13).idle_cores_since(&at(100, 1000, 13)), None);
    }

    #[test]
    fn two_vcpus_only_while_two_cores_are_idle() {
        assert_eq!(count_for_idle_cores(1.9), 2);
        assert_eq!(count_for_idle_cores(1.5), 2);
        assert_eq!(count_for_idle_cores(1.4), 1);
        assert_eq!(count_for_idle_cores(0.3), 1);
    }

    #[tokio::test]
    async fn a_fixed_count_is_kept_and_the_sampled_one_is_one_or_two_with_its_reason() {
        assert_eq!(
            Vcpus::Exactly(3).choose().await,
            VcpuChoice {
                count: 3,
                reason: None
            }
        );
        let chosen = Vcpus::ByIdleCores.choose().await;
        assert!(matches!(chosen.count, 1 | 2), "{chosen:?}");
        let reason = chosen.reason.unwrap();
        assert!(reason.ends_with("host cores idle"), "{reason}");
    }

    #[test]
    fn auto_and_counts_read_and_print_the_same_way() {
        assert_eq!("auto".parse(), Ok(Vcpus::ByIdleCores));
        assert_eq!("2".parse(), Ok(Vcpus::Exactly(2)));
        assert!("0".parse::<Vcpus>().is_err());
        assert!("many".parse::<Vcpus>().is_err());
        assert_eq!(Vcpus::ByIdleCores.to_string(), "auto");
        #[derive(Debug, Deserialize, Serialize)]
        struct File {
            cpus: Vcpus,
        }
        for text in ["cpus = \"auto\"\n", "cpus = 2\n"] {
            let file: File = toml::from_str(text).unwrap();
            assert_eq!(toml::to_string(&file).unwrap(), text);
        }
        let error = toml::from_str::<File>("cpus = \"secret\"\n").unwrap_err();
        assert!(!error.message().contains("secret"), "{error}");
    }
}
