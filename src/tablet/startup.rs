//! The agent's start and stop: `cairn tablet`'s entry point. Refuses a tablet
//! registered in another shard, prepares mysqld, takes the health lease and the HTTP
//! port, decides whether to restore before serving ([`plan_start`]), registers the
//! tablet, starts the loops (health, lease, shard watch, jobs) and, on SIGINT/SIGTERM,
//! stops them, shuts mysqld down and revokes the lease.
//!
//! Calls the other rooms of the agent, `backup` (storage), `mysql`, `common` and
//! `cairn-topo`.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use cairn_topo::{Tablet, TabletType, Topo, TopoConfig};
use tokio_util::sync::CancellationToken;

use super::agent::Role;
use super::agent::{Agent, Status};
use super::config::AgentConfig;
use super::http::{self, AgentMetrics};
use crate::common::lock;
use crate::mysql::mysqld::{server_id_for_uid, Mysqld, MysqldConfig};

/// How the agent brings mysqld up at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StartPlan {
    /// Initialise the data directory if it is empty, then start (or adopt) mysqld.
    InitAndStart,
    /// Restore a backup first (or wait for one); `interrupted`: a previous restore
    /// left its marker behind and is redone.
    RestoreFirst { interrupted: bool },
}

/// Decides whether to restore before serving: only with `--restore-from-backup`,
/// and only when there is no data yet or a restore was interrupted (its marker is
/// there); existing data is never overwritten at start.
pub(super) fn plan_start(
    restore_from_backup: bool,
    interrupted_restore: bool,
    data_dir_empty: bool,
) -> StartPlan {
    if !restore_from_backup {
        return StartPlan::InitAndStart;
    }
    if interrupted_restore {
        return StartPlan::RestoreFirst { interrupted: true };
    }
    if data_dir_empty {
        return StartPlan::RestoreFirst { interrupted: false };
    }
    StartPlan::InitAndStart
}

/// Whether `dir` holds no data: missing, unreadable or empty.
fn data_dir_is_empty(dir: &Path) -> bool {
    match std::fs::read_dir(dir) {
        Ok(mut d) => d.next().is_none(),
        Err(_) => true,
    }
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
            server_id_for_uid(cfg.alias.uid),
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
            replication: Default::default(),
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

    let plan = plan_start(
        agent.cfg.restore_from_backup,
        agent.interrupted_restore(),
        data_dir_is_empty(&data_dir),
    );
    if let StartPlan::RestoreFirst { interrupted } = plan {
        if interrupted {
            tracing::warn!("a previous restore was interrupted; redoing it");
        }
        // While restoring (or waiting for a seed), the tablet is registered as
        // RESTORE with Health saying it does not serve; supervision is off.
        lock(&agent.status).busy_job = Some("restore-at-start".into());
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
        lock(&agent.status).busy_job = None;
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
    lock(&agent.status).mysqld_up = true;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_start_table() {
        let restore = |interrupted| StartPlan::RestoreFirst { interrupted };
        // (--restore-from-backup, restore marker present, data dir empty, plan)
        let cases = [
            (false, false, false, StartPlan::InitAndStart),
            (false, false, true, StartPlan::InitAndStart),
            (false, true, false, StartPlan::InitAndStart),
            (false, true, true, StartPlan::InitAndStart),
            (true, false, false, StartPlan::InitAndStart),
            (true, false, true, restore(false)),
            (true, true, false, restore(true)),
            (true, true, true, restore(true)),
        ];
        for (flag, marker, empty, want) in cases {
            assert_eq!(
                plan_start(flag, marker, empty),
                want,
                "flag {flag}, marker {marker}, empty {empty}"
            );
        }
    }

    #[test]
    fn missing_or_empty_data_dirs_are_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert!(data_dir_is_empty(&dir.path().join("missing")));
        assert!(data_dir_is_empty(dir.path()));
        std::fs::write(dir.path().join("ibdata1"), b"x").unwrap();
        assert!(!data_dir_is_empty(dir.path()));
    }
}
