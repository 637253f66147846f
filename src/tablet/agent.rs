//! The agent's life: register the tablet, run mysqld, keep Health alive on a lease,
//! follow the shard primary, supervise mysqld, and stop cleanly on SIGINT/SIGTERM.
//!
//! Role changes are level-triggered: [`Agent::reconcile`] compares what the Shard
//! record wants (primary or replica of whom) with what mysqld does, and fixes the
//! difference. It runs when the Shard record changes (watch) and on every health
//! tick, so a missed event or a crash at any point is repaired by the next run.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use cairn_topo::lease::LeaseHandle;
use cairn_topo::watch::WatchEvent;
use cairn_topo::{Health, Shard, Tablet, TabletAlias, TabletType, Topo, TopoConfig};
use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::config::AgentConfig;
use super::http::{self, AgentMetrics};
use crate::backup::engine::{BackupParams, Progress};
use crate::backup::manifest::backup_name;
use crate::backup::pipeline::CopyOptions;
use crate::backup::storage::BackupStorage;
use crate::mysql::mysqld::{Mysqld, MysqldConfig};

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
    /// Current tablet type (mirrors the Tablet record).
    pub(super) tablet_type: TabletType,
    /// Role mysqld is in.
    pub(super) role: Role,
    /// The last error worth showing operators (cleared when things work again).
    pub(super) last_error: Option<String>,
    /// Id of the job being run, if any.
    pub(super) busy_job: Option<String>,
    /// Whether mysqld answered at the last check.
    pub(super) mysqld_up: bool,
    /// The backup being restored, if any (published so retention keeps it).
    pub(super) restoring: Option<String>,
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
    /// Serialises Health writes (collect and put together).
    pub(super) health_writer: tokio::sync::Mutex<()>,
    /// Where backups are written and read (`None`: no storage configured).
    pub(super) storage: Option<Arc<dyn BackupStorage>>,
}

/// Entry point of `cairn tablet`.
pub async fn run(topo_cfg: TopoConfig, cfg: AgentConfig) -> anyhow::Result<()> {
    if cfg.health_ttl < Duration::from_secs(2) {
        bail!("--health-ttl must be at least 2s");
    }
    let cancel = CancellationToken::new();
    crate::common::shutdown::spawn_signal_handler(cancel.clone());

    let started = Instant::now();
    tracing::info!(alias = %cfg.alias, keyspace = %cfg.keyspace, shard = %cfg.shard, "tablet agent starting");
    let topo = tokio::select! {
        t = Topo::connect(&topo_cfg, None) => t.context("connecting to etcd")?,
        _ = cancel.cancelled() => bail!("interrupted before etcd was reachable"),
    };

    // Refuse to move an existing tablet to another shard: its data belongs to the old one.
    let existing: Option<cairn_topo::Versioned<Tablet>> = topo
        .get(&topo.keys().tablet(&cfg.alias))
        .await
        .with_context(|| format!("reading tablet record of {}", cfg.alias))?;
    if let Some(t) = &existing {
        if t.value.keyspace != cfg.keyspace || t.value.shard != cfg.shard {
            bail!(
                "tablet {} is registered in {}/{}, not {}/{}: use another --tablet-uid or delete the old record",
                cfg.alias,
                t.value.keyspace,
                t.value.shard,
                cfg.keyspace,
                cfg.shard
            );
        }
    }
    let shard = topo
        .ensure_keyspace_shard(&cfg.keyspace, &cfg.shard)
        .await
        .with_context(|| format!("creating keyspace/shard {}/{}", cfg.keyspace, cfg.shard))?;

    let mysqld_cfg = MysqldConfig {
        innodb_buffer_pool_size: cfg.innodb_buffer_pool_size.clone(),
        ..MysqldConfig::new(
            cfg.tablet_dir.clone(),
            cfg.mysql_port,
            cfg.mysql_bind_address.clone(),
            crate::mysql::mysqld::server_id_for_uid(cfg.alias.uid),
        )
    };
    let mysqld = Mysqld::new(mysqld_cfg).context("preparing mysqld")?;
    let data_dir = mysqld.data_dir();
    // Without storage the tablet runs; its backup jobs fail with a clear reason.
    let storage = cfg.storage.open();
    if storage.is_none() && cfg.restore_from_backup {
        bail!("--restore-from-backup needs a backup storage: set --file-backup-storage-root");
    }

    let lease = topo
        .lease(cfg.health_ttl.as_secs().max(2) as i64)
        .await
        .context("granting the health lease")?;

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", cfg.http_port))
        .await
        .with_context(|| format!("binding the agent HTTP port {}", cfg.http_port))?;
    let http_port = listener
        .local_addr()
        .context("reading the HTTP port")?
        .port();

    let is_primary = shard.value.primary_alias.as_ref() == Some(&cfg.alias);
    let tablet_type = if is_primary {
        TabletType::Primary
    } else {
        cfg.base_type
    };
    if let Some(t) = &existing {
        if matches!(
            t.value.tablet_type,
            TabletType::Backup | TabletType::Restore
        ) {
            tracing::warn!(
                was = %t.value.tablet_type,
                "the previous agent died during a job; returning the tablet to {tablet_type}"
            );
        }
    }
    let agent = Arc::new(Agent {
        topo,
        mysqld: tokio::sync::Mutex::new(mysqld),
        status: Mutex::new(Status {
            tablet_type,
            role: Role::Unknown,
            last_error: None,
            busy_job: None,
            mysqld_up: false,
            restoring: None,
        }),
        lease,
        metrics: Arc::new(AgentMetrics::default()),
        http_port,
        cancel: cancel.clone(),
        health_writer: tokio::sync::Mutex::new(()),
        storage,
        cfg,
    });
    let mut loops = vec![
        tokio::spawn(http::serve(listener, agent.metrics.clone(), cancel.clone())),
        tokio::spawn(agent.clone().lease_loop()),
    ];

    let restoring = agent.cfg.restore_from_backup && agent.restore_needed(&data_dir);
    if restoring {
        // While restoring (or waiting for a seed), the tablet is registered as
        // RESTORE with Health saying it does not serve; supervision is off.
        if let Ok(mut s) = agent.status.lock() {
            s.busy_job = Some("restore-at-start".into());
        }
        agent
            .publish_tablet(TabletType::Restore)
            .await
            .context("registering the tablet")?;
        agent.write_health().await;
        let health = tokio::spawn(agent.clone().health_loop());
        let outcome = agent
            .restore_at_start(
                agent.cfg.restore_from_backup_ts.as_deref(),
                agent.cfg.wait_for_backup_interval,
            )
            .await;
        health.abort();
        if let Ok(mut s) = agent.status.lock() {
            s.busy_job = None;
        }
        match outcome {
            Ok(true) => {}
            Ok(false) => agent.init_and_start_mysqld().await?,
            Err(e) => {
                // Not serving anything: leave no RESTORE type behind; the marker (if
                // any) makes the next start redo the restore.
                let _ = agent.publish_tablet(agent.cfg.base_type).await;
                cancel.cancel();
                for l in loops {
                    let _ = tokio::time::timeout(Duration::from_secs(2), l).await;
                }
                return Err(e);
            }
        }
    } else {
        agent.init_and_start_mysqld().await?;
    }
    {
        let mysqld = agent.mysqld.lock().await;
        mysqld
            .ensure_replication_user(&agent.cfg.repl_user, &agent.cfg.repl_password)
            .await
            .context("creating the replication user")?;
    }
    if let Ok(mut s) = agent.status.lock() {
        s.mysqld_up = true;
    }
    agent
        .publish_tablet(tablet_type)
        .await
        .context("registering the tablet")?;
    agent.fail_orphaned_jobs().await;
    if let Err(e) = agent.reconcile(None).await {
        agent.set_error(format!("{e:#}"));
    }
    agent.write_health().await;
    tracing::info!(
        alias = %agent.cfg.alias,
        elapsed_ms = started.elapsed().as_millis() as u64,
        http_port,
        "tablet registered and healthy"
    );

    loops.push(tokio::spawn(agent.clone().health_loop()));
    loops.push(tokio::spawn(agent.clone().shard_watch_loop()));
    loops.push(tokio::spawn(agent.clone().job_loop()));
    cancel.cancelled().await;
    tracing::info!("shutting down");
    for l in loops {
        let _ = tokio::time::timeout(Duration::from_secs(5), l).await;
    }
    agent.shutdown().await;
    Ok(())
}

impl Agent {
    /// Initialises the data directory if needed and starts (or adopts) mysqld.
    async fn init_and_start_mysqld(&self) -> anyhow::Result<()> {
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

    /// The parameters of a backup job on this tablet.
    pub(super) fn backup_params(
        &self,
        job: &cairn_topo::Job,
        progress: Arc<Progress>,
    ) -> BackupParams {
        let now = Utc::now();
        let backup_time = now - chrono::Duration::nanoseconds(now.timestamp_subsec_nanos() as i64);
        let mut copy = CopyOptions {
            compression: self.cfg.backup.compression,
            concurrency: self.cfg.backup.concurrency,
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
            name: backup_name(backup_time, &self.cfg.alias),
            backup_time,
            copy,
            progress,
            cancel: self.cancel.clone(),
        }
    }

    pub(super) fn set_error(&self, e: String) {
        tracing::warn!(error = %e, "tablet problem");
        if let Ok(mut s) = self.status.lock() {
            s.last_error = Some(e);
        }
    }

    pub(super) fn clear_error(&self) {
        if let Ok(mut s) = self.status.lock() {
            s.last_error = None;
        }
    }

    pub(super) fn tablet_type(&self) -> TabletType {
        self.status
            .lock()
            .map(|s| s.tablet_type)
            .unwrap_or(self.cfg.base_type)
    }

    /// Writes the Tablet record with `tablet_type` (read-modify-write: keeps fields
    /// others may add, refreshes ports and host).
    pub(super) async fn publish_tablet(&self, tablet_type: TabletType) -> anyhow::Result<()> {
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
        if let Ok(mut s) = self.status.lock() {
            s.tablet_type = tablet_type;
        }
        Ok(())
    }

    /// Brings mysqld's role in line with the Shard record (fetched if not given).
    pub(super) async fn reconcile(&self, shard: Option<Shard>) -> anyhow::Result<()> {
        if self
            .status
            .lock()
            .map(|s| s.busy_job.is_some())
            .unwrap_or(false)
        {
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
            if let Ok(mut s) = self.status.lock() {
                s.mysqld_up = false;
                s.role = Role::Unknown;
            }
            self.metrics.mysqld_up.set(0);
            tracing::warn!("mysqld is not running; restarting it");
            self.metrics.mysqld_restarts.inc();
            mysqld.start().await.context("restarting mysqld")?;
            tracing::info!("mysqld restarted");
        }
        if let Ok(mut s) = self.status.lock() {
            s.mysqld_up = true;
        }
        let current = self
            .status
            .lock()
            .map(|s| s.role.clone())
            .unwrap_or(Role::Unknown);
        let wanted_primary = shard.primary_alias.clone();
        if wanted_primary.as_ref() == Some(&self.cfg.alias) {
            if current != Role::Primary {
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
            drop(mysqld);
            if self.tablet_type() != TabletType::Primary {
                self.publish_tablet(TabletType::Primary).await?;
            }
            self.clear_error();
            return Ok(());
        }
        // Not the primary: read-only, and replicating from the primary if there is one.
        if current == Role::Primary || current == Role::Unknown {
            mysqld
                .set_read_only(true)
                .await
                .context("making mysqld read-only")?;
        }
        match wanted_primary {
            None => {
                if current != Role::Orphan {
                    self.set_role(Role::Orphan);
                }
            }
            Some(primary) => {
                let p = self
                    .topo
                    .get::<Tablet>(&self.topo.keys().tablet(&primary))
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
                let running = status
                    .as_ref()
                    .is_some_and(|s| s.io_running && s.sql_running);
                if current != wanted || !running {
                    if current == Role::Primary {
                        // A demoted primary's own writes are not in gtid_slave_pos; start
                        // from everything it has, or it would replay its own transactions.
                        mysqld.adopt_binlog_position_for_replication().await?;
                    }
                    if current == wanted {
                        let why = status
                            .and_then(|s| s.last_error)
                            .unwrap_or_else(|| "threads stopped".into());
                        tracing::warn!(%primary, %why, "replication not running; restarting it");
                    } else {
                        tracing::info!(%primary, host = %p.mysql_host, port = p.mysql_port, "replicating from the primary");
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
                    self.set_role(wanted);
                    // Give the threads a moment to connect, so the Health written
                    // next already says "replicating" (bounded: a broken primary
                    // must not stall the agent).
                    let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
                    while tokio::time::Instant::now() < deadline {
                        let ok = mysqld
                            .replication_status()
                            .await
                            .ok()
                            .flatten()
                            .is_some_and(|r| r.io_running && r.sql_running);
                        if ok {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        }
        drop(mysqld);
        let base = self.cfg.base_type;
        if self.tablet_type() != base {
            self.publish_tablet(base).await?;
        }
        self.clear_error();
        Ok(())
    }

    pub(super) fn set_role(&self, role: Role) {
        if let Ok(mut s) = self.status.lock() {
            s.role = role;
        }
    }

    /// Reads mysqld's state into a Health record (without waiting on a running job).
    async fn collect_health(&self) -> Health {
        let (tablet_type, busy_job, last_error, role, restoring) = match self.status.lock() {
            Ok(s) => (
                s.tablet_type,
                s.busy_job.clone(),
                s.last_error.clone(),
                s.role.clone(),
                s.restoring.clone(),
            ),
            Err(_) => (
                self.cfg.base_type,
                None,
                Some("agent state poisoned".into()),
                Role::Unknown,
                None,
            ),
        };
        let mut h = Health {
            busy_job,
            last_error,
            restoring_backup: restoring,
            updated_at: Some(Utc::now()),
            ..Health::default()
        };
        let mysqld = if h.busy_job.is_some() {
            match self.mysqld.try_lock() {
                Ok(m) => m,
                Err(_) => {
                    // A job holds mysqld for its whole run: report what we know
                    // without waiting for it.
                    h.mysqld_up = self.status.lock().map(|s| s.mysqld_up).unwrap_or(false);
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
        if let Role::Replica { .. } = role {
            match mysqld.replication_status().await {
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
        h.serving = h.mysqld_up
            && !matches!(
                tablet_type,
                TabletType::Backup | TabletType::Restore | TabletType::Drained
            );
        self.metrics.mysqld_up.set(h.mysqld_up as i64);
        self.metrics
            .replication_lag_seconds
            .set(h.replication_lag_seconds.map_or(-1, |l| l as i64));
        h
    }

    pub(super) async fn write_health(&self) {
        // One writer at a time, each collecting inside the lock: the last Health
        // written is always the freshest (a tick that started during a job cannot
        // overwrite the Health written when the job ended).
        let _one_writer = self.health_writer.lock().await;
        let h = self.collect_health().await;
        let key = self.topo.keys().health(&self.cfg.alias);
        match self.topo.put(&key, &h, Some(self.lease.id())).await {
            Ok(_) => {
                self.metrics.health_writes.inc();
            }
            Err(e) => {
                self.metrics.health_write_errors.inc();
                tracing::warn!(error = %e, "cannot write Health");
            }
        };
    }

    /// Every `health_interval`: reconcile (supervision included) and write Health.
    async fn health_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.cfg.health_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.reconcile(None).await {
                self.set_error(format!("{e:#}"));
            }
            self.write_health().await;
        }
    }

    /// Re-writes Health as soon as the lease is re-granted after a loss.
    async fn lease_loop(self: Arc<Self>) {
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
            } else {
                tracing::warn!("health lease lost; waiting for etcd to grant a new one");
            }
        }
    }

    /// Watches the Shard record and reconciles on every change.
    async fn shard_watch_loop(self: Arc<Self>) {
        let key = self.topo.keys().shard(&self.cfg.keyspace, &self.cfg.shard);
        let mut watch = self.topo.watch(&key, false, 0);
        loop {
            let ev = tokio::select! {
                _ = self.cancel.cancelled() => return,
                ev = watch.next() => ev,
            };
            let shard = match ev {
                None => return,
                Some(WatchEvent::Put { value, .. }) => {
                    match serde_json::from_slice::<Shard>(&value) {
                        Ok(s) => Some(s),
                        Err(e) => {
                            tracing::warn!(%key, error = %e, "ignoring shard record that does not parse");
                            continue;
                        }
                    }
                }
                Some(WatchEvent::Delete { .. }) => {
                    tracing::warn!(%key, "the shard record was deleted");
                    continue;
                }
                Some(WatchEvent::Resync { .. }) => None,
            };
            if let Err(e) = self.reconcile(shard).await {
                self.set_error(format!("{e:#}"));
            }
            self.write_health().await;
        }
    }

    /// Clean stop: mysqld shut down, lease revoked (Health disappears at once).
    async fn shutdown(self: Arc<Self>) {
        let mut mysqld = self.mysqld.lock().await;
        if let Err(e) = mysqld.shutdown(Duration::from_secs(60)).await {
            tracing::warn!(error = %e, "mysqld did not shut down cleanly");
        }
        drop(mysqld);
        let Ok(agent) = Arc::try_unwrap(self) else {
            tracing::warn!("background loops still hold the agent; the lease will expire by TTL");
            return;
        };
        if let Err(e) = agent.lease.revoke().await {
            tracing::warn!(error = %e, "cannot revoke the lease; Health expires by TTL");
        }
        tracing::info!("stopped");
    }
}
