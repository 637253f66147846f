//! The job history pass of the leader loop: deletes the finished jobs
//! [`supervise::expired_jobs`] picks, so the jobs prefix does not grow without
//! bound (a daily keyspace-wide run adds a job per shard; CANCELLED jobs and
//! manual jobs that never started go sooner). Each delete is fenced
//! and conditional on the job's version, so a job that changed is kept.
//!
//! May call: the pure rule in `supervise`, `cairn-topo` (fenced deletes).

use cairn_topo::{Fence, TopoError};
use chrono::{DateTime, Utc};

use super::shared::Shared;
use super::supervise;

/// Deletes finished jobs older than their job history window (`--job-history`;
/// `--cancelled-job-history` for CANCELLED jobs and manual jobs that never started).
pub(super) async fn forget_old_jobs(
    shared: &Shared,
    fence: &Fence,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let old = {
        let s = shared.cache.inner.read().await;
        let history = supervise::JobHistory {
            finished: shared.cfg.job_history,
            short: shared.cfg.cancelled_job_history,
        };
        supervise::expired_jobs(s.jobs.values(), now, &history)
    };
    for (id, version) in old {
        let deleted = shared
            .topo
            .fenced(fence)
            .delete(&shared.topo.keys().job(&id), Some(version))
            .await;
        gone_or_changed_is_fine(deleted)?;
    }
    Ok(())
}

/// A conditional delete whose key is already gone, or changed since it was read,
/// has nothing left to do: both are success here.
fn gone_or_changed_is_fine(r: Result<(), TopoError>) -> Result<(), TopoError> {
    match r {
        Ok(()) | Err(TopoError::NoNode(_)) | Err(TopoError::BadVersion(_)) => Ok(()),
        Err(e) => Err(e),
    }
}
