//! Table tests of the scheduler's planners in [`super`]: target expansion, the
//! slot plan, the scheduled job (or why a shard cannot start), the etcd snapshot
//! cron.

use super::tests::{sched, t};
use super::*;
use cairn_topo::{JobState, TabletAlias};

#[test]
fn stored_targets_expand_to_the_shards_topo_knows() {
    let known: Vec<(String, String)> = [("commerce", "80-"), ("commerce", "-80"), ("other", "0")]
        .iter()
        .map(|(k, s)| (k.to_string(), s.to_string()))
        .collect();
    let pair = |k: &str, s: &str| (k.to_string(), s.to_string());
    // (stored target, expected shards)
    let rows: Vec<(&str, Vec<(String, String)>)> = vec![
        (
            "commerce",
            vec![pair("commerce", "-80"), pair("commerce", "80-")],
        ),
        ("other", vec![pair("other", "0")]),
        ("nothing", vec![]),
        // A shard target is that shard, known or not.
        ("commerce/-80", vec![pair("commerce", "-80")]),
        ("commerce/40-80", vec![pair("commerce", "40-80")]),
        // A record edited by hand is read at its first slash.
        ("a/b/c", vec![pair("a", "b/c")]),
    ];
    for (target, want) in rows {
        assert_eq!(target_shards(target, &known), want, "{target}");
    }
}

fn job_for(sched: &str, slot: &str, ks: &str, shard: &str) -> Job {
    let mut j = Job::pending(
        JobKind::Backup,
        ks,
        shard,
        &TabletAlias::new("zone1", 101).unwrap(),
    );
    j.schedule = Some(sched.into());
    j.scheduled_for = Some(t(slot));
    j
}

fn shards(names: &[&str]) -> Vec<(String, String)> {
    names
        .iter()
        .map(|s| ("commerce".to_string(), s.to_string()))
        .collect()
}

/// The expected plan: slot, shards started, shards skipped (waiting or not), done.
type WantSlot = (
    DateTime<Utc>,
    Vec<&'static str>,
    Vec<(&'static str, bool)>,
    bool,
);

#[test]
fn slot_plan_table() {
    let hourly = "0 * * * *";
    let window = Duration::from_secs(600);
    let none: Vec<Job> = vec![];
    // The stagger of each shard within 10 minutes, to place `now` around it.
    let d = |shard: &str| {
        chrono::Duration::from_std(stagger("nightly", "commerce", shard, window)).unwrap()
    };
    let slot = t("2026-01-01T10:00:00Z");
    let (first, second) = if d("-80") <= d("80-") {
        ("-80", "80-")
    } else {
        ("80-", "-80")
    };
    let between = slot + d(first) + (d(second) - d(first)) / 2;
    let after_both = slot + chrono::Duration::minutes(11);
    struct Row {
        what: &'static str,
        sched: Schedule,
        now: DateTime<Utc>,
        pinned: Option<DateTime<Utc>>,
        shards: Vec<(String, String)>,
        jobs: Vec<Job>,
        window: Duration,
        // None: no plan; else (slot, started, skipped as (shard, waiting?), done)
        want: Option<WantSlot>,
    }
    let paused = {
        let mut s = sched(hourly, "2026-01-01T00:00:00Z", Some("2026-01-01T09:00:00Z"));
        s.paused = true;
        s
    };
    let ran_at_10 = sched(hourly, "2026-01-01T00:00:00Z", Some("2026-01-01T10:00:00Z"));
    let ran_at_9 = sched(hourly, "2026-01-01T00:00:00Z", Some("2026-01-01T09:00:00Z"));
    let rows = vec![
        Row {
            what: "not due yet",
            sched: ran_at_10.clone(),
            now: t("2026-01-01T10:30:00Z"),
            pinned: None,
            shards: shards(&["-80", "80-"]),
            jobs: none.clone(),
            window,
            want: None,
        },
        Row {
            what: "paused, even when pinned",
            sched: paused,
            now: after_both,
            pinned: Some(slot),
            shards: shards(&["-80"]),
            jobs: none.clone(),
            window,
            want: None,
        },
        Row {
            what: "due, no stagger: every shard starts, run recorded",
            sched: ran_at_9.clone(),
            now: slot,
            pinned: None,
            shards: shards(&["-80", "80-"]),
            jobs: none.clone(),
            window: Duration::ZERO,
            want: Some((slot, vec!["-80", "80-"], vec![], true)),
        },
        Row {
            what: "missed slots are made up by one run: the latest",
            sched: sched(hourly, "2026-01-01T00:00:00Z", Some("2026-01-01T05:00:00Z")),
            now: t("2026-01-01T10:20:00Z"),
            pinned: None,
            shards: shards(&["-80", "80-"]),
            jobs: none.clone(),
            window,
            want: Some((slot, vec!["-80", "80-"], vec![], true)),
        },
        Row {
            what: "no shard yet: the run is recorded with nothing to start",
            sched: ran_at_9.clone(),
            now: slot,
            pinned: None,
            shards: vec![],
            jobs: none.clone(),
            window,
            want: Some((slot, vec![], vec![], true)),
        },
        Row {
            what: "staggered: the first shard starts, the second waits, slot not done",
            sched: ran_at_9.clone(),
            now: between,
            pinned: None,
            shards: shards(&["-80", "80-"]),
            jobs: none.clone(),
            window,
            want: Some((slot, vec![first], vec![(second, true)], false)),
        },
        Row {
            what: "a pinned slot stays the slot after the cron moved on; started shards are not doubled",
            sched: ran_at_9.clone(),
            now: t("2026-01-01T11:05:00Z"),
            pinned: Some(slot),
            shards: shards(&["-80", "80-"]),
            jobs: vec![job_for("nightly", "2026-01-01T10:00:00Z", "commerce", first)],
            window,
            want: Some((slot, vec![second], vec![(first, false)], true)),
        },
        Row {
            what: "a pin the record already passed is ignored",
            sched: ran_at_10.clone(),
            now: t("2026-01-01T10:30:00Z"),
            pinned: Some(slot),
            shards: shards(&["-80"]),
            jobs: none.clone(),
            window,
            want: None,
        },
        Row {
            what: "jobs of another schedule or slot do not count as started",
            sched: ran_at_9.clone(),
            now: after_both,
            pinned: None,
            shards: shards(&["-80"]),
            jobs: vec![
                job_for("other", "2026-01-01T10:00:00Z", "commerce", "-80"),
                job_for("nightly", "2026-01-01T09:00:00Z", "commerce", "-80"),
            ],
            window,
            want: Some((slot, vec!["-80"], vec![], true)),
        },
        Row {
            what: "every shard already has its job: nothing to start, done",
            sched: ran_at_9.clone(),
            now: after_both,
            pinned: None,
            shards: shards(&["-80"]),
            jobs: vec![job_for("nightly", "2026-01-01T10:00:00Z", "commerce", "-80")],
            window,
            want: Some((slot, vec![], vec![("-80", false)], true)),
        },
        Row {
            what: "the window is capped at half the period (every minute: 30s)",
            sched: sched("* * * * *", "2026-01-01T00:00:00Z", Some("2026-01-01T09:59:00Z")),
            now: t("2026-01-01T10:00:30Z"),
            pinned: None,
            shards: shards(&["-80", "80-", "a", "b", "c"]),
            jobs: none.clone(),
            window: Duration::from_secs(3600),
            want: Some((slot, vec!["-80", "80-", "a", "b", "c"], vec![], true)),
        },
    ];
    for r in rows {
        let cron = parse_cron(&r.sched.cron).unwrap();
        let got = plan_slot(
            &r.sched,
            &cron,
            r.now,
            r.pinned,
            r.shards.clone(),
            &r.jobs,
            r.window,
        );
        let got = got.map(|p| {
            assert_eq!(p.shards, r.shards, "{}", r.what);
            let period = (next_run(&cron, p.slot).unwrap() - p.slot)
                .to_std()
                .unwrap();
            for (ks, shard, delay) in &p.start {
                let w = r.window.min(period / 2);
                assert_eq!(*delay, stagger("nightly", ks, shard, w), "{}", r.what);
            }
            (
                p.slot,
                p.start
                    .iter()
                    .map(|(_, s, _)| s.clone())
                    .collect::<Vec<_>>(),
                p.skip
                    .iter()
                    .map(|(_, s, why)| (s.clone(), matches!(why, SlotSkip::Waiting { .. })))
                    .collect::<Vec<_>>(),
                p.done,
            )
        });
        let want = r.want.map(|(slot, start, skip, done)| {
            (
                slot,
                start.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                skip.iter()
                    .map(|(s, w)| (s.to_string(), *w))
                    .collect::<Vec<_>>(),
                done,
            )
        });
        assert_eq!(got, want, "{}", r.what);
    }
}

#[test]
fn a_waiting_shard_says_until_when() {
    let s = sched(
        "0 * * * *",
        "2026-01-01T00:00:00Z",
        Some("2026-01-01T09:00:00Z"),
    );
    let cron = parse_cron(&s.cron).unwrap();
    let window = Duration::from_secs(600);
    let slot = t("2026-01-01T10:00:00Z");
    let plan = plan_slot(&s, &cron, slot, None, shards(&["-80"]), &[], window).unwrap();
    let delay = stagger("nightly", "commerce", "-80", window);
    if delay.is_zero() {
        assert_eq!(plan.start.len(), 1);
    } else {
        let until = slot + chrono::Duration::from_std(delay).unwrap();
        assert_eq!(
            plan.skip,
            vec![("commerce".into(), "-80".into(), SlotSkip::Waiting { until })]
        );
        assert!(!plan.done);
    }
}

#[test]
fn scheduled_job_table() {
    let s = Schedule {
        backup_engine: Some(cairn_topo::BackupMethod::Builtin),
        ..sched("0 * * * *", "2026-01-01T00:00:00Z", None)
    };
    let slot = t("2026-01-01T10:00:00Z");
    let run = ScheduledRun {
        schedule: &s,
        slot,
        keyspace: "commerce",
        shard: "-80",
        pending_timeout: Duration::from_secs(90),
    };
    let a101 = TabletAlias::new("zone1", 101).unwrap();
    let a102 = TabletAlias::new("zone1", 102).unwrap();
    let running = |state: JobState, kind: JobKind, shard: &str| {
        let mut j = Job::pending(kind, "commerce", shard, &a102);
        j.id = "old".into();
        j.state = state;
        j
    };
    let busy = |state| {
        Err(Blocked::Busy {
            job: "old".into(),
            state,
        })
    };
    // (what, jobs, choice, a job on this tablet, or why none)
    type Row<'a> = (&'a str, Vec<Job>, Choice, Result<&'a str, Blocked>);
    let rows: Vec<Row> = vec![
        (
            "a tablet was chosen",
            vec![],
            Choice::Tablet(a101.clone()),
            Ok("zone1-0000000101"),
        ),
        (
            "a backup of the shard still runs: no job",
            vec![running(JobState::Running, JobKind::Backup, "-80")],
            Choice::Tablet(a101.clone()),
            busy(JobState::Running),
        ),
        (
            "a pending backup counts as running too, even with no tablet",
            vec![running(JobState::Pending, JobKind::Backup, "-80")],
            Choice::None(vec![]),
            busy(JobState::Pending),
        ),
        (
            "finished backups, restores and other shards do not count",
            vec![
                running(JobState::Succeeded, JobKind::Backup, "-80"),
                running(JobState::Cancelled, JobKind::Backup, "-80"),
                running(JobState::Running, JobKind::Restore, "-80"),
                running(JobState::Running, JobKind::Backup, "80-"),
            ],
            Choice::Tablet(a101.clone()),
            Ok("zone1-0000000101"),
        ),
        (
            "no tablets at all: no job",
            vec![],
            Choice::None(vec![]),
            Err(Blocked::NoTablet {
                why: "no tablets".into(),
            }),
        ),
        (
            "no eligible tablet: no job, every reason kept",
            vec![],
            Choice::None(vec![
                (a101.clone(), "lagging 900s > 300s".into()),
                (a102.clone(), "mysqld down".into()),
            ]),
            Err(Blocked::NoTablet {
                why: "zone1-0000000101: lagging 900s > 300s; zone1-0000000102: mysqld down".into(),
            }),
        ),
    ];
    for (what, jobs, choice, want) in rows {
        let got = scheduled_job(&run, &jobs, &choice);
        let j = match (got, want) {
            (Ok(j), Ok(tablet)) => {
                assert_eq!(j.tablet_alias.to_string(), tablet, "{what}");
                j
            }
            (got, want) => {
                assert_eq!(got.map(|j| j.id), want.map(|_| String::new()), "{what}");
                continue;
            }
        };
        assert_eq!(j.state, JobState::Pending, "{what}");
        assert_eq!((j.error.as_deref(), j.finished_at), (None, None), "{what}");
        assert_eq!(
            (j.kind, j.keyspace.as_str(), j.shard.as_str()),
            (JobKind::Backup, "commerce", "-80"),
            "{what}"
        );
        assert_eq!(j.schedule.as_deref(), Some("nightly"), "{what}");
        assert_eq!(j.scheduled_for, Some(slot), "{what}");
        assert_eq!(j.engine, s.backup_engine, "{what}");
        assert_eq!(j.pending_timeout_seconds, Some(90), "{what}");
        assert_eq!(j.attempt, 1, "{what}");
    }
    assert_eq!(
        busy(JobState::Running).unwrap_err().to_string(),
        "backup job old of the shard is still RUNNING"
    );
    assert_eq!(
        Blocked::NoTablet {
            why: "no tablets".into()
        }
        .to_string(),
        "no eligible tablet (no tablets)"
    );
}

#[test]
fn snapshot_due_table() {
    let cron = parse_cron("0 * * * *").unwrap();
    let started = t("2026-01-01T09:30:00Z");
    // (what, last, now, expected slot)
    let rows = [
        (
            "before the first slot after start",
            None,
            "2026-01-01T09:59:59Z",
            None,
        ),
        (
            "the first slot after start",
            None,
            "2026-01-01T10:00:00Z",
            Some("2026-01-01T10:00:00Z"),
        ),
        (
            "late: the first slot after start still",
            None,
            "2026-01-01T12:10:00Z",
            Some("2026-01-01T10:00:00Z"),
        ),
        (
            "after a snapshot: not before the next slot",
            Some("2026-01-01T10:00:03Z"),
            "2026-01-01T10:59:00Z",
            None,
        ),
        (
            "after a snapshot: the next slot",
            Some("2026-01-01T10:00:03Z"),
            "2026-01-01T11:00:00Z",
            Some("2026-01-01T11:00:00Z"),
        ),
    ];
    for (what, last, now, want) in rows {
        assert_eq!(
            snapshot_due(&cron, started, last.map(t), t(now)),
            want.map(t),
            "{what}"
        );
    }
}

#[test]
fn a_slot_a_dead_leader_left_half_started_is_found_from_the_jobs() {
    let hourly = "0 * * * *";
    // (what, last_run, stored next_run, jobs as (schedule, slot), slot in progress)
    type Row = (
        &'static str,
        Option<&'static str>,
        Option<&'static str>,
        Vec<(&'static str, &'static str)>,
        Option<&'static str>,
    );
    let rows: Vec<Row> = vec![
        ("no jobs", None, None, vec![], None),
        (
            "never ran; one shard of 10:00 started",
            None,
            None,
            vec![("nightly", "2026-01-01T10:00:00Z")],
            Some("2026-01-01T10:00:00Z"),
        ),
        (
            "09:00 recorded; 10:00 half started",
            Some("2026-01-01T09:00:00Z"),
            Some("2026-01-01T10:00:00Z"),
            vec![
                ("nightly", "2026-01-01T09:00:00Z"),
                ("nightly", "2026-01-01T10:00:00Z"),
            ],
            Some("2026-01-01T10:00:00Z"),
        ),
        (
            "the latest slot recorded: nothing in progress",
            Some("2026-01-01T10:00:00Z"),
            Some("2026-01-01T11:00:00Z"),
            vec![
                ("nightly", "2026-01-01T09:00:00Z"),
                ("nightly", "2026-01-01T10:00:00Z"),
            ],
            None,
        ),
        (
            "another schedule's jobs do not count",
            Some("2026-01-01T09:00:00Z"),
            None,
            vec![("other", "2026-01-01T10:00:00Z")],
            None,
        ),
        (
            "resumed past the half-started slot: not made up",
            Some("2026-01-01T09:00:00Z"),
            Some("2026-01-01T15:00:00Z"),
            vec![("nightly", "2026-01-01T10:00:00Z")],
            None,
        ),
        (
            "jobs from before the schedule was created (an older schedule of that name)",
            None,
            None,
            vec![("nightly", "2025-12-31T10:00:00Z")],
            None,
        ),
        (
            "the latest of two unrecorded slots",
            Some("2026-01-01T08:00:00Z"),
            None,
            vec![
                ("nightly", "2026-01-01T09:00:00Z"),
                ("nightly", "2026-01-01T11:00:00Z"),
            ],
            Some("2026-01-01T11:00:00Z"),
        ),
    ];
    for (what, last_run, next_run, jobs, want) in rows {
        let mut s = sched(hourly, "2026-01-01T00:30:00Z", last_run);
        s.next_run = next_run.map(t);
        let jobs: Vec<Job> = jobs
            .iter()
            .map(|(name, slot)| job_for(name, slot, "commerce", "-80"))
            .collect();
        assert_eq!(slot_in_progress(&s, &jobs), want.map(t), "{what}");
    }
}

#[test]
fn an_incremental_schedule_makes_incremental_jobs_from_the_newest_backup() {
    let mut s = Schedule {
        backup_engine: Some(cairn_topo::BackupMethod::Xtrabackup),
        ..sched("0 * * * *", "2026-01-01T00:00:00Z", None)
    };
    let a101 = TabletAlias::new("zone1", 101).unwrap();
    let job = |s: &Schedule| {
        let run = ScheduledRun {
            schedule: s,
            slot: t("2026-01-01T10:00:00Z"),
            keyspace: "commerce",
            shard: "-80",
            pending_timeout: Duration::from_secs(90),
        };
        scheduled_job(&run, &[], &Choice::Tablet(a101.clone())).unwrap()
    };
    let full = job(&s);
    assert_eq!(full.incremental_from_pos, None);
    assert_eq!(full.engine, Some(cairn_topo::BackupMethod::Xtrabackup));
    s.incremental = true;
    let incr = job(&s);
    assert_eq!(incr.incremental_from_pos.as_deref(), Some("auto"));
    assert_eq!(incr.engine, None);
    assert_eq!(incr.schedule.as_deref(), Some(s.name.as_str()));
}
