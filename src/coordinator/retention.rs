//! Retention: which backups of one shard a schedule's rule removes. Two pure
//! functions over plain data: [`owned_by`] picks what the schedule may consider,
//! [`plan`] applies its rule to that; the coordinator runs them after each
//! successful scheduled backup and deletes what they return (or only prints it,
//! as a dry run). Owns no IO and calls nothing but the standard library.
//!
//! Ownership comes first ([`owned_by`]): a schedule considers only the complete
//! backups it took (its name in their MANIFEST), plus the incomplete ones, which
//! record no owner and fall only under the grace period. Manual backups (no
//! schedule recorded, including every MANIFEST written before ownership was
//! recorded) and other schedules' backups are never removed by a schedule: only
//! `remove-backup` removes them. The newest complete backup of the shard stays
//! protected: it is either this schedule's newest (rule 2) or not considered.
//!
//! The rules of [`plan`], in order of precedence:
//! 1. A backup in `in_use` (a running restore reads it) or in flight (a RUNNING
//!    backup job names it: still being written) is never removed.
//! 2. The newest complete backup is never removed, whatever the rule says.
//! 3. Complete backups: with neither `keep_count` nor `keep_for`, none is removed.
//!    Otherwise the candidates are those older than `keep_for` (every one when
//!    only `keep_count` is set), taken oldest first, each removed only while more
//!    than `keep_count` complete backups would remain (any number when only
//!    `keep_for` is set). In-use backups count as remaining.
//! 4. Incomplete backups (no MANIFEST) older than `incomplete_grace` are removed:
//!    abandoned. The grace covers a backup whose job's state is not known here;
//!    one in flight is kept whatever its age (rule 1). Younger ones are left,
//!    except one whose backup job SUCCEEDED (`once_complete`): it was complete,
//!    so it lost its MANIFEST to a removal that was cut short (a coordinator
//!    killed mid-prune), and is removed at once.
//! 5. Unreadable backups (a MANIFEST that cannot be read, parsed or restored)
//!    are never removed, and never count as complete: they neither protect
//!    themselves as "the newest complete" nor count toward `keep_count`, so older
//!    restorable backups stay. Only an operator removes them.
//! 6. Incremental backups (binary logs) are not full backups: they never count
//!    toward `keep_count` nor protect themselves as "the newest complete", and
//!    `keep_count`/`keep_for` never remove one (that would break the chain a
//!    kept full backup needs). [`chain::plan_incrementals`] removes them, only
//!    once every kept full backup already holds every transaction they hold.
//!
//! "Complete" here is the storage listing's [`BackupState::Complete`], which is
//! exactly what restore accepts ([`crate::backup::storage::BackupInfo::classify`]).
//! Age is `now - backup_time`; a backup time in the future (clock skew) is age 0.
//!
//! Calls nothing but the standard library, `chrono` and backup's [`BackupState`].

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};

pub use crate::backup::storage::BackupState;

/// One backup of the shard, as retention needs to see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionInput {
    /// The backup's name: what gets removed and what `in_use` refers to.
    pub name: String,
    /// When the backup was taken (from its MANIFEST, or its name when incomplete):
    /// the age the rule compares and the order "oldest first" uses.
    pub backup_time: DateTime<Utc>,
    /// Complete, incomplete or unreadable: only complete backups count toward
    /// `keep_count`, only incomplete ones fall under the grace period, and
    /// unreadable ones are never removed.
    pub state: BackupState,
    /// The schedule that took it (its MANIFEST's `Schedule`); `None` for a
    /// manual backup or one without a MANIFEST. See [`owned_by`].
    pub schedule: Option<String>,
    /// A RUNNING backup job names it: it is being written, never abandoned.
    pub in_flight: bool,
    /// A SUCCEEDED backup job names it: it was complete once (an agent finishes
    /// a backup job only after its MANIFEST is written). Without a MANIFEST now, it
    /// is a removal cut short (removals take the MANIFEST first), not a backup
    /// being written.
    pub once_complete: bool,
    /// An incremental backup (binary logs, its MANIFEST says so): never counted
    /// with the full backups; removed only by [`chain::plan_incrementals`].
    pub incremental: bool,
    /// Its MANIFEST's `Position` (`MariaDB/<gtids>`), when it has one.
    pub position: Option<String>,
}

/// The backups of the shard that `schedule`'s rule may consider, for [`plan`]:
/// the complete ones it owns and every other one (incomplete: only the grace
/// applies; unreadable: never removed). See the module documentation.
pub fn owned_by(backups: &[RetentionInput], schedule: &str) -> Vec<RetentionInput> {
    backups
        .iter()
        .filter(|b| b.state != BackupState::Complete || b.schedule.as_deref() == Some(schedule))
        .cloned()
        .collect()
}

/// A schedule's retention rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// `--keep-count`: never go below this many complete backups.
    pub keep_count: Option<u32>,
    /// `--keep-for`: complete backups younger than this are kept.
    pub keep_for: Option<Duration>,
    /// Incomplete backups younger than this may still be being written; older
    /// ones are abandoned and removed.
    pub incomplete_grace: Duration,
}

/// Why a backup is removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Complete, older than `keep_for`, and more than `keep_count` remain.
    Expired {
        /// The backup's age at planning time.
        age: Duration,
        /// The rule's `keep_for`.
        keep_for: Duration,
    },
    /// Complete, beyond `keep_count` (no `keep_for` in the rule).
    OverCount {
        /// The rule's `keep_count`.
        keep_count: u32,
    },
    /// Incomplete, but its backup job succeeded: a removal cut short, finished
    /// without waiting for the grace period.
    RemovalCutShort,
    /// Incremental, and every full backup that stays already holds every
    /// transaction it holds: no chain needs it.
    Superseded {
        /// The oldest full backup that stays.
        oldest_full: String,
    },
    /// Incomplete and older than the grace period.
    Incomplete {
        /// The backup's age at planning time.
        age: Duration,
        /// The grace period it outlived.
        grace: Duration,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Expired { age, keep_for } => write!(
                f,
                "older than --keep-for {} (age {})",
                human(*keep_for),
                human(*age)
            ),
            Reason::OverCount { keep_count } => {
                write!(f, "more than --keep-count {keep_count} complete backups")
            }
            Reason::Superseded { oldest_full } => write!(
                f,
                "incremental, and every kept full backup holds all of it (the oldest: {oldest_full})"
            ),
            Reason::RemovalCutShort => {
                f.write_str("incomplete though its backup job succeeded: a removal was cut short")
            }
            Reason::Incomplete { age, grace } => write!(
                f,
                "incomplete and older than the {} grace period (age {})",
                human(*grace),
                human(*age)
            ),
        }
    }
}

/// One backup to remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    /// The backup's name.
    pub name: String,
    /// Why, for logs and the dry run.
    pub reason: Reason,
}

/// A duration as `1h2m3s`-style text (lives in `common`; named here for its callers).
pub use crate::common::format_duration as human;

fn age(now: DateTime<Utc>, t: DateTime<Utc>) -> Duration {
    (now - t).to_std().unwrap_or(Duration::ZERO)
}

/// The backups to remove under `rule` at `now`, oldest first. See the module
/// documentation for the rules.
pub fn plan(
    backups: &[RetentionInput],
    rule: Rule,
    now: DateTime<Utc>,
    in_use: &HashSet<String>,
) -> Vec<Removal> {
    let mut sorted: Vec<&RetentionInput> = backups.iter().collect();
    sorted.sort_by(|a, b| (a.backup_time, &a.name).cmp(&(b.backup_time, &b.name)));
    let mut out: Vec<(DateTime<Utc>, Removal)> = Vec::new();
    let kept = |b: &RetentionInput| in_use.contains(&b.name) || b.in_flight;

    let complete: Vec<&RetentionInput> = sorted
        .iter()
        .copied()
        .filter(|b| b.state == BackupState::Complete && !b.incremental)
        .collect();
    if rule.keep_count.is_some() || rule.keep_for.is_some() {
        let newest = complete.last().map(|b| b.name.as_str());
        let floor = rule.keep_count.unwrap_or(0) as usize;
        let mut remaining = complete.len();
        for b in &complete {
            if remaining <= floor {
                break;
            }
            if Some(b.name.as_str()) == newest || kept(b) {
                continue;
            }
            let a = age(now, b.backup_time);
            let reason = match (rule.keep_for, rule.keep_count) {
                (Some(keep_for), _) if a > keep_for => Reason::Expired { age: a, keep_for },
                // Oldest first: the first one young enough ends the candidates.
                (Some(_), _) => break,
                (None, Some(keep_count)) => Reason::OverCount { keep_count },
                (None, None) => unreachable!("checked above"),
            };
            remaining -= 1;
            out.push((
                b.backup_time,
                Removal {
                    name: b.name.clone(),
                    reason,
                },
            ));
        }
    }

    for b in sorted.iter().filter(|b| b.state == BackupState::Incomplete) {
        let a = age(now, b.backup_time);
        let reason = if b.once_complete {
            Reason::RemovalCutShort
        } else if a > rule.incomplete_grace {
            Reason::Incomplete {
                age: a,
                grace: rule.incomplete_grace,
            }
        } else {
            continue;
        };
        if !kept(b) {
            out.push((
                b.backup_time,
                Removal {
                    name: b.name.clone(),
                    reason,
                },
            ));
        }
    }
    out.sort_by(|a, b| (a.0, &a.1.name).cmp(&(b.0, &b.1.name)));
    out.into_iter().map(|(_, r)| r).collect()
}

pub mod chain;
#[cfg(test)]
mod ownership_tests;
#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-03-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    /// A backup `days` old, complete or incomplete.
    fn b(name: &str, days_old: u64, complete: bool) -> RetentionInput {
        let state = if complete {
            BackupState::Complete
        } else {
            BackupState::Incomplete
        };
        with_state(name, days_old, state)
    }

    /// A backup `days` old whose MANIFEST is unreadable (or unrestorable).
    fn u(name: &str, days_old: u64) -> RetentionInput {
        with_state(name, days_old, BackupState::Unreadable)
    }

    fn with_state(name: &str, days_old: u64, state: BackupState) -> RetentionInput {
        RetentionInput {
            name: name.into(),
            backup_time: now() - chrono::Duration::seconds((days_old * DAY) as i64),
            state,
            schedule: None,
            in_flight: false,
            once_complete: false,
            incremental: false,
            position: None,
        }
    }

    fn rule(keep_count: Option<u32>, keep_for_days: Option<u64>) -> Rule {
        Rule {
            keep_count,
            keep_for: keep_for_days.map(|d| Duration::from_secs(d * DAY)),
            incomplete_grace: Duration::from_secs(DAY),
        }
    }

    fn names(r: &[Removal]) -> Vec<&str> {
        r.iter().map(|r| r.name.as_str()).collect()
    }

    #[test]
    fn table() {
        let none: HashSet<String> = HashSet::new();
        // A week of dailies, d7 oldest, d0 newest; all complete.
        let week: Vec<RetentionInput> =
            (0..8).rev().map(|d| b(&format!("d{d}"), d, true)).collect();
        struct Row {
            what: &'static str,
            backups: Vec<RetentionInput>,
            rule: Rule,
            in_use: Vec<&'static str>,
            want: Vec<&'static str>,
        }
        let rows = vec![
            Row {
                what: "no rule: nothing complete goes",
                backups: week.clone(),
                rule: rule(None, None),
                in_use: vec![],
                want: vec![],
            },
            Row {
                what: "keep_for only: older than 3 days go",
                backups: week.clone(),
                rule: rule(None, Some(3)),
                in_use: vec![],
                want: vec!["d7", "d6", "d5", "d4"],
            },
            Row {
                what: "exactly keep_for old is kept",
                backups: vec![b("old", 3, true), b("new", 0, true)],
                rule: rule(None, Some(3)),
                in_use: vec![],
                want: vec![],
            },
            Row {
                what: "keep_count only: the oldest beyond the count go",
                backups: week.clone(),
                rule: rule(Some(3), None),
                in_use: vec![],
                want: vec!["d7", "d6", "d5", "d4", "d3"],
            },
            Row {
                what: "both: expired ones go while more than keep_count remain",
                backups: week.clone(),
                rule: rule(Some(6), Some(1)),
                in_use: vec![],
                want: vec!["d7", "d6"],
            },
            Row {
                what: "both: keep_for binds first",
                backups: week.clone(),
                rule: rule(Some(2), Some(5)),
                in_use: vec![],
                want: vec!["d7", "d6"],
            },
            Row {
                what: "never the newest complete, even when expired",
                backups: vec![b("a", 30, true), b("b", 20, true), b("c", 10, true)],
                rule: rule(None, Some(1)),
                in_use: vec![],
                want: vec!["a", "b"],
            },
            Row {
                what: "never the newest complete with keep_count 0",
                backups: vec![b("a", 30, true), b("b", 20, true)],
                rule: rule(Some(0), None),
                in_use: vec![],
                want: vec!["a"],
            },
            Row {
                what: "newest complete is kept even when newer incomplete ones exist",
                backups: vec![b("a", 30, true), b("inc", 5, false)],
                rule: rule(None, Some(1)),
                in_use: vec![],
                want: vec!["inc"],
            },
            Row {
                what: "in use is skipped and counts as remaining",
                backups: week.clone(),
                rule: rule(Some(5), Some(1)),
                in_use: vec!["d7"],
                want: vec!["d6", "d5", "d4"],
            },
            Row {
                what: "in use incomplete is kept",
                backups: vec![b("inc", 9, false), b("c", 0, true)],
                rule: rule(Some(1), None),
                in_use: vec!["inc"],
                want: vec![],
            },
            Row {
                what: "incomplete within grace is kept, older goes; no rule needed",
                backups: vec![
                    b("inc-old", 2, false),
                    b("inc-new", 0, false),
                    b("c", 5, true),
                ],
                rule: rule(None, None),
                in_use: vec![],
                want: vec!["inc-old"],
            },
            Row {
                what: "incomplete ones do not count toward keep_count",
                backups: vec![
                    b("a", 5, true),
                    b("i1", 4, false),
                    b("b", 3, true),
                    b("i2", 2, false),
                ],
                rule: rule(Some(2), Some(1)),
                in_use: vec![],
                want: vec!["i1", "i2"],
            },
            Row {
                what: "only incomplete backups: grace applies, nothing else",
                backups: vec![b("i1", 4, false)],
                rule: rule(Some(1), Some(1)),
                in_use: vec![],
                want: vec!["i1"],
            },
            Row {
                what: "unreadable past the grace period is kept",
                backups: vec![u("bad", 9), b("c", 0, true)],
                rule: rule(Some(1), Some(1)),
                in_use: vec![],
                want: vec![],
            },
            Row {
                what: "an unreadable newest does not protect itself while restorable ones go",
                backups: vec![b("a", 5, true), b("b", 3, true), u("bad", 0)],
                rule: rule(None, Some(1)),
                in_use: vec![],
                want: vec!["a"],
            },
            Row {
                what: "unreadable ones do not count toward keep_count",
                backups: vec![b("a", 5, true), b("b", 3, true), u("x", 2), u("y", 1)],
                rule: rule(Some(2), None),
                in_use: vec![],
                want: vec![],
            },
            Row {
                what: "only unreadable ones: nothing goes, whatever the rule",
                backups: vec![u("x", 30), u("y", 20)],
                rule: rule(Some(1), Some(1)),
                in_use: vec![],
                want: vec![],
            },
            Row {
                what: "empty",
                backups: vec![],
                rule: rule(Some(1), Some(1)),
                in_use: vec![],
                want: vec![],
            },
            Row {
                what: "input order does not matter; output is oldest first",
                backups: vec![
                    b("d1", 1, true),
                    b("i9", 9, false),
                    b("d8", 8, true),
                    b("d0", 0, true),
                ],
                rule: rule(None, Some(2)),
                in_use: vec![],
                want: vec!["i9", "d8"],
            },
        ];
        for r in rows {
            let in_use: HashSet<String> = r.in_use.iter().map(|s| s.to_string()).collect();
            let got = plan(&r.backups, r.rule, now(), &in_use);
            assert_eq!(names(&got), r.want, "{}", r.what);
        }
        assert!(plan(&week, rule(None, None), now(), &none).is_empty());
    }

    #[test]
    fn future_backup_times_are_young() {
        let future = RetentionInput {
            name: "skewed".into(),
            backup_time: now() + chrono::Duration::hours(5),
            state: BackupState::Incomplete,
            schedule: None,
            in_flight: false,
            once_complete: false,
            incremental: false,
            position: None,
        };
        assert!(plan(&[future], rule(None, None), now(), &HashSet::new()).is_empty());
    }

    #[test]
    fn reasons_say_why() {
        let got = plan(
            &[b("a", 10, true), b("i", 3, false), b("z", 0, true)],
            rule(None, Some(7)),
            now(),
            &HashSet::new(),
        );
        assert_eq!(
            got[0].reason,
            Reason::Expired {
                age: Duration::from_secs(10 * DAY),
                keep_for: Duration::from_secs(7 * DAY)
            }
        );
        assert_eq!(
            got[0].reason.to_string(),
            "older than --keep-for 168h (age 240h)"
        );
        assert!(
            got[1].reason.to_string().starts_with("incomplete"),
            "{}",
            got[1].reason
        );
        let got = plan(
            &[b("a", 10, true), b("z", 0, true)],
            rule(Some(1), None),
            now(),
            &HashSet::new(),
        );
        assert_eq!(
            got[0].reason.to_string(),
            "more than --keep-count 1 complete backups"
        );
        assert_eq!(human(Duration::from_secs(3723)), "1h2m3s");
        assert_eq!(human(Duration::ZERO), "0s");
    }
}
