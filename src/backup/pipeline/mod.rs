//! The copy pipeline between a server's files and backup storage: read (ahead,
//! on a thread of its own) → compress (zstd, possibly multithreaded; lz4
//! frames; or none) → encrypt (age, when recipients are configured) → BLAKE3 of
//! the stored bytes → storage, and back: storage → hash check (in the algorithm
//! each MANIFEST entry names: BLAKE3, or SHA-256 for older backups) → decrypt →
//! decompress → disk. Encryption lives
//! here, not in a backend, so every [`BackupStorage`](super::storage::BackupStorage)
//! gets it; with recipients configured, a stored file that does not start as an
//! age file is refused (nothing is stored in plaintext by accident).
//!
//! Owns speed and integrity of the bytes, nothing else: which files to copy and
//! what the MANIFEST says beyond the file entries is the engines' business.
//!
//! - Parallel across files (`concurrency`), largest first, so one huge tablespace
//!   does not start last; within a big file zstd runs multithreaded (zstdmt) out
//!   of a bounded worker budget, so even a single ibdata1 keeps every core busy.
//! - Memory is bounded: fixed buffers per file (up to [`READ_AHEAD_BUFFERS`]
//!   read buffers of [`BUF_SIZE`] and one in front of storage) plus zstd's
//!   windows, never a whole file.
//! - Reading overlaps the rest: a big file is read on a thread of its own a few
//!   buffers ahead of compression, hashing and the storage write.
//! - Fail fast: the first error cancels every other file and is returned with the
//!   file it concerns; workers are awaited before returning, so nothing is still
//!   writing when the caller aborts the backup.
//! - A [`FileEntry`] is built only from the attempt that stored the bytes, from
//!   that attempt's own hasher, so a retried file can never carry a stale or empty
//!   hash (Vitess #19338).
//! - Restores verify the hash of every stored byte and both sizes; a mismatch is
//!   an [`IntegrityError`] naming the file, and the partly written file is
//!   removed. An entry naming an unknown hash algorithm is refused before
//!   anything is read.
//!
//! The rooms:
//! - `encode`: the compressor and hasher in front of storage, and the zstdmt
//!   worker budget (blocking, one attempt at a time).
//! - `read_ahead`: the reader thread and its bounded, recycled buffers.
//! - `hash`: the content hash, BLAKE3 or SHA-256, the same type both ways.
//! - [`backup`]: files and streams into a [`BackupWriter`](super::storage::BackupWriter),
//!   parallel, largest first, retrying storage errors.
//! - [`verify`]: [`VerifiedReader`], the one reader that checks stored bytes
//!   against their MANIFEST entry.
//! - [`restore`]: files and streams out of storage through a [`VerifiedReader`].
//!
//! May call: [`super::storage`], [`super::manifest`] and [`super::encryption`];
//! nothing above backup, no mysqld, no etcd.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::anyhow;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::encryption::Recipients;
#[cfg(doc)]
use super::manifest::{base, FileEntry};
use super::manifest::{CompressionEngine, HashAlgorithm};

pub mod backup;
mod encode;
mod hash;
mod read_ahead;
pub mod restore;
#[cfg(test)]
mod tests;
pub mod verify;

pub use backup::{backup_files, backup_stream};
pub use hash::digest_reader;
pub use read_ahead::READ_AHEAD_BUFFERS;
pub use restore::{check_decryptable, open_stream, restore_files, restore_stream, StoredBackup};
pub use verify::{integrity_error, VerifiedReader};

/// Size of read buffers and of the buffer in front of storage.
pub const BUF_SIZE: usize = 1 << 20;
/// Smallest buffer: small files get small buffers (thousands of `.frm` files
/// would otherwise each pay for zeroing a full-size one).
const MIN_BUF_SIZE: usize = 64 << 10;

/// Buffer size for a file of `size` bytes.
fn buf_size_for(size: u64) -> usize {
    usize::try_from(size.saturating_add(1))
        .unwrap_or(BUF_SIZE)
        .clamp(MIN_BUF_SIZE, BUF_SIZE)
}
/// Files at least this big get zstdmt workers (when the budget has some free).
pub const ZSTD_MT_MIN_SIZE: u64 = 32 << 20;

/// How stored bytes are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// zstd at `level` (1 is fast and good); `threads` is the total number of
    /// zstdmt workers the whole copy may use for big files (0: never multithread).
    Zstd {
        /// zstd compression level (negative levels are faster still).
        level: i32,
        /// Worker budget shared by all big files of one copy.
        threads: u32,
    },
    /// LZ4 frames: less ratio, less CPU.
    Lz4,
    /// Stored as is.
    None,
}

impl Compression {
    /// zstd level 1 with one worker per core: the default.
    pub fn default_zstd() -> Self {
        Compression::Zstd {
            level: 1,
            threads: default_threads(),
        }
    }

    /// The settings for an engine named on the command line.
    pub fn for_engine(engine: CompressionEngine) -> Self {
        match engine {
            CompressionEngine::Zstd => Self::default_zstd(),
            CompressionEngine::Lz4 => Compression::Lz4,
            CompressionEngine::None => Compression::None,
        }
    }

    /// The engine name that goes into the MANIFEST.
    pub fn engine(&self) -> CompressionEngine {
        match self {
            Compression::Zstd { .. } => CompressionEngine::Zstd,
            Compression::Lz4 => CompressionEngine::Lz4,
            Compression::None => CompressionEngine::None,
        }
    }
}

impl Default for Compression {
    fn default() -> Self {
        Self::default_zstd()
    }
}

/// Cores available to this process (at least 1).
pub fn default_threads() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
}

/// Options of one copy.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Compression of the stored bytes.
    pub compression: Compression,
    /// Files copied at the same time (`--concurrency`; Vitess's default is 4).
    pub concurrency: usize,
    /// Extra attempts per file after a storage write error (Vitess: 1). Source
    /// read errors, cancellation and integrity errors are never retried.
    pub retries_per_file: u32,
    /// Encrypt every stored file with age to these recipients (`None`: plaintext).
    pub encryption: Option<Arc<Recipients>>,
    /// Hash algorithm recorded for every stored file: BLAKE3 by default; SHA-256
    /// still works (a backup a cairn that predates BLAKE3 can restore).
    pub hash: HashAlgorithm,
    /// Read big files on a thread of their own, a few buffers ahead (default);
    /// `false` reads and encodes on one thread (for comparisons).
    pub read_ahead: bool,
}

impl Default for CopyOptions {
    fn default() -> Self {
        Self {
            compression: Compression::default(),
            concurrency: 4,
            retries_per_file: 1,
            encryption: None,
            hash: HashAlgorithm::default(),
            read_ahead: true,
        }
    }
}

/// Progress of a copy, shared with whoever displays it.
#[derive(Debug, Default)]
pub struct Progress {
    /// Bytes of original data processed so far (read on backup, written on restore).
    pub bytes_done: AtomicU64,
    /// Bytes of original data to process; grows as copies are started.
    pub bytes_total: AtomicU64,
}

impl Progress {
    /// A fresh counter, ready to share.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Bytes processed so far.
    pub fn done(&self) -> u64 {
        self.bytes_done.load(Ordering::Relaxed)
    }

    /// Bytes to process.
    pub fn total(&self) -> u64 {
        self.bytes_total.load(Ordering::Relaxed)
    }
}

/// A file of the server to back up.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Where to read it.
    pub path: PathBuf,
    /// Its name relative to the data directory: where the restore puts it.
    pub name: String,
    /// Which part of the server it belongs to (see [`base`]).
    pub base: String,
    /// Its expected size: for scheduling (largest first) and progress.
    pub size: u64,
}

/// The copy was cancelled (by the caller, or because another file failed).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("copy cancelled")]
pub struct Cancelled;

/// Stored data does not match its MANIFEST entry: the backup must not be used.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{kind} mismatch for {name} in backup {backup}: expected {expected}, got {actual}")]
pub struct IntegrityError {
    /// The backup the file belongs to.
    pub backup: String,
    /// The file's name (relative to the data directory, or the stream's name).
    pub name: String,
    /// What did not match: `hash`, `stored size` or `size`.
    pub kind: &'static str,
    /// What the MANIFEST says.
    pub expected: String,
    /// What was found.
    pub actual: String,
}

/// Runs `tasks` with at most `concurrency` at a time; the first error cancels
/// `cancel` (which the tasks watch) and is returned once every started task has
/// ended. Results come back indexed as the tasks were.
async fn run_fail_fast<T, F>(
    tasks: Vec<(usize, F)>,
    n: usize,
    concurrency: usize,
    cancel: &CancellationToken,
) -> anyhow::Result<Vec<T>>
where
    F: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut results: Vec<Option<T>> = (0..n).map(|_| None).collect();
    let mut first_err: Option<anyhow::Error> = None;
    let mut stream = futures::stream::iter(
        tasks
            .into_iter()
            .map(|(i, fut)| async move { (i, fut.await) }),
    )
    .buffer_unordered(concurrency.max(1));
    while let Some((i, r)) = stream.next().await {
        match r {
            Ok(v) => results[i] = Some(v),
            Err(e) => {
                // Prefer the real cause over the cancellations it triggers.
                let replace = match &first_err {
                    None => true,
                    Some(prev) => {
                        prev.downcast_ref::<Cancelled>().is_some()
                            && e.downcast_ref::<Cancelled>().is_none()
                    }
                };
                if replace {
                    first_err = Some(e);
                }
                cancel.cancel();
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    results
        .into_iter()
        .map(|r| r.ok_or_else(|| anyhow!("internal error: a copy task produced no result")))
        .collect()
}
