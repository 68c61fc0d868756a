//! What a report says about where and when it was made: the machine, the git revision, the time.

use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// The machine a benchmark ran on, read from `/proc` (fields are `None` where unreadable).
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// Logical CPUs available to this process.
    pub cpus: Option<usize>,
    /// `model name` of the first CPU in `/proc/cpuinfo`.
    pub cpu_model: Option<String>,
    /// `/proc/sys/kernel/osrelease`.
    pub kernel: Option<String>,
    /// `MemTotal` from `/proc/meminfo`, in MiB.
    pub memory_mib: Option<u64>,
}

impl Machine {
    pub fn detect() -> Machine {
        let read = |path: &str| std::fs::read_to_string(path).ok();
        Machine {
            cpus: std::thread::available_parallelism().ok().map(usize::from),
            cpu_model: read("/proc/cpuinfo").and_then(|text| cpu_model(&text)),
            kernel: read("/proc/sys/kernel/osrelease").map(|text| text.trim().to_string()),
            memory_mib: read("/proc/meminfo").and_then(|text| memory_total_mib(&text)),
        }
    }
}

fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find(|line| line.starts_with("model name"))
        .and_then(|line| line.split_once(':'))
        .map(|(_, model)| model.trim().to_string())
}

fn memory_total_mib(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|line| line.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// The checkout's revision, if `git` works here.
#[derive(Clone, Debug, Serialize)]
pub struct Revision {
    /// `git rev-parse --short HEAD`.
    pub commit: String,
    /// True when tracked files differ from that commit, so the figures are for uncommitted code.
    pub dirty: bool,
}

impl Revision {
    /// Asks git about the repository holding `directory`.
    pub fn detect(directory: &Path) -> Option<Revision> {
        let output =
            Command::new("git").arg("-C").arg(directory).args(["rev-parse", "--short", "HEAD"]).output().ok()?;
        if !output.status.success() {
            return None;
        }
        let commit = String::from_utf8(output.stdout).ok()?.trim().to_string();
        let dirty = Command::new("git")
            .arg("-C")
            .arg(directory)
            .args(["diff", "--quiet", "HEAD", "--"])
            .status()
            .map(|status| !status.success())
            .unwrap_or(false);
        Some(Revision { commit, dirty })
    }
}

/// The current time as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc_timestamp_now() -> String {
    let seconds = SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_secs()).unwrap_or(0);
    utc_timestamp(seconds)
}

/// Seconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian calendar).
fn utc_timestamp(seconds: u64) -> String {
    let days = (seconds / 86_400) as i64;
    let second_of_day = seconds % 86_400;
    // Days to civil date, after Howard Hinnant's `civil_from_days`.
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        second_of_day / 3_600,
        second_of_day / 60 % 60,
        second_of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_civil_utc() {
        assert_eq!(utc_timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_timestamp(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_timestamp(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(utc_timestamp(4_107_542_399), "2100-02-28T23:59:59Z");
    }

    #[test]
    fn proc_files_are_parsed() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\n";
        assert_eq!(cpu_model(cpuinfo).as_deref(), Some("Intel(R) Xeon(R) CPU @ 2.20GHz"));
        assert_eq!(cpu_model("processor : 0\n"), None);
        let meminfo = "MemTotal:        8148012 kB\nMemFree:          123 kB\n";
        assert_eq!(memory_total_mib(meminfo), Some(7957));
    }
}
