//! The agent's job runner: takes the backup and restore jobs addressed to its tablet
//! (PENDING → RUNNING by CAS, tied to its lease), runs them one at a time, reports
//! progress (throttled, see [`super::publish`]), and finishes them SUCCEEDED or
//! FAILED with the reason and the final progress.
//!
//! Whatever happens inside a job, the tablet ends it with mysqld up, replication
//! resumed and its type back: the restoration runs after the job's body, not in it.
//!
//! Calls `backup` (engines, storage), the agent's role room, `mysql` (through the
//! agent's mysqld), `common` and `cairn-topo`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use cairn_topo::RecordEvent;
use cairn_topo::{BackupRecord, Job, JobKind, JobState, TabletType, TopoError, Versioned};
use chrono::{DateTime, Utc};
use tracing::Instrument;

use super::agent::Agent;
use super::agent::Role;
use super::publish::should_publish;
use crate::backup::catalog::{complete_record, Catalog};
use crate::backup::engine::{self, Progress};
use crate::common::lock;
use crate::common::wait::poll_until;

/// Why a PENDING job is too old to start, if it is: pending for longer than the
/// `pending_timeout_seconds` it carries. Whoever created it has given up on it (or is
/// about to fail it as not taken); run now, it would back up or restore at a moment
/// nobody asked for. A job without a timeout is never too old here.
pub(super) fn stale_pending_reason(job: &Job, now: DateTime<Utc>) -> Option<String> {
    let limit = job.pending_timeout_seconds?;
    let pending_for = now.signed_duration_since(job.created_at).num_seconds();
    (pending_for > 0 && pending_for as u64 > limit).then(|| {
        format!(
            "not started: the job was PENDING for {pending_for}s, longer than its pending \
             timeout of {limit}s (the tablet's agent was not running when it was created); \
             an agent does not run a job that late"
        )
    })
}

impl Agent {
    /// Jobs of this tablet left RUNNING by a previous agent (it died): failed now, so
    /// nobody waits forever and the coordinator can retry elsewhere.
    pub(super) async fn fail_orphaned_jobs(&self) {
        let jobs = match self.topo.list_jobs().await {
            Ok(j) => j,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list jobs to clean up after a restart");
                return;
            }
        };
        let my_lease = self.lease.id();
        for j in jobs {
            let v = &j.value;
            if v.tablet_alias != self.cfg.alias
                || v.state != JobState::Running
                || v.owner_lease == Some(my_lease)
            {
                continue;
            }
            tracing::warn!(job = %v.id, "failing a job the previous agent left running");
            let _ = self
                .finish_job(
                    &v.id,
                    Err("the tablet's agent restarted while running the job".into()),
                    None,
                    None,
                )
                .await;
        }
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

    /// Takes a pending job of ours, or refuses it when busy.
    async fn consider(self: &Arc<Self>, job: Versioned<Job>) {
        let j = &job.value;
        if j.tablet_alias != self.cfg.alias || j.state != JobState::Pending {
            return;
        }
        if let Some(why) = stale_pending_reason(j, Utc::now()) {
            tracing::warn!(job = %j.id, reason = %why, "failing a job too old to start");
            if let Err(e) = self.finish_job(&j.id, Err(why), None, None).await {
                tracing::warn!(job = %j.id, error = %e, "cannot fail the stale job");
            }
            return;
        }
        let busy = lock(&self.status).busy_job.clone();
        if let Some(other) = busy {
            if other != j.id {
                let _ = self
                    .finish_job(&j.id, Err(format!("tablet is busy with job {other}; a backup or restore is already running")), None, None)
                    .await;
            }
            return;
        }
        // Take it: PENDING → RUNNING, only if nobody changed it meanwhile. A backup
        // is named in the same write, so from the moment anything of it can be in
        // storage a RUNNING job names it and retention leaves it alone.
        let mut taken = j.clone();
        taken.state = JobState::Running;
        taken.started_at = Some(Utc::now());
        taken.owner_lease = Some(self.lease.id());
        if taken.kind == JobKind::Backup {
            taken.backup_name = Some(self.new_backup_name().0);
        }
        let key = self.topo.keys().job(&j.id);
        match self.topo.update(&key, &taken, job.version).await {
            Ok(_) => {}
            Err(e) => {
                tracing::info!(job = %j.id, error = %e, "job changed before it could be taken");
                return;
            }
        }
        lock(&self.status).busy_job = Some(taken.id.clone());
        let agent = self.clone();
        let span = tracing::info_span!("job", job = %taken.id, kind = ?taken.kind);
        tokio::spawn(
            async move {
                let id = taken.id.clone();
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
                    o = agent.run_job(&taken, progress.clone()) => o,
                    () = stop => {
                        lock(&agent.status).busy_job = None;
                        tracing::warn!(job = %id, "the agent is stopping: job abandoned; the next start fails it");
                        return;
                    }
                };
                lock(&agent.status).busy_job = None;
                // Health first, so whoever sees the job finished also sees the tablet's
                // fresh state (replicating again, not busy).
                agent.write_health().await;
                let (result, name) = match outcome {
                    Ok(name) => (Ok(()), Some(name)),
                    Err((e, name)) => (Err(format!("{e:#}")), name),
                };
                // The final figures go with the outcome: one write, whatever the
                // throttle held back.
                let last = (
                    progress.bytes_done.load(Ordering::Relaxed),
                    progress.bytes_total.load(Ordering::Relaxed),
                );
                if let Err(e) = agent.finish_job(&id, result, name, Some(last)).await {
                    tracing::error!(job = %id, error = %e, "cannot record the job's outcome");
                }
            }
            .instrument(span),
        );
    }

    /// Runs a taken job, counting its bytes in `progress`; on failure also returns
    /// the backup name if one was chosen.
    async fn run_job(
        self: &Arc<Self>,
        job: &Job,
        progress: Arc<Progress>,
    ) -> Result<String, (anyhow::Error, Option<String>)> {
        match job.kind {
            JobKind::Backup => self.run_backup(job, progress).await,
            JobKind::Restore => self.run_restore(job, progress).await.map_err(|e| (e, None)),
        }
    }

    /// Writes the job's final state, with its final progress (bytes done, total)
    /// when it ran.
    async fn finish_job(
        &self,
        id: &str,
        result: Result<(), String>,
        backup_name: Option<String>,
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
                if let Some((done, total)) = progress {
                    j.progress.bytes_done = done;
                    j.progress.bytes_total = total;
                }
                if backup_name.is_some() {
                    j.backup_name = backup_name.clone();
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
    fn spawn_progress_reporter(
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

    /// A backup job: the engine's body between the seed's bracketing steps. The
    /// bracket's closing half (mysqld up, replication, type back) always runs.
    async fn run_backup(
        self: &Arc<Self>,
        job: &Job,
        progress: Arc<Progress>,
    ) -> Result<String, (anyhow::Error, Option<String>)> {
        let original = self.tablet_type();
        if original == TabletType::Primary && !job.allow_primary {
            return Err((
                anyhow::anyhow!(
                    "tablet is PRIMARY and the job does not allow it (--allow-primary)"
                ),
                None,
            ));
        }
        if matches!(original, TabletType::Backup | TabletType::Restore) {
            return Err((anyhow::anyhow!("tablet is already in {original}"), None));
        }
        let method = job.engine.unwrap_or(self.cfg.backup.default_engine);
        let reporter = self.spawn_progress_reporter(job.id.clone(), progress.clone());
        let params = self.backup_params(job, progress.clone());
        let name = params.name.clone();
        let drains = engine::drains(method);

        let body = async {
            if drains {
                self.publish_tablet(TabletType::Backup)
                    .await
                    .context("switching to BACKUP")?;
            }
            let mut mysqld = self.mysqld.lock().await;
            self.set_role(Role::Unknown);
            let r = engine::backup(
                method,
                &mut mysqld,
                self.storage()?,
                &params,
                &self.cfg.backup,
            )
            .await;
            drop(mysqld);
            r
        };
        let result = body.await;
        reporter.abort();
        // The closing half of the bracket, whatever happened.
        let restored = self.return_to_service(original).await;
        let manifest = match (result, restored) {
            (Ok(m), Ok(())) => m,
            (Ok(m), Err(e)) => {
                // The backup itself is complete and usable; report the tablet trouble.
                tracing::error!(error = %format!("{e:#}"), "backup done but the tablet did not return to service cleanly");
                m
            }
            (Err(e), Ok(())) => return Err((e, Some(name))),
            (Err(e), Err(e2)) => {
                return Err((
                    e.context(format!("and returning to service failed too: {e2:#}")),
                    Some(name),
                ))
            }
        };
        self.metrics.job_bytes.inc_by(manifest.total_size);
        let record = complete_record(
            &manifest.keyspace,
            &manifest.shard,
            &manifest,
            manifest.stored_size,
        );
        if let Err(e) = self.record_backup(&record).await {
            // The backup is in storage with its MANIFEST; the coordinator's reconciler
            // will add the record. Still report it.
            return Err((
                e.context("backup stored but its record could not be written to topo"),
                Some(name),
            ));
        }
        Ok(manifest.backup_name)
    }

    /// Writes the BackupRecord and moves the shard's latest backup forward.
    async fn record_backup(&self, record: &BackupRecord) -> anyhow::Result<()> {
        let catalog = Catalog::new(&self.topo, self.storage()?);
        catalog.add_record(record).await?;
        catalog
            .refresh_latest(&record.keyspace, &record.shard)
            .await
    }

    /// mysqld up, role reconciled (replication restarted), type back to `original`
    /// (or whatever the shard now says). Retries a few times: this is what keeps a
    /// failed job from leaving the tablet out of service.
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
        progress: Arc<Progress>,
    ) -> anyhow::Result<String> {
        if self.tablet_type() == TabletType::Primary {
            bail!("tablet is PRIMARY: in-place restore refused");
        }
        let reporter = self.spawn_progress_reporter(job.id.clone(), progress.clone());
        let r = self
            .restore_in_place(job.backup_timestamp.as_deref(), progress)
            .await;
        reporter.abort();
        r
    }
}

#[cfg(test)]
mod stale_tests {
    use chrono::Duration;

    use super::*;

    #[test]
    fn a_pending_job_older_than_its_timeout_is_not_started() {
        let alias = "zone1-101".parse().unwrap();
        let now = Utc::now();
        let cases = [
            (None, 10_000, false),
            (Some(60), 0, false),
            (Some(60), 59, false),
            (Some(60), 60, false),
            (Some(60), 61, true),
            (Some(0), 1, true),
            (Some(60), -30, false), // created "in the future" (clock skew)
            (Some(86_400), 3_600, false),
        ];
        for (timeout, age, stale) in cases {
            let mut j = Job::pending(JobKind::Backup, "ks", "0", &alias);
            j.pending_timeout_seconds = timeout;
            j.created_at = now - Duration::seconds(age);
            let got = stale_pending_reason(&j, now);
            assert_eq!(
                got.is_some(),
                stale,
                "timeout {timeout:?} age {age}s: {got:?}"
            );
            if let Some(why) = got {
                assert!(why.contains(&format!("PENDING for {age}s")), "{why}");
                assert!(why.contains("pending timeout"), "{why}");
            }
        }
    }
}
