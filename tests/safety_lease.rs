//! A tablet cut off from etcd stops its job, and writes whose answer was lost are
//! read back, against real etcd and MariaDB:
//!
//! - a claim and a submit whose etcd write lands but answers with a timeout (the
//!   `CAIRN_FAULT_TOPO_AMBIGUOUS_WRITE` fault): the job runs, once, and the CLI
//!   reports it instead of failing;
//! - etcd frozen (SIGSTOP) past the health TTL during a slow xtrabackup: the agent
//!   kills the tool before etcd thaws, mysqld keeps serving, the job ends FAILED,
//!   its backup never gets a MANIFEST, the coordinator's retry runs on another
//!   tablet only after, and the tablet is back to REPLICA and replicating;
//! - an in-place restore held just before its swap (`CAIRN_FAILPOINT_PAUSE`) while
//!   etcd is frozen past the TTL, and while its job is marked FAILED: the swap never
//!   happens, mysqld was never stopped, the old rows are served; the same restore
//!   left alone does swap.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cairn::testkit::{wait_for, Cluster, TabletProcess};
use cairn_topo::{BackupMethod, Job, JobKind, JobState, TabletAlias, TabletType, Topo};

const T: Duration = Duration::from_secs(120);
/// The testkit's `--health-ttl`.
const TTL: Duration = Duration::from_secs(4);

async fn cluster() -> Cluster {
    Cluster::start(env!("CARGO_BIN_EXE_cairn").into())
        .await
        .expect("cluster")
}

/// Pids of the live processes named `name` whose parent is `parent`.
fn children_named(parent: u32, name: &str) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let Some((head, rest)) = stat.rsplit_once(") ") else {
                return false;
            };
            let mut f = rest.split_whitespace();
            let state = f.next();
            let ppid = f.next().and_then(|p| p.parse::<u32>().ok());
            head.ends_with(&format!("({name}")) && ppid == Some(parent) && state != Some("Z")
        })
        .collect()
}

/// The backup tools the agent runs right now.
fn tools_of(t: &TabletProcess) -> Vec<i32> {
    let Some(agent) = t.pid() else { return vec![] };
    ["mariabackup", "mariadb-backup", "mbstream"]
        .iter()
        .flat_map(|n| children_named(agent, n))
        .collect()
}

async fn job(topo: &Topo, id: &str) -> Job {
    topo.get::<Job>(&topo.keys().job(id))
        .await
        .unwrap()
        .expect("job record")
        .value
}

async fn wait_final(topo: &Topo, id: &str, t: &TabletProcess) -> Job {
    wait_for("the job to end", T, || async {
        Ok(topo
            .get::<Job>(&topo.keys().job(id))
            .await?
            .map(|v| v.value)
            .filter(|j| j.state.is_final()))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", t.log_tail(40)))
}

/// A primary with `rows` rows in `app.t` and replicas following it.
async fn shard(
    c: &Cluster,
    topo: &Topo,
    uids: &[(u32, Vec<(String, String)>)],
    rows: u32,
) -> Vec<TabletProcess> {
    let mut tablets = Vec::new();
    for (uid, env) in uids {
        let mut spec = c.tablet(*uid, "ks", "0").unwrap();
        spec.env = env.clone();
        tablets.push(c.spawn_tablet(&spec).unwrap());
    }
    for t in &mut tablets {
        t.wait_healthy(topo, T).await.unwrap();
    }
    c.cli_ok(&["init-shard-primary", "ks/0", &tablets[0].spec.alias()])
        .unwrap();
    tablets[0]
        .sql(&format!(
            "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v TEXT); \
             INSERT INTO app.t SELECT seq, MD5(seq) FROM app.seq_1_to_{rows}"
        ))
        .unwrap();
    for t in &tablets[1..] {
        t.wait_value("SELECT COUNT(*) FROM app.t", &rows.to_string(), T)
            .await
            .unwrap();
    }
    tablets
}

fn manifest_exists(c: &Cluster, name: &str) -> bool {
    c.backup_root()
        .join("ks/0")
        .join(name)
        .join("MANIFEST")
        .exists()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ambiguous_claim_and_submit_are_read_back_and_the_job_runs_once() {
    tokio::time::timeout(Duration::from_secs(300), async {
        let c = cluster().await;
        let topo = c.topo().await.unwrap();
        // The agent's first applied job write is its claim; the CLI's, its submit.
        let fault = (
            "CAIRN_FAULT_TOPO_AMBIGUOUS_WRITE".to_string(),
            "/global/jobs/".to_string(),
        );
        let mut spec = c.tablet(300, "amb", "0").unwrap();
        spec.env = vec![fault.clone()];
        let mut t = c.spawn_tablet(&spec).unwrap();
        t.wait_healthy(&topo, T).await.unwrap();

        let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(["backup", &spec.alias()])
            .args(c.global_args())
            .env(&fault.0, &fault.1)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "backup failed: {stderr}\n{}",
            t.log_tail(30)
        );
        assert!(
            stderr.contains("fault injection"),
            "the submit's fault did not fire: {stderr}"
        );
        assert!(stderr.contains("but it was written"), "{stderr}");
        let name = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(
            t.log()
                .contains("the claim reported an error but was applied"),
            "the claim's fault did not fire or was not read back:\n{}",
            t.log_tail(30)
        );
        let jobs = topo.list_jobs().await.unwrap();
        assert_eq!(jobs.len(), 1, "{jobs:?}");
        assert_eq!(jobs[0].value.state, JobState::Succeeded, "{jobs:?}");
        assert_eq!(jobs[0].value.backup_name.as_deref(), Some(name.as_str()));
        let stored = c.backup_root().join("amb/0");
        let dirs: Vec<_> = std::fs::read_dir(&stored).unwrap().flatten().collect();
        assert_eq!(dirs.len(), 1, "one backup, taken once");
        assert!(stored.join(&name).join("MANIFEST").exists());
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread")]
async fn etcd_frozen_past_the_lease_ttl_stops_the_backup_and_its_retry_runs_alone() {
    tokio::time::timeout(Duration::from_secs(480), async {
        let c = cluster().await;
        let topo = c.topo().await.unwrap();
        // Tablet 101's storage is slow (its backup of some 9 MiB compressed takes
        // minutes), so the backup is still running when etcd freezes.
        let slow = vec![(
            "CAIRN_FAULT_STORAGE_BYTES_PER_SEC".to_string(),
            "65536".to_string(),
        )];
        let rows = 200_000;
        let tablets = shard(
            &c,
            &topo,
            &[(100, vec![]), (101, slow), (102, vec![])],
            rows,
        )
        .await;
        let t = &tablets[1];
        let coord = c
            .spawn_coordinator(
                "c",
                &[
                    "--lease-ttl",
                    "3s",
                    "--lost-health-grace",
                    "5s",
                    "--retry-delay",
                    "1s",
                ],
            )
            .unwrap();
        coord.wait_leader(T).await.unwrap();

        // A scheduled backup of 101 (retryable elsewhere), as the scheduler writes it.
        let alias: TabletAlias = t.spec.alias().parse().unwrap();
        let mut first = Job::pending(JobKind::Backup, "ks", "0", &alias);
        first.schedule = Some("lease-test".into());
        first.engine = Some(BackupMethod::Xtrabackup);
        first.pending_timeout_seconds = Some(60);
        topo.create(&topo.keys().job(&first.id), &first, None)
            .await
            .unwrap();
        let tool = wait_for("mariabackup to run on 101", T, || async {
            Ok(tools_of(t).first().copied())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", t.log_tail(30)));
        let running = job(&topo, &first.id).await;
        let name = running.backup_name.clone().expect("named when taken");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(
            tools_of(t).contains(&tool),
            "the backup ended too soon to be caught"
        );

        // Freeze etcd past the TTL: the agent stops the job while etcd is still
        // frozen, before anything could fail it or start a retry.
        let frozen = Instant::now();
        c.etcd.freeze().unwrap();
        let stopped = wait_for("the tool to be killed", TTL * 3, || async {
            Ok(tools_of(t).is_empty().then_some(()))
        })
        .await;
        let stopped_after = frozen.elapsed();
        let sleep = (TTL * 2).saturating_sub(frozen.elapsed());
        tokio::time::sleep(sleep).await;
        c.etcd.thaw().unwrap();
        stopped.unwrap_or_else(|e| panic!("{e}\n{}", t.log_tail(40)));
        assert!(
            stopped_after < TTL * 2,
            "tool killed after {stopped_after:?}"
        );
        assert!(
            t.log().contains("lease lost: stopping the job"),
            "{}",
            t.log_tail(40)
        );
        // mysqld served throughout.
        assert_eq!(
            t.sql("SELECT COUNT(*) FROM app.t").unwrap().trim(),
            rows.to_string()
        );

        let done = wait_final(&topo, &first.id, t).await;
        assert_eq!(done.state, JobState::Failed, "{done:?}\n{}", t.log_tail(40));
        let why = done.error.clone().unwrap_or_default();
        assert!(
            why.contains("lost its etcd lease") || why.contains("lost its health"),
            "{why}"
        );
        assert!(
            !manifest_exists(&c, &name),
            "the stopped backup got a MANIFEST"
        );

        // The retry runs on another tablet, only after the first was failed.
        let retry = wait_for("the retry to succeed", T, || async {
            let jobs = topo.list_jobs().await?;
            Ok(jobs
                .into_iter()
                .map(|j| j.value)
                .find(|j| j.retry_of.as_deref() == Some(first.id.as_str()) && j.state.is_final()))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", coord.log_tail(30)));
        assert_eq!(retry.state, JobState::Succeeded, "{retry:?}");
        assert_ne!(retry.tablet_alias, alias, "{retry:?}");
        assert!(retry.started_at > done.finished_at, "{retry:?} vs {done:?}");
        assert!(tools_of(t).is_empty());
        let again = job(&topo, &first.id).await;
        assert_eq!(
            again.state,
            JobState::Failed,
            "the stopped job changed later"
        );
        assert!(!manifest_exists(&c, &name));

        // 101 is back: REPLICA in topo, replicating, every row.
        wait_for("101 back to REPLICA and replicating", T, || async {
            let info = topo.get_tablet_info(&alias).await?.expect("registered");
            let h = info.health.unwrap_or_default();
            Ok((info.tablet.value.tablet_type == TabletType::Replica
                && h.serving
                && h.replication_io_running
                && h.replication_sql_running)
                .then_some(()))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", t.log_tail(40)));
        tablets[0]
            .sql("INSERT INTO app.t VALUES (0, 'after')")
            .unwrap();
        t.wait_value("SELECT COUNT(*) FROM app.t", &(rows + 1).to_string(), T)
            .await
            .unwrap();
    })
    .await
    .expect("test timed out");
}

/// What an unfinished in-place restore leaves in the tablet dir.
fn leftovers(dir: &Path) -> Vec<String> {
    [
        "restore_in_progress",
        "data.before-restore",
        "data.restore-staging",
        "data.failed-restore",
    ]
    .iter()
    .filter(|n| dir.join(n).exists())
    .map(|n| n.to_string())
    .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_in_place_restore_never_swaps_after_its_lease_is_lost_or_its_job_failed() {
    tokio::time::timeout(Duration::from_secs(480), async {
        let c = cluster().await;
        let topo = c.topo().await.unwrap();
        let pause = vec![(
            "CAIRN_FAILPOINT_PAUSE".to_string(),
            "restore-before-swap=10".to_string(),
        )];
        let tablets = shard(&c, &topo, &[(200, vec![]), (201, pause)], 1000).await;
        let t = &tablets[1];
        let alias: TabletAlias = t.spec.alias().parse().unwrap();
        // The backup has 1000 rows; the tablet then gets 500 more.
        c.cli_ok(&["backup", &t.spec.alias()]).unwrap();
        tablets[0]
            .sql("INSERT INTO app.t SELECT seq, MD5(seq) FROM app.seq_1001_to_1500")
            .unwrap();
        t.wait_value("SELECT COUNT(*) FROM app.t", "1500", T)
            .await
            .unwrap();

        let restore = |n: usize| {
            let alias = alias.clone();
            let topo = topo.clone();
            async move {
                let j = Job::pending(JobKind::Restore, "ks", "0", &alias);
                topo.create(&topo.keys().job(&j.id), &j, None)
                    .await
                    .unwrap();
                wait_for("the restore to pause before its swap", T, || async {
                    Ok((t
                        .log()
                        .matches("failpoint restore-before-swap: pausing")
                        .count()
                        >= n)
                        .then_some(()))
                })
                .await
                .unwrap_or_else(|e| panic!("{e}\n{}", t.log_tail(30)));
                j.id
            }
        };

        // 1. etcd frozen past the TTL while the verified copy waits for its swap.
        let mysqld = t.mysqld_pid().expect("mysqld pid");
        let id = restore(1).await;
        c.etcd.freeze().unwrap();
        tokio::time::sleep(TTL * 2).await;
        c.etcd.thaw().unwrap();
        let done = wait_final(&topo, &id, t).await;
        assert_eq!(done.state, JobState::Failed, "{done:?}");
        let why = done.error.unwrap_or_default();
        assert!(why.contains("lost its etcd lease"), "{why}");

        // 2. The job marked FAILED (as the coordinator would) while the copy waits.
        let id2 = restore(2).await;
        let key = topo.keys().job(&id2);
        topo.update_with::<Job, _>(&key, |cur| {
            Ok(cur.map(|mut j| {
                j.state = JobState::Failed;
                j.error = Some("failed by the test".into());
                j
            }))
        })
        .await
        .unwrap();
        wait_for("the paused restore to give up", T, || async {
            Ok((t
                .log()
                .matches("failpoint restore-before-swap: resuming")
                .count()
                >= 2
                && t.log()
                    .contains("the job was marked FAILED in etcd while it ran"))
            .then_some(()))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", t.log_tail(30)));
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = job(&topo, &id2).await;
        assert_eq!(after.state, JobState::Failed);
        assert_eq!(after.error.as_deref(), Some("failed by the test"));

        // Neither swapped: the same mysqld serves the old data, nothing left over.
        wait_for("201 serving again", T, || async {
            let info = topo.get_tablet_info(&alias).await?.expect("registered");
            Ok(info.health.is_some_and(|h| h.serving).then_some(()))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", t.log_tail(30)));
        assert_eq!(
            t.mysqld_pid(),
            Some(mysqld),
            "mysqld was restarted: a swap began"
        );
        assert_eq!(t.sql("SELECT COUNT(*) FROM app.t").unwrap().trim(), "1500");
        assert!(
            leftovers(&t.spec.dir).is_empty(),
            "{:?}",
            leftovers(&t.spec.dir)
        );
        assert!(
            t.log().contains("stopped before the swap"),
            "{}",
            t.log_tail(40)
        );

        // 3. Left alone, the same restore swaps: the backup's 1000 rows, then
        // replication brings the rest back.
        let id3 = restore(3).await;
        let done = wait_final(&topo, &id3, t).await;
        assert_eq!(
            done.state,
            JobState::Succeeded,
            "{done:?}\n{}",
            t.log_tail(40)
        );
        assert_ne!(t.mysqld_pid(), Some(mysqld), "a swap restarts mysqld");
        assert!(
            leftovers(&t.spec.dir).is_empty(),
            "{:?}",
            leftovers(&t.spec.dir)
        );
        t.wait_value("SELECT COUNT(*) FROM app.t", "1500", T)
            .await
            .unwrap();
    })
    .await
    .expect("test timed out");
}
