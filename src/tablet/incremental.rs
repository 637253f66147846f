//! The agent's incremental backup job (`backup --incremental-from-pos`): taken
//! and fenced like any backup job ([`super::jobs`]), but mysqld keeps serving and
//! the tablet keeps its type: only the binary log is rotated and the closed files
//! are copied ([`crate::backup::incremental`]), as Vitess does. So there is no
//! bracket to close: nothing about the tablet changes.
//!
//! Nothing new since the position succeeds with a message and no backup; the
//! stored backup is catalogued (its record says `incremental`, so it is never a
//! shard's latest backup nor a seed).
//!
//! Calls `backup` (incremental, catalog), the agent's jobs room (recording the
//! backup), `mysql` (through the agent's mysqld) and `cairn-topo`.

use std::sync::Arc;

use cairn_topo::Job;

use super::agent::{Agent, JobDone, JobRun};
use crate::backup::catalog::complete_record;
use crate::backup::engine::Progress;
use crate::backup::incremental::{self, parse_from_pos, Outcome};

impl Agent {
    /// An incremental backup job from `from` (the job's `incremental_from_pos`).
    pub(super) async fn run_incremental(
        self: &Arc<Self>,
        job: &Job,
        run: &JobRun,
        progress: Arc<Progress>,
        from: &str,
    ) -> Result<JobDone, (anyhow::Error, Option<String>)> {
        let from = parse_from_pos(from)
            .map_err(|e| (anyhow::anyhow!("invalid incremental start: {e}"), None))?;
        let reporter = self.spawn_progress_reporter(job.id.clone(), progress.clone());
        let params = self.backup_params(job, progress, run.cancel.clone());
        let name = params.name.clone();
        let body = async {
            let server = {
                let mysqld = self.mysqld.lock().await;
                incremental::read_server_binlogs(&mysqld).await?
            };
            incremental::backup(server, self.storage()?, &params, &from).await
        };
        let result = body.await;
        reporter.abort();
        let manifest = match result {
            Err(e) => return Err((e.context("incremental backup"), Some(name))),
            Ok(Outcome::Empty(message)) => {
                tracing::info!(%message, "incremental backup: nothing new");
                return Ok(JobDone {
                    backup_name: None,
                    message: Some(message),
                });
            }
            Ok(Outcome::Stored(m)) => m,
        };
        self.metrics.job_bytes.inc_by(manifest.total_size);
        let record = complete_record(
            &manifest.keyspace,
            &manifest.shard,
            &manifest,
            manifest.stored_size,
        );
        if let Err(e) = self.record_backup(&record).await {
            return Err((
                e.context("backup stored but its record could not be written to topo"),
                Some(name),
            ));
        }
        Ok(JobDone::named(manifest.backup_name))
    }
}
