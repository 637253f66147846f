//! Unreadable MANIFESTs against real etcd, MariaDB and a leading coordinator with
//! a schedule: a backup whose MANIFEST is garbage, truncated, or from a newer
//! format is kept by retention (the leader's pass and `schedule prune`) past the
//! incomplete-grace period, keeps its catalog record, does not count as the
//! newest complete backup, is listed with its error, counted in the metrics and
//! the status, and is never restored: a seeding tablet restores the older good
//! backup and has every row. On the way, a catalog entry under a reserved
//! keyspace is skipped by the reconciler without stopping its pass.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cairn::testkit::{wait_for, Cluster, CoordinatorProcess, TabletProcess};
use cairn_topo::Topo;
use chrono::{DateTime, SecondsFormat, Utc};

const T: Duration = Duration::from_secs(180);

async fn cluster() -> Cluster {
    Cluster::start(env!("CARGO_BIN_EXE_cairn").into())
        .await
        .expect("cluster")
}

/// A primary (uid) and one replica (uid + 1) of `ks/0`, with 500 rows.
async fn shard(c: &Cluster, topo: &Topo, uid: u32) -> Vec<TabletProcess> {
    let mut tablets = Vec::new();
    for i in 0..=1 {
        let spec = c.tablet(uid + i, "ks", "0").unwrap();
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
    tablets[1].wait_rows(500, T).await.unwrap();
    tablets
}

fn jobs(c: &Cluster) -> Vec<serde_json::Value> {
    serde_json::from_str(&c.cli_ok(&["jobs", "--json"]).unwrap()).unwrap()
}

fn succeeded(c: &Cluster) -> usize {
    jobs(c).iter().filter(|j| j["state"] == "SUCCEEDED").count()
}

fn list_backups(c: &Cluster) -> Vec<serde_json::Value> {
    let root = c.backup_root().display().to_string();
    let out = c
        .cli_ok(&[
            "list-backups",
            "ks/0",
            "--json",
            "--file-backup-storage-root",
            &root,
        ])
        .unwrap();
    serde_json::from_str(&out).unwrap()
}

fn complete_names(c: &Cluster) -> Vec<String> {
    list_backups(c)
        .iter()
        .filter(|b| b["complete"] == true)
        .map(|b| b["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

async fn wait_leader(c: &CoordinatorProcess) {
    c.wait_leader(T).await.unwrap_or_else(|e| panic!("{e}"));
}

/// Lets the (running) schedule run until `n` backups succeeded in all, then
/// pauses it and waits for every job to end.
async fn run_schedule_until(c: &Cluster, coord: &CoordinatorProcess, n: usize) {
    wait_for("scheduled backups", T, || async {
        Ok((succeeded(c) >= n).then_some(()))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", coord.log_tail(30)));
    c.cli_ok(&["schedule", "pause", "s"]).unwrap();
    wait_for("no job in flight", T, || async {
        Ok(jobs(c)
            .iter()
            .all(|j| {
                ["SUCCEEDED", "FAILED", "CANCELLED"].contains(&j["state"].as_str().unwrap_or(""))
            })
            .then_some(()))
    })
    .await
    .unwrap();
}

/// Copies backup `from` to a new backup `to` taken at `t`, with a valid MANIFEST
/// naming it.
fn copy_backup(shard_dir: &Path, from: &str, to: &str, t: DateTime<Utc>) -> PathBuf {
    let (src, dst) = (shard_dir.join(from), shard_dir.join(to));
    std::fs::create_dir(&dst).unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dst.join("MANIFEST")).unwrap()).unwrap();
    m["BackupName"] = to.into();
    let ts = t.to_rfc3339_opts(SecondsFormat::Secs, true);
    m["BackupTime"] = ts.clone().into();
    m["FinishedTime"] = ts.into();
    std::fs::write(dst.join("MANIFEST"), serde_json::to_vec(&m).unwrap()).unwrap();
    dst
}

#[tokio::test(flavor = "multi_thread")]
async fn unreadable_manifests_are_kept_listed_and_never_restored() {
    tokio::time::timeout(Duration::from_secs(900), async {
        let c = cluster().await;
        let topo = c.topo().await.unwrap();
        let tablets = shard(&c, &topo, 100).await;
        let coord = c
            .spawn_coordinator(
                "c",
                &[
                    "--reconcile-interval",
                    "1s",
                    "--job-timeout",
                    "20s",
                    "--incomplete-grace",
                    "21s",
                ],
            )
            .unwrap();
        wait_leader(&coord).await;
        c.cli_ok(&[
            "schedule",
            "set",
            "s",
            "--cron",
            "*/2 * * * * *",
            "--target",
            "ks/0",
            "--keep-count",
            "1",
        ])
        .unwrap();
        // Two scheduled backups; retention keeps the newest (keep-count 1).
        run_schedule_until(&c, &coord, 2).await;
        let good = wait_for("retention down to one complete backup", T, || async {
            let names = complete_names(&c);
            Ok((names.len() == 1).then(|| names[0].clone()))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", coord.log_tail(30)));

        // A catalog entry under a reserved keyspace (it sorts before `ks`): the
        // reconciler logs, counts and skips it, and goes on with `ks/0`.
        let mut stray = topo.list_backup_records("ks", "0").await.unwrap()[0]
            .value
            .clone();
        stray.keyspace = "_topo".into();
        topo.put(&topo.keys().backup("_topo", "0", &stray.name), &stray, None)
            .await
            .unwrap();

        // Three newer backups whose MANIFEST goes bad: two catalogued first (a
        // brief I/O error or an upgrade after they were recorded), one garbage.
        let alias = tablets[1].spec.alias();
        let shard_dir = c.backup_root().join("ks/0");
        let base = Utc::now() + chrono::Duration::seconds(2);
        let name = |k: i64| {
            format!(
                "{}.{alias}",
                (base + chrono::Duration::seconds(k)).format("%Y-%m-%d.%H%M%S")
            )
        };
        let (truncated, newer, garbage) = (name(0), name(1), name(2));
        let dir_t = copy_backup(&shard_dir, &good, &truncated, base);
        let dir_n = copy_backup(
            &shard_dir,
            &good,
            &newer,
            base + chrono::Duration::seconds(1),
        );
        wait_for("the copies catalogued", T, || async {
            let recs = topo.list_backup_records("ks", "0").await?;
            let has = |n: &str| recs.iter().any(|r| r.value.name == n);
            Ok((has(&truncated) && has(&newer)).then_some(()))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", coord.log_tail(30)));
        let bytes = std::fs::read(dir_t.join("MANIFEST")).unwrap();
        std::fs::write(dir_t.join("MANIFEST"), &bytes[..bytes.len() / 2]).unwrap();
        let mut m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir_n.join("MANIFEST")).unwrap()).unwrap();
        m["FormatVersion"] = 999.into();
        std::fs::write(dir_n.join("MANIFEST"), serde_json::to_vec(&m).unwrap()).unwrap();
        let dir_g = shard_dir.join(&garbage);
        std::fs::create_dir(&dir_g).unwrap();
        std::fs::copy(shard_dir.join(&good).join("0"), dir_g.join("0")).unwrap();
        std::fs::write(dir_g.join("MANIFEST"), b"\x00\x01 not a MANIFEST \xff").unwrap();
        let bad = [&truncated, &newer, &garbage];

        // Counted by the leader (metrics and status) once its reconciler saw them.
        let series = "cairn_coordinator_unreadable_backups{keyspace=\"ks\",shard=\"0\"} 3";
        wait_for("the unreadable backups counted", T, || async {
            let (_, body) = coord.http_get("/metrics")?;
            Ok(body.contains(series).then_some(()))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", coord.log_tail(30)));
        let (_, body) = coord.http_get("/metrics").unwrap();
        assert!(
            body.contains("cairn_coordinator_pass_items_skipped_total{pass=\"reconcile\"}"),
            "{body}"
        );
        let status = coord.status().unwrap();
        let listed = status["unreadable_backups"].as_array().unwrap();
        assert_eq!(listed.len(), 3, "{status}");
        assert!(listed
            .iter()
            .all(|u| !u["error"].as_str().unwrap_or("").is_empty()));
        let shard_status = status["shards"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["keyspace"] == "ks" && s["shard"] == "0")
            .unwrap()
            .clone();
        assert_eq!(shard_status["unreadable_backups"], 3, "{status}");

        // The reconciler ran again since: the records of the bad ones stay.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let recs = topo.list_backup_records("ks", "0").await.unwrap();
        for n in [&truncated, &newer] {
            assert!(
                recs.iter().any(|r| &r.value.name == n),
                "the record of unreadable {n} was removed"
            );
        }

        // `list-backups` shows each with its state and error.
        let rows = list_backups(&c);
        assert_eq!(rows.len(), 4, "{rows:?}");
        for b in &rows {
            let n = b["name"].as_str().unwrap();
            if n == good {
                assert_eq!(b["state"], "complete", "{b}");
                assert!(b["error"].is_null(), "{b}");
            } else {
                assert_eq!(b["state"], "unreadable", "{b}");
                assert_eq!(b["complete"], false, "{b}");
                assert!(!b["error"].as_str().unwrap_or("").is_empty(), "{b}");
            }
        }
        let err_of = |n: &str| {
            rows.iter().find(|b| b["name"] == n).unwrap()["error"]
                .as_str()
                .unwrap()
                .to_string()
        };
        assert!(
            err_of(&newer).contains("format version 999"),
            "{}",
            err_of(&newer)
        );
        assert!(
            err_of(&garbage).contains("MANIFEST"),
            "{}",
            err_of(&garbage)
        );
        let root = c.backup_root().display().to_string();
        let table = c
            .cli_ok(&["list-backups", "ks/0", "--file-backup-storage-root", &root])
            .unwrap();
        assert_eq!(table.matches("unreadable").count(), 3, "{table}");

        // Past the grace period, `schedule prune` removes none of them, and the
        // good backup stays: the newer-format one is not "the newest complete".
        let past = |secs: i64| {
            let until = base + chrono::Duration::seconds(secs);
            async move {
                while Utc::now() < until {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        past(5).await;
        let out = c
            .cli_ok(&[
                "schedule",
                "prune",
                "s",
                "--incomplete-grace",
                "1s",
                "--json",
                "--file-backup-storage-root",
                &root,
            ])
            .unwrap();
        let removed: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
        assert!(removed.is_empty(), "{removed:?}");
        assert!(shard_dir.join(&good).join("MANIFEST").exists());
        for n in bad {
            assert!(
                shard_dir.join(n).exists(),
                "{n} was removed by schedule prune"
            );
        }

        // A tablet seeding from the shard restores the good backup, with every row.
        tablets[0]
            .sql("INSERT INTO app.t SELECT seq, 'after' FROM app.seq_501_to_600")
            .unwrap();
        let mut spec = c.tablet(102, "ks", "0").unwrap();
        spec.extra = vec!["--restore-from-backup".into()];
        let mut seeded = c.spawn_tablet(&spec).unwrap();
        seeded
            .wait_healthy(&topo, T)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", seeded.log_tail(30)));
        let log = seeded.log();
        let restored: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(": restored backup="))
            .collect();
        assert!(
            restored.iter().any(|l| l.contains(good.as_str())),
            "the good backup {good} was not restored:\n{}",
            seeded.log_tail(30)
        );
        for n in bad {
            assert!(
                !restored.iter().any(|l| l.contains(n.as_str())),
                "bad backup {n} was restored"
            );
        }
        seeded.wait_rows(600, T).await.unwrap();
        assert_eq!(
            tablets[0].sql("SELECT COUNT(*) FROM app.t").unwrap().trim(),
            "600"
        );

        // The leader's own retention, past its grace period: a new scheduled
        // backup prunes the good one (keep-count 1), never the unreadable ones.
        past(23).await;
        let before = succeeded(&c);
        c.cli_ok(&["schedule", "resume", "s"]).unwrap();
        run_schedule_until(&c, &coord, before + 1).await;
        wait_for("retention after the new backup", T, || async {
            let names = complete_names(&c);
            Ok((names.len() == 1 && names[0] != good).then_some(()))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", coord.log_tail(30)));
        for n in bad {
            assert!(
                shard_dir.join(n).join("MANIFEST").exists(),
                "{n} was removed by the leader's retention\n{}",
                coord.log_tail(30)
            );
        }
        assert!(coord.log().contains("unreadable MANIFEST"));
    })
    .await
    .expect("test timed out");
}
