//! kill -9 of the leading coordinator (issue 8's fault list), against real etcd
//! and MariaDB; a failpoint abort (`CAIRN_FAILPOINT`) is as abrupt as `kill -9`:
//! - between two shards' job creation of a scheduled run: a new leader finishes
//!   that run, one job per shard, none missed, even after the cron moved on; and
//!   after every shard's job but before the run is recorded: the next leader
//!   records it, creating no second job;
//! - mid-prune (after one of several removals; after a record was removed but
//!   before its storage; inside storage's removal, after the MANIFEST): a new
//!   leader finishes the prune at once, keeping exactly the newest the rule keeps.

mod kills;

use std::collections::BTreeSet;
use std::time::Duration;

use cairn::testkit::{wait_for, Cluster, CoordinatorProcess};
use cairn_topo::{Health, Job, Schedule, Tablet, TabletAlias, TabletType, Topo};
use kills::*;

/// Jobs of schedule `name` in topo.
async fn jobs_of(topo: &Topo, name: &str) -> Vec<Job> {
    topo.list_jobs()
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.value)
        .filter(|j| j.schedule.as_deref() == Some(name))
        .collect()
}

async fn schedule(topo: &Topo, name: &str) -> Schedule {
    topo.get::<Schedule>(&topo.keys().schedule(name))
        .await
        .unwrap()
        .unwrap()
        .value
}

/// A REPLICA of `ks/shard` with a healthy Health record and no agent: eligible
/// for a scheduled backup, never taking its job.
async fn register_idle_replica(topo: &Topo, uid: u32, shard: &str) {
    let alias = TabletAlias {
        cell: "zone1".into(),
        uid,
    };
    let tablet = Tablet {
        alias: alias.clone(),
        hostname: "127.0.0.1".into(),
        mysql_host: "127.0.0.1".into(),
        mysql_port: 1,
        port: 1,
        keyspace: "ks".into(),
        shard: shard.into(),
        tablet_type: TabletType::Replica,
        base_type: TabletType::Replica,
        flavor: "MariaDB".into(),
        tablet_dir: format!("tablet-{uid}"),
        started_at: chrono::Utc::now(),
    };
    let health = Health {
        mysqld_up: true,
        replication_io_running: true,
        replication_sql_running: true,
        replication_lag_seconds: Some(0),
        gtid_position: Some("MariaDB/0-1-1".into()),
        serving: true,
        updated_at: Some(chrono::Utc::now()),
        ..Health::default()
    };
    let k = topo.keys();
    topo.put(&k.tablet(&alias), &tablet, None).await.unwrap();
    topo.put(&k.health(&alias), &health, None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn leader_killed_between_two_shards_job_creation_finishes_the_run_once() {
    tokio::time::timeout(Duration::from_secs(420), async {
        let c = cluster().await;
        let topo = c.topo().await.unwrap();
        // Three shards whose stagger delays lie apart, so the run starts them in
        // different passes. Each has one registered replica with healthy Health
        // but no agent: its job is created and, never taken, failed after the
        // pending timeout; what matters is that every shard gets exactly one job
        // per slot.
        let window = Duration::from_secs(9);
        let delay = |s: &str| cairn::coordinator::schedule::stagger("s", "ks", s, window);
        let candidates = [
            ["-40", "40-80", "80-"],
            ["-20", "20-40", "40-"],
            ["-10", "10-30", "30-"],
            ["-30", "30-60", "60-"],
        ];
        let shards = candidates
            .iter()
            .find(|set| {
                let mut d: Vec<Duration> = set.iter().map(|s| delay(s)).collect();
                d.sort();
                d.windows(2)
                    .all(|w| w[1] - w[0] >= Duration::from_millis(1500))
            })
            .expect("a set of shards with spread staggers");
        for (i, s) in shards.iter().enumerate() {
            topo.ensure_keyspace_shard("ks", s).await.unwrap();
            register_idle_replica(&topo, 700 + i as u32, s).await;
        }
        let period = chrono::Duration::seconds(20);
        c.cli_ok(&[
            "schedule",
            "set",
            "s",
            "--cron",
            "*/20 * * * * *",
            "--target",
            "ks",
        ])
        .unwrap();
        let flags = [
            "--lease-ttl",
            "2s",
            "--stagger-window",
            "9s",
            "--max-attempts",
            "1",
            "--pending-timeout",
            "3s",
        ];
        let mut a = c
            .spawn_coordinator_env(
                "a",
                &flags,
                &[("CAIRN_FAILPOINT", "scheduler-slot-partly-started")],
            )
            .unwrap();
        let st = a.wait_exit(T).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(!st.success());
        assert!(a.log().contains("failpoint scheduler-slot-partly-started"));

        // What the operator sees: some shards of the slot have their job, the run
        // is not recorded.
        let started = jobs_of(&topo, "s").await;
        let slot = started[0].scheduled_for.unwrap();
        assert!(started.iter().all(|j| j.scheduled_for == Some(slot)));
        assert!(
            !started.is_empty() && started.len() < shards.len(),
            "{started:?}"
        );
        assert!(schedule(&topo, "s").await.last_run.is_none_or(|l| l < slot));

        // The next slot passes before a new leader comes: one that forgot the
        // half-started slot would move on and leave its other shards out.
        while chrono::Utc::now() < slot + period + chrono::Duration::seconds(1) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let b = c.spawn_coordinator("b", &flags).unwrap();
        b.wait_leader(T).await.unwrap();
        let all: BTreeSet<String> = shards.iter().map(|s| s.to_string()).collect();
        wait_for("the half-started slot finished and recorded", T, || async {
            let of_slot: BTreeSet<String> = jobs_of(&topo, "s")
                .await
                .into_iter()
                .filter(|j| j.scheduled_for == Some(slot))
                .map(|j| j.shard)
                .collect();
            let recorded = schedule(&topo, "s").await.last_run >= Some(slot);
            Ok((of_slot == all && recorded).then_some(()))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", b.log_tail(30)));
        // And the schedule goes on: a later slot gets every shard too.
        wait_for("a later slot with every shard", T, || async {
            let later: BTreeSet<String> = jobs_of(&topo, "s")
                .await
                .into_iter()
                .filter(|j| j.scheduled_for.is_some_and(|s| s > slot))
                .map(|j| j.shard)
                .collect();
            Ok((later == all).then_some(()))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", b.log_tail(30)));

        // The leader dies again, this time with every shard of a slot started but
        // the run not recorded: the next leader records it and doubles nothing.
        drop(b);
        let mut d = c
            .spawn_coordinator_env(
                "d",
                &flags,
                &[("CAIRN_FAILPOINT", "scheduler-before-recording-run")],
            )
            .unwrap();
        let st = d.wait_exit(T).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(!st.success());
        assert!(d.log().contains("failpoint scheduler-before-recording-run"));
        let jobs = jobs_of(&topo, "s").await;
        let unrecorded = jobs.iter().filter_map(|j| j.scheduled_for).max().unwrap();
        let of_unrecorded: BTreeSet<String> = jobs
            .iter()
            .filter(|j| j.scheduled_for == Some(unrecorded))
            .map(|j| j.shard.clone())
            .collect();
        assert_eq!(of_unrecorded, all);
        assert!(schedule(&topo, "s").await.last_run < Some(unrecorded));
        let e = c.spawn_coordinator("e", &flags).unwrap();
        e.wait_leader(T).await.unwrap();
        wait_for("the started slot recorded", T, || async {
            Ok((schedule(&topo, "s").await.last_run >= Some(unrecorded)).then_some(()))
        })
        .await
        .unwrap_or_else(|e2| panic!("{e2}\n{}", e.log_tail(30)));
        c.cli_ok(&["schedule", "pause", "s"]).unwrap();
        // The last jobs fail once their pending timeout passes (nobody takes them).
        wait_for("every job of the schedule to end", T, || async {
            Ok(jobs_of(&topo, "s")
                .await
                .iter()
                .all(|j| j.state.is_final())
                .then_some(()))
        })
        .await
        .unwrap_or_else(|e2| panic!("{e2}\n{}", e.log_tail(30)));

        // Never two jobs for one shard and slot; every job finished.
        let jobs = jobs_of(&topo, "s").await;
        let mut seen = BTreeSet::new();
        for j in &jobs {
            assert!(
                seen.insert((j.scheduled_for, j.shard.clone())),
                "two jobs for {} at {:?}: {jobs:?}",
                j.shard,
                j.scheduled_for
            );
            assert!(j.state.is_final(), "{j:?}");
        }
        let of_slot = jobs
            .iter()
            .filter(|j| j.scheduled_for == Some(slot))
            .count();
        assert_eq!(of_slot, shards.len(), "{jobs:?}");
    })
    .await
    .expect("test timed out");
}

fn jobs_json(c: &Cluster) -> Vec<serde_json::Value> {
    serde_json::from_str(&c.cli_ok(&["jobs", "--json"]).unwrap()).unwrap()
}

/// Backup names of the schedule's succeeded jobs, oldest first.
fn succeeded_of(c: &Cluster, schedule: &str) -> Vec<String> {
    let mut names: Vec<String> = jobs_json(c)
        .into_iter()
        .filter(|j| j["state"] == "SUCCEEDED" && j["schedule"] == schedule)
        .filter_map(|j| j["backup_name"].as_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

/// Names of the complete backups of schedule `s` in storage.
fn complete_of_s(c: &Cluster) -> BTreeSet<String> {
    list_backups(c)
        .iter()
        .filter(|b| b["complete"] == true && b["schedule"] == "s")
        .map(|b| b["name"].as_str().unwrap().to_string())
        .collect()
}

/// Starts a coordinator armed with `failpoint` and waits for it to die there.
async fn leader_dies_at(c: &Cluster, id: &str, flags: &[&str], failpoint: &str) {
    let mut coord: CoordinatorProcess = c
        .spawn_coordinator_env(id, flags, &[("CAIRN_FAILPOINT", failpoint)])
        .unwrap();
    let st = coord.wait_exit(T).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(!st.success(), "{failpoint}");
    assert!(
        coord.log().contains(&format!("failpoint {failpoint}")),
        "{}",
        coord.log_tail(20)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn leader_killed_mid_prune_the_next_leader_finishes_it() {
    tokio::time::timeout(Duration::from_secs(600), async {
        let c = cluster().await;
        let topo = c.topo().await.unwrap();
        let (p, r) = shard(&c, &topo, 810).await;
        let flags = ["--lease-ttl", "2s", "--reconcile-interval", "1s"];

        // Five backups of schedule "s", all kept (keep 10).
        let mut x = c.spawn_coordinator("x", &flags).unwrap();
        x.wait_leader(T).await.unwrap();
        let set = |cron: &str, keep: &str| {
            c.cli_ok(&[
                "schedule",
                "set",
                "s",
                "--cron",
                cron,
                "--target",
                "ks/0",
                "--keep-count",
                keep,
            ])
            .unwrap();
        };
        set("*/3 * * * * *", "10");
        wait_for("five backups of s", Duration::from_secs(300), || async {
            Ok((succeeded_of(&c, "s").len() >= 5).then_some(()))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", x.log_tail(30)));
        c.cli_ok(&["schedule", "pause", "s"]).unwrap();
        wait_for("every job finished", T, || async {
            Ok(jobs_json(&c)
                .iter()
                .all(|j| j["state"] != "PENDING" && j["state"] != "RUNNING")
                .then_some(()))
        })
        .await
        .unwrap();
        x.kill9();
        let taken = succeeded_of(&c, "s");
        let n = taken.len();
        let newest = taken[n - 1].clone();
        assert_eq!(complete_of_s(&c), taken.iter().cloned().collect());
        wait_for("the catalog to hold every backup", T, || async {
            Ok((records(&topo).await == taken.iter().cloned().collect()).then_some(()))
        })
        .await
        .unwrap();

        // The rule now keeps n-2: two to remove. Never due again (1 January).
        set("0 0 1 1 *", &(n - 2).to_string());
        let dir = |name: &str| c.backup_root().join("ks/0").join(name);

        // 1. The leader dies after the first removal: that one is gone whole,
        //    every other is complete and catalogued.
        leader_dies_at(&c, "a", &flags, "prune-after-first-removal").await;
        assert!(!dir(&taken[0]).exists());
        assert!(!records(&topo).await.contains(&taken[0]));
        assert_eq!(complete_of_s(&c), taken[1..].iter().cloned().collect());
        assert_eq!(latest(&topo).await, Some(newest.clone()));

        // 2. The next leader dies after removing the second's record, before its
        //    storage: intact in storage (MANIFEST and all), out of the catalog, and
        //    the shard's latest backup is still the newest.
        leader_dies_at(&c, "b", &flags, "remove-backup-after-record").await;
        assert!(!records(&topo).await.contains(&taken[1]));
        assert!(dir(&taken[1]).join("MANIFEST").exists());
        assert_eq!(latest(&topo).await, Some(newest.clone()));

        // 3. The next leader redoes that removal and dies inside storage's, after
        //    the MANIFEST went, before the data: listed incomplete (never complete,
        //    never restored), not catalogued.
        leader_dies_at(&c, "c", &flags, "remove-backup-after-manifest").await;
        let half = listed(&c, &taken[1]).expect("the half-removed backup");
        assert_eq!(half["complete"], false, "{half}");
        assert!(dir(&taken[1]).exists());
        assert!(!records(&topo).await.contains(&taken[1]));
        assert_eq!(latest(&topo).await, Some(newest.clone()));

        // 4. A leader that lives finishes the prune at once (its job succeeded, so
        //    the incomplete backup is a removal cut short, not one being written;
        //    the 24 h incomplete grace does not apply): exactly the newest n-2 are
        //    left, in storage and in the catalog; the reconciler does not bring the
        //    removed ones back.
        let keep: BTreeSet<String> = taken[2..].iter().cloned().collect();
        let coord = c.spawn_coordinator("d", &flags).unwrap();
        coord.wait_leader(T).await.unwrap();
        wait_for("the prune finished", T, || async {
            let done = complete_of_s(&c) == keep
                && records(&topo).await == keep
                && !dir(&taken[1]).exists();
            Ok(done.then_some(()))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{:?}\n{}", list_backups(&c), coord.log_tail(30)));
        assert!(
            coord.log().contains("a removal was cut short"),
            "{}",
            coord.log_tail(30)
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(records(&topo).await, keep);
        assert_eq!(list_backups(&c).len(), n - 2, "{:?}", list_backups(&c));
        assert_eq!(latest(&topo).await, Some(newest));
        // No data touched: every row on both tablets.
        assert_eq!(rows(&r), 2000);
        assert_eq!(rows(&p), 2000);
    })
    .await
    .expect("test timed out");
}
