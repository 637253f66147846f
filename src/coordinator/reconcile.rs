//! The catalog reconciler: the leader's periodic pass that makes topo's backup
//! records match backup storage, shard by shard. Level-triggered and idempotent:
//! a pass cut short (crash, lost election) is finished by the next one, on
//! whichever coordinator leads then.
//!
//! Owns the pass, the report of each shard's unreadable backups to the metrics
//! (the pass lists every shard anyway), and the rule that one failing shard is
//! logged, counted and skipped while a lost leadership ends the pass
//! ([`lost_leadership`], shared with retention). The plan is
//! [`crate::backup::catalog::plan_reconcile`] (pure, storage is the truth for
//! what exists; records of unreadable backups stay); the writes go through the
//! leader's fenced [`Catalog`]. May call: the coordinator's cache and metrics,
//! and `backup` (catalog, storage).

use std::collections::{BTreeSet, HashMap, HashSet};

use cairn_topo::Fence;

use super::metrics::UnreadableBackup;
use super::shared::Shared;
use crate::backup::catalog::{plan_reconcile, Catalog};
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
    let (records, known): (HashMap<ShardKey, Vec<String>>, HashSet<ShardKey>) = {
        let s = shared.cache.inner.read().await;
        shards.extend(s.backups.keys().cloned());
        (
            s.backups
                .iter()
                .map(|(k, m)| (k.clone(), m.keys().cloned().collect()))
                .collect(),
            s.shards.keys().cloned().collect(),
        )
    };
    let catalog = Catalog::fenced(&shared.topo, shared.storage.as_ref(), fence);
    for key in shards {
        let have = records.get(&key).map(Vec::as_slice).unwrap_or_default();
        let r = reconcile_shard(shared, &catalog, &key, have, known.contains(&key)).await;
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

async fn reconcile_shard(
    shared: &Shared,
    catalog: &Catalog<'_>,
    key: &ShardKey,
    have: &[String],
    known: bool,
) -> anyhow::Result<()> {
    let (ks, shard) = (&key.0, &key.1);
    let listed = shared.storage.list_backups(ks, shard).await?;
    shared
        .metrics
        .set_unreadable(ks, shard, unreadable_of(ks, shard, &listed));
    let diff = plan_reconcile(ks, shard, &listed, have);
    if diff.is_empty() {
        return Ok(());
    }
    // A backup copied in for a shard topo has never seen: its Shard record first.
    if !diff.add.is_empty() && !known {
        catalog.ensure_shard(ks, shard).await?;
    }
    for record in &diff.add {
        catalog.add_record(record).await?;
        tracing::info!(backup = %record.name, shard = %format!("{ks}/{shard}"), "catalogued a backup found in storage");
    }
    for name in &diff.remove {
        catalog.forget_record(ks, shard, name).await?;
        tracing::info!(backup = %name, shard = %format!("{ks}/{shard}"), "removed a record whose backup is gone from storage");
    }
    catalog.refresh_latest(ks, shard).await?;
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
