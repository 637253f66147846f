//! kill -9 at the exact step (issue 8's fault list), against real etcd and MariaDB:
//! - the agent dies at each step of an xtrabackup backup (while mariabackup
//!   streams, after the stream before the MANIFEST, after the MANIFEST before the
//!   job is finished and catalogued): the restarted agent settles the job (FAILED,
//!   or SUCCEEDED with the backup catalogued when it is complete), the tool does
//!   not outlive the agent, the tablet serves and replicates with every row, an
//!   incomplete backup is never catalogued or restored, a complete one seeds a
//!   tablet;
//! - the leading coordinator dies between two shards' job creation of a scheduled
//!   run: a new leader finishes that run, one job per shard, none missed, even
//!   after the cron moved on; and after every shard's job but before the run is
//!   recorded: the next leader records it, creating no second job;
//! - the leading coordinator dies mid-prune (after one of several removals; after a
//!   record was removed but before its storage; inside storage's removal, after
//!   the MANIFEST): a new leader finishes the prune at once, keeping exactly the
//!   newest the rule keeps.
//!
//! A failpoint abort (`CAIRN_FAILPOINT`) is as abrupt as `kill -9`.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use cairn::testkit::{wait_for, Cluster, CoordinatorProcess, TabletProcess};
use cairn_topo::{Job, JobState, Schedule, Topo};

const T: Duration = Duration::from_secs(120);

async fn cluster() -> Cluster {
    Cluster::start(env!("CARGO_BIN_EXE_cairn").into())
        .await
        .expect("cluster")
}

/// A primary (uid) and a replica (uid+1) of `ks/0` with 2000 rows in `app.t`.
async fn shard(c: &Cluster, topo: &Topo, uid: u32) -> (TabletProcess, TabletProcess) {
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

async fn wait_rows(t: &TabletProcess, n: u64) {
    t.wait_value("SELECT COUNT(*) FROM app.t", &n.to_string(), T)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

fn rows(t: &TabletProcess) -> u64 {
    t.sql("SELECT COUNT(*) FROM app.t")
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Waits until get-tablets shows the tablet healthy as a REPLICA, replicating.
async fn wait_replicating(c: &Cluster, alias: &str) {
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

fn root(c: &Cluster) -> String {
    c.backup_root().display().to_string()
}

/// `list-backups ks/0 --json`: what the operator sees in storage.
fn list_backups(c: &Cluster) -> Vec<serde_json::Value> {
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
fn listed(c: &Cluster, name: &str) -> Option<serde_json::Value> {
    list_backups(c).into_iter().find(|b| b["name"] == name)
}

/// Names of the backup records of `ks/0` in topo (the catalog).
async fn records(topo: &Topo) -> BTreeSet<String> {
    topo.list_backup_records("ks", "0")
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.value.name)
        .collect()
}

async fn latest(topo: &Topo) -> Option<String> {
    topo.get_shard("ks", "0")
        .await
        .unwrap()
        .and_then(|s| s.value.latest_backup)
}

async fn job(topo: &Topo, id: &str) -> Job {
    topo.get::<Job>(&topo.keys().job(id))
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("job {id} is gone"))
        .value
}

/// Whether a backup tool runs against the tablet's mysqld (its socket is on the
/// tool's command line).
fn backup_tool_running(tablet_dir: &Path) -> bool {
    let socket = format!("--socket={}", tablet_dir.join("mysql.sock").display());
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    dir.flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .any(|e| {
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
            let tool = args.first().is_some_and(|a| {
                let a = String::from_utf8_lossy(a);
                a.ends_with("mariabackup") || a.ends_with("mariadb-backup")
            });
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            tool && !stat.contains(") Z ") && args.contains(&socket.as_bytes())
        })
}

/// Waits for the agent to die at `failpoint`.
async fn wait_died_at(t: &mut TabletProcess, failpoint: &str) {
    let st = t
        .wait_exit(T)
        .await
        .unwrap_or_else(|e| panic!("{failpoint}: {e}"));
    assert!(!st.success(), "{failpoint}: {st}");
    assert!(
        t.log().contains(&format!("failpoint {failpoint}")),
        "did not die at {failpoint}:\n{}",
        t.log_tail(20)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_killed_at_each_step_of_an_xtrabackup_backup() {
    tokio::time::timeout(Duration::from_secs(900), async {
        let c = cluster().await;
        let topo = c.topo().await.unwrap();
        let (p, mut r) = shard(&c, &topo, 800).await;
        let spec = r.spec.clone();
        let alias = spec.alias();
        let mut want = 2000;
        let mut incomplete = Vec::new();
        let mut complete = None;
        for failpoint in [
            "xtrabackup-while-streaming",
            "xtrabackup-after-stream",
            "xtrabackup-after-manifest",
        ] {
            r.terminate(T).unwrap();
            drop(r);
            let mut armed = spec.clone();
            armed.env = vec![("CAIRN_FAILPOINT".into(), failpoint.into())];
            r = c.spawn_tablet(&armed).unwrap();
            r.wait_healthy(&topo, T).await.unwrap();
            wait_replicating(&c, &alias).await;
            let id = c
                .cli_ok(&[
                    "backup",
                    &alias,
                    "--backup-engine",
                    "xtrabackup",
                    "--no-wait",
                ])
                .unwrap()
                .trim()
                .to_string();
            wait_died_at(&mut r, failpoint).await;
            // (Not dropped: that would kill the mysqld a killed agent leaves running.)
            std::mem::forget(r);

            // What the operator sees while the agent is down: the job RUNNING and
            // naming its backup; the backup incomplete, or complete but not
            // catalogued; the tool gone with the agent.
            let left = job(&topo, &id).await;
            assert_eq!(left.state, JobState::Running, "{failpoint}: {left:?}");
            let name = left.backup_name.clone().expect("the job names its backup");
            let stored =
                listed(&c, &name).unwrap_or_else(|| panic!("{failpoint}: {name} not in storage"));
            let after_manifest = failpoint == "xtrabackup-after-manifest";
            assert_eq!(stored["complete"], after_manifest, "{failpoint}: {stored}");
            assert!(!records(&topo).await.contains(&name), "{failpoint}");
            wait_for("mariabackup to die with the agent", T, || async {
                Ok((!backup_tool_running(&spec.dir)).then_some(()))
            })
            .await
            .unwrap_or_else(|e| panic!("{failpoint}: {e}"));

            // Restarted as it was, without the failpoint.
            r = c.spawn_tablet(&spec).unwrap();
            r.wait_healthy(&topo, T)
                .await
                .unwrap_or_else(|e| panic!("{failpoint}: {e}"));
            wait_replicating(&c, &alias).await;
            let done = wait_for("the job to be settled", T, || async {
                Ok(Some(job(&topo, &id).await).filter(|j| j.state.is_final()))
            })
            .await
            .unwrap_or_else(|e| panic!("{failpoint}: {e}\n{}", r.log_tail(20)));
            let why = done.error.clone().unwrap_or_default();
            if after_manifest {
                assert_eq!(done.state, JobState::Succeeded, "{failpoint}: {done:?}");
                assert!(records(&topo).await.contains(&name), "{failpoint}");
                assert_eq!(latest(&topo).await.as_deref(), Some(name.as_str()));
                complete = Some(name);
            } else {
                assert_eq!(done.state, JobState::Failed, "{failpoint}: {done:?}");
                assert!(
                    why.contains("restarted") && why.contains("incomplete"),
                    "{why}"
                );
                let stored = listed(&c, &name);
                assert!(
                    stored.as_ref().is_none_or(|b| b["complete"] == false),
                    "{failpoint}: {stored:?}"
                );
                assert!(!records(&topo).await.contains(&name), "{failpoint}");
                incomplete.push(name);
            }
            // Every row, and replication goes on.
            wait_rows(&r, want).await;
            assert_eq!(rows(&r), rows(&p), "{failpoint}");
            want += 1;
            p.sql(&format!(
                "INSERT INTO app.t VALUES ({}, 'later')",
                10_000 + want
            ))
            .unwrap();
            wait_rows(&r, want).await;
        }

        // The complete backup seeds a new tablet (every row, replicating); the
        // incomplete ones were never catalogued, so nothing restores them.
        let complete = complete.unwrap();
        let catalog = records(&topo).await;
        assert_eq!(catalog, [complete.clone()].into(), "{incomplete:?}");
        let mut seed_spec = c.tablet(802, "ks", "0").unwrap();
        seed_spec.extra = vec!["--restore-from-backup".into()];
        let mut seed = c.spawn_tablet(&seed_spec).unwrap();
        seed.wait_healthy(&topo, T)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", seed.log_tail(30)));
        assert!(seed.log().contains(&complete), "{}", seed.log_tail(30));
        wait_replicating(&c, &seed_spec.alias()).await;
        wait_rows(&seed, want).await;
        for name in &incomplete {
            assert!(!seed.log().contains(name.as_str()), "restored from {name}");
        }
    })
    .await
    .expect("test timed out");
}

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

#[tokio::test(flavor = "multi_thread")]
async fn leader_killed_between_two_shards_job_creation_finishes_the_run_once() {
    tokio::time::timeout(Duration::from_secs(420), async {
        let c = cluster().await;
        let topo = c.topo().await.unwrap();
        // Three shards whose stagger delays lie apart, so the run starts them in
        // different passes (no tablets: each job fails at once, "no tablets";
        // what matters is that every shard gets exactly one job per slot).
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
        for s in shards {
            topo.ensure_keyspace_shard("ks", s).await.unwrap();
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
        tokio::time::sleep(Duration::from_secs(1)).await;

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
