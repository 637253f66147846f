//! Failpoints: named steps where a test can kill the process, to prove that what
//! is on disk at that exact moment is recovered. Compiled in only with the
//! `fault-injection` feature (tests); in every real build [`hit`] is an empty inline
//! function. Imports nothing of this crate.
//!
//! `CAIRN_FAILPOINT=<name>` makes the process abort (as abruptly as `kill -9`: no
//! destructors, no cleanup) when it reaches `hit("<name>")`;
//! `CAIRN_FAULT_SKIP_CHECK=<name>` turns off the safety check `skip_check("<name>")`
//! guards.

/// The variable naming the failpoint to die at.
pub const FAILPOINT_VAR: &str = "CAIRN_FAILPOINT";

/// Aborts the process if `CAIRN_FAILPOINT` names `name`.
#[cfg(feature = "fault-injection")]
pub fn hit(name: &str) {
    if std::env::var(FAILPOINT_VAR).is_ok_and(|v| v == name) {
        eprintln!("failpoint {name}: aborting");
        std::process::abort();
    }
}

/// Without the `fault-injection` feature: nothing.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn hit(_name: &str) {}

/// The variable naming safety checks to skip (comma-separated), so a test can
/// reach the fault a check guards against (a restore that runs out of space
/// midway, say) and prove it is still handled.
pub const SKIP_CHECK_VAR: &str = "CAIRN_FAULT_SKIP_CHECK";

/// Whether `CAIRN_FAULT_SKIP_CHECK` names the check `name`.
#[cfg(feature = "fault-injection")]
pub fn skip_check(name: &str) -> bool {
    std::env::var(SKIP_CHECK_VAR).is_ok_and(|v| v.split(',').any(|n| n.trim() == name))
}

/// Without the `fault-injection` feature: no check is ever skipped.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn skip_check(_name: &str) -> bool {
    false
}
