//! Restores: at start (`--restore-from-backup`, optionally waiting for a seed
//! backup) and in place (a restore job on a running tablet).
//!
//! Both restore into a staging directory first, verifying every byte, and only then
//! swap it in, so corrupt or missing data is never served. A marker file
//! (`restore_in_progress`, see [`super::recovery`]) is written before the data
//! directory is touched and removed after the position is set; every start acts on
//! it (rolls back to the kept old data or redoes the restore), whatever the flags.
//! Every rename is made durable, and failpoints (`restore-*`) let tests kill the
//! agent at each step. An in-place restore swaps only while its job is still held
//! ([`super::fence`]): stopped (lease lost, job failed meanwhile) or refused by the
//! check made right before the renames, the tablet keeps its data. A primary is never restored over, and an encrypted
//! backup the tablet's identities cannot open is refused before anything is touched. Which backup, and whether to restore, start empty, wait or refuse, are
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

use super::agent::Role;
use super::agent::{Agent, JobRun};
use super::recovery::{
    remove_dir_if_exists, remove_marker, rename_durably, roll_back, write_marker, Marker,
    MarkerKind, BEFORE_RESTORE, FAILED_RESTORE, STAGING,
};
use crate::backup::engine::{self, Progress};
use crate::backup::manifest::{parse_backup_timestamp, Manifest};
use crate::backup::pipeline::{self, StoredBackup};
use crate::backup::storage::BackupInfo;
use crate::common::failpoint;
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

/// Picks the newest complete full backup, at or before `at_or_before` if given;
/// an incremental backup (binary logs) is never a seed. Pure.
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
        // An incremental holds binlogs, not a data directory: never a seed.
        .filter(|m| !m.is_incremental())
        .filter(|m| at_or_before.is_none_or(|t| m.backup_time <= t))
        .max_by(|a, b| (a.backup_time, &a.backup_name).cmp(&(b.backup_time, &b.backup_name)));
    match best {
        Some(m) => SeedChoice::Backup(Box::new(m.clone())),
        None => {
            let full =
                |b: &&BackupInfo| b.restorable_manifest().is_some_and(|m| !m.is_incremental());
            let complete = backups.iter().filter(full).count();
            let incremental = backups.iter().filter(|b| b.complete).count() - complete;
            let unreadable: Vec<&BackupInfo> =
                backups.iter().filter(|b| b.is_unreadable()).collect();
            let why = match at_or_before {
                Some(t) if complete > 0 => format!("no complete backup at or before {}", t.format("%Y-%m-%d.%H%M%S")),
                _ if incremental > 0 => format!(
                    "{} backup(s) exist but no complete full one ({incremental} incremental, which hold binary logs and cannot seed a tablet; {} unreadable){}",
                    backups.len(),
                    unreadable.len(),
                    unreadable_details(&unreadable),
                ),
                _ => format!(
                    "{} backup(s) exist but none is complete ({} unreadable, the rest without a MANIFEST){}",
                    backups.len(),
                    unreadable.len(),
                    unreadable_details(&unreadable),
                ),
            };
            SeedChoice::NoCompleteBackup(why)
        }
    }
}

/// The newest few unreadable backups with why (names sort by time): what an
/// operator needs to act on a refused restore.
fn unreadable_details(unreadable: &[&BackupInfo]) -> String {
    const SHOWN: usize = 3;
    let mut newest: Vec<&&BackupInfo> = unreadable.iter().collect();
    newest.sort_by(|a, b| b.name.cmp(&a.name));
    let shown: Vec<String> = newest
        .iter()
        .take(SHOWN)
        .map(|b| format!("{}: {}", b.name, b.error.as_deref().unwrap_or("unreadable")))
        .collect();
    if shown.is_empty() {
        return String::new();
    }
    let more = unreadable.len().saturating_sub(SHOWN);
    let more = if more > 0 {
        format!(" (and {more} more)")
    } else {
        String::new()
    };
    format!("; {}{more}", shown.join("; "))
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

/// Headroom over a backup's size that a restore wants free (a twentieth): the
/// staging copy is the backup's size, and the running server keeps writing.
const ROOM_HEADROOM_DIVISOR: u64 = 20;

/// Whether `free` bytes in `dir` are enough to stage the backup `m` describes:
/// its files' total size plus a twentieth. A floor, not a promise (an xtrabackup
/// restore's `--prepare` and other writers take space too): a restore that still
/// runs out fails cleanly, this only spares the disk of a serving tablet from
/// being filled when it plainly cannot fit. Pure.
pub fn check_room(m: &Manifest, free: u64, dir: &Path) -> Result<(), String> {
    let need = m
        .total_size
        .saturating_add(m.total_size / ROOM_HEADROOM_DIVISOR);
    if free >= need {
        return Ok(());
    }
    Err(format!(
        "not enough space in {} to restore backup {}: it needs {need} bytes (its {} bytes \
         of files and a twentieth more), {free} are free",
        dir.display(),
        m.backup_name,
        m.total_size
    ))
}

/// Bytes available to this process in the file system holding `dir`.
pub(super) fn free_bytes(dir: &Path) -> anyhow::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .with_context(|| format!("{} has a NUL byte", dir.display()))?;
    // SAFETY: statvfs(3) with a valid C string and a zeroed struct it fills in.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("statvfs {}", dir.display()));
    }
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

impl Agent {
    fn staging_dir(&self) -> PathBuf {
        self.cfg.tablet_dir.join(STAGING)
    }

    /// Refuses when the Shard record names this tablet primary: a primary is never
    /// restored over.
    async fn refuse_if_primary(&self) -> anyhow::Result<()> {
        let shard = self
            .topo
            .get_shard(&self.cfg.keyspace, &self.cfg.shard)
            .await
            .context("reading the Shard record before restoring")?;
        if shard.is_some_and(|s| s.value.primary_alias.as_ref() == Some(&self.cfg.alias)) {
            bail!(
                "the shard {}/{} names this tablet primary: a primary is never restored over",
                self.cfg.keyspace,
                self.cfg.shard
            );
        }
        Ok(())
    }

    /// Restore at start. Returns `true` if data was restored (mysqld is then
    /// running with the backup's position set), `false` if the shard has no backup
    /// and the tablet should start empty.
    pub(super) async fn restore_at_start(
        &self,
        at_or_before: Option<&str>,
        wait_interval: Duration,
    ) -> anyhow::Result<bool> {
        self.refuse_if_primary().await?;
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
                SeedStep::Refuse(why) => bail!("cannot restore: {why}: refusing to start empty"),
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

    /// Finishes an interrupted restore at start: restores again the backup its
    /// marker names (the marker stays until it serves from the backup's position).
    pub(super) async fn redo_restore_at_start(&self, name: &str) -> anyhow::Result<()> {
        self.refuse_if_primary().await?;
        let backups = self.list_backups().await?;
        let Some(b) = backups.iter().find(|b| b.name == name) else {
            bail!("the interrupted restore's backup {name} is no longer in storage; remove {} to start anyway", super::recovery::MARKER);
        };
        let m = match (&b.manifest, b.complete) {
            (Some(m), true) => m,
            _ => bail!("the interrupted restore's backup {name} is not complete"),
        };
        m.check_restorable()
            .map_err(|e| anyhow::anyhow!("backup {name} cannot be restored: {e}"))?;
        self.restore_backup_at_start(m).await
    }

    /// Refuses, before anything is touched, a backup whose MANIFEST does not fit this
    /// tablet (another shard without `--allow-other-shard`, a newer server).
    pub(super) fn check_fits(&self, m: &Manifest, server_version: &str) -> anyhow::Result<()> {
        engine::check_manifest_fits(
            m,
            &self.cfg.keyspace,
            &self.cfg.shard,
            server_version,
            self.cfg.backup.allow_other_shard,
        )
        .map_err(|why| anyhow::anyhow!("backup {} refused: {why}", m.backup_name))
    }

    /// Refuses, before anything is touched, a restore of `m` that cannot fit in
    /// the tablet dir (see [`check_room`]).
    fn check_space(&self, m: &Manifest) -> anyhow::Result<()> {
        if failpoint::skip_check("restore-space") {
            return Ok(());
        }
        let dir = &self.cfg.tablet_dir;
        let free = free_bytes(dir)?;
        check_room(m, free, dir).map_err(|why| anyhow::anyhow!("{why}"))
    }

    /// Refuses, before anything is touched, an encrypted backup this tablet's
    /// `--backup-encryption-identity-file` cannot open (or that it lacks); the
    /// error names the recipients needed. Reads one age header, no data.
    pub(super) async fn check_decryptable(&self, m: &Manifest) -> anyhow::Result<()> {
        pipeline::check_decryptable(StoredBackup {
            storage: self.storage()?,
            keyspace: &self.cfg.keyspace,
            shard: &self.cfg.shard,
            name: &m.backup_name,
            manifest: m,
            identities: self.cfg.backup.identities.as_deref(),
        })
        .await
    }

    /// Publishes which backup a restore reads (or none), so retention keeps it.
    fn set_restoring(&self, name: Option<&str>) {
        lock(&self.status).restoring = name.map(str::to_string);
    }

    /// Restores `m` into the (missing, empty or half-restored) data directory and
    /// starts mysqld on it with the backup's position.
    pub(super) async fn restore_backup_at_start(&self, m: &Manifest) -> anyhow::Result<()> {
        self.set_restoring(Some(&m.backup_name));
        self.write_health().await;
        let r = self.restore_backup_at_start_inner(m).await;
        self.set_restoring(None);
        r
    }

    async fn restore_backup_at_start_inner(&self, m: &Manifest) -> anyhow::Result<()> {
        self.check_decryptable(m).await?;
        let mut mysqld = self.mysqld.lock().await;
        if mysqld.is_running() {
            mysqld
                .shutdown(Duration::from_secs(120))
                .await
                .context("stopping mysqld before the restore")?;
        }
        self.check_fits(m, mysqld.binary_version())?;
        fs::create_dir_all(&self.cfg.tablet_dir)
            .with_context(|| format!("creating {}", self.cfg.tablet_dir.display()))?;
        let staging = self.staging_dir();
        // A half-staged copy from an earlier attempt is garbage: its space counts.
        remove_dir_if_exists(&staging)?;
        self.check_space(m)?;
        let dir = &self.cfg.tablet_dir;
        write_marker(
            dir,
            &Marker {
                backup: m.backup_name.clone(),
                kind: MarkerKind::AtStart,
            },
        )?;
        let started = Instant::now();
        let progress = Arc::new(Progress::default());
        tracing::info!(backup = %m.backup_name, engine = %m.backup_method, "restoring");
        let restored = engine::restore_to_staging(engine::RestoreParams {
            storage: self.storage()?,
            keyspace: &self.cfg.keyspace,
            shard: &self.cfg.shard,
            manifest: m,
            staging: &staging,
            cfg: &self.cfg.backup,
            server_version: mysqld.binary_version(),
            progress,
            cancel: self.cancel.clone(),
        })
        .await;
        if let Err(e) = restored {
            // Nothing was moved: the partial copy goes (a full disk gets its space
            // back); the marker stays, so the next start redoes this restore.
            if let Err(rm) = remove_dir_if_exists(&staging) {
                tracing::warn!(error = %format!("{rm:#}"), "cannot remove the partial restore");
            }
            return Err(e.context(format!("restoring backup {}", m.backup_name)));
        }
        failpoint::hit("restore-at-start-before-rename");
        let data = mysqld.data_dir();
        remove_dir_if_exists(&data)?;
        rename_durably(dir, &staging, &data)?;
        failpoint::hit("restore-at-start-after-rename");
        mysqld
            .start()
            .await
            .context("starting mysqld on the restored data")?;
        failpoint::hit("restore-at-start-before-position");
        mysqld
            .set_replication_position(&m.position)
            .await
            .context("setting the replication position from the MANIFEST")?;
        failpoint::hit("restore-at-start-after-position");
        remove_marker(dir)?;
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
        run: &JobRun,
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
        let server_version = self.mysqld.lock().await.binary_version().to_string();
        self.check_fits(&m, &server_version)?;
        self.check_decryptable(&m).await?;
        let original = self.tablet_type();
        self.restore_manifest_in_place(&m, original, progress, run, true)
            .await
    }

    /// Restores `m` in place (staging, then the swap). With `serve_after` the
    /// tablet returns to `original` afterwards; without, a swapped-in restore
    /// leaves mysqld up on the restored data, replication reset, type RESTORE
    /// (a point-in-time restore goes on from there); a refused or failed one
    /// still returns to service.
    pub(super) async fn restore_manifest_in_place(
        &self,
        m: &Manifest,
        original: TabletType,
        progress: Arc<Progress>,
        run: &JobRun,
        serve_after: bool,
    ) -> anyhow::Result<String> {
        let staging = self.staging_dir();
        remove_dir_if_exists(&staging)?;
        self.check_space(m)?;
        self.set_restoring(Some(&m.backup_name));
        self.write_health().await;
        let r = self
            .restore_in_place_inner(m, original, &staging, progress, run, serve_after)
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
        run: &JobRun,
        serve_after: bool,
    ) -> anyhow::Result<String> {
        let server_version = self.mysqld.lock().await.binary_version().to_string();
        let restored = engine::restore_to_staging(engine::RestoreParams {
            storage: self.storage()?,
            keyspace: &self.cfg.keyspace,
            shard: &self.cfg.shard,
            manifest: m,
            staging,
            cfg: &self.cfg.backup,
            server_version: &server_version,
            progress,
            cancel: run.cancel.clone(),
        })
        .await;
        failpoint::pause("restore-before-swap").await;
        let restored = restored.and_then(|()| {
            if run.stopped() {
                bail!("stopped before the swap");
            }
            Ok(())
        });
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
        let swapped = self.swap_in(m, staging, run).await;
        if swapped.is_err() {
            // Refused before the swap (the tablet became primary, mysqld would not
            // stop): the verified copy is not needed any more.
            let _ = remove_dir_if_exists(staging);
        } else if serve_after {
            // Plain data replaced whatever a point-in-time restore left.
            self.release_hold();
        } else {
            return Ok(m.backup_name.clone());
        }
        let back = self.return_to_service(original).await;
        swapped?;
        back.context("restored, but returning to service failed")?;
        Ok(m.backup_name.clone())
    }

    async fn swap_in(&self, m: &Manifest, staging: &Path, run: &JobRun) -> anyhow::Result<()> {
        // The Shard record may have named this tablet primary since the job began.
        self.refuse_if_primary().await?;
        let mut mysqld = self.mysqld.lock().await;
        self.set_role(Role::Unknown);
        mysqld
            .shutdown(Duration::from_secs(300))
            .await
            .context("stopping mysqld for the swap")?;
        // Last moment to refuse: the job still ours, our lease still live in etcd.
        // After this the renames take milliseconds.
        self.check_still_held(run).await?;
        let dir = &self.cfg.tablet_dir;
        let data = mysqld.data_dir();
        let old = dir.join(BEFORE_RESTORE);
        remove_dir_if_exists(&old)?;
        write_marker(
            dir,
            &Marker {
                backup: m.backup_name.clone(),
                kind: MarkerKind::InPlace,
            },
        )?;
        failpoint::hit("restore-before-first-rename");
        rename_durably(dir, &data, &old)?;
        failpoint::hit("restore-after-first-rename");
        if let Err(e) = rename_durably(dir, staging, &data) {
            roll_back(dir, &data).context("putting the old data back")?;
            return Err(e).context("moving the restored data in");
        }
        failpoint::hit("restore-after-second-rename");
        let started = async {
            mysqld
                .start()
                .await
                .context("starting mysqld on the restored data")?;
            failpoint::hit("restore-after-swap-before-position");
            mysqld
                .set_replication_position(&m.position)
                .await
                .context("setting the replication position from the MANIFEST")?;
            failpoint::hit("restore-after-position");
            remove_marker(dir)
        }
        .await;
        if let Err(e) = started {
            tracing::error!(error = %format!("{e:#}"), "the restored data did not start; putting the old data back");
            let _ = mysqld.shutdown(Duration::from_secs(60)).await;
            roll_back(dir, &data).context("putting the old data back")?;
            tracing::warn!(dir = %dir.join(FAILED_RESTORE).display(), "the failed restore is kept aside");
            return Err(e);
        }
        failpoint::hit("restore-before-old-data-removed");
        if let Err(e) = fs::remove_dir_all(&old) {
            tracing::warn!(error = %e, dir = %old.display(), "cannot remove the pre-restore data");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
