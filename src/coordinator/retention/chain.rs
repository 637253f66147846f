//! Retention of incremental backups: a chain is a full backup and the binary
//! logs after it, and retention must never break one that a kept full backup
//! needs. Positions decide, not times: a full backup taken on a lagging replica
//! after an incremental may still need that incremental's transactions.
//!
//! The rule ([`plan_incrementals`]): a complete incremental backup the schedule
//! owns is removed only when every full backup that stays (complete, or
//! unreadable with a readable `Position`: conservative, it may come back) holds
//! every transaction it holds (its `Position` is contained in theirs). No full
//! backup staying, a `Position` that does not parse, in use or in flight: kept;
//! a full backup whose `Position` cannot be read (an unreadable MANIFEST) keeps
//! every incremental until an operator has dealt with it.
//!
//! Pure. Calls the parent's types and [`crate::mysql::gtid`] (through
//! [`crate::backup::incremental::parse_position`]).

use std::collections::HashSet;

use super::{BackupState, Reason, Removal, RetentionInput};
use crate::backup::incremental::parse_position;
use crate::mysql::gtid::position_contains;

/// The incremental backups among `owned` (a schedule's backups, see
/// [`super::owned_by`]) that no chain of `kept_fulls` (the shard's full
/// backups that stay) needs, oldest first.
pub fn plan_incrementals(
    owned: &[RetentionInput],
    kept_fulls: &[&RetentionInput],
    in_use: &HashSet<String>,
) -> Vec<Removal> {
    let mut fulls = Vec::new();
    for f in kept_fulls.iter().filter(|f| !f.incremental) {
        match f.position.as_deref().and_then(|p| parse_position(p).ok()) {
            Some(p) => fulls.push((*f, p)),
            // A full backup whose position is unknown might need anything.
            None => return Vec::new(),
        }
    }
    let Some(oldest) = fulls
        .iter()
        .min_by(|a, b| (a.0.backup_time, &a.0.name).cmp(&(b.0.backup_time, &b.0.name)))
    else {
        return Vec::new();
    };
    let mut out: Vec<&RetentionInput> = owned
        .iter()
        .filter(|b| b.incremental && b.state == BackupState::Complete)
        .filter(|b| !b.in_flight && !in_use.contains(&b.name))
        .filter(|b| {
            let Some(pos) = b.position.as_deref().and_then(|p| parse_position(p).ok()) else {
                return false;
            };
            fulls.iter().all(|(_, full)| position_contains(full, &pos))
        })
        .collect();
    out.sort_by(|a, b| (a.backup_time, &a.name).cmp(&(b.backup_time, &b.name)));
    out.into_iter()
        .map(|b| Removal {
            name: b.name.clone(),
            reason: Reason::Superseded {
                oldest_full: oldest.0.name.clone(),
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    fn at(min: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-03-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
            + chrono::Duration::minutes(min)
    }

    /// A complete backup at minute `min` with `Position` `MariaDB/0-1-<seq>`.
    fn b(name: &str, min: i64, seq: u64, incremental: bool) -> RetentionInput {
        RetentionInput {
            name: name.into(),
            backup_time: at(min),
            state: BackupState::Complete,
            schedule: Some("s".into()),
            in_flight: false,
            once_complete: false,
            incremental,
            position: Some(format!("MariaDB/0-1-{seq}")),
        }
    }

    fn names(r: &[Removal]) -> Vec<&str> {
        r.iter().map(|r| r.name.as_str()).collect()
    }

    #[test]
    fn incrementals_go_only_when_every_kept_full_holds_them() {
        let none = HashSet::new();
        let i = |n: &str, min, seq| b(n, min, seq, true);
        let f = |n: &str, min, seq| b(n, min, seq, false);
        let mut lagging = f("f2-lagging", 30, 15);
        lagging.backup_time = at(30);
        let mut unknown = f("f-unknown", 5, 0);
        unknown.position = None;
        let mut gone_bad = f("f-unreadable", 5, 12);
        gone_bad.state = BackupState::Unreadable;
        // (what, owned, kept fulls, removed)
        type Row = (
            &'static str,
            Vec<RetentionInput>,
            Vec<RetentionInput>,
            Vec<&'static str>,
        );
        let rows: Vec<Row> = vec![
            (
                "older than the only full: gone; newer: kept",
                vec![i("i1", 1, 10), i("i2", 2, 20), i("i3", 40, 30)],
                vec![f("f1", 10, 20)],
                vec!["i1", "i2"],
            ),
            (
                "no full backup stays: every incremental stays",
                vec![i("i1", 1, 10)],
                vec![],
                vec![],
            ),
            (
                "a later full taken on a lagging replica still needs i2",
                vec![i("i1", 1, 10), i("i2", 20, 20)],
                vec![f("f1", 10, 25), lagging],
                vec!["i1"],
            ),
            (
                "an unreadable full with a position counts (it may come back)",
                vec![i("i1", 1, 10), i("i2", 2, 14)],
                vec![f("f1", 10, 20), gone_bad],
                vec!["i1"],
            ),
            (
                "a full whose position is unknown: nothing goes",
                vec![i("i1", 1, 10)],
                vec![f("f1", 10, 20), unknown],
                vec![],
            ),
            (
                "full backups and unparsable incrementals are not this rule's",
                vec![f("f0", 0, 5), {
                    let mut x = i("i1", 1, 10);
                    x.position = Some("MySQL56/x:1".into());
                    x
                }],
                vec![f("f1", 10, 20)],
                vec![],
            ),
        ];
        for (what, owned, fulls, want) in rows {
            let kept: Vec<&RetentionInput> = fulls.iter().collect();
            let got = plan_incrementals(&owned, &kept, &none);
            assert_eq!(names(&got), want, "{what}");
            for r in &got {
                assert!(
                    r.reason.to_string().contains("every kept full backup"),
                    "{what}"
                );
            }
        }
        // In use or in flight: kept.
        let owned = vec![i("i1", 1, 10), i("i2", 2, 11)];
        let mut flying = owned.clone();
        flying[1].in_flight = true;
        let fulls = [f("f1", 10, 20)];
        let kept: Vec<&RetentionInput> = fulls.iter().collect();
        let in_use: HashSet<String> = ["i1".to_string()].into();
        assert!(plan_incrementals(&flying, &kept, &in_use).is_empty());
    }
}
