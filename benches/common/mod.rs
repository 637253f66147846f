//! What every benchmark shares: the machine's load, statistics over samples,
//! timing and formatting, and facts about processes read from /proc. Included by
//! each bench target with `mod common;`; each uses only part of it.
//!
//! Owns no state and starts nothing: processes come from `cairn::testkit`.
#![allow(dead_code)]

use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// `cargo test --all-targets` (or `--benches`) also runs bench executables, in the
/// environment cargo gives what it runs and without the `--bench` flag that
/// `cargo bench` passes. A benchmark is long and heavy, so then it does nothing.
/// Run directly (scripts/bench.sh) or through `cargo bench`, it runs.
pub fn skipped_under_cargo_test(name: &str) -> bool {
    let under_cargo = std::env::var_os("CARGO_MANIFEST_DIR").is_some();
    let bench_flag = std::env::args().skip(1).any(|a| a == "--bench");
    if under_cargo && !bench_flag {
        println!("{name}: not run under `cargo test`; use `cargo bench --bench {name}` or scripts/bench.sh");
        return true;
    }
    false
}

/// A size for clap: BYTES with an optional K, M or G (at least 16M).
pub fn parse_size(s: &str) -> anyhow::Result<u64> {
    use anyhow::Context as _;
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: f64 = num.parse().with_context(|| format!("bad size {s:?}"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => anyhow::bail!("bad size unit {other:?} in {s:?} (use K, M or G)"),
    };
    let bytes = (num * mult as f64) as u64;
    if bytes < 16 << 20 {
        anyhow::bail!("--size {s} is too small (at least 16M)");
    }
    Ok(bytes)
}

/// A count of at least 1, for clap (`value_parser = at_least_one`).
pub fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        Ok(_) => Err("must be at least 1".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// The 1, 5 and 15 minute load averages: other work on the machine skews figures.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Cores available to this process.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get())
}

/// Prints a line and flushes at once (figures appear as they are measured).
pub fn say(s: impl AsRef<str>) {
    println!("{}", s.as_ref());
    let _ = std::io::stdout().flush();
}

// ---- statistics -------------------------------------------------------------

/// Median of the values: the middle one, or the mean of the two middle ones.
/// NaN when empty.
pub fn median(values: &[f64]) -> f64 {
    let mut s = values.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => s[n / 2],
        _ => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// Index of the lower median of `n` sorted samples (`n` > 0): a real sample even
/// for an even count.
pub fn lower_median_index(n: usize) -> usize {
    n.saturating_sub(1) / 2
}

/// Nearest-rank percentile of sorted values; NaN when empty.
pub fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

// ---- timing and formatting ----------------------------------------------------

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub fn ms_between(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0
}

/// Bytes as `1.23 GiB`.
pub fn gib(b: u64) -> String {
    format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64)
}

/// A path single-quoted for bash.
pub fn quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}

// ---- processes ------------------------------------------------------------------

/// CPU seconds used so far by this process and by its waited-for children.
pub fn cpu_times() -> (f64, f64) {
    let get = |who| {
        // SAFETY: getrusage fills the zeroed struct we own.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(who, &mut ru) };
        let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
        t(ru.ru_utime) + t(ru.ru_stime)
    };
    (get(libc::RUSAGE_SELF), get(libc::RUSAGE_CHILDREN))
}

/// CPU seconds (user + system) a process used so far.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = s.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state is field 3, utime 14 and stime 15 (1-based).
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some(ticks / hz)
}

/// (VmRSS, VmHWM) in MiB from /proc/PID/status.
pub fn memory_mib(pid: u32) -> Option<(f64, f64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |name: &str| -> Option<f64> {
        s.lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse::<f64>()
            .ok()
    };
    Some((kib("VmRSS:")? / 1024.0, kib("VmHWM:")? / 1024.0))
}

/// The pid of a child of this process whose command line contains `arg` and the
/// pair `flag value` (e.g. `coordinator`, `--id`, `bench`), found in /proc.
pub fn child_pid(arg: &str, flag: &str, value: &str) -> Option<u32> {
    let me = std::process::id();
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid != Some(me) {
            continue;
        }
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
        let is_it = args.contains(&arg.as_bytes())
            && args
                .windows(2)
                .any(|w| w[0] == flag.as_bytes() && w[1] == value.as_bytes());
        if is_it {
            return Some(pid);
        }
    }
    None
}

/// Drops the page-cache pages of `paths` (clean pages only: call after a sync), so
/// the next pass reads them from disk. Only these files; nothing else is touched.
pub fn evict(paths: &[&Path]) -> anyhow::Result<()> {
    use std::os::fd::AsRawFd;
    for p in paths {
        let f =
            std::fs::File::open(p).map_err(|e| anyhow::anyhow!("opening {}: {e}", p.display()))?;
        // SAFETY: the fd is valid for the lifetime of `f`; the call is advisory.
        unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    }
    Ok(())
}
