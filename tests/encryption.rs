//! Encryption at rest against real etcd, MariaDB and the reference `age` tool:
//! encrypted backups are age files any recipient's identity opens by hand;
//! restores with the right identity work, with none or a wrong one fail before
//! anything is touched and name the recipients needed; each of two recipients
//! restores alone; unusable encryption flags refuse to start (exit 2); the
//! coordinator's etcd snapshots are encrypted too.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use cairn::testkit::{wait_for, Cluster, TabletProcess};
use cairn_topo::Topo;
use serde_json::Value;
use sha2::{Digest, Sha256};

const T: Duration = Duration::from_secs(120);
const AGE_MAGIC: &[u8] = b"age-encryption.org/v1\n";

async fn cluster() -> Cluster {
    Cluster::start(env!("CARGO_BIN_EXE_cairn").into())
        .await
        .expect("cluster")
}

/// A key pair made by the real `age-keygen`: (identity file, public key).
fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(name);
    let out = Command::new("age-keygen")
        .arg("-o")
        .arg(&path)
        .output()
        .expect("running age-keygen (install the age package)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&path).unwrap();
    let public = text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .expect("age-keygen writes the public key")
        .to_string();
    (path, public)
}

/// Runs `sh -c SCRIPT`; returns stdout, or panics with stderr.
fn sh(script: &str) -> Vec<u8> {
    let out = Command::new("sh")
        .args(["-c", script])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A primary (uid) and a replica (uid+1, with `replica_flags`) of `ks/0` with
/// 2,000 rows.
async fn shard(
    c: &Cluster,
    topo: &Topo,
    uid: u32,
    replica_flags: &[String],
) -> (TabletProcess, TabletProcess) {
    c.primary_and_replica(topo, ("ks", "0"), uid, replica_flags, 2000, T)
        .await
        .unwrap()
}

fn manifest(c: &Cluster, name: &str) -> Value {
    let path = c.backup_root().join("ks/0").join(name).join("MANIFEST");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Starts a tablet restoring at start with `flags`; returns it once it exited
/// (with its log) or became healthy.
async fn seed(
    c: &Cluster,
    topo: &Topo,
    uid: u32,
    flags: &[String],
) -> Result<TabletProcess, String> {
    let mut spec = c.tablet(uid, "ks", "0").unwrap();
    spec.extra = vec!["--restore-from-backup".to_string()];
    spec.extra.extend_from_slice(flags);
    let mut t = c.spawn_tablet(&spec).unwrap();
    let started = tokio::time::Instant::now();
    loop {
        if let Some(status) = t.try_exit() {
            return Err(format!("exited {status}: {}", t.log_tail(20)));
        }
        if t.wait_healthy(topo, Duration::from_millis(500))
            .await
            .is_ok()
        {
            return Ok(t);
        }
        assert!(
            started.elapsed() < T,
            "tablet {uid} neither served nor failed: {}",
            t.log_tail(30)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn encrypted_backups_are_age_files_and_restore_only_with_a_recipients_identity() {
    tokio::time::timeout(Duration::from_secs(600), async {
        let c = cluster().await;
        let topo = c.topo().await.unwrap();
        let keys = tempfile::tempdir().unwrap();
        let (key_a, pub_a) = keygen(keys.path(), "a.key");
        let (key_b, pub_b) = keygen(keys.path(), "b.key");
        let (key_c, _) = keygen(keys.path(), "c.key");
        // A second recipient comes from a recipients file (key rotation).
        let recipients_file = keys.path().join("recipients.txt");
        std::fs::write(&recipients_file, format!("# the new key\n{pub_b}\n")).unwrap();
        let flags = vec![
            "--backup-encryption-recipient".to_string(),
            pub_a.clone(),
            "--backup-encryption-recipients-file".to_string(),
            recipients_file.display().to_string(),
        ];
        let (p, r) = shard(&c, &topo, 300, &flags).await;
        // A file of ours in the data directory: its bytes must come back exactly.
        let probe: Vec<u8> = (0..200_000u32).map(|i| (i * 31 % 251) as u8).collect();
        std::fs::write(r.spec.dir.join("data/app/probe.bin"), &probe).unwrap();

        let name = c
            .cli_ok(&["backup", &r.spec.alias()])
            .unwrap()
            .trim()
            .to_string();
        let m = manifest(&c, &name);
        assert_eq!(m["Encryption"], "age", "{m}");
        assert_eq!(m["EncryptionRecipients"], serde_json::json!([pub_a, pub_b]));
        assert_eq!(m["FormatVersion"], 2);
        let root = c.backup_root().display().to_string();
        let listed: Vec<Value> = serde_json::from_str(
            &c.cli_ok(&[
                "list-backups",
                "ks/0",
                "--json",
                "--file-backup-storage-root",
                &root,
            ])
            .unwrap(),
        )
        .unwrap();
        assert_eq!(listed[0]["encryption"], "age", "{listed:?}");
        assert_eq!(listed[0]["complete"], true, "{listed:?}");
        let dir = c.backup_root().join("ks/0").join(&name);
        let entries = m["FileEntries"].as_array().unwrap();
        assert!(entries.len() > 10, "{m}");
        for e in entries {
            let stored = std::fs::read(dir.join(e["StoredName"].as_str().unwrap())).unwrap();
            assert!(
                stored.starts_with(AGE_MAGIC),
                "{} is not an age file",
                e["Name"]
            );
            // The hash is over the stored bytes: verifying needs no key.
            assert_eq!(e["HashAlgorithm"], "blake3", "{e}");
            assert_eq!(
                blake3::hash(&stored).to_hex().to_string(),
                e["Hash"].as_str().unwrap()
            );
            assert_eq!(stored.len() as u64, e["StoredSize"].as_u64().unwrap());
        }
        let entry = entries
            .iter()
            .find(|e| e["Name"] == "app/probe.bin")
            .unwrap();
        let stored = dir.join(entry["StoredName"].as_str().unwrap());
        // Either recipient's identity opens it with the reference tool.
        for key in [&key_a, &key_b] {
            let plain = sh(&format!(
                "age -d -i {} {} | zstd -d",
                key.display(),
                stored.display()
            ));
            assert!(
                plain == probe,
                "age -d | zstd -d did not give the original bytes"
            );
        }
        let wrong = Command::new("age")
            .arg("-d")
            .arg("-i")
            .arg(&key_c)
            .arg(&stored)
            .output()
            .unwrap();
        assert!(!wrong.status.success(), "a third key decrypted the backup");

        // No identity, or a wrong one: refused before anything is touched, naming
        // the recipients needed.
        let no_id = seed(&c, &topo, 310, &[])
            .await
            .err()
            .expect("restored without a key");
        assert!(
            no_id.contains("needs --backup-encryption-identity-file"),
            "{no_id}"
        );
        let wrong_id = seed(
            &c,
            &topo,
            311,
            &[
                "--backup-encryption-identity-file".into(),
                key_c.display().to_string(),
            ],
        )
        .await
        .err()
        .expect("restored with a wrong key");
        assert!(wrong_id.contains("none of the identities"), "{wrong_id}");
        for (uid, log) in [(310, &no_id), (311, &wrong_id)] {
            assert!(log.contains(&pub_a) && log.contains(&pub_b), "{log}");
            let d = c.tablet(uid, "ks", "0").unwrap().dir;
            for left in ["restore_in_progress", "staging", "data"] {
                assert!(!d.join(left).exists(), "tablet {uid} touched {left}");
            }
        }

        // Each recipient's identity alone restores every row and our file.
        for (uid, key) in [(312, &key_a), (313, &key_b)] {
            let t = seed(
                &c,
                &topo,
                uid,
                &[
                    "--backup-encryption-identity-file".into(),
                    key.display().to_string(),
                ],
            )
            .await
            .unwrap_or_else(|e| panic!("tablet {uid}: {e}"));
            t.wait_rows(2000, T).await.unwrap();
            assert!(std::fs::read(t.spec.dir.join("data/app/probe.bin")).unwrap() == probe);
            if uid == 313 {
                // In place too, on a tablet with an identity: our file comes back.
                std::fs::remove_file(t.spec.dir.join("data/app/probe.bin")).unwrap();
                c.cli_ok(&["restore-from-backup", &t.spec.alias()])
                    .unwrap_or_else(|e| panic!("{e}: {}", t.log_tail(20)));
                t.wait_rows(2000, T).await.unwrap();
                assert!(std::fs::read(t.spec.dir.join("data/app/probe.bin")).unwrap() == probe);
            }
        }

        // An in-place restore on a tablet without an identity fails before the
        // tablet stops serving: it keeps its data and replicates on.
        let out = c.cli(&["restore-from-backup", &r.spec.alias()]).unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains("needs --backup-encryption-identity-file"),
            "{err}"
        );
        assert!(err.contains(&pub_a) && err.contains(&pub_b), "{err}");
        p.sql("INSERT INTO app.t VALUES (9001, 'after the refused restore')")
            .unwrap();
        r.wait_rows(2001, T).await.unwrap();
        assert!(!r.spec.dir.join("staging").exists());

        // The xtrabackup engine: its one stream is an age file too, and a tablet
        // with an identity seeds from it.
        let xb = c
            .cli_ok(&["backup", &r.spec.alias(), "--backup-engine", "xtrabackup"])
            .unwrap()
            .trim()
            .to_string();
        let m = manifest(&c, &xb);
        assert_eq!(m["Encryption"], "age", "{m}");
        let entries = m["FileEntries"].as_array().unwrap();
        assert_eq!(entries.len(), 1, "{m}");
        let stream = c
            .backup_root()
            .join("ks/0")
            .join(&xb)
            .join(entries[0]["StoredName"].as_str().unwrap());
        assert!(std::fs::read(&stream).unwrap().starts_with(AGE_MAGIC));
        let t = seed(
            &c,
            &topo,
            314,
            &[
                "--backup-encryption-identity-file".into(),
                key_b.display().to_string(),
            ],
        )
        .await
        .unwrap_or_else(|e| panic!("xtrabackup seed: {e}"));
        let log = t.log();
        assert!(
            log.contains(&xb) && log.contains("engine=xtrabackup"),
            "it did not restore the xtrabackup backup: {}",
            t.log_tail(20)
        );
        t.wait_rows(2001, T).await.unwrap();
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread")]
async fn unusable_encryption_flags_refuse_to_start() {
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = keygen(keys.path(), "a.key");
    let secret = std::fs::read_to_string(&key)
        .unwrap()
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-1"))
        .unwrap()
        .to_string();
    // An identity file whose key is damaged: the error must not quote it.
    let damaged = keys.path().join("damaged.key");
    // (The last character changed to another, so the checksum fails; a fixed
    // 'X' left the key whole whenever it already ended in X, 1 run in 32.)
    let last = if secret.ends_with('X') { 'Q' } else { 'X' };
    std::fs::write(&damaged, format!("{}{last}\n", &secret[..secret.len() - 1])).unwrap();
    let garbage = keys.path().join("garbage.txt");
    std::fs::write(&garbage, "not a key\n").unwrap();
    let empty = keys.path().join("empty.txt");
    std::fs::write(&empty, "# nobody yet\n").unwrap();
    let missing = keys.path().join("missing.txt");
    let p = |p: &Path| p.display().to_string();
    let tablet_dir = keys.path().join("tablet");
    let tablet = |extra: &[String]| {
        let mut v: Vec<String> = [
            "tablet",
            "--tablet-uid",
            "1",
            "--init-keyspace",
            "ks",
            "--init-shard",
            "0",
            "--mysql-port",
            "1",
            "--tablet-dir",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.push(p(&tablet_dir));
        v.extend_from_slice(extra);
        v
    };
    let coordinator = |extra: &[String]| {
        let mut v: Vec<String> = ["coordinator", "--file-backup-storage-root"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.push(p(&keys.path().join("backups")));
        v.extend_from_slice(extra);
        v
    };
    let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    // (command line, what the one error line names)
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            tablet(&s(&["--backup-encryption-recipient", "ssh-ed25519 AAAA"])),
            "--backup-encryption-recipient",
        ),
        (
            tablet(&s(&["-backup_encryption_recipient=age1nope"])),
            "--backup-encryption-recipient",
        ),
        (
            tablet(&s(&[
                "--backup-encryption-recipient",
                &key.display().to_string(),
            ])),
            "--backup-encryption-recipient",
        ),
        (
            tablet(&s(&["--backup-encryption-recipients-file", &p(&garbage)])),
            "--backup-encryption-recipients-file",
        ),
        (
            tablet(&s(&["--backup-encryption-recipients-file", &p(&empty)])),
            "--backup-encryption-recipients-file",
        ),
        (
            tablet(&s(&["--backup-encryption-recipients-file", &p(&missing)])),
            "--backup-encryption-recipients-file",
        ),
        (
            tablet(&s(&[
                "--backup-encryption-recipient",
                &public,
                "--backup-encryption-identity-file",
                &p(&missing),
            ])),
            "--backup-encryption-identity-file",
        ),
        (
            tablet(&s(&["--backup-encryption-identity-file", &p(&garbage)])),
            "--backup-encryption-identity-file",
        ),
        (
            tablet(&s(&["--backup-encryption-identity-file", &p(&damaged)])),
            "--backup-encryption-identity-file",
        ),
        (
            coordinator(&s(&["--backup-encryption-recipients-file", &p(&garbage)])),
            "--backup-encryption-recipients-file",
        ),
        (
            coordinator(&s(&["--backup_encryption_recipient", "age1nope"])),
            "--backup-encryption-recipient",
        ),
    ];
    for (args, flag) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(&args)
            // Nothing may reach etcd: a port nobody listens on.
            .args(["--topo-server", "127.0.0.1:1"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(flag), "{args:?}: {err}");
        assert!(!err.contains(&secret[20..]), "a secret in the error: {err}");
        assert!(!tablet_dir.exists(), "{args:?} created the tablet dir");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_coordinators_etcd_snapshots_are_encrypted() {
    tokio::time::timeout(T, async {
        let c = cluster().await;
        let keys = tempfile::tempdir().unwrap();
        let (key, public) = keygen(keys.path(), "a.key");
        let recipients = keys.path().join("recipients.txt");
        std::fs::write(&recipients, format!("{public}\n")).unwrap();
        let co = c
            .spawn_coordinator(
                "c1",
                &[
                    "--topo-snapshot-cron",
                    "* * * * * *",
                    "--backup-encryption-recipients-file",
                    recipients.to_str().unwrap(),
                ],
            )
            .unwrap();
        let topo_dir = c.backup_root().join("_topo");
        let name = wait_for("an encrypted snapshot with its sidecar", T, || async {
            let Ok(rd) = std::fs::read_dir(&topo_dir) else {
                return Ok(None);
            };
            let names: Vec<String> = rd
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            Ok(names
                .iter()
                .find(|n| n.ends_with(".db.age") && names.contains(&format!("{n}.json")))
                .cloned())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}: {}", co.log_tail(20)));
        drop(co);
        for e in std::fs::read_dir(&topo_dir).unwrap() {
            let n = e.unwrap().file_name().to_string_lossy().into_owned();
            assert!(
                n.contains(".db.age"),
                "a plaintext snapshot was stored: {n}"
            );
        }
        let blob = topo_dir.join(&name);
        let stored = std::fs::read(&blob).unwrap();
        assert!(stored.starts_with(AGE_MAGIC));
        let sidecar: Value =
            serde_json::from_slice(&std::fs::read(topo_dir.join(format!("{name}.json"))).unwrap())
                .unwrap();
        assert_eq!(sidecar["encryption"], "age");
        assert_eq!(
            sidecar["encryption_recipients"],
            serde_json::json!([public])
        );
        assert_eq!(sidecar["sha256"], hex::encode(Sha256::digest(&stored)));
        assert_eq!(sidecar["size_bytes"], stored.len() as u64);
        // `age -d` gives etcd's snapshot, which etcdctl accepts.
        let db = keys.path().join("etcd.db");
        sh(&format!(
            "age -d -i {} -o {} {}",
            key.display(),
            db.display(),
            blob.display()
        ));
        let plain = std::fs::read(&db).unwrap();
        assert_eq!(sidecar["db_sha256"], hex::encode(Sha256::digest(&plain)));
        assert_eq!(sidecar["db_size_bytes"], plain.len() as u64);
        let status = sh(&format!(
            "ETCDCTL_API=3 etcdctl snapshot status {} -w json",
            db.display()
        ));
        let status: Value = serde_json::from_slice(&status).unwrap();
        assert!(status["revision"].as_i64().unwrap() > 0, "{status}");
    })
    .await
    .expect("test timed out");
}
