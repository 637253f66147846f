//! Restores to a point (`--restore-to-pos`, `--restore-to-timestamp`), in place
//! (a restore job) and at start (`cairn tablet --restore-from-backup`): the chain
//! is planned from the shard's MANIFESTs and its archived binlog segments
//! ([`crate::backup::pitr::plan_chain_with_archive`]); the incrementals' binlogs
//! are downloaded through the verifying pipeline, and the archived files rebuilt
//! from their segments (each read back verified: compression checksum, age
//! authentication, length), into `DIR/pitr-binlogs/` and read, and the exact
//! transactions to apply are decided
//! ([`crate::backup::pitr::plan_apply`]) — all before the data directory is
//! touched, so a bad target, a hole or a corrupt file changes nothing. Then the
//! full backup is restored as any restore is, the binlogs are applied with
//! `mariadb-binlog | mariadb`, the server's position is checked against the plan
//! and set as its replication start, and the tablet ends DRAINED with
//! replication stopped.
//!
//! It stays so — across agent restarts — while the hold file
//! `DIR/point_in_time_restore` exists (written before the data is touched, so a
//! tablet whose apply was interrupted never replicates or serves either): the
//! role reconcile keeps it DRAINED and replication stopped. The hold ends when
//! the shard makes the tablet primary, when a plain restore replaces its data,
//! or when an operator removes the file.
//!
//! Calls `backup` (pitr planner, pipeline, storage), `mysql` (through the agent's
//! mysqld), `common`, `cairn-topo` and the agent's restore room.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use cairn_topo::{ArchiveRecord, Job, PointInTime, TabletType};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::agent::{Agent, JobRun, Role};
use super::recovery::{remove_dir_if_exists, sync_dir};
use crate::backup::binlog_archive::{list_segments, read_segment};
use crate::backup::engine::Progress;
use crate::backup::pipeline::{self, StoredBackup};
use crate::backup::pitr::segments::ArchivedFile;
use crate::backup::pitr::{
    format_position, parse_restore_to_pos, parse_restore_to_timestamp, plan_apply,
    plan_chain_with_archive, ApplyPlan, ArchiveListing, ChainPlan, DownloadedIncremental,
    RestoreTarget,
};
use crate::common::lock;
use crate::mysql::binlog::summarize;
use crate::mysql::binlog_apply::BinlogApply;
use crate::mysql::gtid::{format_gtid_list, parse_gtid_list, seq_of};
use crate::mysql::mysqld::Mysqld;

/// The hold file: while it exists the tablet stays DRAINED, replication stopped.
pub const HOLD_FILE: &str = "point_in_time_restore";
/// Where the chain's binlogs are downloaded (removed when the restore ends).
pub const BINLOG_DIR: &str = "pitr-binlogs";

/// The hold file's content: what the tablet holds, or was being brought to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// The target asked for.
    pub target: String,
    /// The full backup restored first.
    pub full_backup: String,
    /// `applying` until the binlogs are applied and checked, then `done`.
    pub state: String,
    /// Once done: the position the server holds and the last commit time.
    #[serde(default)]
    pub restored_to: Option<String>,
    /// The in-place restore job that wrote it (`None` for a restore at start):
    /// the one a redo at start reports to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
}

/// Reads the hold file; `None` if absent. An unreadable one counts as a hold.
pub fn read_hold(dir: &Path) -> Option<Hold> {
    let path = dir.join(HOLD_FILE);
    match fs::read(&path) {
        Ok(b) => Some(serde_json::from_slice(&b).unwrap_or_else(|e| Hold {
            target: String::new(),
            full_backup: String::new(),
            state: format!("unreadable ({e})"),
            restored_to: None,
            job: None,
        })),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => Some(Hold {
            target: String::new(),
            full_backup: String::new(),
            state: format!("unreadable ({e})"),
            restored_to: None,
            job: None,
        }),
    }
}

fn write_hold(dir: &Path, h: &Hold) -> anyhow::Result<()> {
    let path = dir.join(HOLD_FILE);
    let tmp = dir.join(format!("{HOLD_FILE}.tmp"));
    let json = serde_json::to_vec_pretty(h).context("encoding the hold file")?;
    let write = || -> std::io::Result<()> {
        let f = fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut &f, &json)?;
        f.sync_all()?;
        fs::rename(&tmp, &path)
    };
    write().with_context(|| format!("writing {}", path.display()))?;
    sync_dir(dir)
}

/// The problem a held tablet reports as its `last_error` while it stays held:
/// an unreadable hold file (it cannot be redone nor trusted). Pure.
pub(super) fn held_problem(state: &str) -> Option<String> {
    state.starts_with("unreadable").then(|| {
        format!(
            "the point-in-time hold file is {state}: the tablet stays DRAINED with replication \
             stopped on data that may be half-restored; restore it again (restore-from-backup) \
             or remove the hold file"
        )
    })
}

/// The target a job or the flags ask for: exactly one of the two. `now` bounds
/// a time target.
pub fn target_of(
    pos: Option<&str>,
    ts: Option<&str>,
    now: DateTime<Utc>,
) -> anyhow::Result<RestoreTarget> {
    match (pos, ts) {
        (Some(p), None) => Ok(RestoreTarget::Position(
            parse_restore_to_pos(p).map_err(anyhow::Error::msg)?,
        )),
        (None, Some(t)) => Ok(RestoreTarget::Time(
            parse_restore_to_timestamp(t, now).map_err(anyhow::Error::msg)?,
        )),
        (Some(_), Some(_)) => {
            bail!("--restore-to-pos and --restore-to-timestamp exclude each other")
        }
        (None, None) => {
            bail!("a point-in-time restore needs --restore-to-pos or --restore-to-timestamp")
        }
    }
}

/// `MariaDB/<pos> (last transaction committed at T)`: what a restore reached.
pub(super) fn restored_to(plan: &ApplyPlan) -> String {
    let when = plan
        .last_commit
        .and_then(|t| DateTime::<Utc>::from_timestamp(i64::from(t), 0))
        .map(|t| {
            format!(
                " (last applied transaction committed at {})",
                t.to_rfc3339_opts(SecondsFormat::Secs, true)
            )
        })
        .unwrap_or_else(|| " (no binlog transaction applied: the full backup's position)".into());
    format!("{}{when}", format_position(&plan.applied_to))
}

/// Whether the server's position `have` holds exactly what the plan applied:
/// each domain of `want` at the same sequence number. Pure.
pub fn position_matches(have: &str, want: &[crate::mysql::gtid::Gtid]) -> bool {
    let Ok(have) = parse_gtid_list(have.strip_prefix("MariaDB/").unwrap_or(have)) else {
        return false;
    };
    want.iter().all(|g| seq_of(&have, g.domain) == g.seq)
}

impl Agent {
    /// The chain to `target` from this shard's backups and archived binlog
    /// segments in storage.
    pub(super) async fn plan_point_in_time(
        &self,
        target: &RestoreTarget,
    ) -> anyhow::Result<ChainPlan> {
        let manifests = self.restorable_manifests().await?;
        let archive = self.archive_listing().await?;
        plan_chain_with_archive(&manifests, &archive, target).map_err(anyhow::Error::msg)
    }

    /// The shard's archived segments (storage is the truth) and when the
    /// archive was last known to hold everything (its record's `safe_at`).
    pub(super) async fn archive_listing(&self) -> anyhow::Result<ArchiveListing> {
        let (ks, shard) = (&self.cfg.keyspace, &self.cfg.shard);
        let segments = list_segments(self.storage()?, ks, shard)
            .await
            .context("listing the shard's archived binlog segments")?
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        let key = self.topo.keys().archive(ks, shard);
        let safe_at = self
            .topo
            .get::<ArchiveRecord>(&key)
            .await
            .context("reading the shard's archive record")?
            .and_then(|r| r.value.state.safe_at);
        Ok(ArchiveListing { segments, safe_at })
    }

    /// Rebuilds one archived source file from its segments into
    /// `root/<file.local_dir()>/<file.local_name()>`, each segment read back
    /// verified, and reads it.
    async fn fetch_archived_file(
        &self,
        root: &Path,
        file: &ArchivedFile,
    ) -> anyhow::Result<DownloadedIncremental> {
        let mut bytes = Vec::new();
        for p in &file.pieces {
            let seg = read_segment(
                self.storage()?,
                &self.cfg.keyspace,
                &self.cfg.shard,
                &p.segment,
                self.cfg.backup.identities.as_deref(),
            )
            .await
            .with_context(|| format!("reading archived segment {}", p.segment.format()))?;
            let skip = usize::try_from(p.from - p.segment.start)?;
            bytes.extend_from_slice(seg.get(skip..).unwrap_or_default());
        }
        let dir = root.join(file.local_dir());
        let name = file.local_name();
        let path = dir.join(&name);
        let (n, what) = (name.clone(), file.local_dir());
        let summary = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            fs::write(&path, &bytes).with_context(|| format!("writing {}", path.display()))?;
            summarize(&bytes[..]).with_context(|| format!("reading the rebuilt binlog {what}"))
        })
        .await
        .context("rebuilding an archived binlog")??;
        Ok(DownloadedIncremental {
            backup: file.local_dir(),
            files: vec![(n, summary)],
        })
    }

    /// [`Self::fetch_chain_into`] `DIR/pitr-binlogs/`.
    async fn fetch_and_plan_apply(
        &self,
        chain: &ChainPlan,
        progress: Arc<Progress>,
        cancel: &CancellationToken,
    ) -> anyhow::Result<(PathBuf, ApplyPlan)> {
        let root = self.cfg.tablet_dir.join(BINLOG_DIR);
        let plan = self
            .fetch_chain_into(&root, chain, progress, cancel)
            .await?;
        Ok((root, plan))
    }

    /// Downloads (verified, decrypted, decompressed) every incremental's files
    /// into `root/<backup>/`, rebuilds the archived files there, reads them all,
    /// and decides what to apply. `root` is emptied first.
    pub(super) async fn fetch_chain_into(
        &self,
        root: &Path,
        chain: &ChainPlan,
        progress: Arc<Progress>,
        cancel: &CancellationToken,
    ) -> anyhow::Result<ApplyPlan> {
        remove_dir_if_exists(root)?;
        let mut downloaded = Vec::new();
        for m in &chain.incrementals {
            let from = StoredBackup {
                storage: self.storage()?,
                keyspace: &self.cfg.keyspace,
                shard: &self.cfg.shard,
                name: &m.backup_name,
                manifest: m,
                identities: self.cfg.backup.identities.as_deref(),
            };
            pipeline::check_decryptable(from).await?;
            let dir = root.join(&m.backup_name);
            pipeline::restore_files(
                from,
                &dir,
                self.cfg.backup.concurrency.max(1),
                progress.clone(),
                cancel.clone(),
            )
            .await
            .with_context(|| format!("downloading the binlogs of {}", m.backup_name))?;
            let mut names: Vec<String> = m.file_entries.iter().map(|e| e.name.clone()).collect();
            names.sort();
            let read = tokio::task::spawn_blocking(move || {
                names
                    .into_iter()
                    .map(|n| {
                        let f =
                            fs::File::open(dir.join(&n)).with_context(|| format!("opening {n}"))?;
                        let s = summarize(std::io::BufReader::with_capacity(1 << 20, f))
                            .with_context(|| format!("reading binlog {n}"))?;
                        Ok((n, s))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()
            })
            .await
            .context("reading the binlogs")?
            .with_context(|| format!("backup {}", m.backup_name))?;
            downloaded.push(DownloadedIncremental {
                backup: m.backup_name.clone(),
                files: read,
            });
        }
        for f in &chain.archived {
            if cancel.is_cancelled() {
                bail!("cancelled");
            }
            downloaded.push(self.fetch_archived_file(root, f).await?);
        }
        let full_pos = parse_gtid_list(
            chain
                .full
                .position
                .strip_prefix("MariaDB/")
                .unwrap_or(&chain.full.position),
        )?;
        plan_apply(&full_pos, &downloaded, &chain.target).map_err(anyhow::Error::msg)
    }

    /// Applies `plan` to the running server, checks where it ended, and makes
    /// that the server's replication start (replication stays stopped).
    async fn apply_plan(
        &self,
        mysqld: &Mysqld,
        root: &Path,
        plan: &ApplyPlan,
        cancel: &CancellationToken,
    ) -> anyhow::Result<()> {
        apply_chain(mysqld, root, plan, cancel).await?;
        mysqld
            .set_replication_position(&format_position(&plan.applied_to))
            .await
            .context("setting the replication position after the apply")?;
        Ok(())
    }

    /// Writes the hold and marks the agent held: from now on it never replicates.
    fn hold(&self, h: &Hold) -> anyhow::Result<()> {
        lock(&self.status).pitr_hold = true;
        write_hold(&self.cfg.tablet_dir, h)
    }

    /// Ends the hold (a plain restore replaced the data, or the tablet became
    /// primary).
    pub(super) fn release_hold(&self) {
        let dir = &self.cfg.tablet_dir;
        if lock(&self.status).pitr_hold || dir.join(HOLD_FILE).exists() {
            if let Err(e) = fs::remove_file(dir.join(HOLD_FILE))
                .and_then(|()| fs::File::open(dir).and_then(|d| d.sync_all()))
            {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(error = %e, "cannot remove the point-in-time hold file");
                    return;
                }
            }
            lock(&self.status).pitr_hold = false;
            tracing::info!("point-in-time hold released: the tablet follows the shard again");
        }
    }

    /// A held tablet: read-only, replication stopped, DRAINED.
    pub(super) async fn keep_held(&self, mysqld: &Mysqld, current: &Role) -> anyhow::Result<()> {
        if matches!(current, Role::Primary | Role::Unknown) {
            mysqld
                .set_read_only(true)
                .await
                .context("making mysqld read-only")?;
        }
        if mysqld.replication_running().await {
            tracing::warn!("a point-in-time restored tablet was replicating; stopping replication");
            mysqld
                .stop_replication()
                .await
                .context("stopping replication")?;
        }
        self.set_role(Role::Orphan);
        Ok(())
    }

    /// Records the chain and (when done) where the restore ended in the job.
    pub(super) async fn record_point_in_time(
        &self,
        id: &str,
        lines: &[String],
        reached: Option<String>,
    ) {
        let key = self.topo.keys().job(id);
        let r = self
            .topo
            .update_with::<Job, _>(&key, |cur| {
                let Some(mut j) = cur else { return Ok(None) };
                let p = j.point_in_time.get_or_insert_with(PointInTime::default);
                p.plan = lines.to_vec();
                if reached.is_some() {
                    p.restored_to = reached.clone();
                }
                Ok(Some(j))
            })
            .await;
        if let Err(e) = r {
            tracing::warn!(job = %id, error = %e, "cannot record the point-in-time plan in the job");
        }
    }

    /// A point-in-time restore job on a running tablet. Dry run: plans and
    /// records the chain, changes nothing. Otherwise: everything that can refuse
    /// is done first; then the full backup is swapped in, the binlogs applied,
    /// and the tablet ends DRAINED with replication stopped.
    pub(super) async fn run_point_in_time_job(
        &self,
        job: &Job,
        pit: &PointInTime,
        progress: Arc<Progress>,
        run: &JobRun,
    ) -> anyhow::Result<String> {
        let target = target_of(
            pit.restore_to_pos.as_deref(),
            pit.restore_to_timestamp.as_deref(),
            Utc::now(),
        )?;
        let chain = self.plan_point_in_time(&target).await?;
        let lines = chain.describe();
        for l in &lines {
            tracing::info!(target = %target, "point-in-time chain: {l}");
        }
        self.record_point_in_time(&job.id, &lines, None).await;
        if pit.dry_run {
            return Ok(chain.full.backup_name.clone());
        }
        let server_version = self.mysqld.lock().await.binary_version().to_string();
        self.check_fits(&chain.full, &server_version)?;
        self.check_decryptable(&chain.full).await?;
        let result = self
            .fetch_and_plan_apply(&chain, progress.clone(), &run.cancel)
            .await;
        let (root, plan) = match result {
            Ok(x) => x,
            Err(e) => {
                let _ = remove_dir_if_exists(&self.cfg.tablet_dir.join(BINLOG_DIR));
                return Err(anyhow::anyhow!("{e:#} (nothing was changed)"));
            }
        };
        let reached = restored_to(&plan);
        let original = self.tablet_type();
        // Refused or failed before the swap, the tablet is back in service on its
        // old data (the restore room saw to it).
        let swapped = self
            .restore_manifest_in_place(&chain.full, original, progress, run, false)
            .await;
        if let Err(e) = swapped {
            let _ = remove_dir_if_exists(&root);
            return Err(e);
        }
        // Swapped in (mysqld up, replication reset, the job still holds the
        // tablet): held from here on, whatever happens, the tablet never replicates
        // past the point or serves half-applied data.
        let held = self.hold(&Hold {
            target: target.to_string(),
            full_backup: chain.full.backup_name.clone(),
            state: "applying".into(),
            restored_to: None,
            job: Some(job.id.clone()),
        });
        let applied = match held {
            Err(e) => Err(e),
            Ok(()) => {
                let mysqld = self.mysqld.lock().await;
                self.apply_plan(&mysqld, &root, &plan, &run.cancel).await
            }
        };
        let _ = remove_dir_if_exists(&root);
        self.publish_tablet(TabletType::Drained)
            .await
            .context("switching to DRAINED")?;
        applied.context(
            "the full backup was restored but applying the binlogs failed; the tablet stays \
             DRAINED with replication stopped: restore again",
        )?;
        self.hold(&Hold {
            target: target.to_string(),
            full_backup: chain.full.backup_name.clone(),
            state: "done".into(),
            restored_to: Some(reached.clone()),
            job: Some(job.id.clone()),
        })?;
        self.record_point_in_time(&job.id, &lines, Some(reached.clone()))
            .await;
        tracing::info!(target = %target, restored_to = %reached, "point-in-time restore done: the tablet is DRAINED with replication stopped");
        Ok(chain.full.backup_name.clone())
    }

    /// `cairn tablet --restore-from-backup --restore-to-…`: the same restore
    /// into an empty tablet at start. Nothing is touched until the chain is
    /// planned and its binlogs are downloaded and checked.
    /// `job`: the interrupted in-place job a redo finishes for (kept in the hold).
    pub(super) async fn restore_point_in_time_at_start(
        &self,
        target: &RestoreTarget,
        job: Option<&str>,
    ) -> anyhow::Result<()> {
        let chain = self.plan_point_in_time(target).await?;
        for l in chain.describe() {
            tracing::info!(target = %target, "point-in-time chain: {l}");
        }
        fs::create_dir_all(&self.cfg.tablet_dir)
            .with_context(|| format!("creating {}", self.cfg.tablet_dir.display()))?;
        let started = Instant::now();
        let (root, plan) = self
            .fetch_and_plan_apply(&chain, Arc::new(Progress::default()), &self.cancel)
            .await
            .inspect_err(|_| {
                let _ = remove_dir_if_exists(&self.cfg.tablet_dir.join(BINLOG_DIR));
            })?;
        let downloaded_ms = started.elapsed().as_millis() as u64;
        self.hold(&Hold {
            target: target.to_string(),
            full_backup: chain.full.backup_name.clone(),
            state: "applying".into(),
            restored_to: None,
            job: job.map(String::from),
        })?;
        self.restore_backup_at_start(&chain.full).await?;
        let restored_ms = started.elapsed().as_millis() as u64;
        {
            let mysqld = self.mysqld.lock().await;
            self.apply_plan(&mysqld, &root, &plan, &self.cancel).await?;
        }
        let _ = remove_dir_if_exists(&root);
        let reached = restored_to(&plan);
        self.hold(&Hold {
            target: target.to_string(),
            full_backup: chain.full.backup_name.clone(),
            state: "done".into(),
            restored_to: Some(reached.clone()),
            job: job.map(String::from),
        })?;
        tracing::info!(target = %target, restored_to = %reached, download_ms = downloaded_ms,
            full_restore_ms = restored_ms - downloaded_ms,
            apply_ms = started.elapsed().as_millis() as u64 - restored_ms,
            "point-in-time restore done: the tablet is DRAINED with replication stopped");
        Ok(())
    }
}

/// Applies `plan`'s steps to the running server `mysqld` (`mariadb-binlog |
/// mariadb` over its socket, the binlogs under `root/<step>/`) and checks that
/// it ends exactly where the plan says. Shared by point-in-time restores and
/// drills to now.
pub(super) async fn apply_chain(
    mysqld: &Mysqld,
    root: &Path,
    plan: &ApplyPlan,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    for step in &plan.steps {
        let started = Instant::now();
        let dir = root.join(&step.backup);
        mysqld
            .apply_binlogs(
                &BinlogApply {
                    dir: &dir,
                    files: &step.files,
                    start: &format_gtid_list(&step.start),
                    stop: &format_gtid_list(&step.stop),
                },
                cancel,
            )
            .await
            .with_context(|| format!("applying the binlogs of {}", step.backup))?;
        tracing::info!(backup = %step.backup, files = step.files.len(), transactions = step.transactions,
            stop = %format_gtid_list(&step.stop), elapsed_ms = started.elapsed().as_millis() as u64, "binlogs applied");
        crate::common::failpoint::hit("pitr-after-apply-step");
    }
    let have = mysqld
        .position()
        .await
        .context("reading the position after the apply")?;
    if !position_matches(&have, &plan.applied_to) {
        bail!(
            "the binlogs were applied but the server holds {have}, not {}",
            format_position(&plan.applied_to)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn exactly_one_target_and_positions_compared_per_domain() {
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 14, 0, 0).unwrap();
        assert!(target_of(Some("MariaDB/0-1-5"), None, now).is_ok());
        assert!(target_of(None, Some("2026-11-25T13:59:59Z"), now).is_ok());
        for (p, t) in [
            (Some("MariaDB/0-1-5"), Some("2026-11-25T13:59:59Z")),
            (None, None),
            (Some("0-1-5"), None),
            (None, Some("2026-11-25T14:00:01Z")),
        ] {
            assert!(target_of(p, t, now).is_err(), "{p:?} {t:?}");
        }
        let want = parse_gtid_list("0-101-7,1-5-3").unwrap();
        assert!(position_matches("MariaDB/0-101-7,1-5-3", &want));
        assert!(position_matches("0-102-7,1-5-3,2-1-1", &want));
        assert!(!position_matches("0-101-8,1-5-3", &want));
        assert!(!position_matches("0-101-7", &want));
        assert!(!position_matches("garbage", &want));
    }

    #[test]
    fn only_an_unreadable_hold_is_a_problem() {
        assert!(held_problem("unreadable (EOF while parsing)")
            .unwrap()
            .contains("unreadable (EOF"));
        assert_eq!(held_problem("applying"), None);
        assert_eq!(held_problem("done"), None);
    }

    #[test]
    fn the_hold_file_round_trips_and_an_unreadable_one_still_holds() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(read_hold(d.path()), None);
        let h = Hold {
            target: "MariaDB/0-1-5".into(),
            full_backup: "b".into(),
            state: "done".into(),
            restored_to: Some("MariaDB/0-1-5".into()),
            job: Some("j1".into()),
        };
        write_hold(d.path(), &h).unwrap();
        assert_eq!(read_hold(d.path()), Some(h));
        fs::write(d.path().join(HOLD_FILE), b"{").unwrap();
        assert!(read_hold(d.path()).unwrap().state.starts_with("unreadable"));
    }
}
