//! The agent's job runner: takes the backup, restore and drill jobs addressed to its tablet
//! (PENDING → RUNNING by CAS, tied to its lease), runs them one at a time, reports
//! progress (throttled, see [`super::publish`]), and finishes them SUCCEEDED or
//! FAILED with the reason and the final progress.
//!
//! Whatever happens inside a job, the tablet ends it with mysqld up, replication
//! resumed and its type back: the restoration runs after the job's body, not in it.
//!
//! A job runs only while the agent holds the lease it was claimed under, and only
//! while its record is not final ([`super::fence`]): losing the lease (cut off from
//! etcd) or seeing the job failed by someone else stops it, its tools are killed,
//! and the tablet returns to service as after any failed job (mysqld at once; the
//! type and replication, which need etcd, once etcd answers). A claim whose write
//! reported an error is read back before it is given up. The outcome is written
//! until etcd takes it.
//!
//! Calls `backup` (engines, storage), the agent's role and fence rooms, `mysql`
//! (through the agent's mysqld), `common` and `cairn-topo`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use cairn_topo::RecordEvent;
use cairn_topo::{BackupRecord, Job, JobKind, JobState, TabletType, TopoError, Versioned};
use chrono::Utc;
use tracing::Instrument;

use super::agent::Role;
use super::agent::{Agent, JobDone, JobRun};
#[cfg(test)]
use super::fence::AGENT_RESTARTED;
use super::fence::{self, claim_is_ours, is_orphan, stale_pending_reason, RETRY_MAX};
use super::publish::should_publish;
use crate::backup::catalog::{complete_record, Catalog};
use crate::backup::engine::{self, Progress};
use crate::backup::manifest::Manifest;
use crate::backup::storage::{BackupInfo, BackupState, StorageResult, StorageResultExt};
use crate::common::lock;
use crate::common::wait::poll_until;

/// The error a job is finished with: the engine's, after the reason the job was
/// stopped for, if it was. Pure.
pub(super) fn job_error(e: &anyhow::Error, stopped_for: Option<&str>) -> String {
    match stopped_for {
        Some(why) => format!("{why}: {e:#}"),
        None => format!("{e:#}"),
    }
}

/// What a restarted agent makes of the backup a RUNNING job of the previous agent
/// names, from reading its MANIFEST: complete (restorable) is the job's finished
/// backup (`Ok`, to be catalogued); absent is an incomplete backup, never
/// restored; unreadable is kept and never restored. Both fail the job, saying so.
/// Pure.
pub(super) fn orphaned_backup_outcome(
    name: &str,
    read: StorageResult<Manifest>,
    reason: &str,
) -> Result<Manifest, String> {
    let info = BackupInfo::classify(name, read.ignore_not_found(), 0);
    match info.state {
        BackupState::Complete => info
            .manifest
            .ok_or_else(|| format!("{reason}; backup {name} has no MANIFEST")),
        BackupState::Incomplete => Err(format!(
            "{reason}; backup {name} has no MANIFEST: it is incomplete, is never \
             restored, and retention removes it after the incomplete grace"
        )),
        BackupState::Unreadable => Err(format!(
            "{reason}; backup {name} has a MANIFEST that cannot be used ({}): it is \
             kept and never restored",
            info.error.unwrap_or_default()
        )),
    }
}

impl Agent {
    /// Jobs of this tablet RUNNING under another lease and not being run
    /// ([`fence::is_orphan`]: a previous agent died, or this one lost its lease):
    /// settled now, so nobody waits forever and the coordinator can retry
    /// elsewhere: a backup job whose backup is complete in storage succeeds
    /// (catalogued); any other fails with `reason` and what is left. Run at start and whenever the lease is re-granted.
    pub(super) async fn fail_orphaned_jobs(&self, reason: &str) {
        let jobs = match self.topo.list_jobs().await {
            Ok(j) => j,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list jobs to clean up after a restart");
                return;
            }
        };
        let my_lease = self.lease.id();
        let busy = lock(&self.status).busy_job.clone();
        for j in jobs {
            let v = &j.value;
            if !is_orphan(v, &self.cfg.alias, my_lease, busy.as_deref()) {
                continue;
            }
            let result = match (v.kind, v.backup_name.as_deref()) {
                (JobKind::Backup, Some(name)) => self.settle_orphaned_backup(v, name, reason).await,
                _ => Err(reason.into()),
            };
            if result.is_err() {
                tracing::warn!(job = %v.id, %reason, "failing a job left running under another lease");
            }
            let _ = self.finish_job(&v.id, result, None, None, None).await;
        }
    }

    /// A backup job the previous agent left RUNNING: if the backup it names is
    /// complete in storage (the agent died after its MANIFEST), it is catalogued
    /// and the job succeeds; otherwise the job fails saying what is left.
    async fn settle_orphaned_backup(
        &self,
        job: &Job,
        name: &str,
        reason: &str,
    ) -> Result<(), String> {
        let storage = self
            .storage()
            .map_err(|e| format!("{reason}; backup {name} cannot be checked: {e:#}"))?;
        let read = storage.read_manifest(&job.keyspace, &job.shard, name).await;
        let manifest = orphaned_backup_outcome(name, read, reason)?;
        let record = complete_record(&job.keyspace, &job.shard, &manifest, manifest.stored_size);
        self.record_backup(&record).await.map_err(|e| {
            format!(
                "{reason}; backup {name} is complete in storage but its record could not \
                 be written ({e:#}); the coordinator's catalog reconciler adds it"
            )
        })?;
        tracing::warn!(job = %job.id, backup = %name,
            "the previous agent died after its backup was complete: catalogued it, the job succeeds");
        Ok(())
    }

    /// Watches the jobs prefix and runs the jobs addressed to this tablet. An etcd
    /// that cannot be listed is retried with backoff: the job runner never ends
    /// quietly while Health stays green.
    pub(super) async fn job_loop(self: Arc<Self>) {
        let prefix = self.topo.keys().jobs_prefix();
        let mut pause = Duration::from_millis(200);
        let (initial, mut watch) = loop {
            match self.topo.list_and_watch::<Job>(&prefix).await {
                Ok(x) => break x,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = pause.as_millis() as u64, "cannot list jobs; retrying");
                    tokio::select! {
                        _ = self.cancel.cancelled() => return,
                        _ = tokio::time::sleep(pause) => {}
                    }
                    pause = (pause * 2).min(Duration::from_secs(10));
                }
            }
        };
        for (_, j) in initial {
            self.consider(j).await;
        }
        loop {
            let ev = tokio::select! {
                _ = self.cancel.cancelled() => return,
                ev = watch.next() => ev,
            };
            match ev {
                None => return,
                Some(RecordEvent::Put { key, record }) => self.consider_decoded(&key, record).await,
                Some(RecordEvent::Delete { .. }) => {}
                Some(RecordEvent::Resync { records, .. }) => {
                    for (key, record) in records {
                        self.consider_decoded(&key, record).await;
                    }
                }
            }
        }
    }

    /// [`Self::consider`] for a record from a watch, which may not parse.
    async fn consider_decoded(
        self: &Arc<Self>,
        key: &str,
        record: Result<Versioned<Job>, TopoError>,
    ) {
        match record {
            Ok(job) => self.consider(job).await,
            Err(e) => tracing::warn!(%key, error = %e, "ignoring a job record that does not parse"),
        }
    }

    /// Takes a pending job of ours, or refuses it when busy; stops the running job
    /// when someone else made its record final.
    async fn consider(self: &Arc<Self>, job: Versioned<Job>) {
        let j = &job.value;
        if j.tablet_alias != self.cfg.alias {
            return;
        }
        if j.kind == JobKind::Archive {
            // Long-running, beside backups and restores: its own room.
            return self.consider_archive(job).await;
        }
        if j.state.is_final() {
            let run = lock(&self.status).job_run.clone();
            if let Some(run) = run.filter(|r| r.id == j.id && !r.stopped()) {
                let why = format!(
                    "the job was marked {} in etcd while it ran ({}); stopped",
                    format!("{:?}", j.state).to_uppercase(),
                    j.error.as_deref().unwrap_or("no reason given")
                );
                tracing::warn!(job = %j.id, reason = %why, "stopping the job");
                run.stop(&why);
            }
            return;
        }
        if j.state != JobState::Pending {
            return;
        }
        if let Some(why) = stale_pending_reason(j, Utc::now()) {
            tracing::warn!(job = %j.id, reason = %why, "failing a job too old to start");
            if let Err(e) = self.finish_job(&j.id, Err(why), None, None, None).await {
                tracing::warn!(job = %j.id, error = %e, "cannot fail the stale job");
            }
            return;
        }
        let busy = lock(&self.status).busy_job.clone();
        if let Some(other) = busy {
            if other != j.id {
                let _ = self
                    .finish_job(&j.id, Err(format!("tablet is busy with job {other}; a backup, restore or drill is already running")), None, None, None)
                    .await;
            }
            return;
        }
        // Take it: PENDING → RUNNING, only if nobody changed it meanwhile. A backup
        // is named in the same write, so from the moment anything of it can be in
        // storage a RUNNING job names it and retention leaves it alone.
        // The job hangs on the lease held now: losing it stops the job.
        let claimed = self.lease.state();
        let mut taken = j.clone();
        taken.state = JobState::Running;
        taken.started_at = Some(Utc::now());
        taken.owner_lease = Some(claimed.id);
        if taken.kind == JobKind::Backup {
            taken.backup_name = Some(self.new_backup_name().0);
        }
        let key = self.topo.keys().job(&j.id);
        if let Err(e) = self.topo.update(&key, &taken, job.version).await {
            // The write may have landed even so (its answer lost; the retry then
            // found the record changed, by itself): the record decides.
            match self.read_job_back(&key).await {
                Some(found) if claim_is_ours(&taken, found.as_ref()) => {
                    tracing::warn!(job = %j.id, error = %e, "the claim reported an error but was applied: the job is ours; running it");
                }
                Some(_) => {
                    tracing::info!(job = %j.id, error = %e, "job changed before it could be taken");
                    return;
                }
                None => return, // stopping
            }
        }
        let run = JobRun::new(&taken.id, claimed, &self.cancel);
        {
            let mut s = lock(&self.status);
            s.busy_job = Some(taken.id.clone());
            s.job_run = Some(run.clone());
        }
        let agent = self.clone();
        let span = tracing::info_span!("job", job = %taken.id, kind = ?taken.kind);
        tokio::spawn(
            async move {
                let id = taken.id.clone();
                if fence::lease_lost(claimed, agent.lease.state()) {
                    run.stop(fence::LEASE_LOST);
                }
                let watcher = tokio::spawn(fence::watch_lease(run.clone(), agent.lease.subscribe()));
                // On shutdown the job gets the loops' grace to end on its own (it is
                // cancelled through the agent's token), then is dropped: its backup
                // tools are killed and the mysqld handle is let go, so the agent can
                // stop mysqld. The job stays RUNNING; the next start fails it.
                let stop = async {
                    agent.cancel.cancelled().await;
                    tokio::time::sleep(super::startup::LOOPS_GRACE).await;
                };
                let progress = Arc::new(Progress::default());
                let outcome = tokio::select! {
                    o = agent.run_job(&taken, &run, progress.clone()) => o,
                    () = stop => {
                        watcher.abort();
                        agent.clear_job();
                        tracing::warn!(job = %id, "the agent is stopping: job abandoned; the next start fails it");
                        return;
                    }
                };
                watcher.abort();
                agent.clear_job();
                // Health first, so whoever sees the job finished also sees the tablet's
                // fresh state (replicating again, not busy).
                agent.write_health().await;
                let (result, name, message) = match outcome {
                    Ok(done) => (Ok(()), done.backup_name, done.message),
                    Err((e, name)) => (Err(job_error(&e, run.stop_reason().as_deref())), name, None),
                };
                // The final figures go with the outcome: one write, whatever the
                // throttle held back.
                let last = (
                    progress.bytes_done.load(Ordering::Relaxed),
                    progress.bytes_total.load(Ordering::Relaxed),
                );
                agent.record_outcome(&id, result, name, message, last).await;
            }
            .instrument(span),
        );
    }

    /// The agent runs no job any more.
    fn clear_job(&self) {
        let mut s = lock(&self.status);
        s.busy_job = None;
        s.job_run = None;
    }

    /// [`Self::finish_job`] until etcd takes it (or the agent stops: the next start
    /// fails a job left RUNNING), so a job whose agent was cut off from etcd is
    /// not left RUNNING under a lease that is gone.
    pub(super) async fn record_outcome(
        &self,
        id: &str,
        result: Result<(), String>,
        name: Option<String>,
        message: Option<String>,
        last: (u64, u64),
    ) {
        let mut pause = Duration::from_millis(500);
        loop {
            match self
                .finish_job(
                    id,
                    result.clone(),
                    name.clone(),
                    message.clone(),
                    Some(last),
                )
                .await
            {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(job = %id, error = %format!("{e:#}"), "cannot record the job's outcome yet; retrying");
                    tokio::select! {
                        _ = self.cancel.cancelled() => {
                            tracing::error!(job = %id, "stopping before the job's outcome was recorded; the next start fails it");
                            return;
                        }
                        _ = tokio::time::sleep(pause) => {}
                    }
                    pause = (pause * 2).min(RETRY_MAX);
                }
            }
        }
    }

    /// Runs a taken job, counting its bytes in `progress`; on failure also returns
    /// the backup name if one was chosen.
    async fn run_job(
        self: &Arc<Self>,
        job: &Job,
        run: &JobRun,
        progress: Arc<Progress>,
    ) -> Result<JobDone, (anyhow::Error, Option<String>)> {
        if run.stopped() {
            return Err((anyhow::anyhow!("not started"), None));
        }
        match job.kind {
            JobKind::Backup => self.run_backup(job, run, progress).await,
            JobKind::Restore => self
                .run_restore(job, run, progress)
                .await
                .map(JobDone::named)
                .map_err(|e| (e, None)),
            JobKind::Drill => self.run_drill(job, run, progress).await,
            JobKind::Archive => Err((
                anyhow::anyhow!("an ARCHIVE job is run by its own room"),
                None,
            )),
        }
    }

    /// Writes the job's final state, with its final progress (bytes done, total)
    /// when it ran. A job that succeeded with a `message` and no backup name
    /// stored nothing (an empty incremental backup): the name it was claimed
    /// with is cleared, so it names no backup.
    pub(super) async fn finish_job(
        &self,
        id: &str,
        result: Result<(), String>,
        backup_name: Option<String>,
        message: Option<String>,
        progress: Option<(u64, u64)>,
    ) -> anyhow::Result<()> {
        let key = self.topo.keys().job(id);
        self.topo
            .update_with::<Job, _>(&key, |cur| {
                let Some(mut j) = cur else { return Ok(None) };
                if j.state.is_final() {
                    return Ok(None);
                }
                j.finished_at = Some(Utc::now());
                if backup_name.is_some() {
                    j.backup_name = backup_name.clone();
                } else if result.is_ok() && message.is_some() {
                    j.backup_name = None;
                }
                if message.is_some() {
                    j.message = message.clone();
                }
                if let Some((done, total)) = progress {
                    j.progress.bytes_done = done;
                    j.progress.bytes_total = total;
                }
                match &result {
                    Ok(()) => j.state = JobState::Succeeded,
                    Err(e) => {
                        j.state = JobState::Failed;
                        j.error = Some(e.clone());
                    }
                }
                Ok(Some(j))
            })
            .await?;
        match &result {
            Ok(()) => tracing::info!(job = %id, backup = ?backup_name, "job succeeded"),
            Err(e) => tracing::warn!(job = %id, error = %e, "job failed"),
        }
        Ok(())
    }

    /// Publishes progress into the job record while the job runs: when it moved,
    /// at most once per `--job-progress-interval` ([`should_publish`]); the final
    /// figures are written with the outcome. Aborted when the job's body ends.
    pub(super) fn spawn_progress_reporter(
        self: &Arc<Self>,
        id: String,
        progress: Arc<Progress>,
    ) -> tokio::task::JoinHandle<()> {
        let agent = self.clone();
        let every = self.cfg.job_progress_interval;
        let look = every.min(Duration::from_secs(1));
        tokio::spawn(async move {
            let key = agent.topo.keys().job(&id);
            // What the record holds: a new job's progress is zero.
            let mut published: (u64, u64) = (0, 0);
            let mut last_at: Option<Instant> = None;
            loop {
                let now = (
                    progress.bytes_done.load(Ordering::Relaxed),
                    progress.bytes_total.load(Ordering::Relaxed),
                );
                let t = Instant::now();
                if should_publish(last_at, t, published != now, every) {
                    // Set before the write: a failing etcd is not retried faster.
                    last_at = Some(t);
                    let r = agent
                        .topo
                        .update_with::<Job, _>(&key, |cur| {
                            let Some(mut j) = cur else { return Ok(None) };
                            if j.state.is_final() {
                                return Ok(None);
                            }
                            j.progress.bytes_done = now.0;
                            j.progress.bytes_total = now.1;
                            Ok(Some(j))
                        })
                        .await;
                    match r {
                        Ok(_) => published = now,
                        Err(e) => tracing::debug!(error = %e, "cannot publish job progress"),
                    }
                }
                tokio::time::sleep(look).await;
            }
        })
    }

    /// mysqld up, role reconciled (replication restarted), type back to `original`
    /// (or whatever the shard now says). Retries a few times: this is what keeps a
    /// failed job from leaving the tablet out of service. Cut off from etcd (the
    /// lease is not alive), only mysqld comes back here; the health loop puts the
    /// type back and restarts replication (it needs the primary's address from
    /// etcd) once etcd answers.
    pub(super) async fn return_to_service(&self, original: TabletType) -> anyhow::Result<()> {
        let mut last = None;
        for attempt in 1..=5 {
            {
                let mut mysqld = self.mysqld.lock().await;
                if !mysqld.is_running() {
                    if let Err(e) = mysqld.start().await {
                        tracing::warn!(attempt, error = %format!("{e:#}"), "cannot restart mysqld after the job");
                        last = Some(e);
                        drop(mysqld);
                        tokio::time::sleep(Duration::from_secs(attempt)).await;
                        continue;
                    }
                }
            }
            self.set_role(Role::Unknown);
            let target = if original == TabletType::Primary {
                TabletType::Primary
            } else {
                self.cfg.base_type
            };
            if !self.lease.is_alive() {
                {
                    let mut s = lock(&self.status);
                    s.tablet_type = target;
                    s.type_unpublished = true;
                }
                tracing::warn!(tablet_type = %target, "cut off from etcd: mysqld is up; the type and replication come back once etcd answers");
                return Ok(());
            }
            if let Err(e) = self.publish_tablet(target).await {
                last = Some(e);
                tokio::time::sleep(Duration::from_secs(attempt)).await;
                continue;
            }
            match self.reconcile_now(None).await {
                Ok(()) => {
                    self.wait_replication_running(Duration::from_secs(10)).await;
                    return Ok(());
                }
                Err(e) => {
                    tracing::warn!(attempt, error = %format!("{e:#}"), "cannot resume replication after the job");
                    last = Some(e);
                    tokio::time::sleep(Duration::from_secs(attempt)).await;
                }
            }
        }
        match last {
            Some(e) => Err(e),
            None => bail!("could not return to service"),
        }
    }

    /// After a job, waits (bounded) until a replica's replication threads run, so
    /// the tablet is reported replicating when the job is reported done.
    async fn wait_replication_running(&self, limit: Duration) {
        let is_replica = matches!(lock(&self.status).role, Role::Replica { .. });
        if !is_replica {
            return;
        }
        let waited = poll_until(
            "replication after the job",
            limit,
            Duration::from_millis(100),
            None,
            || async {
                self.mysqld
                    .lock()
                    .await
                    .replication_running()
                    .await
                    .then_some(())
            },
        )
        .await;
        if waited.is_err() {
            tracing::warn!(?limit, "replication is not running yet after the job");
        }
    }

    /// An in-place restore job.
    async fn run_restore(
        self: &Arc<Self>,
        job: &Job,
        run: &JobRun,
        progress: Arc<Progress>,
    ) -> anyhow::Result<String> {
        if self.tablet_type() == TabletType::Primary {
            bail!("tablet is PRIMARY: in-place restore refused");
        }
        let reporter = self.spawn_progress_reporter(job.id.clone(), progress.clone());
        let r = match &job.point_in_time {
            Some(pit) => self.run_point_in_time_job(job, pit, progress, run).await,
            None => {
                self.restore_in_place(job.backup_timestamp.as_deref(), progress, run)
                    .await
            }
        };
        reporter.abort();
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stopped_job_says_why_before_the_engine_error() {
        let e = anyhow::anyhow!("copy cancelled").context("copying files");
        assert_eq!(job_error(&e, None), "copying files: copy cancelled");
        assert_eq!(
            job_error(&e, Some("lease lost")),
            "lease lost: copying files: copy cancelled"
        );
    }
}

#[cfg(test)]
#[path = "jobs/orphan_tests.rs"]
mod orphan_tests;

#[path = "jobs/backup_job.rs"]
mod backup_job;
