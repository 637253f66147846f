//! The free disk of the file system holding the tablet directory: exact for a
//! drill's own check before it starts ([`free_bytes`]), and rounded down for
//! Health ([`reported_free`], [`round_free`]: to 1/64 of the file system, at
//! most 1 GiB), which the coordinator places drills by. Health is rewritten at
//! every tick whatever it holds, and at once on an event only when its content
//! changed: rounding keeps the figure from changing with every write the
//! tablet makes, so an event's write is not doubled and an idle tablet writes
//! no more than before.
//!
//! `CAIRN_TEST_DATA_FREE_BYTES` is for tests only: when set to a number of
//! bytes it replaces the free figure everywhere (Health, unrounded, and the
//! drill's check), so a test can make a tablet's disk look small; any other
//! value is ignored.
//!
//! Calls `libc` (statvfs) only.

use std::path::Path;

use anyhow::Context;

/// Test-only: replaces the free bytes the agent sees (see the module doc).
pub const TEST_FREE_ENV: &str = "CAIRN_TEST_DATA_FREE_BYTES";

const GIB: u64 = 1024 * 1024 * 1024;

/// Free and total bytes of a file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Space {
    /// Available to this process (`f_bavail`).
    free: u64,
    /// The file system's size.
    total: u64,
}

fn statvfs(dir: &Path) -> anyhow::Result<Space> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .with_context(|| format!("{} has a NUL byte", dir.display()))?;
    // SAFETY: statvfs(3) with a valid C string and a zeroed struct it fills in.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("statvfs {}", dir.display()));
    }
    let frsize = st.f_frsize as u64;
    Ok(Space {
        free: (st.f_bavail as u64).saturating_mul(frsize),
        total: (st.f_blocks as u64).saturating_mul(frsize),
    })
}

/// The test override's value, if set to a number.
fn test_override() -> Option<u64> {
    parse_override(std::env::var(TEST_FREE_ENV).ok().as_deref())
}

/// `Some(n)` for a number of bytes; anything else is no override. Pure.
fn parse_override(v: Option<&str>) -> Option<u64> {
    v?.trim().parse().ok()
}

/// Bytes available to the agent in the file system holding `dir`, exact (or
/// the test override).
pub fn free_bytes(dir: &Path) -> anyhow::Result<u64> {
    match test_override() {
        Some(n) => Ok(n),
        None => statvfs(dir).map(|s| s.free),
    }
}

/// What Health reports: [`round_free`] of the file system holding `dir` (the
/// test override as it is); `None` when statvfs fails.
pub fn reported_free(dir: &Path) -> Option<u64> {
    if let Some(n) = test_override() {
        return Some(n);
    }
    statvfs(dir).ok().map(|s| round_free(s.free, s.total))
}

/// `free` rounded down to a step of 1/64 of the file system's `total`, at most
/// 1 GiB (the finer of the two: a coarser step would hide 160 GiB on a 10 TiB
/// volume, and a drill there would never be placed), at least one byte. Never
/// more than is free. Pure.
pub fn round_free(free: u64, total: u64) -> u64 {
    let step = (total / 64).clamp(1, GIB);
    free / step * step
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_table() {
        const MIB: u64 = 1024 * 1024;
        // (what, free, total, reported)
        let cases = [
            (
                "a big volume: whole GiB",
                69 * GIB + 900 * MIB,
                252 * GIB,
                69 * GIB,
            ),
            ("just under a GiB step", GIB - 1, 252 * GIB, 0),
            (
                "a 16 GiB volume: 256 MiB steps",
                3 * GIB + 300 * MIB,
                16 * GIB,
                3 * GIB + 256 * MIB,
            ),
            ("a tiny volume: 1/64 of it", 950, 6400, 900),
            ("smaller than 64 bytes: exact", 7, 10, 7),
            ("nothing free", 0, 252 * GIB, 0),
            ("statvfs says nothing", 0, 0, 0),
        ];
        for (what, free, total, want) in cases {
            let got = round_free(free, total);
            assert_eq!(got, want, "{what}");
            assert!(got <= free, "{what}: never more than is free");
        }
    }

    #[test]
    fn churn_is_bounded() {
        // Writing 100 MiB on a 252 GiB volume changes the figure at most once.
        let total = 252 * GIB;
        let start = 50 * GIB + 512 * 1024 * 1024;
        let figures: std::collections::BTreeSet<u64> = (0..100)
            .map(|i| round_free(start - i * 1024 * 1024, total))
            .collect();
        assert_eq!(figures.len(), 1);
    }

    #[test]
    fn the_override_is_a_number_or_nothing() {
        assert_eq!(parse_override(Some("1048576")), Some(1_048_576));
        assert_eq!(parse_override(Some(" 5 ")), Some(5));
        assert_eq!(parse_override(Some("lots")), None);
        assert_eq!(parse_override(Some("")), None);
        assert_eq!(parse_override(None), None);
    }

    #[test]
    fn a_real_directory_has_a_figure() {
        let dir = std::env::temp_dir();
        let s = statvfs(&dir).unwrap();
        assert!(s.total >= s.free && s.total > 0, "{s:?}");
        assert!(statvfs(Path::new("/nonexistent/cairn/dir")).is_err());
    }
}
