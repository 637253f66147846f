//! Job supervision as one pure decision: given a job and what the coordinator
//! observes of its tablet, leave the job alone, fail it, or fail it and retry the
//! backup elsewhere. Owns no IO: the coordinator's supervision loop gathers the
//! plain data ([`TabletView`]), calls [`judge`], writes the verdict into the job
//! (fenced) and, for a retry, writes a new job with `attempt + 1` for another
//! eligible tablet of the shard once `not_before` has passed.
//!
//! The rules, checked in this order; the first that applies decides:
//! 1. A final job (SUCCEEDED, FAILED, CANCELLED) is left alone.
//! 2. Its tablet is not registered: failed.
//! 3. RUNNING, and the job records the lease of the agent that took it
//!    (`owner_lease`): failed when the tablet's Health is gone or now hangs on a
//!    different lease (the agent died, or restarted and cannot resume the job).
//!    Without `owner_lease` (older agents): failed when Health is gone.
//! 4. RUNNING longer than the running timeout (since `started_at`): failed.
//! 5. PENDING while the tablet has no Health, for longer than the no-health
//!    grace (an agent restarting re-registers within it): failed.
//! 6. PENDING longer than its pending timeout (the job's own
//!    `pending_timeout_seconds`, else the default): failed ("not taken").
//! 7. Otherwise: left alone.
//!
//! A failed job is retried only when it is a backup written by a schedule (a
//! manual `cairn backup ALIAS` names its tablet, and a restore is of one tablet;
//! neither may move) and it has not used up [`RetryPolicy::max_attempts`]. The
//! retry waits an exponential, capped backoff from the attempt number.

use std::time::Duration;

use cairn_topo::{Job, JobKind, JobState};
use chrono::{DateTime, Utc};

/// What the coordinator observes of the job's tablet, as plain data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TabletView {
    /// The tablet's registration (`Tablet` record) exists; a job for an unknown
    /// tablet can never run.
    pub registered: bool,
    /// The lease the tablet's `Health` key is attached to; `None` when Health is
    /// absent (the agent is down). Compared with the job's `owner_lease`.
    pub health_lease: Option<i64>,
}

/// How long jobs may stay in each state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// PENDING longer than this (when the job carries no timeout of its own) means
    /// no agent took it.
    pub pending: Duration,
    /// RUNNING longer than this means the job hangs (a backup of a large shard
    /// needs hours; this is the outer bound).
    pub running: Duration,
    /// A PENDING job's tablet may be without Health this long (an agent
    /// restarting) before the job is failed.
    pub no_health_grace: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            pending: Duration::from_secs(60),
            running: Duration::from_secs(12 * 3600),
            no_health_grace: Duration::from_secs(15),
        }
    }
}

/// Retries of failed scheduled backups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; a job at this attempt is not retried.
    pub max_attempts: u32,
    /// Wait before the second attempt; doubled for each further one.
    pub base_delay: Duration,
    /// The wait never exceeds this.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base_delay: Duration::from_secs(30),
            max_delay: Duration::from_secs(600),
        }
    }
}

/// What to do with a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing: it is progressing, or already final.
    Leave,
    /// Mark it FAILED with this reason; no retry.
    Fail {
        /// Why, written into the job's `error`.
        reason: String,
    },
    /// Mark it FAILED with this reason, and write attempt `job.attempt + 1` for
    /// another eligible tablet of the shard, not before the given time.
    FailAndRetry {
        /// Why, written into the job's `error`.
        reason: String,
        /// The retry waits until then (backoff).
        not_before: DateTime<Utc>,
    },
}

/// The wait before the attempt after `attempt` (1-based):
/// `base_delay * 2^(attempt-1)`, capped at `max_delay`.
pub fn backoff(attempt: u32, policy: &RetryPolicy) -> Duration {
    let exp = attempt.saturating_sub(1).min(30);
    policy
        .base_delay
        .checked_mul(1u32 << exp)
        .unwrap_or(policy.max_delay)
        .min(policy.max_delay)
}

/// Whether a failed job may be retried on another tablet: a scheduled backup that
/// has attempts left.
pub fn retryable(job: &Job, policy: &RetryPolicy) -> bool {
    job.kind == JobKind::Backup && job.schedule.is_some() && job.attempt < policy.max_attempts
}

fn since(now: DateTime<Utc>, t: DateTime<Utc>) -> Duration {
    (now - t).to_std().unwrap_or(Duration::ZERO)
}

fn secs(d: Duration) -> String {
    crate::coordinator::retention::human(d)
}

/// Judges one job; see the module documentation for the rules.
pub fn judge(
    job: &Job,
    tablet: &TabletView,
    now: DateTime<Utc>,
    timeouts: &Timeouts,
    policy: &RetryPolicy,
) -> Verdict {
    let Some(reason) = failure(job, tablet, now, timeouts) else {
        return Verdict::Leave;
    };
    if retryable(job, policy) {
        let wait = backoff(job.attempt, policy);
        let not_before = now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX);
        Verdict::FailAndRetry { reason, not_before }
    } else if job.kind == JobKind::Backup && job.schedule.is_some() {
        Verdict::Fail {
            reason: format!(
                "{reason} (attempt {} of {}, not retried)",
                job.attempt, policy.max_attempts
            ),
        }
    } else {
        Verdict::Fail { reason }
    }
}

/// Why the job has failed, or `None` while it may still succeed.
fn failure(job: &Job, tablet: &TabletView, now: DateTime<Utc>, t: &Timeouts) -> Option<String> {
    let alias = &job.tablet_alias;
    match job.state {
        JobState::Succeeded | JobState::Failed | JobState::Cancelled => None,
        _ if !tablet.registered => Some(format!("tablet {alias} is not registered")),
        JobState::Running => {
            match (job.owner_lease, tablet.health_lease) {
                (_, None) => {
                    return Some(format!(
                        "tablet {alias} lost its health while running the job (agent down)"
                    ))
                }
                (Some(owner), Some(current)) if owner != current => {
                    return Some(format!(
                        "the agent of tablet {alias} that took the job (lease {owner:x}) is gone; \
                         its health is now under lease {current:x} (agent restarted)"
                    ))
                }
                _ => {}
            }
            let running_for = since(now, job.started_at.unwrap_or(job.created_at));
            (running_for > t.running).then(|| {
                format!(
                    "running for {} on tablet {alias}, past the {} timeout",
                    secs(running_for),
                    secs(t.running)
                )
            })
        }
        JobState::Pending => {
            let pending_for = since(now, job.created_at);
            if tablet.health_lease.is_none() && pending_for > t.no_health_grace {
                return Some(format!(
                    "tablet {alias} has no health (agent down); the job was not taken"
                ));
            }
            let limit = job
                .pending_timeout_seconds
                .map_or(t.pending, Duration::from_secs);
            (pending_for > limit).then(|| {
                format!(
                    "not taken by tablet {alias} within {} (pending for {})",
                    secs(limit),
                    secs(pending_for)
                )
            })
        }
    }
}

#[cfg(test)]
mod tests {
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
}
