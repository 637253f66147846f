//! Table tests of the pure rules in [`super`].

use super::*;

fn at(s: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
        + chrono::Duration::seconds(s)
}

fn job(state: JobState, kind: JobKind, scheduled: bool, attempt: u32) -> Job {
    // From JSON, so fields added to Job later take their defaults here too.
    let mut j: Job = serde_json::from_value(serde_json::json!({
        "id": "j1", "kind": kind, "keyspace": "commerce", "shard": "0",
        "tablet_alias": "zone1-101", "state": state, "created_at": at(0),
    }))
    .unwrap();
    j.attempt = attempt;
    j.started_at = (state == JobState::Running).then(|| at(5));
    j.owner_lease = (state == JobState::Running).then_some(7);
    j.schedule = scheduled.then(|| "nightly".to_string());
    j
}

fn view(registered: bool, lease: Option<i64>) -> TabletView {
    TabletView {
        registered,
        health_lease: lease,
        health_gone_since: None,
    }
}

/// A registered tablet whose Health the coordinator saw deleted at `since`.
fn gone(since: i64) -> TabletView {
    TabletView {
        registered: true,
        health_lease: None,
        health_gone_since: Some(at(since)),
    }
}

#[derive(Debug, PartialEq)]
enum V {
    Leave,
    Fail(&'static str),
    Retry(&'static str),
}

#[test]
fn table() {
    use JobKind::{Backup, Restore};
    use JobState::{Cancelled, Failed, Pending, Running, Succeeded};
    let t = Timeouts {
        pending: Duration::from_secs(60),
        running: Duration::from_secs(3600),
        no_health_grace: Duration::from_secs(15),
        lost_health_grace: Duration::from_secs(10),
    };
    let p = RetryPolicy::default();
    // (what, job, tablet, now, expected verdict with a reason fragment)
    let rows: Vec<(&str, Job, TabletView, DateTime<Utc>, V)> = vec![
        (
            "final succeeded",
            job(Succeeded, Backup, true, 1),
            view(false, None),
            at(99999),
            V::Leave,
        ),
        (
            "final failed",
            job(Failed, Backup, true, 1),
            view(true, None),
            at(99999),
            V::Leave,
        ),
        (
            "final cancelled",
            job(Cancelled, Restore, false, 1),
            view(true, None),
            at(99999),
            V::Leave,
        ),
        (
            "unregistered tablet",
            job(Pending, Backup, true, 1),
            view(false, None),
            at(1),
            V::Retry("not registered"),
        ),
        (
            "running, same lease, in time",
            job(Running, Backup, true, 1),
            view(true, Some(7)),
            at(600),
            V::Leave,
        ),
        (
            "archiving for days: no running timeout",
            job(Running, JobKind::Archive, false, 1),
            view(true, Some(7)),
            at(10 * 86400),
            V::Leave,
        ),
        (
            "archiving, health gone past the grace: failed, not retried",
            job(Running, JobKind::Archive, false, 1),
            gone(5),
            at(16),
            V::Fail("lost its health"),
        ),
        (
            "running, health gone",
            job(Running, Backup, true, 1),
            view(true, None),
            at(10),
            V::Retry("lost its health"),
        ),
        (
            "running, health gone within the grace",
            job(Running, Backup, true, 1),
            gone(5),
            at(15),
            V::Leave,
        ),
        (
            "running, health gone past the grace",
            job(Running, Backup, true, 1),
            gone(5),
            at(16),
            V::Retry("without it for longer than the 10s grace"),
        ),
        (
            "running, health gone since the future (clock skew)",
            job(Running, Backup, true, 1),
            gone(50),
            at(16),
            V::Leave,
        ),
        (
            "running, health gone within the grace, past the timeout",
            job(Running, Backup, true, 1),
            gone(3600),
            at(3606),
            V::Retry("past the 1h timeout"),
        ),
        (
            "restore, health gone past the grace",
            job(Running, Restore, false, 1),
            gone(0),
            at(11),
            V::Fail("lost its health"),
        ),
        (
            "restore, health gone within the grace",
            job(Running, Restore, false, 1),
            gone(0),
            at(10),
            V::Leave,
        ),
        (
            "running, agent restarted",
            job(Running, Backup, true, 1),
            view(true, Some(8)),
            at(10),
            V::Retry("agent restarted"),
        ),
        (
            "running past timeout",
            job(Running, Backup, true, 1),
            view(true, Some(7)),
            at(3606),
            V::Retry("past the 1h timeout"),
        ),
        (
            "running exactly at timeout",
            job(Running, Backup, true, 1),
            view(true, Some(7)),
            at(3605),
            V::Leave,
        ),
        (
            "pending in time",
            job(Pending, Backup, true, 1),
            view(true, Some(3)),
            at(59),
            V::Leave,
        ),
        (
            "pending, no health within grace",
            job(Pending, Backup, true, 1),
            view(true, None),
            at(15),
            V::Leave,
        ),
        (
            "pending, no health past grace",
            job(Pending, Backup, true, 1),
            view(true, None),
            at(16),
            V::Retry("no health"),
        ),
        (
            "pending past timeout",
            job(Pending, Backup, true, 1),
            view(true, Some(3)),
            at(61),
            V::Retry("not taken by tablet zone1-0000000101 within 1m"),
        ),
        (
            "manual backup is not retried",
            job(Pending, Backup, false, 1),
            view(true, Some(3)),
            at(61),
            V::Fail("not taken"),
        ),
        (
            "restore is not retried",
            job(Running, Restore, false, 1),
            view(true, None),
            at(10),
            V::Fail("lost its health"),
        ),
        (
            "scheduled restore is not retried either",
            job(Running, Restore, true, 1),
            view(true, None),
            at(10),
            V::Fail("lost its health"),
        ),
        (
            "last attempt is not retried",
            job(Running, Backup, true, 3),
            view(true, None),
            at(10),
            V::Fail("attempt 3 of 3, not retried"),
        ),
    ];
    for (what, j, tv, now, want) in rows {
        let got = match judge(&j, &tv, now, &t, &p) {
            Verdict::Leave => V::Leave,
            Verdict::Fail { reason } => {
                if let V::Fail(frag) = want {
                    assert!(reason.contains(frag), "{what}: {reason}");
                    V::Fail(frag)
                } else {
                    panic!("{what}: got Fail({reason}), want {want:?}")
                }
            }
            Verdict::FailAndRetry { reason, not_before } => {
                assert_eq!(not_before, now + chrono::Duration::seconds(30), "{what}");
                if let V::Retry(frag) = want {
                    assert!(reason.contains(frag), "{what}: {reason}");
                    V::Retry(frag)
                } else {
                    panic!("{what}: got Retry({reason}), want {want:?}")
                }
            }
        };
        assert_eq!(got, want, "{what}");
    }
}

#[test]
fn running_without_owner_lease_fails_only_when_health_is_gone() {
    let mut j = job(JobState::Running, JobKind::Backup, true, 1);
    j.owner_lease = None;
    let (t, p) = (Timeouts::default(), RetryPolicy::default());
    assert_eq!(
        judge(&j, &view(true, Some(99)), at(10), &t, &p),
        Verdict::Leave
    );
    assert!(matches!(
        judge(&j, &view(true, None), at(10), &t, &p),
        Verdict::FailAndRetry { .. }
    ));
}

#[test]
fn the_jobs_own_pending_timeout_wins() {
    let mut j = job(JobState::Pending, JobKind::Backup, false, 1);
    j.pending_timeout_seconds = Some(5);
    let (t, p) = (Timeouts::default(), RetryPolicy::default());
    assert_eq!(
        judge(&j, &view(true, Some(1)), at(5), &t, &p),
        Verdict::Leave
    );
    assert!(matches!(
        judge(&j, &view(true, Some(1)), at(6), &t, &p),
        Verdict::Fail { .. }
    ));
}

#[test]
fn backoff_doubles_and_is_capped() {
    let p = RetryPolicy {
        max_attempts: 10,
        base_delay: Duration::from_secs(30),
        max_delay: Duration::from_secs(300),
    };
    let got: Vec<u64> = (1..=6).map(|a| backoff(a, &p).as_secs()).collect();
    assert_eq!(got, vec![30, 60, 120, 240, 300, 300]);
    assert_eq!(backoff(0, &p), Duration::from_secs(30));
    assert_eq!(backoff(u32::MAX, &p), Duration::from_secs(300));
    let mut j = job(JobState::Pending, JobKind::Backup, true, 2);
    let v = judge(&j, &view(false, None), at(0), &Timeouts::default(), &p);
    assert_eq!(
        v,
        Verdict::FailAndRetry {
            reason: "tablet zone1-0000000101 is not registered".into(),
            not_before: at(60)
        }
    );
    j.attempt = 10;
    assert!(!retryable(&j, &p));
}

fn failed(id: &str, attempt: u32, finished: Option<i64>) -> Job {
    let mut j = job(JobState::Failed, JobKind::Backup, true, attempt);
    j.id = id.into();
    j.finished_at = finished.map(at);
    j
}

#[test]
fn due_retries_table() {
    let p = RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_secs(30),
        max_delay: Duration::from_secs(600),
    };
    let retry_of = |id: &str| {
        let mut j = job(JobState::Pending, JobKind::Backup, true, 2);
        j.id = format!("{id}-retry");
        j.retry_of = Some(id.into());
        j
    };
    let manual = {
        let mut j = failed("manual", 1, Some(0));
        j.schedule = None;
        j
    };
    let restore = {
        let mut j = failed("restore", 1, Some(0));
        j.kind = JobKind::Restore;
        j
    };
    // (what, jobs, now, ids due)
    type Row<'a> = (&'a str, Vec<Job>, DateTime<Utc>, Vec<&'a str>);
    let rows: Vec<Row> = vec![
        (
            "backoff not passed",
            vec![failed("a", 1, Some(0))],
            at(29),
            vec![],
        ),
        (
            "backoff passed (30s after attempt 1)",
            vec![failed("a", 1, Some(0))],
            at(30),
            vec!["a"],
        ),
        (
            "attempt 2 waits twice as long",
            vec![failed("a", 2, Some(0))],
            at(59),
            vec![],
        ),
        (
            "attempt 2 after 60s",
            vec![failed("a", 2, Some(0))],
            at(60),
            vec!["a"],
        ),
        (
            "no finish time: counted from creation",
            vec![failed("a", 1, None)],
            at(30),
            vec!["a"],
        ),
        (
            "attempts used up",
            vec![failed("a", 3, Some(0))],
            at(10_000),
            vec![],
        ),
        (
            "already retried",
            vec![failed("a", 1, Some(0)), retry_of("a")],
            at(100),
            vec![],
        ),
        (
            "manual backups and restores never move",
            vec![manual, restore],
            at(100),
            vec![],
        ),
        (
            "only failed jobs",
            vec![
                job(JobState::Succeeded, JobKind::Backup, true, 1),
                job(JobState::Cancelled, JobKind::Backup, true, 1),
                job(JobState::Running, JobKind::Backup, true, 1),
            ],
            at(10_000),
            vec![],
        ),
        (
            "several, in order",
            vec![
                failed("a", 1, Some(0)),
                failed("b", 1, Some(50)),
                failed("c", 2, Some(0)),
            ],
            at(70),
            vec!["a", "c"],
        ),
    ];
    for (what, jobs, now, want) in rows {
        let got: Vec<&str> = due_retries(&jobs, &p, now)
            .iter()
            .map(|j| j.id.as_str())
            .collect();
        assert_eq!(got, want, "{what}");
    }
}

fn tablet(uid: u32, eligible: bool) -> TabletInfo {
    use cairn_topo::{Health, Tablet, TabletAlias, TabletType, Versioned};
    TabletInfo {
        tablet: Versioned {
            value: Tablet {
                alias: TabletAlias::new("zone1", uid).unwrap(),
                hostname: "h".into(),
                mysql_host: "h".into(),
                mysql_port: 1,
                port: 2,
                keyspace: "commerce".into(),
                shard: "0".into(),
                tablet_type: TabletType::Replica,
                base_type: TabletType::Replica,
                flavor: "MariaDB".into(),
                tablet_dir: String::new(),
                started_at: at(0),
            },
            version: 1,
        },
        health: Some(Health {
            mysqld_up: eligible,
            replication_io_running: true,
            replication_sql_running: true,
            replication_lag_seconds: Some(u64::from(uid % 10)),
            gtid_position: Some("0-1-1".into()),
            serving: true,
            ..Health::default()
        }),
    }
}

#[test]
fn plan_retry_table() {
    let select = SelectOptions {
        allow_primary: false,
        max_lag_seconds: 30,
    };
    let alias = |uid| cairn_topo::TabletAlias::new("zone1", uid).unwrap();
    // The failed job ran on 101; earlier attempts excluded 102.
    let mut f = failed("f", 2, Some(0));
    f.tablet_alias = alias(101);
    f.excluded_tablets = vec![alias(102)];
    f.scheduled_for = Some(at(-60));
    f.engine = Some(cairn_topo::BackupMethod::Builtin);
    f.concurrency = Some(4);
    f.pending_timeout_seconds = Some(90);
    // (what, tablets, expected tablet uid or None for Later)
    let rows: Vec<(&str, Vec<TabletInfo>, Option<u32>)> = vec![
        (
            "another eligible tablet wins over the excluded ones (even with less lag)",
            vec![tablet(101, true), tablet(102, true), tablet(105, true)],
            Some(105),
        ),
        (
            "nobody else eligible: the same tablet again when healthy",
            vec![tablet(101, true), tablet(103, false)],
            Some(101),
        ),
        (
            "nobody else eligible: an excluded one when it is the best healthy",
            vec![tablet(101, false), tablet(102, true)],
            Some(102),
        ),
        (
            "no eligible tablet at all: later",
            vec![tablet(101, false)],
            None,
        ),
        ("no tablets: later", vec![], None),
    ];
    for (what, tablets, want) in rows {
        match (plan_retry(&f, &tablets, &select), want) {
            (RetryPlan::Later, None) => {}
            (RetryPlan::Create(j), Some(uid)) => {
                assert_eq!(j.tablet_alias, alias(uid), "{what}");
                assert_eq!(j.state, JobState::Pending, "{what}");
                assert_eq!(j.attempt, 3, "{what}");
                assert_eq!(j.retry_of.as_deref(), Some("f"), "{what}");
                assert_eq!(j.excluded_tablets, vec![alias(102), alias(101)], "{what}");
                assert_eq!(
                    (j.keyspace.as_str(), j.shard.as_str(), j.kind),
                    ("commerce", "0", JobKind::Backup),
                    "{what}"
                );
                assert_eq!(j.schedule, f.schedule, "{what}");
                assert_eq!(j.scheduled_for, f.scheduled_for, "{what}");
                assert_eq!(j.engine, f.engine, "{what}");
                assert_eq!(j.concurrency, f.concurrency, "{what}");
                assert_eq!(
                    j.pending_timeout_seconds, f.pending_timeout_seconds,
                    "{what}"
                );
                assert_ne!(j.id, f.id, "{what}");
            }
            (got, want) => panic!("{what}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn expired_jobs_table() {
    let day = Duration::from_secs(86_400);
    let v = |id: &str, state: JobState, finished: Option<i64>, version: i64| {
        let mut j = job(state, JobKind::Backup, true, 1);
        j.id = id.into();
        j.finished_at = finished.map(at);
        Versioned { value: j, version }
    };
    let now = at(0) + chrono::Duration::days(10);
    let days_ago = |d: i64| 10 * 86_400 - d * 86_400;
    let jobs = vec![
        v("old-succeeded", JobState::Succeeded, Some(days_ago(2)), 3),
        v("old-failed", JobState::Failed, Some(days_ago(5)), 4),
        v("old-cancelled", JobState::Cancelled, Some(days_ago(9)), 5),
        v(
            "exactly-the-window",
            JobState::Succeeded,
            Some(days_ago(1)),
            6,
        ),
        v("recent", JobState::Succeeded, Some(days_ago(0)), 7),
        v("final-without-finish-time", JobState::Failed, None, 8),
        // Not final: kept however old (the supervisor deals with it).
        v("old-running", JobState::Running, Some(days_ago(9)), 9),
        v("old-pending", JobState::Pending, Some(days_ago(9)), 10),
    ];
    let h = |d: Duration| JobHistory {
        finished: d,
        short: d,
    };
    let got = expired_jobs(&jobs, now, &h(day));
    assert_eq!(
        got,
        vec![
            ("old-succeeded".to_string(), 3),
            ("old-failed".to_string(), 4),
            ("old-cancelled".to_string(), 5),
        ]
    );
    assert!(expired_jobs(&jobs, now, &h(Duration::from_secs(30 * 86_400))).is_empty());
    assert!(expired_jobs(&jobs, now, &h(Duration::MAX)).is_empty());
}

#[test]
fn cancelled_and_never_started_manual_jobs_have_the_short_history() {
    let hour = 3600;
    let now = at(100 * hour);
    let history = JobHistory {
        finished: Duration::from_secs(48 * 3600),
        short: Duration::from_secs(6 * 3600),
    };
    // (what, state, scheduled, started, finished hours ago, short-lived, expired)
    let rows = [
        (
            "cancelled, old",
            JobState::Cancelled,
            true,
            false,
            7,
            true,
            true,
        ),
        (
            "cancelled, recent",
            JobState::Cancelled,
            false,
            false,
            5,
            true,
            false,
        ),
        (
            "cancelled after it started",
            JobState::Cancelled,
            false,
            true,
            7,
            true,
            true,
        ),
        (
            "manual, failed before starting",
            JobState::Failed,
            false,
            false,
            7,
            true,
            true,
        ),
        (
            "manual, failed before starting, recent",
            JobState::Failed,
            false,
            false,
            5,
            true,
            false,
        ),
        (
            "manual, failed while running",
            JobState::Failed,
            false,
            true,
            7,
            false,
            false,
        ),
        (
            "scheduled, not taken",
            JobState::Failed,
            true,
            false,
            7,
            false,
            false,
        ),
        (
            "scheduled, not taken, past the full window",
            JobState::Failed,
            true,
            false,
            49,
            false,
            true,
        ),
        (
            "succeeded",
            JobState::Succeeded,
            false,
            true,
            7,
            false,
            false,
        ),
        (
            "succeeded, past the full window",
            JobState::Succeeded,
            true,
            true,
            49,
            false,
            true,
        ),
    ];
    for (what, state, scheduled, started, ago, short, expired) in rows {
        let mut j = job(state, JobKind::Backup, scheduled, 1);
        j.started_at = started.then(|| at(0));
        j.finished_at = Some(now - chrono::Duration::hours(ago));
        assert_eq!(short_lived(&j), short, "{what}");
        let v = [Versioned {
            value: j,
            version: 1,
        }];
        assert_eq!(
            !expired_jobs(&v, now, &history).is_empty(),
            expired,
            "{what}"
        );
    }
    // The short window never outlasts the full one.
    let mut j = job(JobState::Cancelled, JobKind::Backup, false, 1);
    j.finished_at = Some(now - chrono::Duration::hours(3));
    let v = [Versioned {
        value: j,
        version: 1,
    }];
    let longer_short = JobHistory {
        finished: Duration::from_secs(2 * 3600),
        short: Duration::from_secs(24 * 3600),
    };
    assert_eq!(expired_jobs(&v, now, &longer_short).len(), 1);
}
