//! The coordinator against real etcd and MariaDB: schedules that fire and pick a
//! healthy replica, failover between coordinators, retries, retention, the catalog
//! reconciler and seed notification.

use std::time::{Duration, Instant};

use cairn::testkit::{wait_for, Cluster, CoordinatorProcess, TabletProcess};
use cairn_topo::Topo;

const T: Duration = Duration::from_secs(120);

async fn cluster() -> Cluster {
    Cluster::start(env!("CARGO_BIN_EXE_cairn").into())
        .await
        .expect("cluster")
}

/// A primary (uid) and `replicas` replicas of `ks/0`, with a table.
async fn shard(
    c: &Cluster,
    topo: &Topo,
    uid: u32,
    replicas: u32,
    env: &[(&str, &str)],
) -> Vec<TabletProcess> {
    let mut tablets = Vec::new();
    for i in 0..=replicas {
        let mut spec = c.tablet(uid + i, "ks", "0").unwrap();
        if i > 0 {
            spec.env = env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        }
        tablets.push(c.spawn_tablet(&spec).unwrap());
    }
    for t in tablets.iter_mut() {
        t.wait_healthy(topo, T).await.unwrap();
    }
    c.cli_ok(&["init-shard-primary", "ks/0", &tablets[0].spec.alias()])
        .unwrap();
    tablets[0]
        .sql("CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v TEXT); INSERT INTO app.t SELECT seq, MD5(seq) FROM app.seq_1_to_500")
        .unwrap();
    for t in &tablets[1..] {
        wait_for("rows on the replica", T, || async {
            Ok(t.sql("SELECT COUNT(*) FROM app.t")
                .ok()
                .filter(|s| s.trim() == "500"))
        })
        .await
        .unwrap();
    }
    tablets
}

fn jobs(c: &Cluster) -> Vec<serde_json::Value> {
    serde_json::from_str(&c.cli_ok(&["jobs", "--json"]).unwrap()).unwrap()
}

fn succeeded(c: &Cluster) -> Vec<serde_json::Value> {
    jobs(c)
        .into_iter()
        .filter(|j| j["state"] == "SUCCEEDED")
        .collect()
}

async fn wait_leader(c: &CoordinatorProcess) {
    c.wait_leader(T).await.unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread")]
async fn scheduled_backup_picks_a_healthy_replica() {
    tokio::time::timeout(Duration::from_secs(300), async {
        let c = cluster().await;
        let topo = c.topo().await.unwrap();
        let tablets = shard(&c, &topo, 100, 3, &[]).await;
        // 101: replication broken (a conflicting row), 102: delayed (lagging), 103: fine.
        tablets[1]
            .sql("SET sql_log_bin=0; INSERT INTO app.t VALUES (9999, 'conflict')")
            .unwrap();
        tablets[0]
            .sql("INSERT INTO app.t VALUES (9999, 'from the primary')")
            .unwrap();
        tablets[2]
            .sql("STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = 3600; START SLAVE")
            .unwrap();
        tablets[0]
            .sql("INSERT INTO app.t VALUES (10000, 'lag maker')")
            .unwrap();
        wait_for("tablet 101 broken and 102 lagging in Health", T, || async {
            let out = c.cli_ok(&["get-tablets", "--json"])?;
            let rows: Vec<serde_json::Value> = serde_json::from_str(&out)?;
            let broken = rows
                .iter()
                .any(|r| r["alias"] == tablets[1].spec.alias() && r["healthy"] == false);
            let lagging = rows.iter().any(|r| {
                r["alias"] == tablets[2].spec.alias()
                    && r["replication_lag_seconds"].as_u64().is_some_and(|l| l > 5)
            });
            Ok((broken && lagging).then_some(()))
        })
        .await
        .unwrap();

        let coord = c
            .spawn_coordinator("c1", &["--max-lag", "5s", "--reconcile-interval", "1s"])
            .unwrap();
        wait_leader(&coord).await;
        c.cli_ok(&[
            "schedule",
            "set",
            "every5s",
            "--cron",
            "*/5 * * * * *",
            "--target",
            "ks",
        ])
        .unwrap();
        let done = wait_for("a scheduled backup", T, || async {
            Ok(succeeded(&c).into_iter().next())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", coord.log_tail(30)));
        assert_eq!(done["tablet_alias"], tablets[3].spec.alias(), "{done}");
        assert_eq!(done["schedule"], "every5s");
        for j in jobs(&c) {
            assert_ne!(
                j["tablet_alias"],
                tablets[0].spec.alias(),
                "the primary was picked: {j}"
            );
            assert_ne!(
                j["tablet_alias"],
                tablets[1].spec.alias(),
                "a broken replica was picked: {j}"
            );
            assert_ne!(
                j["tablet_alias"],
                tablets[2].spec.alias(),
                "a lagging replica was picked: {j}"
            );
        }
        let list: Vec<serde_json::Value> =
            serde_json::from_str(&c.cli_ok(&["schedule", "list", "--json"]).unwrap()).unwrap();
        assert!(
            list[0]["last_run"].is_string() && list[0]["next_run"].is_string(),
            "{list:?}"
        );
        // Status and metrics.
        let status = coord.status().unwrap();
        assert_eq!(status["id"], "c1");
        assert_eq!(status["leader_id"], "c1");
        assert!(status["shards"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["latest_backup"].is_string()));
        let (code, metrics) = coord.http_get("/metrics").unwrap();
        assert_eq!(code, 200);
        assert!(
            metrics
                .contains("cairn_coordinator_backups_succeeded_total{keyspace=\"ks\",shard=\"0\"}"),
            "{metrics}"
        );
        assert!(metrics.contains("cairn_coordinator_is_leader 1"));
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread")]
async fn standby_takes_over_and_no_run_is_lost_or_doubled() {
    tokio::time::timeout(Duration::from_secs(300), async {
        let c = cluster().await;
        let topo = c.topo().await.unwrap();
        let _tablets = shard(&c, &topo, 200, 2, &[]).await;
        let mut a = c.spawn_coordinator("a", &["--lease-ttl", "3s"]).unwrap();
        wait_leader(&a).await;
        let b = c.spawn_coordinator("b", &["--lease-ttl", "3s"]).unwrap();
        wait_for("b standing by", T, || async {
            Ok(b.status()
                .ok()
                .filter(|s| s["is_leader"] == false && s["leader_id"] == "a")
                .map(|_| ()))
        })
        .await
        .unwrap();
        c.cli_ok(&[
            "schedule",
            "set",
            "s",
            "--cron",
            "*/6 * * * * *",
            "--target",
            "ks/0",
        ])
        .unwrap();
        wait_for("a first scheduled backup", T, || async {
            Ok((!succeeded(&c).is_empty()).then_some(()))
        })
        .await
        .unwrap();
        // Kill the leader in the middle of a cycle (a job may be running).
        wait_for("a job in flight", Duration::from_secs(20), || async {
            Ok(jobs(&c)
                .iter()
                .any(|j| j["state"] == "RUNNING" || j["state"] == "PENDING")
                .then_some(()))
        })
        .await
        .ok();
        a.kill9();
        let killed = Instant::now();
        wait_leader(&b).await;
        let takeover = killed.elapsed();
        assert!(
            takeover < Duration::from_secs(8),
            "takeover took {takeover:?} with a 3s TTL"
        );
        let before = succeeded(&c).len();
        wait_for("backups under the new leader", T, || async {
            Ok((succeeded(&c).len() >= before + 2).then_some(()))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", b.log_tail(30)));

        // Never two backups of the shard at once.
        let mut spans: Vec<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)> =
            jobs(&c)
                .iter()
                .filter(|j| j["started_at"].is_string() && j["finished_at"].is_string())
                .map(|j| {
                    (
                        j["started_at"].as_str().unwrap().parse().unwrap(),
                        j["finished_at"].as_str().unwrap().parse().unwrap(),
                    )
                })
                .collect();
        spans.sort();
        for w in spans.windows(2) {
            assert!(w[0].1 <= w[1].0, "overlapping backups: {w:?}");
        }
        // Each slot has at most one job per shard.
        let mut slots: Vec<String> = jobs(&c)
            .iter()
            .filter(|j| j["attempt"] == 1)
            .filter_map(|j| j["scheduled_for"].as_str().map(str::to_string))
            .collect();
        let n = slots.len();
        slots.sort();
        slots.dedup();
        assert_eq!(slots.len(), n, "a slot got two first attempts");
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tablet_killed_during_a_scheduled_backup_is_retried_elsewhere() {
    tokio::time::timeout(Duration::from_secs(300), async {
        let c = cluster().await;
        let topo = c.topo().await.unwrap();
        // Slow storage so the backup is still running when its tablet dies.
        let mut tablets = shard(
            &c,
            &topo,
            300,
            2,
            &[("CAIRN_FAULT_STORAGE_BYTES_PER_SEC", "262144")],
        )
        .await;
        let coord = c.spawn_coordinator("c", &["--lease-ttl", "3s"]).unwrap();
        wait_leader(&coord).await;
        // Every second, paused as soon as the first run is going.
        c.cli_ok(&[
            "schedule",
            "set",
            "once",
            "--cron",
            "* * * * * *",
            "--target",
            "ks/0",
        ])
        .unwrap();
        let first = wait_for("a running scheduled backup", T, || async {
            Ok(jobs(&c).into_iter().find(|j| j["state"] == "RUNNING"))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", coord.log_tail(30)));
        c.cli_ok(&["schedule", "pause", "once"]).unwrap();
        let victim = first["tablet_alias"].as_str().unwrap().to_string();
        let idx = tablets
            .iter()
            .position(|t| t.spec.alias() == victim)
            .unwrap();
        tablets[idx].kill9();
        let retried = wait_for("the retry to succeed", T, || async {
            Ok(jobs(&c)
                .into_iter()
                .find(|j| j["state"] == "SUCCEEDED" && j["attempt"] == 2))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", coord.log_tail(40)));
        assert_ne!(retried["tablet_alias"], victim.as_str());
        let failed = jobs(&c)
            .into_iter()
            .find(|j| j["id"] == first["id"])
            .unwrap();
        assert_eq!(failed["state"], "FAILED");
        assert!(
            failed["error"].as_str().unwrap().contains("health"),
            "{failed}"
        );
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_keeps_the_rule_and_the_newest() {
    tokio::time::timeout(Duration::from_secs(300), async {
        let c = cluster().await;
        let topo = c.topo().await.unwrap();
        let _tablets = shard(&c, &topo, 400, 1, &[]).await;
        let coord = c.spawn_coordinator("c", &[]).unwrap();
        wait_leader(&coord).await;
        c.cli_ok(&[
            "schedule",
            "set",
            "r",
            "--cron",
            "*/3 * * * * *",
            "--target",
            "ks",
            "--keep-count",
            "2",
            "--keep-for",
            "1s",
        ])
        .unwrap();
        wait_for("five scheduled backups", T, || async {
            Ok((succeeded(&c).len() >= 5).then_some(()))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", coord.log_tail(30)));
        c.cli_ok(&["schedule", "pause", "r"]).unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let root = c.backup_root().display().to_string();
        let listed: Vec<serde_json::Value> = serde_json::from_str(
            &c.cli_ok(&[
                "list-backups",
                "ks/0",
                "--json",
                "--file-backup-storage-root",
                &root,
            ])
            .unwrap(),
        )
        .unwrap();
        let complete: Vec<&serde_json::Value> =
            listed.iter().filter(|b| b["complete"] == true).collect();
        assert_eq!(complete.len(), 2, "{listed:?}");
        let newest = succeeded(&c)
            .iter()
            .filter_map(|j| j["backup_name"].as_str().map(str::to_string))
            .max()
            .unwrap();
        assert!(
            complete.iter().any(|b| b["name"] == newest.as_str()),
            "the newest backup must stay"
        );
        assert_eq!(
            topo.list_backup_records("ks", "0").await.unwrap().len(),
            2,
            "catalog follows storage"
        );

        // A dry run of a stricter rule for the same schedule (a schedule prunes only
        // its own backups) shows what would go and removes nothing.
        c.cli_ok(&[
            "schedule",
            "set",
            "r",
            "--cron",
            "0 0 1 1 *",
            "--target",
            "ks/0",
            "--keep-count",
            "1",
        ])
        .unwrap();
        let dry: Vec<serde_json::Value> = serde_json::from_str(
            &c.cli_ok(&[
                "schedule",
                "prune",
                "r",
                "--dry-run",
                "--json",
                "--file-backup-storage-root",
                &root,
            ])
            .unwrap(),
        )
        .unwrap();
        assert_eq!(dry.len(), 1, "{dry:?}");
        assert_ne!(dry[0]["name"], newest.as_str());
        assert_eq!(dry[0]["removed"], false);
        let doomed = c
            .backup_root()
            .join("ks/0")
            .join(dry[0]["name"].as_str().unwrap());
        assert!(doomed.exists());
        c.cli_ok(&[
            "schedule",
            "prune",
            "r",
            "--file-backup-storage-root",
            &root,
        ])
        .unwrap();
        assert!(!doomed.exists());
        let records = topo.list_backup_records("ks", "0").await.unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].value.name, newest);
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_copied_into_storage_is_catalogued_and_seeds_a_waiting_tablet() {
    tokio::time::timeout(Duration::from_secs(300), async {
        let c = cluster().await;
        let topo = c.topo().await.unwrap();
        let tablets = shard(&c, &topo, 500, 1, &[]).await;
        let name = c
            .cli_ok(&["backup", &tablets[1].spec.alias()])
            .unwrap()
            .trim()
            .to_string();
        // Move it to "cold storage": the reconciler drops its record.
        let dir = c.backup_root().join("ks").join("0").join(&name);
        let cold = c.dir.path().join("cold");
        std::fs::create_dir_all(&cold).unwrap();
        std::fs::rename(&dir, cold.join(&name)).unwrap();
        let coord = c
            .spawn_coordinator("c", &["--reconcile-interval", "1s"])
            .unwrap();
        wait_leader(&coord).await;
        // The record goes first, then the shard stops naming it as its latest.
        wait_for(
            "the record and the shard's latest backup to go",
            T,
            || async {
                let gone = topo.list_backup_records("ks", "0").await?.is_empty();
                let latest = topo
                    .get_shard("ks", "0")
                    .await?
                    .and_then(|s| s.value.latest_backup);
                Ok((gone && latest.is_none()).then_some(()))
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", coord.log_tail(20)));

        let mut spec = c.tablet(510, "ks", "0").unwrap();
        spec.extra = vec![
            "--restore-from-backup".into(),
            "--wait-for-backup-interval".into(),
            "1h".into(),
        ];
        let mut waiting = c.spawn_tablet(&spec).unwrap();
        wait_for("the tablet to wait", T, || async {
            Ok(waiting.log().contains("waiting for a backup").then_some(()))
        })
        .await
        .unwrap();
        // Copy it back in by hand (not a rename: the way an operator would).
        let status = std::process::Command::new("cp")
            .arg("-a")
            .arg(cold.join(&name))
            .arg(&dir)
            .status()
            .unwrap();
        assert!(status.success());
        waiting
            .wait_healthy(&topo, T)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", coord.log_tail(20)));
        assert!(waiting.log().contains(&name));
        assert_eq!(topo.list_backup_records("ks", "0").await.unwrap().len(), 1);
        wait_for("rows on the seeded tablet", T, || async {
            Ok(waiting
                .sql("SELECT COUNT(*) FROM app.t")
                .ok()
                .filter(|s| s.trim() == "500"))
        })
        .await
        .unwrap();
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread")]
async fn after_an_etcd_snapshot_restore_the_catalog_is_rebuilt() {
    tokio::time::timeout(Duration::from_secs(300), async {
        let c = cluster().await;
        let topo = c.topo().await.unwrap();
        let tablets = shard(&c, &topo, 600, 1, &[]).await;
        let snap = c.dir.path().join("topo.db");
        c.cli_ok(&["topo", "snapshot", snap.to_str().unwrap()])
            .unwrap();
        // A backup after the snapshot: the restored catalog will not know it.
        let name = c
            .cli_ok(&["backup", &tablets[1].spec.alias()])
            .unwrap()
            .trim()
            .to_string();

        // Restore the snapshot into a fresh etcd (etcdctl snapshot restore) and point a
        // coordinator at it.
        let etcd2 = cairn_topo::testkit::EtcdServer::restore_from_snapshot(&snap)
            .await
            .unwrap();
        let topo2 = cairn_topo::Topo::connect(&etcd2.config("/cairn"), Some(T))
            .await
            .unwrap();
        assert!(topo2
            .list_backup_records("ks", "0")
            .await
            .unwrap()
            .is_empty());
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(["get-tablets", "--json", "--topo-server", &etcd2.endpoint()])
            .output()
            .unwrap();
        assert!(out.status.success());
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(rows.len(), 2, "the topology is back");

        let port = cairn_topo::testkit::free_port().unwrap();
        let log = std::fs::File::create(c.dir.path().join("coord2.log")).unwrap();
        let mut coord = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args([
                "coordinator",
                "--id",
                "c2",
                "--reconcile-interval",
                "1s",
                "--port",
                &port.to_string(),
            ])
            .args(["--topo-server", &etcd2.endpoint()])
            .arg("--file-backup-storage-root")
            .arg(c.backup_root())
            .stderr(log)
            .spawn()
            .unwrap();
        let found = wait_for("the catalog rebuilt", T, || async {
            Ok(topo2
                .list_backup_records("ks", "0")
                .await?
                .into_iter()
                .find(|r| r.value.name == name))
        })
        .await;
        let _ = coord.kill();
        let _ = coord.wait();
        found.unwrap();
        let shard = topo2.get_shard("ks", "0").await.unwrap().unwrap();
        assert_eq!(shard.value.latest_backup.as_deref(), Some(name.as_str()));
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread")]
async fn scheduled_etcd_snapshots_land_in_storage_and_are_pruned() {
    tokio::time::timeout(Duration::from_secs(120), async {
        let c = cluster().await;
        let coord = c
            .spawn_coordinator(
                "snap",
                &[
                    "--topo-snapshot-cron",
                    "* * * * * *",
                    "--topo-snapshot-keep",
                    "2",
                ],
            )
            .unwrap();
        wait_leader(&coord).await;
        let dir = c.backup_root().join("_topo");
        let names = wait_for("three snapshots taken, two kept", T, || async {
            let (_, metrics) = coord.http_get("/metrics")?;
            let taken = metrics
                .lines()
                .find(|l| l.starts_with("cairn_coordinator_topo_snapshots_total"))
                .and_then(|l| l.split_whitespace().last()?.parse::<u64>().ok())
                .unwrap_or(0);
            if taken < 3 {
                return Ok(None);
            }
            let mut names: Vec<String> = std::fs::read_dir(&dir)?
                .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect::<Result<_, _>>()?;
            names.sort();
            Ok(Some(names))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", coord.log_tail(20)));
        let dbs: Vec<&String> = names.iter().filter(|n| n.ends_with(".db")).collect();
        let sidecars: Vec<&String> = names.iter().filter(|n| n.ends_with(".db.json")).collect();
        assert_eq!(dbs.len(), 2, "{names:?}");
        assert_eq!(sidecars.len(), 2, "{names:?}");
        let sidecar: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join(sidecars[1])).unwrap()).unwrap();
        assert!(sidecar["revision"].as_i64().unwrap() > 0);
        let db = std::fs::read(dir.join(dbs[1])).unwrap();
        assert_eq!(sidecar["size_bytes"].as_u64().unwrap(), db.len() as u64);
        use sha2::Digest;
        assert_eq!(sidecar["sha256"], hex::encode(sha2::Sha256::digest(&db)));
    })
    .await
    .expect("test timed out");
}
