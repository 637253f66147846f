//! `cairn verify` against real etcd, MariaDB and `file` storage: a good backup
//! verifies; a flipped byte, a truncated object and a missing object are each a
//! FAILURE naming the object, exit 1; the newest good backup older than its
//! schedule allows is a FAILURE, a paused schedule a WARNING. Verify never writes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cairn::testkit::{wait_for, Cluster};

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
