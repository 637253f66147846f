//! The synthetic topology: keyspace `bench`, shards `s0000`…, four tablets each
//! (the first the primary) with a Health record on a lease, written with
//! concurrent single puts.

use anyhow::Context;
use cairn_topo::{Health, Keyspace, Shard, Tablet, TabletAlias, TabletType, Topo};
use chrono::Utc;
use futures::StreamExt;

use super::{CELL, KS, TABLETS_PER_SHARD, WRITE_CONCURRENCY};

pub fn shard_name(i: usize) -> String {
    format!("s{i:04}")
}

/// Tablet uid (1-based) `u` is tablet `(u-1) % 4` of shard `(u-1) / 4`; the
/// first of each shard is its primary.
pub fn tablet_of(u: u32) -> (usize, bool) {
    let i = (u - 1) as usize;
    (i / TABLETS_PER_SHARD, i % TABLETS_PER_SHARD == 0)
}

pub fn alias(u: u32) -> TabletAlias {
    TabletAlias {
        cell: CELL.into(),
        uid: u,
    }
}

pub fn health(primary: bool, seq: u64) -> Health {
    Health {
        mysqld_up: true,
        replication_io_running: !primary,
        replication_sql_running: !primary,
        replication_lag_seconds: (!primary).then_some(0),
        gtid_position: Some(format!("MariaDB/0-1-{}", 1000 + seq)),
        serving: true,
        busy_job: None,
        last_error: None,
        restoring_backup: None,
        updated_at: Some(Utc::now()),
        ..Health::default()
    }
}

/// Every record of the topology as (key, JSON, on the Health lease).
pub fn topology_records(
    topo: &Topo,
    shards: usize,
) -> anyhow::Result<Vec<(String, serde_json::Value, bool)>> {
    let k = topo.keys();
    let now = Utc::now();
    let mut out = Vec::with_capacity(1 + shards * (1 + 2 * TABLETS_PER_SHARD));
    out.push((
        k.keyspace(KS),
        serde_json::to_value(Keyspace {
            name: KS.into(),
            created_at: now,
        })?,
        false,
    ));
    for s in 0..shards {
        let name = shard_name(s);
        let first = (s * TABLETS_PER_SHARD + 1) as u32;
        out.push((
            k.shard(KS, &name),
            serde_json::to_value(Shard {
                keyspace: KS.into(),
                name: name.clone(),
                primary_alias: Some(alias(first)),
                primary_term_start_time: Some(now),
                latest_backup: None,
                latest_backup_time: None,
                created_at: now,
            })?,
            false,
        ));
        for u in first..first + TABLETS_PER_SHARD as u32 {
            let primary = u == first;
            let ty = if primary {
                TabletType::Primary
            } else {
                TabletType::Replica
            };
            let a = alias(u);
            out.push((
                k.tablet(&a),
                serde_json::to_value(Tablet {
                    alias: a.clone(),
                    hostname: format!("bench-host-{u}"),
                    mysql_host: format!("bench-host-{u}"),
                    mysql_port: 3306,
                    port: 15000,
                    keyspace: KS.into(),
                    shard: name.clone(),
                    tablet_type: ty,
                    base_type: ty,
                    flavor: "MariaDB".into(),
                    tablet_dir: format!("tablet-{u}"),
                    started_at: now,
                })?,
                false,
            ));
            out.push((
                k.health(&a),
                serde_json::to_value(health(primary, 0))?,
                true,
            ));
        }
    }
    Ok(out)
}

/// Writes every record with `WRITE_CONCURRENCY` puts in flight; returns the count.
pub async fn write_topology(topo: &Topo, lease: i64, shards: usize) -> anyhow::Result<usize> {
    let records = topology_records(topo, shards)?;
    let n = records.len();
    let results: Vec<_> = futures::stream::iter(records)
        .map(|(key, value, leased)| {
            let topo = topo.clone();
            async move {
                topo.put(&key, &value, leased.then_some(lease))
                    .await
                    .with_context(|| format!("writing {key}"))
            }
        })
        .buffer_unordered(WRITE_CONCURRENCY)
        .collect()
        .await;
    for r in results {
        r?;
    }
    Ok(n)
}
