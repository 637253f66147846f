//! Hash algorithms per MANIFEST entry: BLAKE3 by default, SHA-256 backups (what
//! cairn wrote before) still restore and still catch corruption, each entry is
//! checked with the algorithm it names, an unknown one is refused before
//! anything is touched; reading ahead stores exactly what reading inline does.

use sha2::{Digest, Sha256};

use super::*;
use crate::backup::manifest::{HashAlgorithm, HASH_ALGORITHM_SHA256};

fn stored_path(tmp: &Path, e: &FileEntry) -> std::path::PathBuf {
    tmp.join("store/ks/0").join(NAME).join(&e.stored_name)
}

async fn restore_into(st: &FileStorage, m: &Manifest, dest: &Path) -> anyhow::Result<()> {
    restore_files(
        StoredBackup {
            storage: st,
            keyspace: "ks",
            shard: "0",
            name: NAME,
            manifest: m,
            identities: None,
        },
        dest,
        2,
        Progress::new(),
        CancellationToken::new(),
    )
    .await
}

async fn backup_with(st: &FileStorage, src: Vec<SourceFile>, o: &CopyOptions) -> Manifest {
    let w = st.start_backup("ks", "0", NAME).await.unwrap();
    let entries = backup_files(&*w, src, o, Progress::new(), CancellationToken::new())
        .await
        .unwrap();
    let m = manifest_for(entries, o.compression.engine());
    w.write_manifest(&m).await.unwrap();
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sha256_backup_restores_and_its_corruption_is_caught() {
    let tmp = tempfile::tempdir().unwrap();
    let src = make_source(&tmp.path().join("src"));
    let st = FileStorage::new(tmp.path().join("store"));
    // As cairn wrote backups before BLAKE3: sha256, read inline.
    let o = CopyOptions {
        hash: HashAlgorithm::Sha256,
        read_ahead: false,
        ..opts(Compression::Lz4)
    };
    let m = backup_with(&st, src.clone(), &o).await;
    let json = String::from_utf8(m.to_json().unwrap()).unwrap();
    assert!(json.contains("\"HashAlgorithm\": \"sha256\""), "{json}");
    assert!(!json.contains("blake3"), "{json}");
    for e in &m.file_entries {
        let stored = fs::read(stored_path(tmp.path(), e)).unwrap();
        assert_eq!(hex::encode(Sha256::digest(&stored)), e.hash, "{}", e.name);
    }
    let m = st.read_manifest("ks", "0", NAME).await.unwrap();
    restore_into(&st, &m, &tmp.path().join("r1")).await.unwrap();
    assert_same_tree(&src, &tmp.path().join("r1"));
    // One flipped bit in a stored file: a hash mismatch naming it.
    let e = m.file_entries.iter().find(|e| e.name == "ibdata1").unwrap();
    let p = stored_path(tmp.path(), e);
    let mut bytes = fs::read(&p).unwrap();
    let third = bytes.len() / 3;
    bytes[third] ^= 1;
    fs::write(&p, &bytes).unwrap();
    let err = restore_into(&st, &m, &tmp.path().join("r2"))
        .await
        .unwrap_err();
    let ie = err
        .downcast_ref::<IntegrityError>()
        .expect("integrity error");
    assert_eq!((ie.kind, ie.name.as_str()), ("hash", "ibdata1"), "{err:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_entry_is_verified_with_the_algorithm_it_names() {
    let tmp = tempfile::tempdir().unwrap();
    let src = make_source(&tmp.path().join("src"));
    let st = FileStorage::new(tmp.path().join("store"));
    let m = backup_with(&st, src.clone(), &opts(Compression::None)).await;
    assert!(m.file_entries.iter().all(|e| e.hash_algorithm == "blake3"));
    // Half the entries rewritten as sha256 entries (right digests): restores.
    let mut mixed = m.clone();
    for e in mixed.file_entries.iter_mut().step_by(2) {
        let stored = fs::read(stored_path(tmp.path(), e)).unwrap();
        e.hash = hex::encode(Sha256::digest(&stored));
        e.hash_algorithm = HASH_ALGORITHM_SHA256.into();
    }
    restore_into(&st, &mixed, &tmp.path().join("r1"))
        .await
        .unwrap();
    assert_same_tree(&src, &tmp.path().join("r1"));
    // A BLAKE3 digest labelled sha256 is a mismatch, not a pass.
    let mut relabelled = m.clone();
    let e = relabelled
        .file_entries
        .iter_mut()
        .find(|e| e.name == "ib_logfile0")
        .unwrap();
    e.hash_algorithm = HASH_ALGORITHM_SHA256.into();
    let err = restore_into(&st, &relabelled, &tmp.path().join("r2"))
        .await
        .unwrap_err();
    let ie = err
        .downcast_ref::<IntegrityError>()
        .expect("integrity error");
    assert_eq!((ie.kind, ie.name.as_str()), ("hash", "ib_logfile0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_hash_algorithm_is_refused_before_anything_is_touched() {
    let tmp = tempfile::tempdir().unwrap();
    let src = make_source(&tmp.path().join("src"));
    let st = FileStorage::new(tmp.path().join("store"));
    let mut m = backup_with(&st, src, &opts(Compression::Lz4)).await;
    m.file_entries[1].hash_algorithm = "sha3-256".into();
    let dest = tmp.path().join("restore");
    let err = restore_into(&st, &m, &dest).await.unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("hash algorithm \"sha3-256\"") && msg.contains("cannot be restored"),
        "{msg}"
    );
    assert!(!dest.exists(), "the restore created {}", dest.display());
    // The reader refuses it too, whoever calls it.
    let e = &m.file_entries[1];
    let stored = st.open_file("ks", "0", NAME, &e.stored_name).await.unwrap();
    let err = VerifiedReader::new(stored, e, CompressionEngine::Lz4, None, NAME)
        .err()
        .expect("refused");
    assert!(err.to_string().contains("unknown hash algorithm"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_ahead_stores_what_reading_inline_does() {
    let tmp = tempfile::tempdir().unwrap();
    let src = make_source(&tmp.path().join("src"));
    let mut entries = Vec::new();
    for read_ahead in [false, true] {
        let st = FileStorage::new(tmp.path().join(format!("store-{read_ahead}")));
        let o = CopyOptions {
            read_ahead,
            ..opts(Compression::None)
        };
        let m = backup_with(&st, src.clone(), &o).await;
        entries.push(m.file_entries);
    }
    assert_eq!(entries[0], entries[1]);
    // A stream (read ahead: its length is unknown) that fails midway fails the
    // copy as a source error, after some of it was read.
    struct Failing(u64);
    impl io::Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0 >= 5 << 20 {
                return Err(io::Error::other("pipe broke"));
            }
            let n = buf.len().min(64 << 10);
            buf[..n].fill(7);
            self.0 += n as u64;
            Ok(n)
        }
    }
    let st = FileStorage::new(tmp.path().join("store-stream"));
    let w = st.start_backup("ks", "0", NAME).await.unwrap();
    let err = backup_stream(
        &*w,
        Failing(0),
        "backup.xbstream",
        &opts(Compression::None),
        Progress::new(),
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("reading: pipe broke"),
        "{err:#}"
    );
}
