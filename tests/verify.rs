//! `cairn verify` against real etcd, MariaDB and `file` storage: a good backup
//! verifies; a flipped byte, a truncated object and a missing object are each a
//! FAILURE naming the object, exit 1; a chain of incrementals and archived
//! segments is OK, and a damaged or missing incremental or a missing segment is a
//! FAILURE naming the GTIDs it held, exit 1; the newest good backup older than
//! its schedule allows is a FAILURE, a paused schedule a WARNING. Verify never
//! writes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cairn::backup::binlog_archive::SegmentName;
use cairn::testkit::{wait_for, Cluster, TabletProcess};
use serde_json::Value;

const T: Duration = Duration::from_secs(180);

fn verify(c: &Cluster, extra: &[&str]) -> (i32, String) {
    let root = c.backup_root().display().to_string();
    let mut args = vec!["verify", "ks/0", "--file-backup-storage-root", &root];
    args.extend_from_slice(extra);
    let out = c.cli(&args).unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// Every file under `dir` with its bytes, to prove verify wrote nothing.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reports_corruption_missing_objects_and_stale_backups() {
    let c = Cluster::start(env!("CARGO_BIN_EXE_cairn").into())
        .await
        .expect("cluster");
    let topo = c.topo().await.unwrap();
    let mut p = c.spawn_tablet(&c.tablet(301, "ks", "0").unwrap()).unwrap();
    let mut r = c.spawn_tablet(&c.tablet(302, "ks", "0").unwrap()).unwrap();
    p.wait_healthy(&topo, T).await.unwrap();
    r.wait_healthy(&topo, T).await.unwrap();
    c.cli_ok(&["init-shard-primary", "ks/0", &p.spec.alias()])
        .unwrap();
    p.sql("CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v TEXT); INSERT INTO app.t SELECT seq, MD5(seq) FROM app.seq_1_to_2000")
        .unwrap();
    r.wait_value("SELECT COUNT(*) FROM app.t", "2000", T)
        .await
        .unwrap();
    let name = c
        .cli_ok(&["backup", &r.spec.alias()])
        .unwrap()
        .trim()
        .to_string();
    let dir = c.backup_root().join("ks/0").join(&name);

    // A good backup: OK, every object read.
    let (code, out) = verify(&c, &["--json"]);
    assert_eq!(code, 0, "{out}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["status"], "OK", "{out}");
    assert_eq!(report["backups"][0]["name"], name.as_str());
    assert!(
        report["backups"][0]["objects"].as_u64().unwrap() > 3,
        "{out}"
    );
    assert!(report["backups"][0]["bytes"].as_u64().unwrap() > 0, "{out}");

    // The biggest stored object, from the MANIFEST.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("MANIFEST")).unwrap()).unwrap();
    let entry = manifest["FileEntries"]
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|e| e["StoredSize"].as_u64().unwrap())
        .unwrap()
        .clone();
    let stored = entry["StoredName"].as_str().unwrap();
    let object = dir.join(stored);
    let good = std::fs::read(&object).unwrap();
    let named = format!("{name}/{stored}");

    // (how the object is damaged, a word the failure line holds)
    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x01;
    let damages: [(&str, Option<Vec<u8>>, &str); 3] = [
        ("flipped byte", Some(flipped), "MANIFEST says"),
        (
            "truncated",
            Some(good[..good.len() - 1].to_vec()),
            "bytes in storage",
        ),
        ("missing", None, "missing"),
    ];
    for (what, bytes, word) in damages {
        match &bytes {
            Some(b) => std::fs::write(&object, b).unwrap(),
            None => std::fs::remove_file(&object).unwrap(),
        }
        let before = snapshot(&c.backup_root());
        let (code, out) = verify(&c, &[]);
        assert_eq!(code, 1, "{what}: {out}");
        let line = out
            .lines()
            .find(|l| l.contains("FAILURE") && l.contains(word))
            .unwrap_or_else(|| panic!("{what}: no FAILURE line with {word:?}:\n{out}"));
        assert!(line.contains(stored), "{what}: {line}");
        assert!(
            out.contains("error: verify of ks/0: 1 failure(s)"),
            "{what}: {out}"
        );
        assert_eq!(snapshot(&c.backup_root()), before, "{what}: verify wrote");
        if what == "flipped byte" {
            let (_, json) = verify(&c, &["--json"]);
            let json = json
                .lines()
                .take_while(|l| !l.starts_with("error:"))
                .collect::<String>();
            let report: serde_json::Value = serde_json::from_str(&json).unwrap();
            assert_eq!(report["status"], "FAILURE");
            assert_eq!(
                report["backups"][0]["problems"][0]["object"],
                named.as_str()
            );
        }
        std::fs::write(&object, &good).unwrap();
    }
    assert_eq!(verify(&c, &[]).0, 0);

    chains(&c, &p, &r, &name).await;

    // Freshness: a schedule every second makes a backup a few seconds old stale.
    c.cli_ok(&[
        "schedule",
        "set",
        "often",
        "--cron",
        "* * * * * *",
        "--target",
        "ks/0",
    ])
    .unwrap();
    wait_for("verify to call the backup stale", T, || async {
        let (code, out) = verify(&c, &[]);
        Ok(
            (code == 1 && out.contains("newest good backup is") && out.contains("often"))
                .then_some(()),
        )
    })
    .await
    .unwrap();
    c.cli_ok(&["schedule", "pause", "often"]).unwrap();
    let (code, out) = verify(&c, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("WARNING") && out.contains("schedule often is paused"),
        "{out}"
    );

    // One backup by name (no age check); an unknown one is an error.
    let (code, out) = verify(&c, &["--backup", &name]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = verify(&c, &["--backup", "2020-01-01.000000.zone1-0000000302"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("no backup 2020-01-01.000000.zone1-0000000302"),
        "{out}"
    );
}

/// The sequence number (domain 0) of a MANIFEST position `MariaDB/0-x-N`.
fn seq(pos: &Value) -> u64 {
    let p = pos.as_str().unwrap().trim_start_matches("MariaDB/");
    p.split(',')
        .find(|g| g.starts_with("0-"))
        .and_then(|g| g.rsplit('-').next())
        .unwrap()
        .parse()
        .unwrap()
}

fn manifest(c: &Cluster, name: &str) -> Value {
    serde_json::from_slice(
        &std::fs::read(c.backup_root().join("ks/0").join(name).join("MANIFEST")).unwrap(),
    )
    .unwrap()
}

/// The JSON report of a verify, without the error line after it.
fn verify_json(c: &Cluster) -> (i32, Value) {
    let (code, out) = verify(c, &["--json"]);
    let json: String = out
        .lines()
        .take_while(|l| !l.starts_with("error:"))
        .collect::<Vec<_>>()
        .join("\n");
    (
        code,
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {out}")),
    )
}

/// Writes `n` rows on the primary and waits for the replica.
async fn rows(p: &TabletProcess, r: &TabletProcess, from: u32, n: u32) {
    for id in from..from + n {
        p.sql(&format!("INSERT INTO app.t VALUES ({id}, 'c')"))
            .unwrap();
    }
    let count = p.sql("SELECT COUNT(*) FROM app.t").unwrap();
    r.wait_value("SELECT COUNT(*) FROM app.t", count.trim(), T)
        .await
        .unwrap();
}

/// Chains: three incrementals on the replica after the full backup `full`, then
/// archived segments; a damaged incremental, a missing one and a missing segment
/// are each a FAILURE naming the GTIDs they held.
async fn chains(c: &Cluster, p: &TabletProcess, r: &TabletProcess, full: &str) {
    let mut incs = Vec::new();
    for i in 0..3 {
        rows(p, r, 10_000 + i * 10, 3).await;
        let out = c
            .cli_ok(&["backup", &r.spec.alias(), "--incremental-from-pos", "auto"])
            .unwrap();
        incs.push(out.trim().to_string());
    }
    let (code, report) = verify_json(c);
    assert_eq!(code, 0, "{report}");
    let chain = &report["chains"][0];
    assert_eq!(chain["full"], full, "{report}");
    assert_eq!(chain["status"], "OK", "{report}");
    let i3 = manifest(c, &incs[2]);
    assert_eq!(
        chain["reaches"],
        format!("0-*-{}", seq(&i3["Position"])).as_str(),
        "{report}"
    );

    // The middle incremental damaged (a binlog file gone), then missing whole.
    let (i1, i2) = (manifest(c, &incs[0]), manifest(c, &incs[1]));
    let hole = format!(
        "0-*-{}..0-*-{}",
        seq(&i1["Position"]) + 1,
        seq(&i2["Position"])
    );
    let dir = c.backup_root().join("ks/0").join(&incs[1]);
    let stored = i2["FileEntries"][0]["StoredName"].as_str().unwrap();
    let object = dir.join(stored);
    let good = std::fs::read(&object).unwrap();
    std::fs::remove_file(&object).unwrap();
    let (code, out) = verify(c, &[]);
    assert_eq!(code, 1, "{out}");
    let line = out
        .lines()
        .find(|l| l.contains("FAILURE") && l.contains(&format!("chain from {full}: GTIDs")))
        .unwrap_or_else(|| panic!("no chain FAILURE:\n{out}"));
    assert!(line.contains(&hole), "{hole}: {line}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("FAILURE") && l.contains(&format!("chain from {full}  reaches"))),
        "{out}"
    );
    assert!(
        line.contains(&format!(
            "incremental {} held {hole} but is damaged",
            incs[1]
        )),
        "{line}"
    );
    assert!(line.contains(stored), "{line}");
    std::fs::write(&object, &good).unwrap();
    let stash = c.backup_root().with_extension("stash");
    std::fs::rename(&dir, &stash).unwrap();
    let (code, out) = verify(c, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.lines().any(|l| l.contains("FAILURE")
            && l.contains(&format!("GTIDs {hole} are in no good incremental backup"))),
        "{hole}:\n{out}"
    );
    std::fs::rename(&stash, &dir).unwrap();
    assert_eq!(verify(c, &[]).0, 0);

    // Archived segments continue the chain: three batches, each archived before
    // the next, so each is in segments of its own.
    let coord = c.spawn_coordinator("c1", &[]).unwrap();
    coord.wait_leader(T).await.unwrap();
    c.cli_ok(&["archive", "set", "ks/0", "--interval", "1s"])
        .unwrap();
    for i in 0..3 {
        rows(p, r, 20_000 + i * 10, 2).await;
        let want = p
            .sql("SELECT @@gtid_binlog_pos")
            .unwrap()
            .trim()
            .to_string();
        wait_for("the archive to catch up", T, || async {
            let out = c.cli_ok(&["get-shard", "ks/0", "--json"])?;
            let v: Value = serde_json::from_str(&out)?;
            Ok((v["archive"]["position"] == want.as_str()).then_some(()))
        })
        .await
        .unwrap();
    }
    let (code, report) = verify_json(c);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["chains"][0]["status"], "OK", "{report}");
    assert!(
        report["archive"]["segments"].as_u64().unwrap() >= 3,
        "{report}"
    );
    let end = report["chains"][0]["end"].as_str().unwrap().to_string();
    assert!(end.starts_with("0-"), "{report}");
    let reaches = report["chains"][0]["reaches"].as_str().unwrap();
    assert_eq!(
        reaches.rsplit('-').next(),
        end.rsplit('-').next(),
        "{report}"
    );
    assert!(
        seq(&Value::from(end.as_str())) > seq(&i3["Position"]),
        "{report}"
    );

    // A segment with transactions, neither the first nor the last, deleted.
    let seg_dir = c.backup_root().join("_binlog/ks/0");
    let mut segs: Vec<SegmentName> = std::fs::read_dir(&seg_dir)
        .unwrap()
        .filter_map(|e| SegmentName::parse(&e.unwrap().file_name().to_string_lossy()).ok())
        .filter(|s| s.has_transactions())
        .collect();
    segs.sort_by_key(|s| s.number);
    assert!(segs.len() >= 3, "{segs:?}");
    let victim = segs[segs.len() - 2].clone();
    let (a, b) = (
        victim.first_gtid.unwrap().seq,
        victim.last_gtid.unwrap().seq,
    );
    let hole = if a == b {
        format!("GTIDs 0-*-{a} are")
    } else {
        format!("GTIDs 0-*-{a}..0-*-{b} are")
    };
    let path = seg_dir.join(victim.format());
    let bytes = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let (code, out) = verify(c, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.lines().any(|l| l.contains("FAILURE")
            && l.contains(&format!("chain from {full}"))
            && l.contains(&hole)),
        "{hole}:\n{out}"
    );
    assert!(
        out.lines().any(|l| l.contains("FAILURE")
            && l.contains(&format!("bytes {}..{}", victim.start, victim.end))),
        "{out}"
    );
    // Damaged instead of missing: named.
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let (code, out) = verify(c, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.lines().any(|l| l.contains("FAILURE")
            && l.contains(&format!("segment {}", victim.format()))
            && l.contains("held")),
        "{out}"
    );
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(verify(c, &[]).0, 0);

    // The archive stops; the coordinator goes (the schedule below must not run).
    c.cli_ok(&["archive", "remove", "ks/0"]).unwrap();
    wait_for("the archive job to end", T, || async {
        let jobs: Vec<Value> = serde_json::from_str(&c.cli_ok(&["jobs", "--json"])?)?;
        Ok((!jobs
            .iter()
            .any(|j| j["kind"] == "ARCHIVE" && j["state"] == "RUNNING"))
        .then_some(()))
    })
    .await
    .unwrap();
    drop(coord);
}

/// Segment compaction (issue 10 item 3): with `CAIRN_ARCHIVE_COMPACT_AFTER`
/// short, the archiving agent merges the shard's old small segments; the
/// object count falls and verify still finds every transaction after the full
/// backup, in segments that read back whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacted_segments_hold_every_transaction_in_fewer_objects() {
    let c = Cluster::start(env!("CARGO_BIN_EXE_cairn").into())
        .await
        .expect("cluster");
    let topo = c.topo().await.unwrap();
    let env = vec![("CAIRN_ARCHIVE_COMPACT_AFTER".to_string(), "8s".to_string())];
    let mut specs = [
        c.tablet(321, "ks", "0").unwrap(),
        c.tablet(322, "ks", "0").unwrap(),
    ];
    for s in specs.iter_mut() {
        s.env = env.clone();
    }
    let mut p = c.spawn_tablet(&specs[0]).unwrap();
    let mut r = c.spawn_tablet(&specs[1]).unwrap();
    p.wait_healthy(&topo, T).await.unwrap();
    r.wait_healthy(&topo, T).await.unwrap();
    c.cli_ok(&["init-shard-primary", "ks/0", &p.spec.alias()])
        .unwrap();
    p.sql("CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v TEXT)")
        .unwrap();
    rows(&p, &r, 1, 2).await;
    let full = c
        .cli_ok(&["backup", &r.spec.alias()])
        .unwrap()
        .trim()
        .to_string();
    let coord = c.spawn_coordinator("c1", &[]).unwrap();
    coord.wait_leader(T).await.unwrap();
    c.cli_ok(&["archive", "set", "ks/0", "--interval", "1s"])
        .unwrap();
    let seg_dir = c.backup_root().join("_binlog/ks/0");
    let count = || {
        std::fs::read_dir(&seg_dir)
            .map(|d| {
                d.filter(|e| {
                    e.as_ref()
                        .is_ok_and(|e| SegmentName::parse(&e.file_name().to_string_lossy()).is_ok())
                })
                .count()
            })
            .unwrap_or(0)
    };
    // Batches, each archived before the next: a segment each.
    let mut want = String::new();
    for i in 0..5 {
        rows(&p, &r, 100 + i * 10, 2).await;
        want = p
            .sql("SELECT @@gtid_binlog_pos")
            .unwrap()
            .trim()
            .to_string();
        wait_for("the archive to catch up", T, || async {
            let out = c.cli_ok(&["get-shard", "ks/0", "--json"])?;
            let v: Value = serde_json::from_str(&out)?;
            Ok((v["archive"]["position"] == want.as_str()).then_some(()))
        })
        .await
        .unwrap();
    }
    let before = count();
    assert!(before >= 4, "{before} segments");
    let t0 = std::time::Instant::now();
    let after = wait_for("old segments merged", T, || async {
        let n = count();
        Ok((n <= 2).then_some(n))
    })
    .await
    .unwrap();
    println!("{before} segments became {after} in {:?}", t0.elapsed());
    // The archive record says so (the coordinator then lists the segments in
    // full again).
    let key = topo.keys().archive("ks", "0");
    wait_for("the compaction in the archive record", T, || async {
        let rec = topo.get::<cairn_topo::ArchiveRecord>(&key).await?;
        Ok(rec.and_then(|r| r.value.state.compacted_at))
    })
    .await
    .unwrap();

    // Every transaction after the full backup is still there, in segments that
    // read back whole.
    let (code, report) = verify_json(&c);
    assert_eq!(code, 0, "{report}");
    let chain = &report["chains"][0];
    assert_eq!(chain["full"], full.as_str(), "{report}");
    assert_eq!(chain["status"], "OK", "{report}");
    assert_eq!(chain["end"], want.as_str(), "{report}");
    assert_eq!(report["archive"]["status"], "OK", "{report}");
    assert_eq!(
        report["archive"]["segments"].as_u64(),
        Some(after as u64),
        "{report}"
    );
    // And archiving goes on after the merge.
    rows(&p, &r, 1000, 1).await;
    let more = p
        .sql("SELECT @@gtid_binlog_pos")
        .unwrap()
        .trim()
        .to_string();
    wait_for("the archive to go on", T, || async {
        let out = c.cli_ok(&["get-shard", "ks/0", "--json"])?;
        let v: Value = serde_json::from_str(&out)?;
        Ok((v["archive"]["position"] == more.as_str()).then_some(()))
    })
    .await
    .unwrap();
    let (code, report) = verify_json(&c);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["chains"][0]["end"], more.as_str(), "{report}");
    drop(coord);
}
