//! Unit tests of the storage trait's `file` backend (and of the fault wrapper
//! over it): layout, permissions, MANIFEST-last, names, blobs.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::*;
use crate::backup::manifest::{
    base, BackupMethod, CompressionEngine, FileEntry, FORMAT_VERSION, HASH_ALGORITHM_SHA256,
};
use chrono::{TimeZone, Utc};

fn manifest(ks: &str, shard: &str, name: &str, entries: Vec<FileEntry>) -> Manifest {
    let t = Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap();
    let mut m = Manifest {
        backup_name: name.into(),
        backup_method: BackupMethod::Builtin,
        position: "MariaDB/0-1-1".into(),
        purged_position: String::new(),
        backup_time: t,
        finished_time: t,
        server_uuid: String::new(),
        tablet_alias: "zone1-0000000101".into(),
        hostname: String::new(),
        keyspace: ks.into(),
        shard: shard.into(),
        schedule: None,
        mysql_version: String::new(),
        upgrade_safe: false,
        compression_engine: CompressionEngine::None,
        file_entries: vec![],
        total_size: 0,
        stored_size: 0,
        stream_mode: None,
        encryption: None,
        encryption_recipients: vec![],
        flavor: "MariaDB".into(),
        format_version: FORMAT_VERSION,
        incremental: Default::default(),
    };
    m.set_file_entries(entries);
    m
}

fn entry(stored: &str, n: u64) -> FileEntry {
    FileEntry {
        base: base::DATA.into(),
        name: format!("f{stored}"),
        stored_name: stored.into(),
        size: n,
        stored_size: n,
        hash: "00".repeat(32),
        hash_algorithm: HASH_ALGORITHM_SHA256.into(),
    }
}

async fn write_file(w: &dyn BackupWriter, stored: &str, data: &[u8]) -> u64 {
    let mut s = w.create_file(stored).await.unwrap();
    s.write_all(data).unwrap();
    s.finish().unwrap()
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

const NAME1: &str = "2024-01-02.030405.zone1-0000000101";
const NAME2: &str = "2024-01-02.030406.zone1-0000000101";

#[tokio::test]
async fn write_list_read_with_owner_only_permissions() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    let st = FileStorage::new(&root);
    // A permissive umask must not leak into storage modes.
    let old = unsafe { libc::umask(0o000) };
    let w = st.start_backup("commerce", "-80", NAME1).await.unwrap();
    let n = write_file(&*w, "0", b"hello").await;
    unsafe { libc::umask(old) };
    assert_eq!(n, 5);
    // Before the MANIFEST: listed incomplete.
    let l = st.list_backups("commerce", "-80").await.unwrap();
    assert_eq!(l.len(), 1);
    assert!(!l[0].complete);
    assert!(matches!(
        st.read_manifest("commerce", "-80", NAME1).await,
        Err(StorageError::NotFound(_))
    ));
    w.write_manifest(&manifest("commerce", "-80", NAME1, vec![entry("0", 5)]))
        .await
        .unwrap();
    let bdir = root.join("commerce/-80").join(NAME1);
    for d in [
        root.join("commerce"),
        root.join("commerce/-80"),
        bdir.clone(),
    ] {
        assert_eq!(mode(&d), 0o700, "{}", d.display());
    }
    assert_eq!(mode(&bdir.join("0")), 0o600);
    assert_eq!(mode(&bdir.join(MANIFEST_FILE)), 0o600);
    assert!(!bdir.join(MANIFEST_TMP).exists());

    let l = st.list_backups("commerce", "-80").await.unwrap();
    assert!(l[0].complete);
    assert_eq!(l[0].manifest.as_ref().unwrap().file_entries.len(), 1);
    assert!(l[0].size_bytes > 5);
    let m = st.read_manifest("commerce", "-80", NAME1).await.unwrap();
    assert_eq!(m.backup_name, NAME1);
    let mut r = st.open_file("commerce", "-80", NAME1, "0").await.unwrap();
    let mut s = String::new();
    r.read_to_string(&mut s).unwrap();
    assert_eq!(s, "hello");
    assert!(matches!(
        st.open_file("commerce", "-80", NAME1, "7").await,
        Err(StorageError::NotFound(_))
    ));
    // No more files after the MANIFEST.
    assert!(w.create_file("1").await.is_err());
    assert_eq!(
        st.list_shards().await.unwrap(),
        vec![ShardDir {
            keyspace: "commerce".into(),
            shard: "-80".into()
        }]
    );
}

#[tokio::test]
async fn same_name_never_overwrites() {
    let tmp = tempfile::tempdir().unwrap();
    let st = FileStorage::new(tmp.path());
    let w = st.start_backup("ks", "0", NAME1).await.unwrap();
    write_file(&*w, "0", b"first").await;
    match st.start_backup("ks", "0", NAME1).await {
        Err(StorageError::AlreadyExists(m)) => assert!(m.contains(NAME1)),
        Err(e) => panic!("unexpected {e}"),
        Ok(_) => panic!("second backup with the same name started"),
    }
    let mut r = st.open_file("ks", "0", NAME1, "0").await.unwrap();
    let mut s = String::new();
    r.read_to_string(&mut s).unwrap();
    assert_eq!(s, "first");
}

#[tokio::test]
async fn list_order_abort_remove_and_drop() {
    let tmp = tempfile::tempdir().unwrap();
    let st = FileStorage::new(tmp.path());
    assert!(st.list_backups("ks", "0").await.unwrap().is_empty());
    for name in [NAME2, NAME1] {
        let w = st.start_backup("ks", "0", name).await.unwrap();
        write_file(&*w, "0", b"x").await;
        w.write_manifest(&manifest("ks", "0", name, vec![entry("0", 1)]))
            .await
            .unwrap();
    }
    // Dropped without a MANIFEST: stays, incomplete.
    let name3 = "2024-01-02.030407.zone1-0000000101";
    {
        let w = st.start_backup("ks", "0", name3).await.unwrap();
        write_file(&*w, "0", b"x").await;
    }
    // Aborted: gone.
    let name4 = "2024-01-02.030408.zone1-0000000101";
    let w = st.start_backup("ks", "0", name4).await.unwrap();
    write_file(&*w, "0", b"x").await;
    w.abort().await.unwrap();
    assert!(w.create_file("1").await.is_err());
    // Junk that is not a backup is ignored.
    fs::write(tmp.path().join("ks/0/stray-file"), b"").unwrap();
    fs::create_dir(tmp.path().join("ks/0/bad name")).unwrap();

    let l = st.list_backups("ks", "0").await.unwrap();
    let names: Vec<_> = l.iter().map(|b| (b.name.as_str(), b.complete)).collect();
    assert_eq!(names, vec![(NAME1, true), (NAME2, true), (name3, false)]);

    st.remove_backup("ks", "0", NAME1).await.unwrap();
    assert!(matches!(
        st.remove_backup("ks", "0", NAME1).await,
        Err(StorageError::NotFound(_))
    ));
    // "Already gone" is as good as removed for callers that say so.
    assert_eq!(
        st.remove_backup("ks", "0", NAME1)
            .await
            .ignore_not_found()
            .unwrap(),
        None
    );
    let l = st.list_backups("ks", "0").await.unwrap();
    assert_eq!(l.len(), 2);
    assert_eq!(l[0].name, NAME2);
}

#[tokio::test]
async fn manifest_is_last_and_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let st = FileStorage::new(tmp.path());
    let w = st.start_backup("ks", "0", NAME1).await.unwrap();
    // An open file blocks the MANIFEST.
    let mut open = w.create_file("0").await.unwrap();
    open.write_all(b"abc").unwrap();
    let m = manifest("ks", "0", NAME1, vec![entry("0", 3)]);
    let err = w.write_manifest(&m).await.unwrap_err().to_string();
    assert!(err.contains("still being written"), "{err}");
    assert!(open.finish().is_ok());
    // Wrong size, missing file, wrong identity: refused.
    let bad = manifest("ks", "0", NAME1, vec![entry("0", 4)]);
    assert!(w.write_manifest(&bad).await.is_err());
    let bad = manifest("ks", "0", NAME1, vec![entry("0", 3), entry("1", 0)]);
    assert!(w.write_manifest(&bad).await.is_err());
    let bad = manifest("ks", "1", NAME1, vec![entry("0", 3)]);
    assert!(w.write_manifest(&bad).await.is_err());
    assert!(!st.list_backups("ks", "0").await.unwrap()[0].complete);
    w.write_manifest(&m).await.unwrap();
    assert!(w.write_manifest(&m).await.is_err());
    assert!(st.list_backups("ks", "0").await.unwrap()[0].complete);
    // A MANIFEST that does not parse lists as unreadable, with why.
    fs::write(
        tmp.path().join("ks/0").join(NAME1).join(MANIFEST_FILE),
        b"{",
    )
    .unwrap();
    let l = st.list_backups("ks", "0").await.unwrap();
    assert!(!l[0].complete);
    assert_eq!(l[0].state, BackupState::Unreadable);
    assert!(
        l[0].error.as_deref().unwrap_or("").contains("MANIFEST"),
        "{:?}",
        l[0].error
    );
    assert!(matches!(
        st.read_manifest("ks", "0", NAME1).await,
        Err(StorageError::Manifest { .. })
    ));
}

#[tokio::test]
async fn invalid_names_are_rejected_before_touching_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let st = FileStorage::new(tmp.path());
    for (ks, shard, name) in [
        ("../x", "0", NAME1),
        ("ks", "a/b", NAME1),
        ("ks", "0", ".."),
        ("ks", "0", "a/b"),
        ("ks", "0", ""),
        ("_topo", "0", NAME1),
        ("ks", "..", NAME1),
    ] {
        assert!(
            matches!(
                st.start_backup(ks, shard, name).await,
                Err(StorageError::InvalidName(_))
            ),
            "{ks}/{shard}/{name} accepted"
        );
        assert!(st.remove_backup(ks, shard, name).await.is_err());
        assert!(st.read_manifest(ks, shard, name).await.is_err());
    }
    assert!(st.list_backups("../x", "0").await.is_err());
    assert!(st.list_backups("ks", "a/b").await.is_err());
    let w = st.start_backup("ks", "0", NAME1).await.unwrap();
    for bad in ["../0", "a/b", "MANIFEST", "MANIFEST.tmp", "", "."] {
        assert!(w.create_file(bad).await.is_err(), "{bad:?} accepted");
        assert!(st.open_file("ks", "0", NAME1, bad).await.is_err());
    }
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
    assert!(st.list_blobs("ks").await.is_err());
    assert!(st.open_blob("_topo", "../x").await.is_err());
    assert!(st.remove_blob("_topo", ".hidden").await.is_err());
}

#[tokio::test]
async fn failure_injection_fails_writes_after_budget() {
    let tmp = tempfile::tempdir().unwrap();
    let st = FaultyStorage::new(FileStorage::new(tmp.path()), FaultConfig::fail_after(10));
    let w = st.start_backup("ks", "0", NAME1).await.unwrap();
    let mut s = w.create_file("0").await.unwrap();
    s.write_all(&[1u8; 6]).unwrap();
    let err = s.write_all(&[1u8; 6]).unwrap_err();
    assert!(err.to_string().contains("injected"), "{err}");
    drop(s);
    // The abandoned file cannot be vouched for by a MANIFEST.
    assert!(w
        .write_manifest(&manifest("ks", "0", NAME1, vec![entry("0", 10)]))
        .await
        .is_err());
    w.abort().await.unwrap();
    assert!(st.list_backups("ks", "0").await.unwrap().is_empty());
}

#[tokio::test]
async fn blobs_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let st = FileStorage::new(tmp.path());
    assert!(st.list_blobs("_topo").await.unwrap().is_empty());
    let data = vec![7u8; 3 << 20];
    let w = st
        .put_blob("_topo", "snap-2.db", Box::new(&data[..]))
        .await
        .unwrap();
    assert_eq!(w.size_bytes, data.len() as u64);
    assert_eq!(w.sha256, hex::encode(Sha256::digest(&data)));
    st.put_blob("_topo", "snap-1.db", Box::new(&b"x"[..]))
        .await
        .unwrap();
    assert!(matches!(
        st.put_blob("_topo", "snap-1.db", Box::new(&b"y"[..])).await,
        Err(StorageError::AlreadyExists(_))
    ));
    // Only what sorts after a name (what is new since a listing ended there).
    let after: Vec<String> = st
        .list_blobs_after("_topo", "snap-1.db")
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert_eq!(after, vec!["snap-2.db".to_string()]);
    assert!(st
        .list_blobs_after("_topo", "snap-2.db")
        .await
        .unwrap()
        .is_empty());
    assert_eq!(st.list_blobs_after("_topo", "a").await.unwrap().len(), 2);
    let l = st.list_blobs("_topo").await.unwrap();
    assert_eq!(
        l,
        vec![
            BlobInfo {
                name: "snap-1.db".into(),
                size_bytes: 1
            },
            BlobInfo {
                name: "snap-2.db".into(),
                size_bytes: data.len() as u64
            },
        ]
    );
    let mut r = st.open_blob("_topo", "snap-2.db").await.unwrap();
    let mut back = Vec::new();
    r.read_to_end(&mut back).await.unwrap();
    assert_eq!(back, data);
    assert_eq!(mode(&tmp.path().join("_topo")), 0o700);
    assert_eq!(mode(&tmp.path().join("_topo/snap-1.db")), 0o600);
    // The blob dir is not a keyspace.
    assert!(st.list_shards().await.unwrap().is_empty());
    st.remove_blob("_topo", "snap-1.db").await.unwrap();
    assert!(matches!(
        st.remove_blob("_topo", "snap-1.db").await,
        Err(StorageError::NotFound(_))
    ));
    assert_eq!(st.list_blobs("_topo").await.unwrap().len(), 1);
}

#[tokio::test]
async fn binlog_blob_dirs_are_per_shard_and_never_a_keyspace() {
    let tmp = tempfile::tempdir().unwrap();
    let st = FileStorage::new(tmp.path());
    st.put_blob(
        "_binlog/ks/-80",
        "0000000000.101.1.0.9.x.x.x.x.binlog",
        Box::new(&b"seg"[..]),
    )
    .await
    .unwrap();
    let l = st.list_blobs("_binlog/ks/-80").await.unwrap();
    assert_eq!(l.len(), 1);
    assert!(st.list_blobs("_binlog/ks/0").await.unwrap().is_empty());
    assert!(
        st.list_shards().await.unwrap().is_empty(),
        "_binlog is no keyspace"
    );
    assert_eq!(mode(&tmp.path().join("_binlog/ks/-80")), 0o700);
    for bad in [
        "_binlog",
        "_binlog/ks",
        "_binlog/ks/0/x",
        "_binlog/../0",
        "_binlog/ks/..",
        "_binlog/_topo/0",
        "_topo/x",
        "ks/0",
    ] {
        assert!(
            matches!(st.list_blobs(bad).await, Err(StorageError::InvalidName(_))),
            "{bad:?} accepted"
        );
    }
    let long = "a".repeat(221);
    assert!(st
        .put_blob("_topo", &long, Box::new(&b"x"[..]))
        .await
        .is_err());
    st.put_blob("_topo", &long[..220], Box::new(&b"x"[..]))
        .await
        .unwrap();
}

#[test]
fn classification_of_a_manifest_read() {
    let good = manifest("ks", "0", NAME1, vec![entry("0", 3)]);
    let mut newer = good.clone();
    newer.format_version = 999;
    let mut no_hash = good.clone();
    no_hash.file_entries[0].hash.clear();
    let io = || {
        Err(StorageError::io(
            "reading MANIFEST",
            io::Error::other("Input/output error"),
        ))
    };
    let parse = || {
        Err(StorageError::Manifest {
            backup: "ks/0/x".into(),
            source: Manifest::from_json(b"{\"Backup").unwrap_err(),
        })
    };
    // (what, read, state, error contains)
    let cases: Vec<(&str, StorageResult<Option<Manifest>>, BackupState, &str)> = vec![
        ("absent", Ok(None), BackupState::Incomplete, ""),
        ("restorable", Ok(Some(good)), BackupState::Complete, ""),
        ("read error", io(), BackupState::Unreadable, "Input/output"),
        (
            "parse error",
            parse(),
            BackupState::Unreadable,
            "invalid MANIFEST",
        ),
        (
            "newer format",
            Ok(Some(newer)),
            BackupState::Unreadable,
            "format version 999",
        ),
        (
            "missing hash",
            Ok(Some(no_hash)),
            BackupState::Unreadable,
            "no valid sha256",
        ),
    ];
    for (what, read, state, error) in cases {
        let b = BackupInfo::classify(NAME1, read, 7);
        assert_eq!(b.state, state, "{what}");
        assert_eq!(b.complete, state == BackupState::Complete, "{what}");
        assert_eq!(
            b.is_unreadable(),
            state == BackupState::Unreadable,
            "{what}"
        );
        assert_eq!(b.restorable_manifest().is_some(), b.complete, "{what}");
        assert_eq!(
            b.error.is_some(),
            !error.is_empty(),
            "{what}: {:?}",
            b.error
        );
        assert!(
            b.error.as_deref().unwrap_or("").contains(error),
            "{what}: {:?}",
            b.error
        );
        assert_eq!(b.size_bytes, 7);
    }
}

#[tokio::test]
async fn listing_tells_incomplete_from_unreadable() {
    let tmp = tempfile::tempdir().unwrap();
    let st = FileStorage::new(tmp.path());
    let good = manifest("ks", "0", NAME1, vec![]).to_json().unwrap();
    let mut newer = manifest("ks", "0", NAME1, vec![]);
    newer.format_version = 999;
    let newer = newer.to_json().unwrap();
    let names = [
        "2024-01-02.030401.zone1-0000000101",
        "2024-01-02.030402.zone1-0000000101",
        "2024-01-02.030403.zone1-0000000101",
        "2024-01-02.030404.zone1-0000000101",
        "2024-01-02.030405.zone1-0000000101",
    ];
    // (MANIFEST bytes or none, state)
    let contents: [(Option<&[u8]>, BackupState); 5] = [
        (None, BackupState::Incomplete),
        (Some(b"\x00garbage\xff"), BackupState::Unreadable),
        (Some(&good[..good.len() / 2]), BackupState::Unreadable),
        (Some(&newer), BackupState::Unreadable),
        (Some(&good), BackupState::Complete),
    ];
    for (name, (bytes, _)) in names.iter().zip(&contents) {
        let dir = tmp.path().join("ks/0").join(name);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("0"), b"data").unwrap();
        if let Some(b) = bytes {
            fs::write(dir.join(MANIFEST_FILE), b).unwrap();
        }
    }
    let l = st.list_backups("ks", "0").await.unwrap();
    let got: Vec<BackupState> = l.iter().map(|b| b.state).collect();
    let want: Vec<BackupState> = contents.iter().map(|c| c.1).collect();
    assert_eq!(got, want);
    for b in &l {
        assert_eq!(b.error.is_some(), b.is_unreadable(), "{b:?}");
    }
}

#[tokio::test]
async fn listing_finds_missing_and_resized_files() {
    let tmp = tempfile::tempdir().unwrap();
    let st = FileStorage::new(tmp.path());
    // (what, the files in storage, state, error contains)
    type Files<'a> = &'a [(&'a str, &'a [u8])];
    let cases: [(&str, Files, BackupState, &str); 5] = [
        (
            "all there",
            &[("0", b"data"), ("1", b"more")],
            BackupState::Complete,
            "",
        ),
        (
            "one missing",
            &[("0", b"data")],
            BackupState::Unreadable,
            "stored file 1 (f1) is missing from storage",
        ),
        (
            "truncated",
            &[("0", b"da"), ("1", b"more")],
            BackupState::Unreadable,
            "stored file 0 (f0) has 2 bytes in storage, its MANIFEST says 4",
        ),
        (
            "grown",
            &[("0", b"data"), ("1", b"more!")],
            BackupState::Unreadable,
            "stored file 1 (f1) has 5 bytes",
        ),
        (
            "an extra file is no harm",
            &[("0", b"data"), ("1", b"more"), ("2", b"x")],
            BackupState::Complete,
            "",
        ),
    ];
    for (i, (what, files, state, error)) in cases.iter().enumerate() {
        let name = format!("2024-01-02.03040{i}.zone1-0000000101");
        let dir = tmp.path().join("ks/0").join(&name);
        fs::create_dir_all(&dir).unwrap();
        for (f, data) in files.iter() {
            fs::write(dir.join(f), data).unwrap();
        }
        let m = manifest("ks", "0", &name, vec![entry("0", 4), entry("1", 4)]);
        fs::write(dir.join(MANIFEST_FILE), m.to_json().unwrap()).unwrap();
        let l = st.list_backups("ks", "0").await.unwrap();
        let b = l.iter().find(|b| b.name == name).unwrap();
        assert_eq!(b.state, *state, "{what}");
        assert_eq!(b.complete, *state == BackupState::Complete, "{what}");
        assert!(
            b.error.as_deref().unwrap_or("").contains(error),
            "{what}: {:?}",
            b.error
        );
        // The MANIFEST is still shown (for display), never as restorable.
        assert!(b.manifest.is_some(), "{what}");
        assert_eq!(b.restorable_manifest().is_some(), b.complete, "{what}");
    }
}
