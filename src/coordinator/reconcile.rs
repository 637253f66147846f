//! The catalog reconciler: the leader's periodic pass that makes topo's backup
//! records match backup storage, shard by shard. Level-triggered and idempotent:
//! a pass cut short (crash, lost election) is finished by the next one, on
//! whichever coordinator leads then.
//!
//! Owns the pass, the report of each shard's unreadable backups to the metrics
//! (the pass lists every shard anyway), keeping each Shard record's latest
//! backup on the newest one that is restorable now (a catalogued backup whose
//! MANIFEST or a file went bad has its record marked unreadable, never removed,
//! and the latest falls back), and the rule that one failing shard is
//! logged, counted and skipped while a lost leadership ends the pass
//! ([`lost_leadership`], shared with retention). The plan is
//! [`crate::backup::catalog::plan_reconcile`] (pure, storage is the truth for
//! what exists; records of unreadable backups stay); the writes go through the
//! leader's fenced [`Catalog`]. May call: the coordinator's cache and metrics,
//! and `backup` (catalog, storage).

use std::collections::{BTreeSet, HashMap};

use cairn_topo::Fence;

use cairn_topo::BackupRecord;

use super::metrics::UnreadableBackup;
use super::shared::Shared;
use crate::backup::catalog::{latest_restorable, plan_reconcile, Catalog, CatalogDiff};
use crate::backup::storage::BackupInfo;

/// A shard, as `(keyspace, shard)`.
type ShardKey = (String, String);

/// Storage is the truth: every complete backup gets its record (waking tablets
/// waiting for a seed), records whose backup is gone are removed (never those of
/// unreadable backups), and the shard's latest backup follows. The unreadable
/// backups of each shard are reported to the metrics. A shard that fails (its
/// listing, a write) is logged, counted and skipped; the others go on.
pub async fn reconcile_catalog(shared: &Shared, fence: &Fence) -> anyhow::Result<()> {
    let mut shards: BTreeSet<ShardKey> = shared
        .storage
        .list_shards()
        .await?
        .into_iter()
        .map(|d| (d.keyspace, d.shard))
        .collect();
    // Each shard's records, and the latest backup its Shard record names (outer
    // `None`: no Shard record).
    type Known = HashMap<ShardKey, Option<String>>;
    let (records, known): (HashMap<ShardKey, Vec<BackupRecord>>, Known) = {
        let s = shared.cache.inner.read().await;
        shards.extend(s.backups.keys().cloned());
        (
            s.backups
                .iter()
                .map(|(k, m)| (k.clone(), m.values().cloned().collect()))
                .collect(),
            s.shards
                .iter()
                .map(|(k, v)| (k.clone(), v.value.latest_backup.clone()))
                .collect(),
        )
    };
    let catalog = Catalog::fenced(&shared.topo, shared.storage.as_ref(), fence);
    for key in shards {
        let have = records.get(&key).map(Vec::as_slice).unwrap_or_default();
        let r = reconcile_shard(shared, &catalog, &key, have, known.get(&key)).await;
        if let Err(e) = r {
            // A lost election is not one shard's trouble: stop the pass.
            if lost_leadership(&e) {
                return Err(e);
            }
            shared.metrics.count_skipped("reconcile");
            tracing::warn!(shard = %format!("{}/{}", key.0, key.1), error = format!("{e:#}"),
                "catalog reconciler skipped a shard");
        }
    }
    Ok(())
}

/// Whether `e` is a fenced write refused because leadership is gone: the end of
/// the pass, not one item's trouble.
pub(super) fn lost_leadership(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<cairn_topo::TopoError>(),
            Some(cairn_topo::TopoError::Fenced(_))
        )
    })
}

/// The unreadable backups of a listing, as the metrics report them. Pure.
pub fn unreadable_of(keyspace: &str, shard: &str, listed: &[BackupInfo]) -> Vec<UnreadableBackup> {
    listed
        .iter()
        .filter(|b| b.is_unreadable())
        .map(|b| UnreadableBackup {
            keyspace: keyspace.to_string(),
            shard: shard.to_string(),
            name: b.name.clone(),
            error: b.error.clone().unwrap_or_default(),
        })
        .collect()
}

/// Whether the Shard record's latest backup (`named`; outer `None`: no Shard
/// record) must be recomputed: the catalog changed, or it names something other
/// than the latest restorable backup of the records and the listing. Pure.
pub fn latest_needs_refresh(
    diff: &CatalogDiff,
    have: &[BackupRecord],
    listed: &[BackupInfo],
    named: Option<&Option<String>>,
) -> bool {
    if !diff.is_empty() {
        return true;
    }
    let Some(named) = named else {
        return false;
    };
    latest_restorable(have, listed).map(|r| &r.name) != named.as_ref()
}

async fn reconcile_shard(
    shared: &Shared,
    catalog: &Catalog<'_>,
    key: &ShardKey,
    have: &[BackupRecord],
    latest: Option<&Option<String>>,
) -> anyhow::Result<()> {
    let (ks, shard) = (&key.0, &key.1);
    let label = format!("{ks}/{shard}");
    let listed = shared.storage.list_backups(ks, shard).await?;
    shared
        .metrics
        .set_unreadable(ks, shard, unreadable_of(ks, shard, &listed));
    let diff = plan_reconcile(ks, shard, &listed, have);
    if !latest_needs_refresh(&diff, have, &listed, latest) {
        return Ok(());
    }
    // A backup copied in for a shard topo has never seen: its Shard record first.
    if !diff.add.is_empty() && latest.is_none() {
        catalog.ensure_shard(ks, shard).await?;
    }
    for record in &diff.add {
        catalog.add_record(record).await?;
        tracing::info!(backup = %record.name, shard = %label, "catalogued a backup found in storage");
    }
    for record in &diff.update {
        catalog.add_record(record).await?;
        match &record.error {
            Some(error) => tracing::warn!(backup = %record.name, shard = %label, %error,
                "a catalogued backup is unreadable now: its record is kept, marked, and never the latest"),
            None => tracing::info!(backup = %record.name, shard = %label,
                "a backup marked unreadable is readable again"),
        }
    }
    for name in &diff.remove {
        catalog.forget_record(ks, shard, name).await?;
        tracing::info!(backup = %name, shard = %label, "removed a record whose backup is gone from storage");
    }
    catalog.refresh_latest_from(ks, shard, &listed).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;
    use cairn_topo::TopoError;

    #[test]
    fn only_a_refused_fenced_write_ends_the_pass() {
        let fenced: anyhow::Result<()> = Err(TopoError::Fenced("k".into())).context("writing");
        assert!(lost_leadership(&fenced.unwrap_err()));
        let other: anyhow::Result<()> = Err(TopoError::NoNode("k".into())).context("writing");
        assert!(!lost_leadership(&other.unwrap_err()));
        assert!(!lost_leadership(&anyhow::anyhow!("listing failed")));
    }

    #[test]
    fn the_latest_is_refreshed_when_it_is_not_the_restorable_one() {
        use chrono::TimeZone;
        let t = chrono::Utc.timestamp_opt(1_700_000_000, 0).unwrap();
        let manifest = |name: &str| crate::backup::manifest::Manifest {
            backup_name: name.into(),
            backup_method: crate::backup::manifest::BackupMethod::Builtin,
            position: "MariaDB/0-1-1".into(),
            purged_position: String::new(),
            backup_time: t,
            finished_time: t,
            server_uuid: String::new(),
            tablet_alias: "zone1-0000000101".into(),
            hostname: String::new(),
            keyspace: "ks".into(),
            shard: "0".into(),
            schedule: None,
            mysql_version: String::new(),
            upgrade_safe: false,
            compression_engine: crate::backup::manifest::CompressionEngine::None,
            file_entries: vec![],
            total_size: 0,
            stored_size: 0,
            stream_mode: None,
            encryption: None,
            encryption_recipients: vec![],
            flavor: "MariaDB".into(),
            format_version: crate::backup::manifest::FORMAT_VERSION,
            incremental: Default::default(),
        };
        let good = BackupInfo::with_manifest("a", manifest("a"), 1);
        let rec = crate::backup::catalog::complete_record("ks", "0", &manifest("a"), 1);
        let none = CatalogDiff::default();
        let changed = CatalogDiff {
            remove: vec!["x".into()],
            ..CatalogDiff::default()
        };
        let a = Some("a".to_string());
        let (have, listed) = (std::slice::from_ref(&rec), std::slice::from_ref(&good));
        // (what, diff, records, listing, what the Shard names, refresh)
        type Named<'a> = Option<&'a Option<String>>;
        type Case<'a> = (
            &'a str,
            &'a CatalogDiff,
            &'a [BackupRecord],
            &'a [BackupInfo],
            Named<'a>,
            bool,
        );
        let cases: Vec<Case> = vec![
            ("in step", &none, have, listed, Some(&a), false),
            (
                "the catalog changed",
                &changed,
                have,
                listed,
                Some(&a),
                true,
            ),
            (
                "names nothing, a is restorable",
                &none,
                have,
                listed,
                Some(&None),
                true,
            ),
            ("names a, which went bad", &none, have, &[], Some(&a), true),
            (
                "names nothing, nothing restorable",
                &none,
                &[],
                &[],
                Some(&None),
                false,
            ),
            (
                "no Shard record, nothing changed",
                &none,
                have,
                listed,
                None,
                false,
            ),
        ];
        for (what, diff, have, listed, named, want) in cases {
            assert_eq!(
                latest_needs_refresh(diff, have, listed, named),
                want,
                "{what}"
            );
        }
    }

    #[test]
    fn unreadable_backups_are_reported_with_their_error() {
        let listed = vec![
            BackupInfo::incomplete("a", 1),
            BackupInfo::unreadable("b", "bad JSON", 1),
        ];
        assert_eq!(
            unreadable_of("ks", "0", &listed),
            vec![UnreadableBackup {
                keyspace: "ks".into(),
                shard: "0".into(),
                name: "b".into(),
                error: "bad JSON".into(),
            }]
        );
    }
}
