//! Failpoints: named steps where a test can kill the process, to prove that what
//! is on disk at that exact moment is recovered. Compiled in only with the
//! `fault-injection` feature (tests); in every real build [`hit`] is an empty inline
//! function. Imports nothing of this crate.
//!
//! `CAIRN_FAILPOINT=<name>` makes the process abort (as abruptly as `kill -9`: no
//! destructors, no cleanup) when it reaches `hit("<name>")`.

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
