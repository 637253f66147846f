//! Restore to a point (issue 10, item 4), the accident, against real etcd and
//! MariaDB: rows written second by second, a full backup of the replica in the
//! middle, incremental backups of its binlogs, then `DROP TABLE` on the primary.
//! A NEW tablet restored to the second of the drop (every transaction before it)
//! and another to the GTID of the last insert hold every row written before that
//! point and nothing after, and end DRAINED with replication stopped; an
//! in-place restore of one of them to an earlier second keeps only the rows
//! before it; `--dry-run` prints the chain and changes nothing; bad input (a
//! malformed GTID list, a timestamp in the future or before the oldest backup,
//! another shard's history, a hole, both flags) exits 2 or 1 with the reason and
//! changes nothing.
//!
//! The incremental backups are taken with `backup --incremental-from-pos auto`.
//! The same accident with the continuous archive and no incremental backup,
//! across a failover, goes through archived segments; a segment deleted from
//! storage is a gap the coordinator reports and restores across it refuse.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use cairn::testkit::{Cluster, MotoServer, AWS_ENV};
use chrono::Utc;

#[path = "pitr_restore/helpers.rs"]
mod helpers;
use helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_accident_a_dropped_table_comes_back_to_the_second_and_to_the_gtid() {
    let c = Cluster::start(env!("CARGO_BIN_EXE_cairn").into())
        .await
        .unwrap();
    let Scene {
        p,
        r: _r,
        seconds,
        gtids,
        drop_second,
    } = accident(&c).await;
    let last_insert = format!("MariaDB/{}", gtids[6]);

    // A new tablet to the second of the drop: everything before it, not the drop.
    let mut s3 = c.tablet(103, "ks", "0").unwrap();
    s3.extra = vec![
        "--restore-from-backup".into(),
        "--restore-to-timestamp".into(),
        rfc(drop_second),
    ];
    let mut t3 = c.spawn_tablet(&s3).unwrap();
    // Another to the GTID of the last insert.
    let mut s4 = c.tablet(104, "ks", "0").unwrap();
    s4.extra = vec![
        "--restore-from-backup".into(),
        "--restore-to-pos".into(),
        last_insert.clone(),
    ];
    let mut t4 = c.spawn_tablet(&s4).unwrap();
    wait_drained(&c, &mut t3).await;
    wait_drained(&c, &mut t4).await;
    for t in [&t3, &t4] {
        assert_eq!(
            ids(t),
            "1,2,3,4,5,6,7",
            "{}:\n{}",
            t.spec.alias(),
            t.log_tail(30)
        );
        assert_not_replicating(t);
        assert!(t.spec.dir.join("point_in_time_restore").exists());
        assert!(!t.spec.dir.join("pitr-binlogs").exists());
        assert!(
            t.log().contains("point-in-time restore done"),
            "{}",
            t.log_tail(30)
        );
    }
    assert_eq!(t4.sql("SELECT @@gtid_slave_pos").unwrap().trim(), gtids[6]);
    // The primary went on without the table; the restored tablets stay in the past.
    p.sql("CREATE TABLE app.after (id INT PRIMARY KEY)")
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    for t in [&t3, &t4] {
        let tables = t
            .sql("SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'after'")
            .unwrap();
        assert_eq!(
            tables.trim(),
            "0",
            "{} followed the primary",
            t.spec.alias()
        );
    }

    // In place, tablet 103 to row 6's second: rows 1..5 only.
    let a3 = s3.alias();
    let dry = c
        .cli_ok(&[
            "restore-from-backup",
            &a3,
            "--restore-to-timestamp",
            &rfc(seconds[5]),
            "--dry-run",
        ])
        .unwrap();
    assert!(
        dry.contains("full ") && dry.contains("incremental ") && dry.contains("dry run"),
        "{dry}"
    );
    assert_eq!(ids(&t3), "1,2,3,4,5,6,7", "the dry run changed nothing");
    let out = c
        .cli_ok(&[
            "restore-from-backup",
            &a3,
            "--restore-to-timestamp",
            &rfc(seconds[5]),
        ])
        .unwrap();
    assert!(
        out.contains(&format!("restored to MariaDB/{}", gtids[4])),
        "{out}"
    );
    assert_eq!(ids(&t3), "1,2,3,4,5");
    assert_not_replicating(&t3);

    // Bad input: exit 2 or 1 with the reason, nothing changed.
    let future = rfc(Utc::now() + chrono::Duration::hours(1));
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (
            vec!["--restore-to-pos", "MariaDB/0-101"],
            2,
            "invalid position",
        ),
        (vec!["--restore-to-pos", "0-101-5"], 2, "want MariaDB/"),
        (vec!["--restore-to-timestamp", &future], 2, "in the future"),
        (
            vec!["--restore-to-timestamp", "2026-11-25 14:03:00"],
            2,
            "YYYY-MM-DDTHH:MM:SSZ",
        ),
        (
            vec![
                "--restore-to-pos",
                &last_insert,
                "--restore-to-timestamp",
                "2020-01-01T00:00:00Z",
            ],
            2,
            "cannot be used with",
        ),
        (
            vec!["--restore-to-timestamp", "2020-01-01T00:00:00Z"],
            1,
            "before the oldest full backup",
        ),
        (
            vec!["--restore-to-pos", "MariaDB/7-101-5"],
            1,
            "another shard",
        ),
        (
            vec!["--restore-to-pos", "MariaDB/0-101-999999"],
            1,
            "nearest reachable point",
        ),
        (vec!["--dry-run"], 2, "--dry-run needs"),
    ];
    for (flags, code, why) in cases {
        let mut args = vec!["restore-from-backup", a3.as_str()];
        args.extend(flags);
        refused(&c, &args, code, why);
    }
    assert_eq!(ids(&t3), "1,2,3,4,5", "refused restores changed nothing");
    // A restart keeps the restored tablet in the past: DRAINED, not replicating.
    t3.terminate(T).unwrap();
    s3.extra.clear();
    let mut t3 = c.spawn_tablet(&s3).unwrap();
    wait_drained(&c, &mut t3).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(ids(&t3), "1,2,3,4,5");
    assert_not_replicating(&t3);
    assert!(Path::new(&s3.dir).join("point_in_time_restore").exists());
}

/// The same accident on `s3`, every stored object encrypted with age: a new
/// tablet holding only the identity restores to the second of the drop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_accident_on_encrypted_s3_comes_back_to_the_second() {
    const BUCKET: &str = "cairn-pitr";
    let m = MotoServer::start().await.expect("moto");
    m.create_bucket(BUCKET).unwrap();
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("id.key");
    let out = Command::new("age-keygen")
        .arg("-o")
        .arg(&key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = std::fs::read_to_string(&key)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("# public key: ").map(str::to_string))
        .unwrap();
    let mut c = Cluster::start(env!("CARGO_BIN_EXE_cairn").into())
        .await
        .unwrap();
    let mut flags = m.flags(BUCKET, None, 2);
    flags.extend([
        "--backup-encryption-recipient".to_string(),
        public.clone(),
        "--backup-encryption-identity-file".to_string(),
        key.display().to_string(),
    ]);
    c.use_storage(flags.clone(), AWS_ENV);
    let scene = accident(&c).await;
    let mut s3 = c.tablet(103, "ks", "0").unwrap();
    s3.extra = vec![
        "--restore-from-backup".into(),
        "--restore-to-timestamp".into(),
        rfc(scene.drop_second),
    ];
    let mut t3 = c.spawn_tablet(&s3).unwrap();
    wait_drained(&c, &mut t3).await;
    assert_eq!(ids(&t3), "1,2,3,4,5,6,7", "{}", t3.log_tail(30));
    assert_eq!(
        t3.sql("SELECT @@gtid_slave_pos").unwrap().trim(),
        scene.gtids[6]
    );
    assert_not_replicating(&t3);
    let stored = m.keys(BUCKET, "ks/0/").unwrap();
    let manifests: Vec<&String> = stored.iter().filter(|k| k.ends_with("/MANIFEST")).collect();
    assert!(manifests.len() >= 3, "{stored:?}");
    let mut incrementals = 0;
    for k in manifests {
        let (_, body) = m.get(BUCKET, k).unwrap();
        assert!(body.contains("\"Encryption\": \"age\""), "{k}: {body}");
        incrementals += usize::from(body.contains("\"Incremental\": true"));
    }
    assert_eq!(incrementals, 2, "{stored:?}");

    // The archive on the same encrypted s3: a write after the last incremental
    // is reached through archived segments on top of the incrementals.
    // (The coordinator encrypts, never decrypts: no identity flag.)
    let i = flags
        .iter()
        .position(|f| f == "--backup-encryption-identity-file")
        .unwrap();
    let mut coord_flags = flags.clone();
    coord_flags.drain(i..i + 2);
    c.use_storage(coord_flags, AWS_ENV);
    let coord = c
        .spawn_coordinator("c1", &["--lost-health-grace", "2s"])
        .unwrap();
    c.use_storage(flags, AWS_ENV);
    coord.wait_leader(T).await.unwrap();
    c.cli_ok(&["archive", "set", "ks/0", "--interval", "1s"])
        .unwrap();
    scene
        .p
        .sql("CREATE TABLE app.later (id INT PRIMARY KEY); INSERT INTO app.later VALUES (1)")
        .unwrap();
    let pos = scene
        .p
        .sql("SELECT @@gtid_binlog_pos")
        .unwrap()
        .trim()
        .to_string();
    cairn::testkit::wait_for("the archive to hold the last write", T, || async {
        Ok((shard_json(&c)["archive"]["position"] == pos.as_str()).then_some(()))
    })
    .await
    .unwrap();
    let mut s5 = c.tablet(105, "ks", "0").unwrap();
    s5.extra = vec![
        "--restore-from-backup".into(),
        "--restore-to-pos".into(),
        format!("MariaDB/{pos}"),
    ];
    let mut t5 = c.spawn_tablet(&s5).unwrap();
    wait_drained(&c, &mut t5).await;
    assert_eq!(
        t5.sql("SELECT COUNT(*) FROM app.later").unwrap().trim(),
        "1",
        "{}",
        t5.log_tail(30)
    );
    assert_eq!(t5.sql("SELECT @@gtid_slave_pos").unwrap().trim(), pos);
    let log = t5.log();
    assert!(
        log.contains("point-in-time chain: incremental")
            && log.contains("point-in-time chain: archive"),
        "{}",
        t5.log_tail(30)
    );
    let segments = m.keys(BUCKET, "_binlog/ks/0/").unwrap();
    assert!(!segments.is_empty());
    assert!(segments.iter().all(|k| k.ends_with(".age")), "{segments:?}");
    drop((coord, scene.p, scene.r));
}

/// The accident with archiving only (no incremental backup): rows second by
/// second, one full backup of the replica after row 3, the archive on at
/// `--interval 1s`, rows 4..5, a failover to the replica (re-parent), rows 6..7
/// and `DROP TABLE` on the new primary. A new tablet restored to the second of
/// the drop, and in place to the GTID of row 5 then of the last insert, hold
/// every row before the point and nothing after: rows 4..7 can only come from
/// archived segments, of both primaries' binlogs. The coordinator reports the recoverable
/// window; once a segment holding row 5 is deleted from storage it raises the
/// gap (metric, status, get-shard), and a restore across it fails with the
/// missing GTIDs and the nearest reachable point, leaving the tablet as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_accident_with_archiving_only_across_a_failover_and_a_missing_segment() {
    use cairn::backup::binlog_archive::{archive_dir, find_by_gtid, list_segments};
    use cairn::backup::storage::BackupStorage;
    use cairn::backup::FileStorage;
    use cairn::mysql::gtid::parse_gtid_list;

    let c = Cluster::start(env!("CARGO_BIN_EXE_cairn").into())
        .await
        .unwrap();
    let topo = c.topo().await.unwrap();
    let (ps, rs) = (
        c.tablet(101, "ks", "0").unwrap(),
        c.tablet(102, "ks", "0").unwrap(),
    );
    let mut p = c.spawn_tablet(&ps).unwrap();
    let mut r = c.spawn_tablet(&rs).unwrap();
    p.wait_healthy(&topo, T).await.unwrap();
    r.wait_healthy(&topo, T).await.unwrap();
    c.cli_ok(&["init-shard-primary", "ks/0", &ps.alias()])
        .unwrap();
    p.sql("CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, at BIGINT)")
        .unwrap();
    // (Listed in full every 2 s: the segment deleted below is seen soon.)
    let coord = c
        .spawn_coordinator_env(
            "c1",
            &["--lost-health-grace", "2s"],
            &[("CAIRN_COORDINATOR_FULL_LIST_EVERY", "2s")],
        )
        .unwrap();
    coord.wait_leader(T).await.unwrap();
    let mut gtids = vec![];
    for id in 1..=7 {
        if id == 4 {
            r.wait_value("SELECT COUNT(*) FROM app.t", "3", T)
                .await
                .unwrap();
            c.cli_ok(&["backup", &rs.alias()]).unwrap();
            r.wait_healthy(&topo, T).await.unwrap();
            c.cli_ok(&["archive", "set", "ks/0", "--interval", "1s"])
                .unwrap();
            // Rows 1..3 archived first, so later rows get segments of their own.
            let pos = p
                .sql("SELECT @@gtid_binlog_pos")
                .unwrap()
                .trim()
                .to_string();
            cairn::testkit::wait_for("the archive to start", T, || async {
                Ok((shard_json(&c)["archive"]["position"] == pos.as_str()).then_some(()))
            })
            .await
            .unwrap();
        }
        if id == 6 {
            // The failover: the replica caught up becomes primary.
            let pos = p.sql("SELECT @@gtid_binlog_pos").unwrap();
            r.wait_value("SELECT @@gtid_binlog_pos", pos.trim(), T)
                .await
                .unwrap();
            c.cli_ok(&["init-shard-primary", "ks/0", &rs.alias()])
                .unwrap();
        }
        let w = if id >= 6 { &r } else { &p };
        let at = next_second().await;
        w.sql(&format!(
            "INSERT INTO app.t VALUES ({id}, {})",
            at.timestamp()
        ))
        .unwrap();
        gtids.push(
            w.sql("SELECT @@gtid_binlog_pos")
                .unwrap()
                .trim()
                .to_string(),
        );
    }
    let drop_second = next_second().await;
    r.sql("DROP TABLE app.t").unwrap();
    let primary_pos = r
        .sql("SELECT @@gtid_binlog_pos")
        .unwrap()
        .trim()
        .to_string();
    let t0 = std::time::Instant::now();
    cairn::testkit::wait_for("the archive to hold the drop", T, || async {
        Ok((shard_json(&c)["archive"]["position"] == primary_pos.as_str()).then_some(()))
    })
    .await
    .unwrap();
    println!("archived {:?} after the drop", t0.elapsed());
    // No incremental backup exists: only the archive holds rows 4..7.
    let root = c.backup_root().display().to_string();
    let listed = c
        .cli_ok(&[
            "list-backups",
            "ks/0",
            "--json",
            "--file-backup-storage-root",
            &root,
        ])
        .unwrap();
    assert!(!listed.contains("\"incremental\": true"), "{listed}");

    // The coordinator sees the window and no gap.
    let status = cairn::testkit::wait_for("the recoverable window in status", T, || async {
        let (_, body) = coord.http_get("/api/v1/status")?;
        let v: serde_json::Value = serde_json::from_str(&body)?;
        let s = v["shards"][0].clone();
        Ok((s["recoverable_to"].is_string() && s["recoverable_from"].is_string()).then_some(s))
    })
    .await
    .unwrap();
    assert!(status["archive_gap"].is_null(), "{status}");
    assert!(
        status["recoverable_window_seconds"].as_f64().unwrap() >= 4.0,
        "{status}"
    );
    let (_, m) = coord.http_get("/metrics").unwrap();
    assert!(
        m.contains("cairn_coordinator_archive_gap{keyspace=\"ks\",shard=\"0\"} 0"),
        "{m}"
    );
    assert!(
        m.contains("cairn_coordinator_recoverable_window_seconds{"),
        "{m}"
    );

    // A new tablet to the second of the drop.
    let mut s3 = c.tablet(103, "ks", "0").unwrap();
    s3.extra = vec![
        "--restore-from-backup".into(),
        "--restore-to-timestamp".into(),
        rfc(drop_second),
    ];
    let t = std::time::Instant::now();
    let mut t3 = c.spawn_tablet(&s3).unwrap();
    wait_drained(&c, &mut t3).await;
    println!(
        "new tablet restored through the archive in {:?}",
        t.elapsed()
    );
    assert_eq!(ids(&t3), "1,2,3,4,5,6,7", "{}", t3.log_tail(30));
    assert_eq!(t3.sql("SELECT @@gtid_slave_pos").unwrap().trim(), gtids[6]);
    assert_not_replicating(&t3);
    assert!(!s3.dir.join("pitr-binlogs").exists());

    // In place, to the GTID of row 5, then of the last insert; the dry run
    // shows the archived segments.
    let a3 = s3.alias();
    let to5 = format!("MariaDB/{}", gtids[4]);
    let dry = c
        .cli_ok(&[
            "restore-from-backup",
            &a3,
            "--restore-to-pos",
            &to5,
            "--dry-run",
        ])
        .unwrap();
    assert!(dry.contains("full ") && dry.contains("archive "), "{dry}");
    assert!(!dry.contains("incremental "), "{dry}");
    let out = c
        .cli_ok(&["restore-from-backup", &a3, "--restore-to-pos", &to5])
        .unwrap();
    assert!(out.contains(&format!("restored to {to5}")), "{out}");
    assert_eq!(ids(&t3), "1,2,3,4,5");
    let last = format!("MariaDB/{}", gtids[6]);
    c.cli_ok(&["restore-from-backup", &a3, "--restore-to-pos", &last])
        .unwrap();
    assert_eq!(ids(&t3), "1,2,3,4,5,6,7");
    assert_not_replicating(&t3);
    // Beyond the newest archived transaction: refused, with the newest point.
    refused(
        &c,
        &[
            "restore-from-backup",
            &a3,
            "--restore-to-pos",
            "MariaDB/0-102-999999",
        ],
        1,
        "is beyond what is archived",
    );
    assert_eq!(ids(&t3), "1,2,3,4,5,6,7");

    // A segment holding row 5 goes missing from storage.
    let st = FileStorage::new(c.backup_root());
    let segs: Vec<_> = list_segments(&st, "ks", "0")
        .await
        .unwrap()
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    // The chain crossed the failover: both primaries' binlogs are archived.
    let sources = segs
        .iter()
        .filter(|s| s.has_transactions())
        .map(|s| s.server_id)
        .collect::<std::collections::BTreeSet<_>>();
    assert_eq!(sources.len(), 2, "{segs:?}");
    println!(
        "moved heads: {}",
        segs.iter().filter(|s| s.moved_head).count()
    );
    let row5 = parse_gtid_list(&gtids[4]).unwrap()[0];
    let gone = find_by_gtid(&segs, row5)
        .expect("a segment holds row 5")
        .clone();
    st.remove_blob(&archive_dir("ks", "0"), &gone.format())
        .await
        .unwrap();
    let t = std::time::Instant::now();
    let metrics = cairn::testkit::wait_for("the gap metric", T, || async {
        let (_, m) = coord.http_get("/metrics")?;
        Ok(
            m.contains("cairn_coordinator_archive_gap{keyspace=\"ks\",shard=\"0\"} 1")
                .then_some(m),
        )
    })
    .await
    .unwrap();
    println!("gap raised {:?} after the segment was deleted", t.elapsed());
    assert!(!metrics.is_empty());
    let (_, body) = coord.http_get("/api/v1/status").unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let missing = v["shards"][0]["archive_gap"]["missing_gtids"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(missing.contains(&row5.seq.to_string()), "{v}");
    let shard = cairn::testkit::wait_for("the gap in get-shard", T, || async {
        let s = shard_json(&c);
        Ok(s["archive_gap"].is_object().then_some(s))
    })
    .await
    .unwrap();
    assert_eq!(
        shard["archive_gap"]["missing_gtids"],
        missing.as_str(),
        "{shard}"
    );

    // A restore across the hole: refused, naming it; the tablet as it was.
    refused(
        &c,
        &["restore-from-backup", &a3, "--restore-to-pos", &last],
        1,
        "nearest reachable point",
    );
    let out = c
        .cli(&[
            "restore-from-backup",
            &a3,
            "--restore-to-timestamp",
            &rfc(drop_second),
        ])
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("nearest reachable point") && err.contains(&missing),
        "{err}"
    );
    assert_eq!(
        ids(&t3),
        "1,2,3,4,5,6,7",
        "the refused restores changed nothing"
    );
    assert_not_replicating(&t3);
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&c.cli_ok(&["get-tablets", "--json"]).unwrap()).unwrap();
    let row = rows.iter().find(|x| x["alias"] == a3.as_str()).unwrap();
    assert_eq!(row["type"], "DRAINED", "{row}");
    // Up to just before the hole still works.
    let first = gone.first_gtid.unwrap();
    let before = format!("MariaDB/0-{}-{}", first.server, first.seq - 1);
    let want: Vec<String> = (1..=7)
        .filter(|i| parse_gtid_list(&gtids[i - 1]).unwrap()[0].seq < first.seq)
        .map(|i| i.to_string())
        .collect();
    c.cli_ok(&["restore-from-backup", &a3, "--restore-to-pos", &before])
        .unwrap();
    assert_eq!(ids(&t3), want.join(","));
    drop((coord, p, r));
}
