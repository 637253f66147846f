//! The agent as a value: [`Agent`], the state its loops share (topo, config, the
//! managed mysqld, the reported [`Status`], the health lease, metrics), and the small
//! operations every room of the agent uses: publish the Tablet record, record an
//! error, the backup storage and the parameters of a backup job.
//!
//! The rooms that act on it are `impl Agent` blocks in sibling modules: startup
//! ([`super::startup`]), role ([`super::role`]), health ([`super::health`]), jobs
//! ([`super::jobs`]) and restores ([`super::restore`]). Calls `backup`, `mysql`,
//! `common` and `cairn-topo`.

use std::sync::{Arc, Mutex};

use anyhow::Context;
use cairn_topo::lease::LeaseHandle;
use cairn_topo::{LeaseState, Tablet, TabletAlias, TabletType, Topo};
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::config::AgentConfig;
use super::http::AgentMetrics;
use super::replication::ReplicationHistory;
use crate::backup::engine::{BackupParams, Progress};
use crate::backup::manifest::{backup_name, parse_backup_name};
use crate::backup::pipeline::CopyOptions;
use crate::backup::storage::BackupStorage;
use crate::common::lock;
use crate::mysql::mysqld::Mysqld;

/// The role the agent has put mysqld in, as far as it knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Role {
    /// Nothing configured yet (fresh start): the next reconcile decides.
    Unknown,
    /// Writable, no replication.
    Primary,
    /// Read-only, replicating from this primary.
    Replica {
        primary: TabletAlias,
        host: String,
        port: u16,
    },
    /// Read-only, no primary known yet.
    Orphan,
}

/// What the agent reports and decides on; guarded by a std mutex, never held across
/// an await.
#[derive(Debug)]
pub(super) struct Status {
    /// Current tablet type: what the Tablet record says, or will say once etcd
    /// takes the write (`type_unpublished`).
    pub(super) tablet_type: TabletType,
    /// The last write of the Tablet record failed (etcd unreachable): the health
    /// loop writes `tablet_type` again until it lands.
    pub(super) type_unpublished: bool,
    /// Role mysqld is in.
    pub(super) role: Role,
    /// The last error worth showing operators (cleared when things work again).
    pub(super) last_error: Option<String>,
    /// Id of the job being run, if any.
    pub(super) busy_job: Option<String>,
    /// The running job's handle (to stop it when its record is made final by
    /// someone else).
    pub(super) job_run: Option<JobRun>,
    /// The running ARCHIVE job's handle: it runs beside the one backup or
    /// restore job ([`super::archive`]).
    pub(super) archive_run: Option<JobRun>,
    /// Whether mysqld answered at the last check.
    pub(super) mysqld_up: bool,
    /// The backup being restored, if any (published so retention keeps it).
    pub(super) restoring: Option<String>,
    /// What the agent saw of replication: errors, clean runs, restarts (backoff).
    pub(super) replication: ReplicationHistory,
    /// The second (Unix time) of the last backup name this agent chose: names have
    /// one-second resolution, so two backups started within one second would
    /// otherwise collide ([`unique_backup_second`]).
    pub(super) last_backup_second: Option<i64>,
    /// A point-in-time restore put this tablet in the past: it stays DRAINED with
    /// replication stopped (see [`super::pitr`]).
    pub(super) pitr_hold: bool,
    /// The oldest binlog file a primary's agent last read the head of, and the
    /// position there (read again only when the oldest file changes).
    pub(super) binlog_head: Option<(String, String)>,
}

/// The start time a new backup is named after: `now` to the whole second, or the
/// second after the last one used when that is not later (a second backup within
/// the same second). Names stay unique per tablet; a name runs ahead of the clock
/// only while backups start faster than one a second. Pure.
pub(super) fn unique_backup_second(now: DateTime<Utc>, last: Option<i64>) -> DateTime<Utc> {
    let second = now.timestamp();
    let pick = match last {
        Some(l) if second <= l => l + 1,
        _ => second,
    };
    DateTime::<Utc>::from_timestamp(pick, 0).unwrap_or(now)
}

/// A running job's handle: its id, the lease it was claimed under, its
/// cancellation (a child of the agent's) and why it was stopped.
#[derive(Debug, Clone)]
pub(super) struct JobRun {
    /// The job's id.
    pub(super) id: String,
    /// The lease as it was when the job was claimed.
    pub(super) claimed: LeaseState,
    /// Cancelled when the job must stop; the engines watch it.
    pub(super) cancel: CancellationToken,
    /// The first reason the job was stopped for (`None`: not stopped, or only by
    /// the agent's own shutdown).
    reason: Arc<Mutex<Option<String>>>,
}

impl JobRun {
    /// The handle of job `id` claimed under `claimed`, cancelled with `parent` too.
    pub(super) fn new(id: &str, claimed: LeaseState, parent: &CancellationToken) -> Self {
        Self {
            id: id.to_string(),
            claimed,
            cancel: parent.child_token(),
            reason: Arc::new(Mutex::new(None)),
        }
    }

    /// Stops the job for `reason` (the first reason given is kept).
    pub(super) fn stop(&self, reason: &str) {
        lock(&self.reason).get_or_insert_with(|| reason.to_string());
        self.cancel.cancel();
    }

    /// Why the job was stopped, if it was (its own stops, not the agent's shutdown).
    pub(super) fn stop_reason(&self) -> Option<String> {
        lock(&self.reason).clone()
    }

    /// Whether the job must stop (for any reason, the agent's shutdown included).
    pub(super) fn stopped(&self) -> bool {
        self.cancel.is_cancelled()
    }
}

/// A running agent. Shared by its background loops.
pub struct Agent {
    /// Topology store.
    pub(super) topo: Topo,
    /// Resolved flags.
    pub(super) cfg: AgentConfig,
    /// The managed server; jobs lock it for their whole run.
    pub(super) mysqld: tokio::sync::Mutex<Mysqld>,
    /// Reported state.
    pub(super) status: Mutex<Status>,
    /// The lease Health lives on.
    pub(super) lease: LeaseHandle,
    /// Prometheus metrics of the agent.
    pub(super) metrics: Arc<AgentMetrics>,
    /// Published HTTP port.
    pub(super) http_port: u16,
    /// Fired on SIGINT/SIGTERM.
    pub(super) cancel: CancellationToken,
    /// Serialises Health writes (collect and put together) and holds the last
    /// Health written, so an unchanged copy is not written between ticks.
    pub(super) health_writer: tokio::sync::Mutex<Option<super::publish::Written>>,
    /// Where backups are written and read (`None`: no storage configured).
    pub(super) storage: Option<Arc<dyn BackupStorage>>,
}

impl Agent {
    /// This shard's backups in storage.
    pub(super) async fn list_backups(
        &self,
    ) -> anyhow::Result<Vec<crate::backup::storage::BackupInfo>> {
        self.storage()?
            .list_backups(&self.cfg.keyspace, &self.cfg.shard)
            .await
            .with_context(|| {
                format!(
                    "listing backups of {}/{}",
                    self.cfg.keyspace, self.cfg.shard
                )
            })
    }

    /// The MANIFESTs of this shard's restorable backups in storage.
    pub(super) async fn restorable_manifests(
        &self,
    ) -> anyhow::Result<Vec<crate::backup::manifest::Manifest>> {
        Ok(self
            .list_backups()
            .await?
            .iter()
            .filter_map(|b| b.restorable_manifest().cloned())
            .collect())
    }

    /// Initialises the data directory if needed and starts (or adopts) mysqld.
    pub(super) async fn init_and_start_mysqld(&self) -> anyhow::Result<()> {
        let mut mysqld = self.mysqld.lock().await;
        let initialised = mysqld
            .init_if_needed()
            .await
            .context("initialising the data directory")?;
        if initialised {
            tracing::info!(dir = %self.cfg.tablet_dir.display(), "initialised a new data directory");
        } else {
            tracing::info!(dir = %self.cfg.tablet_dir.display(), "reusing the existing data directory");
        }
        mysqld.start().await.context("starting mysqld")?;
        Ok(())
    }

    /// The backup storage, or why there is none.
    pub(super) fn storage(&self) -> anyhow::Result<&dyn BackupStorage> {
        self.storage
            .as_deref()
            .context("this tablet has no backup storage configured (--file-backup-storage-root)")
    }

    /// A fresh backup name for this tablet and its start time (whole seconds).
    pub(super) fn new_backup_name(&self) -> (String, DateTime<Utc>) {
        let mut st = lock(&self.status);
        let backup_time = unique_backup_second(Utc::now(), st.last_backup_second);
        st.last_backup_second = Some(backup_time.timestamp());
        (backup_name(backup_time, &self.cfg.alias), backup_time)
    }

    /// The parameters of a backup job on this tablet: the backup is the one the
    /// job names (the agent names it when it takes the job, so retention sees the
    /// backup in flight), else a freshly named one; the job's schedule goes into
    /// the MANIFEST.
    pub(super) fn backup_params(
        &self,
        job: &cairn_topo::Job,
        progress: Arc<Progress>,
        cancel: CancellationToken,
    ) -> BackupParams {
        let (name, backup_time) = job
            .backup_name
            .as_deref()
            .and_then(|n| match parse_backup_name(n) {
                Ok((t, alias)) if alias == self.cfg.alias => Some((n.to_string(), t)),
                _ => None,
            })
            .unwrap_or_else(|| self.new_backup_name());
        let mut copy = CopyOptions {
            compression: self.cfg.backup.compression,
            concurrency: self.cfg.backup.concurrency,
            encryption: self.cfg.backup.encryption.clone(),
            ..CopyOptions::default()
        };
        if let Some(c) = job.concurrency {
            copy.concurrency = c.max(1) as usize;
        }
        BackupParams {
            keyspace: self.cfg.keyspace.clone(),
            shard: self.cfg.shard.clone(),
            alias: self.cfg.alias.clone(),
            hostname: self.cfg.hostname.clone(),
            name,
            backup_time,
            schedule: job.schedule.clone(),
            copy,
            progress,
            cancel,
        }
    }

    pub(super) fn set_error(&self, e: String) {
        tracing::warn!(error = %e, "tablet problem");
        lock(&self.status).last_error = Some(e);
    }

    pub(super) fn clear_error(&self) {
        lock(&self.status).last_error = None;
    }

    pub(super) fn tablet_type(&self) -> TabletType {
        lock(&self.status).tablet_type
    }

    /// Writes the Tablet record with `tablet_type` (read-modify-write: keeps fields
    /// others may add, refreshes ports and host). The type is the tablet's from now
    /// on: if etcd does not take the write, the health loop writes it again
    /// (`type_unpublished`) until it lands.
    pub(super) async fn publish_tablet(&self, tablet_type: TabletType) -> anyhow::Result<()> {
        {
            let mut s = lock(&self.status);
            s.tablet_type = tablet_type;
            s.type_unpublished = true;
        }
        let key = self.topo.keys().tablet(&self.cfg.alias);
        let cfg = &self.cfg;
        let http_port = self.http_port;
        self.topo
            .update_with::<Tablet, _>(&key, |cur| {
                let started_at = cur.as_ref().map(|t| t.started_at).unwrap_or_else(Utc::now);
                let next = Tablet {
                    alias: cfg.alias.clone(),
                    hostname: cfg.hostname.clone(),
                    mysql_host: cfg.hostname.clone(),
                    mysql_port: cfg.mysql_port,
                    port: http_port,
                    keyspace: cfg.keyspace.clone(),
                    shard: cfg.shard.clone(),
                    tablet_type,
                    base_type: cfg.base_type,
                    flavor: "MariaDB".into(),
                    tablet_dir: cfg.tablet_dir.display().to_string(),
                    started_at,
                };
                if cur.as_ref() == Some(&next) {
                    Ok(None)
                } else {
                    Ok(Some(next))
                }
            })
            .await?;
        let mut s = lock(&self.status);
        if s.tablet_type == tablet_type {
            s.type_unpublished = false;
        }
        Ok(())
    }
}

/// What a job that succeeded leaves in its record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct JobDone {
    /// The backup written or restored; `None` when nothing was stored.
    pub backup_name: Option<String>,
    /// What the operator should know beyond the name (why nothing was stored).
    pub message: Option<String>,
}

impl JobDone {
    /// A job that wrote or restored the backup `name`.
    pub fn named(name: String) -> Self {
        JobDone {
            backup_name: Some(name),
            message: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::unique_backup_second;
    use chrono::{DateTime, Utc};

    #[test]
    fn backup_names_are_unique_within_a_second() {
        let at = |s: i64, ms: u32| {
            DateTime::<Utc>::from_timestamp(s, ms * 1_000_000).expect("a valid time")
        };
        // (now, last second used, second picked)
        let cases = [
            (at(100, 250), None, 100),
            (at(100, 999), Some(99), 100),
            (at(100, 10), Some(100), 101),
            (at(100, 10), Some(101), 102),
            (at(105, 0), Some(101), 105),
        ];
        for (now, last, want) in cases {
            let got = unique_backup_second(now, last);
            assert_eq!(got.timestamp(), want, "{now} after {last:?}");
            assert_eq!(got.timestamp_subsec_nanos(), 0);
        }
    }
}
