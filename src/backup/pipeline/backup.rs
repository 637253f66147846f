//! Backing up: a server's files (parallel, largest first, retrying storage
//! errors once per file by default) or one stream into a backup being written.
//! Returns the MANIFEST's file entries; writing the MANIFEST, or aborting, is
//! the engine's decision.
//!
//! May call: `encode`, [`crate::backup::storage`],
//! [`crate::backup::manifest`].

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use tokio_util::sync::CancellationToken;

use super::encode::{compress_into, read_ahead_for, AttemptError, Encoding, ThreadBudget};
use super::{
    buf_size_for, run_fail_fast, Cancelled, Compression, CopyOptions, Progress, SourceFile,
    BUF_SIZE, ZSTD_MT_MIN_SIZE,
};
use crate::backup::manifest::{base, check_relative_name, FileEntry};
use crate::backup::storage::BackupWriter;

/// Opens a source file for sequential reading.
fn open_source(path: &Path) -> io::Result<File> {
    let f = File::open(path)?;
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // Advisory read-ahead hint; the result does not matter.
        // SAFETY: the fd is valid for the lifetime of `f`.
        unsafe {
            libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_SEQUENTIAL);
        }
    }
    Ok(f)
}

/// Copies one source file into storage as `stored_name`, retrying storage errors.
async fn backup_one(
    writer: &dyn BackupWriter,
    stored_name: String,
    src: SourceFile,
    opts: &CopyOptions,
    budget: Arc<ThreadBudget>,
    progress: Arc<Progress>,
    cancel: CancellationToken,
) -> anyhow::Result<FileEntry> {
    let ctx = || {
        format!(
            "backing up {} ({}) as {} in backup {}",
            src.name,
            src.path.display(),
            stored_name,
            writer.name()
        )
    };
    let mut attempt = 0;
    loop {
        if cancel.is_cancelled() {
            return Err(anyhow::Error::new(Cancelled)).with_context(ctx);
        }
        let result = async {
            let sink = writer
                .create_file(&stored_name)
                .await
                .map_err(|e| AttemptError::Sink(e.into()))?;
            let (src, progress, cancel, budget) = (
                src.clone(),
                progress.clone(),
                cancel.clone(),
                budget.clone(),
            );
            let compression = opts.compression;
            let encryption = opts.encryption.clone();
            let (hash, read_ahead) = (opts.hash, opts.read_ahead);
            tokio::task::spawn_blocking(move || {
                let mut f = open_source(&src.path)
                    .map_err(|e| AttemptError::Source(anyhow!(e).context("opening")))?;
                let lease = match compression {
                    Compression::Zstd { threads, .. } if src.size >= ZSTD_MT_MIN_SIZE => {
                        budget.take(threads)
                    }
                    _ => budget.take(0),
                };
                let how = Encoding {
                    compression,
                    encryption: encryption.as_deref(),
                    mt_workers: lease.n,
                    buf_size: buf_size_for(src.size),
                    hash,
                    read_ahead: read_ahead_for(read_ahead, Some(src.size)),
                };
                let stored = compress_into(&mut f, sink, &how, &progress, &cancel)?;
                if stored.size != src.size {
                    tracing::warn!(file = %src.name, expected = src.size, read = stored.size,
                        "file size changed while it was backed up");
                }
                Ok(stored)
            })
            .await
            .map_err(|e| AttemptError::Sink(anyhow!("copy worker failed: {e}")))?
        }
        .await;
        match result {
            // The entry comes from the attempt that stored the bytes (#19338).
            Ok(stored) => {
                return Ok(FileEntry {
                    base: src.base.clone(),
                    name: src.name.clone(),
                    stored_name,
                    size: stored.size,
                    stored_size: stored.stored_size,
                    hash: stored.hash,
                    hash_algorithm: stored.hash_algorithm.name().to_string(),
                })
            }
            Err(AttemptError::Sink(e))
                if attempt < opts.retries_per_file && !cancel.is_cancelled() =>
            {
                attempt += 1;
                tracing::warn!(file = %src.name, attempt, error = %format!("{e:#}"),
                    "storage error; retrying the file");
            }
            Err(e) => return Err(e.into_anyhow()).with_context(ctx),
        }
    }
}

/// Backs up `files` into `writer`: stored names are `0, 1, …` in input order,
/// and so are the returned entries, ready for the MANIFEST. Does not write the
/// MANIFEST and does not abort on error: the caller (the engine) decides.
pub async fn backup_files(
    writer: &dyn BackupWriter,
    files: Vec<SourceFile>,
    opts: &CopyOptions,
    progress: Arc<Progress>,
    cancel: CancellationToken,
) -> anyhow::Result<Vec<FileEntry>> {
    let mut seen = std::collections::HashSet::new();
    for f in &files {
        check_relative_name(&f.name)?;
        if !seen.insert(f.name.as_str()) {
            bail!(
                "file {} is listed twice for backup {}",
                f.name,
                writer.name()
            );
        }
    }
    let n = files.len();
    progress
        .bytes_total
        .fetch_add(files.iter().map(|f| f.size).sum(), Ordering::Relaxed);
    let threads = match opts.compression {
        Compression::Zstd { threads, .. } => threads,
        _ => 0,
    };
    let budget = ThreadBudget::new(threads);
    let cancel = cancel.child_token();
    let mut order: Vec<(usize, SourceFile)> = files.into_iter().enumerate().collect();
    // Largest first (stable: equal sizes keep input order).
    order.sort_by_key(|o| std::cmp::Reverse(o.1.size));
    let tasks = order
        .into_iter()
        .map(|(i, f)| {
            let fut = backup_one(
                writer,
                i.to_string(),
                f,
                opts,
                budget.clone(),
                progress.clone(),
                cancel.clone(),
            );
            (i, fut)
        })
        .collect();
    run_fail_fast(tasks, n, opts.concurrency, &cancel).await
}

/// Backs up one stream (e.g. `mariabackup --stream=xbstream` stdout) as stored
/// file `0` with base `Stream`. zstd uses all `threads` as zstdmt workers. The
/// caller must check that the producer succeeded before writing the MANIFEST:
/// a producer that dies looks like a short stream here. `progress.bytes_total`
/// is left alone (a stream's length is unknown in advance).
pub async fn backup_stream<R: Read + Send + 'static>(
    writer: &dyn BackupWriter,
    mut reader: R,
    name: &str,
    opts: &CopyOptions,
    progress: Arc<Progress>,
    cancel: CancellationToken,
) -> anyhow::Result<FileEntry> {
    check_relative_name(name)?;
    let stored_name = "0";
    let ctx = || format!("backing up stream {name} in backup {}", writer.name());
    let sink = writer.create_file(stored_name).await.with_context(ctx)?;
    let compression = opts.compression;
    let encryption = opts.encryption.clone();
    let mt = match compression {
        Compression::Zstd { threads, .. } => threads,
        _ => 0,
    };
    let (hash, read_ahead) = (opts.hash, read_ahead_for(opts.read_ahead, None));
    let stored = tokio::task::spawn_blocking(move || {
        let how = Encoding {
            compression,
            encryption: encryption.as_deref(),
            mt_workers: mt,
            buf_size: BUF_SIZE,
            hash,
            read_ahead,
        };
        compress_into(&mut reader, sink, &how, &progress, &cancel)
    })
    .await
    .map_err(|e| anyhow!("copy worker failed: {e}"))
    .with_context(ctx)?
    .map_err(AttemptError::into_anyhow)
    .with_context(ctx)?;
    Ok(FileEntry {
        base: base::STREAM.to_string(),
        name: name.to_string(),
        stored_name: stored_name.to_string(),
        size: stored.size,
        stored_size: stored.stored_size,
        hash: stored.hash,
        hash_algorithm: stored.hash_algorithm.name().to_string(),
    })
}
