//! A local cairn cluster on loopback, the first thing a newcomer runs:
//! etcd, a three-tablet MariaDB shard (`commerce/0`), a primary, a row written on
//! the primary and read back on both replicas, and `get-tablets`.
//!
//! Everything lives in a temporary directory and is stopped and removed at the end
//! (pass `--keep` to leave the cluster running until Ctrl-C).

use std::time::{Duration, Instant};

use anyhow::Context;
use cairn::testkit::{cairn_binary, wait_for, Cluster};

const T: Duration = Duration::from_secs(120);

fn step(s: &str) {
    println!("\n==> {s}");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let keep = std::env::args().any(|a| a == "--keep");
    let bin = cairn_binary()?;
    step("starting etcd on a free loopback port");
    let c = Cluster::start(bin).await?;
    let topo = c.topo().await?;
    println!(
        "etcd at {}, cluster dir {}",
        c.etcd.endpoint(),
        c.dir.path().display()
    );

    step("starting three tablets of commerce/0 (each runs its own mariadbd)");
    let mut tablets = Vec::new();
    for uid in [101, 102, 103] {
        let spec = c.tablet(uid, "commerce", "0")?;
        println!("cairn tablet --tablet-uid {uid} --init-keyspace commerce --init-shard 0 --mysql-port {} ...", spec.mysql_port);
        tablets.push(c.spawn_tablet(&spec)?);
    }
    let started = Instant::now();
    for t in tablets.iter_mut() {
        t.wait_healthy(&topo, T).await?;
    }
    println!(
        "all three healthy after {:.1}s",
        started.elapsed().as_secs_f64()
    );

    step("cairn init-shard-primary commerce/0 zone1-101");
    print!(
        "{}",
        c.cli_ok(&["init-shard-primary", "commerce/0", "zone1-101"])?
    );

    step("writing a row on the primary");
    tablets[0].sql(
        "CREATE DATABASE commerce; CREATE TABLE commerce.customer (id INT PRIMARY KEY, email VARCHAR(64)); \
         INSERT INTO commerce.customer VALUES (1, 'alice@example.com')",
    )?;
    for t in &tablets[1..] {
        let row = wait_for("the row on a replica", T, || async {
            Ok(t.sql("SELECT email FROM commerce.customer WHERE id = 1")
                .ok()
                .filter(|s| !s.trim().is_empty()))
        })
        .await
        .with_context(|| t.log_tail(20))?;
        println!("{} sees: {}", t.spec.alias(), row.trim());
    }

    step("cairn get-tablets");
    // Let one health tick pass so lag and positions are fresh.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    print!("{}", c.cli_ok(&["get-tablets"])?);

    step("cairn backup zone1-102 (builtin engine: the replica leaves service, copies, comes back)");
    let started = Instant::now();
    let name = c.cli_ok(&["backup", "zone1-102"])?.trim().to_string();
    println!("backup {name} in {:.1}s", started.elapsed().as_secs_f64());

    step("writing a row after the backup");
    tablets[0].sql("INSERT INTO commerce.customer VALUES (2, 'bob@example.com')")?;

    step("starting a fourth tablet with --restore-from-backup: it seeds itself and catches up");
    let mut spec = c.tablet(104, "commerce", "0")?;
    spec.extra = vec!["--restore-from-backup".into()];
    let started = Instant::now();
    let mut fourth = c.spawn_tablet(&spec)?;
    fourth.wait_healthy(&topo, T).await?;
    let rows = wait_for("both rows on the restored tablet", T, || async {
        Ok(fourth
            .sql("SELECT COUNT(*) FROM commerce.customer")
            .ok()
            .filter(|s| s.trim() == "2"))
    })
    .await
    .with_context(|| fourth.log_tail(30))?;
    println!(
        "zone1-0000000104 restored {name} and caught up ({} rows) in {:.1}s",
        rows.trim(),
        started.elapsed().as_secs_f64()
    );
    tablets.push(fourth);

    step("starting a coordinator and a schedule: every 10 seconds, keep 2 backups");
    let coordinator = c.spawn_coordinator("demo", &["--stagger-window", "1s"])?;
    wait_for("the coordinator to lead", T, || async {
        Ok(coordinator
            .status()
            .ok()
            .filter(|s| s["is_leader"] == true)
            .map(|_| ()))
    })
    .await?;
    print!(
        "{}",
        c.cli_ok(&[
            "schedule",
            "set",
            "nightly",
            "--cron",
            "*/10 * * * * *",
            "--target",
            "commerce",
            "--keep-count",
            "2",
            "--keep-for",
            "1s",
        ])?
    );
    let started = Instant::now();
    let job = wait_for("a scheduled backup", T, || async {
        let jobs: Vec<serde_json::Value> = serde_json::from_str(&c.cli_ok(&["jobs", "--json"])?)?;
        Ok(jobs
            .into_iter()
            .find(|j| j["schedule"] == "nightly" && j["state"] == "SUCCEEDED"))
    })
    .await
    .with_context(|| coordinator.log_tail(20))?;
    println!(
        "scheduled backup {} taken from {} (a replica, picked by health and lag) after {:.1}s",
        job["backup_name"].as_str().unwrap_or("?"),
        job["tablet_alias"].as_str().unwrap_or("?"),
        started.elapsed().as_secs_f64()
    );
    c.cli_ok(&["schedule", "pause", "nightly"])?;
    print!("{}", c.cli_ok(&["schedule", "list"])?);
    let status = coordinator.status()?;
    println!(
        "coordinator status: leader {}, {} shard(s), latest backup {}",
        status["leader_id"],
        status["shards"].as_array().map_or(0, |a| a.len()),
        status["shards"][0]["latest_backup"]
    );

    step("cairn list-backups commerce/0");
    let root = c.backup_root();
    let root = root.to_string_lossy();
    print!(
        "{}",
        c.cli_ok(&[
            "list-backups",
            "commerce/0",
            "--file-backup-storage-root",
            &root
        ])?
    );

    step("cairn get-tablets");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    print!("{}", c.cli_ok(&["get-tablets"])?);

    if keep {
        step("cluster left running; Ctrl-C to stop and clean up");
        println!(
            "try: {} get-tablets {}",
            c.bin.display(),
            c.global_args().join(" ")
        );
        tokio::signal::ctrl_c().await?;
    }
    step("stopping");
    for t in tablets.iter_mut() {
        t.terminate(Duration::from_secs(60))?;
    }
    println!("done");
    Ok(())
}
