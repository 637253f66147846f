//! A three-member etcd cluster on loopback under faults, with tablets,
//! coordinator and CLI given all three endpoints (`--topo-server a,b,c`) and a
//! backup schedule firing every five seconds:
//! - the raft leader member is killed (SIGKILL) mid-schedule, later restarted;
//! - the leader member is frozen (SIGSTOP, as if partitioned away), later thawed.
//!
//! In both, the clients fail over to the healthy members: the CLI keeps
//! answering, scheduled backups keep completing during the fault, the
//! coordinator keeps (or regains) leadership, and nothing is lost: the shard's
//! rows are counted before and after, and every backup a succeeded job
//! produced is in `list-backups`.

use std::time::{Duration, Instant};

use cairn::testkit::{wait_for, Cluster, ClusterOptions, CoordinatorProcess, TabletProcess};
use chrono::{DateTime, Utc};

const T: Duration = Duration::from_secs(120);
/// How long a scheduled backup may take to complete despite the fault.
const DURING_FAULT: Duration = Duration::from_secs(60);
const ROWS: &str = "500";

struct Setup {
    c: Cluster,
    tablets: Vec<TabletProcess>,
    coord: CoordinatorProcess,
}

/// Three etcd members; a primary and a replica of `ks/0` with [`ROWS`] rows; a
/// coordinator leading; a schedule every 5s that has completed one backup.
async fn setup() -> Setup {
    let opts = ClusterOptions {
        etcd_members: 3,
        ..Default::default()
    };
    let c = Cluster::start_with(env!("CARGO_BIN_EXE_cairn").into(), opts)
        .await
        .expect("cluster");
    assert_eq!(c.topo_endpoints().len(), 3);
    let topo = c.topo().await.unwrap();
    // A health TTL of 10 s (the test kit's default is 4 s): a new raft leader,
    // the clients' reconnection and the lease's keepalive must fit inside it,
    // and on a loaded 2-core machine they once took over 4 s, so the agent
    // rightly stopped its job as cut off. The promise under test is that a
    // member's loss is survived within the TTL, not that it takes under 4 s.
    let spec = |uid| {
        let mut s = c.tablet(uid, "ks", "0").unwrap();
        s.extra
            .extend(["--health-interval", "1s", "--health-ttl", "10s"].map(String::from));
        s
    };
    let mut tablets = vec![
        c.spawn_tablet(&spec(100)).unwrap(),
        c.spawn_tablet(&spec(101)).unwrap(),
    ];
    for t in tablets.iter_mut() {
        t.wait_healthy(&topo, T).await.unwrap();
    }
    c.cli_ok(&["init-shard-primary", "ks/0", &tablets[0].spec.alias()])
        .unwrap();
    tablets[0]
        .sql(
            "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v TEXT); \
             INSERT INTO app.t SELECT seq, MD5(seq) FROM app.seq_1_to_500",
        )
        .unwrap();
    tablets[1]
        .wait_value("SELECT COUNT(*) FROM app.t", ROWS, T)
        .await
        .unwrap();
    let coord = c
        .spawn_coordinator("c1", &["--reconcile-interval", "1s"])
        .unwrap();
    coord.wait_leader(T).await.unwrap();
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
    let s = Setup { c, tablets, coord };
    succeeded_after(&s, DateTime::<Utc>::MIN_UTC, T).await;
    s
}

fn jobs(c: &Cluster) -> Vec<serde_json::Value> {
    serde_json::from_str(&c.cli_ok(&["jobs", "--json"]).unwrap()).unwrap()
}

fn created_at(j: &serde_json::Value) -> DateTime<Utc> {
    j["created_at"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Waits for a scheduled backup job created after `since` to succeed.
async fn succeeded_after(s: &Setup, since: DateTime<Utc>, timeout: Duration) -> serde_json::Value {
    wait_for(
        "a scheduled backup created after the fault",
        timeout,
        || async {
            let out = s.c.cli(&["jobs", "--json"])?;
            if !out.status.success() {
                return Ok(None);
            }
            let jobs: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout)?;
            Ok(jobs.into_iter().find(|j| {
                j["state"] == "SUCCEEDED" && j["schedule"] == "every5s" && created_at(j) > since
            }))
        },
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}\ncoordinator:\n{}\nreplica:\n{}",
            s.coord.log_tail(30),
            s.tablets[1].log_tail(30)
        )
    })
}

/// The coordinator's and the tablets' recent logs, for failure messages.
fn logs(s: &Setup) -> String {
    let mut out = format!("coordinator:\n{}\n", s.coord.log_tail(80));
    for t in &s.tablets {
        out += &format!("{}:\n{}\n", t.spec.alias(), t.log_tail(60));
    }
    out
}

/// How long the operator waits for `get-tablets` through all three endpoints;
/// fails if it does not succeed.
fn cli_answers(c: &Cluster) -> Duration {
    let started = Instant::now();
    c.cli_ok(&["get-tablets"]).unwrap();
    started.elapsed()
}

/// Pauses the schedule, lets running jobs end, then checks nothing was lost:
/// the rows on both tablets, every succeeded job's backup in storage and topo,
/// no failed job (a run skipped while the previous one still ran is CANCELLED,
/// which is not a failure), and the coordinator leading.
async fn nothing_lost(s: &Setup) {
    s.c.cli_ok(&["schedule", "pause", "every5s"]).unwrap();
    wait_for("no running job", T, || async {
        Ok(jobs(&s.c)
            .iter()
            .all(|j| {
                ["SUCCEEDED", "FAILED", "CANCELLED"]
                    .contains(&j["state"].as_str().unwrap_or_default())
            })
            .then_some(()))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {:?}\n{}", jobs(&s.c), logs(s)));
    for t in &s.tablets {
        assert_eq!(t.sql("SELECT COUNT(*) FROM app.t").unwrap().trim(), ROWS);
    }
    let all = jobs(&s.c);
    let failed: Vec<_> = all.iter().filter(|j| j["state"] == "FAILED").collect();
    assert!(failed.is_empty(), "failed jobs: {failed:?}\n{}", logs(s));
    let root = s.c.backup_root().display().to_string();
    let listed: Vec<serde_json::Value> = serde_json::from_str(
        &s.c.cli_ok(&[
            "list-backups",
            "ks/0",
            "--json",
            "--file-backup-storage-root",
            &root,
        ])
        .unwrap(),
    )
    .unwrap();
    let listed = serde_json::to_string(&listed).unwrap();
    // A run skipped because the previous one was still going is CANCELLED, with
    // no backup; every SUCCEEDED job has its backup.
    for j in all.iter().filter(|j| j["state"] == "SUCCEEDED") {
        let name = j["backup_name"].as_str().unwrap_or_default();
        assert!(
            !name.is_empty() && listed.contains(name),
            "{j} not listed: {listed}"
        );
    }
    s.coord.wait_leader(T).await.unwrap();
    eprintln!("{} scheduled backups, all listed, none failed", all.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn losing_the_etcd_leader_member_mid_schedule_loses_nothing() {
    tokio::time::timeout(Duration::from_secs(300), async {
        let started = Instant::now();
        let mut s = setup().await;
        let leader = s.c.etcd_leader().unwrap();
        let fault_at = Utc::now();
        s.c.etcd_member_mut(leader).unwrap().stop();
        eprintln!(
            "killed etcd member {leader} (the leader) at {:?}",
            started.elapsed()
        );
        let took = cli_answers(&s.c);
        eprintln!("get-tablets with the leader dead took {took:?}");
        let done = succeeded_after(&s, fault_at, DURING_FAULT).await;
        eprintln!(
            "backup {} completed with the leader dead at {:?}",
            done["backup_name"],
            started.elapsed()
        );
        assert_ne!(s.c.etcd_leader().unwrap(), leader);
        s.coord.wait_leader(T).await.unwrap();

        let back_at = Utc::now();
        s.c.etcd_member_mut(leader)
            .unwrap()
            .start_again()
            .await
            .unwrap();
        succeeded_after(&s, back_at, DURING_FAULT).await;
        nothing_lost(&s).await;
        eprintln!("total {:?}", started.elapsed());
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_etcd_leader_member_mid_schedule_loses_nothing() {
    tokio::time::timeout(Duration::from_secs(300), async {
        let started = Instant::now();
        let s = setup().await;
        let leader = s.c.etcd_leader().unwrap();
        let fault_at = Utc::now();
        s.c.etcd_members()[leader].freeze().unwrap();
        eprintln!(
            "froze etcd member {leader} (the leader) at {:?}",
            started.elapsed()
        );
        let took = cli_answers(&s.c);
        eprintln!("get-tablets with the leader frozen took {took:?}");
        let done = succeeded_after(&s, fault_at, DURING_FAULT).await;
        eprintln!(
            "backup {} completed with the leader frozen at {:?}",
            done["backup_name"],
            started.elapsed()
        );
        s.coord.wait_leader(T).await.unwrap();

        let back_at = Utc::now();
        s.c.etcd_members()[leader].thaw().unwrap();
        succeeded_after(&s, back_at, DURING_FAULT).await;
        nothing_lost(&s).await;
        eprintln!("total {:?}", started.elapsed());
    })
    .await
    .expect("test timed out");
}
