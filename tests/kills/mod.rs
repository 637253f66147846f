//! Helpers shared by the kill tests (`safety_kills_agent`, `safety_kills_leader`):
//! a shard with rows, and what the operator sees of backups, catalog and tablets.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::time::Duration;

use cairn::testkit::{Cluster, TabletProcess};
use cairn_topo::{Job, Topo};

pub const T: Duration = Duration::from_secs(120);

pub async fn cluster() -> Cluster {
    Cluster::start(env!("CARGO_BIN_EXE_cairn").into())
        .await
        .expect("cluster")
}

/// A primary (uid) and a replica (uid+1) of `ks/0` with 2000 rows in `app.t`.
pub async fn shard(c: &Cluster, topo: &Topo, uid: u32) -> (TabletProcess, TabletProcess) {
    c.primary_and_replica(topo, ("ks", "0"), uid, &[], 2000, T)
        .await
        .unwrap()
}

pub async fn wait_rows(t: &TabletProcess, n: u64) {
    t.wait_rows(n, T).await.unwrap()
}

pub fn rows(t: &TabletProcess) -> u64 {
    t.rows().unwrap()
}

/// Waits until get-tablets shows the tablet healthy as a REPLICA, replicating.
pub async fn wait_replicating(c: &Cluster, alias: &str) {
    c.wait_replicating(alias, T).await.unwrap()
}

pub fn root(c: &Cluster) -> String {
    c.backup_root().display().to_string()
}

/// `list-backups ks/0 --json`: what the operator sees in storage.
pub fn list_backups(c: &Cluster) -> Vec<serde_json::Value> {
    let out = c
        .cli_ok(&[
            "list-backups",
            "ks/0",
            "--json",
            "--file-backup-storage-root",
            &root(c),
        ])
        .unwrap();
    serde_json::from_str(&out).unwrap()
}

/// The backup named `name` as `list-backups` shows it.
pub fn listed(c: &Cluster, name: &str) -> Option<serde_json::Value> {
    list_backups(c).into_iter().find(|b| b["name"] == name)
}

/// Names of the backup records of `ks/0` in topo (the catalog).
pub async fn records(topo: &Topo) -> BTreeSet<String> {
    topo.list_backup_records("ks", "0")
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.value.name)
        .collect()
}

pub async fn latest(topo: &Topo) -> Option<String> {
    topo.get_shard("ks", "0")
        .await
        .unwrap()
        .and_then(|s| s.value.latest_backup)
}

pub async fn job(topo: &Topo, id: &str) -> Job {
    topo.get::<Job>(&topo.keys().job(id))
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("job {id} is gone"))
        .value
}
