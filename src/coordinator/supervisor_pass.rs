//! The job supervisor pass of the leader loop: counts finished jobs in the
//! metrics, fails the jobs [`supervise::judge`] condemns (tablet gone, Health lost
//! past its grace as the watched picture saw it, agent restarted, timeouts), and
//! writes the retries [`supervise::due_retries`] and
//! [`supervise::plan_retry`] decide, all fenced.
//!
//! May call: the pure rules (`supervise`, `select`), `cairn-topo` (fenced writes),
//! `common`.

use std::collections::{HashMap, HashSet};

use cairn_topo::{Fence, Job, JobState};
use chrono::{DateTime, Utc};

use super::select::SelectOptions;
use super::shared::Shared;
use super::supervise::{self, RetryPlan, Verdict};

/// Fails jobs whose tablet died or that ran too long, and creates the retries of
/// failed scheduled backups (whoever failed them) on another eligible tablet once
/// their backoff passed.
pub(super) async fn supervisor_pass(
    shared: &Shared,
    fence: &Fence,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let (jobs, health_gone, registered): (
        Vec<Job>,
        HashMap<String, DateTime<Utc>>,
        HashSet<String>,
    ) = {
        let s = shared.cache.inner.read().await;
        let jobs: Vec<Job> = s.jobs.values().map(|v| v.value.clone()).collect();
        let gone = jobs
            .iter()
            .map(|j| j.tablet_alias.to_string())
            .filter_map(|a| Some((a.clone(), s.health_gone_since(&a)?)))
            .collect();
        (jobs, gone, s.tablets.keys().cloned().collect())
    };
    let timeouts = supervise::Timeouts {
        pending: shared.cfg.pending_timeout,
        running: shared.cfg.job_timeout,
        lost_health_grace: shared.cfg.lost_health_grace,
        ..supervise::Timeouts::default()
    };
    let policy = supervise::RetryPolicy {
        max_attempts: shared.cfg.max_attempts,
        base_delay: shared.cfg.retry_delay,
        ..supervise::RetryPolicy::default()
    };
    for job in &jobs {
        shared.metrics.count_outcome(job, &shared.counted);
        let alias = job.tablet_alias.to_string();
        // The cache does not see leases; an agent that restarted fails its own
        // orphaned jobs at start, so "Health present" stands for "same agent".
        let gone_since = health_gone.get(&alias).copied();
        let view = supervise::TabletView {
            registered: registered.contains(&alias),
            health_lease: gone_since.is_none().then(|| job.owner_lease.unwrap_or(0)),
            health_gone_since: gone_since,
        };
        match supervise::judge(job, &view, now, &timeouts, &policy) {
            Verdict::Leave => {}
            Verdict::Fail { reason } | Verdict::FailAndRetry { reason, .. } => {
                fail_job(shared, fence, job, &reason).await?
            }
        }
    }
    let select = SelectOptions {
        allow_primary: false,
        max_lag_seconds: shared.cfg.max_lag_seconds,
    };
    for failed in supervise::due_retries(&jobs, &policy, now) {
        let plan = {
            let s = shared.cache.inner.read().await;
            supervise::plan_retry(
                failed,
                &s.shard_tablets(&failed.keyspace, &failed.shard),
                &select,
            )
        };
        match plan {
            RetryPlan::Create(job) => {
                shared
                    .topo
                    .fenced(fence)
                    .create(&shared.topo.keys().job(&job.id), &*job, None)
                    .await?;
                tracing::info!(job = %job.id, retry_of = %failed.id, attempt = job.attempt, tablet = %job.tablet_alias, "retrying a failed backup");
            }
            RetryPlan::Later => {} // no tablet is eligible; a later pass tries again
        }
    }
    Ok(())
}

/// Marks a job FAILED with the supervisor's reason (fenced; a job that became
/// final meanwhile is left as it is).
async fn fail_job(shared: &Shared, fence: &Fence, job: &Job, reason: &str) -> anyhow::Result<()> {
    end_job(shared, fence, &job.id, JobState::Failed, reason).await?;
    tracing::warn!(job = %job.id, tablet = %job.tablet_alias, %reason, "job failed by the supervisor");
    Ok(())
}

/// Ends a job that is not final yet in `state` (FAILED or CANCELLED) with
/// `reason`, under the leader's fence; a job already final is left alone.
pub(super) async fn end_job(
    shared: &Shared,
    fence: &Fence,
    job_id: &str,
    state: JobState,
    reason: &str,
) -> anyhow::Result<()> {
    let key = shared.topo.keys().job(job_id);
    shared
        .topo
        .fenced(fence)
        .update_with::<Job, _>(&key, |cur| {
            let Some(mut j) = cur else { return Ok(None) };
            if j.state.is_final() {
                return Ok(None);
            }
            j.state = state;
            j.error = Some(reason.to_string());
            j.finished_at = Some(Utc::now());
            Ok(Some(j))
        })
        .await?;
    Ok(())
}
