//! The tablet's role in its shard: primary (writable) or replica (read-only,
//! replicating from the shard's primary), following the Shard record.
//!
//! Level-triggered: [`Agent::reconcile`] compares what the Shard record wants with
//! what mysqld does and fixes the difference. It runs when the Shard record changes
//! (watch) and on every health tick, so a missed event or a crash at any point is
//! repaired by the next run. The decisions are pure ([`plan_role`],
//! [`plan_replication`]) and table-tested in `role/tests.rs`; the functions around
//! them only read inputs and carry the decision out. Restarts of stopped replication
//! wait out the backoff that the replica's history ([`super::replication`]) sets.
//!
//! Calls `mysql` (through the agent's mysqld), `common` and `cairn-topo`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cairn_topo::RecordEvent;
use cairn_topo::{Shard, Tablet, TabletAlias, TabletType};

use chrono::{DateTime, Utc};

use super::agent::{Agent, Role};
use super::replication::{ReplicationHistory, ReplicationView};
use crate::common::lock;
use crate::common::wait::poll_until;
use crate::mysql::mysqld::Mysqld;

/// What the Shard record asks of this tablet, given the role mysqld is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum RoleAction {
    /// This tablet is the shard's primary and mysqld already is one.
    StayPrimary,
    /// This tablet is the shard's primary: forget replication, become writable.
    BecomePrimary,
    /// The shard has no primary: read-only (when `set_read_only`), role Orphan.
    GoOrphan { set_read_only: bool },
    /// Another tablet is primary: read-only (when `set_read_only`), then replicate
    /// from it (see [`plan_replication`]).
    Follow {
        set_read_only: bool,
        primary: TabletAlias,
    },
}

impl RoleAction {
    /// The tablet type to publish once the action is done.
    pub(super) fn tablet_type(&self, base: TabletType) -> TabletType {
        match self {
            RoleAction::StayPrimary | RoleAction::BecomePrimary => TabletType::Primary,
            RoleAction::GoOrphan { .. } | RoleAction::Follow { .. } => base,
        }
    }
}

/// Decides the role of tablet `me` from the Shard record's primary and the role
/// mysqld is in. A replica is made read-only only when it may be writable (it was
/// primary, or nothing is known); mysqld always starts read-only.
pub(super) fn plan_role(
    me: &TabletAlias,
    current: &Role,
    shard_primary: Option<&TabletAlias>,
) -> RoleAction {
    if shard_primary == Some(me) {
        return if *current == Role::Primary {
            RoleAction::StayPrimary
        } else {
            RoleAction::BecomePrimary
        };
    }
    let set_read_only = matches!(current, Role::Primary | Role::Unknown);
    match shard_primary {
        None => RoleAction::GoOrphan { set_read_only },
        Some(p) => RoleAction::Follow {
            set_read_only,
            primary: p.clone(),
        },
    }
}

/// What a replica does about replication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ReplicationAction {
    /// Already replicating from the wanted primary.
    Nothing,
    /// (Re)point replication at the wanted primary and start it.
    Start {
        /// A demoted primary's own writes are not in `gtid_slave_pos`: start from
        /// everything it has executed, or it would replay its own transactions.
        adopt_binlog_position: bool,
        /// Same primary as before but the threads stopped: why (for the log).
        /// `None` when this is a new primary.
        restart_reason: Option<String>,
    },
    /// Same primary, threads stopped, but the last restart stopped again too
    /// recently: leave them stopped until `until` (backoff).
    Wait { until: DateTime<Utc> },
}

/// Decides whether a replica (re)starts replication: when it follows another
/// primary than `wanted`, or its threads are not both running (`replication` is
/// `None` when mysqld is not configured as a replica) and the backoff after failed
/// restarts in `history` has passed at `now`.
pub(super) fn plan_replication(
    current: &Role,
    wanted: &Role,
    replication: Option<&ReplicationView>,
    history: &ReplicationHistory,
    now: DateTime<Utc>,
) -> ReplicationAction {
    let running = replication.is_some_and(|r| r.running);
    if current == wanted && running {
        return ReplicationAction::Nothing;
    }
    if current == wanted {
        if let Some(until) = history.next_restart_at().filter(|t| now < *t) {
            return ReplicationAction::Wait { until };
        }
    }
    let restart_reason = (current == wanted).then(|| {
        replication
            .and_then(|r| r.last_error.clone())
            .unwrap_or_else(|| "threads stopped".into())
    });
    ReplicationAction::Start {
        adopt_binlog_position: *current == Role::Primary,
        restart_reason,
    }
}

impl Agent {
    /// Brings mysqld's role in line with the Shard record (fetched if not given).
    pub(super) async fn reconcile(&self, shard: Option<Shard>) -> anyhow::Result<()> {
        if lock(&self.status).busy_job.is_some() {
            return Ok(()); // a job owns mysqld; it restores the role when done
        }
        self.reconcile_now(shard).await
    }

    /// [`Agent::reconcile`] even while a job is marked running: what a job calls
    /// to put the tablet back in service before it reports done.
    pub(super) async fn reconcile_now(&self, shard: Option<Shard>) -> anyhow::Result<()> {
        let shard = match shard {
            Some(s) => s,
            None => self
                .topo
                .get_shard(&self.cfg.keyspace, &self.cfg.shard)
                .await?
                .map(|v| v.value)
                .context("the shard record disappeared")?,
        };
        let mut mysqld = self.mysqld.lock().await;
        // Supervision: a dead mysqld is restarted before anything else.
        if !mysqld.is_running() {
            {
                let mut s = lock(&self.status);
                s.mysqld_up = false;
                s.role = Role::Unknown;
            }
            self.metrics.mysqld_up.set(0);
            tracing::warn!("mysqld is not running; restarting it");
            self.metrics.mysqld_restarts.inc();
            mysqld.start().await.context("restarting mysqld")?;
            tracing::info!("mysqld restarted");
        }
        let current = {
            let mut s = lock(&self.status);
            s.mysqld_up = true;
            s.role.clone()
        };
        let action = plan_role(&self.cfg.alias, &current, shard.primary_alias.as_ref());
        if lock(&self.status).pitr_hold {
            if matches!(action, RoleAction::BecomePrimary | RoleAction::StayPrimary) {
                // An operator made the restored tablet primary: that ends the hold.
                self.release_hold();
            } else {
                self.keep_held(&mysqld, &current).await?;
                lock(&self.status).replication.reset();
                drop(mysqld);
                if self.tablet_type() != TabletType::Drained {
                    self.publish_tablet(TabletType::Drained).await?;
                }
                match super::pitr::read_hold(&self.cfg.tablet_dir)
                    .and_then(|h| super::pitr::held_problem(&h.state))
                {
                    Some(e) if lock(&self.status).last_error.as_ref() != Some(&e) => {
                        self.set_error(e)
                    }
                    Some(_) => {}
                    None => self.clear_error(),
                }
                return Ok(());
            }
        }
        match &action {
            RoleAction::StayPrimary => {}
            RoleAction::BecomePrimary => {
                tracing::info!("becoming the primary of the shard");
                mysqld
                    .reset_replication()
                    .await
                    .context("clearing replication")?;
                mysqld
                    .set_read_only(false)
                    .await
                    .context("making mysqld writable")?;
                self.set_role(Role::Primary);
            }
            RoleAction::GoOrphan { set_read_only } | RoleAction::Follow { set_read_only, .. } => {
                if *set_read_only {
                    mysqld
                        .set_read_only(true)
                        .await
                        .context("making mysqld read-only")?;
                }
            }
        }
        match &action {
            RoleAction::GoOrphan { .. } => self.set_role(Role::Orphan),
            RoleAction::Follow { primary, .. } => {
                self.follow(&mysqld, &current, primary).await?;
            }
            RoleAction::StayPrimary | RoleAction::BecomePrimary => {}
        }
        if !matches!(action, RoleAction::Follow { .. }) {
            lock(&self.status).replication.reset(); // not a replica: no replication history
        }
        drop(mysqld);
        let wanted_type = action.tablet_type(self.cfg.base_type);
        if self.tablet_type() != wanted_type {
            self.publish_tablet(wanted_type).await?;
        }
        self.clear_error();
        Ok(())
    }

    /// Replicates from `primary` (its address from its Tablet record), unless mysqld
    /// already does.
    async fn follow(
        &self,
        mysqld: &Mysqld,
        current: &Role,
        primary: &TabletAlias,
    ) -> anyhow::Result<()> {
        let p = self
            .topo
            .get::<Tablet>(&self.topo.keys().tablet(primary))
            .await?
            .with_context(|| format!("the shard's primary {primary} has no tablet record"))?
            .value;
        let wanted = Role::Replica {
            primary: primary.clone(),
            host: p.mysql_host.clone(),
            port: p.mysql_port,
        };
        let status = mysqld
            .replication_status()
            .await
            .context("reading replication status")?;
        let view = status.as_ref().map(ReplicationView::from);
        let now = Utc::now();
        let action = {
            let mut s = lock(&self.status);
            if *current != wanted {
                s.replication.reset(); // another primary: its history starts now
            }
            if s.replication.observe(now, view.as_ref()) {
                self.metrics.replication_errors.inc();
            }
            plan_replication(current, &wanted, view.as_ref(), &s.replication, now)
        };
        let (adopt_binlog_position, restart_reason) = match action {
            ReplicationAction::Nothing => return Ok(()),
            ReplicationAction::Wait { until } => {
                tracing::debug!(%primary, %until, "replication stopped again after a restart; backing off");
                return Ok(());
            }
            ReplicationAction::Start {
                adopt_binlog_position,
                restart_reason,
            } => (adopt_binlog_position, restart_reason),
        };
        if adopt_binlog_position {
            mysqld.adopt_binlog_position_for_replication().await?;
        }
        match &restart_reason {
            Some(why) => {
                let failed = lock(&self.status).replication.failed_restarts();
                tracing::warn!(%primary, %why, failed_restarts = failed, "replication not running; restarting it")
            }
            None => {
                tracing::info!(%primary, host = %p.mysql_host, port = p.mysql_port, "replicating from the primary")
            }
        }
        mysqld
            .start_replication_from(
                &p.mysql_host,
                p.mysql_port,
                &self.cfg.repl_user,
                &self.cfg.repl_password,
            )
            .await
            .with_context(|| format!("starting replication from {primary}"))?;
        if restart_reason.is_some() {
            lock(&self.status).replication.restarted(now);
        }
        self.set_role(wanted);
        // Give the threads a moment to connect, so the Health written next already
        // says "replicating" (bounded: a broken primary must not stall the agent).
        let _ = poll_until(
            "replication threads",
            Duration::from_millis(500),
            Duration::from_millis(20),
            None,
            || async { mysqld.replication_running().await.then_some(()) },
        )
        .await;
        Ok(())
    }

    pub(super) fn set_role(&self, role: Role) {
        lock(&self.status).role = role;
    }

    /// Watches the Shard record and reconciles on every change.
    pub(super) async fn shard_watch_loop(self: Arc<Self>) {
        let key = self.topo.keys().shard(&self.cfg.keyspace, &self.cfg.shard);
        let mut watch = self.topo.watch_records::<Shard>(&key, 0);
        loop {
            let ev = tokio::select! {
                _ = self.cancel.cancelled() => return,
                ev = watch.next() => ev,
            };
            let shard = match ev {
                None => return,
                Some(RecordEvent::Put { record, .. }) => match record {
                    Ok(s) => Some(s.value),
                    Err(e) => {
                        tracing::warn!(%key, error = %e, "ignoring shard record that does not parse");
                        continue;
                    }
                },
                Some(RecordEvent::Delete { .. }) => {
                    tracing::warn!(%key, "the shard record was deleted");
                    continue;
                }
                Some(RecordEvent::Resync { .. }) => None,
            };
            if let Err(e) = self.reconcile(shard).await {
                self.set_error(format!("{e:#}"));
            }
            self.write_health().await;
        }
    }
}

#[cfg(test)]
mod tests;
