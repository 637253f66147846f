//! Backup schedules as pure decisions: parsing a schedule's cron expression and
//! target, when it fires next, whether it is due now, how its shards are spread
//! over a short window, and which shards a target means at a given moment.
//!
//! Owns no IO: the coordinator's scheduler loop (src/coordinator/run.rs) reads the
//! [`Schedule`] records and the shard list from topo and calls these; the
//! `cairn schedule` commands use the same parsing to refuse bad input before
//! anything is written. All times are UTC.
//!
//! When a schedule fires (see [`due`]): at the first cron slot after its last run
//! (or its creation, when it never ran), but never before the `next_run` stored in
//! its record (`schedule set` and `schedule resume` store the next slot after
//! "now", so defining or resuming a schedule does not make up slots it was never
//! meant to run). A stretch of missed slots, such as the time no coordinator led,
//! yields exactly one run: the latest missed slot.

use std::time::Duration;

use cairn_topo::names::{validate_keyspace, validate_shard};
use cairn_topo::Schedule;
use chrono::{DateTime, Utc};
use croner::parser::{CronParser, Seconds, Year};
pub use croner::Cron;
use sha2::{Digest, Sha256};

/// A schedule's cron expression or target that cannot be used; the message says
/// what is wrong and what is expected, in one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidSchedule(pub String);

/// Parses a cron expression of 5 fields (minute hour day-of-month month
/// day-of-week) or 6 fields (seconds first). Names (`MON`, `JAN`), ranges, steps,
/// lists and croner's `L`, `#`, `W` are accepted; nicknames (`@daily`) and 7-field
/// (year) patterns are not, as the contract fixes 5 or 6 fields.
pub fn parse_cron(expr: &str) -> Result<Cron, InvalidSchedule> {
    let fields = expr.split_whitespace().count();
    if fields != 5 && fields != 6 {
        return Err(InvalidSchedule(format!(
            "invalid cron expression {expr:?}: {fields} fields, expected 5 \
             (minute hour day-of-month month day-of-week) or 6 (seconds first)"
        )));
    }
    if expr.contains('@') {
        return Err(InvalidSchedule(format!(
            "invalid cron expression {expr:?}: nicknames such as @daily are not supported; \
             write the 5 or 6 fields"
        )));
    }
    let parser = CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build();
    let cron = parser
        .parse(expr)
        .map_err(|e| InvalidSchedule(format!("invalid cron expression {expr:?}: {e}")))?;
    // A pattern that never matches (e.g. 30 February) parses; refuse it here,
    // where the operator sees it, instead of in the scheduler.
    let probe = DateTime::<Utc>::UNIX_EPOCH;
    if next_run(&cron, probe).is_none() {
        return Err(InvalidSchedule(format!(
            "invalid cron expression {expr:?}: it never fires"
        )));
    }
    Ok(cron)
}

/// What a schedule backs up.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// Every shard of the keyspace, including shards added after the schedule was
    /// set (the shard list is read at each run).
    Keyspace(String),
    /// One shard.
    Shard {
        /// The shard's keyspace.
        keyspace: String,
        /// The shard's name (e.g. `-80`).
        shard: String,
    },
}

impl Target {
    /// The keyspace the target belongs to.
    pub fn keyspace(&self) -> &str {
        match self {
            Target::Keyspace(ks) => ks,
            Target::Shard { keyspace, .. } => keyspace,
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Keyspace(ks) => f.write_str(ks),
            Target::Shard { keyspace, shard } => write!(f, "{keyspace}/{shard}"),
        }
    }
}

/// Parses `KS` or `KS/SHARD`, validating both names with the contract's rules.
pub fn parse_target(s: &str) -> Result<Target, InvalidSchedule> {
    let bad = |e: &dyn std::fmt::Display| {
        InvalidSchedule(format!(
            "invalid target {s:?}: {e} (expected KEYSPACE or KEYSPACE/SHARD)"
        ))
    };
    let mut parts = s.split('/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(ks), None, _) => {
            validate_keyspace(ks).map_err(|e| bad(&e))?;
            Ok(Target::Keyspace(ks.to_string()))
        }
        (Some(ks), Some(shard), None) => {
            validate_keyspace(ks).map_err(|e| bad(&e))?;
            validate_shard(shard).map_err(|e| bad(&e))?;
            Ok(Target::Shard {
                keyspace: ks.to_string(),
                shard: shard.to_string(),
            })
        }
        _ => Err(bad(&"more than one slash")),
    }
}

/// The shards a target means now, given the keyspace's current shards (sorted by
/// the caller or not; the result is sorted). A keyspace target is every current
/// shard, so shards added later are included from their first run on. A shard
/// target is that shard even when it is not (yet) in `current_shards`: the run
/// then fails visibly ("no tablets") instead of silently backing up nothing.
pub fn expand_target(target: &Target, current_shards: &[String]) -> Vec<(String, String)> {
    match target {
        Target::Keyspace(ks) => {
            let mut shards: Vec<(String, String)> = current_shards
                .iter()
                .map(|s| (ks.clone(), s.clone()))
                .collect();
            shards.sort();
            shards.dedup();
            shards
        }
        Target::Shard { keyspace, shard } => vec![(keyspace.clone(), shard.clone())],
    }
}

/// The first slot strictly after `after`; `None` when the pattern never fires again
/// (croner gives up searching past year 5000).
pub fn next_run(cron: &Cron, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    // Slots are whole seconds: croner keeps a fraction it is given, which would make
    // slots (the key that dedupes runs across leaders) depend on when we asked.
    cron.find_next_occurrence(&whole_second(after), false)
        .ok()
        .map(whole_second)
}

/// `t` without its fraction of a second.
fn whole_second(t: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::Timelike;
    t.with_nanosecond(0).unwrap_or(t)
}

/// The slot a schedule waits for: the first slot after its last run (or creation),
/// postponed to its stored `next_run` when that is later. `None` when the pattern
/// never fires again. Paused schedules are not special here; see [`due`].
pub fn upcoming(schedule: &Schedule, cron: &Cron) -> Option<DateTime<Utc>> {
    let base = schedule.last_run.unwrap_or(schedule.created_at);
    let first = next_run(cron, base)?;
    Some(match schedule.next_run {
        Some(stored) if stored > first => stored,
        _ => first,
    })
}

/// The slot to run now, if the schedule is due at `now`: its [`upcoming`] slot has
/// come. The slot returned is the latest one at or before `now`, so a stretch of
/// missed slots is made up by one run, never one per slot. The caller records the
/// run with [`record_run`] (which makes the schedule not due until the following
/// slot). A paused schedule is never due. Fails only on a cron that does not parse
/// (a record written by hand).
pub fn due(
    schedule: &Schedule,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, InvalidSchedule> {
    if schedule.paused {
        return Ok(None);
    }
    let cron = parse_cron(&schedule.cron)
        .map_err(|e| InvalidSchedule(format!("schedule {}: {e}", schedule.name)))?;
    Ok(due_with(schedule, &cron, now))
}

/// [`due`] with the cron already parsed (the scheduler keeps it parsed).
pub fn due_with(schedule: &Schedule, cron: &Cron, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if schedule.paused {
        return None;
    }
    let first = upcoming(schedule, cron)?;
    if first > now {
        return None;
    }
    // The latest slot at or before now; at least `first`, which is a slot ≤ now.
    let latest = whole_second(
        cron.find_previous_occurrence(&whole_second(now), true)
            .ok()?,
    );
    Some(latest.max(first))
}

/// Records that the schedule ran (or was skipped) for `slot`: `last_run` becomes
/// the slot and `next_run` the slot after it, so [`due`] answers `None` until then.
pub fn record_run(schedule: &mut Schedule, cron: &Cron, slot: DateTime<Utc>) {
    schedule.last_run = Some(slot);
    schedule.next_run = next_run(cron, slot);
}

/// A deterministic delay within `window` for one shard of one schedule's run, so
/// the shards of a keyspace start spread over the window instead of in the same
/// second. The same inputs always give the same delay (a sha256 of the names, not
/// Rust's per-process hasher), so a coordinator that takes over mid-window picks
/// the same times. A zero window gives zero.
pub fn stagger(schedule_name: &str, keyspace: &str, shard: &str, window: Duration) -> Duration {
    let window_ms = window.as_millis();
    if window_ms == 0 {
        return Duration::ZERO;
    }
    let mut h = Sha256::new();
    // Separators that cannot occur in the names keep ("a","bc") apart from ("ab","c").
    for part in [schedule_name, keyspace, shard] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    let digest = h.finalize();
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest[..16]);
    let offset = u128::from_be_bytes(first) % window_ms;
    // offset < window_ms, which came from a Duration, so it fits in u64 millis.
    Duration::from_millis(u64::try_from(offset).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn sched(cron: &str, created: &str, last_run: Option<&str>) -> Schedule {
        Schedule {
            name: "nightly".into(),
            cron: cron.into(),
            target: "commerce".into(),
            keep_count: None,
            keep_for_seconds: None,
            backup_engine: None,
            paused: false,
            last_run: last_run.map(t),
            next_run: None,
            created_at: t(created),
        }
    }

    #[test]
    fn cron_with_five_or_six_fields() {
        let five = parse_cron("30 2 * * *").unwrap();
        assert_eq!(
            next_run(&five, t("2026-01-01T00:00:00Z")),
            Some(t("2026-01-01T02:30:00Z"))
        );
        let six = parse_cron("15 30 2 * * *").unwrap();
        assert_eq!(
            next_run(&six, t("2026-01-01T00:00:00Z")),
            Some(t("2026-01-01T02:30:15Z"))
        );
        let every_10s = parse_cron("*/10 * * * * *").unwrap();
        assert_eq!(
            next_run(&every_10s, t("2026-01-01T00:00:05Z")),
            Some(t("2026-01-01T00:00:10Z"))
        );
        // Strictly after.
        assert_eq!(
            next_run(&five, t("2026-01-01T02:30:00Z")),
            Some(t("2026-01-02T02:30:00Z"))
        );
        assert!(parse_cron("0 3 * * MON-FRI").is_ok());
    }

    #[test]
    fn bad_cron_is_refused_with_a_reason() {
        for (expr, needle) in [
            ("* * * *", "4 fields"),
            ("", "0 fields"),
            ("* * * * * * *", "7 fields"),
            ("garbage", "1 fields"),
            ("a b c d e", "invalid cron"),
            ("61 * * * *", "invalid cron"),
            ("* 25 * * *", "invalid cron"),
            ("0 0 30 2 *", "never fires"),
            ("@daily x y z w", "nicknames"),
        ] {
            let e = parse_cron(expr).unwrap_err().to_string();
            assert!(e.contains(needle), "{expr:?}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn targets() {
        assert_eq!(
            parse_target("commerce").unwrap(),
            Target::Keyspace("commerce".into())
        );
        let s = parse_target("commerce/-80").unwrap();
        assert_eq!(
            s,
            Target::Shard {
                keyspace: "commerce".into(),
                shard: "-80".into()
            }
        );
        assert_eq!(s.to_string(), "commerce/-80");
        assert_eq!(s.keyspace(), "commerce");
        for bad in ["", "a/b/c", "com merce", "ks/", "/0", "ks/8 0", "k-s"] {
            assert!(parse_target(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn keyspace_targets_expand_to_the_current_shards() {
        let ks = Target::Keyspace("commerce".into());
        let now = vec!["80-".to_string(), "-80".to_string()];
        assert_eq!(
            expand_target(&ks, &now),
            vec![
                ("commerce".to_string(), "-80".to_string()),
                ("commerce".to_string(), "80-".to_string())
            ]
        );
        // A shard added later is part of the next run.
        let later = vec!["-80".to_string(), "80-".to_string(), "c0-".to_string()];
        assert_eq!(expand_target(&ks, &later).len(), 3);
        assert!(expand_target(&ks, &[]).is_empty());
        let one = parse_target("commerce/0").unwrap();
        assert_eq!(
            expand_target(&one, &[]),
            vec![("commerce".to_string(), "0".to_string())]
        );
    }

    #[test]
    fn due_table() {
        // (cron, created, last_run, stored next_run, paused, now, expected slot)
        type Row = (
            &'static str,
            &'static str,
            Option<&'static str>,
            Option<&'static str>,
            bool,
            &'static str,
            Option<&'static str>,
        );
        let rows: &[Row] = &[
            // Never ran, first slot after creation not reached yet.
            (
                "0 2 * * *",
                "2026-01-01T03:00:00Z",
                None,
                None,
                false,
                "2026-01-02T01:59:59Z",
                None,
            ),
            // Never ran, first slot reached exactly.
            (
                "0 2 * * *",
                "2026-01-01T03:00:00Z",
                None,
                None,
                false,
                "2026-01-02T02:00:00Z",
                Some("2026-01-02T02:00:00Z"),
            ),
            // Ran at the last slot: not due until the next.
            (
                "0 2 * * *",
                "2026-01-01T00:00:00Z",
                Some("2026-01-02T02:00:00Z"),
                None,
                false,
                "2026-01-02T23:00:00Z",
                None,
            ),
            // Three days without a coordinator: one run, for the latest missed slot.
            (
                "0 2 * * *",
                "2026-01-01T00:00:00Z",
                Some("2026-01-02T02:00:00Z"),
                None,
                false,
                "2026-01-05T12:00:00Z",
                Some("2026-01-05T02:00:00Z"),
            ),
            // Hourly, missed many: latest slot at or before now.
            (
                "0 * * * *",
                "2026-01-01T00:00:00Z",
                Some("2026-01-01T01:00:00Z"),
                None,
                false,
                "2026-01-01T07:59:59Z",
                Some("2026-01-01T07:00:00Z"),
            ),
            // Paused: never due.
            (
                "0 * * * *",
                "2026-01-01T00:00:00Z",
                Some("2026-01-01T01:00:00Z"),
                None,
                true,
                "2026-01-01T07:59:59Z",
                None,
            ),
            // Stored next_run postpones (set/resume at 07:30): the 07:00 slot is not made up.
            (
                "0 * * * *",
                "2026-01-01T00:00:00Z",
                Some("2026-01-01T01:00:00Z"),
                Some("2026-01-01T08:00:00Z"),
                false,
                "2026-01-01T07:59:59Z",
                None,
            ),
            (
                "0 * * * *",
                "2026-01-01T00:00:00Z",
                Some("2026-01-01T01:00:00Z"),
                Some("2026-01-01T08:00:00Z"),
                false,
                "2026-01-01T08:00:01Z",
                Some("2026-01-01T08:00:00Z"),
            ),
            // A stale stored next_run (earlier than the slot after last_run) never
            // makes a schedule due again.
            (
                "0 * * * *",
                "2026-01-01T00:00:00Z",
                Some("2026-01-01T05:00:00Z"),
                Some("2026-01-01T02:00:00Z"),
                false,
                "2026-01-01T05:30:00Z",
                None,
            ),
            // Seconds.
            (
                "*/10 * * * * *",
                "2026-01-01T00:00:00Z",
                Some("2026-01-01T00:00:10Z"),
                None,
                false,
                "2026-01-01T00:00:35Z",
                Some("2026-01-01T00:00:30Z"),
            ),
        ];
        for (i, (cron, created, last, stored, paused, now, want)) in rows.iter().enumerate() {
            let mut s = sched(cron, created, *last);
            s.next_run = stored.map(t);
            s.paused = *paused;
            assert_eq!(due(&s, t(now)).unwrap(), want.map(t), "row {i}");
        }
    }

    #[test]
    fn a_recorded_run_is_not_due_again_until_the_next_slot() {
        let cron = parse_cron("0 2 * * *").unwrap();
        let mut s = sched("0 2 * * *", "2026-01-01T00:00:00Z", None);
        let now = t("2026-01-09T10:00:00Z");
        let slot = due_with(&s, &cron, now).unwrap();
        assert_eq!(slot, t("2026-01-09T02:00:00Z"));
        record_run(&mut s, &cron, slot);
        assert_eq!(s.last_run, Some(slot));
        assert_eq!(s.next_run, Some(t("2026-01-10T02:00:00Z")));
        assert_eq!(due_with(&s, &cron, now), None);
        assert_eq!(due_with(&s, &cron, t("2026-01-10T01:59:59Z")), None);
        assert_eq!(
            due_with(&s, &cron, t("2026-01-10T02:00:00Z")),
            Some(t("2026-01-10T02:00:00Z"))
        );
        assert_eq!(upcoming(&s, &cron), Some(t("2026-01-10T02:00:00Z")));
    }

    #[test]
    fn unparsable_stored_cron_is_an_error_naming_the_schedule() {
        let s = sched("nope", "2026-01-01T00:00:00Z", None);
        let e = due(&s, Utc.with_ymd_and_hms(2026, 1, 2, 0, 0, 0).unwrap()).unwrap_err();
        assert!(e.to_string().contains("schedule nightly"), "{e}");
    }

    #[test]
    fn stagger_is_deterministic_within_the_window_and_spreads() {
        let w = Duration::from_secs(60);
        let a = stagger("nightly", "commerce", "-80", w);
        assert_eq!(a, stagger("nightly", "commerce", "-80", w));
        assert!(a < w);
        assert_eq!(
            stagger("nightly", "commerce", "-80", Duration::ZERO),
            Duration::ZERO
        );
        // Different shards of a keyspace land on different seconds (with 16 shards
        // in a minute some may share one, but not all of them).
        let shards: Vec<String> = (0..16).map(|i| format!("{:02x}-", i * 16)).collect();
        let secs: std::collections::HashSet<u64> = shards
            .iter()
            .map(|s| stagger("nightly", "commerce", s, w).as_secs())
            .collect();
        assert!(secs.len() > 8, "{secs:?}");
        for s in &shards {
            assert!(stagger("nightly", "commerce", s, w) < w);
        }
        // Separators matter.
        assert_ne!(
            stagger("a", "bc", "0", Duration::from_secs(3600)),
            stagger("ab", "c", "0", Duration::from_secs(3600))
        );
    }
}
