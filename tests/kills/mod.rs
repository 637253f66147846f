//! Helpers shared by the kill tests (`safety_kills_agent`, `safety_kills_leader`):
//! a shard with rows, and what the operator sees of backups, catalog and tablets.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::time::Duration;

use cairn::testkit::{wait_for, Cluster, TabletProcess};
use cairn_topo::{Job, Topo};

pub const T: Duration = Duration::from_secs(120);

pub async fn cluster() -> Cluster {
    Cluster::start(env!("CARGO_BIN_EXE_cairn").into())
        .await
        .expect("cluster")
}

/// A primary (uid) and a replica (uid+1) of `ks/0` with 2000 rows in `app.t`.
pub async fn shard(c: &Cluster, topo: &Topo, uid: u32) -> (TabletProcess, TabletProcess) {
    let specs = [
        c.tablet(uid, "ks", "0").unwrap(),
        c.tablet(uid + 1, "ks", "0").unwrap(),
    ];
    let mut p = c.spawn_tablet(&specs[0]).unwrap();
    let mut r = c.spawn_tablet(&specs[1]).unwrap();
    p.wait_healthy(topo, T).await.unwrap();
    r.wait_healthy(topo, T).await.unwrap();
    c.cli_ok(&["init-shard-primary", "ks/0", &specs[0].alias()])
        .unwrap();
    p.sql(
        "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v TEXT); \
         INSERT INTO app.t SELECT seq, REPEAT(MD5(seq), 20) FROM app.seq_1_to_2000",
    )
    .unwrap();
    wait_rows(&r, 2000).await;
    wait_replicating(c, &specs[1].alias()).await;
    (p, r)
}

pub async fn wait_rows(t: &TabletProcess, n: u64) {
    t.wait_value("SELECT COUNT(*) FROM app.t", &n.to_string(), T)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

pub fn rows(t: &TabletProcess) -> u64 {
    t.sql("SELECT COUNT(*) FROM app.t")
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Waits until get-tablets shows the tablet healthy as a REPLICA, replicating.
pub async fn wait_replicating(c: &Cluster, alias: &str) {
    wait_for(&format!("{alias} healthy REPLICA"), T, || async {
        let rows: Vec<serde_json::Value> =
            serde_json::from_str(&c.cli_ok(&["get-tablets", "--json"])?)?;
        Ok(rows
            .iter()
            .find(|r| {
                r["alias"] == alias
                    && r["type"] == "REPLICA"
                    && r["healthy"] == true
                    && r["replicating"] == true
            })
            .map(|_| ()))
    })
    .await
    .unwrap();
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
