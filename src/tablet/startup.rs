//! The agent's start and stop: `cairn tablet`'s entry point. Refuses a tablet
//! registered in another shard, prepares mysqld, takes the health lease and the HTTP
//! port, recovers an interrupted restore whatever the flags ([`super::recovery`]),
//! decides whether to restore before serving ([`plan_start`]; an interrupted
//! restore to a point is redone from its hold file, [`redo`]), registers the
//! tablet, starts the loops (health, lease, shard watch, jobs) and, on SIGINT/SIGTERM,
//! stops them, shuts mysqld down and revokes the lease, every step bounded
//! (`shutdown_bound`: the agent exits in time even when mysqld or a backup tool
//! hangs).
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

mod redo;
use redo::redo_point_in_time;

/// How long the agent's loops (and the job one of them runs, whose backup tools
/// are killed when it is cancelled) get, all together, to stop after SIGTERM
/// before they are aborted.
pub(super) const LOOPS_GRACE: Duration = Duration::from_secs(5);
/// How long aborted loops get to drop what they hold (the mysqld handle, the agent).
pub(super) const ABORT_WAIT: Duration = Duration::from_secs(1);
/// How long mysqld gets to shut down cleanly (SIGTERM) before it is killed.
pub(super) const MYSQLD_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(60);
/// How long revoking the health lease may take (Health expires by TTL otherwise).
pub(super) const REVOKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the runtime waits for blocking work (file copies) once the agent is done
/// (the binary's `shutdown_timeout`).
pub(super) const RUNTIME_WAIT: Duration = Duration::from_secs(5);

/// The steps of a stop after SIGTERM, each bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ShutdownSteps {
    /// Loops and the running job stopping on their own.
    pub loops_grace: Duration,
    /// Aborted loops letting go.
    pub abort_wait: Duration,
    /// mysqld's clean shutdown, then the wait after SIGKILL.
    pub mysqld_timeout: Duration,
    pub kill_wait: Duration,
    /// Revoking the lease.
    pub revoke: Duration,
    /// Blocking work at the end of the process.
    pub runtime: Duration,
}

/// The steps as the agent runs them.
pub(super) const SHUTDOWN_STEPS: ShutdownSteps = ShutdownSteps {
    loops_grace: LOOPS_GRACE,
    abort_wait: ABORT_WAIT,
    mysqld_timeout: MYSQLD_SHUTDOWN_TIMEOUT,
    kill_wait: crate::mysql::process::KILL_WAIT,
    revoke: REVOKE_TIMEOUT,
    runtime: RUNTIME_WAIT,
};

/// The longest a SIGTERM'd agent takes to exit once it serves, whatever hangs
/// (mariabackup, mysqld frozen, etcd unreachable): the sum of its bounded steps,
/// which run one after another. Pure.
pub(super) fn shutdown_bound(s: &ShutdownSteps) -> Duration {
    s.loops_grace + s.abort_wait + s.mysqld_timeout + s.kill_wait + s.revoke + s.runtime
}

/// How the agent brings mysqld up at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum StartPlan {
    /// Initialise the data directory if it is empty, then start (or adopt) mysqld.
    InitAndStart,
    /// Restore a backup first (or wait for one).
    RestoreFirst,
    /// A restore at start was interrupted: restore this backup again, whatever the
    /// flags.
    Redo(String),
    /// A restore to a point (at start, or an in-place job) was interrupted
    /// after the full backup was in place (while its binlogs were applied):
    /// restore to this point again, from the full backup, over the half-applied
    /// data ([`redo`]).
    RedoPointInTime(String),
    /// Do not start: say why.
    Refuse(String),
}

/// Decides how to bring mysqld up once an interrupted restore was recovered
/// (`redo`: the backup [`super::recovery::plan_recovery`] says to restore again):
/// redo it whatever the flags; otherwise restore only with `--restore-from-backup`
/// and only when there is no data yet (existing data is never overwritten at
/// start), and never on the tablet the Shard record names primary. Pure.
pub(super) fn plan_start(
    restore_from_backup: bool,
    redo: Option<String>,
    data_dir_empty: bool,
    is_primary: bool,
) -> StartPlan {
    if let Some(name) = redo {
        return StartPlan::Redo(name);
    }
    if !restore_from_backup || !data_dir_empty {
        return StartPlan::InitAndStart;
    }
    if is_primary {
        return StartPlan::Refuse(
            "--restore-from-backup: the shard names this tablet primary and a primary is never restored over; make another tablet primary first".into(),
        );
    }
    StartPlan::RestoreFirst
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
    let storage = cfg.storage.open().context("opening the backup storage")?;
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
    let held = super::pitr::read_hold(&cfg.tablet_dir);
    if let Some(h) = &held {
        tracing::warn!(target = %h.target, state = %h.state, restored_to = ?h.restored_to,
            "this tablet holds a point-in-time restore: it stays DRAINED with replication stopped (remove {} to end that)",
            cfg.tablet_dir.join(super::pitr::HOLD_FILE).display());
    }
    let agent = Arc::new(Agent {
        topo,
        mysqld: tokio::sync::Mutex::new(mysqld),
        status: Mutex::new(Status {
            tablet_type,
            type_unpublished: false,
            role: Role::Unknown,
            last_error: None,
            busy_job: None,
            job_run: None,
            archive_run: None,
            mysqld_up: false,
            restoring: None,
            replication: Default::default(),
            last_backup_second: None,
            pitr_hold: held.is_some(),
            binlog_head: None,
        }),
        lease,
        metrics: Arc::new(AgentMetrics::default()),
        http_port,
        cancel: cancel.clone(),
        health_writer: tokio::sync::Mutex::new(None),
        storage,
        cfg,
    });
    let mut loops = vec![
        tokio::spawn(http::serve(listener, agent.metrics.clone(), cancel.clone())),
        tokio::spawn(agent.clone().lease_loop()),
    ];

    // Whatever the flags: an interrupted restore is rolled back or redone first.
    let plan = agent
        .recover_interrupted_restore(is_primary, &data_dir)
        .await
        .map(|redo| {
            plan_start(
                agent.cfg.restore_from_backup,
                redo,
                data_dir_is_empty(&data_dir),
                is_primary,
            )
        });
    let plan = match plan {
        Ok(StartPlan::Refuse(why)) => Err(anyhow::anyhow!("{why}")),
        Ok(p) => match redo_point_in_time(
            &p,
            held.as_ref().map(|h| (h.state.as_str(), h.target.as_str())),
            agent
                .cfg
                .restore_to
                .as_ref()
                .map(|t| t.to_string())
                .as_deref(),
            is_primary,
        ) {
            // A killed agent leaves its mysqld running on the half-applied data
            // (and perhaps a binlog apply still feeding it): stopped first.
            Some(target) => agent
                .stop_orphan_mysqld(&data_dir)
                .await
                .map(|()| StartPlan::RedoPointInTime(target)),
            None => Ok(p),
        },
        other => other,
    };
    let plan = match plan {
        Ok(p) => p,
        Err(e) => {
            cancel.cancel();
            stop_loops(loops).await;
            return Err(e);
        }
    };
    if matches!(
        plan,
        StartPlan::RestoreFirst | StartPlan::Redo(_) | StartPlan::RedoPointInTime(_)
    ) {
        if let StartPlan::Redo(name) = &plan {
            tracing::warn!(backup = %name, "a previous restore was interrupted; redoing it");
        }
        if let StartPlan::RedoPointInTime(target) = &plan {
            tracing::warn!(%target,
                "a previous restore to a point was interrupted while its binlogs were applied; redoing it from the full backup"
            );
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
        let outcome = match &plan {
            // An interrupted restore to a point is redone as one (the hold file,
            // written before its apply, keeps the tablet DRAINED either way).
            StartPlan::RedoPointInTime(target) => agent
                .redo_point_in_time_at_start(target, held.as_ref().and_then(|h| h.job.as_deref()))
                .await
                .map(|()| true),
            StartPlan::Redo(_) if agent.cfg.restore_to.is_some() && held.is_some() => {
                match agent.cfg.restore_to.clone() {
                    Some(t) => agent
                        .restore_point_in_time_at_start(&t, None)
                        .await
                        .map(|()| true),
                    None => Ok(false),
                }
            }
            StartPlan::Redo(name) => agent.redo_restore_at_start(name).await.map(|()| true),
            _ if agent.cfg.restore_to.is_some() => {
                let target = agent.cfg.restore_to.clone();
                match target {
                    Some(t) => agent
                        .restore_point_in_time_at_start(&t, None)
                        .await
                        .map(|()| true),
                    None => Ok(false),
                }
            }
            _ => {
                agent
                    .restore_at_start(
                        agent.cfg.restore_from_backup_ts.as_deref(),
                        agent.cfg.wait_for_backup_interval,
                    )
                    .await
            }
        };
        health.abort();
        lock(&agent.status).busy_job = None;
        match outcome {
            Ok(true) => {}
            Ok(false) => agent.init_and_start_unless_restoring().await?,
            Err(e) => {
                // Not serving anything: leave no RESTORE type behind; the marker (if
                // any) makes the next start redo the restore.
                let _ = agent.publish_tablet(agent.cfg.base_type).await;
                cancel.cancel();
                stop_loops(loops).await;
                return Err(e);
            }
        }
    } else {
        agent.init_and_start_unless_restoring().await?;
    }
    {
        let mysqld = agent.mysqld.lock().await;
        mysqld
            .ensure_replication_user(&agent.cfg.repl_user, &agent.cfg.repl_password)
            .await
            .context("creating the replication user")?;
    }
    lock(&agent.status).mysqld_up = true;
    let tablet_type = if lock(&agent.status).pitr_hold && !is_primary {
        TabletType::Drained
    } else {
        tablet_type
    };
    agent
        .publish_tablet(tablet_type)
        .await
        .context("registering the tablet")?;
    agent.remove_drill_leftovers().await;
    agent
        .fail_orphaned_jobs(super::fence::AGENT_RESTARTED)
        .await;
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
    tracing::info!(
        bound_s = shutdown_bound(&SHUTDOWN_STEPS).as_secs(),
        "shutting down"
    );
    stop_loops(loops).await;
    agent.shutdown().await;
    Ok(())
}

/// Gives the loops [`LOOPS_GRACE`] (together) to end after the cancel, then aborts
/// the ones still running (a job stuck on a frozen mysqld among them) and gives
/// them [`ABORT_WAIT`] to let go.
async fn stop_loops(loops: Vec<tokio::task::JoinHandle<()>>) {
    let aborts: Vec<_> = loops.iter().map(|l| l.abort_handle()).collect();
    let all = futures::future::join_all(loops);
    tokio::pin!(all);
    if tokio::time::timeout(LOOPS_GRACE, &mut all).await.is_ok() {
        return;
    }
    tracing::warn!(grace = ?LOOPS_GRACE, "loops did not stop in time; aborting them");
    for a in &aborts {
        a.abort();
    }
    let _ = tokio::time::timeout(ABORT_WAIT, all).await;
}

impl Agent {
    /// Initialises (if empty) and starts mysqld, but never while a restore marker or
    /// kept old data exists: an empty data dir must not replace data being restored.
    async fn init_and_start_unless_restoring(&self) -> anyhow::Result<()> {
        let dir = &self.cfg.tablet_dir;
        for left in [super::recovery::MARKER, super::recovery::BEFORE_RESTORE] {
            if dir.join(left).exists() {
                bail!(
                    "{} exists: a restore is unfinished; refusing to initialise or start on the data directory",
                    dir.join(left).display()
                );
            }
        }
        self.init_and_start_mysqld().await
    }

    /// Clean stop: mysqld shut down, lease revoked (Health disappears at once).
    async fn shutdown(self: Arc<Self>) {
        let mut mysqld = self.mysqld.lock().await;
        if let Err(e) = mysqld.shutdown(MYSQLD_SHUTDOWN_TIMEOUT).await {
            tracing::warn!(error = %e, "mysqld did not shut down cleanly");
        }
        drop(mysqld);
        let Ok(agent) = Arc::try_unwrap(self) else {
            tracing::warn!("background loops still hold the agent; the lease will expire by TTL");
            return;
        };
        match tokio::time::timeout(REVOKE_TIMEOUT, agent.lease.revoke()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot revoke the lease; Health expires by TTL")
            }
            Err(_) => tracing::warn!("revoking the lease timed out; Health expires by TTL"),
        }
        tracing::info!("stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_start_table() {
        use StartPlan::*;
        let redo = || Some("b1".to_string());
        let refused = |p: &StartPlan| matches!(p, Refuse(_));
        // (--restore-from-backup, backup to redo, data dir empty, primary, plan; None = refused)
        let cases = [
            (false, None, false, false, Some(InitAndStart)),
            (false, None, true, false, Some(InitAndStart)),
            (false, None, true, true, Some(InitAndStart)),
            (true, None, false, false, Some(InitAndStart)),
            (true, None, false, true, Some(InitAndStart)),
            (true, None, true, false, Some(RestoreFirst)),
            (true, None, true, true, None),
            // An interrupted restore is redone whatever the flags.
            (false, redo(), false, false, Some(Redo("b1".into()))),
            (false, redo(), true, false, Some(Redo("b1".into()))),
            (true, redo(), false, false, Some(Redo("b1".into()))),
            (true, redo(), true, false, Some(Redo("b1".into()))),
        ];
        for (flag, r, empty, primary, want) in cases {
            let got = plan_start(flag, r.clone(), empty, primary);
            match want {
                Some(w) => assert_eq!(
                    got, w,
                    "flag {flag}, redo {r:?}, empty {empty}, primary {primary}"
                ),
                None => assert!(
                    refused(&got),
                    "flag {flag}, empty {empty}, primary {primary}: {got:?}"
                ),
            }
        }
    }

    #[test]
    fn shutdown_bound_table() {
        let s = |n: u64| Duration::from_secs(n);
        let steps = |g, a, m, k, r, rt| ShutdownSteps {
            loops_grace: s(g),
            abort_wait: s(a),
            mysqld_timeout: s(m),
            kill_wait: s(k),
            revoke: s(r),
            runtime: s(rt),
        };
        let cases = [
            (steps(0, 0, 0, 0, 0, 0), s(0)),
            (steps(5, 1, 60, 10, 5, 5), s(86)),
            (steps(5, 0, 0, 0, 0, 0), s(5)),
            (steps(0, 0, 30, 10, 0, 0), s(40)),
        ];
        for (st, want) in cases {
            assert_eq!(shutdown_bound(&st), want, "{st:?}");
        }
        // The bound the README states.
        assert_eq!(shutdown_bound(&SHUTDOWN_STEPS), s(86));
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
