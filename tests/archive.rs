//! Continuous binlog archiving against real etcd and MariaDB: `archive set` turns
//! into one ARCHIVE job on a replica, writes on the primary reach storage as
//! segments that reassemble into valid binlogs with contiguous GTIDs, the archive
//! moves on with no gap and no duplicate when the archiving agent is killed,
//! binlogs the primary purged before they were archived are a gap the
//! coordinator names at once, and `archive remove` stops it. Bad input is exit 2. One cluster for all of it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cairn::backup::binlog_archive::{archive_dir, gaps, list_segments, read_segment, SegmentName};
use cairn::backup::FileStorage;
use cairn::mysql::binlog::summarize;
use cairn::mysql::gtid::parse_gtid_list;
use cairn::testkit::{wait_for, Cluster, TabletProcess};
use serde_json::Value;

const T: Duration = Duration::from_secs(90);

fn archive_jobs(c: &Cluster) -> Vec<Value> {
    let out = c.cli_ok(&["jobs", "--json"]).unwrap();
    let jobs: Vec<Value> = serde_json::from_str(&out).unwrap();
    jobs.into_iter()
        .filter(|j| j["kind"] == "ARCHIVE")
        .collect()
}

/// The archive's position as `get-shard --json` reports it.
fn archived_position(c: &Cluster) -> String {
    let out = c.cli_ok(&["get-shard", "ks/0", "--json"]).unwrap();
    let v: Value = serde_json::from_str(&out).unwrap();
    v["archive"]["position"].as_str().unwrap_or("").to_string()
}

fn primary_position(p: &TabletProcess) -> String {
    p.sql("SELECT @@gtid_binlog_pos")
        .unwrap()
        .trim()
        .to_string()
}

/// Waits until the archive holds the primary's position; returns how long it took.
async fn wait_archived(c: &Cluster, p: &TabletProcess) -> Duration {
    let want = primary_position(p);
    let t0 = Instant::now();
    wait_for(&format!("archive to reach {want}"), T, || async {
        Ok((archived_position(c) == want).then_some(()))
    })
    .await
    .unwrap();
    t0.elapsed()
}

/// Every stored segment read back; per source file, the segments concatenated
/// must be a valid binlog (CRC32 checked) with no hole; over the whole archive
/// the transactions' sequence numbers (domain 0) must go up by one, no gap, no
/// duplicate. Returns (segments, sequence numbers archived).
async fn check_archive(c: &Cluster) -> (Vec<SegmentName>, Vec<u64>) {
    let st = FileStorage::new(c.backup_root());
    let segs: Vec<SegmentName> = list_segments(&st, "ks", "0")
        .await
        .unwrap()
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert!(!segs.is_empty(), "no segment stored");
    assert_eq!(gaps(&segs), vec![], "holes between segments");
    let mut files: BTreeMap<(u64, u32, u64), Vec<u8>> = BTreeMap::new();
    let mut first_of_file: BTreeMap<(u32, u64), u64> = BTreeMap::new();
    let mut seqs = Vec::new();
    for s in &segs {
        let bytes = read_segment(&st, "ks", "0", s, None).await.unwrap();
        let order = *first_of_file
            .entry((s.server_id, s.file_index))
            .or_insert(s.number);
        let buf = files.entry((order, s.server_id, s.file_index)).or_default();
        if buf.is_empty() {
            assert_eq!(
                s.start,
                0,
                "{}: a file's first segment starts at 0",
                s.format()
            );
        }
        buf.extend_from_slice(&bytes);
    }
    for ((_, sid, idx), bytes) in &files {
        let sum = summarize(&bytes[..])
            .unwrap_or_else(|e| panic!("server {sid} file {idx} reassembled: {e}"));
        assert_eq!(
            sum.complete_len,
            bytes.len() as u64,
            "file {idx}: ends mid-transaction"
        );
        seqs.extend(
            sum.transactions
                .iter()
                .filter(|t| t.gtid.domain == 0)
                .map(|t| t.gtid.seq),
        );
    }
    for w in seqs.windows(2) {
        assert_eq!(w[1], w[0] + 1, "archived GTIDs not contiguous: {seqs:?}");
    }
    // The names say which transactions each segment holds.
    let named: Vec<u64> = segs
        .iter()
        .filter_map(|s| Some((s.first_gtid?.seq, s.last_gtid?.seq)))
        .flat_map(|(a, b)| a..=b)
        .collect();
    assert_eq!(named, seqs, "segment names disagree with their content");
    (segs, seqs)
}

#[tokio::test(flavor = "multi_thread")]
async fn archive_follows_writes_survives_a_killed_agent_and_stops_on_remove() {
    tokio::time::timeout(Duration::from_secs(300), async {
        let c = Cluster::start(env!("CARGO_BIN_EXE_cairn").into())
            .await
            .unwrap();
        let topo = c.topo().await.unwrap();

        // Bad input: exit 2, one line, nothing written.
        for (args, want) in [
            (
                vec!["archive", "set", "ks/0", "--interval", "500ms"],
                "shorter than the minimum of 1s",
            ),
            (vec!["archive", "set", "nope"], "no shards"),
            (vec!["archive", "set", "_bad/0"], "invalid"),
            (vec!["archive", "remove", "nope/0"], "not archived"),
        ] {
            let out = c.cli(&args).unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
            assert!(
                err.contains(want) && err.trim().lines().count() == 1,
                "{args:?}: {err}"
            );
        }

        let mut tablets = Vec::new();
        for uid in [100, 101] {
            tablets.push(c.spawn_tablet(&c.tablet(uid, "ks", "0").unwrap()).unwrap());
        }
        for t in tablets.iter_mut() {
            t.wait_healthy(&topo, T).await.unwrap();
        }
        c.cli_ok(&["init-shard-primary", "ks/0", &tablets[0].spec.alias()])
            .unwrap();
        tablets[0]
            .sql("CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v TEXT)")
            .unwrap();
        let coord = c
            .spawn_coordinator_env(
                "c1",
                &["--lost-health-grace", "2s"],
                &[("CAIRN_COORDINATOR_FULL_LIST_EVERY", "5s")],
            )
            .unwrap();
        coord.wait_leader(T).await.unwrap();
        // A full backup (the gap check below needs one: without, nothing is
        // recoverable).
        let full = c
            .cli_ok(&["backup", &tablets[1].spec.alias()])
            .unwrap()
            .trim()
            .to_string();
        assert!(!full.is_empty());
        tablets[1].wait_healthy(&topo, T).await.unwrap();
        c.cli_ok(&["archive", "set", "ks/0", "--interval", "1s"])
            .unwrap();

        // One job, on the replica.
        let job = wait_for("a running archive job", T, || async {
            Ok(archive_jobs(&c)
                .into_iter()
                .find(|j| j["state"] == "RUNNING"))
        })
        .await
        .unwrap();
        assert_eq!(job["tablet_alias"], tablets[1].spec.alias(), "{job}");
        for i in 1..=5 {
            tablets[0]
                .sql(&format!("INSERT INTO app.t VALUES ({i}, 'a')"))
                .unwrap();
        }
        let took = wait_archived(&c, &tablets[0]).await;
        println!("writes archived {took:?} after the last one (interval 1s)");
        let (_, seqs) = check_archive(&c).await;
        let primary_seq = parse_gtid_list(&primary_position(&tablets[0])).unwrap()[0].seq;
        assert_eq!(seqs.last(), Some(&primary_seq));

        // The coordinator lists only the segments newer than those it knows,
        // and all of them every 5 s here: a new segment is seen at once, a
        // deleted one (and one put back) at the next full listing.
        let t_list = Instant::now();
        let status = || -> Value {
            let (_, body) = coord.http_get("/api/v1/status").unwrap();
            serde_json::from_str::<Value>(&body).unwrap()["shards"][0].clone()
        };
        let to_before = wait_for("the recoverable window", T, || async {
            Ok(status()["recoverable_to"].as_str().map(String::from))
        })
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(1100)).await;
        tablets[0]
            .sql("INSERT INTO app.t VALUES (500, 'listed')")
            .unwrap();
        wait_archived(&c, &tablets[0]).await;
        wait_for("the new segment seen", T, || async {
            let to = status()["recoverable_to"].as_str().map(String::from);
            Ok(to.filter(|t| *t > to_before))
        })
        .await
        .unwrap();
        // Row 500's segment goes (one after it, so it is not the newest).
        let row500 = parse_gtid_list(&primary_position(&tablets[0])).unwrap()[0].seq;
        tablets[0]
            .sql("INSERT INTO app.t VALUES (501, 'listed')")
            .unwrap();
        wait_archived(&c, &tablets[0]).await;
        let st = FileStorage::new(c.backup_root());
        let segs: Vec<SegmentName> = list_segments(&st, "ks", "0")
            .await
            .unwrap()
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        let gone = segs
            .iter()
            .find(|s| {
                s.first_gtid.is_some_and(|g| g.seq <= row500)
                    && s.last_gtid.is_some_and(|g| g.seq >= row500)
            })
            .unwrap_or_else(|| panic!("no segment holds {row500}: {segs:?}"))
            .clone();
        assert!(gone.start > 0, "{gone:?}");
        assert_ne!(
            Some(&gone),
            segs.last(),
            "the archiver resumes from the newest"
        );
        let dir = c.backup_root().join(archive_dir("ks", "0"));
        let aside = c.backup_root().join("segment-aside");
        std::fs::rename(dir.join(gone.format()), &aside).unwrap();
        let gap = wait_for("the deleted segment seen", T, || async {
            Ok(status()["archive_gap"]["missing_gtids"]
                .as_str()
                .map(String::from))
        })
        .await
        .unwrap();
        assert!(gap.contains(&format!("-{row500}")), "{gap} {gone:?}");
        std::fs::rename(&aside, dir.join(gone.format())).unwrap();
        wait_for("the segment put back seen", T, || async {
            Ok(status()["archive_gap"].is_null().then_some(()))
        })
        .await
        .unwrap();
        println!("listing checks took {:?}", t_list.elapsed());

        // The loss window is reported while archived.
        let shard: Value =
            serde_json::from_str(&c.cli_ok(&["get-shard", "ks/0", "--json"]).unwrap()).unwrap();
        assert!(shard["loss_window_seconds"].is_number(), "{shard}");
        let metrics = wait_for("the loss window metric", T, || async {
            let (_, m) = coord.http_get("/metrics")?;
            Ok(m.contains("cairn_coordinator_archive_loss_window_seconds{")
                .then_some(m))
        })
        .await
        .unwrap();
        assert!(metrics.contains("keyspace=\"ks\""), "{metrics}");

        // kill -9 of the archiving agent while writes go on: the job moves (to the
        // primary, the only live tablet) and resumes with no gap, no duplicate.
        tablets[1].kill9();
        for i in 6..=15 {
            tablets[0]
                .sql(&format!("INSERT INTO app.t VALUES ({i}, 'b')"))
                .unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let moved = wait_for("the archive job placed again", T, || async {
            Ok(archive_jobs(&c)
                .into_iter()
                .find(|j| j["state"] == "RUNNING" && j["tablet_alias"] == tablets[0].spec.alias()))
        })
        .await
        .unwrap();
        assert_ne!(moved["id"], job["id"]);
        wait_archived(&c, &tablets[0]).await;
        let (_, seqs) = check_archive(&c).await;
        let primary_seq = parse_gtid_list(&primary_position(&tablets[0])).unwrap()[0].seq;
        assert_eq!(seqs.last(), Some(&primary_seq));
        assert!(seqs.len() >= 15, "{seqs:?}");

        // A failover: the restarted replica becomes primary; the job (on the old
        // primary) follows it and the archive goes on from the new primary's
        // binlog with no gap and no duplicate.
        let spec = tablets[1].spec.clone();
        // (Not dropped: that would kill the mysqld the killed agent left running.)
        std::mem::forget(std::mem::replace(
            &mut tablets[1],
            c.spawn_tablet(&spec).unwrap(),
        ));
        tablets[1].wait_healthy(&topo, T).await.unwrap();
        wait_for("the restarted replica caught up", T, || async {
            Ok((primary_position(&tablets[1]) == primary_position(&tablets[0])).then_some(()))
        })
        .await
        .unwrap();
        let st = FileStorage::new(c.backup_root());
        let old_sid = list_segments(&st, "ks", "0").await.unwrap()[0].0.server_id;
        c.cli_ok(&["init-shard-primary", "ks/0", &tablets[1].spec.alias()])
            .unwrap();
        // Writes on the new primary until the archive stores them from its binlog
        // (the old primary, now a replica, logs them too until the job moves on).
        let deadline = Instant::now() + T;
        let mut id = 16;
        loop {
            tablets[1]
                .sql(&format!("INSERT INTO app.t VALUES ({id}, 'c')"))
                .unwrap();
            id += 1;
            tokio::time::sleep(Duration::from_millis(300)).await;
            let segs = list_segments(&st, "ks", "0").await.unwrap();
            if segs
                .iter()
                .any(|(s, _)| s.server_id != old_sid && s.has_transactions())
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "nothing archived from the new primary"
            );
        }
        wait_archived(&c, &tablets[1]).await;
        let (before_remove, seqs) = check_archive(&c).await;
        let primary_seq = parse_gtid_list(&primary_position(&tablets[1])).unwrap()[0].seq;
        assert_eq!(seqs.last(), Some(&primary_seq));
        assert!(
            before_remove
                .iter()
                .any(|s| s.moved_head && s.server_id != old_sid),
            "the new primary's file starts with a moved head: {before_remove:?}"
        );

        // Binlogs purged on the primary before they were archived: the archive
        // cannot reach the primary (its replication account locked, the binlog
        // dumps killed), writes go on, the primary purges its binlogs: the
        // coordinator names the missing GTIDs at once, in status and the metric.
        let t_purge = Instant::now();
        let pr = &tablets[1];
        let users = pr
            .sql("SELECT CONCAT(\"'\", user, \"'@'%'\") FROM mysql.user WHERE host = '%'")
            .unwrap();
        let users: Vec<&str> = users.lines().filter(|l| !l.is_empty()).collect();
        assert!(!users.is_empty());
        for u in &users {
            pr.sql(&format!("ALTER USER {u} ACCOUNT LOCK")).unwrap();
        }
        let dumps = pr
            .sql("SELECT id FROM information_schema.processlist WHERE command LIKE 'Binlog Dump%'")
            .unwrap();
        for id in dumps.lines().filter(|l| !l.is_empty()) {
            let _ = pr.sql(&format!("KILL {id}"));
        }
        for i in 200..203 {
            pr.sql(&format!("INSERT INTO app.t VALUES ({i}, 'never archived')"))
                .unwrap();
        }
        pr.sql("FLUSH BINARY LOGS").unwrap();
        let newest = pr
            .sql("SHOW BINARY LOGS")
            .unwrap()
            .lines()
            .last()
            .and_then(|l| l.split('\t').next())
            .unwrap()
            .to_string();
        wait_for("the old binlogs purged", T, || async {
            // A dump thread reading an old file holds it: retried.
            let _ = pr.sql(&format!("PURGE BINARY LOGS TO '{newest}'"));
            let first = pr.sql("SHOW BINARY LOGS")?;
            Ok(first
                .lines()
                .next()
                .is_some_and(|l| l.starts_with(&newest))
                .then_some(()))
        })
        .await
        .unwrap();
        let purged_to = parse_gtid_list(&primary_position(pr)).unwrap()[0].seq;
        let gap = wait_for("the purge gap in status", T, || async {
            let (_, body) = coord.http_get("/api/v1/status")?;
            let v: Value = serde_json::from_str(&body)?;
            Ok(v["shards"][0]["archive_gap"]["gaps"]
                .as_array()
                .and_then(|gs| {
                    gs.iter()
                        .find(|g| {
                            g["detail"].as_str().is_some_and(|d| {
                                d.contains("purged on the primary before they were archived")
                            })
                        })
                        .cloned()
                }))
        })
        .await
        .unwrap();
        println!(
            "purge gap raised {:?} after the archive stopped",
            t_purge.elapsed()
        );
        let archived = parse_gtid_list(&archived_position(&c)).unwrap()[0].seq;
        assert!(archived < purged_to, "{archived} {purged_to}");
        assert_eq!(
            gap["missing_gtids"],
            format!("0-*-{}..0-*-{purged_to}", archived + 1),
            "{gap}"
        );
        let (_, m) = coord.http_get("/metrics").unwrap();
        assert!(
            m.contains("cairn_coordinator_archive_gap{keyspace=\"ks\",shard=\"0\"} 1"),
            "{m}"
        );
        for u in &users {
            pr.sql(&format!("ALTER USER {u} ACCOUNT UNLOCK")).unwrap();
        }
        // (The archive may have stored what arrived before the dumps were killed.)
        let before_remove = list_segments(&st, "ks", "0").await.unwrap();

        // remove: the job ends, nothing more is stored.
        c.cli_ok(&["archive", "remove", "ks/0"]).unwrap();
        wait_for("no live archive job", T, || async {
            Ok(archive_jobs(&c)
                .iter()
                .all(|j| j["state"] != "RUNNING" && j["state"] != "PENDING")
                .then_some(()))
        })
        .await
        .unwrap();
        tablets[1]
            .sql("INSERT INTO app.t VALUES (99, 'after')")
            .unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let after = list_segments(&st, "ks", "0").await.unwrap();
        assert_eq!(
            after.len(),
            before_remove.len(),
            "segments stored after remove"
        );
        let out = c.cli_ok(&["archive", "list", "--json"]).unwrap();
        assert_eq!(out.trim(), "[]");
        // list-backups never shows the archive.
        let root = c.backup_root().display().to_string();
        let backups = c
            .cli_ok(&[
                "list-backups",
                "ks/0",
                "--json",
                "--file-backup-storage-root",
                &root,
            ])
            .unwrap();
        let backups: Vec<Value> = serde_json::from_str(&backups).unwrap();
        assert_eq!(backups.len(), 1, "{backups:?}");
        assert_eq!(backups[0]["name"], full.as_str(), "{backups:?}");
        drop(coord);
    })
    .await
    .expect("test timed out");
}
