//! Unit tests of the copy pipeline: round trips, corruption, failures,
//! cancellation, retries, streams; `encrypted` the same with encryption.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::*;
use crate::backup::manifest::{base, BackupMethod, FileEntry, Manifest, FORMAT_VERSION};
use crate::backup::storage::{
    BackupStorage, BackupWriter, FaultConfig, FaultyStorage, FileSink, FileStorage, MANIFEST_FILE,
};
use chrono::Utc;
use rand::{Rng, RngCore, SeedableRng};

mod encrypted;
mod hashes;

const NAME: &str = "2024-01-02.030405.zone1-0000000101";

/// A small datadir: empty files, nested dirs, random and compressible data,
/// one file big enough to take the zstdmt path.
fn make_source(dir: &Path) -> Vec<SourceFile> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut specs: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("db1/empty.frm", vec![]),
        ("db1/small.frm", b"tiny".to_vec()),
        ("db1/deep/er/t.ibd", {
            let mut v = vec![0u8; 3 << 20];
            rng.fill_bytes(&mut v);
            v
        }),
        ("ib_logfile0", {
            // Compressible: repetitive text with some noise.
            let mut v = Vec::with_capacity(5 << 20);
            while v.len() < (5 << 20) + 12345 {
                v.extend_from_slice(b"INSERT INTO t VALUES (");
                v.extend_from_slice(rng.random_range(0..100000u32).to_string().as_bytes());
                v.extend_from_slice(b", 'some text that repeats');\n");
            }
            v
        }),
    ];
    let mut big = vec![0u8; (ZSTD_MT_MIN_SIZE + (1 << 20) + 17) as usize];
    for (i, chunk) in big.chunks_mut(4096).enumerate() {
        if i % 3 == 0 {
            rng.fill_bytes(chunk);
        }
    }
    specs.push(("ibdata1", big));
    specs
        .into_iter()
        .map(|(name, data)| {
            let path = dir.join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, &data).unwrap();
            SourceFile {
                path,
                name: name.to_string(),
                base: if name.starts_with("ib") {
                    base::INNODB_DATA.into()
                } else {
                    base::DATA.into()
                },
                size: data.len() as u64,
            }
        })
        .collect()
}

fn manifest_for(entries: Vec<FileEntry>, engine: CompressionEngine) -> Manifest {
    let now = Utc::now();
    let mut m = Manifest {
        backup_name: NAME.into(),
        backup_method: BackupMethod::Builtin,
        position: "MariaDB/0-1-5".into(),
        purged_position: String::new(),
        backup_time: now,
        finished_time: now,
        server_uuid: String::new(),
        tablet_alias: "zone1-0000000101".into(),
        hostname: String::new(),
        keyspace: "ks".into(),
        shard: "0".into(),
        schedule: None,
        mysql_version: String::new(),
        upgrade_safe: false,
        compression_engine: engine,
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

fn opts(compression: Compression) -> CopyOptions {
    CopyOptions {
        compression,
        concurrency: 3,
        retries_per_file: 1,
        ..CopyOptions::default()
    }
}

async fn backup(
    st: &dyn BackupStorage,
    src: Vec<SourceFile>,
    c: Compression,
) -> anyhow::Result<Manifest> {
    let w = st.start_backup("ks", "0", NAME).await?;
    let progress = Progress::new();
    match backup_files(
        &*w,
        src,
        &opts(c),
        progress.clone(),
        CancellationToken::new(),
    )
    .await
    {
        Ok(entries) => {
            assert_eq!(progress.done(), progress.total());
            let m = manifest_for(entries, c.engine());
            w.write_manifest(&m).await?;
            Ok(m)
        }
        Err(e) => {
            w.abort().await?;
            Err(e)
        }
    }
}

fn assert_same_tree(src: &[SourceFile], dest: &Path) {
    for f in src {
        let a = fs::read(&f.path).unwrap();
        let b = fs::read(dest.join(&f.name)).unwrap();
        assert!(a == b, "{} differs after restore", f.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_every_compression() {
    for c in [
        Compression::Zstd {
            level: 1,
            threads: 2,
        },
        Compression::Zstd {
            level: 3,
            threads: 0,
        },
        Compression::Lz4,
        Compression::None,
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let src = make_source(&tmp.path().join("src"));
        let st = FileStorage::new(tmp.path().join("store"));
        let m = backup(&st, src.clone(), c).await.unwrap();
        // Stored names follow input order, whatever the scheduling order.
        for (i, (e, f)) in m.file_entries.iter().zip(&src).enumerate() {
            assert_eq!(e.stored_name, i.to_string());
            assert_eq!(e.name, f.name);
            assert_eq!(e.size, f.size);
            let stored = fs::read(
                tmp.path()
                    .join("store/ks/0")
                    .join(NAME)
                    .join(&e.stored_name),
            )
            .unwrap();
            assert_eq!(stored.len() as u64, e.stored_size);
            assert_eq!(e.hash_algorithm, "blake3");
            assert_eq!(blake3::hash(&stored).to_hex().as_str(), e.hash);
        }
        if c != Compression::None {
            assert!(m.stored_size < m.total_size, "{c:?} did not compress");
        }
        let m2 = st.read_manifest("ks", "0", NAME).await.unwrap();
        assert_eq!(m2.file_entries, m.file_entries);
        let dest = tmp.path().join("restore");
        let progress = Progress::new();
        restore_files(
            StoredBackup {
                storage: &st,
                keyspace: "ks",
                shard: "0",
                name: NAME,
                manifest: &m2,
                identities: None,
            },
            &dest,
            2,
            progress.clone(),
            CancellationToken::new(),
        )
        .await
        .unwrap();
        assert_eq!(progress.done(), m.total_size);
        assert_same_tree(&src, &dest);
        let md = fs::metadata(dest.join("db1/small.frm")).unwrap();
        assert_eq!(md.permissions().mode() & 0o777, 0o600);
        let md = fs::metadata(dest.join("db1/deep/er")).unwrap();
        assert_eq!(md.permissions().mode() & 0o777, 0o700);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_byte_is_a_hash_mismatch_naming_the_file() {
    for c in [
        Compression::default_zstd(),
        Compression::Lz4,
        Compression::None,
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let src = make_source(&tmp.path().join("src"));
        let st = FileStorage::new(tmp.path().join("store"));
        let m = backup(&st, src, c).await.unwrap();
        let e = m
            .file_entries
            .iter()
            .find(|e| e.name == "ib_logfile0")
            .unwrap();
        let p = tmp
            .path()
            .join("store/ks/0")
            .join(NAME)
            .join(&e.stored_name);
        let mut bytes = fs::read(&p).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x40;
        fs::write(&p, &bytes).unwrap();
        let dest = tmp.path().join("restore");
        let err = restore_files(
            StoredBackup {
                storage: &st,
                keyspace: "ks",
                shard: "0",
                name: NAME,
                manifest: &m,
                identities: None,
            },
            &dest,
            2,
            Progress::new(),
            CancellationToken::new(),
        )
        .await
        .unwrap_err();
        let msg = format!("{err:#}");
        let ie = err
            .downcast_ref::<IntegrityError>()
            .unwrap_or_else(|| panic!("{c:?}: not an integrity error: {msg}"));
        assert_eq!(ie.kind, "hash");
        assert!(
            msg.contains("hash mismatch for ib_logfile0 in backup 2024-01-02"),
            "{msg}"
        );
        assert!(
            !dest.join("ib_logfile0").exists(),
            "corrupt file left behind"
        );
    }
}

#[tokio::test]
async fn truncated_or_extended_files_are_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let src = make_source(&tmp.path().join("src"));
    let st = FileStorage::new(tmp.path().join("store"));
    let m = backup(&st, src, Compression::default_zstd()).await.unwrap();
    let e = m
        .file_entries
        .iter()
        .find(|e| e.name == "db1/small.frm")
        .unwrap();
    let p = tmp
        .path()
        .join("store/ks/0")
        .join(NAME)
        .join(&e.stored_name);
    let orig = fs::read(&p).unwrap();
    for bad in [
        orig[..orig.len() - 1].to_vec(),
        [&orig[..], b"x"].concat(),
        vec![],
    ] {
        fs::write(&p, &bad).unwrap();
        let err = restore_files(
            StoredBackup {
                storage: &st,
                keyspace: "ks",
                shard: "0",
                name: NAME,
                manifest: &m,
                identities: None,
            },
            &tmp.path().join("r"),
            2,
            Progress::new(),
            CancellationToken::new(),
        )
        .await
        .unwrap_err();
        assert!(err.downcast_ref::<IntegrityError>().is_some(), "{err:#}");
        assert!(format!("{err:#}").contains("db1/small.frm"), "{err:#}");
    }
    // A MANIFEST that lies about the original size is caught too.
    fs::write(&p, &orig).unwrap();
    let mut m2 = m.clone();
    for e in &mut m2.file_entries {
        if e.name == "db1/small.frm" {
            e.size += 1;
        }
    }
    let err = restore_files(
        StoredBackup {
            storage: &st,
            keyspace: "ks",
            shard: "0",
            name: NAME,
            manifest: &m2,
            identities: None,
        },
        &tmp.path().join("r2"),
        2,
        Progress::new(),
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.downcast_ref::<IntegrityError>().unwrap().kind, "size");
}

#[tokio::test]
async fn unsafe_names_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let src = make_source(&tmp.path().join("src"));
    let st = FileStorage::new(tmp.path().join("store"));
    let m = backup(&st, src.clone(), Compression::None).await.unwrap();
    for bad in ["../escape", "/abs", "a/../../b"] {
        let mut m2 = m.clone();
        m2.file_entries[1].name = bad.into();
        let dest = tmp.path().join("r");
        assert!(restore_files(
            StoredBackup {
                storage: &st,
                keyspace: "ks",
                shard: "0",
                name: NAME,
                manifest: &m2,
                identities: None,
            },
            &dest,
            2,
            Progress::new(),
            CancellationToken::new()
        )
        .await
        .is_err());
        assert!(!dest.exists(), "{bad}: restore wrote before refusing");
    }
    let mut bad_src = src.clone();
    bad_src[0].name = "../x".into();
    let st2 = FileStorage::new(tmp.path().join("store2"));
    assert!(backup(&st2, bad_src, Compression::None).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_failure_midway_fails_and_abort_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let src = make_source(&tmp.path().join("src"));
    let st = FaultyStorage::new(
        FileStorage::new(tmp.path().join("store")),
        FaultConfig::fail_after(4 << 20),
    );
    let err = backup(&st, src, Compression::None).await.unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("injected storage failure"), "{msg}");
    assert!(msg.contains("backing up "), "{msg}");
    assert!(err.downcast_ref::<Cancelled>().is_none(), "{msg}");
    let l = st.list_backups("ks", "0").await.unwrap();
    assert!(l.iter().all(|b| !b.complete));
    assert!(l.is_empty());
}

#[tokio::test]
async fn missing_source_fails_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let mut src = make_source(&tmp.path().join("src"));
    fs::remove_file(&src[2].path).unwrap();
    src[2].size = 0;
    let st = FileStorage::new(tmp.path().join("store"));
    let err = backup(&st, src, Compression::Lz4).await.unwrap_err();
    assert!(format!("{err:#}").contains("db1/small.frm"), "{err:#}");
}

#[tokio::test]
async fn cancellation_stops_the_copy() {
    let tmp = tempfile::tempdir().unwrap();
    let src = make_source(&tmp.path().join("src"));
    let st = FileStorage::new(tmp.path().join("store"));
    let w = st.start_backup("ks", "0", NAME).await.unwrap();
    let cancel = CancellationToken::new();
    cancel.cancel();
    let err = backup_files(&*w, src, &opts(Compression::Lz4), Progress::new(), cancel)
        .await
        .unwrap_err();
    assert!(err.downcast_ref::<Cancelled>().is_some(), "{err:#}");
}

/// A writer whose first attempt at stored file `0` fails after some bytes:
/// the retry must produce the hash of what the retry wrote (Vitess #19338).
struct FlakyWriter {
    inner: Box<dyn BackupWriter>,
    failed_once: std::sync::atomic::AtomicBool,
}

struct FlakySink {
    inner: Box<dyn FileSink>,
    budget: usize,
}

impl Write for FlakySink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.budget == 0 {
            return Err(io::Error::other("flaky storage"));
        }
        let n = buf.len().min(self.budget);
        self.budget -= n;
        self.inner.write(&buf[..n])
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl FileSink for FlakySink {
    fn finish(self: Box<Self>) -> crate::backup::storage::StorageResult<u64> {
        self.inner.finish()
    }
}

impl BackupWriter for FlakyWriter {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn create_file<'a>(
        &'a self,
        stored_name: &'a str,
    ) -> futures::future::BoxFuture<'a, crate::backup::storage::StorageResult<Box<dyn FileSink>>>
    {
        Box::pin(async move {
            let sink = self.inner.create_file(stored_name).await?;
            if stored_name == "0" && !self.failed_once.swap(true, Ordering::SeqCst) {
                return Ok(Box::new(FlakySink {
                    inner: sink,
                    budget: 100_000,
                }) as Box<dyn FileSink>);
            }
            Ok(sink)
        })
    }
    fn write_manifest<'a>(
        &'a self,
        manifest: &'a Manifest,
    ) -> futures::future::BoxFuture<'a, crate::backup::storage::StorageResult<()>> {
        self.inner.write_manifest(manifest)
    }
    fn abort(&self) -> futures::future::BoxFuture<'_, crate::backup::storage::StorageResult<()>> {
        self.inner.abort()
    }
}

#[tokio::test]
async fn retried_file_carries_the_hash_of_what_was_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let mut src = make_source(&tmp.path().join("src"));
    // Put the big random file first so it is stored as `0`.
    src.swap(0, 3);
    let st = FileStorage::new(tmp.path().join("store"));
    let w = FlakyWriter {
        inner: st.start_backup("ks", "0", NAME).await.unwrap(),
        failed_once: Default::default(),
    };
    let c = Compression::default_zstd();
    let entries = backup_files(
        &w,
        src.clone(),
        &opts(c),
        Progress::new(),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert!(w.failed_once.load(Ordering::SeqCst));
    let m = manifest_for(entries, c.engine());
    assert!(m.file_entries.iter().all(|e| e.hash.len() == 64));
    w.write_manifest(&m).await.unwrap();
    let dest = tmp.path().join("r");
    restore_files(
        StoredBackup {
            storage: &st,
            keyspace: "ks",
            shard: "0",
            name: NAME,
            manifest: &m,
            identities: None,
        },
        &dest,
        2,
        Progress::new(),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_same_tree(&src, &dest);
    // Without retries the same failure fails the backup.
    let st2 = FileStorage::new(tmp.path().join("store2"));
    let w = FlakyWriter {
        inner: st2.start_backup("ks", "0", NAME).await.unwrap(),
        failed_once: Default::default(),
    };
    let mut o = opts(c);
    o.retries_per_file = 0;
    let err = backup_files(&w, src, &o, Progress::new(), CancellationToken::new())
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("flaky storage"), "{err:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_round_trip_and_corruption() {
    for c in [
        Compression::default_zstd(),
        Compression::Lz4,
        Compression::None,
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let mut data = vec![0u8; 9 << 20];
        rand::rngs::StdRng::seed_from_u64(1).fill_bytes(&mut data[..3 << 20]);
        let st = FileStorage::new(tmp.path().join("store"));
        let w = st.start_backup("ks", "0", NAME).await.unwrap();
        let progress = Progress::new();
        let entry = backup_stream(
            &*w,
            io::Cursor::new(data.clone()),
            "backup.xbstream",
            &opts(c),
            progress.clone(),
            CancellationToken::new(),
        )
        .await
        .unwrap();
        assert_eq!(progress.done(), data.len() as u64);
        assert_eq!(entry.base, base::STREAM);
        assert_eq!(entry.size, data.len() as u64);
        let mut m = manifest_for(vec![entry], c.engine());
        m.backup_method = BackupMethod::Xtrabackup;
        m.stream_mode = Some("xbstream".into());
        w.write_manifest(&m).await.unwrap();
        let (out, n) = restore_stream(
            StoredBackup {
                storage: &st,
                keyspace: "ks",
                shard: "0",
                name: NAME,
                manifest: &m,
                identities: None,
            },
            Vec::new(),
            Progress::new(),
            CancellationToken::new(),
        )
        .await
        .unwrap();
        assert_eq!(n, data.len() as u64);
        assert!(out == data);
        // Corrupt the last stored byte: the stream fails at its end.
        let p = tmp.path().join("store/ks/0").join(NAME).join("0");
        let mut bytes = fs::read(&p).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&p, &bytes).unwrap();
        let err = restore_stream(
            StoredBackup {
                storage: &st,
                keyspace: "ks",
                shard: "0",
                name: NAME,
                manifest: &m,
                identities: None,
            },
            Vec::new(),
            Progress::new(),
            CancellationToken::new(),
        )
        .await
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("hash mismatch for backup.xbstream"),
            "{c:?}: {err:#}"
        );
        assert!(tmp
            .path()
            .join("store/ks/0")
            .join(NAME)
            .join(MANIFEST_FILE)
            .exists());
    }
}
