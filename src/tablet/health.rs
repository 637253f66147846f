//! The tablet's Health in topo: what mysqld reports (up, GTID position, replication
//! threads and lag), written under the agent's lease so it disappears when the agent
//! dies; the loop that reconciles the role and rewrites Health every
//! `health_interval` (and the Tablet record's type while etcd did not take it), and
//! the one that rewrites it when a lost lease is re-granted (failing the jobs
//! claimed under the lost lease that no longer run). Between ticks Health is
//! written only when it changed ([`super::publish`]).
//! A replica's Health also carries its replication history (the error that makes it
//! failing, since when it runs cleanly; see [`super::replication`]). Also keeps the
//! agent's mysqld and replication gauges current.
//!
//! Calls `mysql` (through the agent's mysqld), `common` and `cairn-topo`.

use std::sync::Arc;
use std::time::Instant;

use cairn_topo::{Health, TabletType};
use chrono::Utc;

use super::agent::Agent;
use super::agent::Role;
use super::fence::LEASE_LOST;
use super::publish::{content, health_write_due, HealthTrigger, Written};
use super::replication::ReplicationView;
use crate::common::lock;
use crate::mysql::binlog::read_gtid_list;
use crate::mysql::gtid::{format_gtid_list, Gtid};
use crate::mysql::mysqld::Mysqld;

/// A `Gtid_list` (one GTID per domain and server) reduced to the newest GTID of
/// each domain, domains in order: the last transaction of each domain before
/// the binlog it heads. Pure.
pub(super) fn newest_per_domain(list: &[Gtid]) -> Vec<Gtid> {
    let mut out: std::collections::BTreeMap<u32, Gtid> = std::collections::BTreeMap::new();
    for g in list {
        let e = out.entry(g.domain).or_insert(*g);
        if g.seq > e.seq {
            *e = *g;
        }
    }
    out.into_values().collect()
}

/// Whether a tablet serves queries: mysqld answers and no job or drain has taken it
/// out of service.
pub(super) fn serving(mysqld_up: bool, tablet_type: TabletType) -> bool {
    mysqld_up
        && !matches!(
            tablet_type,
            TabletType::Backup | TabletType::Restore | TabletType::Drained
        )
}

impl Agent {
    /// Reads mysqld's state into a Health record (without waiting on a running job).
    async fn collect_health(&self) -> Health {
        let (tablet_type, busy_job, last_error, role, restoring) = {
            let s = lock(&self.status);
            (
                s.tablet_type,
                s.busy_job.clone(),
                s.last_error.clone(),
                s.role.clone(),
                s.restoring.clone(),
            )
        };
        let mut h = Health {
            busy_job,
            last_error,
            restoring_backup: restoring,
            data_free_bytes: super::disk::reported_free(&self.cfg.tablet_dir),
            updated_at: Some(Utc::now()),
            ..Health::default()
        };
        let mysqld = if h.busy_job.is_some() {
            match self.mysqld.try_lock() {
                Ok(m) => m,
                Err(_) => {
                    // A job holds mysqld for its whole run: report what we know
                    // without waiting for it.
                    h.mysqld_up = lock(&self.status).mysqld_up;
                    return h;
                }
            }
        } else {
            // Only a reconcile can hold it, briefly.
            self.mysqld.lock().await
        };
        if !mysqld.is_running() {
            self.metrics.mysqld_up.set(0);
            return h;
        }
        match mysqld.position().await {
            Ok(pos) => {
                h.mysqld_up = true;
                h.gtid_position = Some(pos);
            }
            Err(e) => {
                h.last_error = Some(format!("mysqld not answering: {e:#}"));
                self.metrics.mysqld_up.set(0);
                return h;
            }
        }
        if role == Role::Primary {
            h.binlog_oldest_position = self.binlog_oldest_position(&mysqld).await;
        }
        if let Role::Replica { .. } = role {
            let status = mysqld.replication_status().await;
            if let Ok(r) = &status {
                let view = r.as_ref().map(ReplicationView::from);
                let mut s = lock(&self.status);
                if s.replication.observe(Utc::now(), view.as_ref()) {
                    self.metrics.replication_errors.inc();
                }
                h.replication_error = s.replication.error().cloned();
                h.replication_clean_since = s.replication.clean_since();
            }
            match status {
                Ok(Some(r)) => {
                    h.replication_io_running = r.io_running;
                    h.replication_sql_running = r.sql_running;
                    h.replication_lag_seconds = if r.io_running && r.sql_running {
                        r.lag_seconds
                    } else {
                        None
                    };
                    if h.last_error.is_none() {
                        h.last_error = r.last_error;
                    }
                }
                Ok(None) => {}
                Err(e) => h.last_error = Some(format!("reading replication status: {e:#}")),
            }
        }
        h.serving = serving(h.mysqld_up, tablet_type);
        self.metrics.mysqld_up.set(h.mysqld_up as i64);
        self.metrics
            .replication_failing
            .set(h.replication_failing() as i64);
        self.metrics
            .replication_lag_seconds
            .set(h.replication_lag_seconds.map_or(-1, |l| l as i64));
        h
    }

    /// A primary's oldest binlog position (the `Gtid_list` event at the head of
    /// the oldest file `SHOW BINARY LOGS` lists, reduced to the newest GTID per
    /// domain): read from the file only when the oldest file changed since the
    /// last read. `None` when it cannot be read (said at debug level: the gap
    /// check then waits).
    async fn binlog_oldest_position(&self, mysqld: &Mysqld) -> Option<String> {
        let files = match mysqld.binary_logs().await {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(error = %e, "cannot list the binary logs");
                return None;
            }
        };
        let oldest = files.into_iter().next()?;
        if let Some((name, pos)) = &lock(&self.status).binlog_head {
            if *name == oldest.name {
                return Some(pos.clone());
            }
        }
        let path = oldest.path.clone();
        let read = tokio::task::spawn_blocking(move || {
            let f = std::fs::File::open(&path)?;
            read_gtid_list(std::io::BufReader::new(f)).map_err(std::io::Error::other)
        })
        .await;
        let list = match read {
            Ok(Ok(Some(list))) => list,
            Ok(Ok(None)) => {
                tracing::debug!(file = %oldest.name, "the oldest binlog has no Gtid_list event yet");
                return None;
            }
            Ok(Err(e)) => {
                tracing::debug!(file = %oldest.name, error = %e, "cannot read the oldest binlog's head");
                return None;
            }
            Err(e) => {
                tracing::debug!(error = %e, "reading the oldest binlog's head did not finish");
                return None;
            }
        };
        let pos = format!("MariaDB/{}", format_gtid_list(&newest_per_domain(&list)));
        tracing::info!(file = %oldest.name, position = %pos, "the oldest binlog on the primary changed");
        lock(&self.status).binlog_head = Some((oldest.name, pos.clone()));
        Some(pos)
    }

    /// Writes Health now if it changed (a job ended, the Shard moved, a restore
    /// step); an unchanged copy waits for the next tick.
    pub(super) async fn write_health(&self) {
        self.write_health_on(HealthTrigger::Event).await
    }

    /// Writes Health when [`health_write_due`] says so: at the health interval,
    /// and at once on a change.
    async fn write_health_on(&self, trigger: HealthTrigger) {
        // One writer at a time, each collecting inside the lock: the last Health
        // written is always the freshest (a tick that started during a job cannot
        // overwrite the Health written when the job ended).
        let mut last = self.health_writer.lock().await;
        let h = self.collect_health().await;
        let lease = self.lease.id();
        let now = Instant::now();
        if !health_write_due(
            last.as_ref(),
            lease,
            &h,
            now,
            self.cfg.health_interval,
            trigger,
        ) {
            return;
        }
        let key = self.topo.keys().health(&self.cfg.alias);
        match self.topo.put(&key, &h, Some(lease)).await {
            Ok(_) => {
                self.metrics.health_writes.inc();
                *last = Some(Written {
                    at: now,
                    lease,
                    health: content(&h),
                });
            }
            Err(e) => {
                self.metrics.health_write_errors.inc();
                tracing::warn!(error = %e, "cannot write Health");
            }
        };
    }

    /// Every `health_interval`: reconcile (supervision included) and write Health.
    pub(super) async fn health_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.cfg.health_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let unpublished = lock(&self.status).type_unpublished;
            if unpublished {
                let t = self.tablet_type();
                match self.publish_tablet(t).await {
                    Ok(()) => tracing::info!(tablet_type = %t, "tablet type written again"),
                    Err(e) => tracing::debug!(error = %e, "cannot write the tablet type yet"),
                }
            }
            if let Err(e) = self.reconcile(None).await {
                self.set_error(format!("{e:#}"));
            }
            self.write_health_on(HealthTrigger::Tick).await;
        }
    }

    /// Re-writes Health as soon as the lease is re-granted after a loss.
    pub(super) async fn lease_loop(self: Arc<Self>) {
        let mut rx = self.lease.subscribe();
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                changed = rx.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
            let state = *rx.borrow_and_update();
            if state.alive {
                tracing::info!(
                    lease = state.id,
                    generation = state.generation,
                    "lease (re)granted; re-registering health"
                );
                if let Err(e) = self.publish_tablet(self.tablet_type()).await {
                    tracing::warn!(error = %e, "cannot refresh the tablet record");
                }
                self.write_health().await;
                // Jobs claimed under the lost lease and no longer running here.
                self.fail_orphaned_jobs(LEASE_LOST).await;
            } else {
                tracing::warn!("health lease lost; waiting for etcd to grant a new one");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gtid_list_is_reduced_to_the_newest_gtid_per_domain() {
        let g = |s: &str| crate::mysql::gtid::parse_gtid_list(s).unwrap();
        // (Gtid_list at a binlog's head, newest per domain)
        let cases = [
            ("", ""),
            ("0-101-5", "0-101-5"),
            ("0-101-5,0-102-9", "0-102-9"),
            ("0-102-9,0-101-5", "0-102-9"),
            ("1-7-3,0-101-5,0-102-4", "0-101-5,1-7-3"),
            ("2-1-1,1-1-8,1-2-2,0-3-3", "0-3-3,1-1-8,2-1-1"),
        ];
        for (list, want) in cases {
            assert_eq!(
                format_gtid_list(&newest_per_domain(&g(list))),
                want,
                "{list}"
            );
        }
    }

    #[test]
    fn serving_needs_mysqld_and_a_serving_type() {
        use TabletType::*;
        // (mysqld up, tablet type, serving)
        let cases = [
            (true, Primary, true),
            (true, Replica, true),
            (true, Rdonly, true),
            (true, Spare, true),
            (true, Experimental, true),
            (true, Backup, false),
            (true, Restore, false),
            (true, Drained, false),
            (false, Primary, false),
            (false, Replica, false),
        ];
        for (up, t, want) in cases {
            assert_eq!(serving(up, t), want, "mysqld_up {up}, type {t}");
        }
    }
}
