//! Encryption's cost: the builtin zstd backup of the same files with and without
//! age (one X25519 recipient), files warm, alternating which goes first; then the
//! restore of each (the encrypted one also decrypts). Goal: the encrypted backup
//! at most 15% slower than the plaintext one.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::bail;
use cairn::backup::encryption::{Identities, Recipients};
use cairn::backup::manifest::Manifest;
use cairn::backup::pipeline::{self, Compression, CopyOptions, Progress, SourceFile};
use cairn::backup::storage::{BackupStorage, FileStorage};
use tokio_util::sync::CancellationToken;

use super::measure::{dir_bytes, our_backup_with, settle, shell, Timed};
use super::report::{Goal, Row};
use super::{KS, SHARD};
use crate::common::{cpu_times, gib};

/// A fresh key pair for the pass: the recipients and the identity.
fn keys() -> anyhow::Result<(Arc<Recipients>, Identities)> {
    use age::secrecy::ExposeSecret;
    let id = age::x25519::Identity::generate();
    let r = Recipients::new(&[id.to_public().to_string()]).map_err(anyhow::Error::msg)?;
    let ids =
        Identities::parse(id.to_string().expose_secret(), "bench").map_err(anyhow::Error::msg)?;
    Ok((Arc::new(r), ids))
}

async fn restore(
    store: &FileStorage,
    m: &Manifest,
    ids: Option<&Identities>,
    dest: &Path,
    concurrency: usize,
    bytes: u64,
) -> anyhow::Result<Timed> {
    let (c0, _) = cpu_times();
    let t0 = Instant::now();
    pipeline::restore_files(
        pipeline::StoredBackup {
            storage: store,
            keyspace: KS,
            shard: SHARD,
            name: &m.backup_name,
            manifest: m,
            identities: ids,
        },
        dest,
        concurrency,
        Progress::new(),
        CancellationToken::new(),
    )
    .await?;
    let t = Timed {
        secs: t0.elapsed().as_secs_f64(),
        cpu: cpu_times().0 - c0,
    };
    let restored = dir_bytes(dest);
    if restored != bytes {
        bail!("restored {restored} bytes, expected {bytes}");
    }
    std::fs::remove_dir_all(dest)?;
    Ok(t)
}

/// The pass: `reps` runs of each side (warm: `cat` reads every file first).
pub async fn age_pass(
    work: &Path,
    files: &[SourceFile],
    cat: &str,
    concurrency: usize,
    reps: usize,
    name: &mut dyn FnMut() -> String,
) -> anyhow::Result<Vec<Row>> {
    let bytes: u64 = files.iter().map(|f| f.size).sum();
    let (recipients, ids) = keys()?;
    let plain = CopyOptions {
        compression: Compression::default_zstd(),
        concurrency,
        ..CopyOptions::default()
    };
    let sealed = CopyOptions {
        encryption: Some(recipients),
        ..plain.clone()
    };
    let store = FileStorage::new(work.join("store-age"));
    let dest = work.join("restore-age");
    let (mut ours, mut base, mut r_ours, mut r_base) = (vec![], vec![], vec![], vec![]);
    let (mut stored_age, mut stored_plain) = (0, 0);
    for rep in 0..reps {
        eprintln!("builtin zstd with vs without age, run {}/{reps}…", rep + 1);
        for first in [rep % 2 == 0, rep % 2 == 1] {
            shell("warm-up read", cat)?;
            let opts = if first { &sealed } else { &plain };
            let (t, m) = our_backup_with(Some(&store), &name(), files, opts).await?;
            settle();
            let r = restore(&store, &m, first.then_some(&ids), &dest, concurrency, bytes).await?;
            store.remove_backup(KS, SHARD, &m.backup_name).await?;
            if first {
                stored_age = m.stored_size;
                ours.push(t);
                r_ours.push(r);
            } else {
                stored_plain = m.stored_size;
                base.push(t);
                r_base.push(r);
            }
            settle();
        }
    }
    Ok(vec![
        Row {
            what: "builtin zstd+age vs builtin zstd (warm)".into(),
            ours,
            base,
            bytes,
            goal: Some(Goal::MaxTime(1.15)),
            note: format!(
                "one X25519 recipient; stored {} vs {} (age adds 16 bytes a 64 KiB chunk)",
                gib(stored_age),
                gib(stored_plain)
            ),
        },
        Row {
            what: "  (diag) restore_files zstd+age vs zstd".into(),
            ours: r_ours,
            base: r_base,
            bytes,
            goal: None,
            note: "verify blake3 of the stored bytes, decrypt, decompress, fsync".into(),
        },
    ])
}
