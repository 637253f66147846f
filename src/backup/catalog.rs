//! The backup catalog: the `BackupRecord`s in topo and each Shard record's latest
//! backup, kept in step with backup storage. One service, used by the
//! coordinator's leader (retention, catalog reconciler), by `schedule prune` and
//! by `remove-backup`, so that removing a backup, deciding a shard's latest backup
//! and creating a shard record are each written once.
//!
//! Owns:
//! - the order of a removal: the record first (fenced when the leader removes, so a
//!   deposed leader removes nothing), then the shard's latest backup, then storage.
//!   A removal interrupted after the record is redone by running it again, or the
//!   reconciler catalogues the backup again and the next pass removes it;
//! - the one definition of a shard's latest backup ([`latest_restorable`]): the
//!   newest complete full (never incremental) record whose backup storage lists
//!   as complete *now*, so an
//!   already catalogued backup whose MANIFEST (or a file) went bad is never named;
//! - the pure reconcile plan between storage and topo ([`plan_reconcile`]);
//! - where "already gone" and "already there" are not errors (private helpers);
//! - that the reconciler keeps a restore drill's fields when it rewrites a record
//!   (the drill's own write is `backup::drill::record_drill`).
//!
//! May call: `cairn-topo`, `common`, and the rest of `backup` (storage). Never
//! mysql, tablet, coordinator or cli. Decides nothing about *which* backups go:
//! that is retention's (coordinator) or the operator's.

use anyhow::Context;
use cairn_topo::Fenced;
use cairn_topo::{BackupRecord, BackupRecordState, Fence, Shard, Topo, TopoError};

use super::manifest::Manifest;
use super::storage::{BackupInfo, BackupStorage, StorageError, StorageResultExt};
use crate::common::failpoint;

/// The catalog of one topology and one backup storage, with the leader's fence
/// when the coordinator writes through it.
#[derive(Clone, Copy)]
pub struct Catalog<'a> {
    /// Where the records and the Shard records live.
    topo: &'a Topo,
    /// Where the backups themselves live.
    storage: &'a dyn BackupStorage,
    /// The leader's fence: every topo write is refused once leadership is lost.
    /// `None` for the admin commands, which write unfenced.
    fence: Option<&'a Fence>,
}

/// What [`Catalog::remove_backup`] found and removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Removed {
    /// A record (parsable or not) was in topo.
    pub record: bool,
    /// The backup (complete or not) was in storage.
    pub storage: bool,
}

impl Removed {
    /// Whether the backup existed anywhere.
    pub fn found(&self) -> bool {
        self.record || self.storage
    }
}

/// What the reconciler changes in topo for one shard so that the catalog matches
/// storage.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CatalogDiff {
    /// Records of complete backups that have none yet, in storage's order.
    pub add: Vec<BackupRecord>,
    /// Records whose backup's state in storage changed: complete ones whose
    /// MANIFEST (or a file) became unreadable, marked so with the error and
    /// `complete: false` (kept, never deleted); marked ones readable again.
    pub update: Vec<BackupRecord>,
    /// Names of records whose backup is gone or incomplete in storage (never
    /// an unreadable one's).
    pub remove: Vec<String>,
}

impl CatalogDiff {
    /// Nothing to change.
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.update.is_empty() && self.remove.is_empty()
    }
}

/// The shard's latest backup: the complete full (not incremental) record with
/// the greatest `(backup_time, name)`. An incremental backup holds binary logs,
/// not data: it never seeds a tablet, so it is never the latest.
///
/// The source of truth is the catalog (the records in topo), not a storage
/// listing: the Shard record is a summary of the records beside it, so both are
/// read and written in the same store and agree whenever a reader looks; it costs
/// one etcd range read instead of listing storage and reading every MANIFEST; and
/// since a removal deletes the record before the data, a shard never names a
/// backup that is being removed. A backup present in storage without a record
/// becomes the latest once the reconciler catalogues it.
pub fn latest_backup(records: &[BackupRecord]) -> Option<&BackupRecord> {
    records
        .iter()
        .filter(|r| r.complete && !r.incremental)
        .max_by(|a, b| (a.backup_time, &a.name).cmp(&(b.backup_time, &b.name)))
}

/// The shard's latest *restorable* backup: [`latest_backup`] among the records
/// whose backup `listed` (storage, now) shows complete. A record still marked
/// complete whose MANIFEST or a file has gone bad since it was catalogued is
/// passed over for the next older one, so a waiting tablet is never pointed at a
/// backup it cannot restore. Pure.
pub fn latest_restorable<'r>(
    records: &'r [BackupRecord],
    listed: &[BackupInfo],
) -> Option<&'r BackupRecord> {
    let restorable: std::collections::HashSet<&str> = listed
        .iter()
        .filter(|b| b.complete)
        .map(|b| b.name.as_str())
        .collect();
    records
        .iter()
        .filter(|r| r.complete && !r.incremental && restorable.contains(r.name.as_str()))
        .max_by(|a, b| (a.backup_time, &a.name).cmp(&(b.backup_time, &b.name)))
}

/// The record of a complete backup found in storage (`None` for an incomplete
/// one, which is never catalogued).
pub fn record_of(keyspace: &str, shard: &str, b: &BackupInfo) -> Option<BackupRecord> {
    let m = b.manifest.as_ref().filter(|_| b.complete)?;
    Some(BackupRecord {
        name: b.name.clone(),
        ..complete_record(keyspace, shard, m, b.size_bytes)
    })
}

/// The record of the complete backup `m` describes, stored under `keyspace/shard`
/// (where it lies, which for a backup copied in may differ from its MANIFEST) in
/// `size_bytes`.
pub fn complete_record(keyspace: &str, shard: &str, m: &Manifest, size_bytes: u64) -> BackupRecord {
    BackupRecord {
        finished_time: Some(m.finished_time),
        size_bytes,
        schedule: m.schedule.clone(),
        incremental: m.is_incremental(),
        from_position: Some(m.incremental.from_position.clone()).filter(|_| m.is_incremental()),
        first_timestamp: m.incremental.details.as_ref().map(|d| d.first_timestamp),
        last_timestamp: m.incremental.details.as_ref().map(|d| d.last_timestamp),
        restored_bytes: Some(m.total_size),
        ..BackupRecord::full(
            m.backup_name.clone(),
            keyspace.to_string(),
            shard.to_string(),
            m.tablet_alias.clone(),
            m.backup_method,
            m.backup_time,
            m.position.clone(),
        )
    }
}

/// `r` as it should read given its backup's state in storage `b`, if that
/// differs: an unreadable backup's record gets `complete: false`, the state and
/// the error; a complete backup's record is written afresh if it was marked.
/// `None` when the record is right (or the backup is incomplete: removed
/// elsewhere). Pure.
fn updated_record(
    keyspace: &str,
    shard: &str,
    r: &BackupRecord,
    b: &BackupInfo,
) -> Option<BackupRecord> {
    if b.is_unreadable() {
        let error = Some(b.error.clone().unwrap_or_else(|| "unreadable".into()));
        let marked = !r.complete && r.state == BackupRecordState::Unreadable && r.error == error;
        return (!marked).then(|| BackupRecord {
            complete: false,
            state: BackupRecordState::Unreadable,
            error,
            ..r.clone()
        });
    }
    if b.complete && (!r.complete || r.state != BackupRecordState::Complete || r.error.is_some()) {
        // What restore drills proved of it stays: only storage's facts are new.
        return record_of(keyspace, shard, b).map(|fresh| BackupRecord {
            verified_at: r.verified_at,
            drill_seconds: r.drill_seconds,
            drill_result: r.drill_result,
            drill_error: r.drill_error.clone(),
            ..fresh
        });
    }
    None
}

/// Storage is the truth for what exists: every complete backup gets a record
/// (which wakes tablets waiting for a seed), and a record whose backup is not
/// in storage (gone, or never finished) is removed; the record of an unreadable
/// backup stays, marked unreadable with the error. `in_topo` holds the shard's
/// records.
pub fn plan_reconcile(
    keyspace: &str,
    shard: &str,
    in_storage: &[BackupInfo],
    in_topo: &[BackupRecord],
) -> CatalogDiff {
    let have: std::collections::HashSet<&str> = in_topo.iter().map(|r| r.name.as_str()).collect();
    let by_name: std::collections::HashMap<&str, &BackupInfo> =
        in_storage.iter().map(|b| (b.name.as_str(), b)).collect();
    // An unreadable backup keeps its record: it may be good data behind a
    // passing I/O error or a newer MANIFEST, and only an operator removes it.
    let kept: std::collections::HashSet<&str> = in_storage
        .iter()
        .filter(|b| b.complete || b.is_unreadable())
        .map(|b| b.name.as_str())
        .collect();
    CatalogDiff {
        add: in_storage
            .iter()
            .filter(|b| !have.contains(b.name.as_str()))
            .filter_map(|b| record_of(keyspace, shard, b))
            .collect(),
        update: in_topo
            .iter()
            .filter_map(|r| {
                let b = by_name.get(r.name.as_str())?;
                updated_record(keyspace, shard, r, b)
            })
            .collect(),
        remove: in_topo
            .iter()
            .filter(|r| !kept.contains(r.name.as_str()))
            .map(|r| r.name.clone())
            .collect(),
    }
}

impl<'a> Catalog<'a> {
    /// The catalog as an admin command writes it (unfenced).
    pub fn new(topo: &'a Topo, storage: &'a dyn BackupStorage) -> Self {
        Catalog {
            topo,
            storage,
            fence: None,
        }
    }

    /// The catalog as the leader writes it: every topo write fenced on leadership.
    pub fn fenced(topo: &'a Topo, storage: &'a dyn BackupStorage, fence: &'a Fence) -> Self {
        Catalog {
            topo,
            storage,
            fence: Some(fence),
        }
    }

    /// The backup storage this catalog describes.
    pub fn storage(&self) -> &'a dyn BackupStorage {
        self.storage
    }

    /// Removes one backup: storage is listed first (a storage that does not
    /// answer — a wrong bucket, endpoint or credentials — fails the removal before
    /// anything is written), then its record goes, the shard's latest backup is
    /// recomputed (so the shard stops naming it before any of its data goes), then
    /// its data in storage. A part already gone is not an error; the caller
    /// decides whether nothing found at all is one.
    pub async fn remove_backup(
        &self,
        keyspace: &str,
        shard: &str,
        name: &str,
    ) -> anyhow::Result<Removed> {
        let listed = self
            .storage
            .list_backups(keyspace, shard)
            .await
            .with_context(|| format!("listing the backups of {keyspace}/{shard} in storage"))?;
        let key = self.topo.keys().backup(keyspace, shard, name);
        let record = self
            .delete_if_exists(&key)
            .await
            .with_context(|| format!("removing the record of backup {name}"))?;
        // Its record is gone, so the backup (still listed) cannot be the latest.
        self.refresh_latest_from(keyspace, shard, &listed).await?;
        // The record is gone and the shard no longer names the backup; its data
        // (MANIFEST included) is still whole in storage.
        failpoint::hit("remove-backup-after-record");
        let storage = self
            .remove_from_storage(keyspace, shard, name)
            .await
            .with_context(|| format!("removing backup {name} from storage"))?;
        Ok(Removed { record, storage })
    }

    /// Writes the record of a backup found in storage (replacing any).
    pub async fn add_record(&self, record: &BackupRecord) -> anyhow::Result<()> {
        let key = self
            .topo
            .keys()
            .backup(&record.keyspace, &record.shard, &record.name);
        self.writer()
            .put(&key, record, None)
            .await
            .with_context(|| format!("writing the record of backup {}", record.name))?;
        Ok(())
    }

    /// Removes a record only, leaving storage alone (its backup is already gone,
    /// or still being written). Returns whether it was there.
    pub async fn forget_record(
        &self,
        keyspace: &str,
        shard: &str,
        name: &str,
    ) -> anyhow::Result<bool> {
        let key = self.topo.keys().backup(keyspace, shard, name);
        self.delete_if_exists(&key)
            .await
            .with_context(|| format!("removing the record of backup {name}"))
    }

    /// Sets the Shard record's latest backup from the catalog and what storage
    /// shows now (see [`latest_restorable`]); a missing Shard record is left
    /// missing. Lists the shard in storage; [`Self::refresh_latest_from`] takes
    /// a listing already made.
    pub async fn refresh_latest(&self, keyspace: &str, shard: &str) -> anyhow::Result<()> {
        let listed = self
            .storage
            .list_backups(keyspace, shard)
            .await
            .with_context(|| format!("listing the backups of {keyspace}/{shard} in storage"))?;
        self.refresh_latest_from(keyspace, shard, &listed).await
    }

    /// [`Self::refresh_latest`] with the shard's storage listing `listed`.
    pub async fn refresh_latest_from(
        &self,
        keyspace: &str,
        shard: &str,
        listed: &[BackupInfo],
    ) -> anyhow::Result<()> {
        let records: Vec<BackupRecord> = self
            .topo
            .list_backup_records(keyspace, shard)
            .await
            .context("reading the backup catalog")?
            .into_iter()
            .map(|r| r.value)
            .collect();
        let latest = latest_restorable(&records, listed);
        let name = latest.map(|r| r.name.clone());
        let time = latest.map(|r| r.backup_time);
        let key = self.topo.keys().shard(keyspace, shard);
        let update = |cur: Option<Shard>| {
            let Some(mut s) = cur else { return Ok(None) };
            if s.latest_backup == name && s.latest_backup_time == time {
                return Ok(None);
            }
            s.latest_backup = name.clone();
            s.latest_backup_time = time;
            Ok(Some(s))
        };
        self.writer()
            .update_with(&key, update)
            .await
            .with_context(|| format!("updating the latest backup of {keyspace}/{shard}"))?;
        Ok(())
    }

    /// Creates the Keyspace and Shard records when missing (a backup copied into
    /// storage for a shard topo has never seen).
    pub async fn ensure_shard(&self, keyspace: &str, shard: &str) -> anyhow::Result<()> {
        self.writer()
            .ensure_keyspace_shard(keyspace, shard)
            .await
            .with_context(|| format!("creating keyspace/shard {keyspace}/{shard}"))?;
        Ok(())
    }

    /// The writes of this catalog: fenced when it has a fence.
    fn writer(&self) -> Fenced<'_> {
        self.topo.writer(self.fence)
    }

    /// Deletes `key` if it exists (fenced when the catalog has a fence); returns
    /// whether it was there. A record that no longer parses is still removed.
    async fn delete_if_exists(&self, key: &str) -> Result<bool, TopoError> {
        self.writer().delete_if_exists(key).await
    }

    /// Removes a backup's data; returns whether it was there.
    async fn remove_from_storage(
        &self,
        keyspace: &str,
        shard: &str,
        name: &str,
    ) -> Result<bool, StorageError> {
        self.storage
            .remove_backup(keyspace, shard, name)
            .await
            .ignore_not_found()
            .map(|r| r.is_some())
    }
}

#[cfg(test)]
mod tests;
