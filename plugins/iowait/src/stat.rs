//! CPU time counters from `/proc/stat` and the percentages between two readings.

use std::path::{Path, PathBuf};

/// Why `/proc/stat` could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatError {
    #[error("cannot read {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("{path} has no aggregate \"cpu\" line")]
    NoCpuLine { path: PathBuf },
    #[error(
        "{path}: the cpu line has {found} counters; at least 5 are needed (user nice system idle iowait)"
    )]
    TooFewCounters { path: PathBuf, found: usize },
    #[error("{path}: counter {index} of the cpu line is not a number: {value:?}")]
    NotANumber {
        path: PathBuf,
        index: usize,
        value: String,
    },
    #[error("no CPU time has been counted yet")]
    NothingCounted,
}

/// The machine-wide CPU time counters (in clock ticks) of the `cpu` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuTimes {
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    pub irq: u64,
    pub softirq: u64,
    pub steal: u64,
}

impl CpuTimes {
    /// Reads `<proc_root>/stat`.
    pub fn read(proc_root: &Path) -> Result<Self, StatError> {
        let path = proc_root.join("stat");
        let text = std::fs::read_to_string(&path).map_err(|e| StatError::Read {
            path: path.clone(),
            message: e.to_string(),
        })?;
        Self::parse(&text, &path)
    }

    /// Parses the text of `/proc/stat` (`path` is only for messages). Guest time is
    /// already counted in user and nice time, so it is left out.
    pub fn parse(text: &str, path: &Path) -> Result<Self, StatError> {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some("cpu"))
            .ok_or_else(|| StatError::NoCpuLine {
                path: path.to_path_buf(),
            })?;
        let fields: Vec<&str> = line.split_whitespace().skip(1).collect();
        if fields.len() < 5 {
            return Err(StatError::TooFewCounters {
                path: path.to_path_buf(),
                found: fields.len(),
            });
        }
        let mut values = [0u64; 8];
        for (index, (slot, field)) in values.iter_mut().zip(&fields).enumerate() {
            *slot = field.parse().map_err(|_| StatError::NotANumber {
                path: path.to_path_buf(),
                index,
                value: field.to_string(),
            })?;
        }
        let [user, nice, system, idle, iowait, irq, softirq, steal] = values;
        Ok(CpuTimes {
            user,
            nice,
            system,
            idle,
            iowait,
            irq,
            softirq,
            steal,
        })
    }

    fn total(&self) -> u64 {
        [
            self.user,
            self.nice,
            self.system,
            self.idle,
            self.iowait,
            self.irq,
            self.softirq,
            self.steal,
        ]
        .iter()
        .fold(0u64, |sum, v| sum.saturating_add(*v))
    }

    /// The counters that grew from `earlier` to `self`. The kernel's iowait counter
    /// can step backwards on tickless systems; a counter that shrank counts as 0.
    fn since(&self, earlier: &CpuTimes) -> CpuTimes {
        CpuTimes {
            user: self.user.saturating_sub(earlier.user),
            nice: self.nice.saturating_sub(earlier.nice),
            system: self.system.saturating_sub(earlier.system),
            idle: self.idle.saturating_sub(earlier.idle),
            iowait: self.iowait.saturating_sub(earlier.iowait),
            irq: self.irq.saturating_sub(earlier.irq),
            softirq: self.softirq.saturating_sub(earlier.softirq),
            steal: self.steal.saturating_sub(earlier.steal),
        }
    }
}

/// Shares of CPU time, in percent of all CPUs' time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuPercent {
    pub iowait: f64,
    pub idle: f64,
}

impl CpuPercent {
    /// The shares between two readings; `None` when no time was counted in between.
    pub fn between(earlier: &CpuTimes, later: &CpuTimes) -> Option<Self> {
        Self::of(&later.since(earlier))
    }

    /// The shares since boot (what a first reading tells, like iostat's first line).
    pub fn since_boot(times: &CpuTimes) -> Option<Self> {
        Self::of(times)
    }

    fn of(delta: &CpuTimes) -> Option<Self> {
        let total = delta.total();
        if total == 0 {
            return None;
        }
        let pct = |v: u64| v as f64 * 100.0 / total as f64;
        Some(CpuPercent {
            iowait: pct(delta.iowait),
            idle: pct(delta.idle),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

    fn fixture(name: &str) -> CpuTimes {
        CpuTimes::read(&Path::new(FIXTURES).join(name)).expect("fixture parses")
    }

    #[test]
    fn the_aggregate_cpu_line_is_parsed_and_per_cpu_lines_ignored() {
        let t = fixture("busy-io/t0");
        assert_eq!(
            t,
            CpuTimes {
                user: 10_000,
                nice: 100,
                system: 3_000,
                idle: 80_000,
                iowait: 2_000,
                irq: 50,
                softirq: 150,
                steal: 0,
            }
        );
    }

    #[test]
    fn percentages_come_from_the_difference_of_two_readings() {
        let p = CpuPercent::between(&fixture("busy-io/t0"), &fixture("busy-io/t1"))
            .expect("time passed");
        // t1 - t0: user 60, system 20, idle 80, iowait 40 → 200 ticks.
        assert_eq!(p.iowait, 20.0);
        assert_eq!(p.idle, 40.0);
    }

    #[test]
    fn the_first_reading_gives_the_average_since_boot() {
        let p = CpuPercent::since_boot(&fixture("busy-io/t0")).expect("counted");
        let total = 10_000.0 + 100.0 + 3_000.0 + 80_000.0 + 2_000.0 + 50.0 + 150.0;
        assert!((p.iowait - 2_000.0 * 100.0 / total).abs() < 1e-9);
        assert!((p.idle - 80_000.0 * 100.0 / total).abs() < 1e-9);
    }

    #[test]
    fn an_old_kernel_line_with_five_counters_is_enough() {
        let t = CpuTimes::parse("cpu  1 2 3 4 5\n", Path::new("stat")).expect("parses");
        assert_eq!((t.iowait, t.steal), (5, 0));
    }

    #[test]
    fn a_counter_that_steps_back_counts_as_zero() {
        let earlier = CpuTimes {
            idle: 100,
            iowait: 50,
            ..Default::default()
        };
        let later = CpuTimes {
            idle: 200,
            iowait: 40,
            ..Default::default()
        };
        let p = CpuPercent::between(&earlier, &later).expect("idle grew");
        assert_eq!((p.iowait, p.idle), (0.0, 100.0));
        assert_eq!(CpuPercent::between(&later, &later), None, "no time passed");
    }

    #[test]
    fn broken_files_give_errors_that_say_what_is_wrong() {
        let path = Path::new("/proc/stat");
        let no_cpu = CpuTimes::parse("intr 1 2\nctxt 3\n", path).expect_err("no cpu line");
        assert_eq!(
            no_cpu.to_string(),
            "/proc/stat has no aggregate \"cpu\" line"
        );
        let short = CpuTimes::parse("cpu 1 2 3\n", path).expect_err("short");
        assert!(short.to_string().contains("has 3 counters"), "{short}");
        let bad = CpuTimes::parse("cpu 1 2 x 4 5\n", path).expect_err("not a number");
        assert!(bad.to_string().contains("counter 2"), "{bad}");
        let missing = CpuTimes::read(Path::new("/nonexistent-proc")).expect_err("missing");
        assert!(
            missing
                .to_string()
                .starts_with("cannot read /nonexistent-proc/stat"),
            "{missing}"
        );
    }
}
