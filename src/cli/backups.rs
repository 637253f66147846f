//! `backup`, `backup-shard`, `list-backups`, `remove-backup`, `restore-from-backup`.
//!
//! Backups and restores are jobs written into topo for the tablet's agent; these
//! commands validate, refuse what must be refused before anything is written, then
//! wait for the job. Listing reads storage joined with topo (the catalog alone
//! when no storage is configured, said on stderr); removal goes through
//! the backup catalog ([`crate::backup::catalog`]), the same path the
//! coordinator's retention takes.

use anyhow::{bail, Context};
use cairn_topo::{
    BackupRecord, BackupRecordState, Job, JobKind, JobState, PointInTime, TabletAlias, TabletType,
    Topo,
};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::args::{
    BackupArgs, BackupShardArgs, JobFlags, ListBackupsArgs, RemoveBackupArgs, RestoreArgs,
};
use super::jobs;
use super::output::{opt, print_rows};
use super::UsageError;
use crate::backup::catalog::Catalog;
use crate::backup::manifest::parse_backup_name;
use crate::backup::storage::{BackupState, BackupStorage};
use crate::coordinator::select::{select_backup_tablet, Choice, SelectOptions};

pub use super::config::{open_storage, open_storage_if_configured};

async fn tablet_for_job(
    topo: &Topo,
    alias: &TabletAlias,
) -> anyhow::Result<cairn_topo::typed::TabletInfo> {
    topo.get_tablet_info(alias)
        .await
        .with_context(|| format!("reading tablet {alias}"))?
        .with_context(|| format!("tablet {alias} is not registered"))
}

/// Writes a backup job for `alias` with the command's job flags and (unless
/// `--no-wait`) waits for it.
async fn run_backup_job(topo: &Topo, alias: &TabletAlias, f: &JobFlags) -> anyhow::Result<()> {
    let info = tablet_for_job(topo, alias).await?;
    let t = &info.tablet.value;
    if f.incremental_from_pos.is_some() && f.backup_engine.is_some() {
        return Err(UsageError(
            "--backup-engine does not apply to an incremental backup (it copies binary logs)"
                .into(),
        )
        .into());
    }
    if t.tablet_type == TabletType::Primary && !f.allow_primary && f.incremental_from_pos.is_some()
    {
        bail!(
            "tablet {alias} is the PRIMARY of {}/{}: an incremental backup rotates its binary log; \
             back up a replica, or pass --allow-primary",
            t.keyspace,
            t.shard
        );
    }
    if t.tablet_type == TabletType::Primary && !f.allow_primary {
        bail!(
            "tablet {alias} is the PRIMARY of {}/{}: a backup would take it out of service; \
             back up a replica, or pass --allow-primary",
            t.keyspace,
            t.shard
        );
    }
    jobs::refuse_if_busy(topo, alias).await?;
    let mut job = Job::pending(JobKind::Backup, &t.keyspace, &t.shard, alias);
    job.allow_primary = f.allow_primary;
    job.engine = f.backup_engine;
    job.concurrency = f.concurrency;
    job.pending_timeout_seconds = Some(f.pending_timeout.as_secs());
    job.incremental_from_pos = f.incremental_from_pos.clone();
    jobs::submit(topo, &job).await?;
    if f.no_wait {
        println!("{}", job.id);
        return Ok(());
    }
    let done = jobs::wait(topo, &job.id, f.pending_timeout).await?;
    match done.state {
        // An incremental backup with nothing new: not an error, nothing stored.
        JobState::Succeeded if done.backup_name.is_none() && done.message.is_some() => {
            let message = done.message.unwrap_or_default();
            if f.json {
                println!(
                    "{}",
                    serde_json::json!({"job": done.id, "backup_name": null, "tablet_alias": alias.to_string(), "empty": true, "message": message})
                );
            } else {
                eprintln!("{message}");
            }
            Ok(())
        }
        JobState::Succeeded => {
            let name = done.backup_name.unwrap_or_default();
            if f.json {
                println!(
                    "{}",
                    serde_json::json!({"job": done.id, "backup_name": name, "tablet_alias": alias.to_string()})
                );
            } else {
                println!("{name}");
            }
            Ok(())
        }
        state => bail!(
            "backup of {alias} {}: {}",
            if state == JobState::Cancelled {
                "was cancelled"
            } else {
                "failed"
            },
            done.error.unwrap_or_else(|| "no reason given".into())
        ),
    }
}

/// Refuses bad job flags before anything is read or written (exit 2).
fn check_job_flags(f: &JobFlags) -> Result<(), UsageError> {
    if f.concurrency == Some(0) {
        return Err(UsageError("--concurrency must be at least 1".into()));
    }
    Ok(())
}

pub async fn backup(topo: &Topo, a: BackupArgs) -> anyhow::Result<()> {
    check_job_flags(&a.job)?;
    run_backup_job(topo, &a.alias, &a.job).await
}

pub async fn backup_shard(topo: &Topo, a: BackupShardArgs) -> anyhow::Result<()> {
    check_job_flags(&a.job)?;
    let ks = &a.keyspace_shard;
    let tablets = topo
        .list_tablets(Some(&ks.keyspace), Some(&ks.shard))
        .await
        .context("listing tablets")?;
    if tablets.is_empty() {
        bail!("shard {ks} has no tablets");
    }
    let opts = SelectOptions {
        allow_primary: a.job.allow_primary,
        max_lag_seconds: a.max_lag.as_secs(),
    };
    let alias = match select_backup_tablet(&tablets, &opts) {
        Choice::Tablet(alias) => alias,
        Choice::None(reasons) => {
            let why: Vec<String> = reasons.iter().map(|(a, r)| format!("{a}: {r}")).collect();
            bail!(
                "no tablet of {ks} is eligible for a backup ({}){}",
                why.join("; "),
                if a.job.allow_primary {
                    ""
                } else {
                    "; --allow-primary would allow the primary"
                }
            );
        }
    };
    eprintln!("backing up {alias}");
    run_backup_job(topo, &alias, &a.job).await
}

pub async fn restore(topo: &Topo, a: RestoreArgs) -> anyhow::Result<()> {
    let alias = &a.alias;
    let info = tablet_for_job(topo, alias).await?;
    let t = &info.tablet.value;
    if t.tablet_type == TabletType::Primary {
        bail!(
            "tablet {alias} is the PRIMARY of {}/{}: restoring it in place is refused",
            t.keyspace,
            t.shard
        );
    }
    let to_point = a.restore_to_pos.is_some() || a.restore_to_timestamp.is_some();
    if a.dry_run && !to_point {
        return Err(UsageError(
            "--dry-run needs --restore-to-pos or --restore-to-timestamp".into(),
        )
        .into());
    }
    jobs::refuse_if_busy(topo, alias).await?;
    let mut job = Job::pending(JobKind::Restore, &t.keyspace, &t.shard, alias);
    job.backup_timestamp = a.backup_timestamp.clone();
    job.pending_timeout_seconds = Some(a.pending_timeout.as_secs());
    if to_point {
        job.point_in_time = Some(PointInTime {
            restore_to_pos: a.restore_to_pos.clone(),
            restore_to_timestamp: a.restore_to_timestamp.clone(),
            dry_run: a.dry_run,
            ..PointInTime::default()
        });
    }
    jobs::submit(topo, &job).await?;
    if a.no_wait {
        println!("{}", job.id);
        return Ok(());
    }
    let done = jobs::wait(topo, &job.id, a.pending_timeout).await?;
    match done.state {
        JobState::Succeeded => {
            match &done.point_in_time {
                Some(p) if to_point => {
                    for line in &p.plan {
                        println!("{line}");
                    }
                    match (&p.restored_to, a.dry_run) {
                        (_, true) => println!("dry run: {alias} was not changed"),
                        (Some(r), false) => println!(
                            "{alias} restored to {r}; it is DRAINED with replication stopped"
                        ),
                        (None, false) => println!("{alias} restored"),
                    }
                }
                _ => println!(
                    "{alias} restored from {}",
                    done.backup_name.unwrap_or_default()
                ),
            }
            Ok(())
        }
        _ => bail!(
            "restore of {alias} failed: {}",
            done.error.unwrap_or_else(|| "no reason given".into())
        ),
    }
}

/// One row of `list-backups --json`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BackupRow {
    pub name: String,
    pub keyspace: String,
    pub shard: String,
    pub tablet_alias: String,
    pub engine: String,
    pub backup_time: Option<DateTime<Utc>>,
    pub finished_time: Option<DateTime<Utc>>,
    pub position: String,
    pub size_bytes: u64,
    /// `state == "complete"`: the backup may be restored.
    pub complete: bool,
    /// `complete`, `incomplete` (no MANIFEST) or `unreadable` (a MANIFEST that
    /// cannot be read, parsed or restored: kept, never restored automatically).
    pub state: BackupState,
    /// Why an unreadable backup is unreadable; `null` otherwise.
    pub error: Option<String>,
    /// Whether topo has a BackupRecord for it (the catalog).
    pub in_topo: bool,
    /// The schedule that took it (only its retention rule prunes it); `null` for
    /// a manual backup and for one without a MANIFEST.
    pub schedule: Option<String>,
    /// `age` for an encrypted backup; `null` for plaintext and without a MANIFEST.
    pub encryption: Option<String>,
    /// An incremental backup (binary logs): never a seed.
    pub incremental: bool,
    /// Incremental: its files hold every transaction after this position.
    pub from_position: Option<String>,
    /// Incremental: when its first transaction started.
    pub first_timestamp: Option<DateTime<Utc>>,
    /// Incremental: when its last transaction committed.
    pub last_timestamp: Option<DateTime<Utc>>,
    /// What restore drills proved of it, from its record.
    #[serde(flatten)]
    pub drill: DrillFields,
}

/// A backup's last restore drill as its record says (`null`: never drilled, or
/// no record): `verified_at`, `drill_seconds`, `drill_result`, `drill_error`.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct DrillFields {
    pub verified_at: Option<DateTime<Utc>>,
    pub drill_seconds: Option<f64>,
    pub drill_result: Option<cairn_topo::DrillResult>,
    pub drill_error: Option<String>,
}

impl DrillFields {
    fn of(r: &BackupRecord) -> Self {
        DrillFields {
            verified_at: r.verified_at,
            drill_seconds: r.drill_seconds,
            drill_result: r.drill_result,
            drill_error: r.drill_error.clone(),
        }
    }
}

/// Storage joined with topo's catalog, oldest first.
pub async fn backup_rows(
    topo: &Topo,
    storage: &dyn BackupStorage,
    keyspace: &str,
    shard: &str,
) -> anyhow::Result<Vec<BackupRow>> {
    let listed = storage
        .list_backups(keyspace, shard)
        .await
        .with_context(|| format!("listing backups of {keyspace}/{shard} in storage"))?;
    let records = topo
        .list_backup_records(keyspace, shard)
        .await
        .context("reading the backup catalog")?;
    let in_topo: std::collections::HashMap<String, DrillFields> = records
        .iter()
        .map(|r| (r.value.name.clone(), DrillFields::of(&r.value)))
        .collect();
    let mut rows: Vec<BackupRow> = listed
        .into_iter()
        .map(|b| {
            let parsed = parse_backup_name(&b.name).ok();
            let drill = in_topo.get(&b.name).cloned().unwrap_or_default();
            let in_topo = in_topo.contains_key(&b.name);
            match &b.manifest {
                // Complete, or parsed but not restorable: what the MANIFEST says.
                Some(m) => BackupRow {
                    name: b.name.clone(),
                    keyspace: keyspace.to_string(),
                    shard: shard.to_string(),
                    tablet_alias: m.tablet_alias.clone(),
                    engine: m.backup_method.as_str().to_string(),
                    backup_time: Some(m.backup_time),
                    finished_time: Some(m.finished_time),
                    position: m.position.clone(),
                    size_bytes: b.size_bytes,
                    complete: b.complete,
                    state: b.state,
                    error: b.error.clone(),
                    in_topo,
                    schedule: m.schedule.clone(),
                    encryption: m.encryption.clone(),
                    incremental: m.is_incremental(),
                    from_position: Some(m.incremental.from_position.clone())
                        .filter(|_| m.is_incremental()),
                    first_timestamp: m.incremental.details.as_ref().map(|d| d.first_timestamp),
                    last_timestamp: m.incremental.details.as_ref().map(|d| d.last_timestamp),
                    drill,
                },
                None => BackupRow {
                    name: b.name.clone(),
                    keyspace: keyspace.to_string(),
                    shard: shard.to_string(),
                    tablet_alias: parsed
                        .as_ref()
                        .map(|(_, a)| a.to_string())
                        .unwrap_or_default(),
                    engine: String::new(),
                    backup_time: parsed.map(|(t, _)| t),
                    finished_time: None,
                    position: String::new(),
                    size_bytes: b.size_bytes,
                    complete: false,
                    state: b.state,
                    error: b.error.clone(),
                    in_topo,
                    schedule: None,
                    encryption: None,
                    incremental: false,
                    from_position: None,
                    first_timestamp: None,
                    last_timestamp: None,
                    drill,
                },
            }
        })
        .collect();
    rows.sort_by(|a, b| (a.backup_time, &a.name).cmp(&(b.backup_time, &b.name)));
    Ok(rows)
}

/// The row of a backup known only from its catalog record (no storage read):
/// what the record says, `in_topo`, and `encryption` unknown (`null`). Pure.
pub fn record_row(r: &BackupRecord) -> BackupRow {
    let state = match r.state {
        BackupRecordState::Unreadable => BackupState::Unreadable,
        BackupRecordState::Complete if r.complete => BackupState::Complete,
        BackupRecordState::Complete => BackupState::Incomplete,
    };
    BackupRow {
        name: r.name.clone(),
        keyspace: r.keyspace.clone(),
        shard: r.shard.clone(),
        tablet_alias: r.tablet_alias.clone(),
        engine: r.engine.as_str().to_string(),
        backup_time: Some(r.backup_time),
        finished_time: r.finished_time,
        position: r.position.clone(),
        size_bytes: r.size_bytes,
        complete: state == BackupState::Complete,
        state,
        error: r.error.clone(),
        in_topo: true,
        schedule: r.schedule.clone(),
        encryption: None,
        incremental: r.incremental,
        from_position: r.from_position.clone(),
        first_timestamp: r.first_timestamp,
        last_timestamp: r.last_timestamp,
        drill: DrillFields::of(r),
    }
}

/// The catalog's records of a shard as rows, oldest first (storage not read).
pub async fn catalog_rows(
    topo: &Topo,
    keyspace: &str,
    shard: &str,
) -> anyhow::Result<Vec<BackupRow>> {
    let records = topo
        .list_backup_records(keyspace, shard)
        .await
        .context("reading the backup catalog")?;
    let mut rows: Vec<BackupRow> = records.iter().map(|r| record_row(&r.value)).collect();
    rows.sort_by(|a, b| (a.backup_time, &a.name).cmp(&(b.backup_time, &b.name)));
    Ok(rows)
}

/// What `list-backups` says on stderr when it lists the catalog only.
pub const STORAGE_NOT_CONSULTED: &str = "note: no backup storage configured: listed the \
     catalog in etcd only, storage was not consulted (backups not catalogued, and whether \
     each is still restorable, show with --file-backup-storage-root DIR or \
     --backup-storage-implementation s3 --s3-backup-storage-bucket NAME)";

/// Lists a shard's backups: storage joined with the catalog; with no storage
/// flag at all, the catalog in etcd alone, said on stderr (same columns and JSON).
pub async fn list_backups(topo: &Topo, a: ListBackupsArgs) -> anyhow::Result<()> {
    if a.limit == Some(0) {
        return Err(UsageError("--limit must be at least 1".into()).into());
    }
    let storage = open_storage_if_configured(&a.storage)?;
    let ks = &a.keyspace_shard;
    let mut rows = match &storage {
        Some(storage) => backup_rows(topo, storage.as_ref(), &ks.keyspace, &ks.shard).await?,
        None => {
            let rows = catalog_rows(topo, &ks.keyspace, &ks.shard).await?;
            eprintln!("{STORAGE_NOT_CONSULTED}");
            rows
        }
    };
    if let Some(limit) = a.limit {
        let skip = rows.len().saturating_sub(limit);
        rows.drain(..skip);
    }
    print_rows(
        a.json,
        &[
            "NAME", "TABLET", "ENGINE", "COMPLETE", "SIZE", "POSITION", "STATE", "ERROR",
        ],
        &rows,
        |r| {
            vec![
                r.name.clone(),
                r.tablet_alias.clone(),
                if r.incremental {
                    format!("{} (incremental)", r.engine)
                } else {
                    r.engine.clone()
                },
                if r.complete { "yes" } else { "no" }.to_string(),
                r.size_bytes.to_string(),
                opt(&Some(&r.position).filter(|p| !p.is_empty())),
                r.state.as_str().to_string(),
                opt(&r.error),
            ]
        },
    )
}

/// Removes one backup through the catalog (its record first, then its data in
/// storage; the shard's latest backup follows). Neither found is an error.
pub async fn remove_backup(topo: &Topo, a: RemoveBackupArgs) -> anyhow::Result<()> {
    let storage = open_storage(&a.storage)?;
    let ks = &a.keyspace_shard;
    let removed = Catalog::new(topo, storage.as_ref())
        .remove_backup(&ks.keyspace, &ks.shard, &a.name)
        .await?;
    if !removed.found() {
        bail!("backup {} of {ks} not found", a.name);
    }
    println!("removed {} from {ks}", a.name);
    Ok(())
}

#[cfg(test)]
mod tests;
