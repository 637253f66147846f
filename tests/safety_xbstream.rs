//! Containment of an xtrabackup restore, against real etcd, MariaDB and mbstream: a
//! stored xbstream whose entries point outside the staging directory (hashes and
//! MANIFEST made consistent, as an attacker with write access to storage would) is
//! refused with a clear error, nothing lands outside, and the tablet keeps serving its
//! own data.

use std::path::Path;
use std::time::Duration;

use cairn::testkit::Cluster;
use sha2::{Digest, Sha256};

const T: Duration = Duration::from_secs(120);

/// CRC-32 (ISO 3309), the checksum mbstream verifies.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for b in data {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// One file in xbstream form: a payload chunk and its end-of-file chunk.
fn xb_file(path: &str, data: &[u8]) -> Vec<u8> {
    let head = |kind: u8| {
        let mut v = b"XBSTCK01".to_vec();
        v.push(0);
        v.push(kind);
        v.extend_from_slice(&(path.len() as u32).to_le_bytes());
        v.extend_from_slice(path.as_bytes());
        v
    };
    let mut v = head(b'P');
    v.extend_from_slice(&(data.len() as u64).to_le_bytes());
    v.extend_from_slice(&0u64.to_le_bytes());
    v.extend_from_slice(&crc32(data).to_le_bytes());
    v.extend_from_slice(data);
    v.extend(head(b'E'));
    v
}

/// Whether a file named `name` exists anywhere under `dir`.
fn found_under(dir: &Path, name: &str) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        e.file_name() == name
            || (e.file_type().is_ok_and(|t| t.is_dir()) && found_under(&e.path(), name))
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crafted_xbstream_is_refused_and_nothing_lands_outside_staging() {
    tokio::time::timeout(Duration::from_secs(300), async {
        let c = Cluster::start(env!("CARGO_BIN_EXE_cairn").into())
            .await
            .expect("cluster");
        let topo = c.topo().await.unwrap();
        let specs = [
            c.tablet(800, "ks", "0").unwrap(),
            c.tablet(801, "ks", "0").unwrap(),
        ];
        let mut p = c.spawn_tablet(&specs[0]).unwrap();
        let mut r = c.spawn_tablet(&specs[1]).unwrap();
        p.wait_healthy(&topo, T).await.unwrap();
        r.wait_healthy(&topo, T).await.unwrap();
        c.cli_ok(&["init-shard-primary", "ks/0", &specs[0].alias()])
            .unwrap();
        p.sql(
            "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v TEXT); \
             INSERT INTO app.t SELECT seq, MD5(seq) FROM app.seq_1_to_500",
        )
        .unwrap();
        r.wait_rows(500, T).await.unwrap();

        let name = c
            .cli_ok(&["backup", &r.spec.alias(), "--backup-engine", "xtrabackup"])
            .unwrap()
            .trim()
            .to_string();
        let dir = c.backup_root().join("ks").join("0").join(&name);

        // Replace the stream with a crafted one and make the MANIFEST agree with it.
        let crafted = [
            xb_file("ibdata1", b"harmless"),
            xb_file("../escaped-by-backup", b"written outside staging"),
        ]
        .concat();
        let mpath = dir.join("MANIFEST");
        let mut m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&mpath).unwrap()).unwrap();
        let entries = m["FileEntries"].as_array_mut().unwrap();
        assert_eq!(entries.len(), 1, "{entries:?}");
        let stored = zstd::encode_all(&crafted[..], 3).unwrap();
        let e = &mut entries[0];
        std::fs::write(dir.join(e["StoredName"].as_str().unwrap()), &stored).unwrap();
        e["Size"] = crafted.len().into();
        e["StoredSize"] = stored.len().into();
        e["Hash"] = hex::encode(Sha256::digest(&stored)).into();
        m["TotalSize"] = crafted.len().into();
        m["StoredSize"] = stored.len().into();
        std::fs::write(&mpath, serde_json::to_vec_pretty(&m).unwrap()).unwrap();

        p.sql("INSERT INTO app.t VALUES (9001, 'newer than the backup')")
            .unwrap();
        r.wait_rows(501, T).await.unwrap();

        let out = c.cli(&["restore-from-backup", &r.spec.alias()]).unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}\n{}", r.log_tail(20));
        assert!(
            err.contains("refusing the xbstream") && err.contains("contains .."),
            "{err}"
        );
        let cluster_dir = specs[1].dir.parent().unwrap();
        assert!(
            !found_under(cluster_dir, "escaped-by-backup"),
            "a file from the backup landed outside staging"
        );
        // Still serving its own (newer) data, replicating.
        r.wait_rows(501, T).await.unwrap();
        p.sql("INSERT INTO app.t VALUES (9002, 'after the refused restore')")
            .unwrap();
        r.wait_rows(502, T).await.unwrap();
    })
    .await
    .expect("test timed out");
}
