//! The backup job of the agent's job runner ([`super`]): the engine's body
//! between the seed's bracketing steps, and the record it leaves in the catalog.
//! Split from the runner to keep each file readable; same room, same calls.

use super::*;

impl Agent {
    /// A backup job: the engine's body between the seed's bracketing steps. The
    /// bracket's closing half (mysqld up, replication, type back) always runs.
    pub(super) async fn run_backup(
        self: &Arc<Self>,
        job: &Job,
        run: &JobRun,
        progress: Arc<Progress>,
    ) -> Result<JobDone, (anyhow::Error, Option<String>)> {
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
        if let Some(from) = job.incremental_from_pos.as_deref() {
            // Binary logs only: mysqld keeps serving, the type stays.
            return self.run_incremental(job, run, progress, from).await;
        }
        let method = job.engine.unwrap_or(self.cfg.backup.default_engine);
        // Data the engine would miss (a symlinked database, a DATA DIRECTORY table)
        // is refused here, with the tablet still serving and mysqld untouched.
        let data_dir = self.mysqld.lock().await.data_dir();
        let checked =
            tokio::task::spawn_blocking(move || engine::check_before_backup(method, &data_dir))
                .await
                .map_err(|e| anyhow::anyhow!("checking the data directory: {e}"))
                .and_then(|r| r);
        if let Err(e) = checked {
            return Err((e.context(format!("{method} backup refused")), None));
        }
        let reporter = self.spawn_progress_reporter(job.id.clone(), progress.clone());
        let params = self.backup_params(job, progress.clone(), run.cancel.clone());
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
        Ok(JobDone::named(manifest.backup_name))
    }

    /// Writes the BackupRecord and moves the shard's latest backup forward.
    pub(in crate::tablet) async fn record_backup(
        &self,
        record: &BackupRecord,
    ) -> anyhow::Result<()> {
        let catalog = Catalog::new(&self.topo, self.storage()?);
        catalog.add_record(record).await?;
        catalog
            .refresh_latest(&record.keyspace, &record.shard)
            .await
    }
}
