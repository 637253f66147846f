//! Restores: at start (`--restore-from-backup`, optionally waiting for a seed
//! backup) and in place (a restore job on a running tablet).
//!
//! Both restore into a staging directory first, verifying every byte, and only then
//! swap it in, so corrupt or missing data is never served. A marker file
//! (`restore_in_progress`) is written before the data directory is touched and
//! removed after the position is set; an agent that finds it at start redoes the
//! restore. Which backup, and whether to restore, start empty, wait or refuse, are
//! pure decisions ([`choose_backup`], [`plan_seed`]) with table tests.
//!
//! Calls `backup` (engine, storage, MANIFEST), `mysql` (through the agent's mysqld),
//! `common` and `cairn-topo`.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use cairn_topo::watch::WatchEvent;
use cairn_topo::TabletType;

use super::agent::Agent;
use super::agent::Role;
use crate::backup::engine::{self, Progress};
use crate::backup::manifest::{parse_backup_timestamp, Manifest};
use crate::backup::storage::BackupInfo;
use crate::common::lock;

/// What a restore should use, decided from a storage listing.
#[derive(Debug, Clone, PartialEq)]
pub enum SeedChoice {
    /// Restore this backup.
    Backup(Box<Manifest>),
    /// The shard has no backup at all: start empty (a new shard).
    NoBackup,
    /// Backups exist but none is complete (or none at or before the timestamp).
    NoCompleteBackup(String),
}

/// Picks the newest complete backup, at or before `at_or_before` if given. Pure.
pub fn choose_backup(
    backups: &[BackupInfo],
    at_or_before: Option<chrono::DateTime<chrono::Utc>>,
) -> SeedChoice {
    if backups.is_empty() {
        return SeedChoice::NoBackup;
    }
    let best = backups
        .iter()
        .filter_map(BackupInfo::restorable_manifest)
        .filter(|m| at_or_before.is_none_or(|t| m.backup_time <= t))
        .max_by(|a, b| (a.backup_time, &a.backup_name).cmp(&(b.backup_time, &b.backup_name)));
    match best {
        Some(m) => SeedChoice::Backup(Box::new(m.clone())),
        None => {
            let complete = backups.iter().filter(|b| b.complete).count();
            let unreadable = backups.iter().filter(|b| b.is_unreadable()).count();
            let why = match at_or_before {
                Some(t) if complete > 0 => format!("no complete backup at or before {}", t.format("%Y-%m-%d.%H%M%S")),
                _ => format!(
                    "{} backup(s) exist but none is complete ({unreadable} with an unreadable MANIFEST, the rest without one): refusing to start empty",
                    backups.len()
                ),
            };
            SeedChoice::NoCompleteBackup(why)
        }
    }
}

/// What a restore at start does with a [`SeedChoice`].
#[derive(Debug, Clone, PartialEq)]
pub enum SeedStep {
    /// Restore this backup.
    Restore(Box<Manifest>),
    /// The shard has no backup and the agent does not wait: start empty.
    StartEmpty,
    /// Backups exist but none fits and the agent does not wait: fail, saying why.
    Refuse(String),
    /// Wait for a backup (`--wait-for-backup-interval` is set), saying why.
    Wait(String),
}

/// Decides a restore at start: restore what [`choose_backup`] found; without one,
/// start empty (no backup at all) or refuse (none complete), unless `wait` (a
/// non-zero `--wait-for-backup-interval`), in which case wait for one. Pure.
pub fn plan_seed(choice: SeedChoice, wait: bool) -> SeedStep {
    match choice {
        SeedChoice::Backup(m) => SeedStep::Restore(m),
        SeedChoice::NoBackup if wait => SeedStep::Wait("no backup yet".to_string()),
        SeedChoice::NoBackup => SeedStep::StartEmpty,
        SeedChoice::NoCompleteBackup(why) if wait => SeedStep::Wait(why),
        SeedChoice::NoCompleteBackup(why) => SeedStep::Refuse(why),
    }
}

impl Agent {
    fn marker(&self) -> PathBuf {
        self.cfg.tablet_dir.join("restore_in_progress")
    }

    fn staging_dir(&self) -> PathBuf {
        self.cfg.tablet_dir.join("data.restore-staging")
    }

    /// Whether a previous restore left its marker behind (it was interrupted).
    pub(super) fn interrupted_restore(&self) -> bool {
        self.marker().exists()
    }

    async fn list_backups(&self) -> anyhow::Result<Vec<BackupInfo>> {
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

    /// Restore at start. Returns `true` if data was restored (mysqld is then
    /// running with the backup's position set), `false` if the shard has no backup
    /// and the tablet should start empty.
    pub(super) async fn restore_at_start(
        &self,
        at_or_before: Option<&str>,
        wait_interval: Duration,
    ) -> anyhow::Result<bool> {
        let ts = at_or_before.map(parse_backup_timestamp).transpose()?;
        let prefix = self
            .topo
            .keys()
            .backups_prefix(&self.cfg.keyspace, &self.cfg.shard);
        // Watch the shard's backup records from now, so a seed that lands while we
        // list storage is not missed.
        let (_, rev) = self
            .topo
            .list_with_revision::<serde_json::Value>(&prefix)
            .await?;
        let mut watch = self.topo.watch(&prefix, true, rev + 1);
        let waiting_since = Instant::now();
        loop {
            let backups = self.list_backups().await?;
            let why = match plan_seed(choose_backup(&backups, ts), !wait_interval.is_zero()) {
                SeedStep::Restore(m) => {
                    if !wait_interval.is_zero() {
                        tracing::info!(
                            backup = %m.backup_name,
                            waited_ms = waiting_since.elapsed().as_millis() as u64,
                            "seed backup found; restoring"
                        );
                    }
                    self.restore_backup_at_start(&m).await?;
                    return Ok(true);
                }
                SeedStep::StartEmpty => {
                    tracing::info!("no backup of this shard exists: starting empty");
                    return Ok(false);
                }
                SeedStep::Refuse(why) => bail!("cannot restore: {why}"),
                SeedStep::Wait(why) => why,
            };
            tracing::info!(reason = %why, interval = ?wait_interval, "waiting for a backup to restore");
            // Wake on a backup record (a seed just finished) or at the interval (a
            // backup copied into storage by other means).
            let deadline = tokio::time::Instant::now() + wait_interval;
            loop {
                let ev = tokio::select! {
                    _ = self.cancel.cancelled() => bail!("stopped while waiting for a backup"),
                    _ = tokio::time::sleep_until(deadline) => break,
                    ev = watch.next() => ev,
                };
                match ev {
                    Some(WatchEvent::Put { .. }) | Some(WatchEvent::Resync { .. }) => break,
                    Some(WatchEvent::Delete { .. }) => {}
                    None => {
                        tracing::warn!("backup record watch ended; polling storage only");
                        tokio::time::sleep_until(deadline).await;
                        break;
                    }
                }
            }
        }
    }

    /// Publishes which backup a restore reads (or none), so retention keeps it.
    fn set_restoring(&self, name: Option<&str>) {
        lock(&self.status).restoring = name.map(str::to_string);
    }

    /// Restores `m` into the (missing, empty or half-restored) data directory and
    /// starts mysqld on it with the backup's position.
    async fn restore_backup_at_start(&self, m: &Manifest) -> anyhow::Result<()> {
        self.set_restoring(Some(&m.backup_name));
        self.write_health().await;
        let r = self.restore_backup_at_start_inner(m).await;
        self.set_restoring(None);
        r
    }

    async fn restore_backup_at_start_inner(&self, m: &Manifest) -> anyhow::Result<()> {
        let mut mysqld = self.mysqld.lock().await;
        if mysqld.is_running() {
            mysqld
                .shutdown(Duration::from_secs(120))
                .await
                .context("stopping mysqld before the restore")?;
        }
        fs::create_dir_all(&self.cfg.tablet_dir)
            .with_context(|| format!("creating {}", self.cfg.tablet_dir.display()))?;
        write_marker(&self.marker(), &m.backup_name)?;
        let staging = self.staging_dir();
        remove_dir_if_exists(&staging)?;
        let started = Instant::now();
        let progress = Arc::new(Progress::default());
        tracing::info!(backup = %m.backup_name, engine = %m.backup_method, "restoring");
        engine::restore_to_staging(engine::RestoreParams {
            storage: self.storage()?,
            keyspace: &self.cfg.keyspace,
            shard: &self.cfg.shard,
            manifest: m,
            staging: &staging,
            cfg: &self.cfg.backup,
            progress,
            cancel: self.cancel.clone(),
        })
        .await
        .with_context(|| format!("restoring backup {}", m.backup_name))?;
        let data = mysqld.data_dir();
        remove_dir_if_exists(&data)?;
        fs::rename(&staging, &data)
            .with_context(|| format!("moving the restored data into {}", data.display()))?;
        mysqld
            .start()
            .await
            .context("starting mysqld on the restored data")?;
        mysqld
            .set_replication_position(&m.position)
            .await
            .context("setting the replication position from the MANIFEST")?;
        fs::remove_file(self.marker()).context("removing the restore marker")?;
        tracing::info!(
            backup = %m.backup_name,
            position = %m.position,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "restored"
        );
        Ok(())
    }

    /// An in-place restore of a running tablet: staging first (the tablet keeps
    /// serving its old data meanwhile), then a swap; on any failure before the swap
    /// completes the old data comes back.
    pub(super) async fn restore_in_place(
        &self,
        at_or_before: Option<&str>,
        progress: Arc<Progress>,
    ) -> anyhow::Result<String> {
        let ts = at_or_before.map(parse_backup_timestamp).transpose()?;
        let backups = self.list_backups().await?;
        let m = match choose_backup(&backups, ts) {
            SeedChoice::Backup(m) => m,
            SeedChoice::NoBackup => bail!(
                "shard {}/{} has no backup",
                self.cfg.keyspace,
                self.cfg.shard
            ),
            SeedChoice::NoCompleteBackup(why) => bail!("{why}"),
        };
        let original = self.tablet_type();
        let staging = self.staging_dir();
        remove_dir_if_exists(&staging)?;
        self.set_restoring(Some(&m.backup_name));
        self.write_health().await;
        let r = self
            .restore_in_place_inner(&m, original, &staging, progress)
            .await;
        self.set_restoring(None);
        r
    }

    async fn restore_in_place_inner(
        &self,
        m: &Manifest,
        original: TabletType,
        staging: &Path,
        progress: Arc<Progress>,
    ) -> anyhow::Result<String> {
        let restored = engine::restore_to_staging(engine::RestoreParams {
            storage: self.storage()?,
            keyspace: &self.cfg.keyspace,
            shard: &self.cfg.shard,
            manifest: m,
            staging,
            cfg: &self.cfg.backup,
            progress,
            cancel: self.cancel.clone(),
        })
        .await;
        if let Err(e) = restored {
            let _ = remove_dir_if_exists(staging);
            return Err(e.context(format!(
                "restoring backup {} (the tablet keeps its data)",
                m.backup_name
            )));
        }
        // Verified: swap it in.
        self.publish_tablet(TabletType::Restore)
            .await
            .context("switching to RESTORE")?;
        let swapped = self.swap_in(m, staging).await;
        let back = self.return_to_service(original).await;
        swapped?;
        back.context("restored, but returning to service failed")?;
        Ok(m.backup_name.clone())
    }

    async fn swap_in(&self, m: &Manifest, staging: &Path) -> anyhow::Result<()> {
        let mut mysqld = self.mysqld.lock().await;
        self.set_role(Role::Unknown);
        mysqld
            .shutdown(Duration::from_secs(300))
            .await
            .context("stopping mysqld for the swap")?;
        let data = mysqld.data_dir();
        let old = self.cfg.tablet_dir.join("data.before-restore");
        remove_dir_if_exists(&old)?;
        write_marker(&self.marker(), &m.backup_name)?;
        fs::rename(&data, &old).with_context(|| format!("moving {} aside", data.display()))?;
        if let Err(e) = fs::rename(staging, &data) {
            fs::rename(&old, &data).context("putting the old data back")?;
            let _ = fs::remove_file(self.marker());
            return Err(e).context("moving the restored data in");
        }
        let started = async {
            mysqld
                .start()
                .await
                .context("starting mysqld on the restored data")?;
            mysqld
                .set_replication_position(&m.position)
                .await
                .context("setting the replication position from the MANIFEST")
        }
        .await;
        if let Err(e) = started {
            tracing::error!(error = %format!("{e:#}"), "the restored data did not start; putting the old data back");
            let _ = mysqld.shutdown(Duration::from_secs(60)).await;
            let failed = self.cfg.tablet_dir.join("data.failed-restore");
            let _ = remove_dir_if_exists(&failed);
            fs::rename(&data, &failed).context("moving the failed restore aside")?;
            fs::rename(&old, &data).context("putting the old data back")?;
            let _ = fs::remove_file(self.marker());
            return Err(e);
        }
        let _ = fs::remove_file(self.marker());
        if let Err(e) = fs::remove_dir_all(&old) {
            tracing::warn!(error = %e, dir = %old.display(), "cannot remove the pre-restore data");
        }
        Ok(())
    }
}

fn write_marker(path: &Path, backup: &str) -> anyhow::Result<()> {
    fs::write(path, format!("{backup}\n"))
        .with_context(|| format!("writing {}", path.display()))?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

fn remove_dir_if_exists(p: &Path) -> anyhow::Result<()> {
    match fs::remove_dir_all(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", p.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::manifest::{BackupMethod, CompressionEngine, FORMAT_VERSION};
    use chrono::{TimeZone, Utc};

    fn info(name: &str, secs: i64, complete: bool) -> BackupInfo {
        let t = Utc.timestamp_opt(secs, 0).unwrap();
        if !complete {
            return BackupInfo::incomplete(name, 1);
        }
        BackupInfo::with_manifest(
            name,
            Manifest {
                backup_name: name.into(),
                backup_method: BackupMethod::Builtin,
                position: "MariaDB/0-1-1".into(),
                purged_position: String::new(),
                backup_time: t,
                finished_time: t,
                server_uuid: String::new(),
                tablet_alias: "zone1-0000000001".into(),
                hostname: String::new(),
                keyspace: "ks".into(),
                shard: "0".into(),
                schedule: None,
                mysql_version: String::new(),
                upgrade_safe: false,
                compression_engine: CompressionEngine::Zstd,
                file_entries: vec![],
                total_size: 0,
                stored_size: 0,
                stream_mode: None,
                flavor: "MariaDB".into(),
                format_version: FORMAT_VERSION,
            },
            1,
        )
    }

    fn picked(c: SeedChoice) -> String {
        match c {
            SeedChoice::Backup(m) => m.backup_name,
            SeedChoice::NoBackup => "none".into(),
            SeedChoice::NoCompleteBackup(_) => "incomplete".into(),
        }
    }

    #[test]
    fn newest_complete_backup_wins() {
        let b = vec![
            info("a", 100, true),
            info("b", 200, true),
            info("c", 300, false),
        ];
        assert_eq!(picked(choose_backup(&b, None)), "b");
        assert_eq!(
            picked(choose_backup(&b, Some(Utc.timestamp_opt(150, 0).unwrap()))),
            "a"
        );
        assert_eq!(
            picked(choose_backup(&b, Some(Utc.timestamp_opt(50, 0).unwrap()))),
            "incomplete"
        );
        assert_eq!(picked(choose_backup(&[], None)), "none");
        assert_eq!(
            picked(choose_backup(&[info("c", 300, false)], None)),
            "incomplete"
        );
        // Never an unreadable or unrestorable one, however new.
        let mut newer = info("d", 400, true).manifest.unwrap();
        newer.format_version = FORMAT_VERSION + 1;
        let b = vec![
            info("a", 100, true),
            BackupInfo::unreadable("e", "garbage", 1),
            BackupInfo::with_manifest("d", newer, 1),
        ];
        assert_eq!(picked(choose_backup(&b, None)), "a");
        assert_eq!(picked(choose_backup(&b[1..], None)), "incomplete");
    }

    #[test]
    fn plan_seed_table() {
        let b = vec![info("a", 100, true)];
        let backup = || choose_backup(&b, None);
        let none = || SeedChoice::NoBackup;
        let incomplete = || SeedChoice::NoCompleteBackup("why".into());
        let step = |s: SeedStep| match s {
            SeedStep::Restore(m) => format!("restore {}", m.backup_name),
            SeedStep::StartEmpty => "start empty".into(),
            SeedStep::Refuse(why) => format!("refuse: {why}"),
            SeedStep::Wait(why) => format!("wait: {why}"),
        };
        // (choice, waiting allowed, step)
        let cases = [
            (backup(), false, "restore a"),
            (backup(), true, "restore a"),
            (none(), false, "start empty"),
            (none(), true, "wait: no backup yet"),
            (incomplete(), false, "refuse: why"),
            (incomplete(), true, "wait: why"),
        ];
        for (choice, wait, want) in cases {
            assert_eq!(
                step(plan_seed(choice.clone(), wait)),
                want,
                "{choice:?}, wait {wait}"
            );
        }
    }
}
