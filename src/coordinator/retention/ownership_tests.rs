//! Table tests of ownership and backups in flight: two schedules on one shard,
//! manual backups, backups still being written.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{owned_by, plan, BackupState, Reason, RetentionInput, Rule};

const DAY: u64 = 86_400;

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// A backup `days_old` days old, taken by `schedule` (`None`: manual); no
/// schedule is recorded for an incomplete one (it has no MANIFEST).
fn b(name: &str, days_old: u64, complete: bool, schedule: Option<&str>) -> RetentionInput {
    RetentionInput {
        name: name.into(),
        backup_time: now() - chrono::Duration::seconds((days_old * DAY) as i64),
        state: if complete {
            BackupState::Complete
        } else {
            BackupState::Incomplete
        },
        schedule: schedule.filter(|_| complete).map(str::to_string),
        in_flight: false,
        once_complete: false,
        incremental: false,
        position: None,
    }
}

fn in_flight(mut b: RetentionInput) -> RetentionInput {
    b.in_flight = true;
    b
}

fn rule(keep_count: Option<u32>, keep_for_days: Option<u64>) -> Rule {
    Rule {
        keep_count,
        keep_for: keep_for_days.map(|d| Duration::from_secs(d * DAY)),
        incomplete_grace: Duration::from_secs(DAY),
    }
}

/// One shard with two schedules, manual backups and incomplete ones, oldest
/// first: the newest complete backup of the shard is the yearly `y-new`.
fn shard() -> Vec<RetentionInput> {
    vec![
        b("m-old", 30, true, None),
        b("y-old", 20, true, Some("yearly")),
        b("m-mid", 6, true, None),
        b("inc-old", 5, false, None),
        in_flight(b("inc-flight", 5, false, None)),
        b("h4", 4, true, Some("hourly")),
        b("h3", 3, true, Some("hourly")),
        b("h2", 2, true, Some("hourly")),
        b("h1", 1, true, Some("hourly")),
        b("y-new", 0, true, Some("yearly")),
    ]
}

fn run(backups: &[RetentionInput], schedule: &str, r: Rule) -> Vec<String> {
    plan(&owned_by(backups, schedule), r, now(), &HashSet::new())
        .into_iter()
        .map(|r| r.name)
        .collect()
}

#[test]
fn each_schedule_prunes_only_its_own() {
    struct Row {
        what: &'static str,
        backups: Vec<RetentionInput>,
        schedule: &'static str,
        rule: Rule,
        want: Vec<&'static str>,
    }
    let rows = vec![
        Row {
            what: "yearly keep-1 removes its older one, not the hourly or manual ones",
            backups: shard(),
            schedule: "yearly",
            rule: rule(Some(1), None),
            want: vec!["y-old", "inc-old"],
        },
        Row {
            what: "hourly keep-2 removes its own beyond two; the yearly and manual stay",
            backups: shard(),
            schedule: "hourly",
            rule: rule(Some(2), None),
            want: vec!["inc-old", "h4", "h3"],
        },
        Row {
            what: "keep-for counts the schedule's own backups only",
            backups: shard(),
            schedule: "hourly",
            rule: rule(None, Some(2)),
            want: vec!["inc-old", "h4", "h3"],
        },
        Row {
            what: "keep-count 0 still keeps the schedule's newest",
            backups: shard(),
            schedule: "hourly",
            rule: rule(Some(0), None),
            want: vec!["inc-old", "h4", "h3", "h2"],
        },
        Row {
            what: "a schedule that owns nothing removes only abandoned incomplete ones",
            backups: shard(),
            schedule: "weekly",
            rule: rule(Some(0), Some(0)),
            want: vec!["inc-old"],
        },
        Row {
            what: "manual backups only: no schedule removes any",
            backups: vec![b("m1", 9, true, None), b("m2", 8, true, None)],
            schedule: "hourly",
            rule: rule(Some(0), Some(0)),
            want: vec![],
        },
        Row {
            what: "the shard's newest is kept when the schedule owns it",
            backups: vec![
                b("m-old", 9, true, None),
                b("h2", 2, true, Some("hourly")),
                b("h1", 1, true, Some("hourly")),
            ],
            schedule: "hourly",
            rule: rule(Some(0), Some(0)),
            want: vec!["h2"],
        },
        Row {
            what: "the shard's newest is kept when another schedule owns it",
            backups: vec![
                b("h2", 2, true, Some("hourly")),
                b("h1", 1, true, Some("hourly")),
                b("y", 0, true, Some("yearly")),
            ],
            schedule: "hourly",
            rule: rule(Some(0), Some(0)),
            want: vec!["h2"],
        },
        Row {
            what: "names are compared exactly",
            backups: vec![
                b("h2", 2, true, Some("Hourly")),
                b("h1", 1, true, Some("hourly2")),
                b("h0", 0, true, Some("hourly")),
            ],
            schedule: "hourly",
            rule: rule(Some(0), None),
            want: vec![],
        },
    ];
    for r in rows {
        assert_eq!(run(&r.backups, r.schedule, r.rule), r.want, "{}", r.what);
    }
}

#[test]
fn backups_in_flight_are_never_pruned() {
    let grace0 = |mut r: Rule| {
        r.incomplete_grace = Duration::ZERO;
        r
    };
    struct Row {
        what: &'static str,
        backups: Vec<RetentionInput>,
        rule: Rule,
        want: Vec<&'static str>,
    }
    let rows = vec![
        Row {
            what: "in flight and far past the grace: kept; the abandoned one goes",
            backups: vec![
                in_flight(b("writing", 40, false, None)),
                b("abandoned", 40, false, None),
                b("c", 0, true, Some("s")),
            ],
            rule: rule(Some(1), None),
            want: vec!["abandoned"],
        },
        Row {
            what: "in flight with no grace at all: kept",
            backups: vec![in_flight(b("writing", 1, false, None))],
            rule: grace0(rule(None, None)),
            want: vec![],
        },
        Row {
            what: "complete but its job not finished yet: kept and counted as remaining",
            backups: vec![
                in_flight(b("h4", 4, true, Some("s"))),
                b("h3", 3, true, Some("s")),
                b("h2", 2, true, Some("s")),
                b("h1", 1, true, Some("s")),
            ],
            rule: rule(Some(2), None),
            want: vec!["h3", "h2"],
        },
        Row {
            what: "the same without the job: the oldest go",
            backups: vec![
                b("h4", 4, true, Some("s")),
                b("h3", 3, true, Some("s")),
                b("h2", 2, true, Some("s")),
                b("h1", 1, true, Some("s")),
            ],
            rule: rule(Some(2), None),
            want: vec!["h4", "h3"],
        },
    ];
    for r in rows {
        assert_eq!(run(&r.backups, "s", r.rule), r.want, "{}", r.what);
    }
}

/// The coordinator prunes after each schedule's run: the two rules applied in
/// turn to one shard leave each schedule's own, every manual backup and the
/// backup in flight.
#[test]
fn two_schedules_in_turn_keep_each_others_and_the_manual_ones() {
    let mut backups = shard();
    for (schedule, r) in [
        ("yearly", rule(Some(1), None)),
        ("hourly", rule(Some(2), None)),
        ("yearly", rule(Some(1), None)),
    ] {
        let removed: HashSet<String> = run(&backups, schedule, r).into_iter().collect();
        backups.retain(|b| !removed.contains(&b.name));
    }
    let left: Vec<&str> = backups.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(
        left,
        vec!["m-old", "m-mid", "inc-flight", "h2", "h1", "y-new"]
    );
}

#[test]
fn reasons_are_unchanged_by_ownership() {
    let got = plan(
        &owned_by(&shard(), "hourly"),
        rule(Some(3), None),
        now(),
        &HashSet::new(),
    );
    assert_eq!(got[0].name, "inc-old");
    assert!(matches!(got[0].reason, Reason::Incomplete { .. }));
    assert_eq!(got[1].name, "h4");
    assert_eq!(got[1].reason, Reason::OverCount { keep_count: 3 });
}

/// A backup whose job succeeded but that has no MANIFEST lost it to a removal cut
/// short (a coordinator killed mid-prune): it is removed at once, by any
/// schedule's pass, with no grace; a young incomplete one whose job did not
/// succeed still gets its grace, and one in flight is kept.
#[test]
fn a_removal_cut_short_is_finished_at_once() {
    let cut = |mut b: RetentionInput| {
        b.once_complete = true;
        b
    };
    let backups = vec![
        b("h-old", 3, true, Some("hourly")),
        cut(b("cut-young", 0, false, None)),
        b("young", 0, false, None),
        b("y-new", 0, true, Some("yearly")),
    ];
    for schedule in ["hourly", "yearly", "other"] {
        let got = plan(
            &owned_by(&backups, schedule),
            rule(None, None),
            now(),
            &HashSet::new(),
        );
        assert_eq!(got.len(), 1, "{schedule}: {got:?}");
        assert_eq!(got[0].name, "cut-young");
        assert_eq!(got[0].reason, Reason::RemovalCutShort);
        assert!(got[0].reason.to_string().contains("removal was cut short"));
    }
    // Read by a restore: kept like any other.
    let in_use: HashSet<String> = ["cut-young".to_string()].into();
    let got = plan(
        &owned_by(&backups, "hourly"),
        rule(None, None),
        now(),
        &in_use,
    );
    assert!(got.is_empty(), "{got:?}");
}
