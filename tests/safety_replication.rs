//! A replica whose replication keeps failing is not healthy, against real etcd and
//! three real MariaDB tablets: a row written on one replica alone, then the same key
//! on the primary, stops that replica's SQL thread on error 1062. Its agent restarts
//! replication with backoff, yet the replica stays unhealthy (get-tablets shows the
//! error), `backup-shard` picks the healthy replica, and the agent's `/metrics`
//! counts the error. Once the conflict is removed it replicates again, and counts
//! as healthy only after a clean period.

use std::time::{Duration, Instant};

use cairn::testkit::{wait_for, Cluster, TabletProcess};

const T: Duration = Duration::from_secs(90);

/// `get-tablets --json` row of `alias`.
fn tablet_row(c: &Cluster, alias: &str) -> anyhow::Result<serde_json::Value> {
    let out = c.cli_ok(&["get-tablets", "--keyspace", "ks", "--json"])?;
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out)?;
    rows.into_iter()
        .find(|r| r["alias"] == alias)
        .ok_or_else(|| anyhow::anyhow!("no row for {alias}"))
}

/// Restarts of replication the agent logged so far.
fn restarts_logged(t: &TabletProcess) -> usize {
    t.log()
        .matches("replication not running; restarting it")
        .count()
}

/// `cairn_tablet_replication_errors_total` of the agent on `port`.
fn replication_errors_metric(port: u16) -> anyhow::Result<u64> {
    let (code, text) = cairn::testkit::http_get(port, "/metrics")?;
    anyhow::ensure!(code == 200, "/metrics answered {code}");
    let line = text
        .lines()
        .find(|l| l.starts_with("cairn_tablet_replication_errors_total "))
        .ok_or_else(|| anyhow::anyhow!("no replication error counter in\n{text}"))?;
    Ok(line.rsplit(' ').next().unwrap_or("").parse()?)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_diverged_replica_is_unhealthy_and_never_backed_up() {
    tokio::time::timeout(Duration::from_secs(420), async {
        let c = Cluster::start(env!("CARGO_BIN_EXE_cairn").into())
            .await
            .expect("cluster");
        let topo = c.topo().await.unwrap();
        let mut tablets = Vec::new();
        for uid in [101, 102, 103] {
            tablets.push(c.spawn_tablet(&c.tablet(uid, "ks", "0").unwrap()).unwrap());
        }
        for t in tablets.iter_mut() {
            t.wait_healthy(&topo, T).await.unwrap();
        }
        c.cli_ok(&["init-shard-primary", "ks/0", "zone1-101"])
            .unwrap();
        let (primary, bad, good) = (&tablets[0], &tablets[1], &tablets[2]);
        // The diverging replica has the lowest alias: with every replica equally
        // healthy, backup-shard would choose it.
        let (bad_alias, good_alias) = (bad.spec.alias(), good.spec.alias());
        primary
            .sql(
                "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(40)); \
                 INSERT INTO app.t SELECT seq, 'before' FROM app.seq_1_to_100",
            )
            .unwrap();
        for t in [bad, good] {
            wait_for("100 rows on a replica", T, || async {
                Ok(t.sql("SELECT COUNT(*) FROM app.t")
                    .ok()
                    .filter(|s| s.trim() == "100"))
            })
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", t.log_tail(30)));
        }
        wait_for("both replicas healthy", T, || async {
            Ok((tablet_row(&c, &bad_alias)?["healthy"] == true
                && tablet_row(&c, &good_alias)?["healthy"] == true)
                .then_some(()))
        })
        .await
        .unwrap();
        let bad_port = tablet_row(&c, &bad_alias).unwrap()["port"]
            .as_u64()
            .unwrap() as u16;
        assert_eq!(replication_errors_metric(bad_port).unwrap(), 0);

        // A row only the replica has (not binlogged, as an operator's mistake would
        // be), then the same key on the primary: the replica's SQL thread stops on
        // a duplicate key.
        bad.sql("SET SESSION sql_log_bin = 0; INSERT INTO app.t VALUES (1000, 'replica only')")
            .unwrap();
        primary
            .sql("INSERT INTO app.t VALUES (1000, 'primary'), (1001, 'primary')")
            .unwrap();
        wait_for("the conflicting row on the healthy replica", T, || async {
            Ok(good
                .sql("SELECT COUNT(*) FROM app.t")
                .ok()
                .filter(|s| s.trim() == "102"))
        })
        .await
        .unwrap();

        // Within a few health intervals (1 s here) get-tablets shows it unhealthy,
        // with the error that stopped it.
        let row = wait_for(
            "the diverged replica reported failing",
            Duration::from_secs(15),
            || async {
                let r = tablet_row(&c, &bad_alias)?;
                Ok((r["healthy"] == false && r["replication_error"]["errno"] == 1062).then_some(r))
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", bad.log_tail(40)));
        assert_eq!(row["replication_error"]["thread"], "sql", "{row}");
        assert!(
            row["replication_error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("Duplicate entry")),
            "{row}"
        );
        let table = c.cli_ok(&["get-tablets", "--keyspace", "ks"]).unwrap();
        assert!(table.contains("REPLICATION ERROR"), "{table}");
        assert!(
            table
                .lines()
                .any(|l| l.contains(&bad_alias) && l.contains("SQL thread error 1062")),
            "{table}"
        );

        // It stays unhealthy although its agent keeps restarting replication (which
        // runs for a moment each time), and the restarts back off.
        let restarts_before = restarts_logged(bad);
        let watch_until = Instant::now() + Duration::from_secs(12);
        while Instant::now() < watch_until {
            let r = tablet_row(&c, &bad_alias).unwrap();
            assert_eq!(
                r["healthy"], false,
                "the diverged replica looked healthy: {r}"
            );
            assert!(r["replication_error"].is_object(), "{r}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let restarts = restarts_logged(bad) - restarts_before;
        assert!(
            restarts <= 5,
            "{restarts} restarts in 12 s: no backoff\n{}",
            bad.log_tail(40)
        );

        // backup-shard passes it over: the healthy replica is backed up.
        let name = c
            .cli_ok(&["backup-shard", "ks/0"])
            .unwrap_or_else(|e| panic!("{e}\n{}", good.log_tail(40)));
        assert!(name.trim().ends_with(&good_alias), "backed up {name}");
        let jobs: Vec<serde_json::Value> =
            serde_json::from_str(&c.cli_ok(&["jobs", "--json"]).unwrap()).unwrap();
        assert!(
            jobs.iter().all(|j| j["tablet_alias"] != bad_alias.as_str()),
            "{jobs:?}"
        );

        // Its agent counted the error.
        let counted = replication_errors_metric(bad_port).unwrap();
        assert!(counted >= 1, "replication errors counted: {counted}");
        let (_, metrics) = cairn::testkit::http_get(bad_port, "/metrics").unwrap();
        assert!(
            metrics.contains("cairn_tablet_replication_failing 1"),
            "{metrics}"
        );
        assert_eq!(
            replication_errors_metric(
                tablet_row(&c, &good_alias).unwrap()["port"]
                    .as_u64()
                    .unwrap() as u16
            )
            .unwrap(),
            0
        );

        // The operator removes the conflicting row: the next restart (after the
        // backoff) applies the primary's rows, and the replica is healthy again only
        // after replicating cleanly for a while.
        bad.sql("SET SESSION sql_log_bin = 0; DELETE FROM app.t WHERE id = 1000")
            .unwrap();
        wait_for(
            "the primary's rows on the repaired replica",
            Duration::from_secs(120),
            || async {
                Ok(bad
                    .sql("SELECT COUNT(*) FROM app.t WHERE v = 'primary'")
                    .ok()
                    .filter(|s| s.trim() == "2"))
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", bad.log_tail(40)));
        let applied = Instant::now();
        let row = wait_for("the repaired replica healthy again", T, || async {
            let r = tablet_row(&c, &bad_alias)?;
            Ok((r["healthy"] == true).then_some(r))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", bad.log_tail(40)));
        assert!(
            applied.elapsed() >= Duration::from_secs(25),
            "healthy {:?} after replicating again: no clean period",
            applied.elapsed()
        );
        assert!(row["replication_error"].is_null(), "{row}");
        assert!(row["replication_clean_since"].is_string(), "{row}");
        // Rows agree with the primary.
        let count = |t: &TabletProcess| t.sql("SELECT COUNT(*), SUM(id) FROM app.t").unwrap();
        assert_eq!(count(bad), count(primary));
        assert_eq!(count(good), count(primary));
    })
    .await
    .expect("test timed out");
}
