//! Helpers of `tests/pitr_restore.rs` (a module of that test binary, not one
//! of its own): the staged accident, waiting, targets, and checks of restored
//! tablets.

use std::time::Duration;

use cairn::testkit::{Cluster, TabletProcess};
use chrono::{DateTime, SecondsFormat, Utc};

pub const T: Duration = Duration::from_secs(120);

pub fn at(t: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(t, 0).unwrap()
}

/// `cairn backup ALIAS --incremental-from-pos auto`: the replica's binlogs since
/// the newest backup, as an incremental backup.
pub fn incremental(c: &Cluster, alias: &str) {
    let name = c
        .cli_ok(&["backup", alias, "--incremental-from-pos", "auto"])
        .unwrap();
    assert!(!name.trim().is_empty(), "no incremental stored");
}

/// Sleeps to the start of the next second; returns that second.
pub async fn next_second() -> DateTime<Utc> {
    let now = Utc::now();
    let ms = 1000 - now.timestamp_subsec_millis() as u64;
    tokio::time::sleep(Duration::from_millis(ms + 20)).await;
    at(now.timestamp() + 1)
}

pub fn rfc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub fn ids(t: &TabletProcess) -> String {
    t.sql("SELECT GROUP_CONCAT(id ORDER BY id) FROM app.t")
        .unwrap()
        .trim()
        .to_string()
}

/// Waits until `alias` is registered DRAINED with mysqld up.
pub async fn wait_drained(c: &Cluster, t: &mut TabletProcess) {
    let alias = t.spec.alias();
    let deadline = std::time::Instant::now() + T;
    loop {
        if let Some(st) = t.try_exit() {
            panic!("{alias} exited ({st}):\n{}", t.log_tail(40));
        }
        let out = c.cli_ok(&["get-tablets", "--json"]).unwrap();
        let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
        if rows
            .iter()
            .any(|r| r["alias"] == alias.as_str() && r["type"] == "DRAINED")
        {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{alias} not DRAINED:\n{}",
            t.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

pub fn assert_not_replicating(t: &TabletProcess) {
    let st = t.sql("SHOW SLAVE STATUS\\G").unwrap();
    assert!(
        !st.contains(": Yes"),
        "{} replicates:\n{st}",
        t.spec.alias()
    );
}

/// `cairn ARGS` must fail with `code` and say `why` on stderr.
pub fn refused(c: &Cluster, args: &[&str], code: i32, why: &str) {
    let out = c.cli(args).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
    assert!(err.contains(why), "{args:?}: {why:?} not in {err}");
}

/// `get-shard ks/0 --json`.
pub fn shard_json(c: &Cluster) -> serde_json::Value {
    serde_json::from_str(&c.cli_ok(&["get-shard", "ks/0", "--json"]).unwrap()).unwrap()
}

/// The accident, staged: what the restores are checked against.
pub struct Scene {
    pub p: TabletProcess,
    pub r: TabletProcess,
    /// The second each row (id = index + 1) was written in.
    pub seconds: Vec<DateTime<Utc>>,
    /// The primary's position after each row.
    pub gtids: Vec<String>,
    /// The second of the `DROP TABLE`, which no row shares.
    pub drop_second: DateTime<Utc>,
}

/// A primary (101) and a replica (102) of `ks/0`; rows 1..3 second by second, a
/// full backup of the replica, rows 4..7, an incremental, `DROP TABLE` in a
/// second of its own, another incremental.
pub async fn accident(c: &Cluster) -> Scene {
    let topo = c.topo().await.unwrap();
    let (ps, rs) = (
        c.tablet(101, "ks", "0").unwrap(),
        c.tablet(102, "ks", "0").unwrap(),
    );
    let mut p = c.spawn_tablet(&ps).unwrap();
    let mut r = c.spawn_tablet(&rs).unwrap();
    p.wait_healthy(&topo, T).await.unwrap();
    r.wait_healthy(&topo, T).await.unwrap();
    c.cli_ok(&["init-shard-primary", "ks/0", &ps.alias()])
        .unwrap();
    p.sql("CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, at BIGINT)")
        .unwrap();
    let mut seconds = vec![];
    let mut gtids = vec![];
    for id in 1..=7 {
        if id == 4 {
            r.wait_value("SELECT COUNT(*) FROM app.t", "3", T)
                .await
                .unwrap();
            c.cli_ok(&["backup", &rs.alias()]).unwrap();
            r.wait_healthy(&topo, T).await.unwrap();
        }
        let at = next_second().await;
        p.sql(&format!(
            "INSERT INTO app.t VALUES ({id}, {})",
            at.timestamp()
        ))
        .unwrap();
        seconds.push(at);
        gtids.push(
            p.sql("SELECT @@gtid_binlog_pos")
                .unwrap()
                .trim()
                .to_string(),
        );
    }
    r.wait_value("SELECT COUNT(*) FROM app.t", "7", T)
        .await
        .unwrap();
    incremental(c, &rs.alias());
    let drop_second = next_second().await;
    p.sql("DROP TABLE app.t").unwrap();
    r.wait_value(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 't'",
        "0",
        T,
    )
    .await
    .unwrap();
    incremental(c, &rs.alias());
    Scene {
        p,
        r,
        seconds,
        gtids,
        drop_second,
    }
}
