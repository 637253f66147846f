//! Failpoints: named steps where a test can kill the process, to prove that what
//! is on disk at that exact moment is recovered. Compiled in only with the
//! `fault-injection` feature (tests); in every real build [`hit`] is an empty inline
//! function. Imports nothing of this crate.
//!
//! `CAIRN_FAILPOINT=<name>` makes the process abort (as abruptly as `kill -9`: no
//! destructors, no cleanup) when it reaches `hit("<name>")`.
//! `CAIRN_FAULT_SKIP_CHECK=<name>` turns off the safety check `skip_check("<name>")`
//! guards.
//! `CAIRN_FAILPOINT_PAUSE=<name>=<seconds>` makes the task that reaches
//! `pause("<name>").await` sleep that long (a step stretched so a test can act
//! meanwhile, e.g. freeze etcd); the pause is logged on stderr.

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

/// The variable naming a step to pause at and for how long: `<name>=<seconds>`.
pub const PAUSE_VAR: &str = "CAIRN_FAILPOINT_PAUSE";

/// How long `CAIRN_FAILPOINT_PAUSE` (its value `spec`) pauses at `name`, if at all.
#[cfg_attr(not(feature = "fault-injection"), allow(dead_code))]
fn pause_for(spec: &str, name: &str) -> Option<std::time::Duration> {
    let (at, secs) = spec.split_once('=')?;
    let secs: f64 = secs.trim().parse().ok()?;
    (at == name && secs.is_finite() && secs > 0.0).then(|| std::time::Duration::from_secs_f64(secs))
}

/// Sleeps if `CAIRN_FAILPOINT_PAUSE` names `name`.
#[cfg(feature = "fault-injection")]
pub async fn pause(name: &str) {
    let Some(d) = std::env::var(PAUSE_VAR)
        .ok()
        .and_then(|v| pause_for(&v, name))
    else {
        return;
    };
    eprintln!("failpoint {name}: pausing {d:?}");
    tokio::time::sleep(d).await;
    eprintln!("failpoint {name}: resuming");
}

/// Without the `fault-injection` feature: nothing.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub async fn pause(_name: &str) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pause_spec_names_one_step() {
        let s = std::time::Duration::from_secs;
        assert_eq!(pause_for("a=3", "a"), Some(s(3)));
        assert_eq!(
            pause_for("a=0.5", "a"),
            Some(std::time::Duration::from_millis(500))
        );
        assert_eq!(pause_for("a=3", "b"), None);
        assert_eq!(pause_for("a=0", "a"), None);
        assert_eq!(pause_for("a=-1", "a"), None);
        assert_eq!(pause_for("a=x", "a"), None);
        assert_eq!(pause_for("a", "a"), None);
    }
}
