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
            "running, health gone",
            job(Running, Backup, true, 1),
            view(true, None),
            at(10),
            V::Retry("lost its health"),
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
