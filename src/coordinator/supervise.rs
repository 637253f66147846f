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
//! 3. RUNNING, and the tablet's Health has been gone for longer than the lost-health
//!    grace: failed (the agent died, or was cut off from etcd; an agent that loses
//!    its lease stops its job, no later than etcd deletes its Health, and the grace
//!    covers the stopping, so a retry never runs beside it). Gone for less: left
//!    alone for now. RUNNING, and the job records the lease of the agent that took
//!    it (`owner_lease`) while Health now hangs on a different lease: failed (the
//!    agent restarted and cannot resume the job).
//! 4. RUNNING longer than the running timeout (since `started_at`): failed; an
//!    ARCHIVE job (long-running by design) never times out.
//! 5. PENDING while the tablet has no Health, for longer than the no-health
//!    grace (an agent restarting re-registers within it): failed.
//! 6. PENDING longer than its pending timeout (the job's own
//!    `pending_timeout_seconds`, else the default): failed ("not taken").
//! 7. Otherwise: left alone.
//!
//! A failed job is retried only when it is a backup written by a schedule (a
//! manual `cairn backup ALIAS` names its tablet, and a restore is of one tablet;
//! neither may move) and it has not used up [`RetryPolicy::max_attempts`]. The
//! retry waits an exponential, capped backoff from the attempt number
//! ([`due_retries`]); its tablet is chosen by [`plan_retry`]. Finished jobs are
//! forgotten after the job history window, CANCELLED ones and manual jobs that
//! never started after a shorter one ([`expired_jobs`]).
//!
//! May call: `select`, `cairn-topo`'s record types. The IO is in
//! `supervisor_pass.rs` and `history.rs`.

use std::collections::HashSet;
use std::time::Duration;

use cairn_topo::typed::TabletInfo;
use cairn_topo::{Job, JobKind, JobState, Versioned};
use chrono::{DateTime, Utc};

use super::select::{select_backup_tablet, Choice, SelectOptions};

/// What the coordinator observes of the job's tablet, as plain data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TabletView {
    /// The tablet's registration (`Tablet` record) exists; a job for an unknown
    /// tablet can never run.
    pub registered: bool,
    /// The lease the tablet's `Health` key is attached to; `None` when Health is
    /// absent (the agent is down). Compared with the job's `owner_lease`.
    pub health_lease: Option<i64>,
    /// Since when Health has been absent, as the coordinator saw it (`None` while
    /// it is there; absent without a time counts as gone for ever).
    pub health_gone_since: Option<DateTime<Utc>>,
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
    /// A RUNNING job's tablet may be without Health this long before the job is
    /// failed (and a retry may start): its agent, cut off from etcd, has stopped
    /// the job by then.
    pub lost_health_grace: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            pending: Duration::from_secs(60),
            running: Duration::from_secs(12 * 3600),
            no_health_grace: Duration::from_secs(15),
            lost_health_grace: Duration::from_secs(10),
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
                    let gone_for = tablet
                        .health_gone_since
                        .map_or(Duration::MAX, |t| since(now, t));
                    if gone_for > t.lost_health_grace {
                        return Some(format!(
                            "tablet {alias} lost its health while running the job (agent down or \
                             cut off from etcd) and was without it for longer than the {} grace",
                            secs(t.lost_health_grace)
                        ));
                    }
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
            // An ARCHIVE job runs until it is removed or moved: no running timeout.
            (running_for > t.running && job.kind != JobKind::Archive).then(|| {
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

/// The failed jobs whose retry is due at `now`: FAILED, [`retryable`], not yet
/// retried (no job in `jobs` names it in `retry_of`), and their [`backoff`] since
/// they failed (or were created, when the finish time is missing) has passed.
pub fn due_retries<'a>(jobs: &'a [Job], policy: &RetryPolicy, now: DateTime<Utc>) -> Vec<&'a Job> {
    let retried: HashSet<&str> = jobs.iter().filter_map(|j| j.retry_of.as_deref()).collect();
    jobs.iter()
        .filter(|job| {
            if job.state != JobState::Failed
                || retried.contains(job.id.as_str())
                || !retryable(job, policy)
            {
                return false;
            }
            let failed_at = job.finished_at.unwrap_or(job.created_at);
            let wait = chrono::Duration::from_std(backoff(job.attempt, policy))
                .unwrap_or(chrono::Duration::MAX);
            now >= failed_at + wait
        })
        .collect()
}

/// What to do about one due retry ([`plan_retry`]).
#[derive(Debug, Clone, PartialEq)]
pub enum RetryPlan {
    /// Write this job: the next attempt.
    Create(Box<Job>),
    /// No tablet of the shard is eligible now; look again on a later pass.
    Later,
}

/// The next attempt of a failed scheduled backup: on an eligible tablet of the
/// shard (`tablets`) other than the ones that failed it already (the failed job's
/// tablet and its `excluded_tablets`), else on any eligible tablet (the same one
/// may try again when it is healthy), else [`RetryPlan::Later`]. The new job
/// carries `attempt + 1`, `retry_of`, the grown exclusion list and the failed
/// job's schedule, slot, engine, concurrency and pending timeout.
pub fn plan_retry(failed: &Job, tablets: &[TabletInfo], select: &SelectOptions) -> RetryPlan {
    let mut excluded = failed.excluded_tablets.clone();
    excluded.push(failed.tablet_alias.clone());
    let others: Vec<TabletInfo> = tablets
        .iter()
        .filter(|t| !excluded.contains(&t.tablet.value.alias))
        .cloned()
        .collect();
    let alias = match select_backup_tablet(&others, select) {
        Choice::Tablet(a) => a,
        Choice::None(_) => match select_backup_tablet(tablets, select) {
            Choice::Tablet(a) => a,
            Choice::None(_) => return RetryPlan::Later,
        },
    };
    let mut job = Job::pending(JobKind::Backup, &failed.keyspace, &failed.shard, &alias);
    job.attempt = failed.attempt + 1;
    job.retry_of = Some(failed.id.clone());
    job.schedule = failed.schedule.clone();
    job.scheduled_for = failed.scheduled_for;
    job.engine = failed.engine;
    job.concurrency = failed.concurrency;
    job.excluded_tablets = excluded;
    job.pending_timeout_seconds = failed.pending_timeout_seconds;
    RetryPlan::Create(Box::new(job))
}

/// How long finished jobs are kept (`--job-history`, `--cancelled-job-history`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobHistory {
    /// Finished jobs in general.
    pub finished: Duration,
    /// The jobs [`short_lived`] picks; never longer than `finished`.
    pub short: Duration,
}

/// Whether a finished job is kept only for the short history: CANCELLED, or a
/// manual job (no schedule) that FAILED before it started (refused as busy, not
/// taken, too old to start); whoever asked was told at the time. A scheduled job
/// keeps the full history: its retry and an operator looking into a missed backup
/// need it.
pub fn short_lived(job: &Job) -> bool {
    match job.state {
        JobState::Cancelled => true,
        JobState::Failed => job.started_at.is_none() && job.schedule.is_none(),
        _ => false,
    }
}

/// The jobs the job history forgets at `now`: final, and finished longer ago than
/// their window ([`JobHistory::short`] for [`short_lived`] jobs, capped at
/// [`JobHistory::finished`], which is the window of every other job). A job
/// without a finish time is kept. Returned as (id, version), so the delete is
/// refused if the job changed meanwhile. The full window (days) is far longer than
/// any retry backoff, so a failed scheduled job is never forgotten before its
/// retry was created.
pub fn expired_jobs<'a>(
    jobs: impl IntoIterator<Item = &'a Versioned<Job>>,
    now: DateTime<Utc>,
    history: &JobHistory,
) -> Vec<(String, i64)> {
    let window = |j: &Job| {
        let d = if short_lived(j) {
            history.short.min(history.finished)
        } else {
            history.finished
        };
        chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
    };
    jobs.into_iter()
        .filter(|j| {
            j.value.state.is_final()
                && j.value
                    .finished_at
                    .is_some_and(|f| now - f > window(&j.value))
        })
        .map(|j| (j.value.id.clone(), j.version))
        .collect()
}

#[cfg(test)]
mod tests;
