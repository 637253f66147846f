//! The catalog reconciler: the leader's periodic pass that makes topo's backup
//! records match backup storage, shard by shard. Level-triggered and idempotent:
//! a pass cut short (crash, lost election) is finished by the next one, on
//! whichever coordinator leads then.
//!
//! Owns only the pass. The plan is [`crate::backup::catalog::plan_reconcile`]
//! (pure, storage is the truth for what exists); the writes go through the
//! leader's fenced [`Catalog`]. May call: the coordinator's cache and `backup`
//! (catalog, storage).

use std::collections::{BTreeSet, HashMap, HashSet};

use cairn_topo::Fence;

use super::shared::Shared;
use crate::backup::catalog::{plan_reconcile, Catalog};

/// A shard, as `(keyspace, shard)`.
type ShardKey = (String, String);

/// Storage is the truth: every complete backup gets its record (waking tablets
/// waiting for a seed), records whose backup is gone are removed, and the shard's
/// latest backup follows.
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
    for (ks, shard) in shards {
        let listed = shared.storage.list_backups(&ks, &shard).await?;
        let key = (ks, shard);
        let have = records.get(&key).map(Vec::as_slice).unwrap_or_default();
        let (ks, shard) = (&key.0, &key.1);
        let diff = plan_reconcile(ks, shard, &listed, have);
        if diff.is_empty() {
            continue;
        }
        // A backup copied in for a shard topo has never seen: its Shard record first.
        if !diff.add.is_empty() && !known.contains(&key) {
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
    }
    Ok(())
}
