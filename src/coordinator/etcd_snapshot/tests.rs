//! Unit tests of the snapshot stream's verification and the naming and pruning of snapshot blobs.

use super::*;

/// A fake stream: `db` then its sha256, cut into chunks of `step` with etcd's
/// `remaining_bytes` (the hash message says 0).
fn stream(db: &[u8], step: usize) -> Vec<(Vec<u8>, u64)> {
    let mut out = Vec::new();
    let mut sent = 0;
    for c in db.chunks(step) {
        sent += c.len();
        out.push((c.to_vec(), (db.len() - sent) as u64));
    }
    out.push((Sha256::digest(db).to_vec(), 0));
    out
}

fn verify(msgs: &[(Vec<u8>, u64)]) -> Result<(u64, String), SnapshotError> {
    let mut v = Verifier::default();
    for (c, r) in msgs {
        v.push(c, *r);
    }
    v.finish()
}

#[test]
fn good_streams_verify_whatever_the_chunking() {
    let db: Vec<u8> = (0..20_480u32).map(|i| (i * 7 % 251) as u8).collect();
    for step in [1, 7, 31, 32, 33, 4096, 100_000] {
        let msgs = stream(&db, step);
        let (size, sha) = verify(&msgs).unwrap();
        assert_eq!(size, db.len() as u64 + 32, "step {step}");
        let mut whole = db.clone();
        whole.extend_from_slice(&Sha256::digest(&db));
        assert_eq!(sha, hex::encode(Sha256::digest(&whole)));
    }
    // The hash may arrive glued to the last data chunk, or split.
    let mut whole = db.clone();
    whole.extend_from_slice(&Sha256::digest(&db));
    let msgs: Vec<(Vec<u8>, u64)> = whole
        .chunks(5000)
        .scan(whole.len(), |left, c| {
            *left -= c.len();
            Some((c.to_vec(), left.saturating_sub(32) as u64))
        })
        .collect();
    assert!(verify(&msgs).is_ok());
}

#[test]
fn corruption_is_found() {
    let db = vec![42u8; 8192];
    let mut msgs = stream(&db, 1000);
    msgs[3].0[10] ^= 1;
    match verify(&msgs) {
        Err(SnapshotError::HashMismatch { size, .. }) => assert_eq!(size, 8192),
        other => panic!("{other:?}"),
    }
    let mut msgs = stream(&db, 1000);
    let last = msgs.len() - 1;
    msgs[last].0[0] ^= 1;
    assert!(matches!(
        verify(&msgs),
        Err(SnapshotError::HashMismatch { .. })
    ));
}

#[test]
fn truncation_is_found() {
    let db = vec![1u8; 8192];
    // Hash missing.
    let mut msgs = stream(&db, 1000);
    msgs.pop();
    match verify(&msgs) {
        Err(SnapshotError::Truncated { got, expected }) => {
            assert_eq!((got, expected), (8192, 8224));
        }
        other => panic!("{other:?}"),
    }
    // A data chunk missing in the middle.
    let mut msgs = stream(&db, 1000);
    msgs.remove(4);
    assert!(matches!(
        verify(&msgs),
        Err(SnapshotError::Truncated { .. })
    ));
    // Nothing at all, or less than a hash.
    assert!(matches!(verify(&[]), Err(SnapshotError::Truncated { .. })));
    assert!(matches!(
        verify(&[(vec![0u8; 10], 0)]),
        Err(SnapshotError::Truncated { .. })
    ));
    let msg = SnapshotError::Truncated {
        got: 1,
        expected: 2,
    }
    .to_string();
    assert!(msg.contains("truncated"), "{msg}");
}

#[test]
fn names_and_pruning() {
    let at = DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
        .unwrap()
        .with_timezone(&Utc);
    assert_eq!(snapshot_name(at), "etcd-2026-01-02.030405.db");
    let names: Vec<String> = [
        "etcd-2026-01-01.000000.db",
        "etcd-2026-01-01.000000.db.json",
        "etcd-2026-01-02.000000.db",
        "etcd-2026-01-02.000000.db.json",
        "etcd-2026-01-03.000000.db",
        "etcd-2026-01-03.000000.db.json",
        "etcd-2025-12-31.000000.db.json", // orphan sidecar
        "operator-notes.txt",             // not ours
        "etcd-2025-12-30.000000.db.age",  // encrypted, oldest
        "etcd-2025-12-30.000000.db.age.json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(
        prune_plan(&names, 2),
        vec![
            "etcd-2025-12-30.000000.db.age",
            "etcd-2025-12-30.000000.db.age.json",
            "etcd-2025-12-31.000000.db.json",
            "etcd-2026-01-01.000000.db",
            "etcd-2026-01-01.000000.db.json"
        ]
    );
    assert_eq!(prune_plan(&names, 0).len(), 7, "0 keeps the newest");
    assert_eq!(
        prune_plan(&names, 10),
        vec!["etcd-2025-12-31.000000.db.json"]
    );
    // Encrypted snapshots sort and are kept by time like plaintext ones.
    let mixed: Vec<String> = [
        "etcd-2026-01-01.000000.db",
        "etcd-2026-01-02.000000.db.age",
        "etcd-2026-01-02.000000.db.age.json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(prune_plan(&mixed, 1), vec!["etcd-2026-01-01.000000.db"]);
    assert!(prune_plan(&[], 3).is_empty());
}
