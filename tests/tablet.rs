//! The tablet agent against real etcd and real MariaDB: registration, health on a
//! lease, replication from the shard primary, supervision, restarts, and the admin
//! commands around them.

use std::time::{Duration, Instant};

use cairn::testkit::{wait_for, Cluster, TabletProcess};
use cairn_topo::{TabletAlias, Topo};

const T: Duration = Duration::from_secs(90);

async fn cluster() -> Cluster {
    Cluster::start(env!("CARGO_BIN_EXE_cairn").into())
        .await
        .expect("cluster")
}

async fn health_present(topo: &Topo, alias: &str) -> bool {
    let alias: TabletAlias = alias.parse().unwrap();
    topo.get_tablet_info(&alias)
        .await
        .ok()
        .flatten()
        .is_some_and(|i| i.health.is_some())
}

/// Three tablets, a primary, a row on the primary shows on both replicas.
async fn three_tablet_shard(c: &Cluster, topo: &Topo) -> Vec<TabletProcess> {
    let mut tablets = Vec::new();
    for uid in [101, 102, 103] {
        let spec = c.tablet(uid, "commerce", "0").unwrap();
        tablets.push(c.spawn_tablet(&spec).unwrap());
    }
    for t in tablets.iter_mut() {
        t.wait_healthy(topo, T).await.unwrap();
    }
    c.cli_ok(&["init-shard-primary", "commerce/0", "zone1-101"])
        .unwrap();
    tablets
}

#[tokio::test(flavor = "multi_thread")]
async fn three_tablet_shard_replicates_from_the_primary() {
    tokio::time::timeout(Duration::from_secs(240), async {
        let c = cluster().await;
        let topo = c.topo().await.unwrap();
        let tablets = three_tablet_shard(&c, &topo).await;

        tablets[0]
            .sql("CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(20)); INSERT INTO app.t VALUES (1, 'hello')")
            .unwrap();
        for t in &tablets[1..] {
            let got = wait_for("the row on a replica", T, || async {
                Ok(t.sql("SELECT v FROM app.t WHERE id = 1").ok().filter(|s| s.trim() == "hello"))
            })
            .await;
            assert!(got.is_ok(), "{got:?}\n{}", t.log_tail(20));
        }
        // Replicas are read-only (root bypasses it, application users do not); the
        // primary is not.
        assert_eq!(tablets[1].sql("SELECT @@read_only").unwrap().trim(), "1");
        assert_eq!(tablets[0].sql("SELECT @@read_only").unwrap().trim(), "0");

        // get-tablets shows the types and health (JSON fields of the contract).
        let rows = wait_for("all tablets healthy and replicating", T, || async {
            let out = c.cli_ok(&["get-tablets", "--keyspace", "commerce", "--json"])?;
            let rows: Vec<serde_json::Value> = serde_json::from_str(&out)?;
            let ok = rows.len() == 3 && rows.iter().all(|r| r["healthy"] == true);
            Ok(ok.then_some(rows))
        })
        .await
        .unwrap();
        assert_eq!(rows[0]["alias"], "zone1-0000000101");
        assert_eq!(rows[0]["type"], "PRIMARY");
        assert_eq!(rows[1]["type"], "REPLICA");
        for key in ["alias", "keyspace", "shard", "type", "hostname", "mysql_port", "port", "healthy", "replication_lag_seconds"] {
            assert!(rows[1].get(key).is_some(), "missing {key} in {}", rows[1]);
        }
        assert!(rows[1]["replication_lag_seconds"].is_u64());
        // The agent's own HTTP endpoint.
        let port = rows[1]["port"].as_u64().unwrap() as u16;
        let (code, _) = cairn::testkit::http_get(port, "/healthz").unwrap();
        assert_eq!(code, 200);
        let (code, metrics) = cairn::testkit::http_get(port, "/metrics").unwrap();
        assert_eq!(code, 200);
        assert!(metrics.contains("cairn_tablet_mysqld_up 1"), "{metrics}");

        let shard = c.cli_ok(&["get-shard", "commerce/0", "--json"]).unwrap();
        let shard: serde_json::Value = serde_json::from_str(&shard).unwrap();
        assert_eq!(shard["primary_alias"], "zone1-0000000101");

        // Moving the primary: the old primary becomes a replica of the new one.
        c.cli_ok(&["init-shard-primary", "commerce/0", "zone1-102"]).unwrap();
        tablets[1].sql("INSERT INTO app.t VALUES (3, 'moved')").unwrap();
        for t in [&tablets[0], &tablets[2]] {
            wait_for("the row written on the new primary", T, || async {
                Ok(t.sql("SELECT v FROM app.t WHERE id = 3").ok().filter(|s| s.trim() == "moved"))
            })
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", t.log_tail(30)));
        }
        assert_eq!(tablets[0].sql("SELECT @@read_only").unwrap().trim(), "1");
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_agent_loses_health_keeps_record_and_restarts_on_its_data() {
    tokio::time::timeout(Duration::from_secs(240), async {
        let c = cluster().await;
        let topo = c.topo().await.unwrap();
        let spec = c.tablet(201, "ks", "0").unwrap();
        let mut t = c.spawn_tablet(&spec).unwrap();
        t.wait_healthy(&topo, T).await.unwrap();
        t.sql("CREATE DATABASE keep; CREATE TABLE keep.t (id INT PRIMARY KEY); INSERT INTO keep.t VALUES (7)").unwrap();

        t.kill9();
        let killed = Instant::now();
        let gone = wait_for("Health to vanish", Duration::from_secs(15), || async {
            Ok((!health_present(&topo, &spec.alias()).await).then_some(()))
        })
        .await;
        assert!(gone.is_ok(), "Health still present 15s after kill -9 (TTL 4s)");
        let vanished_after = killed.elapsed();
        assert!(vanished_after < Duration::from_secs(10), "Health vanished only after {vanished_after:?}");
        let alias: TabletAlias = spec.alias().parse().unwrap();
        let record = topo.get_tablet_info(&alias).await.unwrap();
        assert!(record.is_some(), "the Tablet record must outlive the agent");

        let mut t = c.spawn_tablet(&spec).unwrap();
        t.wait_healthy(&topo, T).await.unwrap();
        assert!(t.log().contains("reusing the existing data directory"), "{}", t.log_tail(20));
        assert_eq!(t.sql("SELECT id FROM keep.t").unwrap().trim(), "7");

        // Same uid, other shard: refused, nothing changed.
        t.terminate(Duration::from_secs(60)).unwrap();
        let mut other = spec.clone();
        other.shard = "80-".into();
        let mut bad = c.spawn_tablet(&other).unwrap();
        let status = bad.wait_exit(Duration::from_secs(30)).await.unwrap();
        assert_eq!(status.code(), Some(1));
        assert!(bad.log().contains("is registered in ks/0, not ks/80-"), "{}", bad.log_tail(5));
        let record = topo.get_tablet_info(&alias).await.unwrap().unwrap();
        assert_eq!(record.tablet.value.shard, "0");
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread")]
async fn mysqld_killed_under_the_agent_is_restarted_and_sigterm_is_clean() {
    tokio::time::timeout(Duration::from_secs(180), async {
        let c = cluster().await;
        let topo = c.topo().await.unwrap();
        let spec = c.tablet(301, "ks", "0").unwrap();
        let mut t = c.spawn_tablet(&spec).unwrap();
        t.wait_healthy(&topo, T).await.unwrap();
        let old = t.mysqld_pid().expect("mysqld pid file");
        // SAFETY: kill(2) on the test's own mysqld.
        unsafe { libc::kill(old, libc::SIGKILL) };
        let new = wait_for("a new mysqld", T, || async {
            let pid = t.mysqld_pid().filter(|p| *p != old);
            Ok(pid.filter(|_| t.sql("SELECT 1").is_ok()))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", t.log_tail(30)));
        assert_ne!(new, old);
        t.wait_healthy(&topo, T).await.unwrap();

        // SIGTERM: mysqld stopped cleanly, Health gone at once (lease revoked).
        let st = t.terminate(Duration::from_secs(60)).unwrap();
        assert!(st.success(), "agent exit {st}: {}", t.log_tail(20));
        assert!(
            !health_present(&topo, &spec.alias()).await,
            "Health must go with a clean stop"
        );
        // SAFETY: signal 0 only checks existence.
        let alive = unsafe { libc::kill(new, 0) } == 0;
        assert!(!alive, "mysqld still running after a clean agent stop");
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_waits_for_etcd_and_survives_a_frozen_etcd() {
    tokio::time::timeout(Duration::from_secs(240), async {
        let mut c = cluster().await;
        c.etcd.stop();
        let spec = c.tablet(401, "ks", "0").unwrap();
        let mut t = c.spawn_tablet(&spec).unwrap();
        wait_for("a retry log line", Duration::from_secs(30), || async {
            Ok(t.log().contains("retrying").then_some(()))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", t.log_tail(20)));
        tokio::time::sleep(Duration::from_secs(2)).await;
        let attempts = t.log().matches("retrying").count();
        assert!(
            attempts >= 2,
            "expected a log line per attempt, got {attempts}:\n{}",
            t.log_tail(20)
        );
        c.etcd.start_again().await.unwrap();
        let topo = c.topo().await.unwrap();
        t.wait_healthy(&topo, T).await.unwrap();

        // Freeze etcd past the lease TTL (4s): the agent notices, and re-registers its
        // Health after the thaw.
        let before = t.log().matches("re-registering health").count();
        c.etcd.freeze().unwrap();
        tokio::time::sleep(Duration::from_secs(8)).await;
        c.etcd.thaw().unwrap();
        wait_for("health re-registered", T, || async {
            let n = t.log().matches("re-registering health").count();
            Ok((n > before && health_present(&topo, &spec.alias()).await).then_some(()))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", t.log_tail(30)));
        assert!(
            t.log().contains("lease lost") || t.log().contains("lost"),
            "{}",
            t.log_tail(30)
        );
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_names_and_garbage_records_get_clear_errors() {
    tokio::time::timeout(Duration::from_secs(120), async {
        let c = cluster().await;
        let topo = c.topo().await.unwrap();
        let count_keys = || async { topo.list_raw("/").await.unwrap().0.len() };
        let before = count_keys().await;
        for args in [
            vec!["get-shard", "commerce"],
            vec!["get-shard", "com/merce/0"],
            vec!["init-shard-primary", "commerce/0", "zone1"],
            vec!["init-shard-primary", "commerce/0", "zone1-99999999999"],
            vec!["init-shard-primary", "commerce/0", "zo ne-1"],
            vec!["remove-backup", "commerce/0", "../x"],
            vec!["list-backups", "a b/0"],
            vec!["get-tablets", "--keyspace", "a/b"],
        ] {
            let out = c.cli(&args).unwrap();
            assert_eq!(out.status.code(), Some(2), "{args:?}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
            assert!(err.starts_with("error: "), "{args:?}: {err}");
        }
        assert_eq!(count_keys().await, before, "bad input wrote to etcd");

        // Garbage written by hand: skipped by lists, a clear error when read directly.
        let mut raw = topo.raw_client_for_tests();
        raw.put(
            "/cairn/zone1/tablets/zone1-0000000009/Tablet",
            "{not json",
            None,
        )
        .await
        .unwrap();
        raw.put("/cairn/global/keyspaces/ks/shards/0/Shard", "[1,2]", None)
            .await
            .unwrap();
        let out = c.cli(&["get-tablets", "--json"]).unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        assert!(rows.is_empty());
        let out = c.cli(&["get-shard", "ks/0"]).unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("error: ") && err.contains("parse"), "{err}");
        assert_eq!(err.trim().lines().count(), 1);

        // init-shard-primary of a tablet that does not exist: refused, shard untouched.
        let out = c
            .cli(&["init-shard-primary", "commerce/0", "zone1-5"])
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("not registered"));
        assert!(topo.get_shard("commerce", "0").await.unwrap().is_none());
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread")]
async fn init_shard_primary_refuses_an_unhealthy_tablet() {
    tokio::time::timeout(Duration::from_secs(180), async {
        let c = cluster().await;
        let topo = c.topo().await.unwrap();
        let spec = c.tablet(501, "ks", "0").unwrap();
        let mut t = c.spawn_tablet(&spec).unwrap();
        t.wait_healthy(&topo, T).await.unwrap();
        t.kill9();
        wait_for("Health to vanish", Duration::from_secs(15), || async {
            Ok((!health_present(&topo, &spec.alias()).await).then_some(()))
        })
        .await
        .unwrap();
        let out = c.cli(&["init-shard-primary", "ks/0", "zone1-501"]).unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("not healthy"), "{err}");
        let shard = topo.get_shard("ks", "0").await.unwrap().unwrap();
        assert_eq!(shard.value.primary_alias, None);
        // Another shard's tablet is refused too.
        let out = c
            .cli(&["init-shard-primary", "ks/80-", "zone1-501"])
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("belongs to ks/0"));
    })
    .await
    .expect("test timed out");
}
