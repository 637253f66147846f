//! A single etcd restarted under a running system, and compacted under its
//! watches:
//! - etcd killed (SIGKILL) and started again while a replica's backup streams;
//! - the same while a scheduled run's backup streams, with the coordinator leading;
//! - etcd compacted past the revision every watcher last saw, then restarted, so
//!   each agent's and the coordinator's watch resumes from a compacted revision.
//!
//! In each, nothing is lost: the backup job ends (never stuck RUNNING), a backup
//! it reports done is complete and catalogued (one it reports failed has no
//! MANIFEST), the replica is a healthy REPLICA replicating again with every row,
//! and new jobs and scheduled runs go on afterwards.

mod kills;

use std::time::Duration;

use cairn::testkit::{wait_for, Cluster, TabletProcess};
use cairn_topo::testkit::etcdctl;
use cairn_topo::{JobState, Topo};
use kills::{cluster, job, listed, records, rows, shard, wait_replicating, wait_rows, T};

/// Bytes per second the replica's storage takes: slow enough that a backup of
/// the test shard still streams a few seconds into it.
const SLOW_STORAGE: &str = "40000";

/// The replica of [`shard`] restarted with slow storage; waits until it serves.
async fn slow_replica(c: &Cluster, topo: &Topo, mut r: TabletProcess) -> TabletProcess {
    let mut spec = r.spec.clone();
    r.terminate(T).unwrap();
    drop(r);
    spec.env = vec![(
        "CAIRN_FAULT_STORAGE_BYTES_PER_SEC".into(),
        SLOW_STORAGE.into(),
    )];
    let mut r = c.spawn_tablet(&spec).unwrap();
    r.wait_healthy(topo, T).await.unwrap();
    wait_replicating(c, &spec.alias()).await;
    r
}

/// Waits until job `id` is RUNNING with some bytes copied.
async fn wait_streaming(topo: &Topo, id: &str) {
    wait_for(&format!("job {id} streaming"), T, || async {
        let j = job(topo, id).await;
        assert!(!j.state.is_final(), "job ended before the fault: {j:?}");
        Ok((j.state == JobState::Running && j.progress.bytes_done > 0).then_some(()))
    })
    .await
    .unwrap();
}

/// Kills etcd, keeps it down for `down`, starts it again on the same data.
async fn restart_etcd(c: &mut Cluster, down: Duration) {
    c.etcd.stop();
    tokio::time::sleep(down).await;
    c.etcd.start_again().await.unwrap();
}

/// Waits for job `id` to end, then checks its backup matches its outcome:
/// SUCCEEDED has a complete, catalogued backup; FAILED none that is complete.
async fn settled_consistently(c: &Cluster, topo: &Topo, id: &str) -> JobState {
    let done = wait_for(&format!("job {id} to end"), T, || async {
        Ok(Some(job(topo, id).await).filter(|j| j.state.is_final()))
    })
    .await
    .unwrap();
    let name = done.backup_name.clone().unwrap_or_default();
    match done.state {
        JobState::Succeeded => {
            let b = listed(c, &name).unwrap_or_else(|| panic!("{name} not listed"));
            assert_eq!(b["complete"], true, "{b}");
            assert!(records(topo).await.contains(&name), "{name} not catalogued");
        }
        _ => {
            let complete = listed(c, &name).is_some_and(|b| b["complete"] == true);
            assert!(!complete, "job {done:?} failed but its backup is complete");
            assert!(done.error.is_some(), "{done:?}");
        }
    }
    eprintln!("job {id}: {:?} {:?}", done.state, done.error);
    done.state
}

/// The shard is whole: the replica a healthy REPLICA, replicating a new row, with
/// the primary's rows.
async fn shard_whole(c: &Cluster, p: &TabletProcess, r: &TabletProcess, n: u64) {
    wait_replicating(c, &r.spec.alias()).await;
    p.sql(&format!("INSERT INTO app.t VALUES ({}, 'after')", n + 1))
        .unwrap();
    wait_rows(r, n + 1).await;
    assert_eq!(rows(p), n + 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn etcd_restarted_mid_backup_loses_nothing() {
    tokio::time::timeout(Duration::from_secs(400), async {
        let mut c = cluster().await;
        let topo = c.topo().await.unwrap();
        let (p, r) = shard(&c, &topo, 900).await;
        let r = slow_replica(&c, &topo, r).await;
        let alias = r.spec.alias();
        let id = c
            .cli_ok(&["backup", &alias, "--no-wait"])
            .unwrap()
            .trim()
            .to_string();
        wait_streaming(&topo, &id).await;
        restart_etcd(&mut c, Duration::from_secs(2)).await;
        settled_consistently(&c, &topo, &id).await;
        shard_whole(&c, &p, &r, 2000).await;
        // And the next backup works.
        let out = c.cli_ok(&["backup", &alias]).unwrap();
        eprintln!("backup after the restart: {}", out.trim());
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread")]
async fn etcd_restarted_mid_scheduled_run_loses_nothing() {
    tokio::time::timeout(Duration::from_secs(400), async {
        let mut c = cluster().await;
        let topo = c.topo().await.unwrap();
        let (p, r) = shard(&c, &topo, 910).await;
        let r = slow_replica(&c, &topo, r).await;
        let coord = c
            .spawn_coordinator("c1", &["--reconcile-interval", "1s"])
            .unwrap();
        coord.wait_leader(T).await.unwrap();
        c.cli_ok(&[
            "schedule",
            "set",
            "every10s",
            "--cron",
            "*/10 * * * * *",
            "--target",
            "ks",
        ])
        .unwrap();
        let first = wait_for("a scheduled job", T, || async {
            Ok(topo
                .list_jobs()
                .await?
                .into_iter()
                .map(|j| j.value)
                .find(|j| j.schedule.as_deref() == Some("every10s")))
        })
        .await
        .unwrap();
        wait_streaming(&topo, &first.id).await;
        restart_etcd(&mut c, Duration::from_secs(2)).await;
        settled_consistently(&c, &topo, &first.id).await;

        // A later slot runs to completion after the restart.
        let later = wait_for("a later scheduled backup to succeed", T, || async {
            Ok(topo
                .list_jobs()
                .await?
                .into_iter()
                .map(|j| j.value)
                .find(|j| {
                    j.schedule.as_deref() == Some("every10s")
                        && j.id != first.id
                        && j.state == JobState::Succeeded
                }))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", coord.log_tail(40)));
        c.cli_ok(&["schedule", "pause", "every10s"]).unwrap();
        settled_consistently(&c, &topo, &later.id).await;

        // One job per slot and shard (a retry of a failed job carries its slot
        // too: under load the first job can lose its lease while etcd is down,
        // and the coordinator retries the slot), at most one success per slot,
        // and every job ended.
        let jobs: Vec<_> = wait_for("every job to end", T, || async {
            let jobs: Vec<_> = topo
                .list_jobs()
                .await?
                .into_iter()
                .map(|j| j.value)
                .collect();
            Ok(jobs.iter().all(|j| j.state.is_final()).then_some(jobs))
        })
        .await
        .unwrap();
        let mut succeeded: Vec<_> = jobs
            .iter()
            .filter(|j| j.state == JobState::Succeeded)
            .filter_map(|j| j.scheduled_for.map(|s| (s, j.shard.clone())))
            .collect();
        let m = succeeded.len();
        succeeded.sort();
        succeeded.dedup();
        assert_eq!(succeeded.len(), m, "a slot succeeded twice: {jobs:?}");
        let mut slots: Vec<_> = jobs
            .iter()
            .filter(|j| j.retry_of.is_none())
            .filter_map(|j| {
                j.scheduled_for
                    .map(|s| (s, j.keyspace.clone(), j.shard.clone()))
            })
            .collect();
        let n = slots.len();
        slots.sort();
        slots.dedup();
        assert_eq!(slots.len(), n, "a slot ran twice: {jobs:?}");
        shard_whole(&c, &p, &r, 2000).await;
        coord.wait_leader(T).await.unwrap();
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread")]
async fn watches_resumed_from_a_compacted_revision_miss_nothing() {
    tokio::time::timeout(Duration::from_secs(400), async {
        let mut c = cluster().await;
        let topo = c.topo().await.unwrap();
        let (p, r) = shard(&c, &topo, 920).await;
        let coord = c
            .spawn_coordinator("c1", &["--reconcile-interval", "1s"])
            .unwrap();
        coord.wait_leader(T).await.unwrap();
        let alias = r.spec.alias();

        // Revisions nobody watches, then everything up to now compacted away: every
        // watcher's last seen revision is older than what etcd still keeps.
        for i in 0..50 {
            etcdctl(&[&c.etcd], &["put", &format!("/unwatched/k{i}"), "x"]).unwrap();
        }
        let status = etcdctl(&[&c.etcd], &["endpoint", "status", "-w", "json"]).unwrap();
        let status: serde_json::Value = serde_json::from_str(&status).unwrap();
        let rev = status[0]["Status"]["header"]["revision"]
            .as_i64()
            .unwrap_or_else(|| panic!("no revision in {status}"));
        etcdctl(&[&c.etcd], &["compact", &rev.to_string(), "--physical"]).unwrap();
        // The watches break and resume from their last revision, now compacted.
        restart_etcd(&mut c, Duration::from_millis(500)).await;

        // The agent still sees new jobs: a backup runs and is catalogued.
        let out = c.cli_ok(&["backup", &alias]).unwrap();
        eprintln!("backup after the compaction: {}", out.trim());
        let id = topo
            .list_jobs()
            .await
            .unwrap()
            .into_iter()
            .map(|j| j.value)
            .find(|j| j.tablet_alias.to_string() == alias)
            .map(|j| j.id)
            .expect("the backup's job");
        assert_eq!(
            settled_consistently(&c, &topo, &id).await,
            JobState::Succeeded
        );
        // The coordinator still sees new schedules: one runs and succeeds.
        c.cli_ok(&[
            "schedule",
            "set",
            "after-compaction",
            "--cron",
            "*/5 * * * * *",
            "--target",
            "ks",
        ])
        .unwrap();
        wait_for("a scheduled backup after the compaction", T, || async {
            Ok(topo
                .list_jobs()
                .await?
                .into_iter()
                .map(|j| j.value)
                .find(|j| {
                    j.schedule.as_deref() == Some("after-compaction")
                        && j.state == JobState::Succeeded
                }))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", coord.log_tail(40)));
        c.cli_ok(&["schedule", "pause", "after-compaction"])
            .unwrap();
        shard_whole(&c, &p, &r, 2000).await;
    })
    .await
    .expect("test timed out");
}
