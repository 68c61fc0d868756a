//! What a report says about where and when it was made: the machine, the git revision, the time.

use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// The machine a benchmark ran on, read from `/proc` (fields are `None` where unreadable).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Machine {
    /// Logical CPUs available to this process.
    pub cpus: Option<usize>,
    /// `model name` of the first CPU in `/proc/cpuinfo`.
    pub cpu_model: Option<String>,
    /// `/proc/sys/kernel/osrelease`.
    pub kernel: Option<String>,
    /// `MemTotal` from `/proc/meminfo`, in MiB.
    pub memory_mib: Option<u64>,
    /// The disk holding the data directory named by `--data-dir` (or the current directory).
    pub disk: Option<Disk>,
}

/// The file system and device under a directory, from `/proc/self/mountinfo` and `/sys/block`.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Disk {
    pub path: String,
    pub mount_point: String,
    /// `ext4`, `xfs`, `tmpfs`, `overlay`, …
    pub fs_type: String,
    /// The mount source, e.g. `/dev/vda1`.
    pub device: String,
    /// `/sys/block/<disk>/device/model`, when the device is a block device that has one.
    pub model: Option<String>,
    /// `/sys/block/<disk>/queue/rotational`: false for SSDs and most virtual disks.
    pub rotational: Option<bool>,
}

impl Machine {
    /// Reads the machine, and the disk under `data_dir` if given and readable.
    pub fn detect(data_dir: Option<&Path>) -> Machine {
        let read = |path: &str| std::fs::read_to_string(path).ok();
        Machine {
            cpus: std::thread::available_parallelism().ok().map(usize::from),
            cpu_model: read("/proc/cpuinfo").and_then(|text| cpu_model(&text)),
            kernel: read("/proc/sys/kernel/osrelease").map(|text| text.trim().to_string()),
            memory_mib: read("/proc/meminfo").and_then(|text| memory_total_mib(&text)),
            disk: data_dir.and_then(Disk::detect),
        }
    }
}

impl Disk {
    pub fn detect(directory: &Path) -> Option<Disk> {
        let path = directory.canonicalize().ok()?;
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        let (mount_point, fs_type, device) = mount_of(&mountinfo, path.to_str()?)?;
        let block = device.strip_prefix("/dev/").and_then(block_device_name);
        let read = |name: &str, file: &str| std::fs::read_to_string(format!("/sys/block/{name}/{file}")).ok();
        Some(Disk {
            path: path.display().to_string(),
            mount_point,
            fs_type,
            model: block.as_deref().and_then(|name| read(name, "device/model")).map(|model| model.trim().to_string()),
            rotational: block.as_deref().and_then(|name| read(name, "queue/rotational")).map(|flag| flag.trim() == "1"),
            device,
        })
    }
}

/// The mount (point, type, source) of `/proc/self/mountinfo` whose point is the longest prefix
/// of `path`.
fn mount_of(mountinfo: &str, path: &str) -> Option<(String, String, String)> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let mount_point = *fields.get(4)?;
            let separator = fields.iter().position(|field| *field == "-")?;
            let fs_type = *fields.get(separator + 1)?;
            let source = *fields.get(separator + 2)?;
            let inside = path == mount_point
                || mount_point == "/"
                || path.strip_prefix(mount_point).is_some_and(|rest| rest.starts_with('/'));
            inside.then(|| (mount_point.to_string(), fs_type.to_string(), source.to_string()))
        })
        .max_by_key(|(mount_point, _, _)| mount_point.len())
}

/// The whole-disk name in `/sys/block` of a device or partition name (`vda1` → `vda`,
/// `nvme0n1p2` → `nvme0n1`), if there is one.
fn block_device_name(name: &str) -> Option<String> {
    let exists = |candidate: &str| Path::new("/sys/block").join(candidate).exists();
    if exists(name) {
        return Some(name.to_string());
    }
    let without_digits = name.trim_end_matches(|character: char| character.is_ascii_digit());
    let candidates = [without_digits.strip_suffix('p').unwrap_or(without_digits), without_digits];
    candidates.into_iter().find(|candidate| !candidate.is_empty() && exists(candidate)).map(str::to_string)
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
    fn the_longest_mount_prefix_names_the_disk() {
        let mountinfo = "\
22 1 253:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
30 22 0:25 / /tmp rw,nosuid shared:2 - tmpfs tmpfs rw
31 22 253:17 / /data rw,relatime - xfs /dev/vdb1 rw
";
        let mount = |path| mount_of(mountinfo, path);
        assert_eq!(mount("/data/riffle"), Some(("/data".into(), "xfs".into(), "/dev/vdb1".into())));
        assert_eq!(mount("/tmp"), Some(("/tmp".into(), "tmpfs".into(), "tmpfs".into())));
        assert_eq!(mount("/tmpfoo/x"), Some(("/".into(), "ext4".into(), "/dev/vda1".into())));
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
