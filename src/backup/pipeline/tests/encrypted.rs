//! The pipeline with age encryption: every stored file is an age file whose hash
//! the MANIFEST holds; either of two recipients' identities restores it; none or
//! a wrong one is refused before anything is written; corruption and MANIFESTs
//! that lie about encryption never restore.

use std::sync::Arc;

use age::secrecy::ExposeSecret;

use super::*;
use crate::backup::encryption::{Identities, Recipients, AGE_MAGIC};

/// (identities, public key) of a fresh key pair.
fn keypair(name: &str) -> (Identities, String) {
    let id = age::x25519::Identity::generate();
    let ids = Identities::parse(id.to_string().expose_secret(), name).unwrap();
    (ids, id.to_public().to_string())
}

fn stored<'a>(
    st: &'a FileStorage,
    m: &'a Manifest,
    ids: Option<&'a Identities>,
) -> StoredBackup<'a> {
    StoredBackup {
        storage: st,
        keyspace: "ks",
        shard: "0",
        name: NAME,
        manifest: m,
        identities: ids,
    }
}

/// An encrypted backup of `src` to `recipients`.
async fn sealed_backup(
    st: &FileStorage,
    src: Vec<SourceFile>,
    c: Compression,
    recipients: &[String],
) -> Manifest {
    let r = Arc::new(Recipients::new(recipients).unwrap());
    let w = st.start_backup("ks", "0", NAME).await.unwrap();
    let o = CopyOptions {
        encryption: Some(r.clone()),
        ..opts(c)
    };
    let entries = backup_files(&*w, src, &o, Progress::new(), CancellationToken::new())
        .await
        .unwrap();
    let mut m = manifest_for(entries, c.engine());
    m.set_encryption(r.names());
    w.write_manifest(&m).await.unwrap();
    m
}

async fn restore(
    st: &FileStorage,
    m: &Manifest,
    ids: Option<&Identities>,
    dest: &Path,
) -> anyhow::Result<()> {
    restore_files(
        stored(st, m, ids),
        dest,
        2,
        Progress::new(),
        CancellationToken::new(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_round_trip_with_either_recipient() {
    let (ida, a) = keypair("a.key");
    let (idb, b) = keypair("b.key");
    let (idc, _) = keypair("c.key");
    for c in [
        Compression::default_zstd(),
        Compression::Lz4,
        Compression::None,
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let src = make_source(&tmp.path().join("src"));
        let st = FileStorage::new(tmp.path().join("store"));
        let m = sealed_backup(&st, src.clone(), c, &[a.clone(), b.clone()]).await;
        assert_eq!(m.encryption.as_deref(), Some("age"));
        assert_eq!(m.encryption_recipients, vec![a.clone(), b.clone()]);
        assert_eq!(m.format_version, FORMAT_VERSION);
        for e in &m.file_entries {
            let bytes = fs::read(
                tmp.path()
                    .join("store/ks/0")
                    .join(NAME)
                    .join(&e.stored_name),
            )
            .unwrap();
            assert!(
                bytes.starts_with(AGE_MAGIC),
                "{} is not an age file",
                e.name
            );
            assert_eq!(blake3::hash(&bytes).to_hex().as_str(), e.hash);
            assert_eq!(bytes.len() as u64, e.stored_size);
        }
        let m = st.read_manifest("ks", "0", NAME).await.unwrap();
        for (i, ids) in [&ida, &idb].into_iter().enumerate() {
            let dest = tmp.path().join(format!("restore{i}"));
            check_decryptable(stored(&st, &m, Some(ids))).await.unwrap();
            restore(&st, &m, Some(ids), &dest).await.unwrap();
            assert_same_tree(&src, &dest);
        }
        // No identity, or a wrong one: refused by the check and by the restore,
        // naming the recipients; nothing is written.
        for ids in [None, Some(&idc)] {
            let e = check_decryptable(stored(&st, &m, ids)).await.unwrap_err();
            let msg = format!("{e:#}");
            assert!(msg.contains(&a) && msg.contains(&b), "{msg}");
            let dest = tmp.path().join("refused");
            let e = restore(&st, &m, ids, &dest).await.unwrap_err();
            assert!(format!("{e:#}").contains(&a), "{e:#}");
            assert!(!dest.exists(), "a refused restore wrote {}", dest.display());
        }
        // A MANIFEST that does not list recipients: the header check still finds
        // a wrong identity.
        let mut unlisted = m.clone();
        unlisted.encryption_recipients.clear();
        let e = check_decryptable(stored(&st, &unlisted, Some(&idc)))
            .await
            .unwrap_err();
        assert!(format!("{e:#}").contains("cannot decrypt"), "{e:#}");
        check_decryptable(stored(&st, &unlisted, Some(&idb)))
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_corruption_and_lying_manifests_never_restore() {
    let (ida, a) = keypair("a.key");
    let tmp = tempfile::tempdir().unwrap();
    let src = make_source(&tmp.path().join("src"));
    let st = FileStorage::new(tmp.path().join("store"));
    let m = sealed_backup(&st, src.clone(), Compression::default_zstd(), &[a]).await;
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
    let orig = fs::read(&p).unwrap();
    // A flipped byte in the payload, or in the header: refused.
    for at in [orig.len() / 2, 40] {
        let mut bad = orig.clone();
        bad[at] ^= 1;
        fs::write(&p, &bad).unwrap();
        let err = restore(&st, &m, Some(&ida), &tmp.path().join(format!("r{at}")))
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains("ib_logfile0"), "{err:#}");
        if at > 1000 {
            assert!(err.downcast_ref::<IntegrityError>().is_some(), "{err:#}");
        }
        assert!(!tmp.path().join(format!("r{at}/ib_logfile0")).exists());
    }
    fs::write(&p, &orig).unwrap();
    // Ciphertext presented as plaintext (the encryption removed from the
    // MANIFEST): the hash matches, decompression fails, nothing is kept.
    let mut stripped = m.clone();
    stripped.encryption = None;
    stripped.encryption_recipients.clear();
    let err = restore(&st, &stripped, None, &tmp.path().join("stripped"))
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("its hash matches"), "{err:#}");
    // Plaintext presented as encrypted: not an age file.
    let st2 = FileStorage::new(tmp.path().join("store2"));
    let plain = backup(&st2, src.clone(), Compression::default_zstd())
        .await
        .unwrap();
    let mut claimed = plain.clone();
    claimed.set_encryption(ida.public_keys());
    let err = restore(&st2, &claimed, Some(&ida), &tmp.path().join("claimed"))
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("not an age file"), "{err:#}");
    // An unknown scheme is not restorable at all.
    let mut other = m.clone();
    other.encryption = Some("gpg".into());
    assert!(other.check_restorable().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_stream_round_trips() {
    let (ida, a) = keypair("a.key");
    let tmp = tempfile::tempdir().unwrap();
    let mut data = vec![0u8; 5 << 20];
    rand::rngs::StdRng::seed_from_u64(3).fill_bytes(&mut data[..1 << 20]);
    let st = FileStorage::new(tmp.path().join("store"));
    let w = st.start_backup("ks", "0", NAME).await.unwrap();
    let r = Arc::new(Recipients::new(&[a]).unwrap());
    let o = CopyOptions {
        encryption: Some(r.clone()),
        ..opts(Compression::Lz4)
    };
    let entry = backup_stream(
        &*w,
        io::Cursor::new(data.clone()),
        "backup.xbstream",
        &o,
        Progress::new(),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let mut m = manifest_for(vec![entry], CompressionEngine::Lz4);
    m.backup_method = BackupMethod::Xtrabackup;
    m.set_encryption(r.names());
    w.write_manifest(&m).await.unwrap();
    let (out, n) = restore_stream(
        stored(&st, &m, Some(&ida)),
        Vec::new(),
        Progress::new(),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(n, data.len() as u64);
    assert!(out == data);
    assert!(open_stream(stored(&st, &m, None)).await.is_err());
}
