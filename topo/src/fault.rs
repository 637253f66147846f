//! Test-only faults in the store's writes, compiled only with the
//! `fault-injection` feature (a plain build contains none of it).
//!
//! An *ambiguous write*: the transaction is applied by etcd, then reported to the
//! caller as a timeout, as when the answer is lost after etcd committed. The
//! unary retry then sends the same transaction again, which now fails its
//! condition (`NodeExists`, `BadVersion`): exactly what a write that timed out
//! after landing looks like in production. Asked for with
//! `CAIRN_FAULT_TOPO_AMBIGUOUS_WRITE=<key substring>[,<count>]` (count 1 by
//! default), or in-process with [`set_ambiguous_writes`]; only writes that were
//! applied count.
//!
//! Depends on nothing else of the crate.

use std::sync::{Mutex, OnceLock};

/// The variable naming the keys whose next applied write is made ambiguous.
pub const AMBIGUOUS_WRITE_VAR: &str = "CAIRN_FAULT_TOPO_AMBIGUOUS_WRITE";

/// (key substring, writes left to make ambiguous).
type Rule = Option<(String, u32)>;

fn rule() -> &'static Mutex<Rule> {
    static RULE: OnceLock<Mutex<Rule>> = OnceLock::new();
    RULE.get_or_init(|| {
        Mutex::new(
            std::env::var(AMBIGUOUS_WRITE_VAR)
                .ok()
                .and_then(|v| parse(&v)),
        )
    })
}

/// `<substring>[,<count>]`; an empty substring or a bad count asks for nothing.
fn parse(v: &str) -> Rule {
    let (sub, count) = match v.rsplit_once(',') {
        Some((s, n)) => (s, n.trim().parse().ok()?),
        None => (v, 1),
    };
    (!sub.is_empty() && count > 0).then(|| (sub.to_string(), count))
}

/// Makes the next `times` applied writes to keys containing `key_contains`
/// ambiguous (in this process), replacing any earlier rule.
pub fn set_ambiguous_writes(key_contains: &str, times: u32) {
    let mut r = rule().lock().unwrap_or_else(|p| p.into_inner());
    *r = (!key_contains.is_empty() && times > 0).then(|| (key_contains.to_string(), times));
}

/// Whether this applied write to `key` is to be reported as a timeout (consumes
/// one of the rule's writes).
pub(crate) fn take_ambiguous(key: &str) -> bool {
    let mut r = rule().lock().unwrap_or_else(|p| p.into_inner());
    let Some((sub, left)) = r.as_mut() else {
        return false;
    };
    if !key.contains(sub.as_str()) {
        return false;
    }
    *left -= 1;
    if *left == 0 {
        *r = None;
    }
    tracing::warn!(%key, "fault injection: the write was applied; reporting a timeout");
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_parses() {
        assert_eq!(parse("/jobs/"), Some(("/jobs/".into(), 1)));
        assert_eq!(parse("/jobs/,3"), Some(("/jobs/".into(), 3)));
        assert_eq!(parse("/jobs/,0"), None);
        assert_eq!(parse("/jobs/,x"), None);
        assert_eq!(parse(""), None);
        assert_eq!(parse(",2"), None);
    }
}
