//! Scheduled restore drills (`schedule set ... --drill-cron EXPR`) as a view of
//! the schedule: [`drill_view`] turns a schedule with a drill cron into a
//! schedule of its own (named `NAME:drill`, which no real schedule can be: `:`
//! is not allowed in names) whose cron, last and next run are the drill's, so
//! the backup rules apply unchanged: when it is due, a stretch of missed slots
//! made up by one run, the stagger, the slot a dead leader left half started,
//! the jobs that dedupe a slot, and the counted skips. [`write_back`] puts what
//! the scheduler recorded on the view into the real record (the drill's last
//! and next run, and the schedule's shared skip counters).
//!
//! [`drill_job`] is the job of one shard's drill slot: a DRILL job of the
//! newest complete full backup of the shard ([`choose_drill_backup`]) on the
//! tablet [`select_drill_tablet`](crate::coordinator::select::select_drill_tablet)
//! picked; none while a drill of the shard is unfinished or when it has nothing
//! to drill (the slot is given up for that shard, counted), or while no tablet
//! is eligible (looked at again until the give-up time). A schedule with
//! `drill_to_now` marks its jobs as `cairn drill --to-now` does (an empty
//! `point_in_time`): the agent also applies the chain to the newest archived
//! transaction.
//!
//! Pure; part of [`super`] (the schedule rules).

use cairn_topo::{BackupRecord, Job, JobKind, PointInTime, Schedule};

use super::{Blocked, ScheduledRun};
use crate::backup::drill::choose_drill_backup;
use crate::coordinator::select::Choice;

/// What a drill view's name adds to its schedule's.
pub const DRILL_SUFFIX: &str = ":drill";

/// The schedule's drills as a schedule of their own, or `None` when it has no
/// drill cron.
pub fn drill_view(s: &Schedule) -> Option<Schedule> {
    let cron = s.drill_cron.clone()?;
    Some(Schedule {
        name: format!("{}{DRILL_SUFFIX}", s.name),
        cron,
        last_run: s.drill_last_run,
        next_run: s.drill_next_run,
        drill_cron: None,
        drill_last_run: None,
        drill_next_run: None,
        incremental: false,
        backup_engine: None,
        ..s.clone()
    })
}

/// The real schedule's name and whether `name` is a drill view's.
pub fn real_name(name: &str) -> (&str, bool) {
    match name.strip_suffix(DRILL_SUFFIX) {
        Some(real) => (real, true),
        None => (name, false),
    }
}

/// Puts what was recorded on `view` (its run and skips) into the real `s`.
pub fn write_back(s: &mut Schedule, view: &Schedule) {
    s.drill_last_run = view.last_run;
    s.drill_next_run = view.next_run;
    s.skipped_runs = view.skipped_runs;
    s.last_skip_reason = view.last_skip_reason.clone();
    s.last_skip_at = view.last_skip_at;
}

/// The DRILL job of one shard's drill slot (see the module doc). `records` are
/// the shard's backup records.
pub fn drill_job(
    run: &ScheduledRun<'_>,
    jobs: &[Job],
    records: &[BackupRecord],
    choice: &Choice,
) -> Result<Job, Blocked> {
    let (ks, shard) = (run.keyspace, run.shard);
    if let Some(r) = jobs.iter().find(|j| {
        j.kind == JobKind::Drill && j.keyspace == ks && j.shard == shard && !j.state.is_final()
    }) {
        return Err(Blocked::DrillBusy { job: r.id.clone() });
    }
    let backup = choose_drill_backup(records, None)
        .map_err(|why| Blocked::NoBackup { why })?
        .name
        .clone();
    let alias = match choice {
        Choice::Tablet(alias) => alias,
        Choice::None(reasons) => {
            let why: Vec<String> = reasons.iter().map(|(a, r)| format!("{a}: {r}")).collect();
            return Err(Blocked::NoTablet {
                why: if why.is_empty() {
                    "no tablets".into()
                } else {
                    why.join("; ")
                },
            });
        }
    };
    let mut job = Job::pending(JobKind::Drill, ks, shard, alias);
    job.backup_name = Some(backup);
    job.schedule = Some(run.schedule.name.clone());
    job.scheduled_for = Some(run.slot);
    job.pending_timeout_seconds = Some(run.pending_timeout.as_secs());
    if run.schedule.drill_to_now {
        job.point_in_time = Some(PointInTime::default());
    }
    Ok(job)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::tests::{sched, t};
    use super::super::{parse_cron, plan_slot, record_run};
    use super::*;
    use cairn_topo::{JobState, TabletAlias};

    fn with_drills(cron: &str) -> Schedule {
        Schedule {
            drill_cron: Some(cron.into()),
            ..sched(
                "0 2 * * *",
                "2026-01-01T00:00:00Z",
                Some("2026-01-02T02:00:00Z"),
            )
        }
    }

    #[test]
    fn a_view_has_the_drills_cron_and_runs() {
        assert_eq!(
            drill_view(&sched("0 2 * * *", "2026-01-01T00:00:00Z", None)),
            None
        );
        let mut s = with_drills("0 4 * * 0");
        s.drill_last_run = Some(t("2026-01-04T04:00:00Z"));
        s.skipped_runs = 3;
        let v = drill_view(&s).unwrap();
        assert_eq!(v.name, "nightly:drill");
        assert_eq!(v.cron, "0 4 * * 0");
        assert_eq!(v.last_run, Some(t("2026-01-04T04:00:00Z")));
        assert_eq!(
            (v.target.as_str(), v.paused, v.skipped_runs),
            ("commerce", false, 3)
        );
        assert_eq!(real_name(&v.name), ("nightly", true));
        assert_eq!(real_name("nightly"), ("nightly", false));
    }

    #[test]
    fn drills_are_due_by_their_own_cron_and_written_back() {
        let mut s = with_drills("0 4 * * *");
        let v = drill_view(&s).unwrap();
        let cron = parse_cron(&v.cron).unwrap();
        // The backup ran at 02:00; the drill never did: due at 04:00 the first day,
        // and a stretch of missed drill slots is made up by one run.
        let now = t("2026-01-05T05:00:00Z");
        let shards = vec![("commerce".to_string(), "0".to_string())];
        let plan = plan_slot(&v, &cron, now, None, shards.clone(), &[], Duration::ZERO).unwrap();
        assert_eq!(plan.slot, t("2026-01-05T04:00:00Z"));
        let mut v = v;
        record_run(&mut v, &cron, plan.slot);
        write_back(&mut s, &v);
        assert_eq!(s.drill_last_run, Some(t("2026-01-05T04:00:00Z")));
        assert_eq!(s.drill_next_run, Some(t("2026-01-06T04:00:00Z")));
        assert_eq!(
            s.last_run,
            Some(t("2026-01-02T02:00:00Z")),
            "the backups' run is kept"
        );
        let v = drill_view(&s).unwrap();
        assert!(plan_slot(&v, &cron, now, None, shards, &[], Duration::ZERO).is_none());
    }

    fn record(name: &str, secs: i64, incremental: bool) -> BackupRecord {
        let mut r: BackupRecord = serde_json::from_value(serde_json::json!({
            "name": name, "keyspace": "commerce", "shard": "0",
            "tablet_alias": "zone1-0000000101", "engine": "builtin",
            "backup_time": "2026-01-01T00:00:00Z", "position": "MariaDB/0-1-1",
            "size_bytes": 1, "complete": true,
        }))
        .unwrap();
        r.backup_time = chrono::DateTime::from_timestamp(secs, 0).unwrap();
        r.incremental = incremental;
        r
    }

    #[test]
    fn drill_job_table() {
        let s = drill_view(&with_drills("0 4 * * *")).unwrap();
        let slot = t("2026-01-05T04:00:00Z");
        let run = ScheduledRun {
            schedule: &s,
            slot,
            keyspace: "commerce",
            shard: "0",
            pending_timeout: Duration::from_secs(90),
        };
        let a = TabletAlias::new("zone1", 103).unwrap();
        let tablet = Choice::Tablet(a.clone());
        let records = vec![
            record("full-1", 1, false),
            record("full-2", 2, false),
            record("incr-3", 3, true),
        ];
        let job = drill_job(&run, &[], &records, &tablet).unwrap();
        assert_eq!(job.kind, JobKind::Drill);
        assert_eq!(job.backup_name.as_deref(), Some("full-2"));
        assert_eq!(job.tablet_alias, a);
        assert_eq!(job.schedule.as_deref(), Some("nightly:drill"));
        assert_eq!(job.scheduled_for, Some(slot));
        assert_eq!(job.pending_timeout_seconds, Some(90));
        assert_eq!(job.point_in_time, None, "a drill of the full backup alone");
        let mut to_now = with_drills("0 4 * * *");
        to_now.drill_to_now = true;
        let view = drill_view(&to_now).unwrap();
        assert!(view.drill_to_now, "the view keeps it");
        let job = drill_job(
            &ScheduledRun {
                schedule: &view,
                ..run.clone()
            },
            &[],
            &records,
            &tablet,
        )
        .unwrap();
        assert_eq!(
            job.point_in_time,
            Some(PointInTime::default()),
            "marked as `drill --to-now`"
        );

        let mut unfinished = Job::pending(JobKind::Drill, "commerce", "0", &a);
        unfinished.state = JobState::Running;
        let mut backup_running = Job::pending(JobKind::Backup, "commerce", "0", &a);
        backup_running.state = JobState::Running;
        let mut other_shard = unfinished.clone();
        other_shard.shard = "1".into();
        let mut done = unfinished.clone();
        done.state = JobState::Failed;
        let nobody = Choice::None(vec![(a.clone(), "busy with job j".into())]);
        // (what, jobs, records, choice, Ok or the error's start)
        type Case<'a> = (
            &'a str,
            Vec<Job>,
            &'a [BackupRecord],
            &'a Choice,
            Result<(), &'a str>,
        );
        let cases: Vec<Case> = vec![
            (
                "a running backup does not block a drill",
                vec![backup_running],
                &records,
                &tablet,
                Ok(()),
            ),
            (
                "finished drills and other shards do not block",
                vec![done, other_shard],
                &records,
                &tablet,
                Ok(()),
            ),
            (
                "an unfinished drill of the shard",
                vec![unfinished.clone()],
                &records,
                &tablet,
                Err("drill job"),
            ),
            (
                "nothing to drill",
                vec![],
                &records[2..],
                &tablet,
                Err("nothing to drill: it has no complete full backup"),
            ),
            (
                "no tablet",
                vec![],
                &records,
                &nobody,
                Err("no eligible tablet (zone1-0000000103: busy with job j)"),
            ),
        ];
        for (what, jobs, records, choice, want) in cases {
            let got = drill_job(&run, &jobs, records, choice);
            match (want, got) {
                (Ok(()), Ok(_)) => {}
                (Err(w), Err(b)) => assert!(b.to_string().starts_with(w), "{what}: {b}"),
                (w, g) => panic!("{what}: want {w:?}, got {g:?}"),
            }
        }
    }
}
