//! The DRILL job: prove that a backup restores and comes up, beside a tablet that
//! keeps serving. The backup named by the job is restored through the same engine
//! code as a real restore ([`engine::restore_to_staging`]: every byte verified)
//! into a scratch directory under the tablet dir (`drill-<id>`), a second mysqld
//! is started on it (loopback port, own socket and pid file, no binary log, no
//! replication, small buffer pool), and checked: `CHECK TABLE` on every table, the
//! restored GTID position against the MANIFEST's, and the row counts of the
//! largest tables ([`checks`]). The scratch server is then shut down (killed if it
//! will not stop) and the directory removed: always, on failure and on cancel too
//! ([`Scratch`], whose drop kills and removes what the normal path did not). The
//! tablet's own mysqld, data directory, type and replication are never touched.
//!
//! A drill to now (the job's `point_in_time` set, with no target of its own)
//! also plans the chain of incrementals and archived binlog segments from the
//! backup to the newest archived transaction, downloads and verifies its
//! binlogs before the restore, applies them to the scratch server (which then
//! keeps a binary log of its own) and checks the position against the chain's
//! end ([`to_now`]); the plan and the position reached go into the job's
//! `point_in_time`. With nothing to apply (no archive and no incrementals, or
//! nothing written since the backup) it drills the full backup alone and its
//! outcome says so.
//!
//! Before anything is written the drill is refused, with the reason, when the
//! disk cannot hold it (the binlogs of a chain included) ([`check_drill_room`]), when the tablet is PRIMARY, or when
//! the backup is incremental; a refusal fails the job but is no verdict on the
//! backup. Every other outcome goes into the backup's record
//! ([`drill::record_drill`]): `verified_at`, `drill_seconds`, `drill_result`,
//! `drill_error`. A failed drill is logged at error level and fails the job.
//!
//! Failpoints: `drill-after-start` (the agent dies with the scratch server up;
//! the next start removes it, [`remove_leftovers`]), `drill-before-check` (a
//! pause, to cancel a drill midway).
//!
//! Calls `backup` (engine, storage, catalog, drill), `mysql` (a second
//! [`Mysqld`]), `common` and `cairn-topo`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use cairn_topo::{Job, TabletType};
use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::agent::{Agent, JobDone, JobRun};
use crate::backup::drill::{self, check_drill_room, one_line, DrillOutcome, DrillStages};
use crate::backup::engine::{self, Progress};
use crate::backup::manifest::Manifest;
use crate::backup::pitr::ChainPlan;
use crate::backup::storage::StorageError;
use crate::common::failpoint;
use crate::mysql::flavor::DetectedServer;
use crate::mysql::mysqld::{Mysqld, MysqldConfig};

#[path = "drill/checks.rs"]
pub mod checks;
#[path = "drill/inspect.rs"]
mod inspect;
#[path = "drill/to_now.rs"]
pub mod to_now;

/// Prefix of a drill's scratch directory under the tablet dir.
pub const SCRATCH_PREFIX: &str = "drill-";

/// How long the scratch server gets to shut down cleanly before it is killed.
const SCRATCH_SHUTDOWN: Duration = Duration::from_secs(30);

/// How long the server of an interrupted drill gets before it is killed.
const LEFTOVER_SHUTDOWN: Duration = Duration::from_secs(2);

/// What a drill restores and starts: the backup's MANIFEST, the tablet's server
/// binary and its settings (the scratch server's are derived from them), and
/// for a drill to now the chain to apply.
struct DrillTarget<'a> {
    m: &'a Manifest,
    server: DetectedServer,
    tablet_cfg: &'a MysqldConfig,
    chain: Option<&'a ChainPlan>,
    /// The job, whose `point_in_time` records where a drill to now got.
    job_id: &'a str,
}

/// Why a drill did not succeed: refused before it touched anything (no verdict
/// on the backup), or failed (the backup's record says so).
enum DrillError {
    Refused(anyhow::Error),
    Failed(anyhow::Error),
}

/// The scratch directory of a drill and the server started on it. Whatever
/// [`Scratch::close`] did not get to do is done on drop: the server killed,
/// the directory removed.
struct Scratch {
    dir: PathBuf,
    server: Option<Mysqld>,
    /// The server accepted connections: it is shut down cleanly. One that never
    /// came up (failed or stopped while starting) is killed: a starting mariadbd
    /// may not act on SIGTERM for long, and its data is thrown away anyway.
    up: bool,
}

impl Scratch {
    /// Claims `dir`, removing what an earlier drill of the same id left.
    fn create(dir: PathBuf) -> anyhow::Result<Scratch> {
        remove_scratch(&dir)?;
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Scratch {
            dir,
            server: None,
            up: false,
        })
    }

    /// Stops the server (one that is up cleanly, killed after
    /// [`SCRATCH_SHUTDOWN`]; any other killed) and removes the directory.
    async fn close(mut self) -> anyhow::Result<()> {
        if let Some(mut m) = self.server.take() {
            if self.up {
                m.shutdown(SCRATCH_SHUTDOWN)
                    .await
                    .context("stopping the drill's mysqld")?;
            } else {
                kill_and_wait(&m).await?;
            }
        }
        remove_scratch(&self.dir)
    }
}

/// SIGKILLs the server this drill started and waits (bounded) until it is gone.
async fn kill_and_wait(m: &Mysqld) -> anyhow::Result<()> {
    m.kill();
    let until = Instant::now() + crate::mysql::process::KILL_WAIT;
    while m.is_running() {
        if Instant::now() >= until {
            anyhow::bail!("the drill's mysqld survived SIGKILL");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(m) = self.server.take() {
            if m.is_running() {
                tracing::warn!(dir = %self.dir.display(), "killing the drill's mysqld");
                m.kill();
                let until = Instant::now() + crate::mysql::process::KILL_WAIT;
                while m.is_running() && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
        if self.dir.exists() {
            if let Err(e) = remove_scratch(&self.dir) {
                tracing::error!(error = %format!("{e:#}"), "cannot remove the drill's scratch directory");
            }
        }
    }
}

fn remove_scratch(dir: &Path) -> anyhow::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", dir.display())),
    }
}

/// The scratch directory name of job `id`: its random suffix, short, so the
/// scratch server's socket path stays within the kernel's limit. Pure.
pub fn scratch_name(id: &str) -> String {
    let tail: String = id
        .rsplit('-')
        .next()
        .unwrap_or(id)
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(16)
        .collect();
    format!(
        "{SCRATCH_PREFIX}{}",
        if tail.is_empty() { "job" } else { &tail }
    )
}

/// The scratch server's settings: the tablet's (sizes, start timeout, extra
/// flags), in `dir`, on loopback `port`, with a small buffer pool, no replica
/// start, no event scheduler, and no binary log unless `binlog` (a drill to
/// now: the applied transactions' GTIDs are the position it checks; the log
/// stays in the scratch directory). Pure.
pub fn scratch_config(tablet: &MysqldConfig, dir: &Path, port: u16, binlog: bool) -> MysqldConfig {
    let mut c = tablet.clone();
    c.tablet_dir = dir.to_path_buf();
    c.port = port;
    c.bind_address = "127.0.0.1".into();
    c.innodb_buffer_pool_size = "32M".into();
    // The tablet beside it serves: the drill's server yields the CPU and disk.
    c.background = true;
    // Appended last, so they override the tablet's own flags.
    if !binlog {
        c.extra_args
            .extend(["--skip-log-bin", "--skip-log-slave-updates"].map(String::from));
    }
    c.extra_args.extend(
        [
            "--skip-slave-start",
            "--event-scheduler=DISABLED",
            "--read-only=ON",
        ]
        .map(String::from),
    );
    c
}

/// A free TCP port on loopback (the kernel's pick; free when asked).
fn free_loopback_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free loopback port")?;
    Ok(l.local_addr()
        .context("finding a free loopback port")?
        .port())
}

/// Runs `f` unless `cancel` fires first.
async fn unless_cancelled<T>(
    cancel: &CancellationToken,
    f: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::select! {
        r = f => r,
        () = cancel.cancelled() => Err(anyhow!("stopped")),
    }
}

/// Removes what drills of a previous agent left (it died mid-drill): their
/// servers are stopped, their directories removed. Run at start, before any job.
async fn remove_leftovers(tablet_dir: &Path, server: &DetectedServer, base: &MysqldConfig) {
    let Ok(entries) = std::fs::read_dir(tablet_dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with(SCRATCH_PREFIX) || !e.path().is_dir() {
            continue;
        }
        let dir = e.path();
        tracing::warn!(dir = %dir.display(), "removing what an interrupted drill left");
        // Its data is thrown away: a moment to stop, then killed (a server
        // still starting may not act on SIGTERM for long).
        if let Ok(mut m) = Mysqld::with_server(scratch_config(base, &dir, 0, false), server.clone())
        {
            if let Err(e) = m.shutdown(LEFTOVER_SHUTDOWN).await {
                tracing::error!(error = %format!("{e:#}"), "cannot stop an interrupted drill's mysqld");
                continue;
            }
        }
        if let Err(e) = remove_scratch(&dir) {
            tracing::error!(error = %format!("{e:#}"), "cannot remove an interrupted drill's directory");
        }
    }
}

impl Agent {
    /// Removes what drills of a previous agent left (see [`remove_leftovers`]).
    pub(super) async fn remove_drill_leftovers(&self) {
        let (server, cfg) = {
            let g = self.mysqld.lock().await;
            let server = DetectedServer {
                flavor: g.flavor(),
                binary: g.binary().to_path_buf(),
                version: g.binary_version().to_string(),
            };
            (server, g.config().clone())
        };
        remove_leftovers(&self.cfg.tablet_dir, &server, &cfg).await;
    }

    /// A DRILL job (see the module doc). Its outcome is the backup it drilled and
    /// a message with the stages' times.
    pub(super) async fn run_drill(
        self: &Arc<Self>,
        job: &Job,
        run: &JobRun,
        progress: Arc<Progress>,
    ) -> Result<JobDone, (anyhow::Error, Option<String>)> {
        let Some(name) = job.backup_name.clone() else {
            return Err((anyhow!("a DRILL job must name the backup to drill"), None));
        };
        let refused = |e: anyhow::Error| (e.context("drill refused"), Some(name.clone()));
        if let Some(p) = &job.point_in_time {
            if p.restore_to_pos.is_some() || p.restore_to_timestamp.is_some() || p.dry_run {
                return Err(refused(anyhow!(
                    "a drill goes to the newest archived transaction (--to-now) only: no \
                     position, time or dry run"
                )));
            }
        }
        if self.tablet_type() == TabletType::Primary {
            return Err(refused(anyhow!(
                "tablet is PRIMARY: drills run on a spare or a replica"
            )));
        }
        let reporter = self.spawn_progress_reporter(job.id.clone(), progress.clone());
        let mut stages = DrillStages::default();
        let mut notes = Vec::new();
        let body = self
            .drill_body(job, &name, run, progress, &mut stages, &mut notes)
            .await;
        reporter.abort();
        let outcome = |result| DrillOutcome {
            result,
            seconds: stages.total_seconds(),
            at: Utc::now(),
        };
        let e = match body {
            Err(DrillError::Refused(e)) => return Err(refused(e)),
            // Stopped (cancelled, lease lost, agent stopping): no verdict on the backup.
            Err(DrillError::Failed(e)) if run.stopped() => return Err((e, Some(name))),
            Err(DrillError::Failed(e)) => e,
            Ok(()) => {
                let o = outcome(Ok(()));
                let mut message = format!(
                    "drill of backup {name} succeeded in {:.1}s ({})",
                    o.seconds,
                    stages.summary()
                );
                for n in &notes {
                    message.push_str("; ");
                    message.push_str(n);
                }
                drill::record_drill(&self.topo, &job.keyspace, &job.shard, &name, &o)
                    .await
                    .map_err(|e| (e.context("the drill succeeded"), Some(name.clone())))?;
                tracing::info!(backup = %name, seconds = o.seconds, stages = %stages.summary(), "drill succeeded");
                return Ok(JobDone {
                    backup_name: Some(name),
                    message: Some(message),
                });
            }
        };
        let why = one_line(&format!("{e:#}"));
        let o = outcome(Err(why.clone()));
        tracing::error!(backup = %name, keyspace = %job.keyspace, shard = %job.shard,
            error = %why, stages = %stages.summary(), "RESTORE DRILL FAILED: the backup did not restore and check cleanly");
        let e = e.context(format!(
            "drill of backup {name} failed after {:.1}s ({})",
            o.seconds,
            stages.summary()
        ));
        if let Err(rec) =
            drill::record_drill(&self.topo, &job.keyspace, &job.shard, &name, &o).await
        {
            return Err((
                e.context(format!("and its outcome was not recorded: {rec:#}")),
                Some(name),
            ));
        }
        Err((e, Some(name)))
    }

    async fn drill_body(
        &self,
        job: &Job,
        name: &str,
        run: &JobRun,
        progress: Arc<Progress>,
        stages: &mut DrillStages,
        notes: &mut Vec<String>,
    ) -> Result<(), DrillError> {
        use DrillError::{Failed, Refused};
        let (ks, shard) = (job.keyspace.as_str(), job.shard.as_str());
        let storage = self.storage().map_err(Refused)?;
        let m: Manifest = match storage.read_manifest(ks, shard, name).await {
            Ok(m) => m,
            Err(StorageError::NotFound(_)) => {
                return Err(Failed(anyhow!(
                    "backup {name} has no MANIFEST in storage (gone, or never complete)"
                )))
            }
            Err(e) => {
                return Err(Failed(
                    anyhow::Error::new(e).context(format!("reading the MANIFEST of {name}")),
                ))
            }
        };
        if m.is_incremental() {
            return Err(Refused(anyhow!(
                "backup {name} is incremental (binary logs): only a full backup is drilled"
            )));
        }
        m.check_restorable()
            .map_err(|e| Failed(anyhow!("backup {name} cannot be restored: {e}")))?;
        let (server, tablet_cfg) = {
            let g = self.mysqld.lock().await;
            let server = DetectedServer {
                flavor: g.flavor(),
                binary: g.binary().to_path_buf(),
                version: g.binary_version().to_string(),
            };
            (server, g.config().clone())
        };
        self.check_fits(&m, &server.version).map_err(Refused)?;
        self.check_decryptable(&m).await.map_err(Refused)?;
        let free = super::disk::free_bytes(&self.cfg.tablet_dir).map_err(Refused)?;
        // To now: the chain is planned before anything is written; a gap fails
        // the drill (the backup cannot be brought to now), naming the GTIDs.
        let chain = match job.point_in_time {
            None => None,
            Some(_) => Some(self.plan_drill_chain(&job.id, &m).await.map_err(Failed)?),
        };
        // Nothing after the backup (no archive, no incrementals, or nothing
        // written since): the drill to now is the full backup's, and says so.
        let chain = match chain {
            Some(c) if to_now::nothing_to_apply(&c) => {
                notes.push(to_now::full_alone_note(&m));
                self.record_point_in_time(&job.id, &c.describe(), Some(m.position.clone()))
                    .await;
                None
            }
            chain => chain,
        };
        let binlog_bytes = chain.as_ref().map_or(0, to_now::chain_binlog_bytes);
        check_drill_room(&m, binlog_bytes, free).map_err(|why| Refused(anyhow!("{why}")))?;

        let dir = self.cfg.tablet_dir.join(scratch_name(&job.id));
        let mut scratch = Scratch::create(dir.clone()).map_err(Refused)?;
        let target = DrillTarget {
            m: &m,
            server,
            tablet_cfg: &tablet_cfg,
            chain: chain.as_ref(),
            job_id: &job.id,
        };
        let result = self
            .drill_stages(&mut scratch, target, run, progress, stages, notes)
            .await;
        // Stopped and removed, whatever happened, before the verdict is written.
        if let Err(e) = scratch.close().await {
            tracing::error!(error = %format!("{e:#}"), dir = %dir.display(), "cannot clean up after the drill");
            notes.push(format!(
                "cleaning up failed: {}",
                one_line(&format!("{e:#}"))
            ));
        }
        result.map_err(Failed)
    }

    /// Restore, start and check, each timed into `stages`.
    async fn drill_stages(
        &self,
        scratch: &mut Scratch,
        t: DrillTarget<'_>,
        run: &JobRun,
        progress: Arc<Progress>,
        stages: &mut DrillStages,
        notes: &mut Vec<String>,
    ) -> anyhow::Result<()> {
        let (m, name) = (t.m, &t.m.backup_name);
        // A chain's binlogs are downloaded and verified before the restore.
        let apply = match t.chain {
            None => None,
            Some(chain) => {
                let clock = Instant::now();
                let fetched = self
                    .fetch_drill_chain(&scratch.dir, chain, progress.clone(), &run.cancel)
                    .await;
                stages.add_apply(clock.elapsed());
                Some(fetched?)
            }
        };
        tracing::info!(backup = %name, dir = %scratch.dir.display(), "drill: restoring into a scratch directory");
        let clock = Instant::now();
        let restored = engine::restore_to_staging(engine::RestoreParams {
            storage: self.storage()?,
            keyspace: &self.cfg.keyspace,
            shard: &self.cfg.shard,
            manifest: m,
            staging: &scratch.dir.join("data"),
            cfg: &self.cfg.backup,
            server_version: &t.server.version,
            progress,
            cancel: run.cancel.clone(),
        })
        .await;
        stages.restore = Some(clock.elapsed());
        restored.with_context(|| format!("restoring backup {name}"))?;

        let clock = Instant::now();
        let cfg = scratch_config(
            t.tablet_cfg,
            &scratch.dir,
            free_loopback_port()?,
            apply.is_some(),
        );
        let srv = scratch.server.insert(Mysqld::with_server(cfg, t.server)?);
        let started = unless_cancelled(&run.cancel, srv.start()).await;
        stages.start = Some(clock.elapsed());
        started.context("starting mysqld on the restored data")?;
        scratch.up = true;

        failpoint::hit("drill-after-start");
        let srv = scratch
            .server
            .as_ref()
            .context("the drill's mysqld is gone")?;
        let mut want = m.position.clone();
        if let Some(plan) = &apply {
            let clock = Instant::now();
            let applied = unless_cancelled(
                &run.cancel,
                to_now::apply_to_scratch(srv, &scratch.dir, m, plan, &run.cancel),
            )
            .await;
            stages.add_apply(clock.elapsed());
            applied.context("applying the chain to now")?;
            want = self
                .record_drill_reached(t.job_id, t.chain, plan, notes)
                .await;
        }

        let clock = Instant::now();
        let check = async {
            failpoint::pause("drill-before-check").await;
            inspect::check_restored(srv, &want, notes).await
        };
        let checked = unless_cancelled(&run.cancel, check).await;
        stages.check = Some(clock.elapsed());
        checked
    }
}

#[cfg(test)]
#[path = "drill/tests.rs"]
mod tests;
