//! Restoring: every file of a backup into a directory, or its single stream
//! into a consumer (`mbstream -x`), each through a [`VerifiedReader`]. Unsafe
//! names are refused before anything is written; a file that fails verification
//! is removed. An encrypted backup needs identities that open it:
//! [`check_decryptable`] proves they do (from the MANIFEST, then by opening the
//! first stored file's age header) before anything is touched.
//!
//! May call: [`super::verify`], [`crate::backup::storage`],
//! [`crate::backup::manifest`], [`crate::backup::encryption`].

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use tokio_util::sync::CancellationToken;

use super::verify::{io_to_anyhow, VerifiedReader};
use super::{buf_size_for, run_fail_fast, Cancelled, Progress, BUF_SIZE};
use crate::backup::encryption::{check_identities, Identities};
use crate::backup::manifest::{base, CompressionEngine, FileEntry, Manifest};
use crate::backup::storage::{create_dirs_0700, BackupStorage};

/// A backup in storage to restore from: where it lies now (which, for a backup
/// copied in from elsewhere, may differ from what its MANIFEST says) and the
/// MANIFEST it is verified against.
#[derive(Clone, Copy)]
pub struct StoredBackup<'a> {
    /// The storage holding it.
    pub storage: &'a dyn BackupStorage,
    /// Its keyspace directory in storage.
    pub keyspace: &'a str,
    /// Its shard directory in storage.
    pub shard: &'a str,
    /// Its directory name in storage.
    pub name: &'a str,
    /// Its MANIFEST: the files, their hashes and sizes, the compression.
    pub manifest: &'a Manifest,
    /// What decrypts it, if it is encrypted (`--backup-encryption-identity-file`).
    pub identities: Option<&'a Identities>,
}

impl<'a> StoredBackup<'a> {
    /// The identities to decrypt its files with: `None` for a plaintext backup;
    /// for an encrypted one, the identities, or an error naming the recipients
    /// needed when there are none or none of them is a recipient.
    fn decryption(&self) -> anyhow::Result<Option<&'a Identities>> {
        let m = self.manifest;
        check_identities(
            self.name,
            m.encryption.as_deref(),
            &m.encryption_recipients,
            self.identities,
        )
        .map_err(anyhow::Error::msg)?;
        Ok(self.identities.filter(|_| m.encryption.is_some()))
    }
}

/// Proves, before anything is touched, that this restore can decrypt the backup:
/// nothing to prove for a plaintext one; for an encrypted one, the identities
/// must include one of the MANIFEST's recipients and must open the age header of
/// its first stored file (only the header is read). The error names the
/// recipients needed.
pub async fn check_decryptable(from: StoredBackup<'_>) -> anyhow::Result<()> {
    let Some(ids) = from.decryption()? else {
        return Ok(());
    };
    let Some(entry) = from.manifest.file_entries.first() else {
        return Ok(());
    };
    let stored = from
        .storage
        .open_file(from.keyspace, from.shard, from.name, &entry.stored_name)
        .await
        .with_context(|| format!("opening {} of backup {}", entry.name, from.name))?;
    let ids = ids.clone();
    let (name, backup) = (entry.name.clone(), from.name.to_string());
    let recipients = from.manifest.encryption_recipients.join(", ");
    tokio::task::spawn_blocking(move || {
        ids.decrypt(io::BufReader::with_capacity(64 << 10, stored))
            .map(|_| ())
            .map_err(|why| {
                anyhow!(
                    "cannot decrypt {name} of backup {backup} (encrypted to {recipients}): {why}"
                )
            })
    })
    .await
    .map_err(|e| anyhow!("decryption check failed: {e}"))?
}
/// Creates `path` for writing, 0600, never following a symlink there.
fn create_dest(path: &Path) -> io::Result<File> {
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    f.set_permissions(fs::Permissions::from_mode(0o600))?;
    Ok(f)
}

/// Restores one stored file to `dest`. Blocking.
#[allow(clippy::too_many_arguments)]
fn restore_one_blocking(
    stored: Box<dyn Read + Send>,
    entry: &FileEntry,
    engine: CompressionEngine,
    identities: Option<&Identities>,
    backup: &str,
    dest: &Path,
    progress: &Progress,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    let mut reader = VerifiedReader::new(stored, entry, engine, identities, backup)?;
    let mut out = create_dest(dest).with_context(|| format!("creating {}", dest.display()))?;
    let result = (|| {
        copy_verified(
            &mut reader,
            &mut out,
            buf_size_for(entry.size),
            progress,
            cancel,
        )
        .with_context(|| format!("writing {}", dest.display()))?;
        out.sync_all()
            .with_context(|| format!("fsync {}", dest.display()))
    })();
    if result.is_err() {
        // Never leave unverified data where a server could pick it up.
        drop(out);
        let _ = fs::remove_file(dest);
    }
    result
}

/// Copies a verifying reader to `out` until its end, counting progress; the
/// reader's integrity error (on its last read) ends the copy as an error.
fn copy_verified(
    reader: &mut impl Read,
    out: &mut impl Write,
    buf_size: usize,
    progress: &Progress,
    cancel: &CancellationToken,
) -> anyhow::Result<u64> {
    let mut buf = vec![0u8; buf_size];
    let mut total = 0u64;
    loop {
        if cancel.is_cancelled() {
            return Err(anyhow::Error::new(Cancelled));
        }
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_to_anyhow(e)),
        };
        out.write_all(&buf[..n])?;
        total += n as u64;
        progress.bytes_done.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Restores every file of a backup into `dest_dir/<Name>`, verifying each
/// stored file's hash (in the algorithm its entry names) and sizes against
/// `manifest`, decompressing with the
/// MANIFEST's engine, `concurrency` files at a time. Refuses unsafe names before
/// writing anything. On error, the first failure (naming the file) is returned
/// after every worker stopped; files already restored stay, the failing one is
/// removed, and the caller must treat the directory as garbage. Restored files
/// are 0600 and new directories 0700, owned by this process's user.
pub async fn restore_files(
    from: StoredBackup<'_>,
    dest_dir: &Path,
    concurrency: usize,
    progress: Arc<Progress>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let identities = from.decryption()?.cloned().map(Arc::new);
    let StoredBackup {
        storage,
        keyspace,
        shard,
        name: backup_name,
        manifest,
        ..
    } = from;
    manifest.check_restorable()?;
    let engine = manifest.compression_engine;
    progress.bytes_total.fetch_add(
        manifest.file_entries.iter().map(|e| e.size).sum(),
        Ordering::Relaxed,
    );
    // Parent directories first, once, so workers never race creating them.
    let mut dirs: Vec<PathBuf> = vec![dest_dir.to_path_buf()];
    for e in &manifest.file_entries {
        if let Some(p) = Path::new(&e.name).parent() {
            if !p.as_os_str().is_empty() {
                dirs.push(dest_dir.join(p));
            }
        }
    }
    dirs.sort();
    dirs.dedup();
    {
        let dirs = dirs.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            for d in &dirs {
                create_dirs_0700(d).with_context(|| format!("creating {}", d.display()))?;
            }
            Ok(())
        })
        .await??;
    }
    let cancel = cancel.child_token();
    let mut order: Vec<(usize, &FileEntry)> = manifest.file_entries.iter().enumerate().collect();
    order.sort_by_key(|o| std::cmp::Reverse(o.1.size));
    let tasks = order
        .into_iter()
        .map(|(i, entry)| {
            let (progress, cancel) = (progress.clone(), cancel.clone());
            let identities = identities.clone();
            let dest = dest_dir.join(&entry.name);
            let fut = async move {
                let ctx = || format!("restoring {} from backup {backup_name}", entry.name);
                if cancel.is_cancelled() {
                    return Err(anyhow::Error::new(Cancelled)).with_context(ctx);
                }
                let stored = storage
                    .open_file(keyspace, shard, backup_name, &entry.stored_name)
                    .await
                    .with_context(ctx)?;
                let (entry2, backup) = (entry.clone(), backup_name.to_string());
                tokio::task::spawn_blocking(move || {
                    restore_one_blocking(
                        stored,
                        &entry2,
                        engine,
                        identities.as_deref(),
                        &backup,
                        &dest,
                        &progress,
                        &cancel,
                    )
                })
                .await
                .map_err(|e| anyhow!("restore worker failed: {e}"))
                .and_then(|r| r)
                .with_context(ctx)
            };
            (i, fut)
        })
        .collect();
    run_fail_fast::<(), _>(tasks, manifest.file_entries.len(), concurrency, &cancel).await?;
    // Make the new directory entries durable too.
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        for d in dirs.iter().rev() {
            File::open(d)
                .and_then(|f| f.sync_all())
                .with_context(|| format!("fsync {}", d.display()))?;
        }
        Ok(())
    })
    .await??;
    Ok(())
}

/// Opens the single `Stream` entry of a backup as a [`VerifiedReader`] (e.g. to
/// feed `mbstream -x` yourself).
pub async fn open_stream(from: StoredBackup<'_>) -> anyhow::Result<VerifiedReader> {
    let identities = from.decryption()?.cloned();
    let StoredBackup {
        storage,
        keyspace,
        shard,
        name: backup_name,
        manifest,
        ..
    } = from;
    manifest.check_restorable()?;
    let streams: Vec<&FileEntry> = manifest
        .file_entries
        .iter()
        .filter(|e| e.base == base::STREAM)
        .collect();
    let [entry] = streams[..] else {
        bail!(
            "backup {backup_name} has {} stream entries, expected exactly one",
            streams.len()
        );
    };
    let stored = storage
        .open_file(keyspace, shard, backup_name, &entry.stored_name)
        .await
        .with_context(|| format!("opening stream {} of backup {backup_name}", entry.name))?;
    // An age header is read when the reader is made: on a blocking thread.
    let (entry, engine, backup) = (
        entry.clone(),
        manifest.compression_engine,
        backup_name.to_string(),
    );
    Ok(tokio::task::spawn_blocking(move || {
        VerifiedReader::new(stored, &entry, engine, identities.as_ref(), &backup)
    })
    .await
    .map_err(|e| anyhow!("restore worker failed: {e}"))??)
}

/// Pipes the verified, decompressed stream of a backup into `out` (e.g. the
/// stdin of `mbstream -x`) and returns `out` and the bytes written. The hash is
/// only known at the end: on an error (an
/// [`IntegrityError`](super::IntegrityError) root for corrupt data) the consumer
/// has already seen garbage and must be treated as failed.
pub async fn restore_stream<W: Write + Send + 'static>(
    from: StoredBackup<'_>,
    mut out: W,
    progress: Arc<Progress>,
    cancel: CancellationToken,
) -> anyhow::Result<(W, u64)> {
    let backup_name = from.name;
    let mut reader = open_stream(from).await?;
    progress
        .bytes_total
        .fetch_add(reader.entry().size, Ordering::Relaxed);
    let name = reader.entry().name.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<(W, u64)> {
        let total = copy_verified(&mut reader, &mut out, BUF_SIZE, &progress, &cancel)
            .context("writing the restored stream")?;
        out.flush().context("flushing the restored stream")?;
        Ok((out, total))
    })
    .await
    .map_err(|e| anyhow!("restore worker failed: {e}"))?
    .with_context(|| format!("restoring stream {name} from backup {backup_name}"))
}
